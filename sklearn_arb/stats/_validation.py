"""Input checks shared by the statistics functions."""

import numpy as np
from numpy.typing import ArrayLike


def as_finite_2d(values: ArrayLike, name: str) -> np.ndarray:
    """Return ``values`` as a float64 2-D array ``(n_images, n_values)``.

    A 1-D input is one image. NaN or infinite values raise a ``ValueError``: they
    would silently spread through the means, the counts and the density fits.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 1-D (one image) or 2-D (n_images, n_values); "
            f"got an array of shape {array.shape}. Reshape it to (n_images, -1)."
        )
    if array.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {array.shape}); pass at least one value per image."
        )
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains NaN or inf. Attention scores are finite; remove or "
            "impute the non-finite values (for example np.nan_to_num) before calling."
        )
    return array


def as_sorted_reference(
    sample: ArrayLike, name: str, n_images: int, mismatch: str, is_sorted: bool
) -> np.ndarray:
    """Return a reference ``sample`` (one row per image, or a single row shared by
    all) as a finite 2-D array with each row sorted.

    ``mismatch`` is the error message for a wrong number of rows, formatted with
    ``n_rows`` and ``n_images``. ``is_sorted`` skips the sort for rows the caller
    already sorted.
    """
    sorted_sample = as_finite_2d(sample, name)
    if sorted_sample.shape[0] not in (1, n_images):
        raise ValueError(
            mismatch.format(n_rows=sorted_sample.shape[0], n_images=n_images)
        )
    if not is_sorted:
        sorted_sample = np.sort(sorted_sample, axis=1)
    return sorted_sample

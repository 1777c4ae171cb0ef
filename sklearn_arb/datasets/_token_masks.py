"""Pixel region-of-interest masks -> masks over a ViT's patch tokens."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params


@validate_params(
    {
        "pixel_masks": ["array-like"],
        "patch_size": [Interval(Integral, 1, None, closed="left")],
        "min_fraction": [Interval(Real, 0, 1, closed="right")],
    },
    prefer_skip_nested_validation=True,
)
def pixel_to_token_masks(
    pixel_masks: np.ndarray, patch_size: int, *, min_fraction: float = 0.5
) -> np.ndarray:
    """Turn pixel ROI masks into token ROI masks for a square patch grid.

    A token (one ``patch_size`` x ``patch_size`` patch) is in the ROI when at least
    ``min_fraction`` of its pixels are (the default, 0.5, puts a patch half covered by
    the ROI inside it). Tokens are numbered in row-major order of the patch grid,
    the order of the ``AttentionExtractor`` output. A ROI smaller than two patches
    can have no token at all (a square of one patch's side straddling four patches).

    Parameters
    ----------
    pixel_masks : array-like of shape (n_images, height, width)
        Boolean pixel masks, True inside the ROI. ``height`` and ``width`` must be
        multiples of ``patch_size`` (resize the images to the model's input size
        before simulating noise, e.g. with ``load_images(..., image_size=224)``).
    patch_size : int
        Side of the model's square patches, in pixels.
    min_fraction : float, default=0.5
        Smallest fraction of a patch's pixels that must lie in the ROI for the
        token to count as in the ROI, in (0, 1].

    Returns
    -------
    token_masks : ndarray of shape (n_images, n_tokens), dtype=bool
        ``n_tokens = (height // patch_size) * (width // patch_size)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.datasets import pixel_to_token_masks
    >>> pixel_masks = np.zeros((1, 4, 4), dtype=bool)
    >>> pixel_masks[0, :2, :3] = True  # patch 0 full, patch 1 half covered
    >>> pixel_to_token_masks(pixel_masks, patch_size=2)
    array([[ True,  True, False, False]])
    """
    pixel_masks = np.asarray(pixel_masks)
    if pixel_masks.ndim != 3 or pixel_masks.dtype != bool:
        raise ValueError(
            "pixel_masks must be a boolean array of shape (n_images, height, width); "
            f"got shape {pixel_masks.shape} and dtype {pixel_masks.dtype}. Pass the "
            "masks returned by make_noise_simulation, or compare your masks with 0."
        )
    height, width = pixel_masks.shape[1:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not a multiple of patch_size="
            f"{patch_size}; resize the images to the model's input size (e.g. "
            "load_images(..., image_size=224)) before making masks of them."
        )
    patch_fraction = token_pixel_counts(pixel_masks, patch_size) / patch_size**2
    return patch_fraction >= min_fraction


def token_pixel_counts(pixel_masks: np.ndarray, patch_size: int) -> np.ndarray:
    """How many of each token's pixels the masks hold: (n_images, n_tokens)
    float64, tokens in row-major order of the patch grid. ``pixel_masks`` is a
    boolean (n_images, height, width) array, sides multiples of ``patch_size``."""
    n_images, height, width = pixel_masks.shape
    rows, cols = height // patch_size, width // patch_size
    return (
        pixel_masks.reshape(n_images, rows, patch_size, cols, patch_size)
        .sum(axis=(2, 4), dtype=np.float64)
        .reshape(n_images, rows * cols)
    )

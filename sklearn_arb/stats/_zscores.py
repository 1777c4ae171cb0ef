"""z statistics of attention scores on the log scale (Method page, step 3)."""

import numpy as np
from numpy.typing import ArrayLike

from ._validation import as_finite_2d

# A null whose standard deviation is below this fraction of its largest absolute log
# score is constant up to rounding (the mean of equal floats need not equal them).
_ZERO_STD_RTOL = 64 * np.finfo(np.float64).eps


def log_scores(scores: ArrayLike) -> np.ndarray:
    """Natural log of attention scores, with a stated rule for scores <= 0.

    Softmax attention is positive, but maps from other sources (or rounding to zero)
    may hold zeros or negative values, whose log is undefined. Each non-positive
    score is floored at the smallest positive score of its own row, i.e. it counts as
    the least attended token of that image. Pass the whole row of an image (observed
    and bootstrap maps together) so that both share the floor. The rule commutes
    with scaling: multiplying a row by ``c > 0`` adds ``log(c)`` to every log score.
    A row without any positive score carries no information; it is floored at the
    smallest positive normal float64, so all its logs are equal (a constant row).

    Parameters
    ----------
    scores : array-like of shape (n_images, n_values) or (n_values,)
        Finite attention scores, one row per image.

    Returns
    -------
    log_scores : ndarray of shape (n_images, n_values)
        Float64 natural logs.

    Raises
    ------
    ValueError
        If ``scores`` contains NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import log_scores
    >>> log_scores([[np.e, 1.0, 0.0, -2.0]])
    array([[1., 0., 0., 0.]])
    """
    return log_scores_unchecked(as_finite_2d(scores, "scores"))


def log_scores_unchecked(scores: np.ndarray) -> np.ndarray:
    """:func:`log_scores` of a finite 2-D float64 array (no checks)."""
    positive = scores > 0
    if positive.all():
        return np.log(scores)
    floor = np.where(positive, scores, np.inf).min(axis=1, keepdims=True)
    floor[~np.isfinite(floor)] = np.finfo(np.float64).tiny
    return np.log(np.where(positive, scores, floor))


def null_moments(
    null_log_scores: ArrayLike, *, pooled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) of the null log scores.

    Parameters
    ----------
    null_log_scores : array-like of shape (n_images, n_null) or (n_null,)
        Log scores of the bootstrap maps, all bootstrap maps of an image in one row.
    pooled : bool, default=False
        If False, one mean and standard deviation per row (the per-image null). If
        True, a single pair over all rows (the pooled null).

    Returns
    -------
    mean : ndarray of shape (n_images,), or (1,) when ``pooled``
    std : ndarray of shape (n_images,), or (1,) when ``pooled``
        A null with zero variance (constant up to rounding) has no scale; its
        standard deviation is reported as 1, so that z is the plain log difference
        to the null and no division by zero occurs.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import null_moments
    >>> null_moments([[0.0, 2.0], [1.0, 1.0]])
    (array([1., 1.]), array([1., 1.]))
    >>> null_moments([[0.0, 2.0], [4.0, 6.0]], pooled=True)
    (array([3.]), array([2.23606798]))
    """
    null_log_scores = as_finite_2d(null_log_scores, "null_log_scores")
    if pooled:
        null_log_scores = null_log_scores.reshape(1, -1)
    return null_moments_unchecked(null_log_scores)


def null_moments_unchecked(
    null_log_scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`null_moments` per row of a finite 2-D float64 array (no checks)."""
    mean = null_log_scores.mean(axis=1)
    std = np.sqrt(np.mean((null_log_scores - mean[:, np.newaxis]) ** 2, axis=1))
    scale = np.abs(null_log_scores).max(axis=1)
    std[std <= _ZERO_STD_RTOL * scale] = 1.0
    return mean, std


def z_scores(log_scores: ArrayLike, mean: ArrayLike, std: ArrayLike) -> np.ndarray:
    """Standardise log scores by the null moments: ``z = (L - mean) / std``.

    Parameters
    ----------
    log_scores : array-like of shape (n_images, n_values) or (n_values,)
        Log scores (observed or bootstrap), one row per image.
    mean, std : array-like of shape (n_images,) or (1,) or scalar
        Null moments, from :func:`null_moments` (one per image, or pooled).

    Returns
    -------
    z : ndarray of shape (n_images, n_values)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import log_scores, null_moments, z_scores
    >>> scores = np.array([[0.4, 0.1, 0.2, 0.05]])  # observed | one bootstrap map
    >>> logs = log_scores(scores)
    >>> mean, std = null_moments(logs[:, 2:])
    >>> z_scores(logs[:, :2], mean, std).round(3)
    array([[2., 0.]])
    """
    log_scores = as_finite_2d(log_scores, "log_scores")
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1)
    std = np.asarray(std, dtype=np.float64).reshape(-1, 1)
    if mean.shape[0] not in (1, log_scores.shape[0]) or mean.shape != std.shape:
        raise ValueError(
            f"mean and std must hold one value per image ({log_scores.shape[0]}) or "
            f"one pooled value; got shapes {mean.shape} and {std.shape}."
        )
    return (log_scores - mean) / std

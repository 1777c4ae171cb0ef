"""Means over images with percentile bootstrap intervals, and paired tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import wilcoxon
from sklearn.utils import check_random_state

__all__ = ["finite_mean", "mean_interval", "paired_test"]


def finite_mean(values: ArrayLike) -> float:
    """The mean of the finite values; NaN, without a warning, when none is.

    Examples
    --------
    >>> from sklearn_arb.evaluation._intervals import finite_mean
    >>> finite_mean([1.0, float("nan"), 3.0]), finite_mean([float("nan")])
    (2.0, nan)
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else np.nan


def mean_interval(
    values: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: Any = 0,
) -> tuple[float, float, float, int]:
    """Mean over images and its percentile bootstrap interval.

    Images are resampled with replacement; NaN values (an abstention, such as
    the pointing game's on an all-zero map) are left out before resampling.

    Parameters
    ----------
    values : array-like of shape (n_images,)
        One number per image.
    confidence : float, default=0.95
        Coverage of the interval.
    n_resamples : int, default=2000
        Bootstrap resamples of the images.
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.

    Returns
    -------
    mean, low, high : float
        The mean of the finite values and the interval's ends (NaN when no
        value is finite).
    n : int
        The number of finite values used.

    Examples
    --------
    >>> from sklearn_arb.evaluation._intervals import mean_interval
    >>> mean, low, high, n = mean_interval([0.0, 1.0, 1.0, 1.0, float("nan")])
    >>> mean, n, bool(low <= mean <= high)
    (0.75, 4, True)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan, 0
    rng = check_random_state(random_state)
    draws = rng.randint(0, values.size, size=(n_resamples, values.size))
    means = values[draws].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high), int(values.size)


def paired_test(first: ArrayLike, second: ArrayLike) -> tuple[float, float, int]:
    """Wilcoxon signed-rank test of paired per-image scores (two-sided).

    Pairs with a NaN on either side are dropped; zero differences are dropped
    too (Wilcoxon's rule), so identical scores give p = 1.

    Parameters
    ----------
    first, second : array-like of shape (n_images,)
        The two methods' scores of the same images.

    Returns
    -------
    mean_difference : float
        Mean of ``first - second`` over the pairs kept (NaN when none).
    pvalue : float
        Two-sided p-value (1 when every difference is 0, NaN without pairs).
    n_pairs : int
        Pairs with both scores finite.

    Examples
    --------
    >>> from sklearn_arb.evaluation._intervals import paired_test
    >>> difference, p, n = paired_test([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5])
    >>> difference, round(p, 4), n
    (1.0, 0.0312, 6)
    """
    first = np.asarray(first, dtype=np.float64).ravel()
    second = np.asarray(second, dtype=np.float64).ravel()
    both = np.isfinite(first) & np.isfinite(second)
    differences = first[both] - second[both]
    if differences.size == 0:
        return np.nan, np.nan, 0
    if not np.any(differences):
        return 0.0, 1.0, int(differences.size)
    pvalue = wilcoxon(differences, zero_method="wilcox").pvalue
    return float(differences.mean()), float(pvalue), int(differences.size)

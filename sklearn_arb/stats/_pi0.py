"""Proportion of null scores, pi0 (Storey & Tibshirani 2003; Method page, step 5)."""

from functools import cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from ._validation import as_finite_2d

# R's seq(0.05, 0.95, 0.05) as R computes it: pmin(from + k * by, to).
STOREY_LAMBDAS = np.minimum(0.05 + 0.05 * np.arange(19), 0.95)

Pi0Method = Literal["smoother", "bootstrap"]


def pi0_lambda(pvalues: ArrayLike, lambdas: ArrayLike = STOREY_LAMBDAS) -> np.ndarray:
    """Storey's ``pi0(lambda) = #{p >= lambda} / (m (1 - lambda))`` for each image.

    Parameters
    ----------
    pvalues : array-like of shape (n_images, m) or (m,)
        p-values in [0, 1], one row per image.
    lambdas : array-like of shape (n_lambdas,), default=STOREY_LAMBDAS
        Increasing values in [0, 1) (default 0.05, 0.10, ..., 0.95).

    Returns
    -------
    pi0_lambda : ndarray of shape (n_images, n_lambdas)

    Examples
    --------
    >>> from sklearn_arb.stats import pi0_lambda
    >>> pi0_lambda([[0.01, 0.2, 0.6, 0.9]], lambdas=[0.5])
    array([[1.]])
    """
    pvalues = as_finite_2d(pvalues, "pvalues")
    lambdas = np.asarray(lambdas, dtype=np.float64)
    return _pi0_lambda(pvalues, lambdas)


def _pi0_lambda(pvalues: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    n_images, n_pvalues = pvalues.shape
    n_lambdas = lambdas.size
    # n_below[i, t] = #{lambda <= p_it}: p_it >= lambda_j  <=>  n_below > j. One binary
    # search over the short lambda grid replaces an (images x p x lambdas) comparison.
    n_below = np.searchsorted(lambdas, pvalues, side="right")
    n_below += (n_lambdas + 1) * np.arange(n_images)[:, np.newaxis]
    histogram = np.bincount(n_below.ravel(), minlength=n_images * (n_lambdas + 1))
    histogram = histogram.reshape(n_images, n_lambdas + 1)
    n_at_least = np.cumsum(histogram[:, :0:-1], axis=1)[:, ::-1]
    return n_at_least / (n_pvalues * (1.0 - lambdas))


def estimate_pi0_from_counts(
    n_at_least: np.ndarray,
    n_pvalues: int,
    method: Pi0Method,
    lambdas: np.ndarray = STOREY_LAMBDAS,
    smooth_df: float = 3.0,
) -> np.ndarray:
    """:func:`estimate_pi0` from the counts ``#{p >= lambda_j}`` of each image's
    ``n_pvalues`` p-values, ``n_at_least`` of shape (n_images, n_lambdas): all
    the estimator reads of the p-values (no checks)."""
    return _pi0_of(
        n_at_least / (n_pvalues * (1.0 - lambdas)),
        n_pvalues,
        method,
        lambdas,
        smooth_df,
    )


def spline_smoother_matrix(x: ArrayLike, df: float = 3.0) -> np.ndarray:
    """Smoother matrix of the cubic smoothing spline with ``df`` effective df.

    The cubic smoothing spline through points ``(x_i, y_i)`` minimises
    ``sum (y_i - g(x_i))^2 + lam * integral g''(x)^2 dx``; its fitted values are
    ``S(lam) @ y`` with ``S(lam) = (I + lam K)^-1`` (Reinsch form, Green & Silverman
    1994, ``K = Q R^-1 Q^T``). R's ``smooth.spline(x, y, df=df)`` chooses ``lam`` so
    that the effective degrees of freedom ``trace(S(lam))`` equal ``df``; here that
    equation is solved exactly (R's own search stops at a tolerance). The matrix
    depends on ``x`` and ``df`` only, so a fit is a matrix product.

    Parameters
    ----------
    x : array-like of shape (n_points,)
        Strictly increasing abscissae, at least 3.
    df : float, default=3.0
        Effective degrees of freedom, in (2, n_points).

    Returns
    -------
    smoother : ndarray of shape (n_points, n_points)
        Fitted values at ``x`` are ``smoother @ y``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import spline_smoother_matrix
    >>> smoother = spline_smoother_matrix(np.arange(10.0), df=3.0)
    >>> round(float(np.trace(smoother)), 6)
    3.0
    >>> np.allclose(smoother @ (2 * np.arange(10.0) + 1), 2 * np.arange(10.0) + 1)
    True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 3 or np.any(np.diff(x) <= 0):
        raise ValueError(
            "x must be a 1-D strictly increasing array of at least 3 points; "
            f"got {x!r}. Sort x and merge tied points first."
        )
    if not 2.0 < df < x.size:
        raise ValueError(
            f"df must lie in (2, {x.size}) for {x.size} points (2 is the straight "
            f"line, {x.size} interpolation); got {df}."
        )
    h = np.diff(x)
    n_interior = x.size - 2
    second_difference = np.zeros((x.size, n_interior))
    band = np.zeros((n_interior, n_interior))
    for j in range(n_interior):
        second_difference[j, j] = 1.0 / h[j]
        second_difference[j + 1, j] = -1.0 / h[j] - 1.0 / h[j + 1]
        second_difference[j + 2, j] = 1.0 / h[j + 1]
        band[j, j] = (h[j] + h[j + 1]) / 3.0
        if j + 1 < n_interior:
            band[j, j + 1] = band[j + 1, j] = h[j + 1] / 6.0
    penalty = second_difference @ np.linalg.solve(band, second_difference.T)
    eigenvalues, eigenvectors = np.linalg.eigh((penalty + penalty.T) / 2.0)
    eigenvalues = np.clip(eigenvalues, 0.0, None)

    def excess_df(log_lam: float) -> float:
        return float(np.sum(1.0 / (1.0 + np.exp(log_lam) * eigenvalues)) - df)

    log_lam = brentq(excess_df, -60.0, 60.0, xtol=1e-14, rtol=1e-15, maxiter=500)
    shrink = 1.0 / (1.0 + np.exp(log_lam) * eigenvalues)
    return (eigenvectors * shrink) @ eigenvectors.T


@cache
def _smoother_row_at_last(lambdas: tuple[float, ...], df: float) -> np.ndarray:
    """Row of the smoother giving the fitted value at the largest lambda."""
    weights = spline_smoother_matrix(np.array(lambdas), df)[-1].copy()
    weights.flags.writeable = False
    return weights


def estimate_pi0(
    pvalues: ArrayLike,
    *,
    method: Pi0Method = "smoother",
    lambdas: ArrayLike = STOREY_LAMBDAS,
    smooth_df: float = 3.0,
) -> np.ndarray:
    """Estimate the proportion of null scores, pi0, per image (Storey & Tibshirani).

    As R's ``qvalue::pi0est`` with its defaults:

    - ``"smoother"``: a cubic smoothing spline with ``smooth_df`` effective degrees of
      freedom through ``(lambda, pi0(lambda))`` (see :func:`spline_smoother_matrix`),
      read at the largest lambda. The spline is linear in ``pi0(lambda)`` and the
      lambda grid is fixed, so this is one dot product per image with a cached row.
    - ``"bootstrap"``: ``W = #{p >= lambda}``, ``q`` the 10% quantile of the
      ``pi0(lambda)``,
      ``mse = W / (m^2 (1 - lambda)^2) (1 - W/m) + (pi0(lambda) - q)^2``,
      and pi0 is the smallest ``pi0(lambda)`` among the lambdas of least mse.

    Both are capped to [0, 1] (R stops with an error where the smoother gives pi0 <= 0,
    which happens only when no p-value reaches the upper lambdas; 0 here means "no
    null scores").

    Parameters
    ----------
    pvalues : array-like of shape (n_images, m) or (m,)
        p-values, one row per image.
    method : {"smoother", "bootstrap"}, default="smoother"
    lambdas : array-like of shape (n_lambdas,), default=STOREY_LAMBDAS
        Increasing lambda grid (0.05, 0.10, ..., 0.95).
    smooth_df : float, default=3.0
        Effective degrees of freedom of the smoother.

    Returns
    -------
    pi0 : ndarray of shape (n_images,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import estimate_pi0
    >>> rng = np.random.default_rng(0)
    >>> null_p = rng.uniform(size=(1, 8000))
    >>> signal_p = rng.uniform(0, 1e-3, size=(1, 2000))
    >>> pvalues = np.hstack([null_p, signal_p])
    >>> bool(abs(estimate_pi0(pvalues)[0] - 0.8) < 0.05)
    True
    >>> bool(abs(estimate_pi0(pvalues, method="bootstrap")[0] - 0.8) < 0.05)
    True
    """
    if method not in ("smoother", "bootstrap"):
        raise ValueError(f"method must be 'smoother' or 'bootstrap'; got {method!r}.")
    pvalues = as_finite_2d(pvalues, "pvalues")
    lambdas = np.asarray(lambdas, dtype=np.float64)
    return estimate_pi0_unchecked(pvalues, method, lambdas, smooth_df)


def estimate_pi0_unchecked(
    pvalues: np.ndarray,
    method: Pi0Method,
    lambdas: np.ndarray = STOREY_LAMBDAS,
    smooth_df: float = 3.0,
) -> np.ndarray:
    """:func:`estimate_pi0` of a checked 2-D float64 array (no checks)."""
    pi0_at = _pi0_lambda(pvalues, lambdas)
    return _pi0_of(pi0_at, pvalues.shape[1], method, lambdas, smooth_df)


def _pi0_of(
    pi0_at: np.ndarray,
    n_pvalues: int,
    method: Pi0Method,
    lambdas: np.ndarray,
    smooth_df: float,
) -> np.ndarray:
    """pi0 per image from its ``pi0(lambda)`` of ``n_pvalues`` p-values."""
    if method == "smoother":
        weights = _smoother_row_at_last(tuple(lambdas.tolist()), float(smooth_df))
        pi0 = pi0_at @ weights
    else:
        floor = np.quantile(pi0_at, 0.1, axis=1, keepdims=True)
        n_at_least = pi0_at * (n_pvalues * (1.0 - lambdas))
        mse = (n_at_least / (n_pvalues**2 * (1.0 - lambdas) ** 2)) * (
            1.0 - n_at_least / n_pvalues
        ) + (pi0_at - floor) ** 2
        at_least_mse = mse == mse.min(axis=1, keepdims=True)
        pi0 = np.where(at_least_mse, pi0_at, np.inf).min(axis=1)
    return np.clip(pi0, 0.0, 1.0)

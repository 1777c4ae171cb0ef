"""Local false discovery rate by Lindsey's method (Efron 2001; Method page, step 6)."""

from functools import cache
from typing import Literal, NamedTuple

import numpy as np
from numpy.polynomial import legendre
from numpy.typing import ArrayLike

from ._pvalues import search_rows
from ._validation import as_finite_2d, as_sorted_reference

N_EDGES = 30
N_BINS = N_EDGES - 1
DEGREE = 7
# Keeps the Poisson fit finite where the maximum-likelihood fit does not exist (fewer
# than DEGREE + 1 occupied bins); elsewhere it moves the fitted means by ~1e-10.
RIDGE = 1e-8
_MAX_ITER = 100
_STEP_TOL = 1e-10
_MAX_LOG_MEAN = 700.0  # exp(700) is finite in float64

LfdrNull = Literal["normal", "bootstrap"]


class _Design(NamedTuple):
    basis: np.ndarray  # (N_BINS, DEGREE + 1), orthonormal columns
    to_legendre: np.ndarray  # maps basis coefficients to Legendre coefficients


@cache
def _design() -> _Design:
    """Orthonormal degree-7 polynomial basis on the bin centres.

    A Poisson GLM's fitted means depend only on the column space of its design, and
    the polynomials of degree <= 7 in the bin centres c_k = lo + (k + 1/2) w are the
    polynomials in k whatever lo and w are (an affine change of variable). So one
    fixed, well-conditioned basis serves every image; scaling the monomial columns to
    unit std (the spec's design) spans the same space and gives the same fit.
    """
    centres = (np.arange(N_BINS) - (N_BINS - 1) / 2) / ((N_BINS - 1) / 2)
    basis, upper = np.linalg.qr(legendre.legvander(centres, DEGREE))
    return _Design(basis, np.linalg.inv(upper).T)


def _penalised_loglik(
    counts: np.ndarray, coef: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    log_means = np.minimum(coef @ basis.T, _MAX_LOG_MEAN)
    return np.sum(
        counts * log_means - np.exp(log_means), axis=1
    ) - 0.5 * RIDGE * np.sum(coef**2, axis=1)


def fit_log_polynomial(counts: ArrayLike) -> np.ndarray:
    """Lindsey's Poisson regression of histogram counts on a degree-7 polynomial.

    Maximises the Poisson log-likelihood of ``counts[i, k]`` with log-mean a degree-7
    polynomial of the bin index, for all histograms at once: damped Newton (IRLS)
    steps, vectorised over rows, halved where they would lower the likelihood.

    Parameters
    ----------
    counts : array-like of shape (n_histograms, 29) or (29,)
        Bin counts of 29 equal-width bins.

    Returns
    -------
    coef : ndarray of shape (n_histograms, 8)
        Legendre coefficients of the fitted log-mean as a function of
        ``t = (k - 14) / 14``, ``k`` the (fractional) bin index, so that bin ``k``'s
        fitted mean is ``exp(legval(t_k, coef[i]))``.

    Examples
    --------
    >>> import numpy as np
    >>> from numpy.polynomial import legendre
    >>> from sklearn_arb.stats import fit_log_polynomial
    >>> t = (np.arange(29) - 14) / 14
    >>> counts = np.round(200 * np.exp(-4 * t**2))
    >>> coef = fit_log_polynomial(counts)
    >>> fitted = np.exp(legendre.legval(t, coef[0]))
    >>> bool(np.isclose(fitted.sum(), counts.sum()))  # a Poisson GLM property
    True
    """
    counts = as_finite_2d(counts, "counts")
    if counts.shape[1] != N_BINS or np.any(counts < 0):
        raise ValueError(
            f"counts must hold {N_BINS} non-negative bin counts per row; got shape "
            f"{counts.shape}. Build them with 30 equally spaced edges."
        )
    return _fit_log_polynomial(counts)


def _fit_log_polynomial(counts: np.ndarray) -> np.ndarray:
    basis, to_legendre = _design()
    n_coef = basis.shape[1]
    coef = np.log(counts + 0.5) @ basis  # least squares start, basis is orthonormal
    loglik = _penalised_loglik(counts, coef, basis)
    ridge = RIDGE * np.eye(n_coef)
    for _ in range(_MAX_ITER):
        means = np.exp(np.minimum(coef @ basis.T, _MAX_LOG_MEAN))
        gradient = (counts - means) @ basis - RIDGE * coef
        hessian = (basis.T * means[:, np.newaxis, :]) @ basis + ridge
        step = np.linalg.solve(hessian, gradient[..., np.newaxis])[..., 0]
        new_coef = coef + step
        new_loglik = _penalised_loglik(counts, new_coef, basis)
        worse = new_loglik < loglik - 1e-13 * np.abs(loglik)
        for _ in range(50):
            if not worse.any():
                break
            step[worse] *= 0.5
            new_coef[worse] = coef[worse] + step[worse]
            new_loglik[worse] = _penalised_loglik(counts[worse], new_coef[worse], basis)
            worse = new_loglik < loglik - 1e-13 * np.abs(loglik)
        coef, loglik = new_coef, new_loglik
        if np.max(np.abs(step)) < _STEP_TOL:
            break
    return coef @ to_legendre


def _histogram_edges(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """30 equally spaced edges per row; a zero range becomes a unit-wide one."""
    flat = upper <= lower
    lower = np.where(flat, lower - 0.5, lower)
    upper = np.where(flat, upper + 0.5, upper)
    steps = np.arange(N_EDGES) / N_BINS
    edges = lower[:, np.newaxis] + (upper - lower)[:, np.newaxis] * steps
    edges[:, -1] = upper  # exact, so the maximum falls in the last bin
    return edges


def _bin_counts(sorted_sample: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in [e_k, e_k+1), the last bin closed, as np.histogram does."""
    below = np.empty(edges.shape, dtype=np.intp)
    below[:, :-1] = search_rows(sorted_sample, edges[:, :-1], "left")
    below[:, -1:] = search_rows(sorted_sample, edges[:, -1:], "right")
    return np.diff(below, axis=1).astype(np.float64)


def _lindsey_log_density(
    at: np.ndarray, sorted_sample: np.ndarray, cover_at: bool
) -> np.ndarray:
    lower = sorted_sample[:, 0]
    upper = sorted_sample[:, -1]
    if sorted_sample.shape[0] != at.shape[0]:  # one shared (pooled) sample
        lower = np.full(at.shape[0], lower[0])
        upper = np.full(at.shape[0], upper[0])
    if cover_at:
        lower = np.minimum(lower, at.min(axis=1))
        upper = np.maximum(upper, at.max(axis=1))
    edges = _histogram_edges(lower, upper)
    coef = _fit_log_polynomial(_bin_counts(sorted_sample, edges))
    width = (edges[:, -1] - edges[:, 0]) / N_BINS
    position = (at - edges[:, :1]) / width[:, np.newaxis] - 0.5  # fractional bin index
    t = (position - (N_BINS - 1) / 2) / ((N_BINS - 1) / 2)
    log_counts = legendre.legval(t, coef.T[:, :, np.newaxis], tensor=False)
    return log_counts - np.log(sorted_sample.shape[1] * width)[:, np.newaxis]


def lindsey_log_density(
    at: ArrayLike, sample: ArrayLike | None = None, *, sample_is_sorted: bool = False
) -> np.ndarray:
    """Log of a density estimated by Lindsey's method, evaluated at given points.

    A histogram of the sample (30 equally spaced edges, 29 bins), a Poisson regression
    of the counts on a degree-7 polynomial of the bin centre, and the fitted mean
    divided by (sample size x bin width), evaluated at each point of ``at``.

    The edges span the sample's range (the spec, when the sample is ``at`` itself).
    For another sample (the bootstrap null density), they span the sample and ``at``
    together: a degree-7 polynomial extrapolated past its histogram is no density
    estimate, while empty bins there make the fitted density decay.

    Parameters
    ----------
    at : array-like of shape (n_images, n_points) or (n_points,)
        Where to evaluate the density, one row per image.
    sample : array-like of shape (n_images, m), (1, m) or (m,), default=None
        The sample whose density is estimated: one row per image, or one row shared
        by all images. None: each row of ``at`` is its own sample.
    sample_is_sorted : bool, default=False
        Set True when every row of ``sample`` is sorted ascending, to skip the sort.

    Returns
    -------
    log_density : ndarray of shape (n_images, n_points)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import lindsey_log_density
    >>> z = np.random.default_rng(0).standard_normal((1, 5000))
    >>> density = np.exp(lindsey_log_density([[0.0, 1.0]], z))
    >>> np.abs(density - [0.3989, 0.2420]).max() < 0.03
    np.True_
    """
    at = as_finite_2d(at, "at")
    if sample is None:
        return _lindsey_log_density(at, np.sort(at, axis=1), cover_at=False)
    sorted_sample = as_sorted_reference(
        sample,
        "sample",
        at.shape[0],
        "sample has {n_rows} rows but at has {n_images}; pass one sample row per "
        "image, or a single shared row.",
        sample_is_sorted,
    )
    return _lindsey_log_density(at, sorted_sample, cover_at=True)


def local_fdr(
    z: ArrayLike,
    pi0: ArrayLike = 1.0,
    *,
    null: LfdrNull = "normal",
    null_z: ArrayLike | None = None,
    null_is_sorted: bool = False,
) -> np.ndarray:
    """Local false discovery rate ``lfdr_t = pi0 f0(z_t) / f(z_t)``, clipped to [0, 1].

    ``f``, the density of the observed z of the image, by Lindsey's method (see
    :func:`lindsey_log_density`); ``f0`` the standard normal density (``"normal"``,
    what the authors' code used) or the density of the bootstrap null z fitted the
    same way (``"bootstrap"``). Computed on the log scale, so no ratio overflows.

    Parameters
    ----------
    z : array-like of shape (n_images, n_tokens) or (n_tokens,)
        Observed z statistics.
    pi0 : float or array-like of shape (n_images,), default=1.0
        Proportion of null scores (1 is the conservative form).
    null : {"normal", "bootstrap"}, default="normal"
        The null density ``f0``.
    null_z : array-like of shape (n_images, m0), (1, m0) or (m0,), default=None
        Null z statistics (per image, or one shared pooled row); required for
        ``null="bootstrap"``.
    null_is_sorted : bool, default=False
        Set True when every row of ``null_z`` is sorted ascending.

    Returns
    -------
    lfdr : ndarray of shape (n_images, n_tokens)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import local_fdr
    >>> rng = np.random.default_rng(0)
    >>> z = np.concatenate([rng.standard_normal(900), rng.normal(4.0, 1.0, 100)])
    >>> lfdr = local_fdr(z[np.newaxis], pi0=0.9)
    >>> bool(lfdr[0, (z > -2) & (z < 0)].min() > 0.8), bool(lfdr[0, z > 5].max() < 0.05)
    (True, True)
    """
    if null not in ("normal", "bootstrap"):
        raise ValueError(f"null must be 'normal' or 'bootstrap'; got {null!r}.")
    z = as_finite_2d(z, "z")
    pi0 = np.broadcast_to(np.asarray(pi0, dtype=np.float64).reshape(-1), (z.shape[0],))
    if np.any((pi0 < 0) | (pi0 > 1)) or not np.isfinite(pi0).all():
        raise ValueError(f"pi0 must lie in [0, 1]; got {pi0}.")
    if null == "normal":
        log_null_density = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
    elif null_z is None:
        raise ValueError("null='bootstrap' needs the bootstrap z: pass null_z.")
    else:
        log_null_density = lindsey_log_density(
            z, null_z, sample_is_sorted=null_is_sorted
        )
    return _lfdr_from_log_densities(pi0, log_null_density, lindsey_log_density(z))


def _lfdr_from_log_densities(
    pi0: np.ndarray, log_null_density: np.ndarray, log_density: np.ndarray
) -> np.ndarray:
    with np.errstate(divide="ignore"):  # pi0 = 0 gives log 0 = -inf, lfdr 0
        log_pi0 = np.log(pi0)[:, np.newaxis]
    return np.exp(np.minimum(log_pi0 + log_null_density - log_density, 0.0))

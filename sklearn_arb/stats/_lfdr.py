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
# Newton converges quadratically: after a step this small the next would be ~1e-16,
# so the step is taken without a likelihood check and the fit ends.
_STEP_TOL = 1e-8
_MAX_LOG_MEAN = 700.0  # exp(700) is finite in float64

LfdrNull = Literal["normal", "bootstrap"]


def _legendre_to_power() -> np.ndarray:
    """Row i: the power-series coefficients of the Legendre polynomial P_i."""
    matrix = np.zeros((DEGREE + 1, DEGREE + 1))
    for degree, unit in enumerate(np.eye(DEGREE + 1)):
        matrix[degree, : degree + 1] = legendre.leg2poly(unit)
    return matrix


_LEGENDRE_TO_POWER = _legendre_to_power()


class _Design(NamedTuple):
    basis: np.ndarray  # (N_BINS, DEGREE + 1), orthonormal columns
    basis_t: np.ndarray  # its transpose, contiguous
    outer: np.ndarray  # (N_BINS, n_coef^2): row k is the flattened basis_k basis_k^T
    ridge: np.ndarray  # RIDGE * identity (n_coef, n_coef)
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
    outer = (basis[:, :, np.newaxis] * basis[:, np.newaxis, :]).reshape(N_BINS, -1)
    ridge = RIDGE * np.eye(basis.shape[1])
    return _Design(
        basis, np.ascontiguousarray(basis.T), outer, ridge, np.linalg.inv(upper).T
    )


class _Fit(NamedTuple):
    """Coefficients with their log-means, means and penalised log-likelihood."""

    coef: np.ndarray
    log_means: np.ndarray
    means: np.ndarray
    loglik: np.ndarray


def _evaluate(counts: np.ndarray, coef: np.ndarray, basis_t: np.ndarray) -> _Fit:
    log_means = np.minimum(coef @ basis_t, _MAX_LOG_MEAN)
    means = np.exp(log_means)
    loglik = (counts * log_means - means).sum(axis=1) - 0.5 * RIDGE * (coef * coef).sum(
        axis=1
    )
    return _Fit(coef, log_means, means, loglik)


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
    basis, basis_t, outer, ridge, to_legendre = _design()
    n_coef = basis.shape[1]
    # least squares start (the basis is orthonormal)
    fit = _evaluate(counts, np.log(counts + 0.5) @ basis, basis_t)
    for _ in range(_MAX_ITER):
        gradient = (counts - fit.means) @ basis - RIDGE * fit.coef
        # sum_k means_k basis_k basis_k^T as one product
        hessian = (fit.means @ outer).reshape(-1, n_coef, n_coef) + ridge
        step = np.linalg.solve(hessian, gradient[..., np.newaxis])[..., 0]
        if np.abs(step).max() < _STEP_TOL:
            return (fit.coef + step) @ to_legendre
        new = _evaluate(counts, fit.coef + step, basis_t)
        for _ in range(50):
            worse = new.loglik < fit.loglik - 1e-13 * np.abs(fit.loglik)
            if not worse.any():
                break
            step[worse] *= 0.5
            halved = _evaluate(counts[worse], fit.coef[worse] + step[worse], basis_t)
            for array, update in zip(new, halved, strict=True):
                array[worse] = update
        fit = new
    return fit.coef @ to_legendre


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
    # t = (fractional bin index - 14) / 14, the fit's variable
    half_range = (N_BINS - 1) / 2 * width[:, np.newaxis]
    t = (at - (edges[:, :1] + 0.5 * width[:, np.newaxis] + half_range)) / half_range
    # Horner on the power series: a few passes over (n, P) instead of legval's many
    # (in place: one (n, P) array for the whole evaluation)
    power = coef @ _LEGENDRE_TO_POWER
    log_counts = np.multiply(power[:, -1:], t)
    for degree in range(DEGREE - 1, 0, -1):
        log_counts += power[:, degree : degree + 1]
        log_counts *= t
    log_counts += power[:, :1]
    log_counts -= np.log(sorted_sample.shape[1] * width)[:, np.newaxis]
    return log_counts


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
    sorted_null_z = None
    if null == "bootstrap":
        if null_z is None:
            raise ValueError("null='bootstrap' needs the bootstrap z: pass null_z.")
        sorted_null_z = as_sorted_reference(
            null_z,
            "null_z",
            z.shape[0],
            "null_z has {n_rows} rows but z has {n_images}; pass one null row per "
            "image, or a single shared row.",
            null_is_sorted,
        )
    return local_fdr_unchecked(z, pi0, null, sorted_null_z)


def local_fdr_unchecked(
    z: np.ndarray,
    pi0: np.ndarray,
    null: LfdrNull,
    sorted_null_z: np.ndarray | None,
    sorted_z: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`local_fdr` of checked float64 arrays: ``z`` (n, P), ``pi0`` (n,),
    ``sorted_null_z`` (n or 1, m0) sorted (``null="bootstrap"`` only), and
    optionally ``z`` sorted by row."""
    if null == "normal":
        log_null_density = -0.5 * z * z - 0.5 * np.log(2 * np.pi)
    else:
        log_null_density = _lindsey_log_density(z, sorted_null_z, cover_at=True)
    if sorted_z is None:
        sorted_z = np.sort(z, axis=1)
    log_density = _lindsey_log_density(z, sorted_z, cover_at=False)
    with np.errstate(divide="ignore"):  # pi0 = 0 gives log 0 = -inf, lfdr 0
        log_pi0 = np.log(pi0)[:, np.newaxis]
    return np.exp(np.minimum(log_pi0 + log_null_density - log_density, 0.0))

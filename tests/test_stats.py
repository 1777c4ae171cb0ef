"""Tests of sklearn_arb.stats: known values, definitions, simulated truths."""

import numpy as np
import pytest
from numpy.polynomial import legendre
from numpy.testing import assert_allclose, assert_array_equal
from scipy.interpolate import make_smoothing_spline
from scipy.optimize import brentq, minimize
from scipy.stats import norm

from sklearn_arb.stats import (
    STOREY_LAMBDAS,
    empirical_pvalues,
    estimate_pi0,
    fit_log_polynomial,
    lindsey_log_density,
    local_fdr,
    log_scores,
    null_moments,
    pi0_lambda,
    spline_smoother_matrix,
    z_scores,
)

# --------------------------------------------------------------------------- z


def test_z_scores_hand_computed():
    # observed [e^3, e^1], null [e^0, e^2]: mu0 = 1, sigma0 = 1
    logs = log_scores(np.exp([[3.0, 1.0, 0.0, 2.0]]))
    mean, std = null_moments(logs[:, 2:])
    assert_allclose(mean, [1.0])
    assert_allclose(std, [1.0])
    assert_allclose(z_scores(logs[:, :2], mean, std), [[2.0, 0.0]], atol=1e-12)
    assert_allclose(z_scores(logs[:, 2:], mean, std), [[-1.0, 1.0]], atol=1e-12)


def test_null_moments_pooled_is_over_all_rows_with_ddof_0():
    null = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 8.0]])
    mean, std = null_moments(null, pooled=True)
    assert_allclose(mean, [null.mean()])
    assert_allclose(std, [null.std()])
    per_row_mean, per_row_std = null_moments(null)
    assert_allclose(per_row_mean, null.mean(axis=1))
    assert_allclose(per_row_std, null.std(axis=1))


def test_log_floor_rule_smallest_positive_of_the_row():
    logs = log_scores([[0.5, 0.0, -3.0, 0.25], [2.0, 4.0, 0.0, 1.0]])
    assert_allclose(np.exp(logs), [[0.5, 0.25, 0.25, 0.25], [2.0, 4.0, 1.0, 1.0]])
    # a row without any positive score is constant, finite
    no_positive = log_scores([[0.0, -1.0, -2.0]])
    assert np.isfinite(no_positive).all()
    assert np.ptp(no_positive) == 0


def test_zero_variance_null_gives_finite_z():
    mean, std = null_moments(np.log([[0.1, 0.1, 0.1, 0.1]]))
    assert_array_equal(std, [1.0])
    z = z_scores(np.log([[0.2, 0.1, 0.05]]), mean, std)
    assert_allclose(z, [[np.log(2), 0.0, -np.log(2)]], atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_with_the_fix(bad):
    values = np.array([[0.1, bad, 0.3, 0.2]])
    for call in (
        lambda: log_scores(values),
        lambda: null_moments(values),
        lambda: empirical_pvalues(values, [[0.0, 1.0]]),
        lambda: empirical_pvalues([[0.0, 1.0]], values),
        lambda: estimate_pi0(values),
        lambda: local_fdr(values),
    ):
        with pytest.raises(ValueError, match=r"NaN or inf.*nan_to_num"):
            call()


# --------------------------------------------------------------------------- p


def test_pvalues_one_sided_hand_computed_with_ties():
    z = [[2.0, 1.0, 0.0, -5.0]]
    null_z = [[1.0, 1.0, 0.0, -1.0]]
    # (1 + #{z0 >= z}) / (1 + 4): ties count as at least as extreme
    assert_allclose(empirical_pvalues(z, null_z), [[1 / 5, 3 / 5, 4 / 5, 5 / 5]])


def test_pvalues_reference_hand_computed():
    z = [[2.0, -1.0]]
    null_z = [[0.5, -3.0]]
    # R = {2, 1, 0.5, 3}; p = 1 - #{r <= |z|} / 4
    assert_allclose(
        empirical_pvalues(z, null_z, kind="reference"), [[1 - 3 / 4, 1 - 2 / 4]]
    )


def test_pvalues_two_sided_hand_computed_with_ties_and_zero():
    z = [[2.0, -1.0, 0.0, 0.5]]
    null_z = [[1.0, -1.0, 0.0, -3.0]]
    # |z0| = {1, 1, 0, 3}; (1 + #{|z0| >= |z|}) / (1 + 4)
    assert_allclose(
        empirical_pvalues(z, null_z, kind="two-sided"), [[2 / 5, 4 / 5, 5 / 5, 4 / 5]]
    )


@pytest.mark.parametrize("kind", ["one-sided", "two-sided", "reference"])
def test_pvalues_equal_the_brute_force_definition(kind):
    rng = np.random.default_rng(0)
    z = rng.integers(-4, 5, size=(3, 40)).astype(float)  # many ties
    null_z = rng.integers(-4, 5, size=(3, 60)).astype(float)
    expected = np.empty_like(z)
    for i in range(3):
        if kind == "one-sided":
            at_least = (null_z[i][None, :] >= z[i][:, None]).sum(axis=1)
            expected[i] = (1 + at_least) / (1 + null_z.shape[1])
        elif kind == "two-sided":
            at_least = (np.abs(null_z[i])[None, :] >= np.abs(z[i])[:, None]).sum(1)
            expected[i] = (1 + at_least) / (1 + null_z.shape[1])
        else:
            reference = np.abs(np.concatenate([z[i], null_z[i]]))
            at_most = (reference[None, :] <= np.abs(z[i])[:, None]).sum(axis=1)
            expected[i] = 1 - at_most / reference.size
    assert_allclose(empirical_pvalues(z, null_z, kind=kind), expected)
    # a shared (pooled) null row equals giving it to each image
    shared = empirical_pvalues(z, null_z[0], kind=kind)
    assert_allclose(shared, empirical_pvalues(z, np.tile(null_z[0], (3, 1)), kind=kind))


# --------------------------------------------------------------------------- pi0


def test_pi0_lambda_hand_computed():
    p = [[0.04, 0.05, 0.5, 0.95, 1.0]]
    # lambda=0.05: #{p >= 0.05} = 4 -> 4 / (5 * 0.95); lambda=0.95: 2 / (5 * 0.05)
    values = pi0_lambda(p)
    assert_allclose(values[0, 0], 4 / (5 * 0.95))
    assert_allclose(values[0, -1], 2 / (5 * 0.05))


def _independent_df3_smoother(x: np.ndarray) -> np.ndarray:
    """trace(S) = 3 by root-finding on scipy's B-spline smoothing spline."""

    def smoother(lam: float) -> np.ndarray:
        return np.column_stack(
            [make_smoothing_spline(x, unit, lam=lam)(x) for unit in np.eye(x.size)]
        )

    log_lam = brentq(lambda s: np.trace(smoother(np.exp(s))) - 3.0, -15, 5, xtol=1e-13)
    return smoother(np.exp(log_lam))


def test_pi0_smoother_equals_the_df3_spline_definition():
    independent = _independent_df3_smoother(STOREY_LAMBDAS)
    assert_allclose(np.trace(spline_smoother_matrix(STOREY_LAMBDAS)), 3.0, atol=1e-9)
    rng = np.random.default_rng(1)
    pvalues = np.vstack(
        [
            rng.uniform(size=500),
            np.concatenate([rng.uniform(size=300), rng.uniform(0, 0.01, 200)]),
            rng.beta(0.5, 1.0, size=500),
        ]
    )
    by_definition = np.clip(pi0_lambda(pvalues) @ independent[-1], 0, 1)
    assert_allclose(estimate_pi0(pvalues), by_definition, atol=1e-6, rtol=0)
    # the spline reproduces straight lines, the definition of 'df >= 2'
    line = 1.0 + 2.0 * STOREY_LAMBDAS
    assert_allclose(spline_smoother_matrix(STOREY_LAMBDAS) @ line, line, atol=1e-9)


def test_pi0_bootstrap_equals_storeys_formula():
    rng = np.random.default_rng(2)
    pvalues = np.concatenate([rng.uniform(size=700), rng.uniform(0, 0.02, 300)])
    m = pvalues.size
    pi0_at = np.array([np.mean(pvalues >= lam) / (1 - lam) for lam in STOREY_LAMBDAS])
    w = np.array([np.sum(pvalues >= lam) for lam in STOREY_LAMBDAS])
    mse = (
        w / (m**2 * (1 - STOREY_LAMBDAS) ** 2) * (1 - w / m)
        + (pi0_at - np.quantile(pi0_at, 0.1)) ** 2
    )
    expected = min(pi0_at[mse == mse.min()].min(), 1.0)
    assert_allclose(estimate_pi0(pvalues, method="bootstrap"), [expected])


@pytest.mark.parametrize("method", ["smoother", "bootstrap"])
@pytest.mark.parametrize("true_pi0", [0.5, 0.8, 1.0])
def test_pi0_recovers_the_null_proportion(method, true_pi0):
    rng = np.random.default_rng(3)
    n_images, m = 8, 20000
    n_null = int(true_pi0 * m)
    null_p = rng.uniform(size=(n_images, n_null))
    signal_p = norm.sf(rng.normal(4.0, 1.0, size=(n_images, m - n_null)))
    estimates = estimate_pi0(np.hstack([null_p, signal_p]), method=method)
    # Storey's estimate is conservative; sampling sd is about 0.01 here
    assert np.all(estimates <= 1.0)
    assert np.all(np.abs(estimates - true_pi0) < 0.05), estimates


# --------------------------------------------------------------------------- lfdr


def _monomial_design(n_bins: int = 29, degree: int = 7) -> np.ndarray:
    """The spec's design: powers of the bin centres, columns scaled to unit std."""
    centres = np.linspace(-2.3, 4.1, n_bins)  # any affine grid spans the same space
    powers = centres[:, None] ** np.arange(degree + 1)
    scale = powers.std(axis=0)
    scale[0] = 1.0  # the constant column
    return powers / scale


def test_poisson_fit_is_the_maximum_likelihood_fit():
    rng = np.random.default_rng(4)
    z = np.concatenate([rng.standard_normal(3000), rng.normal(3.0, 0.7, 400)])
    counts, _ = np.histogram(z, bins=29)
    design = _monomial_design()

    def negative_loglik(beta):
        eta = design @ beta
        return np.sum(np.exp(eta) - counts * eta)

    def gradient(beta):
        return design.T @ (np.exp(design @ beta) - counts)

    start = np.linalg.lstsq(design, np.log(counts + 0.5), rcond=None)[0]
    independent = minimize(
        negative_loglik, start, jac=gradient, method="BFGS", options={"gtol": 1e-9}
    )
    t = (np.arange(29) - 14) / 14
    fitted = np.exp(legendre.legval(t, fit_log_polynomial(counts)[0]))
    assert_allclose(fitted, np.exp(design @ independent.x), rtol=1e-5, atol=1e-6)
    # score equations of a GLM with an intercept: fitted totals equal observed ones
    assert_allclose(fitted.sum(), counts.sum(), rtol=1e-8)


def test_lindsey_histogram_and_normalisation():
    rng = np.random.default_rng(5)
    z = rng.standard_normal(4000)
    counts, edges = np.histogram(z, bins=29)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    density = np.exp(lindsey_log_density(centres[None], z))[0]
    t = (np.arange(29) - 14) / 14
    fitted_counts = np.exp(legendre.legval(t, fit_log_polynomial(counts)[0]))
    assert_allclose(density * z.size * width, fitted_counts, rtol=1e-8)
    assert_allclose(np.sum(density * width), 1.0, rtol=1e-6)


def test_lfdr_tracks_the_true_lfdr_of_a_two_group_mixture():
    rng = np.random.default_rng(6)
    pi0, n = 0.9, 20000
    n_null = int(pi0 * n)
    z = np.concatenate([rng.standard_normal(n_null), rng.normal(3.0, 1.0, n - n_null)])
    f = pi0 * norm.pdf(z) + (1 - pi0) * norm.pdf(z, 3.0)
    true_lfdr = pi0 * norm.pdf(z) / f
    lfdr = local_fdr(z[None], pi0)[0]
    central = (z > -2.5) & (z < 5.0)
    assert np.mean(np.abs(lfdr - true_lfdr)[central]) < 0.02
    # Lindsey's polynomial is least accurate in the sparse far tails
    core = (z > -2.0) & (z < 5.0)
    assert np.max(np.abs(lfdr - true_lfdr)[core]) < 0.1
    # a bootstrap null drawn from N(0, 1) gives nearly the same lfdr
    null_z = rng.standard_normal(50000)
    lfdr_bootstrap = local_fdr(z[None], pi0, null="bootstrap", null_z=null_z)[0]
    assert np.mean(np.abs(lfdr_bootstrap - true_lfdr)[central]) < 0.03


def test_lfdr_is_in_unit_interval_without_nan_on_degenerate_input():
    for z in ([[1.0]], [[1.0, 1.0, 1.0]], [[0.0, 10.0]], [[-50.0, 0.0, 50.0]]):
        for pi0 in (0.0, 0.5, 1.0):
            lfdr = local_fdr(z, pi0)
            assert np.isfinite(lfdr).all()
            assert ((lfdr >= 0) & (lfdr <= 1)).all()
            lfdr = local_fdr(z, pi0, null="bootstrap", null_z=[[0.0]])
            assert np.isfinite(lfdr).all()
    assert_array_equal(local_fdr([[0.0, 1.0, 2.0]], 0.0), 0.0)


def test_vectorised_over_images_equals_image_by_image():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((4, 300)) + rng.uniform(0, 2, (4, 1))
    null_z = rng.standard_normal((4, 300))
    p = empirical_pvalues(z, null_z)
    pi0 = estimate_pi0(p)
    lfdr = local_fdr(z, pi0, null="bootstrap", null_z=null_z)
    for i in range(4):
        assert_allclose(p[i], empirical_pvalues(z[i], null_z[i])[0])
        assert_allclose(pi0[i], estimate_pi0(p[i])[0])
        assert_allclose(
            lfdr[i],
            local_fdr(z[i], pi0[i], null="bootstrap", null_z=null_z[i])[0],
            rtol=1e-9,
        )


@pytest.mark.parametrize("side", ["left", "right"])
def test_search_rows_counts_as_searchsorted_row_by_row(side):
    from sklearn_arb.stats._pvalues import search_rows

    rng = np.random.default_rng(0)
    sorted_rows = np.sort(rng.integers(0, 20, size=(4, 30)).astype(float), axis=1)
    values = rng.integers(-1, 22, size=(4, 25)).astype(float)  # ties, outside
    expected = [
        np.searchsorted(row, row_values, side=side)
        for row, row_values in zip(sorted_rows, values, strict=True)
    ]
    assert_array_equal(search_rows(sorted_rows, values, side), expected)
    shared = [np.searchsorted(sorted_rows[0], v, side=side) for v in values]
    assert_array_equal(search_rows(sorted_rows[:1], values, side), shared)
    assert_array_equal(search_rows(sorted_rows[0], values, side), shared)


def test_one_blas_thread_restores_the_thread_counts():
    from threadpoolctl import threadpool_info

    from sklearn_arb.stats._threads import one_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with one_blas_thread():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
    with pytest.raises(KeyError), one_blas_thread():
        raise KeyError  # restored on an error too
    assert blas_threads() == before


@pytest.mark.parametrize("kind", ["one-sided", "two-sided"])
@pytest.mark.parametrize("n_null_rows", [3, 1])
def test_critical_values_decide_as_the_pvalues_do(kind, n_null_rows):
    from sklearn_arb.stats._pvalues import (
        pvalue_counts_at_least,
        pvalues_at_most,
        pvalues_from_sorted,
        sort_null,
    )

    rng = np.random.default_rng(5)
    null = sort_null(rng.integers(-4, 5, size=(n_null_rows, 40)).astype(float))
    z = rng.integers(-6, 7, size=(3, 30)).astype(float)  # ties with the null
    p = pvalues_from_sorted(z, null, kind)
    grid = [k / 41 for k in (0, 1, 2, 20, 40, 41)]
    thresholds = np.array(sorted({*grid, np.nextafter(2 / 41, 1), 0.05, 0.95}))
    counts = pvalue_counts_at_least(z, null, kind, thresholds)
    assert_array_equal(counts, (p[:, :, None] >= thresholds).sum(axis=1))
    for alpha in thresholds:
        assert_array_equal(pvalues_at_most(z, null, kind, alpha), p <= alpha)

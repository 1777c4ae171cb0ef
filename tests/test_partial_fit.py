"""The pooled null learnt in chunks (partial_fit) and merged across workers."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from sklearn_arb import BootstrapAttentionRegularizer
from sklearn_arb.stats import empirical_pvalues
from sklearn_arb.stats._pooled_null import PooledNull

N_TOKENS = 49


def _maps(n_images, seed=0, n_bootstrap=2):
    rng = np.random.default_rng(seed)
    X = rng.lognormal(-4.0, 0.7, size=(n_images, (1 + n_bootstrap) * N_TOKENS))
    X[:, :5] *= 8.0  # a few attended tokens per image
    return X


def _state(arb):
    return (arb.null_count_, arb.pooled_null_.histogram, arb.pooled_null_.sorted_logs)


@pytest.mark.parametrize("max_exact_null", [4_194_304, 0])
@pytest.mark.parametrize("method", ["p", "pi0", "lfdr", "z"])
def test_partial_fit_over_any_chunking_and_order_equals_fit(max_exact_null, method):
    X = _maps(12)
    params = dict(method=method, n_bootstrap=2, max_exact_null=max_exact_null)
    whole = BootstrapAttentionRegularizer(**params).fit(X)
    rng = np.random.default_rng(1)
    for _ in range(3):
        order = rng.permutation(len(X))
        cuts = np.sort(rng.choice(np.arange(1, len(X)), size=3, replace=False))
        arb = BootstrapAttentionRegularizer(**params)
        for chunk in np.split(order, cuts):
            arb.partial_fit(X[chunk])
        assert arb.null_count_ == whole.null_count_ == 12 * 2 * N_TOKENS
        assert_array_equal(arb.pooled_null_.histogram, whole.pooled_null_.histogram)
        if max_exact_null:
            assert_array_equal(
                arb.pooled_null_.sorted_logs, whole.pooled_null_.sorted_logs
            )
        else:
            assert arb.pooled_null_.sorted_logs is None and arb.null_z_sorted_ is None
        assert_allclose(arb.null_mean_, whole.null_mean_, rtol=1e-13)
        assert_allclose(arb.null_std_, whole.null_std_, rtol=1e-12)
        assert_array_equal(arb.transform(X), whole.transform(X))


def test_merge_of_fits_on_a_split_equals_fit_on_the_union():
    X = _maps(10, seed=3)
    whole = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X)
    a = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X[:4])
    b = BootstrapAttentionRegularizer(n_bootstrap=2).partial_fit(X[4:7])
    b.partial_fit(X[7:])
    a_state = [np.copy(value) for value in _state(a)]
    for merged in (a.merge(b), b.merge(a)):
        for got, expected in zip(_state(merged), _state(whole), strict=True):
            assert_array_equal(got, expected)
        assert_allclose(merged.null_mean_, whole.null_mean_, rtol=1e-13)
        assert_allclose(merged.null_std_, whole.null_std_, rtol=1e-12)
        assert_array_equal(merged.transform(X), whole.transform(X))
        stats, expected = merged.compute_statistics(X), whole.compute_statistics(X)
        assert_allclose(stats.pvalues, expected.pvalues, rtol=0, atol=0)
    for got, before in zip(_state(a), a_state, strict=True):  # inputs untouched
        assert_array_equal(got, before)


def test_exact_null_is_dropped_once_the_merge_exceeds_max_exact_null():
    X = _maps(6)
    params = dict(n_bootstrap=2, max_exact_null=4 * 2 * N_TOKENS)
    arb = BootstrapAttentionRegularizer(**params).partial_fit(X[:3])
    assert arb.null_z_sorted_ is not None and arb.pvalue_bound_ == 0.0
    arb.partial_fit(X[3:])
    assert arb.null_z_sorted_ is None and 0 < arb.pvalue_bound_ < 0.05


@pytest.mark.parametrize("kind", ["one-sided", "two-sided", "reference"])
def test_histogram_pvalues_are_within_the_stated_bound_of_the_exact_ones(kind):
    rng = np.random.default_rng(4)
    null_logs = rng.normal(-5.0, 1.0, size=200_000)
    observed_logs = rng.normal(-4.5, 1.5, size=(5, 300))
    state = PooledNull.from_logs(null_logs, max_exact=0)
    z = (observed_logs - state.mean) / state.std
    exact = empirical_pvalues(z, (null_logs - state.mean) / state.std, kind=kind)
    approximate = state.histogram_pvalues(observed_logs, kind)
    # The bound per value: the count of the boundary bin(s) over 1 + m0 (P + m0).
    error = approximate - exact
    assert error.min() >= -1e-15
    denominator = 1 + state.count if kind != "reference" else 300 + state.count
    bound = state.pvalue_bound(kind) * (1 + state.count) / denominator
    assert error.max() <= bound + 1e-15
    assert bound < 2e-3  # the fine grid: about 2.4e-4 of a unit normal per bin
    assert error.max() > 0  # the histogram is not silently exact


def test_histogram_path_masks_differ_from_exact_only_within_the_bound():
    X = _maps(40, seed=5)
    exact = BootstrapAttentionRegularizer(n_bootstrap=2, alpha=0.05).fit(X)
    bounded = BootstrapAttentionRegularizer(
        n_bootstrap=2, alpha=0.05, max_exact_null=0
    ).fit(X)
    p_exact = exact.compute_statistics(X).pvalues
    p_bounded = bounded.compute_statistics(X).pvalues
    assert np.all(p_bounded >= p_exact)
    assert np.all(p_bounded - p_exact <= bounded.pvalue_bound_)
    kept_exact, kept_bounded = exact.transform(X) > 0, bounded.transform(X) > 0
    # Conservative: the bounded null keeps no token the exact one drops, and
    # drops only tokens whose exact p-value is within the bound of alpha.
    assert not np.any(kept_bounded & ~kept_exact)
    lost = kept_exact & ~kept_bounded
    assert np.all(p_exact[lost] > 0.05 - bounded.pvalue_bound_)


def test_partial_fit_rejects_a_chunk_of_another_layout():
    arb = BootstrapAttentionRegularizer(n_bootstrap=2).partial_fit(_maps(2))
    with pytest.raises(ValueError, match="features"):
        arb.partial_fit(_maps(2, n_bootstrap=1))


def test_merge_errors_name_the_problem():
    a = BootstrapAttentionRegularizer(n_bootstrap=2).fit(_maps(2))
    per_image = BootstrapAttentionRegularizer(null="per_image", n_bootstrap=2).fit(
        _maps(2)
    )
    other_layout = BootstrapAttentionRegularizer(n_bootstrap=1).fit(
        _maps(2, n_bootstrap=3)
    )
    with pytest.raises(ValueError, match="null='per_image'"):
        a.merge(per_image)
    with pytest.raises(ValueError, match="layouts"):
        a.merge(other_layout)


def test_lfdr_bootstrap_null_needs_the_exact_null():
    arb = BootstrapAttentionRegularizer(
        n_bootstrap=2, method="lfdr", lfdr_null="bootstrap", max_exact_null=0
    ).fit(_maps(3))
    with pytest.raises(ValueError, match="max_exact_null"):
        arb.transform(_maps(3))


def test_from_pooled_null_rebuilds_the_fitted_regularizer():
    X = _maps(6, seed=6)
    params = dict(method="lfdr", gamma=0.3, n_bootstrap=2, max_exact_null=10_000)
    fitted = BootstrapAttentionRegularizer(**params).fit(X)
    state = PooledNull.from_arrays(fitted.pooled_null_.to_arrays())
    rebuilt = BootstrapAttentionRegularizer.from_pooled_null(
        state, fitted.layout_, fitted.scale_, **params
    )
    for name in ("n_features_in_", "layout_", "scale_", "null_count_"):
        assert getattr(rebuilt, name) == getattr(fitted, name)
    assert_array_equal(rebuilt.null_z_sorted_, fitted.null_z_sorted_)
    assert rebuilt.get_params() == fitted.get_params()
    assert_array_equal(rebuilt.transform(X), fitted.transform(X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"null": "per_image"}, "makes a null='pooled' regularizer"),
        ({"scale": "linear"}, "on the log scale"),
        ({"n_bootstrap": 1}, "n_bootstrap=2"),
        ({"alpha": 2.0}, "alpha"),
    ],
)
def test_from_pooled_null_refuses_parameters_the_state_contradicts(params, message):
    fitted = BootstrapAttentionRegularizer(n_bootstrap=2).fit(_maps(2))
    with pytest.raises(ValueError, match=message):
        BootstrapAttentionRegularizer.from_pooled_null(
            fitted.pooled_null_, fitted.layout_, "log", **params
        )


def test_merging_a_state_with_itself_or_an_overlapping_one_is_refused():
    X = _maps(6, seed=7)
    a = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X[:3])
    b = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X[2:])  # shares image 2
    c = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X[3:])
    for merge in (
        lambda: a.merge(a),
        lambda: BootstrapAttentionRegularizer.merge(a, a),
        lambda: a.merge(clone(a).fit(X[:3])),  # the same images fitted again
        lambda: a.merge(b),
        lambda: a.merge(c).merge(c),
    ):
        with pytest.raises(ValueError, match=r"share \d+ image.*count their null"):
            merge()
    with pytest.raises(ValueError, match="share 1 image"):
        clone(a).partial_fit(X[:3]).partial_fit(X[2:4])
    merged = a.merge(c)  # disjoint: the union's state, digests included
    whole = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X)
    assert_array_equal(
        merged.pooled_null_.image_digests, whole.pooled_null_.image_digests
    )
    assert merged.pooled_null_.image_digests.size == 6


def test_state_arrays_keep_the_image_digests_small():
    X = _maps(5, seed=8)
    state = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X).pooled_null_
    arrays = state.to_arrays()
    assert arrays["image_digests"].dtype == np.uint64
    assert arrays["image_digests"].nbytes == 8 * 5
    again = PooledNull.from_arrays(arrays)
    assert_array_equal(again.image_digests, state.image_digests)
    with pytest.raises(ValueError, match="share 5 image"):
        again.merge(state, max_exact=10_000)


@pytest.mark.parametrize("tamper", ["value", "swap_in_histogram", "drop_digests"])
def test_a_state_whose_sorted_null_disagrees_with_its_histogram_is_refused(tamper):
    X = _maps(4, seed=9)
    arrays = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X).pooled_null_
    arrays = arrays.to_arrays()
    if tamper == "value":  # still sorted, same count, one value moved
        sorted_logs = arrays["sorted_logs"].copy()
        sorted_logs[-1] += 0.5
        arrays["sorted_logs"] = sorted_logs
        match = "sorted null disagrees with its histogram"
    elif tamper == "swap_in_histogram":  # same count, another bin
        bins = arrays["histogram_bins"].copy()
        bins[0] -= 1
        arrays["histogram_bins"] = bins
        match = "sorted null disagrees with its histogram"
    else:
        del arrays["image_digests"]
        match = "lacks 'image_digests'"
    with pytest.raises(ValueError, match=match):
        PooledNull.from_arrays(arrays)

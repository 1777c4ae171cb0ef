"""Tests of BootstrapAttentionRegularizer and the thresholds."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import Bunch
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_arb import BootstrapAttentionRegularizer, MapLayout
from sklearn_arb._layout import with_layout
from sklearn_arb._thresholds import (
    THRESHOLD_RULES,
    ThresholdSettings,
    keep_most_significant,
    regularize_scores,
    resolve_threshold,
    significance_mask,
)
from sklearn_arb.stats import (
    empirical_pvalues,
    estimate_pi0,
    log_scores,
    null_moments,
    z_scores,
)

# Width of the fixed X each scikit-learn check feeds. A width that is not a multiple
# of 1 + n_bootstrap cannot be split into [observed | bootstrap 1 | ...]; fit must
# raise then, so such a check cannot apply to that layout. Each check below passes
# on one of the layouts tested (n_bootstrap 1, 2 or 4).
CHECK_DATA_WIDTH = {
    "check_dict_unchanged": 3,
    "check_dont_overwrite_parameters": 3,
    "check_dtype_object": 10,
    "check_estimators_dtypes": 5,
    "check_estimators_fit_returns_self": 2,
    "check_estimators_nan_inf": 3,
    "check_estimators_overwrite_params": 2,
    "check_estimators_pickle": 3,
    "check_f_contiguous_array_estimator": 3,
    "check_fit2d_1sample": 10,
    "check_fit2d_predict1d": 3,
    "check_fit_check_is_fitted": 2,
    "check_fit_idempotent": 2,
    "check_fit_score_takes_y": 3,
    "check_methods_sample_order_invariance": 3,
    "check_methods_subset_invariance": 3,
    "check_n_features_in": 2,
    "check_n_features_in_after_fitting": 4,
    "check_pipeline_consistency": 3,
    "check_positive_only_tag_during_fit": 4,
    "check_readonly_memmap_input": 2,
    "check_transformer_data_not_an_array": 3,
    "check_transformer_general": 3,
    "check_transformer_preserve_dtypes": 3,
}


def _layout_mismatches(estimator: BootstrapAttentionRegularizer) -> dict[str, str]:
    n_bootstrap = estimator.n_bootstrap
    n_maps = 1 + (1 if n_bootstrap == "auto" else n_bootstrap)
    return {
        check: (
            f"the check's X has {width} columns, not a multiple of 1 + n_bootstrap = "
            f"{n_maps}: the [observed | bootstrap] layout cannot be split and fit "
            "rightly raises; the check runs on another n_bootstrap here"
        )
        for check, width in CHECK_DATA_WIDTH.items()
        if width % n_maps
    }


@parametrize_with_checks(
    [
        BootstrapAttentionRegularizer(),
        BootstrapAttentionRegularizer(
            n_bootstrap=2,
            null="per_image",
            method="lfdr",
            lfdr_null="bootstrap",
            pvalue="reference",
            pi0="bootstrap",
            soft=True,
        ),
        BootstrapAttentionRegularizer(
            n_bootstrap=4, method="pi0", z_threshold="median", lfdr_null="bootstrap"
        ),
    ],
    expected_failed_checks=_layout_mismatches,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _maps(n_images=3, n_tokens=64, n_bootstrap=1, n_signal=6, seed=0):
    """Log-normal attention maps; the first n_signal tokens strongly attended."""
    rng = np.random.default_rng(seed)
    maps = rng.lognormal(-5.0, 0.6, size=(n_images, (1 + n_bootstrap) * n_tokens))
    maps[:, :n_signal] *= 30.0
    return maps


ALL_OPTIONS = [
    {"method": "z"},
    {"method": "p"},
    {"method": "p", "pvalue": "reference", "alpha": "median"},
    {"method": "p", "alpha": 0.3, "threshold_kind": "quantile"},
    {"method": "lfdr", "lfdr_null": "bootstrap", "pi0": "bootstrap"},
    {"method": "lfdr", "gamma": "median", "soft": True},
    {"method": "pi0"},
    {"method": "pi0", "pi0": 0.75, "z_threshold": "median"},
]


# ----------------------------------------------------------------- the layout


@pytest.mark.parametrize("n_bootstrap", [1, 3])
def test_width_not_divisible_raises_naming_width_and_n_bootstrap(n_bootstrap):
    X = np.ones((2, 7))
    with pytest.raises(ValueError, match=r"7 feature\(s\).*1 \+ n_bootstrap"):
        BootstrapAttentionRegularizer(n_bootstrap=n_bootstrap).fit(X)


def test_auto_n_bootstrap_reads_the_attached_layout():
    X = _maps(n_tokens=64, n_bootstrap=3)
    tagged = with_layout(X, MapLayout(n_tokens=64, n_bootstrap=3))
    auto = BootstrapAttentionRegularizer(null="per_image").fit(tagged)
    assert auto.layout_ == MapLayout(64, 3)
    assert (auto.n_bootstrap_, auto.n_tokens_) == (3, 64)
    explicit = BootstrapAttentionRegularizer(n_bootstrap=3, null="per_image").fit(X)
    assert_array_equal(auto.transform(tagged), explicit.transform(X))
    assert_array_equal(auto.transform(X), explicit.transform(X))  # a plain array too
    # a plain array of the same width, without a layout: B = 1, P = 128
    plain = BootstrapAttentionRegularizer().fit(X)
    assert plain.layout_ == MapLayout(128, 1)


def test_explicit_n_bootstrap_disagreeing_with_the_maps_raises():
    tagged = with_layout(_maps(n_tokens=64, n_bootstrap=3), MapLayout(64, 3))
    with pytest.raises(ValueError, match=r"n_bootstrap=1 but .* n_bootstrap=3.*'auto'"):
        BootstrapAttentionRegularizer(n_bootstrap=1).fit(tagged)
    BootstrapAttentionRegularizer(n_bootstrap=3).fit(tagged)  # agreeing is fine


def test_maps_of_another_layout_at_transform_raise():
    # same width (256 columns), other layout: P=128, B=1 vs P=64, B=3
    X = _maps(n_tokens=64, n_bootstrap=3)
    arb = BootstrapAttentionRegularizer().fit(with_layout(X, MapLayout(128, 1)))
    with pytest.raises(ValueError, match=r"layout .* fitted on .* Call fit"):
        arb.transform(with_layout(X, MapLayout(64, 3)))


def test_maps_without_bootstrap_raise():
    tagged = with_layout(_maps(n_tokens=64, n_bootstrap=0), MapLayout(64, 0))
    with pytest.raises(ValueError, match=r"no bootstrap map.*n_bootstrap >= 1"):
        BootstrapAttentionRegularizer().fit(tagged)


def test_non_finite_input_raises():
    X = _maps()
    arb = BootstrapAttentionRegularizer().fit(X)
    X_bad = X.copy()
    X_bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        arb.transform(X_bad)


@pytest.mark.parametrize("n_bootstrap", [1, 3])
def test_statistics_follow_the_design_equations(n_bootstrap):
    X = _maps(n_bootstrap=n_bootstrap)
    n_tokens = 64
    arb = BootstrapAttentionRegularizer(n_bootstrap=n_bootstrap, null="per_image")
    stats = arb.fit(X).compute_statistics(X)
    logs = np.log(X)
    mean = logs[:, n_tokens:].mean(axis=1, keepdims=True)
    std = logs[:, n_tokens:].std(axis=1, keepdims=True)
    assert_allclose(stats.z, (logs[:, :n_tokens] - mean) / std)
    assert_allclose(stats.null_z, (logs[:, n_tokens:] - mean) / std)
    assert stats.null_z.shape == (3, n_bootstrap * n_tokens)
    assert_allclose(stats.pvalues, empirical_pvalues(stats.z, stats.null_z))
    expected = np.where((stats.z >= 0) & (stats.pvalues <= 0.05), X[:, :n_tokens], 0.0)
    assert_array_equal(stats.regularized, expected)
    assert_array_equal(arb.transform(X), expected)
    assert (stats.regularized[:, :6] > 0).all()  # the strong tokens survive


def test_pooled_null_is_learned_from_the_training_images():
    X_train, X_test = _maps(seed=1), _maps(n_images=2, seed=2)
    arb = BootstrapAttentionRegularizer().fit(X_train)
    null_logs = np.log(X_train[:, 64:])
    assert_allclose(arb.null_mean_, null_logs.mean())
    assert_allclose(arb.null_std_, null_logs.std())
    assert_allclose(
        arb.null_z_sorted_,
        np.sort((null_logs.ravel() - null_logs.mean()) / null_logs.std()),
    )
    stats = arb.compute_statistics(X_test)
    assert_allclose(stats.z, (np.log(X_test[:, :64]) - arb.null_mean_) / arb.null_std_)
    # the test rows' own bootstrap maps are not the null
    X_other_null = X_test.copy()
    X_other_null[:, 64:] *= 3.0
    assert_array_equal(arb.transform(X_other_null), arb.transform(X_test))


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_single_image_pooled_equals_per_image(options):
    X = _maps(n_images=1, n_tokens=100)
    pooled = BootstrapAttentionRegularizer(null="pooled", **options).fit(X)
    per_image = BootstrapAttentionRegularizer(null="per_image", **options).fit(X)
    pooled_stats = pooled.compute_statistics(X)
    per_image_stats = per_image.compute_statistics(X)
    for name in ("z", "pvalues", "pi0", "lfdr", "keep_mask", "regularized"):
        assert_allclose(pooled_stats[name], per_image_stats[name], rtol=1e-12)
    assert_array_equal(pooled.transform(X), per_image.transform(X))


# ----------------------------------------------------------------- set_params after fit


def test_pooled_null_after_a_per_image_fit_asks_for_fit():
    X = _maps()
    arb = BootstrapAttentionRegularizer(null="per_image").fit(X)
    arb.set_params(null="pooled")
    for call in (arb.transform, arb.compute_statistics):
        with pytest.raises(
            ValueError, match=r"fitted with null='per_image'.*fit again"
        ):
            call(X)
    assert_array_equal(arb.fit(X).transform(X), clone(arb).fit(X).transform(X))
    # a pooled fit followed by a per-image fit leaves no stale pooled null
    arb.set_params(null="per_image").fit(X)
    with pytest.raises(ValueError, match="fitted with null='per_image'"):
        arb.set_params(null="pooled").transform(X)


def test_per_image_null_after_a_pooled_fit_needs_no_refit():
    X = _maps()
    arb = BootstrapAttentionRegularizer(null="pooled").fit(X)
    per_image = BootstrapAttentionRegularizer(null="per_image").fit(X).transform(X)
    assert_array_equal(arb.set_params(null="per_image").transform(X), per_image)


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 2.0},
        {"gamma": -0.1},
        {"z_threshold": "mean"},
        {"threshold_kind": "quantiles"},
        {"pi0": 1.5},
        {"pi0_pvalues": "one-sided"},
    ],
)
def test_thresholds_set_after_fit_are_validated_at_transform(params):
    X = _maps()
    arb = BootstrapAttentionRegularizer(method="lfdr").fit(X)
    arb.set_params(**params)
    name = next(iter(params))
    for call in (arb.transform, arb.compute_statistics):
        with pytest.raises(ValueError, match=f"'{name}' parameter"):
            call(X)


def test_n_bootstrap_set_after_fit_asks_for_fit():
    X = _maps(n_tokens=64, n_bootstrap=3)
    arb = BootstrapAttentionRegularizer(n_bootstrap=1).fit(X)  # P = 128
    arb.set_params(n_bootstrap=3)
    with pytest.raises(ValueError, match=r"n_bootstrap=3 .* n_bootstrap=1.*fit again"):
        arb.transform(X)
    assert arb.fit(X).n_tokens_ == 64


# ----------------------------------------------------------------- invariances


@pytest.mark.parametrize("options", ALL_OPTIONS)
@pytest.mark.parametrize("null", ["pooled", "per_image"])
def test_invariances(options, null):
    X = _maps(n_images=4, n_tokens=81, n_bootstrap=2)
    X_before = X.copy()
    arb = BootstrapAttentionRegularizer(n_bootstrap=2, null=null, **options)
    masks = arb.fit(X).compute_statistics(X).keep_mask
    assert_array_equal(X, X_before)  # input never modified
    # scaling every score by a constant changes no mask
    for factor in (8.0, 1e-3):
        scaled = clone(arb).fit(factor * X).compute_statistics(factor * X)
        assert_array_equal(scaled.keep_mask, masks)
    # permuting the tokens (the same permutation in every map) permutes the output
    order = np.random.default_rng(0).permutation(81)
    columns = np.concatenate([order + block * 81 for block in range(3)])
    permuted = clone(arb).fit(X[:, columns]).transform(X[:, columns])
    assert_allclose(permuted, arb.transform(X)[:, order], rtol=1e-12)


@pytest.mark.parametrize("options", ALL_OPTIONS)
@pytest.mark.parametrize("null", ["pooled", "per_image"])
def test_transform_is_compute_statistics_regularized(options, null):
    X = _maps(n_images=3, n_tokens=81, n_bootstrap=2)
    arb = BootstrapAttentionRegularizer(n_bootstrap=2, null=null, **options).fit(X)
    assert_array_equal(arb.transform(X), arb.compute_statistics(X).regularized)


def test_float32_input_keeps_dtype_and_is_not_modified():
    X = _maps().astype(np.float32)
    X_before = X.copy()
    maps = BootstrapAttentionRegularizer(soft=True).fit(X).transform(X)
    assert maps.dtype == np.float32
    assert_array_equal(X, X_before)


def test_zero_and_negative_scores_follow_the_floor_rule():
    X = _maps(n_images=2)
    X[0, 10] = 0.0
    X[1, 70] = -1.0
    with pytest.warns(UserWarning, match="2 of 256 scores are <= 0"):
        arb = BootstrapAttentionRegularizer(null="per_image").fit(X)
    stats = arb.compute_statistics(X)
    assert all(np.isfinite(stats[k]).all() for k in ("z", "pvalues", "lfdr", "pi0"))
    # a zero counts as the least attended token of its image
    assert stats.z[0, 10] == stats.z[0].min()
    assert stats.regularized[0, 10] == 0.0


def test_signed_maps_on_the_log_scale_warn_once_per_fit_naming_auto():
    X = _maps(n_images=3)
    signed = X - np.median(X, axis=1, keepdims=True)  # CDAM-like: half negative
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BootstrapAttentionRegularizer().fit(signed)
        arb = BootstrapAttentionRegularizer().partial_fit(signed[:1])
        arb.partial_fit(signed[1:])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3, messages  # fit, then each partial_fit call
    assert all("scale='auto'" in m and "<= 0" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BootstrapAttentionRegularizer(scale="auto").fit(signed)  # linear: no floor
        BootstrapAttentionRegularizer().fit(X)  # positive maps


def test_constant_null_and_constant_maps_give_no_nan():
    X = np.full((2, 20), 0.01)
    X[0, :10] = np.linspace(0.005, 0.05, 10)
    for null in ("pooled", "per_image"):
        stats = (
            BootstrapAttentionRegularizer(null=null, method="lfdr")
            .fit(X)
            .compute_statistics(X)
        )
        for name in ("z", "null_z", "pvalues", "lfdr", "pi0", "regularized"):
            assert np.isfinite(stats[name]).all(), name


def test_soft_shrinks_kept_scores_by_one_minus_lfdr():
    X = _maps()
    stats = (
        BootstrapAttentionRegularizer(method="lfdr", soft=True)
        .fit(X)
        .compute_statistics(X)
    )
    expected = np.where(stats.keep_mask, X[:, :64] * (1 - stats.lfdr), 0.0)
    assert_allclose(stats.regularized, expected)


def test_pi0_method_keeps_the_most_significant_fraction():
    X = _maps(n_tokens=100)
    arb = BootstrapAttentionRegularizer(method="pi0", pi0=0.9, z_threshold=-np.inf)
    stats = arb.fit(X).compute_statistics(X)
    for row in range(3):
        kept_p = stats.pvalues[row, stats.keep_mask[row]]
        dropped_p = stats.pvalues[row, ~stats.keep_mask[row]]
        assert kept_p.max() < dropped_p.min()  # the most significant ones
        assert stats.keep_mask[row].sum() >= 10  # floor(0.1 * 100), ties kept


def _under_attended_maps(n_images=4, n_tokens=400, seed=0):
    """Maps as softmax attention makes them: a few tokens far above the null, most
    a little below it (they share what is left)."""
    rng = np.random.default_rng(seed)
    null = rng.normal(0.0, 1.0, size=(n_images, n_tokens))
    observed = rng.normal(-1.0, 0.5, size=(n_images, n_tokens))
    observed[:, :20] = rng.normal(3.0, 0.5, size=(n_images, 20))
    return np.exp(np.hstack([observed, null]))


@pytest.mark.parametrize("pvalue", ["one-sided", "two-sided", "reference"])
@pytest.mark.parametrize("pi0", ["smoother", "bootstrap"])
@pytest.mark.parametrize("null", ["pooled", "per_image"])
def test_pi0_is_estimated_from_two_sided_pvalues_by_default(pvalue, pi0, null):
    X = _under_attended_maps()
    arb = BootstrapAttentionRegularizer(null=null, pvalue=pvalue, pi0=pi0)
    stats = arb.fit(X).compute_statistics(X)
    kind = "reference" if pvalue == "reference" else "two-sided"
    null_z = stats.null_z if null == "per_image" else arb.null_z_sorted_
    assert_allclose(stats.pvalues, empirical_pvalues(stats.z, null_z, kind=pvalue))
    two_sided = empirical_pvalues(stats.z, null_z, kind=kind)
    assert_allclose(stats.pi0, estimate_pi0(two_sided, method=pi0))
    thresholded = arb.set_params(pi0_pvalues="thresholded").compute_statistics(X)
    assert_allclose(thresholded.pi0, estimate_pi0(stats.pvalues, method=pi0))
    assert_array_equal(thresholded.pvalues, stats.pvalues)


def test_two_sided_pi0_does_not_collapse_where_one_sided_does():
    X = _under_attended_maps()
    arb = BootstrapAttentionRegularizer(null="per_image", method="pi0").fit(X)
    default = arb.compute_statistics(X)
    one_sided = arb.set_params(pi0_pvalues="thresholded").compute_statistics(X)
    # one-sided p of the under-attended tokens pile up near 1: pi0 = 1, empty maps
    assert_array_equal(one_sided.pi0, 1.0)
    assert not one_sided.keep_mask.any()
    # two-sided, they count as non-null: pi0 well below 1, the strong tokens kept
    assert np.all(default.pi0 < 0.9)
    assert default.keep_mask[:, :20].all()


# ----------------------------------------------------------------- names, output


def test_feature_names_out_are_the_observed_block():
    X = _maps(n_tokens=4)
    arb = BootstrapAttentionRegularizer().fit(X)
    assert_array_equal(arb.get_feature_names_out(), [f"x{i}" for i in range(4)])
    names = [f"observed_t{i}" for i in range(4)] + [
        f"bootstrap1_t{i}" for i in range(4)
    ]
    assert_array_equal(arb.get_feature_names_out(names), names[:4])


def test_set_output_pandas():
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    X = _maps(n_tokens=4)
    names = [f"observed_t{i}" for i in range(4)] + [
        f"bootstrap1_t{i}" for i in range(4)
    ]
    frame = pd.DataFrame(X, columns=names)
    arb = BootstrapAttentionRegularizer().set_output(transform="pandas")
    out = arb.fit(frame).transform(frame)
    assert list(out.columns) == names[:4]
    assert_allclose(
        out.to_numpy(), arb.set_output(transform="default").transform(frame)
    )


# ----------------------------------------------------------------- thresholds


def test_threshold_hand_computed():
    z = np.array([[2.0, 1.5, 0.5, -0.5, 3.0]])
    p = np.array([[0.01, 0.2, 0.04, 0.01, 0.05]])
    lfdr = np.array([[0.1, 0.5, 0.3, 0.0, 0.2]])
    assert_array_equal(
        significance_mask(z, method="z"), [[True, True, True, False, True]]
    )
    assert_array_equal(
        significance_mask(z, method="p", pvalues=p, alpha=0.05),
        [[True, False, True, False, True]],
    )
    assert_array_equal(
        significance_mask(z, method="lfdr", lfdr=lfdr, gamma=0.2, z_threshold=1.0),
        [[True, False, False, False, True]],
    )
    # median of p is 0.04: keep p <= 0.04
    assert_array_equal(
        significance_mask(z, method="p", pvalues=p, alpha="median"),
        [[True, False, True, False, False]],
    )
    assert_allclose(resolve_threshold(0.25, p, "quantile"), [[0.01]])
    assert_allclose(resolve_threshold("median", z), [[1.5]])


def test_keep_most_significant_ties_and_extremes():
    p = np.array([[0.3, 0.01, 0.01, 0.5], [0.3, 0.01, 0.01, 0.5]])
    # pi0 = 0.75: k = 1, but the tie at 0.01 is kept together
    assert_array_equal(
        keep_most_significant(p, np.array([0.75, 1.0])),
        [[False, True, True, False], [False, False, False, False]],
    )
    assert keep_most_significant(p, np.array([0.0, 0.0])).all()


@pytest.mark.parametrize("pixels_per_token", [1, 4, 256])
def test_authors_pi0_count_equals_their_percentile_on_repeated_maps(pixels_per_token):
    rng = np.random.default_rng(0)
    pvalues = rng.permutation(np.linspace(0.001, 0.999, 50))[np.newaxis]
    for pi0 in (0.0, 0.02, 0.5, 0.73, 0.98, 1.0):
        # the authors: percentile q of the p-values repeated r times, keep p <= it
        repeated = np.repeat(pvalues, pixels_per_token)
        threshold = np.percentile(repeated, 100 * (1 - pi0))
        expected = pvalues <= threshold
        mask = keep_most_significant(
            pvalues, np.array([pi0]), pixels_per_token=pixels_per_token
        )
        assert_array_equal(mask, expected, err_msg=f"pi0={pi0}")
        q = 1 - pi0
        assert mask.sum() == np.floor(q * 50 - q / pixels_per_token + 1e-9) + 1
    # the project's rule keeps floor(q P): none at pi0 = 1
    assert not keep_most_significant(pvalues, np.array([1.0])).any()


def test_regularizer_pi0_pixels_per_token_keeps_one_token_at_pi0_1():
    X = _maps(n_tokens=100)
    arb = BootstrapAttentionRegularizer(method="pi0", pi0=1.0, z_threshold=-np.inf)
    assert not arb.fit(X).transform(X).any()
    stats = arb.set_params(pi0_pixels_per_token=256).fit(X).compute_statistics(X)
    # the one most significant token, with the tokens tied with it
    most_significant = stats.pvalues == stats.pvalues.min(axis=1, keepdims=True)
    assert_array_equal(stats.keep_mask, most_significant)
    assert_array_equal(stats.regularized > 0, most_significant)


def test_methods_are_the_registry():
    options = BootstrapAttentionRegularizer._parameter_constraints["method"][0]
    assert options.options == set(THRESHOLD_RULES)
    z = np.array([[2.0, 1.0, 0.5, -1.0]])
    statistics = {
        "pvalues": np.array([[0.01, 0.3, 0.04, 0.01]]),
        "lfdr": np.array([[0.1, 0.05, 0.5, 0.0]]),
        "pi0": np.array([0.5]),
    }
    for method, rule in THRESHOLD_RULES.items():
        given = {name: statistics[name] for name in rule.needs}
        mask = significance_mask(z, method=method, **given)
        expected = (z >= 0) & rule.keep({"z": z, **given}, ThresholdSettings())
        assert_array_equal(mask, expected)
        for name in rule.needs:  # each rule states what it reads
            with pytest.raises(ValueError, match=f"needs {name}"):
                significance_mask(
                    z, method=method, **{k: v for k, v in given.items() if k != name}
                )


def test_regularize_scores_keeps_values_and_zeroes_the_rest():
    scores = np.array([[0.4, -0.1, 0.2]])
    keep = np.array([[True, False, True]])
    out = regularize_scores(scores, keep)
    assert_array_equal(out, [[0.4, 0.0, 0.2]])
    assert not np.signbit(out).any()


def test_statistics_helpers_agree_with_the_regularizer_pooled():
    X = _maps()
    arb = BootstrapAttentionRegularizer().fit(X)
    logs = log_scores(X)
    mean, std = null_moments(logs[:, 64:], pooled=True)
    assert_allclose(arb.compute_statistics(X).z, z_scores(logs[:, :64], mean, std))


# ---------------------------------------------------- observed maps, pooled null


@pytest.mark.parametrize("options", ALL_OPTIONS)
@pytest.mark.parametrize("max_exact_null", [4_194_304, 0])
def test_a_pooled_null_judges_observed_maps_alone_as_whole_rows(
    options, max_exact_null
):
    if options.get("lfdr_null") == "bootstrap" and not max_exact_null:
        pytest.skip("lfdr_null='bootstrap' needs the exact null")
    X_train, X = _maps(n_images=4, n_bootstrap=2, seed=1), _maps(n_bootstrap=2)
    arb = BootstrapAttentionRegularizer(
        n_bootstrap=2, max_exact_null=max_exact_null, **options
    ).fit(X_train)
    assert arb.needs_bootstrap_maps() is False
    observed = X[:, :64]
    assert_array_equal(arb.transform(observed), arb.transform(X))
    tagged = with_layout(observed, MapLayout(64, 0))
    assert_array_equal(arb.transform(tagged), arb.transform(X))
    whole, alone = arb.compute_statistics(X), arb.compute_statistics(observed)
    for name in ("z", "pvalues", "pi0", "lfdr", "keep_mask", "regularized"):
        assert_array_equal(alone[name], whole[name])
    assert alone.null_z.shape == (3, 0)


def test_observed_maps_alone_are_refused_where_the_null_needs_them():
    X = _maps(n_bootstrap=2)
    per_image = BootstrapAttentionRegularizer(null="per_image").fit(X[:, :128])
    assert per_image.needs_bootstrap_maps() is True
    with pytest.raises(ValueError, match="expecting 128 features"):
        per_image.transform(X[:, :64])
    pooled = BootstrapAttentionRegularizer(n_bootstrap=2).fit(X)
    for width in (32, 128):  # neither the rows nor the observed maps
        with pytest.raises(ValueError, match="expecting 192 features"):
            pooled.transform(X[:, :width])
    with pytest.raises(NotFittedError):
        BootstrapAttentionRegularizer().needs_bootstrap_maps()


@pytest.mark.parametrize("null", ["per_image", "pooled"])
@pytest.mark.parametrize("pvalue", ["one-sided", "two-sided"])
def test_transform_p_decided_by_critical_values_equals_the_pvalues(null, pvalue):
    # Scores on a coarse grid: observed and null values tie often.
    rng = np.random.default_rng(3)
    X = np.exp(rng.integers(-8, 0, size=(4, 2 * 40)).astype(float))
    n_null = 40 if null == "per_image" else 4 * 40
    boundaries = [k / (1 + n_null) for k in (1, 2, 3, 10)]
    for alpha in [0.0, 0.05, 0.5, 1.0, *boundaries, np.nextafter(boundaries[1], 0)]:
        arb = BootstrapAttentionRegularizer(null=null, pvalue=pvalue, alpha=alpha)
        arb.fit(X)
        stats = arb.compute_statistics(X)
        expected = (stats.z >= 0) & (stats.pvalues <= alpha)
        assert_array_equal(arb.transform(X) > 0, expected)
        assert_array_equal(arb.transform(X), stats.regularized)


@pytest.mark.parametrize("null", ["per_image", "pooled"])
def test_regularize_statistics_equals_transform_at_every_setting(null):
    """One compute_statistics serves every method and threshold: the maps equal
    transform's (which computes the statistics each time, the p rule by its
    critical values)."""
    X = np.random.default_rng(0).lognormal(size=(6, 2 * 49))
    arb = BootstrapAttentionRegularizer(null=null).fit(X)
    statistics = arb.compute_statistics(X)
    settings = [
        {"method": "p", "alpha": 0.01},
        {"method": "p", "alpha": 0.5},
        {"method": "lfdr", "gamma": 0.1},
        {"method": "lfdr", "gamma": 0.9, "soft": True},
        {"method": "pi0", "soft": False},
        {"method": "z", "z_threshold": 1.0},
        {"method": "p", "alpha": 0.4, "threshold_kind": "quantile", "z_threshold": 0},
    ]
    for setting in settings:
        arb.set_params(**setting)
        np.testing.assert_array_equal(
            arb.regularize_statistics(statistics), arb.transform(X), err_msg=setting
        )
    with pytest.raises(ValueError, match="lack pvalues"):
        arb.regularize_statistics(Bunch(scores=X[:, :49], z=statistics.z))

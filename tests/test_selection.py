"""Tests for the selection rules that stand in for the regularizer."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_arb import (
    BootstrapAttentionRegularizer,
    CumulativeMass,
    MapLayout,
    MeanThreshold,
    TopFraction,
    make_arb_pipeline,
)
from sklearn_arb._layout import with_layout
from sklearn_arb.evaluation import make_localisation_scorer, selection_scores


# n_bootstrap=0: the rows are the observed maps alone, so every width the checks
# feed is a valid layout (with B >= 1 a width not a multiple of 1 + B rightly
# raises, as the regularizer's checks show; the layout is tested apart below).
@parametrize_with_checks(
    [
        TopFraction(0.3, n_bootstrap=0),
        CumulativeMass(0.6, n_bootstrap=0),
        MeanThreshold(n_bootstrap=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _kept(rule, observed):
    """The tokens a rule keeps from observed maps given without bootstrap maps."""
    return rule.set_params(n_bootstrap=0).fit_transform(np.asarray(observed)) != 0


# ------------------------------------------------------------- CumulativeMass


@pytest.mark.parametrize(
    "mass, expected",
    [
        # Sorted: 0.4, 0.3, 0.15, 0.1, 0.05; cumulative 0.4, 0.7, 0.85, 0.95, 1.
        (0.4, [0, 1, 0, 0, 0]),
        (0.6, [0, 1, 0, 1, 0]),
        (0.7, [0, 1, 0, 1, 0]),  # reached exactly: no third token
        (0.71, [0, 1, 0, 1, 1]),
        (1.0, [1, 1, 1, 1, 1]),
    ],
)
def test_cumulative_mass_keeps_the_fewest_tokens_reaching_the_mass(mass, expected):
    observed = [[0.05, 0.4, 0.1, 0.3, 0.15]]
    assert_array_equal(_kept(CumulativeMass(mass), observed)[0], np.bool_(expected))


def test_cumulative_mass_keeps_ties_with_the_last_token_together():
    # 0.4 + 0.2 reaches 0.5; the two other 0.2 are tied with the last one kept.
    kept = _kept(CumulativeMass(0.5), [[0.2, 0.4, 0.2, 0.2, 0.0]])
    assert_array_equal(kept[0], [True, True, True, True, False])


def test_cumulative_mass_reads_the_positive_part():
    # Positive mass 2: 1.5 reaches 0.6 of it; negative scores are never kept.
    assert_array_equal(
        _kept(CumulativeMass(0.6), [[-3.0, 1.5, 0.5, -1.0]])[0],
        [False, True, False, False],
    )
    assert_array_equal(
        _kept(CumulativeMass(1.0), [[-3.0, 1.5, 0.5, -1.0]])[0],
        [False, True, True, False],
    )
    assert not _kept(CumulativeMass(0.6), np.zeros((1, 5))).any()


# -------------------------------------------------------------- MeanThreshold


def test_mean_threshold_keeps_tokens_strictly_above_the_mean():
    observed = [[0.1, 0.4, 0.3, 0.2], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.3, 0.1]]
    assert_array_equal(
        _kept(MeanThreshold(), observed),
        [[False, True, True, False], [False] * 4, [False, False, True, False]],
    )


def test_mean_threshold_uses_the_mean_of_the_positive_part():
    # Positive part [0, .5, .2, 1], mean .425: token 2 is out (the raw mean,
    # -0.575, would keep it).
    assert_array_equal(
        _kept(MeanThreshold(), [[-4.0, 0.5, 0.2, 1.0]])[0],
        [False, True, False, True],
    )


# ---------------------------------------------------------------- TopFraction


@pytest.mark.parametrize(
    "fraction, n_kept", [(0.25, 3), (0.2, 2), (0.01, 1), (0.5, 5), (1.0, 10)]
)
def test_top_fraction_keeps_round_half_up_of_fraction_times_p(fraction, n_kept):
    observed = np.arange(1.0, 11.0)[np.newaxis]  # 10 tokens, no ties
    kept = _kept(TopFraction(fraction), observed)[0]
    assert kept.sum() == n_kept
    assert_array_equal(np.flatnonzero(kept), np.arange(10 - n_kept, 10))


def test_top_fraction_breaks_boundary_ties_at_random_never_by_position():
    # k = 3 of 6: token 0, then two of the four tied 0.5 (tokens 1 to 4).
    observed = np.tile([0.9, 0.5, 0.5, 0.5, 0.5, 0.1], (400, 1))
    kept = _kept(TopFraction(0.5, random_state=0), observed)
    assert (kept.sum(axis=1) == 3).all()
    assert kept[:, 0].all() and not kept[:, 5].any()
    # Each tied token is kept in about half the images (2 of 4): raster order
    # would always keep tokens 1 and 2.
    share = kept[:, 1:5].mean(axis=0)
    assert np.all((share > 0.4) & (share < 0.6)), share
    # Deterministic given random_state, different for another seed.
    assert_array_equal(_kept(TopFraction(0.5, random_state=0), observed), kept)
    assert not np.array_equal(_kept(TopFraction(0.5, random_state=1), observed), kept)


def test_top_fraction_never_keeps_a_non_positive_score():
    kept = _kept(TopFraction(0.5), [[0.5, 0.0, -1.0, 0.0]])
    assert_array_equal(kept[0], [True, False, False, False])


# ----------------------------------------------- the regularizer's interface


@pytest.mark.parametrize(
    "rule", [TopFraction(0.25), CumulativeMass(0.6), MeanThreshold()], ids=repr
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rules_return_the_observed_map_with_unselected_tokens_zeroed(rule, dtype):
    rng = np.random.default_rng(0)
    X = rng.lognormal(size=(5, 3 * 16)).astype(dtype)  # [observed | 2 bootstrap]
    X_before = X.copy()
    tagged = with_layout(X, MapLayout(n_tokens=16, n_bootstrap=2))
    out = rule.fit(tagged).transform(tagged)
    assert out.dtype == dtype and out.shape == (5, 16)
    assert rule.layout_ == MapLayout(16, 2)
    kept = out != 0
    assert kept.any(axis=1).all() and not kept.all()
    assert_array_equal(out[kept], X[:, :16][kept])
    assert_array_equal(X, X_before)
    # The bootstrap maps are not read.
    X_other = X.copy()
    X_other[:, 16:] = 0
    assert_array_equal(rule.transform(X_other), out)


def test_rules_read_n_bootstrap_as_the_regularizer_does():
    X = np.random.default_rng(0).lognormal(size=(3, 4 * 8))
    assert CumulativeMass().fit(X).layout_ == MapLayout(16, 1)  # plain: B = 1
    assert CumulativeMass(n_bootstrap=3).fit(X).layout_ == MapLayout(8, 3)
    tagged = with_layout(X, MapLayout(n_tokens=8, n_bootstrap=3))
    with pytest.raises(ValueError, match="n_bootstrap=1 but the extractor's maps"):
        CumulativeMass(n_bootstrap=1).fit(tagged)
    fitted = CumulativeMass().fit(tagged)
    other = with_layout(X, MapLayout(n_tokens=16, n_bootstrap=1))
    with pytest.raises(ValueError, match="fitted on"):
        fitted.transform(other)
    with pytest.raises(ValueError, match=r"7 feature\(s\)"):
        MeanThreshold().fit(X[:, :7])


def test_rules_compete_with_arb_in_a_grid_search_over_the_pipeline(make_tiny_vit):
    rng = np.random.default_rng(0)
    images = rng.random((6, 32, 32, 3))
    masks = np.zeros((6, 16), dtype=bool)
    masks[:, [5, 6, 9, 10]] = True  # the central 2 x 2 tokens of the 4 x 4 grid
    pipe = make_arb_pipeline(
        make_tiny_vit(),
        n_bootstrap=2,
        extractor_params={"image_size": 32, "random_state": 0},
    )
    candidates = [
        BootstrapAttentionRegularizer(alpha=0.5),
        CumulativeMass(0.6),
        MeanThreshold(),
        TopFraction(0.25),
    ]
    search = GridSearchCV(
        pipe,
        {"regularizer": candidates},
        scoring=make_localisation_scorer("all"),
        refit="precision",
        cv=KFold(2),
    ).fit(images, masks)
    results = search.cv_results_
    assert len(results["params"]) == 4
    assert np.all(np.isfinite(results["mean_test_recall"]))
    # Scores are those of the selections each candidate makes on the test folds
    # (the extractor's maps of an image do not depend on the other images).
    maps = pipe.named_steps["extractor"].fit(images).transform(images)
    for index, candidate in enumerate(candidates):
        recalls = [
            np.nanmean(
                selection_scores(
                    candidate.fit(maps[train]).transform(maps[test]), masks[test]
                ).recall
            )
            for train, test in KFold(2).split(images)
        ]
        assert results["mean_test_recall"][index] == pytest.approx(np.mean(recalls))
    # TopFraction(0.25) keeps 4 of the 16 tokens of every image.
    sizes = selection_scores(TopFraction(0.25).fit(maps).transform(maps), masks).size
    assert_array_equal(sizes, 0.25)

"""Tests for the ARB scorers on a bare regularizer and on a Pipeline."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline

from sklearn_arb import BootstrapAttentionRegularizer
from sklearn_arb.metrics import (
    balanced_scorer,
    make_arb_scorer,
    sensitivity,
    sensitivity_scorer,
    specificity,
    specificity_scorer,
)

N_TOKENS = 64


@pytest.fixture
def synthetic_maps() -> tuple[np.ndarray, np.ndarray]:
    """Extractor-like output (B = 1) whose ROI scores look like the bootstrap's.

    Log-scores: bootstrap and ROI ~ N(0, 1), the rest (signal) ~ N(3, 0.5).
    """
    rng = np.random.default_rng(0)
    n_images = 12
    roi = np.zeros((n_images, N_TOKENS), dtype=bool)
    roi[:, :16] = True
    observed = np.where(
        roi,
        rng.normal(0, 1, (n_images, N_TOKENS)),
        rng.normal(3, 0.5, (n_images, N_TOKENS)),
    )
    null = rng.normal(0, 1, (n_images, N_TOKENS))
    X = np.exp(np.hstack([observed, null]) - 6)
    return X, roi


def test_scorers_equal_the_mean_metrics_of_the_transformed_maps(synthetic_maps):
    X, roi = synthetic_maps
    regularizer = BootstrapAttentionRegularizer(method="p", alpha=0.05).fit(X)
    maps_after = regularizer.transform(X)
    expected_sens = sensitivity(X[:, :N_TOKENS], maps_after, roi).mean()
    expected_spec = specificity(X[:, :N_TOKENS], maps_after, roi).mean()
    assert sensitivity_scorer(regularizer, X, roi) == pytest.approx(expected_sens)
    assert specificity_scorer(regularizer, X, roi) == pytest.approx(expected_spec)
    assert balanced_scorer(regularizer, X, roi) == pytest.approx(
        (expected_sens + expected_spec) / 2
    )
    assert make_arb_scorer("all")(regularizer, X, roi) == pytest.approx(
        {
            "sensitivity": expected_sens,
            "specificity": expected_spec,
            "balanced": (expected_sens + expected_spec) / 2,
        }
    )
    # The noise looks like the null, the signal does not: both scores are high.
    assert expected_sens > 0.8 and expected_spec > 0.95


def test_stricter_alpha_trades_specificity_for_sensitivity(synthetic_maps):
    X, roi = synthetic_maps
    loose = BootstrapAttentionRegularizer(method="p", alpha=0.9).fit(X)
    strict = BootstrapAttentionRegularizer(method="p", alpha=0.01).fit(X)
    assert sensitivity_scorer(strict, X, roi) >= sensitivity_scorer(loose, X, roi)
    assert specificity_scorer(strict, X, roi) <= specificity_scorer(loose, X, roi)


@pytest.mark.parametrize(
    "scoring",
    [
        {
            "sensitivity": sensitivity_scorer,
            "specificity": specificity_scorer,
            "balanced": balanced_scorer,
        },
        make_arb_scorer("all"),
    ],
    ids=["dict", "all-in-one"],
)
def test_grid_search_multimetric_refits_on_the_balanced_score(synthetic_maps, scoring):
    X, roi = synthetic_maps
    param_grid = [
        {"method": ["p"], "alpha": [0.001, 0.05, 0.5, 1.0]},
        {"method": ["lfdr"], "gamma": [0.05, 0.5]},
    ]
    search = GridSearchCV(
        BootstrapAttentionRegularizer(),
        param_grid,
        scoring=scoring,
        refit="balanced",
        cv=KFold(3),
    ).fit(X, roi)
    results = search.cv_results_
    best = int(np.argmax(results["mean_test_balanced"]))
    assert search.best_params_ == results["params"][best]
    np.testing.assert_allclose(
        results["mean_test_balanced"],
        (results["mean_test_sensitivity"] + results["mean_test_specificity"]) / 2,
    )
    # alpha = 1 keeps every score the z-step keeps: least sensitive p candidate.
    p_rows = [i for i, p in enumerate(results["params"]) if p["method"] == "p"]
    sens = results["mean_test_sensitivity"][p_rows]
    assert np.all(np.diff(sens) <= 1e-12)


def test_cross_validate_with_a_single_scorer(synthetic_maps):
    X, roi = synthetic_maps
    scores = cross_validate(
        BootstrapAttentionRegularizer(), X, roi, scoring=balanced_scorer, cv=3
    )
    assert scores["test_score"].shape == (3,)
    assert np.all((scores["test_score"] >= 0) & (scores["test_score"] <= 1))


def test_scorers_reject_bad_targets(synthetic_maps):
    X, roi = synthetic_maps
    regularizer = BootstrapAttentionRegularizer().fit(X)
    with pytest.raises(ValueError, match="need y"):
        balanced_scorer(regularizer, X, None)
    with pytest.raises(ValueError, match="shape"):
        balanced_scorer(regularizer, X, roi[:3])
    with pytest.raises(ValueError, match="boolean"):
        balanced_scorer(regularizer, X, roi * 2)
    with pytest.raises(ValueError, match="same patch grid"):
        balanced_scorer(regularizer, X, roi[:, :60])
    with pytest.raises(ValueError, match="metric"):
        make_arb_scorer("accuracy")


def _tiny_vit():
    """A tiny random ViT: 32 px images, 8 px patches (16 tokens), 2 blocks."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2
    ).eval()


def test_scorers_on_a_pipeline_from_images_match_the_bare_regularizer():
    from sklearn_arb import AttentionExtractor
    from sklearn_arb.datasets import make_noise_simulation

    images = np.random.default_rng(0).random((6, 32, 32, 3))
    noisy, _, token_masks = make_noise_simulation(
        images, size=16, patch_size=8, random_state=0
    )
    extractor = AttentionExtractor(
        _tiny_vit(), image_size=32, n_bootstrap=2, random_state=0
    )
    regularizer = BootstrapAttentionRegularizer(n_bootstrap=2, alpha=0.5)
    pipeline = Pipeline([("extractor", extractor), ("regularizer", regularizer)])
    pipeline.fit(noisy)
    scorer = make_arb_scorer("all")
    X = pipeline[0].transform(noisy)
    assert scorer(pipeline, noisy, token_masks) == pytest.approx(
        scorer(pipeline[-1], X, token_masks)
    )
    scores = scorer(pipeline, noisy, token_masks)
    assert 0 <= scores["sensitivity"] <= 1 and 0 <= scores["specificity"] <= 1

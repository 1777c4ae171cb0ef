"""make_arb_pipeline: B stated once; a threshold grid search runs the ViT once."""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sklearn_arb import (
    AttentionExtractor,
    BootstrapAttentionRegularizer,
    make_arb_pipeline,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((6, 32, 32, 3))


def test_pipeline_equals_steps_by_hand(make_tiny_vit, images):
    vit = make_tiny_vit()
    pipe = make_arb_pipeline(
        vit,
        n_bootstrap=3,
        extractor_params={"image_size": 32, "random_state": 0},
        regularizer_params={"alpha": 0.2},
    )
    extractor, regularizer = pipe.named_steps.values()
    assert (extractor.n_bootstrap, regularizer.n_bootstrap) == (3, "auto")
    maps = AttentionExtractor(vit, image_size=32, n_bootstrap=3, random_state=0)
    by_hand = BootstrapAttentionRegularizer(n_bootstrap=3, alpha=0.2).fit_transform(
        maps.fit_transform(images)
    )
    np.testing.assert_array_equal(pipe.fit_transform(images), by_hand)
    assert by_hand.shape == (6, 16)


def test_shared_parameters_are_stated_once(make_tiny_vit):
    for params in (
        {"extractor_params": {"n_bootstrap": 2}},
        {"regularizer_params": {"n_bootstrap": 2}},
        {"extractor_params": {"memory": None}},
    ):
        with pytest.raises(ValueError, match="make_arb_pipeline itself"):
            make_arb_pipeline(make_tiny_vit(), **params)


def test_grid_search_runs_the_vit_once_per_image_set(
    make_tiny_vit, images, tmp_path, monkeypatch
):
    runs = []
    compute = AttentionExtractor._iter_maps

    def counted(self, batch):
        runs.append(len(batch))
        return compute(self, batch)

    monkeypatch.setattr(AttentionExtractor, "_iter_maps", counted)
    pipe = make_arb_pipeline(
        make_tiny_vit(),
        n_bootstrap=1,
        extractor_params={"image_size": 32, "random_state": 0},
        memory=joblib.Memory(tmp_path, verbose=0),
    )
    search = GridSearchCV(
        pipe,
        {"regularizer__alpha": [0.05, 0.2, 0.5], "regularizer__method": ["p", "z"]},
        scoring=lambda est, X, y=None: -float(est.transform(X).sum()),
        cv=2,
    )
    search.fit(images)
    # 6 candidates x 2 folds fit and score, then the refit on all images: the ViT
    # saw each image once (the two halves), the cache serves every other call.
    assert sorted(runs) == [3, 3]


def test_grid_search_over_the_extractors_n_bootstrap(make_tiny_vit, images):
    # B is stated once, by the extractor: the regularizer learns it from the maps,
    # so setting extractor__n_bootstrap alone gives maps of the right width.
    pipe = make_arb_pipeline(
        make_tiny_vit(),
        n_bootstrap=1,
        extractor_params={"image_size": 32, "random_state": 0},
        regularizer_params={"alpha": 0.5},
    )
    for n_bootstrap in (1, 2, 4):
        maps = pipe.set_params(extractor__n_bootstrap=n_bootstrap).fit_transform(images)
        regularizer = pipe["regularizer"]
        assert regularizer.layout_.n_bootstrap == n_bootstrap
        assert maps.shape == (6, 16)
        by_hand = BootstrapAttentionRegularizer(n_bootstrap=n_bootstrap, alpha=0.5)
        extractor = pipe["extractor"]
        np.testing.assert_array_equal(
            maps, by_hand.fit_transform(np.asarray(extractor.transform(images)))
        )
    widths = []

    def observed_width(estimator, X, y=None):
        widths.append(estimator["regularizer"].layout_.n_bootstrap)
        return float(estimator.transform(X).shape[1])

    search = GridSearchCV(
        pipe, {"extractor__n_bootstrap": [1, 2, 4]}, scoring=observed_width, cv=2
    ).fit(images)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"], [16.0] * 3)
    assert sorted(widths) == [1, 1, 2, 2, 4, 4]


def test_a_stated_n_bootstrap_that_disagrees_with_the_maps_raises(
    make_tiny_vit, images
):
    maps = AttentionExtractor(
        make_tiny_vit(), image_size=32, n_bootstrap=3, random_state=0
    ).fit_transform(images)
    # (1 + 3) * 16 columns split evenly into 2 maps of 32: only the layout the
    # extractor attached can tell that B = 1 is wrong.
    with pytest.raises(ValueError, match=r"n_bootstrap=1.*3"):
        BootstrapAttentionRegularizer(n_bootstrap=1).fit(maps)

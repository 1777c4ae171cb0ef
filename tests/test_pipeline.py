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
    # saw each image with its bootstrap samples once (the two halves), and the
    # first test fold's images alone once (the pooled null's transform needs no
    # more, and their rows were not cached yet); the cache serves every other call.
    assert runs == [3, 3, 3]


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


def _count_forward_images(vit) -> list[int]:
    """Images per forward batch of ``vit`` and of the copies extractors fit
    (a module's hooks are copied with it)."""
    sizes = []
    vit.patch_embed.register_forward_hook(lambda m, i, out: sizes.append(len(out)))
    return sizes


@pytest.mark.parametrize("n_bootstrap", [1, 4])
def test_a_pooled_pipeline_runs_the_model_on_the_observed_images_alone(
    make_tiny_vit, images, n_bootstrap
):
    vit = make_tiny_vit()
    forward = _count_forward_images(vit)
    pipe = make_arb_pipeline(
        vit,
        n_bootstrap=n_bootstrap,
        extractor_params={"image_size": 32, "random_state": 0},
        regularizer_params={"method": "lfdr", "gamma": 0.5},
    )
    pipe.fit(images[:4])
    assert sum(forward) == 4 * (1 + n_bootstrap)  # fit learns from bootstraps
    forward.clear()
    new_images = np.random.default_rng(1).random((5, 32, 32, 3))
    maps = pipe.transform(new_images)
    assert sum(forward) == 5  # not 5 * (1 + B)
    extractor, regularizer = pipe.named_steps.values()
    whole_rows = extractor.transform(new_images)  # the maps of every sample
    assert sum(forward) == 5 + 5 * (1 + n_bootstrap)
    np.testing.assert_array_equal(maps, regularizer.transform(whole_rows))
    assert maps.shape == (5, 16) and (maps > 0).any()
    observed = extractor.transform_observed(new_images)
    np.testing.assert_array_equal(observed, whole_rows[:, :16])
    stats = regularizer.compute_statistics(observed)
    np.testing.assert_array_equal(stats.regularized, maps)
    assert stats.null_z.shape == (5, 0)
    forward.clear()
    pipe.fit_transform(images)  # fit, then the maps it learnt from
    assert sum(forward) == 6 * (1 + n_bootstrap)


def test_a_per_image_pipeline_still_gets_the_bootstrap_maps(make_tiny_vit, images):
    vit = make_tiny_vit()
    pipe = make_arb_pipeline(
        vit,
        n_bootstrap=2,
        extractor_params={"image_size": 32, "random_state": 0},
        regularizer_params={"null": "per_image"},
    ).fit(images[:2])
    forward = _count_forward_images(pipe.named_steps["extractor"].model_)
    pipe.transform(images)
    assert sum(forward) == 6 * 3
    with pytest.raises(ValueError, match=r"layout \[observed P\] with P = 16 but"):
        pipe.named_steps["regularizer"].transform(
            pipe.named_steps["extractor"].transform_observed(images)
        )


def test_observed_maps_reuse_the_rows_cached_with_bootstrap_maps(
    make_tiny_vit, images, tmp_path
):
    vit = make_tiny_vit()
    forward = _count_forward_images(vit)
    extractor = AttentionExtractor(
        vit, image_size=32, n_bootstrap=2, random_state=0, memory=str(tmp_path)
    ).fit()
    whole_rows = extractor.transform(images[:4])
    forward.clear()
    observed = extractor.transform_observed(images)  # 4 cached, 2 new
    assert sum(forward) == 2
    np.testing.assert_array_equal(observed[:4], whole_rows[:, :16])
    np.testing.assert_array_equal(observed, extractor.transform(images)[:, :16])
    forward.clear()
    np.testing.assert_array_equal(extractor.transform_observed(images), observed)
    assert sum(forward) == 0

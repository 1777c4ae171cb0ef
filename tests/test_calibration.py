"""ARB's statistics on pure bootstrap noise: calibrated p-values, pi0, lfdr."""

import numpy as np
import pytest
import torch

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
from sklearn_arb.evaluation._calibration import (
    attainable_level,
    noise_calibration,
    noise_images,
    noise_maps,
)


@pytest.fixture
def extractor(make_tiny_vit):
    """A tiny random ViT of 64 tokens, two bootstrap maps per image."""
    vit = make_tiny_vit(img_size=64)
    return AttentionExtractor(vit, image_size=64, n_bootstrap=2, random_state=0).fit()


@pytest.fixture
def images():
    return np.random.default_rng(0).random((40, 64, 64, 3))


def test_attainable_level_is_the_exact_size_of_the_test():
    # p takes the values k / (1 + m0); P(p <= alpha) = floor(alpha (1 + m0)) / (1 + m0)
    # under exchangeability: the probability of a uniform rank.
    m0 = 196
    ranks = np.arange(1, m0 + 2) / (1 + m0)  # every attainable p, equally likely
    for alpha in (0.01, 0.05, 0.1, 9 / 197):
        assert attainable_level(alpha, m0) == pytest.approx(np.mean(ranks <= alpha))
        assert attainable_level(alpha, m0) <= alpha


def test_noise_is_drawn_from_the_extractors_bootstrap_distribution(extractor, images):
    noise = noise_images(extractor, images, random_state=0)
    mean = np.array(extractor.mean_)
    std = np.array(extractor.std_)
    normalised_image = (images.astype(np.float32) - mean) / std
    normalised_noise = (noise - mean) / std
    # The normal bootstrap: N(mean, std^2) per channel of the normalised image;
    # over 4096 pixels the sample moments lie within 5 standard errors.
    n_pixels = 64 * 64
    image_std = normalised_image.std(axis=(1, 2))
    mean_error = normalised_noise.mean(axis=(1, 2)) - normalised_image.mean(axis=(1, 2))
    assert np.all(np.abs(mean_error) < 5 * image_std / np.sqrt(n_pixels))
    std_error = normalised_noise.std(axis=(1, 2)) - image_std
    assert np.all(np.abs(std_error) < 5 * image_std / np.sqrt(2 * n_pixels))
    # Not clipped to [0, 1]: the draw's own distribution.
    assert noise.min() < 0 and noise.max() > 1
    again = noise_images(extractor, images, random_state=0)
    np.testing.assert_array_equal(noise, again)


def test_pvalues_on_noise_are_calibrated_per_image_and_pooled(extractor, images):
    result = noise_calibration(extractor, images, random_state=0)
    rows = {(row["null"], row["statistic"]): row for row in result.rows}
    assert result.n_null == {"per_image": 128, "pooled": 20 * 128}
    for null in ("per_image", "pooled"):
        for alpha in (0.01, 0.05, 0.1):
            row = rows[null, f"share p<={alpha:g}"]
            assert row["expected"] == attainable_level(alpha, result.n_null[null])
            assert row["calibrated"], row
            assert row["mean"] == pytest.approx(
                result.per_image[null][f"share p<={alpha:g}"].mean()
            )
        # p <= 0.05 implies z >= 0 here, so the p rule keeps exactly those tokens.
        assert rows[null, "kept by p"]["mean"] == rows[null, "share p<=0.05"]["mean"]
        # lfdr keeps almost nothing of pure noise.
        assert rows[null, "kept by lfdr"]["mean"] < 0.05
        assert rows[null, "pi0"]["mean"] > 0.7
        assert rows[null, "pi0"]["calibrated"] is None


def test_per_image_statistics_equal_the_direct_computation(extractor, images):
    result = noise_calibration(extractor, images, alphas=(0.05,), random_state=0)
    # The same draws by hand: the noise first takes its seeds from the state.
    noise = noise_images(extractor, images, random_state=np.random.RandomState(0))
    maps = noise_maps(extractor, noise)
    statistics = (
        BootstrapAttentionRegularizer(null="per_image", scale="auto")
        .fit(maps)
        .compute_statistics(maps)
    )
    per_image = result.per_image["per_image"]
    np.testing.assert_array_equal(
        per_image["share p<=0.05"], (statistics.pvalues <= 0.05).mean(axis=1)
    )
    np.testing.assert_array_equal(per_image["pi0"], statistics.pi0)
    lfdr_kept = (statistics.lfdr <= 0.2) & (statistics.z >= 0)
    np.testing.assert_array_equal(per_image["kept by lfdr"], lfdr_kept.mean(axis=1))


def test_bad_arguments_raise_one_clear_error(extractor, images, make_tiny_vit):
    with pytest.raises(ValueError, match="n_folds=1"):
        noise_calibration(extractor, images, n_folds=1)
    with pytest.raises(ValueError, match="alphas"):
        noise_calibration(extractor, images, alphas=(0.0,))
    no_bootstrap = AttentionExtractor(
        make_tiny_vit(img_size=64), image_size=64, n_bootstrap=0
    ).fit()
    with pytest.raises(ValueError, match="n_bootstrap=0"):
        noise_calibration(no_bootstrap, images[:4])
    with pytest.raises(ValueError, match="extractor's image size"):
        noise_maps(extractor, np.zeros((2, 32, 32, 3)))
    with torch.inference_mode():  # the caller's mode does not matter
        assert noise_images(extractor, images[:2], random_state=0).shape[0] == 2


def test_noise_maps_of_a_list_target_explain_each_images_class(make_tiny_vit):
    # CDAM with a list target: each noise image's maps explain its image's
    # class (what the extractor gives that image), not the predicted one.
    vit = make_tiny_vit(num_classes=5)
    params = dict(image_size=32, source="cdam", random_state=0)
    classes = [3, 0, 4]
    listed = AttentionExtractor(vit, target=classes, **params).fit()
    pixels = np.random.default_rng(0).random((3, 32, 32, 3))
    noise = noise_images(listed, pixels, random_state=0)
    maps = noise_maps(listed, noise)
    for i, target in enumerate(classes):
        alone = AttentionExtractor(vit, target=target, **params).fit()
        np.testing.assert_allclose(maps[i], noise_maps(alone, noise[i : i + 1])[0])
    predicted = AttentionExtractor(vit, **params).fit()
    assert not np.allclose(maps, noise_maps(predicted, noise))

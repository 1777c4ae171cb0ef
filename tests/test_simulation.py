"""Tests for sklearn_arb.datasets: the noise simulation and token ROI masks."""

import numpy as np
import pytest
from scipy import ndimage

from sklearn_arb.datasets import make_noise_simulation, pixel_to_token_masks


@pytest.fixture
def float_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Channels with clearly different means and spreads.
    return rng.normal([0.2, 0.5, 0.8], [0.05, 0.1, 0.2], size=(3, 64, 64, 3))


def test_square_roi_is_a_square_inside_and_only_roi_changes(float_images):
    original = float_images.copy()
    noisy, pixel_masks = make_noise_simulation(float_images, size=20, random_state=0)
    np.testing.assert_array_equal(float_images, original)  # input untouched
    assert noisy.dtype == float_images.dtype and noisy.shape == float_images.shape
    for image, mask, clean in zip(noisy, pixel_masks, float_images, strict=True):
        rows, cols = np.nonzero(mask)
        assert mask.sum() == 400
        assert rows.max() - rows.min() == 19 and cols.max() - cols.min() == 19
        np.testing.assert_array_equal(image[~mask], clean[~mask])
        assert not np.any(image[mask] == clean[mask])


def test_roi_noise_follows_each_channels_mean_and_std(float_images):
    noisy, pixel_masks = make_noise_simulation(
        float_images, size=60, clip=False, random_state=1
    )
    roi_pixels = noisy[0][pixel_masks[0]]  # 3600 x 3
    np.testing.assert_allclose(
        roi_pixels.mean(axis=0), float_images[0].mean(axis=(0, 1)), atol=0.01
    )
    np.testing.assert_allclose(
        roi_pixels.std(axis=0), float_images[0].std(axis=(0, 1)), rtol=0.05
    )
    # i.i.d. pixels: neighbouring noise pixels are uncorrelated.
    red = noisy[0][..., 0][pixel_masks[0]].reshape(60, 60)
    assert abs(np.corrcoef(red[:, :-1].ravel(), red[:, 1:].ravel())[0, 1]) < 0.06


def test_square_position_is_uniform_over_all_valid_corners():
    images = np.zeros((400, 10, 10))
    _, pixel_masks = make_noise_simulation(images, size=8, random_state=0)
    corners = {tuple(np.argwhere(mask)[0]) for mask in pixel_masks}
    assert corners == {(r, c) for r in range(3) for c in range(3)}


def test_noise_is_clipped_to_the_unit_range_unless_asked_not_to(float_images):
    wide = float_images * 4 - 1.5  # channel spreads reach far outside [0, 1]
    clipped, masks = make_noise_simulation(np.clip(wide, 0, 1), size=40, random_state=0)
    assert clipped.min() >= 0 and clipped.max() <= 1
    raw, masks = make_noise_simulation(wide, size=40, clip=False, random_state=0)
    assert raw[masks].min() < 0 and raw[masks].max() > 1


def test_uint8_and_grey_input():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 32, 32), dtype=np.uint8)
    noisy, pixel_masks = make_noise_simulation(images, size=10, random_state=0)
    assert noisy.shape == (2, 32, 32) and noisy.dtype == np.float32
    np.testing.assert_allclose(noisy[~pixel_masks], images[~pixel_masks] / 255.0)


def test_default_size_scales_the_papers_100px_at_488px():
    images = np.zeros((1, 224, 224, 3))
    _, pixel_masks = make_noise_simulation(images, random_state=0)
    assert pixel_masks.sum() == 46**2


def test_diffuse_roi_has_size_squared_pixels_in_smooth_clusters():
    images = np.random.default_rng(3).random((2, 224, 224, 3))
    _, pixel_masks = make_noise_simulation(
        images, noise="diffuse", size=46, random_state=0
    )
    assert np.all(pixel_masks.sum(axis=(1, 2)) == 46**2)
    for mask in pixel_masks:
        _, n_clusters = ndimage.label(mask)
        # Far fewer clusters than a random set of pixels would make (~2000).
        assert 1 <= n_clusters < 30
    # Larger cluster_scale smooths more: fewer, larger clusters.
    _, coarse = make_noise_simulation(
        images, noise="diffuse", size=46, cluster_scale=60.0, random_state=0
    )
    assert ndimage.label(coarse[0])[1] <= ndimage.label(pixel_masks[0])[1]


def test_random_state_reproduces_and_varies(float_images):
    first = make_noise_simulation(float_images, noise="diffuse", random_state=5)
    second = make_noise_simulation(float_images, noise="diffuse", random_state=5)
    third = make_noise_simulation(float_images, noise="diffuse", random_state=6)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[1], third[1])


def test_token_masks_follow_the_half_rule():
    pixel_masks = np.zeros((1, 8, 8), dtype=bool)
    pixel_masks[0, 0:4, 0:4] = True  # token 0: full
    pixel_masks[0, 0:2, 4:8] = True  # token 1: exactly half
    pixel_masks[0, 4:5, 0:4] = True  # token 2: a quarter
    expected = np.array([[True, True, False, False]])
    np.testing.assert_array_equal(pixel_to_token_masks(pixel_masks, 4), expected)
    np.testing.assert_array_equal(
        pixel_to_token_masks(pixel_masks, 4, min_fraction=0.25),
        [[True, True, True, False]],
    )
    np.testing.assert_array_equal(
        pixel_to_token_masks(pixel_masks, 4, min_fraction=1.0),
        [[True, False, False, False]],
    )


def test_token_masks_returned_with_patch_size_match_pixel_masks(float_images):
    _, pixel_masks, token_masks = make_noise_simulation(
        float_images, size=16, patch_size=16, random_state=0
    )
    assert token_masks.shape == (3, 16) and token_masks.dtype == bool
    np.testing.assert_array_equal(token_masks, pixel_to_token_masks(pixel_masks, 16))
    # A 16 px square on a 16 px grid covers 1, 2 or 4 patches; with the half rule
    # at most 2 are in the ROI, and none when it straddles 4 patches unevenly.
    assert np.all(token_masks.sum(axis=1) <= 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 65}, "larger than the images"),
        ({"noise": "diffuse", "size": 65}, "more than the images have"),
        ({"patch_size": 10}, "not a multiple of patch_size"),
        ({"noise": "circle"}, "noise"),
        ({"size": 0}, "size"),
    ],
)
def test_bad_parameters_raise_clear_errors(float_images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_noise_simulation(float_images, **kwargs)


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match=r"image\[np.newaxis\]"):
        make_noise_simulation(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="numbers"):
        make_noise_simulation(np.zeros((1, 8, 8), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        make_noise_simulation(np.full((1, 8, 8), np.nan))
    with pytest.raises(ValueError, match="boolean"):
        pixel_to_token_masks(np.zeros((1, 8, 8)), 4)


@pytest.mark.parametrize(
    ("factors", "method_names", "legend"),
    [
        ([0.4, 0.7], None, None),  # one unnamed method: nothing to tell apart
        ([0.4, 0.7], ["p"], ["p"]),
        ([[0.4, 0.1], [0.7, 0.2]], None, ["method 0", "method 1"]),
    ],
)
def test_suppression_bars_get_a_legend_only_to_name_or_tell_methods_apart(
    factors, method_names, legend
):
    import matplotlib.pyplot as plt

    from sklearn_arb.plotting import plot_suppression_factors

    ax = plot_suppression_factors(factors, method_names=method_names).ax
    shown = ax.get_legend()
    assert legend == (None if shown is None else [t.get_text() for t in shown.texts])
    plt.close(ax.figure)

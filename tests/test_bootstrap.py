"""Bootstrap samplers keep the statistics they should, and are seeded per image."""

import pytest
import torch

from sklearn_arb.backbone import BOOTSTRAP_KINDS, draw_bootstrap


@pytest.fixture
def images():
    torch.manual_seed(0)
    # channels with clearly different moments, so per-channel mixing would show
    scale = torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
    shift = torch.tensor([-1.0, 0.0, 3.0]).view(1, 3, 1, 1)
    return torch.randn(2, 3, 64, 64) * scale + shift


def test_normal_keeps_channel_moments(images):
    samples = draw_bootstrap(images, 3, "normal", [1, 2], width=1.0)
    assert samples.shape == (2, 3, 3, 64, 64)
    for image, image_samples in zip(images, samples, strict=True):
        mean, std = image.mean(dim=(1, 2)), image.std(dim=(1, 2))
        for sample in image_samples:
            # 4096 pixels per channel: the sample moments are within a few 1/sqrt(n)
            torch.testing.assert_close(sample.mean(dim=(1, 2)), mean, atol=0.1, rtol=0)
            torch.testing.assert_close(sample.std(dim=(1, 2)), std, atol=0, rtol=0.05)


def test_normal_width_and_global_moments(images):
    wide = draw_bootstrap(images, 1, "normal", [1, 2], width=2.0)[:, 0]
    ratio = wide.std(dim=(2, 3)) / images.std(dim=(2, 3))
    torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0), atol=0, rtol=0.05)
    pooled = draw_bootstrap(images, 1, "normal", [1, 2], moments="global")[:, 0]
    torch.testing.assert_close(
        pooled.mean(dim=(2, 3)),
        images.mean(dim=(1, 2, 3))[:, None].expand(2, 3),
        atol=0.15,
        rtol=0,
    )


def test_uniform_within_channel_range(images):
    samples = draw_bootstrap(images, 2, "uniform", [1, 2])
    low = images.amin(dim=(2, 3))[:, None]
    high = images.amax(dim=(2, 3))[:, None]
    assert (samples.amin(dim=(3, 4)) >= low).all()
    assert (samples.amax(dim=(3, 4)) <= high).all()
    # spread over the range, not collapsed
    assert (
        (samples.amax(dim=(3, 4)) - samples.amin(dim=(3, 4))) > 0.9 * (high - low)
    ).all()


def test_pixel_draws_whole_pixels_of_the_image(images):
    samples = draw_bootstrap(images, 2, "pixel", [1, 2])
    for image, image_samples in zip(images, samples, strict=True):
        pixels = {tuple(p) for p in image.reshape(3, -1).T.tolist()}
        for sample in image_samples:
            drawn = [tuple(p) for p in sample.reshape(3, -1).T.tolist()]
            assert set(drawn) <= pixels  # whole channel vectors, from this image
            # with replacement: about 1 - 1/e of the pixels appear
            assert 0.55 < len(set(drawn)) / len(pixels) < 0.70


def test_patch_is_a_permutation_of_patches(images):
    samples = draw_bootstrap(images, 2, "patch", [1, 2], patch_size=16)

    def patches(image):
        grid = image.reshape(3, 4, 16, 4, 16).permute(1, 3, 0, 2, 4).reshape(16, -1)
        return sorted(map(tuple, grid.tolist()))

    for image, image_samples in zip(images, samples, strict=True):
        for sample in image_samples:
            assert patches(sample) == patches(image)
            assert not torch.equal(sample, image)


@pytest.mark.parametrize("kind", sorted(BOOTSTRAP_KINDS))
def test_seeded_per_image(images, kind):
    both = draw_bootstrap(images, 2, kind, [7, 8], patch_size=16)
    again = draw_bootstrap(images, 2, kind, [7, 8], patch_size=16)
    second_alone = draw_bootstrap(images[1:], 2, kind, [8], patch_size=16)
    other_seed = draw_bootstrap(images, 2, kind, [9, 8], patch_size=16)
    assert torch.equal(both, again)
    assert torch.equal(both[1], second_alone[0])  # batch-independent
    assert not torch.equal(both[0], other_seed[0])
    assert not torch.equal(both[:, 0], both[:, 1])  # the B samples differ

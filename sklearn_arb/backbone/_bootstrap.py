"""Bootstrap inputs without systematic structure, drawn in torch on the model's device.

Every sampler takes one normalised image ``(C, H, W)`` and returns ``n_bootstrap``
images ``(B, C, H, W)`` on the same device, drawn with the given
``torch.Generator``. Randomness is per image (one seed each), so an image's
bootstrap samples do not depend on the batch it is processed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["BOOTSTRAP_KINDS", "draw_bootstrap", "image_seeds"]


def _moments_dims(moments: str) -> tuple[int, ...]:
    # "channel": one value per channel; "global": one value over all channels.
    return (1, 2) if moments == "channel" else (0, 1, 2)


def _per_pixel_draws(
    draw: Callable[..., torch.Tensor],
    image: torch.Tensor,
    n_bootstrap: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``n_bootstrap`` images of i.i.d. ``draw`` values (``torch.randn`` or
    ``torch.rand``), shaped, placed and typed like ``image``."""
    return draw(
        (n_bootstrap, *image.shape),
        generator=generator,
        device=image.device,
        dtype=image.dtype,
    )


def normal_bootstrap(
    image: torch.Tensor,
    n_bootstrap: int,
    generator: torch.Generator,
    *,
    width: float = 1.0,
    moments: str = "channel",
    patch_size: int | None = None,
) -> torch.Tensor:
    """Pixels i.i.d. N(mean, (width * std)^2) of the image (per channel or global)."""
    dims = _moments_dims(moments)
    mean = image.mean(dim=dims, keepdim=True)
    std = image.std(dim=dims, keepdim=True, correction=0)
    noise = _per_pixel_draws(torch.randn, image, n_bootstrap, generator)
    return noise.mul_(width * std).add_(mean)  # in place: no temporaries


def uniform_bootstrap(
    image: torch.Tensor,
    n_bootstrap: int,
    generator: torch.Generator,
    *,
    width: float = 1.0,
    moments: str = "channel",
    patch_size: int | None = None,
) -> torch.Tensor:
    """Pixels i.i.d. uniform on [min, max] of the image, half-range scaled by width."""
    dims = _moments_dims(moments)
    low = image.amin(dim=dims, keepdim=True)
    high = image.amax(dim=dims, keepdim=True)
    centre, half_range = (low + high) / 2, width * (high - low) / 2
    unit = _per_pixel_draws(torch.rand, image, n_bootstrap, generator)
    return unit.mul_(2).sub_(1).mul_(half_range).add_(centre)  # in place


def pixel_bootstrap(
    image: torch.Tensor,
    n_bootstrap: int,
    generator: torch.Generator,
    *,
    width: float = 1.0,
    moments: str = "channel",
    patch_size: int | None = None,
) -> torch.Tensor:
    """Whole pixels (channel vectors) drawn with replacement from the image."""
    n_channels, height, width_px = image.shape
    n_pixels = height * width_px
    index = torch.randint(
        n_pixels, (n_bootstrap * n_pixels,), generator=generator, device=image.device
    )
    drawn = image.reshape(n_channels, n_pixels)[:, index]
    return drawn.reshape(n_channels, n_bootstrap, height, width_px).transpose(0, 1)


def patch_bootstrap(
    image: torch.Tensor,
    n_bootstrap: int,
    generator: torch.Generator,
    *,
    width: float = 1.0,
    moments: str = "channel",
    patch_size: int | None = None,
) -> torch.Tensor:
    """The image's patches (the model's patch size) in a random order."""
    n_channels, height, width_px = image.shape
    rows, cols = height // patch_size, width_px // patch_size
    patches = (
        image.reshape(n_channels, rows, patch_size, cols, patch_size)
        .permute(1, 3, 0, 2, 4)
        .reshape(rows * cols, n_channels, patch_size, patch_size)
    )
    order = torch.rand(
        (n_bootstrap, rows * cols), generator=generator, device=image.device
    ).argsort(dim=1)
    shuffled = patches[order]  # (B, rows * cols, C, p, p)
    return (
        shuffled.reshape(n_bootstrap, rows, cols, n_channels, patch_size, patch_size)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(n_bootstrap, n_channels, height, width_px)
    )


BOOTSTRAP_KINDS: dict[str, Callable[..., torch.Tensor]] = {
    "normal": normal_bootstrap,
    "pixel": pixel_bootstrap,
    "uniform": uniform_bootstrap,
    "patch": patch_bootstrap,
}


def draw_bootstrap(
    images: torch.Tensor,
    n_bootstrap: int,
    kind: str,
    seeds: Sequence[int],
    *,
    width: float = 1.0,
    moments: str = "channel",
    patch_size: int | None = None,
) -> torch.Tensor:
    """Bootstrap samples of a batch of normalised images.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
        Normalised images, on the device the samples are drawn on.
    n_bootstrap : int
        B, samples per image.
    kind : {"normal", "pixel", "uniform", "patch"}
        Sampler, see ``BOOTSTRAP_KINDS``.
    seeds : sequence of int, length n
        One seed per image; image i's samples depend on ``seeds[i]`` alone.
    width, moments, patch_size
        Passed to the sampler.

    Returns
    -------
    Tensor of shape (n, B, C, H, W)
    """
    sampler = BOOTSTRAP_KINDS[kind]
    generator = torch.Generator(device=images.device)
    samples = []
    for image, seed in zip(images, seeds, strict=True):
        generator.manual_seed(int(seed))
        samples.append(
            sampler(
                image,
                n_bootstrap,
                generator,
                width=width,
                moments=moments,
                patch_size=patch_size,
            )
        )
    return torch.stack(samples)


def image_seeds(digests: Sequence[str], random_state: Any) -> np.ndarray:
    """One bootstrap seed per image.

    With an int ``random_state`` the seed is a function of the state and of the
    image's content alone, so an image gets the same bootstrap samples in any
    batch, subset or order (``transform(X)[idx] == transform(X[idx])``), which is
    what lets maps be cached per image across cross-validation folds. A
    RandomState instance or None draws the seeds in image order.

    Parameters
    ----------
    digests : sequence of str
        Hexadecimal content digests of the images (see ``array_digests``).
    random_state : int, RandomState instance or None
        The extractor's ``random_state``.

    Returns
    -------
    seeds : ndarray of int64, shape (n_images,)

    Examples
    --------
    >>> from sklearn_arb.backbone._bootstrap import image_seeds
    >>> first, second = image_seeds(["ab", "cd"], 0), image_seeds(["cd"], 0)
    >>> bool(first[1] == second[0]), bool(first[0] == first[1])
    (True, False)
    """
    if isinstance(random_state, Integral):
        return np.array(
            [
                np.random.SeedSequence(
                    [int(random_state), int(digest, 16)]
                ).generate_state(1)[0]
                for digest in digests
            ],
            dtype=np.int64,
        )
    return check_random_state(random_state).randint(
        0, np.iinfo(np.int32).max, size=len(digests)
    )

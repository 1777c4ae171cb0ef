"""ARB's statistics on pure noise: images drawn from the bootstrap distribution.

A noise image is one bootstrap sample of a real image, drawn exactly as
:class:`~sklearn_arb.AttentionExtractor` draws its bootstrap samples (same
sampler, width and moments, on the normalised image). Given to the extractor as
the observed image, its own bootstrap maps are the null: the observed map and
the bootstrap maps then come from the same distribution, up to the moments the
second draw estimates from the noise image itself (per channel over H x W
pixels for ``"normal"``; exact for ``"patch"``, whose shuffle of a shuffle is a
shuffle). Nothing in such an image is significant, so the p-values, pi0 and the
lfdr must say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_is_fitted

from .._extractor import AttentionExtractor
from .._images import load_images
from .._layout import TokenMaps, with_layout
from .._regularizer import BootstrapAttentionRegularizer
from ..backbone._bootstrap import draw_bootstrap
from ._intervals import mean_interval

__all__ = ["noise_calibration", "noise_images"]

_METHODS = ("p", "lfdr", "pi0")


def noise_images(
    extractor: AttentionExtractor, images: Any, *, random_state: Any = None
) -> np.ndarray:
    """One bootstrap sample of each image, drawn as the extractor draws them.

    The sample is drawn on the normalised image by the extractor's sampler
    (``bootstrap``, ``bootstrap_width``, ``bootstrap_moments``) and mapped back
    to pixels; it is not clipped to [0, 1] (clipping would change its
    distribution), so it is meant for :func:`noise_maps`, not for files.

    Parameters
    ----------
    extractor : AttentionExtractor
        Fitted; its image size, normalisation and bootstrap settings are used.
    images : images
        Anything :func:`~sklearn_arb.load_images` reads; never modified.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws (one seed per image, in order).

    Returns
    -------
    noise : ndarray of shape (n_images, H, W, 3), float32
        Pixel values (the model's normalisation undone).

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.evaluation import noise_images
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2)
    >>> extractor = AttentionExtractor(vit, image_size=32).fit()
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> noise = noise_images(extractor, images, random_state=0)
    >>> noise.shape, bool(np.allclose(noise.mean(axis=(1, 2)),
    ...                               images.mean(axis=(1, 2)), atol=0.02))
    ((2, 32, 32, 3), True)
    """
    check_is_fitted(extractor, "model_")
    pixels = load_images(images, image_size=extractor.image_size_)
    mean = torch.tensor(extractor.mean_).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std_).view(1, 3, 1, 1)
    normalised = (torch.from_numpy(pixels).permute(0, 3, 1, 2) - mean) / std
    seeds = check_random_state(random_state).randint(
        0, np.iinfo(np.int32).max, size=len(pixels)
    )
    with torch.inference_mode():
        drawn = draw_bootstrap(
            normalised,
            1,
            extractor.bootstrap,
            seeds,
            width=extractor.bootstrap_width,
            moments=extractor.bootstrap_moments,
            patch_size=extractor.patch_size_,
        )[:, 0]
        noise = (drawn * std + mean).permute(0, 2, 3, 1)
    return noise.contiguous().numpy().astype(np.float32, copy=False)


def noise_maps(extractor: AttentionExtractor, noise: np.ndarray) -> TokenMaps:
    """The extractor's ``[observed | bootstrap]`` maps of noise images.

    What ``transform`` computes, without its reading of files: the noise
    images' pixels lie outside [0, 1] where the draw put them, which
    :func:`~sklearn_arb.load_images` would refuse.

    Parameters
    ----------
    extractor : AttentionExtractor
        Fitted, with ``n_bootstrap >= 1``.
    noise : ndarray of shape (n_images, H, W, 3)
        From :func:`noise_images` (the extractor's image size).

    Returns
    -------
    maps : TokenMaps of shape (n_images, (1 + B) * n_tokens)

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.evaluation._calibration import noise_images, noise_maps
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2)
    >>> extractor = AttentionExtractor(vit, image_size=32, random_state=0).fit()
    >>> noise = noise_images(extractor, np.full((2, 32, 32, 3), 0.5), random_state=0)
    >>> noise_maps(extractor, noise).layout
    MapLayout(n_tokens=16, n_bootstrap=1)
    """
    check_is_fitted(extractor, "model_")
    if extractor.n_bootstrap < 1:
        raise ValueError(
            "Calibration compares each noise image with its own bootstrap maps; "
            "the extractor has n_bootstrap=0. Set n_bootstrap >= 1."
        )
    noise = np.ascontiguousarray(noise, dtype=np.float32)
    expected = (*extractor.image_size_, 3)
    if noise.ndim != 4 or noise.shape[1:] != expected:
        raise ValueError(
            f"noise images must have shape (n, {expected[0]}, {expected[1]}, 3), "
            f"the extractor's image size; got {noise.shape}. Draw them with "
            "noise_images(extractor, images)."
        )
    # What transform computes of pixels (a list target gives each noise image
    # the class of its image), without its reading of files.
    return extractor._pixel_maps(noise, progress=False)


def attainable_level(alpha: float, n_null: int) -> float:
    """The largest attainable p-value level at most ``alpha``.

    With ``p = (1 + #{z0 >= z}) / (1 + m0)``, p takes the values k / (1 + m0);
    when z and the m0 null values are exchangeable,
    ``P(p <= alpha) = floor(alpha (1 + m0)) / (1 + m0)`` exactly.

    Examples
    --------
    >>> from sklearn_arb.evaluation._calibration import attainable_level
    >>> round(attainable_level(0.05, 196), 4)  # 9 / 197
    0.0457
    """
    return float(np.floor(alpha * (1 + n_null) + 1e-9) / (1 + n_null))


def _image_statistics(
    regularizer: BootstrapAttentionRegularizer,
    fit_maps: TokenMaps,
    maps: TokenMaps,
    alphas: tuple[float, ...],
) -> dict[str, np.ndarray]:
    """Per image: the share of p <= alpha, pi0 and the share each method keeps."""
    fitted = clone(regularizer).fit(fit_maps)
    statistics = fitted.compute_statistics(maps)
    values = {
        f"share p<={alpha:g}": (statistics.pvalues <= alpha).mean(axis=1)
        for alpha in alphas
    }
    values["pi0"] = statistics.pi0
    for method in _METHODS:
        kept = fitted.set_params(method=method).transform(maps)
        values[f"kept by {method}"] = (kept != 0).mean(axis=1)
    return values


def noise_calibration(
    extractor: AttentionExtractor,
    images: Any,
    *,
    alphas: tuple[float, ...] = (0.01, 0.05, 0.1),
    regularizer: BootstrapAttentionRegularizer | None = None,
    n_folds: int = 2,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    random_state: Any = None,
) -> Bunch:
    """Calibration of ARB's statistics on images of pure bootstrap noise.

    Each image is replaced by one sample of its own bootstrap distribution
    (:func:`noise_images`), whose maps the extractor computes with their own
    bootstrap maps; nothing in them is significant. For the per-image null
    (each image against its own bootstrap maps) and the pooled null (fitted on
    the noise images of the other ``n_folds - 1`` folds, so an image is never
    judged against its own maps), per image: the share of tokens with
    ``p <= alpha`` for each alpha, pi0, and the share of tokens each method
    (``p``, ``lfdr``, ``pi0``, at the regularizer's thresholds) keeps.

    What is guaranteed, with the one-sided ``p = (1 + #{z0 >= z}) / (1 + m0)``:
    when an observed z and the m0 null z are exchangeable, ``P(p <= alpha)``
    is exactly the attainable level ``floor(alpha (1 + m0)) / (1 + m0)``
    (``<= alpha``; p-values are super-uniform, and with B = 1 and 196 tokens
    the level for 0.05 is 9/197 = 0.0457). ARB's null pools every token
    position, while a token is exchangeable only with the null values at its
    own position; so the exact statement holds for the share of tokens on
    average (the observed and bootstrap maps exchangeable as wholes, tokens
    drawn at random), only approximately, which is what this function
    measures. Tokens of one map are dependent, so the tolerance is a bootstrap
    interval over images, not a binomial one over tokens: a statistic is
    calibrated when its interval holds the attainable level.

    Parameters
    ----------
    extractor : AttentionExtractor
        Fitted, with ``n_bootstrap >= 1``: its model, source and bootstrap.
    images : images
        Real images whose bootstrap distributions are sampled (anything
        :func:`~sklearn_arb.load_images` reads); at least ``n_folds``.
    alphas : tuple of float, default=(0.01, 0.05, 0.1)
        p-value levels.
    regularizer : BootstrapAttentionRegularizer, default=None
        Its settings (p-value kind, pi0 estimator, alpha, gamma, scale) are
        used, with ``null`` set to each of ``"per_image"`` and ``"pooled"``;
        None: the defaults, with ``scale="auto"`` (linear for CDAM's signed
        maps). Never modified.
    n_folds : int, default=2
        Folds of the images for the pooled null (>= 2).
    confidence : float, default=0.95
        Coverage of the intervals over images.
    n_resamples : int, default=2000
        Bootstrap resamples of the images for the intervals.
    random_state : int, RandomState instance or None, default=None
        Seeds the noise draws, the folds and the intervals (the extractor's
        own ``random_state`` seeds its bootstrap maps).

    Returns
    -------
    calibration : Bunch
        ``rows``: a list of dicts, one per null and statistic, with ``null``
        (``"per_image"`` or ``"pooled"``), ``statistic``, ``expected`` (the
        attainable level for a share of p <= alpha, 1 for pi0, NaN for the
        kept shares), ``mean``, ``low``, ``high`` (the interval over images),
        ``n_images`` and ``calibrated`` (for the shares of p <= alpha,
        whether the interval holds ``expected``; None for the others: pi0 is
        capped at 1, so its mean lies below 1 by construction); ``per_image``: for each
        null, a dict of per-image arrays; ``n_null``: m0 per null.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.evaluation import noise_calibration
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2)
    >>> extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=4,
    ...                                random_state=0).fit()
    >>> images = np.random.default_rng(0).random((8, 32, 32, 3))
    >>> result = noise_calibration(extractor, images, alphas=(0.1,),
    ...                            random_state=0)
    >>> row = result.rows[0]
    >>> row["null"], row["statistic"], row["expected"], result.n_null["per_image"]
    ('per_image', 'share p<=0.1', 0.0923..., 64)
    """
    check_is_fitted(extractor, "model_")
    if n_folds < 2:
        raise ValueError(
            f"n_folds={n_folds}: the pooled null is fitted on the other folds, so "
            "at least 2 are needed."
        )
    if not alphas or not all(0 < alpha < 1 for alpha in alphas):
        raise ValueError(f"alphas must be levels in (0, 1); got {alphas!r}.")
    if regularizer is None:
        regularizer = BootstrapAttentionRegularizer(scale="auto")
    rng = check_random_state(random_state)
    noise = noise_images(extractor, images, random_state=rng)
    if len(noise) < n_folds:
        raise ValueError(
            f"{len(noise)} images for n_folds={n_folds}; pass at least {n_folds} "
            "images."
        )
    maps = noise_maps(extractor, noise)
    layout = maps.layout
    per_image = {
        "per_image": _image_statistics(
            clone(regularizer).set_params(null="per_image"),
            maps,
            maps,
            alphas,
        )
    }
    pooled: dict[str, np.ndarray] = {}
    folds = KFold(n_folds, shuffle=True, random_state=rng.randint(2**31))
    n_fit = []
    for fit_index, test_index in folds.split(noise):
        fold = _image_statistics(
            clone(regularizer).set_params(null="pooled"),
            with_layout(maps[fit_index], layout),
            with_layout(maps[test_index], layout),
            alphas,
        )
        n_fit.append(len(fit_index))
        for name, values in fold.items():
            pooled.setdefault(name, np.empty(len(noise)))[test_index] = values
    per_image["pooled"] = pooled
    per_map = layout.n_bootstrap * layout.n_tokens
    n_null = {"per_image": per_map, "pooled": min(n_fit) * per_map}
    interval_seed = rng.randint(2**31)
    rows = []
    for null, statistics in per_image.items():
        for name, values in statistics.items():
            expected = np.nan
            if name.startswith("share p<="):
                alpha = float(name.removeprefix("share p<="))
                expected = attainable_level(alpha, n_null[null])
            elif name == "pi0":
                expected = 1.0
            mean, low, high, n = mean_interval(
                values,
                confidence=confidence,
                n_resamples=n_resamples,
                random_state=interval_seed,
            )
            rows.append(
                {
                    "null": null,
                    "statistic": name,
                    "expected": expected,
                    "mean": mean,
                    "low": low,
                    "high": high,
                    "n_images": n,
                    "calibrated": bool(low <= expected <= high)
                    if name.startswith("share p<=")
                    else None,
                }
            )
    return Bunch(rows=rows, per_image=per_image, n_null=n_null)

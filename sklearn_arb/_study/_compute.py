"""The study's numbers: per image, chunk by chunk, from one random stream."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch
from tqdm import tqdm

from .._extractor import AttentionExtractor
from .._images import image_files, load_images
from .._layout import MapLayout
from .._maps import tokens_to_grid, upsample_map
from .._regularizer import BootstrapAttentionRegularizer
from ..datasets import make_noise_simulation
from ..datasets._token_masks import token_pixel_counts
from ..metrics import (
    mean_in_roi,
    mean_percentile_in_roi,
    nonzero_percentage_in_roi,
    pvalue_srmsd,
    select_by_roi_z,
    sensitivity,
    specificity,
)
from ._checkpoint import checkpoint_key, load_checkpoint, save_checkpoint

METHODS = ("p", "lfdr", "pi0")
SWEEP = np.linspace(0.02, 1.0, 50)  # alpha and gamma values of Fig. 5
SWEPT = {"p": "alpha", "lfdr": "gamma"}  # the threshold each Fig. 5 curve sweeps
CHUNK_SIZE = 16


@dataclass(frozen=True)
class StudySettings:
    """What the study does besides the model.

    Parameters
    ----------
    noise : {"square", "diffuse"}, default="square"
        Kind of injected noise.
    roi_size : int, default=None
        ROI side in px (default: 100 px at 488 px, scaled to the image).
    alpha, gamma : float or "median", default=0.3
        Thresholds of the ``p`` and ``lfdr`` methods (the authors' simulation code).
    pvalue, pi0_pvalues : str, default="one-sided", "two-sided"
        The regularizer's p-value definition and the p-values pi0 comes from.
    in_range : {"dtype", "image"}, default="dtype"
        How image files are scaled to [0, 1] (see ``load_images``).
    seed : int, default=0
        Seed of the noise and of the images drawn in the curves figure.
    scale : {"log", "linear", "auto"}, default="log"
        The regularizer's scale of z ("linear" for CDAM's signed maps).

    Examples
    --------
    >>> from sklearn_arb._study import StudySettings
    >>> StudySettings(noise="diffuse").regularizer("lfdr", n_bootstrap=1).null
    'per_image'
    """

    noise: str = "square"
    roi_size: int | None = None
    alpha: float | str = 0.3
    gamma: float | str = 0.3
    pvalue: str = "one-sided"
    pi0_pvalues: str = "two-sided"
    in_range: str = "dtype"
    seed: int = 0
    scale: str = "log"

    def regularizer(
        self, method: str, n_bootstrap: int
    ) -> BootstrapAttentionRegularizer:
        """The paper's regularizer: each image against its own bootstrap null."""
        return BootstrapAttentionRegularizer(
            n_bootstrap=n_bootstrap,
            method=method,
            alpha=self.alpha,
            gamma=self.gamma,
            null="per_image",
            pvalue=self.pvalue,
            pi0_pvalues=self.pi0_pvalues,
            scale=self.scale,
        )


def list_images(folder: Path, n_images: int | None) -> tuple[list[Path], list[str]]:
    """Image files of the class folders (each walked as :func:`~sklearn_arb.
    load_images` walks a folder), taken class by class in turn, and their
    classes; sorted by path."""
    if not folder.is_dir():
        raise ValueError(f"No data folder at {folder}; pass a folder of class folders.")
    per_class = [
        [(path, d.name) for path in image_files(d)]
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    ]
    per_class = [files for files in per_class if files]
    if not per_class:
        raise ValueError(
            f"{folder} has no class folders with images; pass a folder of class "
            "folders (one per class) of images."
        )
    longest = max(len(files) for files in per_class)
    ordered = [
        files[i] for i in range(longest) for files in per_class if i < len(files)
    ]
    chosen = sorted(ordered[:n_images] if n_images else ordered)
    return [path for path, _ in chosen], [name for _, name in chosen]


def perturb(
    images: np.ndarray,
    settings: StudySettings,
    patch_size: int,
    rng: np.random.RandomState,
) -> Bunch:
    """The noise simulation, image by image from one random stream, so chunks of a
    stream get the noise the whole set would; a grey image gets grey noise."""
    noisy = np.empty_like(images)
    pixel_masks = np.empty(images.shape[:3], dtype=bool)
    token_masks, grey = [], []
    for i, image in enumerate(images):
        grey.append(bool(np.all(image == image[..., :1])))
        source = image[np.newaxis, ..., 0] if grey[-1] else image[np.newaxis]
        perturbed, masks, tokens = make_noise_simulation(
            source,
            noise=settings.noise,
            size=settings.roi_size,
            patch_size=patch_size,
            random_state=rng,
        )
        noisy[i] = perturbed[0, ..., np.newaxis] if grey[-1] else perturbed[0]
        pixel_masks[i] = masks[0]
        token_masks.append(tokens[0])
    return Bunch(
        images=noisy,
        pixel_masks=pixel_masks,
        token_masks=np.array(token_masks),
        grey=np.array(grey),
    )


def _to_pixels(token_maps: np.ndarray, extractor: AttentionExtractor) -> np.ndarray:
    grid = tokens_to_grid(token_maps, extractor.grid_shape_)
    return upsample_map(grid, extractor.patch_size_)


def chunk_metrics(
    X: np.ndarray,
    pixel_masks: np.ndarray,
    extractor: AttentionExtractor,
    settings: StudySettings,
) -> Bunch:
    """Per-image metrics and sweep curves of one chunk of maps (its pixel maps
    live only here)."""
    layout = MapLayout(extractor.n_tokens_, extractor.n_bootstrap)
    before = _to_pixels(layout.observed(X), extractor)
    stats = settings.regularizer("p", layout.n_bootstrap).fit(X).compute_statistics(X)
    z_pixels = _to_pixels(stats.z, extractor)
    metrics = {
        "mean_z_roi": mean_in_roi(z_pixels, pixel_masks),
        "selected": select_by_roi_z(z_pixels, pixel_masks),
        "mp_before": mean_percentile_in_roi(before, pixel_masks),
        "nz_before": nonzero_percentage_in_roi(before, pixel_masks),
        "srmsd_roi": pvalue_srmsd(_to_pixels(stats.pvalues, extractor), pixel_masks),
        "pi0": np.asarray(stats.pi0, dtype=float),
    }
    curves = {}
    for method in METHODS:
        regularizer = settings.regularizer(method, layout.n_bootstrap).fit(X)
        after = _to_pixels(regularizer.transform(X), extractor)
        metrics[f"mp_after_{method}"] = mean_percentile_in_roi(
            after, pixel_masks, reference=before
        )
        metrics[f"nz_after_{method}"] = nonzero_percentage_in_roi(after, pixel_masks)
        metrics[f"sensitivity_{method}"] = sensitivity(before, after, pixel_masks)
        metrics[f"specificity_{method}"] = specificity(before, after, pixel_masks)
        if method in SWEPT:
            curves[method] = _sweep(regularizer, X, pixel_masks, extractor)
    return Bunch(metrics=metrics, curves=curves)


def _sweep(regularizer, X, pixel_masks, extractor) -> tuple[np.ndarray, ...]:
    """Sensitivity and specificity ``(n_images, len(SWEEP))`` over the sweep of the
    regularizer's threshold.

    The statistics are computed once (the threshold does not change them), and
    the metrics are taken on tokens: a token map upsampled by repetition sums
    over a pixel region as the token scores weighted by each token's pixels in
    the region, so a token map times those counts has the pixel map's sums.
    """
    roi_pixels = token_pixel_counts(pixel_masks, extractor.patch_size_)
    rest_pixels = extractor.patch_size_**2 - roi_pixels
    observed = MapLayout(extractor.n_tokens_, extractor.n_bootstrap).observed(X)
    statistics = regularizer.compute_statistics(X)
    sens, spec = [], []
    for value in SWEEP:
        regularizer.set_params(**{SWEPT[regularizer.method]: value})
        after = regularizer.regularize_statistics(statistics)
        sens.append(
            sensitivity(observed * roi_pixels, after * roi_pixels, roi_pixels > 0)
        )
        spec.append(
            specificity(observed * rest_pixels, after * rest_pixels, rest_pixels == 0)
        )
    return np.array(sens).T, np.array(spec).T


def _readable_images(
    paths: list[Path], image_size: tuple[int, int], in_range: str
) -> tuple[list, list[int]]:
    """The images of ``paths`` that can be read, and their positions; each
    unreadable file is named on stderr and left out (it draws no noise)."""
    images, kept = [], []
    for position, path in enumerate(paths):
        try:
            image = load_images(path, image_size=image_size, in_range=in_range)
            images.append(image[0])
        except (ValueError, OSError) as exc:
            tqdm.write(f"skipping {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        kept.append(position)
    return images, kept


def _chunk_results(
    paths: list[Path],
    extractor: AttentionExtractor,
    settings: StudySettings,
    rng: np.random.RandomState,
) -> Bunch | None:
    """Load, perturb, map and score one chunk of images (None if none is
    readable); ``index`` holds the positions in ``paths`` of those scored."""
    images, kept = _readable_images(paths, extractor.image_size_, settings.in_range)
    if not images:
        return None
    noisy = perturb(np.stack(images), settings, extractor.patch_size_, rng)
    del images
    X = extractor.transform(noisy.images)
    part = chunk_metrics(X, noisy.pixel_masks, extractor, settings)
    part.metrics["token_roi_size"] = noisy.token_masks.sum(axis=1)
    part.grey = noisy.grey
    part.roi_pixels = noisy.pixel_masks.sum(axis=(1, 2))
    part.index = np.array(kept)
    return part


def compute_study(
    paths: list[Path],
    extractor: AttentionExtractor,
    settings: StudySettings,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    checkpoint: Path | None = None,
) -> Bunch:
    """Per-image results of the study, ``chunk_size`` images in memory at a time.

    Returns a Bunch: ``index`` (n_images,), the positions in ``paths`` of the images
    studied (an unreadable file is skipped); ``metrics`` (name -> array
    (n_images,)); ``curves`` (method -> (sensitivity, specificity), each
    (n_images, len(SWEEP))); ``grey`` and ``roi_pixels`` (ROI size in pixels), both
    (n_images,). With a ``checkpoint`` file, the results so far and the noise's
    random state are saved there after each chunk, and a run with the same images,
    model and settings continues from it.
    """
    rng = np.random.RandomState(settings.seed)
    key = "" if checkpoint is None else checkpoint_key(paths, extractor, settings)
    done = None if checkpoint is None else load_checkpoint(checkpoint, key, rng)
    parts = [] if done is None else [done]
    first = 0 if done is None else done.pop("n_seen")
    with tqdm(
        total=len(paths),
        initial=first,
        desc="images",
        unit="image",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for start in range(first, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            part = _chunk_results(chunk, extractor, settings, rng)
            if part is not None:
                part.index += start
                parts = [_concatenate([*parts, part])]
            if checkpoint is not None and parts:
                save_checkpoint(checkpoint, key, parts[0], rng, start + len(chunk))
            bar.update(len(chunk))
    if not parts:
        raise ValueError(
            f"None of the {len(paths)} image files could be read; pass image files "
            "PIL can open."
        )
    return parts[0]


def _concatenate(parts: list[Bunch]) -> Bunch:
    first = parts[0]
    return Bunch(
        metrics={
            key: np.concatenate([p.metrics[key] for p in parts])
            for key in first.metrics
        },
        curves={
            method: tuple(
                np.concatenate([p.curves[method][k] for p in parts]) for k in (0, 1)
            )
            for method in first.curves
        },
        grey=np.concatenate([p.grey for p in parts]),
        roi_pixels=np.concatenate([p.roi_pixels for p in parts]),
        index=np.concatenate([p.index for p in parts]),
    )

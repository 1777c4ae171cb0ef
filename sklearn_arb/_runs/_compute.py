"""One batch of a ``regularize`` run: images read, maps computed, statistics and
regularized maps, per image its summary row and the arrays of its ``.npz``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._images import load_images
from .._layout import MapLayout
from .._regularizer import BootstrapAttentionRegularizer
from ._errors import RunError, first_line
from ._inputs import Input
from ._panels import render_panel, tile_shape, write_panel
from ._settings import RunSettings
from ._store import Result


@dataclass
class Loaded:
    """An image of a batch, read: the model's input and the panel's copy."""

    item: Input
    result: Result
    digest: str
    model_input: np.ndarray
    display: np.ndarray | None


def display_copy(image: Path | np.ndarray, dpi: int, in_range: str) -> np.ndarray:
    """The image as the panel shows it: uint8, the size of one tile. A JPEG file
    is decoded at a reduced scale (PIL's draft mode), others in full."""
    if isinstance(image, Path):
        with Image.open(image) as file:
            shape = tile_shape((file.height, file.width), dpi)
            file.draft(file.mode, (shape[1], shape[0]))
            small = load_images(file, image_size=shape, in_range=in_range)[0]
    else:
        shape = tile_shape(image.shape[1:3], dpi)
        small = load_images(image, image_size=shape, in_range=in_range)[0]
    return np.round(255 * small).astype(np.uint8)


def read_model_input(
    image: Path | np.ndarray, extractor: Any, in_range: str
) -> np.ndarray:
    """The model's copy of an image, as ``load_images(path, image_size)`` makes
    it (so the maps are the API's)."""
    return load_images(image, image_size=extractor.image_size_, in_range=in_range)[0]


def load(
    item: Input,
    result: Result,
    digest: str,
    extractor: Any,
    dpi: int | None,
    in_range: str,
) -> Loaded:
    """The model's copy of an image and the panel's; nothing at full size is
    kept."""
    model_input = read_model_input(item.image, extractor, in_range)
    display = None if dpi is None else display_copy(item.image, dpi, in_range)
    return Loaded(item, result, digest, model_input, display)


def compute_maps(
    extractor: Any, images: np.ndarray, observed_only: bool = False
) -> np.ndarray:
    """The extractor's maps of a batch: with their bootstrap maps, or the
    observed maps alone (the model run on the images only); the model failing
    (e.g. an overflow) fails every image alike: one RunError."""
    try:
        if observed_only:
            return extractor.transform_observed(images)
        return extractor.transform(images)
    except ValueError as exc:
        raise RunError(first_line(exc)) from None


def regularize_batch(
    batch: list[Loaded],
    extractor: Any,
    settings: RunSettings,
    result_settings: str,
    pooled: BootstrapAttentionRegularizer | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Maps, statistics and regularized maps of a batch: per image, its summary
    row and the arrays of its ``.npz``; each image judged against its own
    bootstrap maps, or against the ``pooled`` null (a fitted regularizer),
    which needs the observed maps alone: then the model runs on the images
    only, and no bootstrap map (``null_attention``, ``null_z``) is written."""
    start = time.perf_counter()
    observed_only = pooled is not None and not pooled.needs_bootstrap_maps()
    maps = compute_maps(
        extractor, np.stack([loaded.model_input for loaded in batch]), observed_only
    )
    layout = MapLayout(extractor.n_tokens_, settings.n_bootstrap)
    params = dict(
        n_bootstrap=settings.n_bootstrap,
        pvalue=settings.pvalue,
        pi0_pvalues=settings.pi0_pvalues,
        alpha=settings.alpha,
        gamma=settings.gamma,
        z_threshold=settings.z_threshold,
        scale=settings.z_scale,
    )
    if pooled is None:
        regularizer = BootstrapAttentionRegularizer(**params, null="per_image")
        regularizer.fit(maps)
    else:
        regularizer = pooled.set_params(**params)
    statistics = regularizer.compute_statistics(maps)
    regularized = {
        method: regularizer.set_params(method=method).transform(maps)
        for method in settings.methods
    }
    seconds = (time.perf_counter() - start) / len(batch)
    outputs = []
    for i, loaded in enumerate(batch):
        attention = statistics.scores[i]
        row: dict[str, Any] = {
            "image": loaded.item.source,
            "result": str(loaded.item.key),
            "n_tokens": attention.size,
            "pi0": round(float(statistics.pi0[i]), 6),
        }
        for method, values in regularized.items():
            row[f"nonzero_percent_{method}"] = round(
                100.0 * np.count_nonzero(values[i]) / values[i].size, 3
            )
            row[f"attention_kept_{method}"] = round(
                float(values[i].sum() / attention.sum()), 6
            )
        row["seconds"] = round(seconds, 4)
        null = {} if observed_only else {"null_attention": layout.bootstrap(maps)[i]}
        null_z = {} if observed_only else {"null_z": statistics.null_z[i]}
        arrays = {
            "attention": attention,
            **null,
            "grid_shape": np.asarray(extractor.grid_shape_),
            "z": statistics.z[i],
            **null_z,
            "pvalues": statistics.pvalues[i],
            "lfdr": statistics.lfdr[i],
            "pi0": statistics.pi0[i],
            **{f"regularized_{m}": values[i] for m, values in regularized.items()},
            "methods": np.asarray(settings.methods),
            "labels": np.asarray([settings.method_label(m) for m in settings.methods]),
            "source": np.asarray(settings.source_label),
            "digest": np.asarray(loaded.digest),
            "settings": np.asarray(result_settings),
            "summary": np.asarray(json.dumps(row)),
        }
        outputs.append((row, arrays))
    return outputs


def panel_job(
    result: Result, display: np.ndarray, arrays: dict[str, Any], dpi: int
) -> Callable[[], None]:
    """Draw and write the panel of one result from its arrays."""
    maps = {str(arrays["source"]): arrays["attention"]}
    for method, label in zip(arrays["methods"], arrays["labels"], strict=True):
        maps[str(label)] = arrays[f"regularized_{method}"]
    grid_shape = tuple(int(s) for s in arrays["grid_shape"])

    def job() -> None:
        panel = render_panel(display, maps, grid_shape, str(result.key))
        write_panel(result.png, panel, dpi)

    return job

"""What an interrupted study keeps: the numbers so far and the noise's random state,
in a hidden file of the output folder, written atomically after each chunk."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import xxhash
from sklearn.utils import Bunch

from .._extractor import AttentionExtractor
from ..backbone._weights import module_weights_identity

CHECKPOINT = ".simulate_partial.npz"  # in the output folder, until the run ends
# Extractor parameters that change where or how fast, not what, it computes; the
# model is named by its weights' digest instead.
_RUNTIME_PARAMS = {"model", "device", "batch_size", "memory"}


def checkpoint_key(
    paths: list[Path], extractor: AttentionExtractor, settings: object
) -> str:
    """A digest of what the results depend on: the image files, the extractor's
    parameters and weights, the study's settings (a dataclass), not the chunk
    size."""
    params = extractor.get_params(deep=False)
    described = [
        asdict(settings),
        {k: repr(v) for k, v in sorted(params.items()) if k not in _RUNTIME_PARAMS},
        module_weights_identity(extractor.model_),
        [f"{p}|{p.stat().st_mtime_ns}|{p.stat().st_size}" for p in paths],
    ]
    return xxhash.xxh3_128_hexdigest(json.dumps(described).encode())


def save_checkpoint(
    path: Path, key: str, done: Bunch, rng: np.random.RandomState, n_seen: int
) -> None:
    """Save the results so far (of the first ``n_seen`` files) and ``rng``'s state
    to ``path``, atomically."""
    _, state, position, has_gauss, gauss = rng.get_state()
    arrays = {
        "key": np.asarray(key),
        "rng": np.asarray(state),
        "rng_extra": np.array([position, has_gauss, gauss]),
        "n_seen": np.asarray(n_seen),
        "grey": done.grey,
        "roi_pixels": done.roi_pixels,
        "index": done.index,
        **{f"metric_{name}": values for name, values in done.metrics.items()},
        **{f"curve_{m}": np.stack(curves) for m, curves in done.curves.items()},
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)  # atomic: a kill leaves the old or the new
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, key: str, rng: np.random.RandomState) -> Bunch | None:
    """The results saved by an interrupted run with the same ``key``, and
    ``n_seen`` the files it went through (``rng`` set to its state), else None."""
    try:
        with np.load(path) as stored:
            if str(stored["key"]) != key:
                return None
            position, has_gauss, gauss = stored["rng_extra"]
            state = ("MT19937", stored["rng"], int(position), int(has_gauss), gauss)
            done = Bunch(
                metrics={
                    name.removeprefix("metric_"): stored[name]
                    for name in stored.files
                    if name.startswith("metric_")
                },
                curves={
                    name.removeprefix("curve_"): tuple(stored[name])
                    for name in stored.files
                    if name.startswith("curve_")
                },
                grey=stored["grey"],
                roi_pixels=stored["roi_pixels"],
                index=stored["index"],
                n_seen=int(stored["n_seen"]),
            )
    except (OSError, KeyError, ValueError):
        return None  # none, or damaged: start afresh
    rng.set_state(state)
    return done

"""Drift of reduced precision (bfloat16, float16) in the maps and in ARB's masks.

``AttentionExtractor(precision="bfloat16" | "float16")`` runs the blocks under
``torch.autocast`` on GPU (softmax in float32). With a GPU, this script measures
that path through the extractor. Without one, it measures the same arithmetic
under CPU autocast (reduced-precision matmuls accumulating in float32, the CLS
softmax in float32) on the same inputs: the rounding that causes the drift, not
the GPU's kernels or speed.

Per precision, against float32 on the same images and bootstrap samples:

- max |map - map32| over the largest score of the float32 map, and the median
  relative error of the scores;
- for ARB (``method="p"``, alpha 0.05, and ``method="lfdr"``, gamma 0.2): the
  share of tokens whose kept/zeroed decision flips.

Run: ``python benchmarks/bench_precision.py [--n-images 20]``, with
``SKLEARN_ARB_DATA`` pointing to the shared data folder (default
``../shared/data``; without it, DeiT-Tiny runs with random weights on random
images).

Results: the "Reduced precision" table of the Benchmarks page
(doc/benchmarks.rst).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from bench_extractor import baseline_inputs

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer, load_images
from sklearn_arb.backbone import cls_attention

DATA_DIR = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
)
PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}
REGULARIZERS = {
    "p, alpha 0.05": dict(method="p", alpha=0.05),
    "lfdr, gamma 0.2": dict(method="lfdr", gamma=0.2),
}


def cpu_autocast_maps(extractor, images, dtype=None) -> np.ndarray:
    """The extractor's maps with its blocks under CPU autocast to ``dtype``
    (None: float32, no autocast)."""
    inputs = baseline_inputs(extractor, images)
    autocast = torch.autocast(
        "cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None
    )
    with torch.inference_mode(), autocast:
        maps = torch.cat(
            [
                cls_attention(extractor.model_, batch)
                for batch in inputs.split(extractor._forward_pass().batch_size)
            ]
        )
    return maps.reshape(len(images), -1).double().numpy()


def kept(maps: np.ndarray, n_bootstrap: int, params: dict) -> np.ndarray:
    regularizer = BootstrapAttentionRegularizer(n_bootstrap=n_bootstrap, **params)
    return regularizer.fit_transform(maps) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=20)
    args = parser.parse_args()
    weights = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"
    paths = sorted((DATA_DIR / "imagenette").glob("*/*.JPEG"))
    step = max(1, len(paths) // args.n_images)
    images = (
        paths[::step][: args.n_images]
        if paths
        else np.random.default_rng(0).random((args.n_images, 224, 224, 3))
    )
    extractor = AttentionExtractor(
        "deit_tiny_patch16_224",
        checkpoint_path=weights if weights.exists() else None,
        n_bootstrap=1,
        random_state=0,
    ).fit()
    # read and resized once: the extractor and the CPU autocast path see the same
    images = load_images(images, image_size=extractor.image_size_)
    on_gpu = extractor.device_.type == "cuda"
    reference = extractor.transform(images)
    n_tokens = extractor.n_tokens_
    observed = reference[:, :n_tokens]
    print(
        f"{len(images)} images, DeiT-Tiny/16 at 224 px, B=1, on "
        f"{'GPU (the extractor)' if on_gpu else 'CPU (autocast, no GPU here)'}"
    )
    if not on_gpu:
        # the same inputs as the extractor's: float32 agrees to rounding
        same = np.abs(cpu_autocast_maps(extractor, images) - reference).max()
        print(f"float32 outside the extractor: max |diff| {same:.1e}")
    for name, dtype in PRECISIONS.items():
        if on_gpu:
            maps = extractor.set_params(precision=name).fit().transform(images)
        else:
            maps = cpu_autocast_maps(extractor, images, dtype)
        drift = np.abs(maps[:, :n_tokens] - observed)
        flips = {
            label: np.mean(kept(maps, 1, params) != kept(reference, 1, params))
            for label, params in REGULARIZERS.items()
        }
        max_drift = (drift.max(axis=1) / observed.max(axis=1)).max()
        print(
            f"{name}: max drift {100 * max_drift:.2f}%"
            f" of the map's largest score, median relative error "
            f"{100 * np.median(drift / observed):.2f}%; decisions flipped: "
            + ", ".join(
                f"{100 * share:.2f}% ({label})" for label, share in flips.items()
            )
        )


if __name__ == "__main__":
    main()

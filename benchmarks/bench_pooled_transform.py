"""Fit once, then serve: a fitted pooled null regularizes new images from their
observed maps alone.

Measures, side by side in one process, images per second of ``transform`` of a
``make_arb_pipeline`` Pipeline on new images:

- pooled: ``null="pooled"``, fitted on reference images; its ``transform`` runs
  the model on the new images alone (``AttentionExtractor.transform_observed``);
- per image: ``null="per_image"``; its ``transform`` runs the model on each new
  image and its B bootstrap samples (the plain baseline).

For B = 1 and 4 at 224 and 448 px (DeiT-Tiny/16 with the shared weights, position
embeddings interpolated to 448 px; Imagenette images; random weights and images
when the shared data is absent). The pooled output is compared with that of the
regularizer on the whole rows (observed and bootstrap maps), what transform gave
before: the share of tokens kept by both or by neither, and the largest
difference of the maps (the model's float32 rounding may differ with the batch's
composition). Rounds alternate the two pipelines, so that other load on a shared
machine hits both alike; the script prints median images per second, their
ratio and the goal: a ratio of at least 0.9 (1 + B).

Run: ``python benchmarks/bench_pooled_transform.py [--n-images 8] [--rounds 3]``,
with the shared data folder at ``../shared/data`` (or ``SKLEARN_ARB_DATA``).

Results: the "Pooled null: fit once, then serve" table of the Benchmarks page
(doc/benchmarks.rst).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from sklearn_arb import load_images, make_arb_pipeline

DATA = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
WEIGHTS = DATA / "weights" / "deit_tiny_patch16_224.pth"


def imagenette(n_images: int, offset: int) -> np.ndarray:
    """``n_images`` Imagenette images spread over the classes (random if absent)."""
    paths = sorted((DATA / "imagenette").glob("*/*.JPEG"))
    if len(paths) < 2 * n_images:
        rng = np.random.default_rng(offset)
        return rng.random((n_images, 224, 224, 3)).astype(np.float32)
    step = len(paths) // (2 * n_images)
    return load_images(paths[offset::step][:n_images], image_size=None)


def pipeline(image_size: int, n_bootstrap: int, null: str):
    extractor_params = {"image_size": image_size, "random_state": 0}
    if WEIGHTS.exists():
        extractor_params["checkpoint_path"] = WEIGHTS
    return make_arb_pipeline(
        "deit_tiny_patch16_224",
        n_bootstrap=n_bootstrap,
        extractor_params=extractor_params,
        regularizer_params={"null": null},
    )


def images_per_second(pipe, images: np.ndarray) -> float:
    start = time.perf_counter()
    pipe.transform(images)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=8, help="new images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--n-bootstrap", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    reference = imagenette(args.n_images, offset=0)
    new = imagenette(args.n_images, offset=1)
    print(
        f"{'size':>5}{'B':>3}{'pooled img/s':>14}{'per image img/s':>17}"
        f"{'ratio':>7}{'goal':>7}{'masks agree':>13}{'max |diff|':>12}"
    )
    for image_size in args.sizes:
        for n_bootstrap in args.n_bootstrap:
            pooled = pipeline(image_size, n_bootstrap, "pooled").fit(reference)
            per_image = pipeline(image_size, n_bootstrap, "per_image")
            per_image.fit(reference[:1])
            extractor, regularizer = pooled.named_steps.values()
            whole_rows = extractor.transform(new)  # the maps transform used to run
            served, before = pooled.transform(new), regularizer.transform(whole_rows)
            agree = np.mean((served > 0) == (before > 0))
            difference = np.abs(served - before).max()
            speeds = {"pooled": [], "per image": []}
            for _ in range(args.rounds):
                speeds["pooled"].append(images_per_second(pooled, new))
                speeds["per image"].append(images_per_second(per_image, new))
            fast, plain = (float(np.median(s)) for s in speeds.values())
            goal = 0.9 * (1 + n_bootstrap)
            print(
                f"{image_size:>5}{n_bootstrap:>3}{fast:>14.2f}{plain:>17.2f}"
                f"{fast / plain:>7.2f}{goal:>7.2f}{agree:>13.4f}{difference:>12.1e}",
                flush=True,
            )
    print(
        f"{args.n_images} new images per transform, medians of {args.rounds} "
        "interleaved rounds; the pooled null fitted on as many reference images."
    )


if __name__ == "__main__":
    main()

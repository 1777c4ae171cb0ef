"""Time of a deletion curve per image against the plain forwards it needs.

A deletion curve of 11 steps (0, 0.1, ..., 1 of the tokens removed in MoRF
order of the image's CLS attention map) costs 11 forward passes per image (the
intact image, which is the first step and fixes the target, and 10 perturbed
ones, sent to the model in batches) plus the removal of the tokens at each
step. The baseline is 11 plain forward passes of the same images through the
same classifier in batches of the same size. The goal is the whole curve within
2x the plain forwards: the imputation must not dominate.

DeiT-Tiny/16 with the shared weights and its classifier at 224 px, a few
Imagenette images; per removal method (``road``, ``black``, ``blur``) the
script runs, interleaved round by round, the curve and the 11 plain forwards,
and the removal alone (every step's ``remove_tokens``, no model). It prints the
median seconds per image of each and the ratio curve / forwards.

Run: ``python benchmarks/bench_deletion.py [--images 8] [--repeats 3]
[--removals road black blur]``, with ``SKLEARN_ARB_DATA`` pointing to the
shared data folder (default ``../shared/data``).

Results: the "Deletion curves" section of doc/benchmarks.rst.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_arb import AttentionExtractor
from sklearn_arb.evaluation import (
    as_classifier,
    deletion_curve,
    remove_tokens,
    token_order,
)

DATA_DIR = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
)
WEIGHTS = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"
IMAGES = DATA_DIR / "imagenette"
FRACTIONS = np.linspace(0, 1, 11)


def _removal_only(classifier, pixels, maps, removal):
    """Every step's token removal of the curve, without the model."""
    order = token_order(maps, random_state=0)
    n_tokens = maps.shape[1]
    for count in np.floor(FRACTIONS * n_tokens + 0.5).astype(int)[1:]:
        removed = np.zeros(maps.shape, dtype=bool)
        np.put_along_axis(removed, order[:, :count], True, axis=1)
        remove_tokens(
            pixels,
            removed,
            classifier.patch_size,
            method=removal,
            background=classifier.mean,
            random_state=0,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--removals", nargs="+", default=["road", "black", "blur"])
    args = parser.parse_args()

    files = sorted(IMAGES.glob("*/*.JPEG"))[:: 200 // args.images][: args.images]
    extractor = AttentionExtractor(
        "deit_tiny_patch16_224", checkpoint_path=WEIGHTS, n_bootstrap=0
    ).fit()
    classifier = as_classifier(extractor)
    pixels = classifier.load(files)
    maps = extractor.transform(pixels)
    stacked = np.repeat(pixels, len(FRACTIONS), axis=0)
    n_images = len(pixels)
    print(
        f"{n_images} images, {len(FRACTIONS)} steps, batch {classifier.batch_size}, "
        f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}"
    )

    def timed(run):
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) / n_images

    for removal in args.removals:
        times = {"curve": [], "forwards": [], "removal": []}
        for _ in range(args.repeats):
            times["curve"].append(
                timed(
                    lambda removal=removal: deletion_curve(
                        classifier, pixels, maps, removal=removal, random_state=0
                    )
                )
            )
            times["forwards"].append(timed(lambda: classifier.probabilities(stacked)))
            times["removal"].append(
                timed(
                    lambda removal=removal: _removal_only(
                        classifier, pixels, maps, removal
                    )
                )
            )
        median = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"{removal:>5}: curve {median['curve']:.3f} s/image, 11 forwards "
            f"{median['forwards']:.3f} s/image, removal alone "
            f"{median['removal']:.3f} s/image; curve / forwards "
            f"{median['curve'] / median['forwards']:.2f}x"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

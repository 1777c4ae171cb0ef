"""Speed of the noise study's threshold sweep: the fast path vs a plain loop.

The noise simulation study (``sklearn-arb simulate``) draws, for each image, the
sensitivity and specificity curves of the p and lfdr rules over 50 thresholds (the
paper's Fig. 5). Fast path (what the study runs): the statistics computed once per
chunk (``compute_statistics``), each threshold applied to them
(``regularize_statistics``), and the metrics summed on tokens weighted by each
token's pixels in the ROI. Baseline, in the same process: ``transform`` at each
threshold (statistics again each time), the maps upsampled to pixels and the
metrics summed over pixels (what the study did before). Both run on the same maps:
DeiT-Tiny/16 at 224 px, B = 1, per-image null, of 32 Imagenette images with square
noise injected (the study's defaults); the curves are checked to agree. Rounds
alternate fast and plain; prints medians in seconds and their ratio.

Run: python benchmarks/bench_sweep.py [--rounds N]
Results: the "Noise study sweep" table of the Benchmarks page (doc/benchmarks.rst).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from sklearn_arb import AttentionExtractor, MapLayout, load_images
from sklearn_arb._maps import tokens_to_grid, upsample_map
from sklearn_arb._study._compute import SWEEP, SWEPT, StudySettings, _sweep
from sklearn_arb.datasets import make_noise_simulation
from sklearn_arb.metrics import sensitivity, specificity

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def plain_sweep(regularizer, X, pixel_masks, extractor):
    """transform at every threshold, metrics over the upsampled pixel maps."""

    def pixels(maps):
        return upsample_map(
            tokens_to_grid(maps, extractor.grid_shape_), extractor.patch_size_
        )

    before = pixels(MapLayout(extractor.n_tokens_, extractor.n_bootstrap).observed(X))
    sens, spec = [], []
    for value in SWEEP:
        regularizer.set_params(**{SWEPT[regularizer.method]: value})
        after = pixels(regularizer.transform(X))
        sens.append(sensitivity(before, after, pixel_masks))
        spec.append(specificity(before, after, pixel_masks))
    return np.array(sens).T, np.array(spec).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    paths = sorted((DATA / "imagenette").rglob("*.JPEG"))[:32]
    extractor = AttentionExtractor(
        checkpoint_path=DATA / "weights" / "deit_tiny_patch16_224.pth", random_state=0
    ).fit()
    noisy, pixel_masks = make_noise_simulation(
        load_images(paths, image_size=224), random_state=0
    )
    X = np.asarray(extractor.transform(noisy))
    settings = StudySettings()
    for method in ("p", "lfdr"):
        regularizer = settings.regularizer(method, extractor.n_bootstrap).fit(X)
        fast_curves = _sweep(regularizer, X, pixel_masks, extractor)
        plain_curves = plain_sweep(regularizer, X, pixel_masks, extractor)
        worst = max(
            np.abs(f - p).max() for f, p in zip(fast_curves, plain_curves, strict=True)
        )
        assert worst < 1e-5, f"{method}: the curves differ by {worst}"
        times = {"fast": [], "plain": []}
        for _ in range(args.rounds):
            for name, sweep in (("fast", _sweep), ("plain", plain_sweep)):
                start = time.perf_counter()
                sweep(regularizer, X, pixel_masks, extractor)
                times[name].append(time.perf_counter() - start)
        fast, plain = np.median(times["fast"]), np.median(times["plain"])
        print(
            f"{method} sweep, {len(X)} images x {len(SWEEP)} thresholds: fast "
            f"{fast:.3f} s, plain {plain:.3f} s, ratio {plain / fast:.1f}x "
            f"(curves agree to {worst:.1e})"
        )


if __name__ == "__main__":
    main()

"""Cost of ``sklearn-arb regularize`` over the extractor alone, on the same images.

Baseline: ``AttentionExtractor(...).fit().transform(paths)`` on the Imagenette
images (files read, resized, observed and bootstrap maps computed), the least any
run must do. Measured in the same process: ``sklearn-arb regularize --no-plots``
(the same maps, plus statistics, regularized maps, one ``.npz`` per image and
summary.csv) and ``sklearn-arb regularize`` with its PNG panels, each into a fresh
output folder. DeiT-Tiny/16 at 224 px, B = 1, the command's defaults otherwise.
Prints the median seconds of each and the ratios to the baseline (goals: <= 1.1
without panels, <= 2 with them). The measured table is in doc/benchmarks.rst.

Run: python benchmarks/bench_regularize.py [--n-images 200] [--repeats 3]
The data folder is ``../shared/data`` beside the repository, or $SKLEARN_ARB_DATA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sklearn_arb import AttentionExtractor
from sklearn_arb.cli import main

DATA = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared/data"
    )
).resolve()


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    weights = DATA / "weights" / "deit_tiny_patch16_224.pth"
    paths = sorted((DATA / "imagenette").glob("*/*.JPEG"))[: options.n_images]
    if not paths or not weights.is_file():
        raise SystemExit(f"Imagenette images or DeiT weights not found under {DATA}")

    def extractor_alone() -> None:
        extractor = AttentionExtractor(checkpoint_path=weights, random_state=0)
        extractor.fit().transform(paths)

    def command(*extra: str) -> Callable[[], None]:
        def run() -> None:
            with tempfile.TemporaryDirectory() as output:
                args = ["regularize", *map(str, paths), "--weights", str(weights)]
                status = main([*args, "--output", output, "--quiet", *extra])
                if status != 0:
                    raise RuntimeError(f"regularize exited with {status}")

        return run

    extractor_alone()  # warm up: model file and images in the page cache
    runs = {
        "extractor alone": extractor_alone,
        "regularize --no-plots": command("--no-plots"),
        "regularize (panels)": command(),
    }
    # Round robin, so that a change in the machine's load hits every variant.
    times = {name: [] for name in runs}
    for _ in range(options.repeats):
        for name, run in runs.items():
            times[name].append(_timed(run))
    rows = [(name, statistics.median(seconds)) for name, seconds in times.items()]
    baseline = rows[0][1]
    print(f"{len(paths)} images, median of {options.repeats} runs")
    for name, seconds in rows:
        print(
            f"{name:24s} {seconds:7.2f} s  {1000 * seconds / len(paths):6.1f} ms/image"
            f"  ratio {seconds / baseline:.2f}"
        )


if __name__ == "__main__":
    main_benchmark()

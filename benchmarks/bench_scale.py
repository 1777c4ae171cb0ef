"""Images per second of ``sklearn-arb regularize``: local, sharded, on Ray.

On the same Imagenette images, in one process: the extractor alone
(``AttentionExtractor(...).fit().transform(paths)``: files read, resized, maps
computed; the baseline), then ``sklearn-arb regularize --no-plots`` into fresh
output folders: locally, as two shards run one after the other (``--shard 0/2``
and ``1/2``, the cost of a job array's jobs on one machine), and with
``--engine ray`` on 1 and 2 CPU actors of a local Ray started once beforehand
(``ray.init(num_cpus=2)``; its start is not counted, each run's actor start and
model load is). DeiT-Tiny/16 at 224 px, B = 1, the shared weights. Prints the
median seconds and images/s of each, the ratio of end to end over the extractor
alone (goal >= 0.9) and of 2 Ray actors over 1 (goal >= 1.8 where there are two
free cores), and the number of CPU cores. The measured table is in
doc/large_image_sets.rst.

Run: python benchmarks/bench_scale.py [--n-images 200] [--repeats 3]
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


def _median_seconds(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _command(
    paths: list[Path], weights: Path, *options: str, shards: int = 1
) -> Callable[[], None]:
    """``regularize`` into a fresh folder; with ``shards``, each shard in turn."""
    argv = ["regularize", *map(str, paths), "--weights", str(weights), *options]

    def run() -> None:
        with tempfile.TemporaryDirectory() as output:
            for k in range(shards):
                shard = ["--shard", f"{k}/{shards}"] if shards > 1 else []
                command = [*argv, *shard, "--output", output, "--no-plots", "--quiet"]
                assert main(command) == 0

    return run


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    weights = DATA / "weights" / "deit_tiny_patch16_224.pth"
    paths = sorted((DATA / "imagenette").glob("*/*.JPEG"))[: args.n_images]
    n = len(paths)

    def extractor_alone() -> None:
        AttentionExtractor(checkpoint_path=weights, random_state=0).fit().transform(
            paths
        )

    runs: dict[str, Callable[[], None]] = {
        "extractor alone": extractor_alone,
        "regularize, local": _command(paths, weights),
        "regularize, 2 shards in turn": _command(paths, weights, shards=2),
    }
    try:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for workers in ("1", "2"):
            runs[f"regularize, Ray {workers} CPU actor(s)"] = _command(
                paths, weights, "--engine", "ray", "--workers", workers
            )
    except ImportError:
        print("Ray is not installed: its rows are left out")
    seconds = {name: _median_seconds(run, args.repeats) for name, run in runs.items()}
    print(f"{n} images, {os.cpu_count()} CPU cores, median of {args.repeats}")
    for name, value in seconds.items():
        print(f"{name:34s} {value:8.2f} s  {n / value:7.2f} images/s")
    base = seconds["extractor alone"]
    print(f"end to end / extractor alone: {base / seconds['regularize, local']:.2f}")
    if "regularize, Ray 2 CPU actor(s)" in seconds:
        ratio = (
            seconds["regularize, Ray 1 CPU actor(s)"]
            / seconds["regularize, Ray 2 CPU actor(s)"]
        )
        print(f"Ray 2 actors / 1 actor: {ratio:.2f}x")


if __name__ == "__main__":
    main_bench()

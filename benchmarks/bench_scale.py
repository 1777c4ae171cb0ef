"""Images per second of ``sklearn-arb regularize``: local, sharded, on Ray.

First, per image, the cost of reading it against the model's: decoding and
resizing a file to the model's input (``load_images(path, image_size=224)``) and
to the panel's small copy, against the extractor's ``transform`` of images
already decoded (batches of 16), medians over the images.

Then, on the same Imagenette images, in one process, the runs interleaved in
each repeat: the model alone (the extractor's ``transform`` of the decoded
arrays), the extractor alone
(``AttentionExtractor(...).fit().transform(paths)``: files read, resized, maps
computed; the baseline), then ``sklearn-arb regularize --no-plots`` into fresh
output folders: locally with the next batch read in loader threads while the
model computes (the default) and with ``--loader-threads 0`` (each batch read,
then computed), as two shards run one after the other (``--shard 0/2`` and
``1/2``, the cost of a job array's jobs on one machine), and with ``--engine
ray`` on 1 and 2 CPU actors of a local Ray started once beforehand
(``ray.init(num_cpus=2)``; its start is not counted, each run's actor start and
model load is; ``--no-ray`` leaves these out). DeiT-Tiny/16 at 224 px, B = 1,
the shared weights. Prints the median seconds and images/s of each, the ratio
of end to end over the extractor alone (goal >= 0.9), with and without the
loader threads, and of 2 Ray actors over 1 (goal >= 1.8 where there are two
free cores), and the number of CPU cores. The measured tables are in
doc/large_image_sets.rst.

Run: python benchmarks/bench_scale.py [--n-images 200] [--repeats 3] [--no-ray]
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

import numpy as np
from PIL import Image

from sklearn_arb import AttentionExtractor, load_images
from sklearn_arb._runs import tile_shape
from sklearn_arb.cli import main

DATA = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared/data"
    )
).resolve()


def _median_seconds(
    runs: dict[str, Callable[[], None]], repeats: int
) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved in every round so that a
    drift of the machine's speed shifts them all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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


def _read_cost(paths: list[Path], weights: Path) -> np.ndarray:
    """Decoded model inputs of ``paths``; prints the median milliseconds per
    image of reading them (model input, panel copy) and of the model."""
    model_input, panel, model = [], [], []
    images = []
    for path in paths:
        start = time.perf_counter()
        images.append(load_images(path, image_size=224)[0])
        model_input.append(time.perf_counter() - start)
        start = time.perf_counter()
        with Image.open(path) as file:  # as the command's panel copy reads it
            shape = tile_shape((file.height, file.width), 100)
            file.draft(file.mode, (shape[1], shape[0]))
            load_images(file, image_size=shape)
        panel.append(time.perf_counter() - start)
    decoded = np.stack(images)
    extractor = AttentionExtractor(checkpoint_path=weights, random_state=0).fit()
    extractor.transform(decoded[:2])  # warm-up
    for i in range(0, len(decoded), 16):
        start = time.perf_counter()
        extractor.transform(decoded[i : i + 16])
        model.append((time.perf_counter() - start) / len(decoded[i : i + 16]))
    print(
        "per image, median ms: read for the model "
        f"{1e3 * statistics.median(model_input):.1f}, panel copy "
        f"{1e3 * statistics.median(panel):.1f}, model (B = 1, batches of 16) "
        f"{1e3 * statistics.median(model):.1f}"
    )
    return decoded


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    args = parser.parse_args()
    weights = DATA / "weights" / "deit_tiny_patch16_224.pth"
    paths = sorted((DATA / "imagenette").glob("*/*.JPEG"))[: args.n_images]
    n = len(paths)
    decoded = _read_cost(paths, weights)

    def model_alone() -> None:
        AttentionExtractor(checkpoint_path=weights, random_state=0).fit().transform(
            decoded
        )

    def extractor_alone() -> None:
        AttentionExtractor(checkpoint_path=weights, random_state=0).fit().transform(
            paths
        )

    runs: dict[str, Callable[[], None]] = {
        "model alone (decoded arrays)": model_alone,
        "extractor alone": extractor_alone,
        "regularize, local": _command(paths, weights),
        "regularize, --loader-threads 0": _command(
            paths, weights, "--loader-threads", "0"
        ),
        "regularize, 2 shards in turn": _command(paths, weights, shards=2),
    }
    try:
        if args.no_ray:
            raise ImportError
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for workers in ("1", "2"):
            runs[f"regularize, Ray {workers} CPU actor(s)"] = _command(
                paths, weights, "--engine", "ray", "--workers", workers
            )
    except ImportError:
        print("Ray is left out (--no-ray, or not installed)")
    seconds = _median_seconds(runs, args.repeats)
    print(f"{n} images, {os.cpu_count()} CPU cores, median of {args.repeats}")
    for name, value in seconds.items():
        print(f"{name:34s} {value:8.2f} s  {n / value:7.2f} images/s")
    base = seconds["extractor alone"]
    for name in ("regularize, local", "regularize, --loader-threads 0"):
        print(f"{name}: end to end / extractor alone {base / seconds[name]:.2f}")
    if "regularize, Ray 2 CPU actor(s)" in seconds:
        ratio = (
            seconds["regularize, Ray 1 CPU actor(s)"]
            / seconds["regularize, Ray 2 CPU actor(s)"]
        )
        print(f"Ray 2 actors / 1 actor: {ratio:.2f}x")


if __name__ == "__main__":
    main_bench()

"""Time per image of each map source, fast path against the plain computation.

For DeiT-Tiny/16 (the shared weights with their classifier if present, else
random weights) at 224 and 448 px, one image per call (batch 1), three pairs
run interleaved in every round on the same normalised image:

- attention: ``cls_attention`` (fused kernels in the blocks before the read
  one, the read block's CLS row alone) against ``reference_cls_attention``
  (explicit N x N attention in every block);
- rollout: ``rollout`` (the CLS row times each block's attention, in row
  chunks) against ``reference_rollout`` (every block's full N x N matrix,
  multiplied as matrices);
- cdam: ``cdam`` (earlier blocks without autograd, the backward pass through
  the last block and the head) against ``reference_cdam`` (autograd from the
  pixels through the whole network).

The script prints, per size and source, the median seconds of each, their
ratio (plain / fast) and the largest map difference.

Run: ``python benchmarks/bench_sources.py [--repeats 5] [--sizes 224 448]
[--threads N]``, with ``SKLEARN_ARB_DATA`` pointing to the shared data folder
(default ``../shared/data``).

Results: the "Speed" table of the Sources page (doc/sources.rst).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from sklearn_arb.backbone import cls_attention, load_vit, reference_cls_attention
from sklearn_arb.backbone._cdam import cdam, reference_cdam
from sklearn_arb.backbone._rollout import reference_rollout, rollout

DATA_DIR = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
)
WEIGHTS = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"


def _inference(function):
    def run(model, images):
        with torch.inference_mode():
            return function(model, images)

    return run


PAIRS = {
    "attention": (_inference(cls_attention), _inference(reference_cls_attention)),
    "rollout": (_inference(rollout), _inference(reference_rollout)),
    "cdam": (_inference(cdam), reference_cdam),
}


def _seconds(function, model, images) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    maps = function(model, images)
    return time.perf_counter() - start, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = WEIGHTS if WEIGHTS.exists() else None
    print(
        f"DeiT-Tiny/16 ({'shared weights' if checkpoint else 'random weights'}), "
        f"batch 1, {torch.get_num_threads()} threads, {args.repeats} rounds"
    )
    print(
        f"{'px':>4} {'source':>9} {'fast (s)':>9} {'plain (s)':>9} "
        f"{'plain/fast':>10} {'max |diff|':>10}"
    )
    for size in args.sizes:
        model = load_vit(
            "deit_tiny_patch16_224",
            checkpoint_path=checkpoint,
            image_size=size,
            keep_head=True,
        )
        images = torch.randn(
            1, 3, size, size, generator=torch.Generator().manual_seed(0)
        )
        for fast, plain in PAIRS.values():  # warm-up
            fast(model, images), plain(model, images)
        times = {name: ([], []) for name in PAIRS}
        gaps = {}
        for _ in range(args.repeats):
            for name, (fast, plain) in PAIRS.items():
                fast_s, fast_maps = _seconds(fast, model, images)
                plain_s, plain_maps = _seconds(plain, model, images)
                times[name][0].append(fast_s)
                times[name][1].append(plain_s)
                gaps[name] = float((fast_maps - plain_maps).abs().max())
        for name, (fast_s, plain_s) in times.items():
            fast_median = statistics.median(fast_s)
            plain_median = statistics.median(plain_s)
            print(
                f"{size:>4} {name:>9} {fast_median:>9.4f} {plain_median:>9.4f} "
                f"{plain_median / fast_median:>9.2f}x {gaps[name]:>10.1e}"
            )


if __name__ == "__main__":
    main()

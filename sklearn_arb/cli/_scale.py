"""Options for many images: ``--shard K/N`` for job arrays, ``--engine ray``.

Which images a shard holds is the run engine's rule (``in_shard``).
"""

from __future__ import annotations

import argparse

from ._arguments import positive_int


def shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``, ``0 <= K < N`` (a Slurm array's task id)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = -1
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(
            "expected K/N with 0 <= K < N, e.g. 0/4 for the "
            "first of four shards ($SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
        )
    return index, count


def add_shard_argument(group: argparse._ArgumentGroup) -> None:
    """``--shard K/N``."""
    group.add_argument(
        "--shard",
        type=shard,
        default=None,
        metavar="K/N",
        help="process shard K (0 <= K < N) of N: a deterministic share of the "
        "images by a hash of their path, so that N jobs started in the same folder "
        "with the same arguments together do one run's work",
    )


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard``, and ``--engine ray`` with its options."""
    group = parser.add_argument_group("many images")
    add_shard_argument(group)
    group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="run in this process, or on Ray actors, each loading the model once "
        "(pip install sklearn-arb[ray]) (default: %(default)s)",
    )
    group.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: the Ray cluster to join (e.g. auto or "
        "ray://host:10001); default: a local Ray on this machine",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --engine ray: actors, each with its own model (default: 1)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        metavar="G",
        help="with --engine ray: GPUs per actor, e.g. 1, or 0.5 to share one "
        "between two actors (default: 0, CPU)",
    )

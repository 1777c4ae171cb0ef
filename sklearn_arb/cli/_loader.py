"""``--loader-threads N``: threads that read the next batch of images."""

from __future__ import annotations

import argparse

from ._arguments import non_negative_int


def add_loader_argument(group: argparse._ArgumentGroup) -> None:
    """``--loader-threads N``."""
    group.add_argument(
        "--loader-threads",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="threads that decode and resize the next batch of images while the "
        "model computes this one; 0 reads each batch before computing it "
        "(default: one per core, at most 8)",
    )

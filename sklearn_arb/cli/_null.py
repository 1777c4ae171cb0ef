"""``sklearn-arb fit-null`` and ``merge-null``: their options, and the run
engine's pooled null in two passes (:func:`sklearn_arb._runs.fit_null`,
:func:`~sklearn_arb._runs.merge_null`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import BootstrapAttentionRegularizer
from .._runs import DEFAULT_BATCH_SIZE, fit_null, merge_null
from ._arguments import (
    add_in_range_argument,
    add_model_arguments,
    add_source_arguments,
    non_negative_int,
    run_settings,
)
from ._loader import add_loader_argument
from ._regularize import add_bootstrap_arguments
from ._scale import add_shard_argument


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Declare ``fit-null`` and ``merge-null`` and their options on ``commands``."""
    fit = commands.add_parser(
        "fit-null",
        help="fit a pooled null on images (a shard of them) into a state file",
        description="Run the model over the images and pool their bootstrap maps "
        "into one null, saved to OUTPUT (a .npz of arrays, read without pickle). "
        "With --shard K/N, N jobs each fit a share; merge-null joins their files "
        "and regularize --null-state judges images against the result. An "
        "interrupted run resumes when run again with the same arguments.",
    )
    fit.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    fit.add_argument(
        "--output", type=Path, required=True, metavar="FILE", help="the state file"
    )
    add_model_arguments(
        fit,
        batch_help=f"images read and run through the model together (default: "
        f"{DEFAULT_BATCH_SIZE})",
        batch_dest="images_per_batch",
    )
    add_source_arguments(fit)
    group = fit.add_argument_group("bootstrap and null")
    add_bootstrap_arguments(group)
    group.add_argument(
        "--max-exact-null",
        type=non_negative_int,
        default=BootstrapAttentionRegularizer().max_exact_null,
        metavar="M",
        help="keep the null values themselves, sorted, while there are at most M "
        "(exact p-values); beyond, a fixed-grid histogram bounds the p-values' "
        "error (default: %(default)s)",
    )
    group = fit.add_argument_group("reading images")
    add_in_range_argument(group)
    add_loader_argument(group)
    add_shard_argument(fit.add_argument_group("many images"))
    fit.add_argument("--quiet", action="store_true", help="no progress bar")

    merge = commands.add_parser(
        "merge-null",
        help="merge the null state files of disjoint shards into one",
        description="Join the pooled nulls of fit-null files (e.g. one per shard) "
        "into the null of all their images, as fitting it in one run gives.",
    )
    merge.add_argument("states", nargs="+", type=Path, metavar="STATE")
    merge.add_argument(
        "--output", type=Path, required=True, metavar="FILE", help="the merged state"
    )
    merge.add_argument("--quiet", action="store_true", help="no summary line")


def fit(args: argparse.Namespace) -> int:
    return fit_null(args.images, run_settings(args))


def merge(args: argparse.Namespace) -> int:
    return merge_null(args.states, args.output, quiet=args.quiet)

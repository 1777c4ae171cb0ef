"""``sklearn-arb regularize`` and ``demo``: their options, and the run engine
(:mod:`sklearn_arb._runs`) called with the settings they give."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import AttentionExtractor, BootstrapAttentionRegularizer
from .._runs import (
    DEFAULT_BATCH_SIZE,
    Input,
    RunError,
    file_inputs,
    in_shard,
    read_matching_state,
    regularize_items,
    regularize_on_ray,
)
from ._arguments import (
    add_model_arguments,
    add_output_arguments,
    add_source_arguments,
    add_statistics_arguments,
    existing_file,
    positive_float,
    positive_int,
    run_settings,
    string_options,
    threshold,
    z_threshold,
)
from ._loader import add_loader_argument
from ._scale import add_scale_arguments


def add_bootstrap_arguments(group: argparse._ArgumentGroup) -> None:
    """--bootstrap, --n-bootstrap, --bootstrap-width and --seed."""
    group.add_argument(
        "--bootstrap",
        choices=string_options(AttentionExtractor, "bootstrap"),
        default="normal",
        help="bootstrap kind (default: %(default)s)",
    )
    group.add_argument(
        "--n-bootstrap",
        type=positive_int,
        default=1,
        metavar="B",
        help="bootstrap images per image (default: %(default)s)",
    )
    group.add_argument(
        "--bootstrap-width",
        type=positive_float,
        default=1.0,
        metavar="W",
        help="width factor w (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap draws (default: %(default)s)",
    )


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bootstrap and regularization")
    add_bootstrap_arguments(group)
    group.add_argument(
        "--methods",
        nargs="+",
        choices=string_options(BootstrapAttentionRegularizer, "method"),
        default=["p", "lfdr", "pi0"],
        help="regularizations to apply (default: p lfdr pi0)",
    )
    add_statistics_arguments(group)
    group.add_argument(
        "--alpha",
        type=threshold,
        default=0.05,
        help="p-value threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--gamma",
        type=threshold,
        default=0.2,
        help="lfdr threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--z-threshold",
        type=z_threshold,
        default=0.0,
        help="z-step threshold or 'median' (default: %(default)s)",
    )


def _add_regularize_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    # demo is regularize on other images: both take the same options.
    add_model_arguments(
        parser,
        batch_help="images read, run through the model and regularized together; "
        f"larger batches keep a GPU busier (default: {DEFAULT_BATCH_SIZE})",
        batch_dest="images_per_batch",
    )
    add_loader_argument(parser.add_argument_group("reading images"))
    add_source_arguments(parser)
    _add_method_arguments(parser)
    group = parser.add_argument_group("panels")
    group.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="write the .npz results and summary.csv only, no PNG panels",
    )
    group.add_argument(
        "--dpi",
        type=positive_int,
        default=100,
        help=f"resolution of the PNG panels; each map is {3:g} inches wide "
        "(default: %(default)s)",
    )
    add_output_arguments(parser, output)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Declare ``regularize`` and ``demo`` and their options on ``commands``."""
    regularize = commands.add_parser(
        "regularize",
        help="regularize the attention maps of images or folders",
        description="Per image: an .npz of maps and statistics, a PNG panel (image "
        "| attention | each method) and a row of summary.csv. Folders are walked "
        "with their subfolders. Each image's results go to OUTPUT/<its path>.npz "
        "and .png (its path relative to the working directory, or its absolute "
        "path where it lies elsewhere). A rerun computes what is missing or "
        "changed (image bytes or settings) and keeps the rest; processes sharing "
        "an output folder share the work.",
    )
    regularize.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    _add_regularize_arguments(regularize, "arb_output")
    regularize.add_argument(
        "--null-state",
        type=existing_file,
        default=None,
        metavar="FILE",
        help="judge every image against this pooled null (a file of sklearn-arb "
        "fit-null or merge-null, fitted with this run's model, source and "
        "bootstrap options) instead of against its own bootstrap maps",
    )
    add_scale_arguments(regularize)

    demo = commands.add_parser(
        "demo",
        help="regularize scikit-learn's sample images (load_sample_images)",
        description="The regularize command on sklearn.datasets.load_sample_images(). "
        "Needs weights: --weights PATH, or internet for the hub's.",
    )
    _add_regularize_arguments(demo, "arb_demo")


def regularize(args: argparse.Namespace) -> int:
    if args.engine != "ray" and (
        args.address or args.workers != 1 or args.gpus_per_worker
    ):
        raise RunError(
            "--address, --workers and --gpus-per-worker are options of --engine "
            "ray; add --engine ray (pip install 'sklearn-arb[ray]')"
        )
    if args.null_state is not None:
        # Absolute, for Ray actors in other folders.
        args.null_state = args.null_state.resolve()
    settings = run_settings(args)
    if settings.null_state is not None:
        read_matching_state(settings.null_state, settings)  # before the model
    items = file_inputs(args.images, args.output)
    selected = in_shard([item.key for item in items], args.shard)
    items = [item for item, keep in zip(items, selected, strict=True) if keep]
    if args.engine == "ray":
        return regularize_on_ray(items, settings)
    return regularize_items(items, settings)


def demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    items = [
        Input(
            source=Path(filename).name,
            key=Path(Path(filename).name),
            image=image[np.newaxis],
        )
        for filename, image in zip(sample.filenames, sample.images, strict=True)
    ]
    if args.weights is None and not args.pretrained:
        args.pretrained = True  # the demo fetches the hub's weights when online
    return regularize_items(items, run_settings(args))

"""``sklearn-arb simulate``: the noise simulation study on a folder of class folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._runs import DEFAULT_BATCH_SIZE, RunError, build_extractor
from ._arguments import (
    add_model_arguments,
    add_output_arguments,
    add_source_arguments,
    add_statistics_arguments,
    positive_int,
    run_settings,
    threshold,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Declare ``simulate`` and its options on the subcommands ``commands``."""
    simulate = commands.add_parser(
        "simulate",
        help="run the noise simulation study on a folder of class folders",
        description="The paper's noise simulation study: noise injected into a "
        "region of interest (ROI) of every image, then how much of the attention "
        "it draws each regularization removes. Writes per_image.csv, curves.csv, "
        "suppression_factors.csv, summary.txt and the paper's figures. The "
        "bootstrap is the paper's and regularize's default: one normal sample per "
        "image (B = 1, w = 1), each image against its own null.",
    )
    simulate.add_argument(
        "folder",
        type=Path,
        metavar="FOLDER",
        help="a folder of class folders (one per class) of images",
    )
    add_model_arguments(
        simulate,
        batch_help="images loaded, perturbed, run through the model and scored "
        "together; memory grows with it, not with the number of images "
        f"(default: {DEFAULT_BATCH_SIZE}, as regularize)",
        batch_dest="chunk_size",
    )
    add_source_arguments(simulate)
    group = simulate.add_argument_group("simulation")
    group.add_argument(
        "--noise",
        choices=("square", "diffuse"),
        default="square",
        help="a square ROI, or diffuse clusters of as many pixels "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--roi-size",
        type=positive_int,
        metavar="PX",
        help="ROI side in pixels (default: the paper's 100 px at 488 px, scaled "
        "to --image-size: 46 px at 224 px)",
    )
    group.add_argument(
        "--n-images",
        type=positive_int,
        metavar="N",
        help="use at most N images, spread evenly over the classes (default: all)",
    )
    add_statistics_arguments(group)
    # Not regularize's 0.05 and 0.2: the study reproduces the paper's figures,
    # made with the thresholds of the authors' simulation code.
    for name, statistic in (("alpha", "p-value"), ("gamma", "lfdr")):
        group.add_argument(
            f"--{name}",
            type=threshold,
            default=0.3,
            help=f"{statistic} threshold or 'median' (default: %(default)s, the "
            "authors' simulation code; regularize uses its own default)",
        )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the noise, the bootstrap draws and the images drawn in the "
        "curves figure (default: %(default)s)",
    )
    add_output_arguments(simulate, "arb_simulation")


def simulate(args: argparse.Namespace) -> int:
    # matplotlib is imported with the study: only when it runs.
    from .._study import StudySettings, run_simulation_study

    if not args.folder.is_dir():
        raise RunError(f"no such folder: {args.folder}")
    if args.output.exists() and not args.output.is_dir():
        raise RunError(f"--output {args.output} is a file; pass a folder")
    settings = run_settings(args)
    extractor = build_extractor(settings)
    try:
        summary = run_simulation_study(
            args.folder,
            args.output,
            extractor=extractor,
            settings=StudySettings(
                noise=args.noise,
                roi_size=args.roi_size,
                alpha=args.alpha,
                gamma=args.gamma,
                pvalue=args.pvalue,
                pi0_pvalues=args.pi0_pvalues,
                in_range=args.in_range,
                seed=args.seed,
                scale=settings.z_scale,
            ),
            n_images=args.n_images,
            chunk_size=args.chunk_size or DEFAULT_BATCH_SIZE,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise RunError(str(exc).splitlines()[0]) from None
    print(summary)
    print(f"results in {args.output}", file=sys.stderr)
    return 0

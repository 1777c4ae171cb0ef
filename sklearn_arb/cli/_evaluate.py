"""``sklearn-arb evaluate``: ARB against the heuristic selection rules, on images
with bounding boxes (localisation and faithfulness)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._runs import RunError, RunSettings, build_extractor, first_line
from ._arguments import (
    add_model_arguments,
    add_output_arguments,
    non_negative_int,
    positive_int,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Declare ``evaluate`` and its options on the subcommands ``commands``."""
    from ..evaluation._imputation import REMOVALS
    from ..evaluation._study import METHODS, SOURCES

    evaluate = commands.add_parser(
        "evaluate",
        help="score ARB and the heuristic rules against bounding boxes and by "
        "perturbation",
        description="For every image of IMAGES with boxes in --boxes and every "
        "map source: ARB's selections (p, lfdr, pi0 at the defaults, pooled null) "
        "and the heuristic rules (CumulativeMass 0.6, MeanThreshold, TopFraction "
        "and CumulativeMass at ARB p's mean size, a random selection of ARB p's "
        "size), scored for localisation (pointing game, relevance mass, rank "
        "accuracy, AUC, precision, recall, IoU) and faithfulness (deletion and "
        "insertion curves, comprehensiveness, sufficiency), with the calibration "
        "of ARB's statistics on bootstrap noise. Writes per_image.csv, "
        "summary.csv (means with 95% bootstrap intervals and chance levels), "
        "tests.csv (Wilcoxon tests of ARB p against each rule), curves.csv, "
        "calibration.csv, summary.txt and figures. Per-image results are saved "
        "as they are done; a rerun computes only what is missing.",
    )
    evaluate.add_argument(
        "images",
        type=Path,
        metavar="IMAGES",
        help="a folder of images; those with a box in --boxes are used",
    )
    evaluate.add_argument(
        "--boxes",
        type=Path,
        required=True,
        metavar="CSV",
        help="bounding boxes, one row per box: file (relative to IMAGES), "
        "class_index, original_width, original_height, x0, y0, x1, y1 in the "
        "pixels of the files",
    )
    add_model_arguments(evaluate)
    group = evaluate.add_argument_group("evaluation")
    group.add_argument(
        "--source",
        dest="sources",
        nargs="+",
        choices=SOURCES,
        default=list(SOURCES),
        help="map sources, each with its defaults (default: all)",
    )
    group.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=list(METHODS),
        help="selections compared (default: all; those at ARB p's size bring arb_p)",
    )
    group.add_argument(
        "--steps",
        type=non_negative_int,
        default=11,
        metavar="N",
        help="points of the deletion and insertion curves, fractions 0 to 1 "
        "(0: no curves, comprehensiveness and sufficiency only) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--removal",
        choices=REMOVALS,
        default="road",
        help="how tokens are removed: ROAD's noisy linear imputation, black "
        "(pixel value 0) or a blur (default: %(default)s)",
    )
    group.add_argument(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="the class CDAM's maps and the perturbation scores follow: the "
        "prediction on the intact image, or the boxes' class_index (with "
        "'label', CDAM's p-values are calibrated on noise) (default: %(default)s)",
    )
    group.add_argument(
        "--no-faithfulness",
        action="store_true",
        help="localisation only (no perturbation: no forward pass beyond the maps)",
    )
    group.add_argument(
        "--faithfulness-every",
        type=positive_int,
        default=1,
        metavar="N",
        help="perturbation scores for every N-th image only (sorted by path), to "
        "bound the cost; a rerun with a divisor of N adds the missing images "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the calibration on bootstrap noise",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap, ROAD's noise, the random selection and the "
        "intervals (default: %(default)s)",
    )
    add_output_arguments(evaluate, "arb_evaluation")


def evaluate(args: argparse.Namespace) -> int:
    # matplotlib and the study are imported only when the command runs.
    from ..evaluation import read_boxes
    from ..evaluation._study import EvaluationSettings
    from ..evaluation._study_report import run_evaluation

    if not args.images.is_dir():
        raise RunError(f"no such folder: {args.images}")
    if args.output.exists() and not args.output.is_dir():
        raise RunError(f"--output {args.output} is a file; pass a folder")
    if args.steps == 1:
        raise RunError("--steps 1 gives no curve; pass 0 (no curves) or >= 2")
    try:
        read_boxes(args.boxes)
    except (OSError, ValueError) as exc:
        raise RunError(f"--boxes: {first_line(exc)}") from None
    fractions = () if args.steps == 0 else np.linspace(0, 1, args.steps)
    try:
        settings = EvaluationSettings(
            sources=tuple(args.sources),
            methods=tuple(args.methods),
            fractions=tuple(np.round(fractions, 10)),
            faithfulness=not args.no_faithfulness,
            removal=args.removal,
            calibration=not args.no_calibration,
            seed=args.seed,
            target=args.target,
            faithfulness_every=args.faithfulness_every,
        )
    except ValueError as exc:
        raise RunError(first_line(exc)) from None
    extractor = build_extractor(
        RunSettings(
            model=args.model,
            weights=args.weights,
            pretrained=args.pretrained,
            image_size=args.image_size,
            device=args.device,
            seed=args.seed,
        )
    )
    if args.batch_size is not None:
        extractor.set_params(batch_size=args.batch_size)
    try:
        summary = run_evaluation(
            args.images,
            args.boxes,
            args.output,
            extractor=extractor,
            settings=settings,
            progress=not args.quiet,
        )
    except (OSError, ValueError) as exc:
        raise RunError(first_line(exc)) from None
    print(summary)
    print(f"results in {args.output}", file=sys.stderr)
    return 0

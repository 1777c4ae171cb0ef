"""What the subcommands share: argument types, option groups, the settings."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import NoReturn

import numpy as np

from .._runs import DEFAULT_MODEL, RunSettings


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def string_options(estimator: type, parameter: str) -> list[str]:
    """The string values ``estimator`` accepts for ``parameter``, read from its
    ``_parameter_constraints`` (so a command's choices never drift from the API)."""
    return sorted(
        option
        for constraint in estimator._parameter_constraints[parameter]
        for option in getattr(constraint, "options", ())
    )


# Argument types: each rejects a bad value with a message naming the fix.


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def threshold(text: str) -> float | str:
    if text == "median":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1] or 'median', got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1] or 'median', got {value}"
        )
    return value


def z_threshold(text: str) -> float | str:
    if text == "median":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or 'median', got {text!r}"
        ) from None


def _keyword_or_index(text: str, keywords: tuple[str, ...], expected: str) -> str | int:
    """``text`` if it is one of ``keywords``, else an index >= 0."""
    if text in keywords:
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def head(text: str) -> str | int:
    return _keyword_or_index(
        text, ("mean", "max", "min"), "mean, max, min or a head index >= 0"
    )


def target(text: str) -> str | int:
    return _keyword_or_index(text, ("predicted",), "a class index >= 0 or 'predicted'")


def discard_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def device(text: str) -> str:
    import torch

    if text == "auto":
        return text
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r} asked for but PyTorch sees no CUDA GPU; use --device cpu"
        )
    return text


def add_model_arguments(
    parser: argparse.ArgumentParser,
    batch_help: str = "images per forward pass",
    batch_dest: str = "batch_size",
) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="timm ViT name, e.g. vit_small_patch8_224.dino (default: %(default)s)",
    )
    group.add_argument(
        "--weights",
        type=existing_file,
        metavar="PATH",
        help="local weights: state_dict .pth/.pt, .safetensors or DINO checkpoint",
    )
    group.add_argument(
        "--pretrained",
        action="store_true",
        help="download the model's weights from the hub (needs internet)",
    )
    group.add_argument(
        "--image-size",
        type=positive_int,
        default=224,
        help="images are resized to this square size, a multiple of the model's "
        "patch size (default: %(default)s)",
    )
    group.add_argument(
        "--device",
        type=device,
        default="auto",
        help="auto, cpu, cuda or cuda:N (default: %(default)s)",
    )
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        dest=batch_dest,
        metavar="N",
        help=batch_help,
    )


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The map source and its settings (see AttentionExtractor)."""
    from .. import AttentionExtractor

    group = parser.add_argument_group("map source")
    group.add_argument(
        "--source",
        choices=string_options(AttentionExtractor, "source"),
        default="attention",
        help="the map regularized: one block's CLS attention, attention rollout, "
        "or CDAM (signed class-discriminative scores; their z is linear) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--head",
        type=head,
        default="mean",
        help="mean of the heads, one head index, or (rollout) max or min "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--layer",
        type=int,
        default=-1,
        help="the block read (attention), the last block of the product "
        "(rollout), or the block explained (cdam); -1 is the last "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--target",
        type=target,
        default="predicted",
        help="cdam: the class index explained, or 'predicted' (each image's top "
        "class) (default: %(default)s)",
    )
    group.add_argument(
        "--discard-ratio",
        type=discard_ratio,
        default=0.0,
        help="rollout: fraction of each row's lowest attention dropped "
        "(default: %(default)s)",
    )


def add_statistics_arguments(group: argparse._ArgumentGroup) -> None:
    """--pvalue, --pi0-pvalues and --in-range, as regularize and simulate share them,
    with the regularizer's choices and defaults."""
    from .. import BootstrapAttentionRegularizer

    defaults = BootstrapAttentionRegularizer()
    group.add_argument(
        "--pvalue",
        choices=string_options(BootstrapAttentionRegularizer, "pvalue"),
        default=defaults.pvalue,
        help="p-value definition (default: %(default)s)",
    )
    group.add_argument(
        "--pi0-pvalues",
        choices=string_options(BootstrapAttentionRegularizer, "pi0_pvalues"),
        default=defaults.pi0_pvalues,
        help="p-values pi0 (and so the lfdr) is estimated from (default: %(default)s)",
    )
    add_in_range_argument(group)


def add_in_range_argument(group: argparse._ArgumentGroup) -> None:
    """--in-range: how pixel values are read."""
    group.add_argument(
        "--in-range",
        choices=("dtype", "image"),
        default="dtype",
        help="pixel values read as 0 and 1: the range of the file's type (8-bit "
        "0-255, 16-bit 0-65535), or each image's own minimum and maximum, e.g. for "
        "12-bit scans stored in 16 bits (default: %(default)s)",
    )


def add_output_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(default),
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# The settings.


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The engine's settings of a parsed command line: each option of a field's
    name, ``--batch-size`` as the images per batch."""
    names = {field.name for field in dataclasses.fields(RunSettings)}
    values = {key: value for key, value in vars(args).items() if key in names}
    values["batch_size"] = getattr(args, "images_per_batch", None)
    return RunSettings(**values)

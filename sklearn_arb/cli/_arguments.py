"""What the subcommands share: argument types, option groups, the fitted model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..backbone._hub import hub_declared_offline, hub_reachable

DEFAULT_MODEL = "deit_tiny_patch16_224"


class UsageError(Exception):
    """A bad argument: reported on one line, exit status 2."""


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
    return _keyword_or_index(
        text, ("predicted",), "a class index >= 0 or 'predicted'"
    )


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


def source_label(args: argparse.Namespace) -> str:
    """The map source as a panel title says it: source, head (or CDAM's
    class) and layer, e.g. ``rollout, max, L-1``."""
    source = getattr(args, "source", "attention")
    detail = getattr(args, "head", "mean")
    if source == "cdam":
        detail = f"class {getattr(args, 'target', 'predicted')}"
    return f"{source}, {detail}, L{getattr(args, 'layer', -1)}"


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


# The model.


def build_extractor(args: argparse.Namespace) -> Any:
    """The fitted extractor; a clear one-line error where no real weights can be
    had or the model cannot run (not a ViT, an image size it cannot take)."""
    from .. import AttentionExtractor

    if args.weights is not None and args.pretrained:
        raise UsageError(
            f"--pretrained and --weights {args.weights} both name weights for "
            f"{args.model}; pass one of them"
        )
    if args.weights is None and not args.pretrained:
        raise UsageError(
            f"no weights for {args.model}: pass --weights PATH (a state_dict, "
            "safetensors or DINO checkpoint file) or --pretrained to download them "
            "(needs internet); random weights would give meaningless maps"
        )
    import timm

    if not timm.is_model(args.model):
        raise UsageError(
            f"unknown model {args.model!r}; pass a timm ViT name such as "
            "deit_tiny_patch16_224 or vit_small_patch8_224.dino (timm.list_models())"
        )
    extractor = AttentionExtractor(
        args.model,
        pretrained=args.pretrained,
        checkpoint_path=args.weights,
        image_size=args.image_size,
        n_bootstrap=getattr(args, "n_bootstrap", 1),
        bootstrap=getattr(args, "bootstrap", "normal"),
        bootstrap_width=getattr(args, "bootstrap_width", 1.0),
        source=getattr(args, "source", "attention"),
        head=getattr(args, "head", "mean"),
        layer=getattr(args, "layer", -1),
        discard_ratio=getattr(args, "discard_ratio", 0.0),
        target=getattr(args, "target", "predicted"),
        device=args.device,
        # Images per forward pass; sized to the device where not given.
        batch_size=getattr(args, "batch_size", None),
        random_state=args.seed,
    )
    no_weights = (
        f"no weights for {args.model}: they could not be downloaded from the hub "
        "({why}) and no --weights file was given; pass --weights PATH (a local "
        "state_dict, safetensors or DINO checkpoint) or go online"
    )
    # Probe first: without a network, the hub client retries for about a minute
    # before failing. Declared offline (HF_HUB_OFFLINE) it reads its local cache
    # and fails at once where the weights are not there: no probe then.
    if args.pretrained and not hub_declared_offline() and not hub_reachable():
        raise UsageError(no_weights.format(why="the hub cannot be reached"))
    try:
        extractor.fit()
    except Exception as exc:
        if args.pretrained:
            # The hub fails in many ways when it cannot be reached; all mean the same.
            raise UsageError(
                no_weights.format(why=f"offline? {type(exc).__name__}")
            ) from None
        if isinstance(exc, (ValueError, TypeError, OSError)):
            raise UsageError(first_line(exc)) from None
        if isinstance(exc, RuntimeError):  # torch, e.g. an image size below a patch
            raise UsageError(
                f"{args.model} cannot run at --image-size {args.image_size} "
                f"({first_line(exc)}); use a multiple of the model's patch size, "
                "e.g. 224"
            ) from None
        raise
    return extractor


def first_line(exc: BaseException) -> str:
    """An exception's message, one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

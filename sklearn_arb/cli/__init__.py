"""The ``sklearn-arb`` command: regularize images, run the simulation study, demo.

Every image's results are written as soon as they are done, atomically (a temporary
file, then :func:`os.replace`), so an interrupted run loses nothing; a rerun with the
same settings skips the images already done.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import numpy as np

METHODS = ("z", "p", "lfdr", "pi0")
BOOTSTRAPS = ("normal", "pixel", "uniform", "patch")
DEFAULT_MODEL = "deit_tiny_patch16_224"


class UsageError(Exception):
    """A bad argument: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Argument types: each rejects a bad value with a message naming the fix.


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _threshold(text: str) -> float | str:
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


def _z_threshold(text: str) -> float | str:
    if text == "median":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or 'median', got {text!r}"
        ) from None


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _device(text: str) -> str:
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r} asked for but PyTorch sees no CUDA GPU; use --device cpu"
        )
    return text


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="timm ViT name, e.g. vit_small_patch8_224.dino (default: %(default)s)",
    )
    group.add_argument(
        "--weights",
        type=_existing_file,
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
        type=_positive_int,
        default=224,
        help="images are resized to this square size (default: %(default)s)",
    )
    group.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="auto, cpu, cuda or cuda:N (default: %(default)s)",
    )
    group.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="images per forward pass (default: fit the memory)",
    )


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bootstrap and regularization")
    group.add_argument(
        "--bootstrap",
        choices=BOOTSTRAPS,
        default="normal",
        help="bootstrap kind (default: %(default)s)",
    )
    group.add_argument(
        "--n-bootstrap",
        type=_positive_int,
        default=1,
        metavar="B",
        help="bootstrap images per image (default: %(default)s)",
    )
    group.add_argument(
        "--bootstrap-width",
        type=_positive_float,
        default=1.0,
        metavar="W",
        help="width factor w (default: %(default)s)",
    )
    group.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=["p", "lfdr", "pi0"],
        help="regularizations to apply (default: p lfdr pi0)",
    )
    group.add_argument(
        "--alpha",
        type=_threshold,
        default=0.05,
        help="p-value threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--gamma",
        type=_threshold,
        default=0.2,
        help="lfdr threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--z-threshold",
        type=_z_threshold,
        default=0.0,
        help="z-step threshold or 'median' (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap draws (default: %(default)s)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(default),
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_regularize_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    # demo is regularize on other images: both take the same options.
    _add_model_arguments(parser)
    _add_method_arguments(parser)
    _add_output_arguments(parser, output)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sklearn-arb``: subcommands and their options.

    Returns
    -------
    parser : argparse.ArgumentParser
        Reports a bad argument on one line and exits with status 2.

    Examples
    --------
    >>> from sklearn_arb.cli import build_parser
    >>> args = build_parser().parse_args(["regularize", "photos", "--alpha", "0.1"])
    >>> args.command, args.alpha, args.methods
    ('regularize', 0.1, ['p', 'lfdr', 'pi0'])
    """
    parser = _Parser(
        prog="sklearn-arb",
        description="Attention Regularization by the Bootstrap for ViT attention maps.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    regularize = commands.add_parser(
        "regularize",
        help="regularize the attention maps of images or folders",
        description="Per image: a PNG panel (image | attention | each method), an "
        ".npz of maps and statistics, and a row of summary.csv.",
    )
    regularize.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    _add_regularize_arguments(regularize, "arb_output")

    demo = commands.add_parser(
        "demo",
        help="regularize scikit-learn's sample images (load_sample_images)",
        description="The regularize command on sklearn.datasets.load_sample_images(). "
        "Needs weights: --weights PATH, or internet for the hub's.",
    )
    _add_regularize_arguments(demo, "arb_demo")

    simulate = commands.add_parser(
        "simulate",
        help="run the noise simulation study on a folder of class folders",
        description="The paper's noise simulation study (square or diffuse noise): "
        "per-image CSV, suppression factors and figures.",
    )
    simulate.add_argument("folder", type=Path, metavar="FOLDER")
    simulate.add_argument("--noise", choices=("square", "diffuse"), default="square")
    simulate.add_argument(
        "--n-images",
        type=_positive_int,
        default=None,
        help="at most this many images (default: all)",
    )
    _add_model_arguments(simulate)
    simulate.add_argument("--alpha", type=_threshold, default=0.3)
    simulate.add_argument("--gamma", type=_threshold, default=0.3)
    simulate.add_argument("--seed", type=int, default=0)
    _add_output_arguments(simulate, "arb_simulation")
    return parser


# Inputs.


def _image_files(sources: Sequence[Path]) -> list[Path]:
    """Files and the image files of folders, in the order given."""
    from ._images import _folder_files

    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            try:
                files.extend(_folder_files(source))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        elif source.is_file():
            files.append(source)
        else:
            raise UsageError(f"no such file or folder: {source}")
    return files


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Output names: the file stem, prefixed by its folder where stems repeat."""
    stems = [path.stem for path in paths]
    names = [
        f"{path.parent.name}_{path.stem}" if stems.count(path.stem) > 1 else path.stem
        for path in paths
    ]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


# The model.


def _build_extractor(args: argparse.Namespace) -> Any:
    """The fitted extractor; a clear error where no real weights can be had."""
    from . import AttentionExtractor

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
        pretrained=args.pretrained and args.weights is None,
        checkpoint_path=args.weights,
        image_size=args.image_size,
        n_bootstrap=getattr(args, "n_bootstrap", 1),
        bootstrap=getattr(args, "bootstrap", "normal"),
        bootstrap_width=getattr(args, "bootstrap_width", 1.0),
        device=args.device,
        batch_size=args.batch_size,
        random_state=args.seed,
    )
    from_hub = extractor.pretrained
    no_weights = (
        f"no weights for {args.model}: they could not be downloaded from the hub "
        "({why}) and no --weights file was given; pass --weights PATH (a local "
        "state_dict, safetensors or DINO checkpoint) or go online"
    )
    # Probe first: without a network, the hub client retries for about a minute
    # before failing. Declared offline (HF_HUB_OFFLINE) it reads its local cache
    # and fails at once where the weights are not there: no probe then.
    if from_hub and not _hub_declared_offline() and not _hub_reachable():
        raise UsageError(no_weights.format(why="the hub cannot be reached"))
    try:
        return extractor.fit()
    except Exception as exc:
        if from_hub:
            # The hub fails in many ways when it cannot be reached; all mean the same.
            raise UsageError(
                no_weights.format(why=f"offline? {type(exc).__name__}")
            ) from None
        if isinstance(exc, (ValueError, TypeError, FileNotFoundError)):
            raise UsageError(str(exc).splitlines()[0]) from None
        raise


def _hub_declared_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks the hub client for its local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (or ``HF_ENDPOINT``) answers a TCP connection."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


# Writing results atomically.


def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(file: Any) -> None:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    _write_atomic(path, write, mode="w")


def _settings(args: argparse.Namespace) -> str:
    """The settings that change the results, as JSON (stored to detect reruns)."""
    keys = (
        "model",
        "weights",
        "pretrained",
        "image_size",
        "bootstrap",
        "n_bootstrap",
        "bootstrap_width",
        "methods",
        "alpha",
        "gamma",
        "z_threshold",
        "seed",
    )
    return json.dumps({key: str(getattr(args, key)) for key in keys}, sort_keys=True)


def _done_row(npz_path: Path, png_path: Path, settings: str) -> dict | None:
    """The summary row of an image already done with these settings, else None."""
    if not (npz_path.is_file() and png_path.is_file()):
        return None
    try:
        with np.load(npz_path) as stored:
            if str(stored["settings"]) != settings:
                return None
            return json.loads(str(stored["summary"]))
    except (OSError, KeyError, ValueError):
        return None  # a damaged file is recomputed


def _regularize_one(
    name: str,
    image: np.ndarray,
    extractor: Any,
    args: argparse.Namespace,
    settings: str,
    source: str,
) -> dict[str, Any]:
    """Regularize one image; write its PNG panel and .npz; return its summary row."""
    import matplotlib.pyplot as plt

    from . import BootstrapAttentionRegularizer
    from .plotting import plot_attention_panel

    start = time.perf_counter()
    maps = extractor.transform(image[np.newaxis])
    regularizer = BootstrapAttentionRegularizer(
        n_bootstrap=args.n_bootstrap,
        alpha=args.alpha,
        gamma=args.gamma,
        z_threshold=args.z_threshold,
        null="per_image",
    )
    statistics = regularizer.fit(maps).compute_statistics(maps)
    attention = statistics.scores[0]
    regularized = {
        method: regularizer.set_params(method=method).transform(maps)[0]
        for method in args.methods
    }
    row: dict[str, Any] = {
        "image": source,
        "name": name,
        "n_tokens": attention.size,
        "pi0": round(float(statistics.pi0[0]), 6),
    }
    for method, values in regularized.items():
        row[f"nonzero_percent_{method}"] = round(
            100.0 * np.count_nonzero(values) / values.size, 3
        )
        row[f"attention_kept_{method}"] = round(
            float(values.sum() / attention.sum()), 6
        )
    row["seconds"] = round(time.perf_counter() - start, 3)

    labels = {
        "z": "z > {z}",
        "p": "p \N{LESS-THAN OR EQUAL TO} {alpha}",
        "lfdr": "lfdr \N{LESS-THAN OR EQUAL TO} {gamma}",
        "pi0": "pi0 (auto)",
    }
    panel = plot_attention_panel(
        image,
        {
            "attention": attention,
            **{
                labels[m].format(
                    z=args.z_threshold, alpha=args.alpha, gamma=args.gamma
                ): values
                for m, values in regularized.items()
            },
        },
        grid_shape=extractor.grid_shape_,
    )
    panel.figure.suptitle(name)
    output = args.output
    _write_atomic(
        output / f"{name}.png",
        lambda file: panel.figure.savefig(file, format="png", dpi=110),
    )
    plt.close(panel.figure)
    arrays = {
        "attention": attention,
        "null_attention": maps[0, attention.size :],
        "grid_shape": np.asarray(extractor.grid_shape_),
        "z": statistics.z[0],
        "null_z": statistics.null_z[0],
        "pvalues": statistics.pvalues[0],
        "lfdr": statistics.lfdr[0],
        "pi0": statistics.pi0[0],
        **{f"regularized_{m}": values for m, values in regularized.items()},
        "settings": np.asarray(settings),
        "summary": np.asarray(json.dumps(row)),
    }
    _write_atomic(output / f"{name}.npz", lambda file: np.savez(file, **arrays))
    return row


def _run_regularize(
    named_images: Sequence[tuple[str, str, Callable[[], np.ndarray]]],
    args: argparse.Namespace,
) -> int:
    """Regularize ``(name, source, load)`` images into ``args.output``."""
    from tqdm import tqdm

    args.output.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    rows: list[dict[str, Any]] = []
    todo = []
    for name, source, load in named_images:
        row = _done_row(
            args.output / f"{name}.npz", args.output / f"{name}.png", settings
        )
        if row is None:
            todo.append((name, source, load))
        else:
            rows.append(row)
    summary = args.output / "summary.csv"
    if rows:
        print(
            f"{len(rows)} image(s) already done in {args.output}, skipped",
            file=sys.stderr,
        )
    if not todo:
        _write_summary(summary, rows)
        return 0
    extractor = _build_extractor(args)
    failures = 0
    for name, source, load in tqdm(
        todo, desc="images", unit="image", disable=args.quiet, file=sys.stderr
    ):
        try:
            image = load()
        except (ValueError, OSError) as exc:
            failures += 1
            tqdm.write(f"skipping {source}: {exc}", file=sys.stderr)
            continue
        rows.append(_regularize_one(name, image, extractor, args, settings, source))
        _write_summary(summary, rows)
    print(
        f"results in {args.output} (summary.csv, one .png and .npz per image)",
        file=sys.stderr,
    )
    return 1 if failures else 0


def _regularize(args: argparse.Namespace) -> int:
    from . import load_images

    files = _image_files(args.images)
    named = [
        (name, str(path), lambda path=path: load_images(path)[0])
        for name, path in zip(_unique_names(files), files, strict=True)
    ]
    return _run_regularize(named, args)


def _demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_sample_images

    from . import load_images

    sample = load_sample_images()
    named = [
        (
            Path(filename).stem,
            Path(filename).name,
            lambda image=image: load_images(image[np.newaxis])[0],
        )
        for filename, image in zip(sample.filenames, sample.images, strict=True)
    ]
    if args.weights is None and not args.pretrained:
        args.pretrained = True  # the demo fetches the hub's weights when online
    return _run_regularize(named, args)


def _simulate(args: argparse.Namespace) -> int:
    from ._study import run_simulation_study

    if not args.folder.is_dir():
        raise UsageError(f"no such folder: {args.folder}")
    extractor = _build_extractor(args)
    try:
        summary = run_simulation_study(
            args.folder,
            args.output,
            extractor=extractor,
            noise=args.noise,
            n_images=args.n_images,
            alpha=args.alpha,
            gamma=args.gamma,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(summary)
    print(f"results in {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sklearn-arb`` with ``argv`` (default: the command line).

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success, 1 when some images failed, 2 for a bad argument.

    Examples
    --------
    >>> from sklearn_arb.cli import main
    >>> main(["regularize", "no_such_image.png"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument already reported
        return int(exc.code or 0)
    commands = {"regularize": _regularize, "demo": _demo, "simulate": _simulate}
    try:
        return commands[args.command](args)
    except UsageError as exc:
        print(f"sklearn-arb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished images are saved, rerun to continue", file=sys.stderr
        )
        return 130

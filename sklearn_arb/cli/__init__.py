"""The ``sklearn-arb`` command: regularize images, fit and merge a pooled null,
run the simulation study, demo.

The options are parsed here, into the settings of the run engine
(:mod:`sklearn_arb._runs`), which does the work: every result is written as soon
as it is done, atomically, so an interrupted run loses nothing; a rerun computes
only what is missing or changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._runs import RunError
from . import _evaluate, _null, _regularize, _simulate
from ._arguments import Parser

__all__ = ["build_parser", "main"]


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
    parser = Parser(
        prog="sklearn-arb",
        description="Attention Regularization by the Bootstrap for ViT attention maps.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    _regularize.add_parsers(commands)
    _null.add_parsers(commands)
    _simulate.add_parser(commands)
    _evaluate.add_parser(commands)
    return parser


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
    except SystemExit as exc:  # --help, --version, or a bad argument reported
        return int(exc.code or 0)
    commands = {
        "regularize": _regularize.regularize,
        "demo": _regularize.demo,
        "fit-null": _null.fit,
        "merge-null": _null.merge,
        "simulate": _simulate.simulate,
        "evaluate": _evaluate.evaluate,
    }
    try:
        return commands[args.command](args)
    except RunError as exc:
        print(f"sklearn-arb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished images are saved, rerun to continue", file=sys.stderr
        )
        return 130

"""The paper's noise simulation study on the shared data: ``sklearn-arb simulate``.

What it measures: for every image of a folder of class folders, how much of the
attention drawn by noise injected into a region of interest each regularization
(p-values, lfdr, pi0) removes, and how much attention elsewhere it keeps; per class,
the suppression factor D (the paper's Fig. 3, 4, 5, S6, S7 and S10). The protocol is
in the docstring of ``sklearn_arb._study``; the options are those of
``sklearn-arb simulate --help``, which this script runs, with the shared DeiT-Tiny
weights (``../shared/data/weights``) unless ``--weights`` or ``--pretrained`` is given.

How to run::

    python benchmarks/simulation_study.py ../shared/data/imagenette --noise square
    python benchmarks/simulation_study.py ../shared/data/imagenette --noise diffuse
    python benchmarks/simulation_study.py ../shared/data/iqothnccd --noise diffuse \\
        --image-size 448 --output study_ct

Results: the ``--output`` folder (``per_image.csv``, ``curves.csv``,
``suppression_factors.csv``, ``summary.txt`` and the figures); the summary is also
printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn_arb.cli import main

WEIGHTS = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "weights"
    / "deit_tiny_patch16_224.pth"
)


def run(argv: list[str]) -> int:
    """``sklearn-arb simulate ARGV``, with the shared weights unless ARGV names
    weights."""
    names_weights = {"--weights", "--pretrained"} & {a.split("=")[0] for a in argv}
    shared = [] if names_weights or not WEIGHTS.is_file() else ["--weights", WEIGHTS]
    return main(["simulate", *map(str, shared), *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

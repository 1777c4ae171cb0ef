"""The paper's noise simulation study, rerunnable on any folder of class folders.

Protocol (Chung & Laletin, section 3.2, with the authors' code for what the text
lost): every image, resized to the model's input size, gets Gaussian noise
(per-channel mean/std of the image) in a region of interest (ROI), a square of
100 px at 488 px scaled to the image (46 px at 224 px) or diffuse clusters of as
many pixels. One normal bootstrap sample per image (B = 1, w = 1), z statistics
against the image's own bootstrap null, then three regularisations: p-values
(alpha = 0.3), lfdr (gamma = 0.3), both the thresholds of the authors' code, and
the automatic pi0 threshold. Metrics are computed at pixel resolution, on maps
upsampled by nearest neighbour, as the authors did:

- mean percentile of the ROI scores among the rest of the original map, and the
  percentage of non-zero ROI scores, before and after (Fig. 3);
- the suppression factor D per class and method, for the images with
  |mean z in ROI| <= 1 ("selected", the paper's main result) and for all (Fig. 4,
  Fig. S10);
- sensitivity/specificity curves over 50 thresholds of alpha and gamma for five
  random selected images per class (Fig. 5);
- mean z in ROI against mean percentile (Fig. S6), sRMSD of the ROI p-values
  (Fig. S7).

Grey datasets (all channels equal, e.g. CT slices) get grey noise: the simulation
runs on one channel, copied to three.

Outputs in ``--output``: ``per_image.csv``, ``curves.csv``,
``suppression_factors.csv``, ``summary.txt`` and PNG figures.

Examples
--------
python benchmarks/simulation_study.py --noise square
python benchmarks/simulation_study.py --noise diffuse
python benchmarks/simulation_study.py --data ../shared/data/iqothnccd --noise diffuse
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sklearn_arb import AttentionExtractor
from sklearn_arb._study import run_simulation_study

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA / "imagenette",
        help="folder of class folders of images",
    )
    parser.add_argument("--noise", choices=("square", "diffuse"), default="square")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results folder (default benchmarks/results/simulation_<data>_<noise>)",
    )
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="use this many images, spread evenly over the classes (default: all)",
    )
    parser.add_argument(
        "--weights", type=Path, default=DATA / "weights" / "deit_tiny_patch16_224.pth"
    )
    parser.add_argument("--model", default="deit_tiny_patch16_224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="ROI side in px (default: 100 px at 488 px, scaled)",
    )
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--gamma", type=float, default=0.3)
    parser.add_argument(
        "--pvalue",
        choices=("one-sided", "reference"),
        default="one-sided",
        help="p-value definition (reference: the authors' code, two-sided)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    output = args.output or ROOT / "benchmarks" / "results" / (
        f"simulation_{args.data.name}_{args.noise}"
    )
    extractor = AttentionExtractor(
        args.model,
        checkpoint_path=args.weights,
        image_size=args.image_size,
        n_bootstrap=1,
        device=args.device,
        random_state=args.seed,
    ).fit()
    print(
        run_simulation_study(
            args.data,
            output,
            extractor=extractor,
            noise=args.noise,
            size=args.size,
            n_images=args.n_images,
            alpha=args.alpha,
            gamma=args.gamma,
            pvalue=args.pvalue,
            seed=args.seed,
        )
    )
    print(f"results in {output}")


if __name__ == "__main__":
    main()

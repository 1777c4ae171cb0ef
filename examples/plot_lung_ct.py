"""ARB on lung CT slices: attention before and after, and the statistics behind it.

The paper's Fig. 6 on the shared IQ-OTH/NCCD slices (grey, 512 x 512): a malignant
and a normal case, DeiT-Tiny/16 at 448 px (784 tokens), one normal bootstrap image
per slice, each slice judged against its own bootstrap null. Top of each figure: the
slice, its last-block CLS attention, and the maps regularized by p-values, lfdr and
pi0 (p and lfdr at the median of the slice's own statistic, as the paper's appendix
does for medical images). Bottom: the observed z against the bootstrap z, and the
p-values and local false discovery rates of the observed scores.

Run from the repository root (the shared data beside the project, or its folder in
``SKLEARN_ARB_DATA``)::

    python examples/plot_lung_ct.py [--output lung_ct]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer, load_images
from sklearn_arb.plotting import plot_attention_panel, plot_statistics

DATA = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
SLICES = ("malignant/malignant_case_21.jpg", "normal/normal_case_18.jpg")
METHODS = {
    "p": "p \N{LESS-THAN OR EQUAL TO} median",
    "lfdr": "lfdr \N{LESS-THAN OR EQUAL TO} median",
    "pi0": "pi0 (auto)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("lung_ct"))
    parser.add_argument("--image-size", type=int, default=448)
    args = parser.parse_args()
    weights = DATA / "weights" / "deit_tiny_patch16_224.pth"
    paths = [DATA / "iqothnccd" / name for name in SLICES]
    missing = [str(p) for p in [weights, *paths] if not p.exists()]
    if missing:
        raise SystemExit(
            f"shared data not found ({', '.join(missing)}); set "
            "SKLEARN_ARB_DATA to the shared data folder"
        )
    args.output.mkdir(parents=True, exist_ok=True)

    images = load_images(paths)  # grey slices become three equal channels
    extractor = AttentionExtractor(
        "deit_tiny_patch16_224",
        checkpoint_path=weights,
        image_size=args.image_size,
        n_bootstrap=1,
        random_state=0,
    ).fit()
    maps = extractor.transform(images)
    # B is read from the layout the extractor's maps carry.
    regularizer = BootstrapAttentionRegularizer(
        alpha="median", gamma="median", null="per_image"
    ).fit(maps)
    statistics = regularizer.compute_statistics(maps)
    regularized = {
        label: regularizer.set_params(method=method).transform(maps)
        for method, label in METHODS.items()
    }

    for i, path in enumerate(paths):
        figure = plt.figure(figsize=(16, 7.4), layout="constrained")
        top, bottom = figure.subfigures(2, 1, height_ratios=[1.1, 1])
        plot_attention_panel(
            images[i][..., 0],  # drawn as the grey slice it is
            {
                "attention": statistics.scores[i],
                **{label: values[i] for label, values in regularized.items()},
            },
            grid_shape=extractor.grid_shape_,
            axes=top.subplots(1, 5),
        )
        plot_statistics(
            {key: statistics[key][i] for key in ("z", "null_z", "pvalues", "lfdr")},
            z_threshold=0.0,
            axes=bottom.subplots(1, 3),
        )
        figure.suptitle(
            f"{path.parent.name}/{path.name}: DeiT-Tiny/16 at {args.image_size} px, "
            f"B = 1, pi0 = {statistics.pi0[i]:.2f}"
        )
        out = args.output / f"{path.stem}.png"
        figure.savefig(out, dpi=100)
        plt.close(figure)
        print(
            f"{out}: kept tokens "
            + ", ".join(
                f"{label.split()[0]} {np.count_nonzero(values[i])}"
                for label, values in regularized.items()
            )
            + f" of {extractor.n_tokens_}"
        )


if __name__ == "__main__":
    main()

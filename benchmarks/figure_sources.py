"""The figure of the Sources page: each map source before and after ARB.

For two Imagenette images, DeiT-Tiny/16 (the shared weights) at 224 px, four
normal bootstrap samples per image: the image, then the CLS attention of the
last block, attention rollout and CDAM (the predicted class), each as computed
and after ARB (``method="p"``, alpha 0.05, each image against its own null,
``scale="auto"``: log z for attention and rollout, linear z for CDAM). Each map
and its ARB result share one colour scale: attention and rollout from 0 up to the
map's maximum (inferno); CDAM, signed, on a diverging scale centred at 0 from
minus to plus its largest absolute score (blue: evidence against the class, red:
for it).

Run: ``python benchmarks/figure_sources.py [--output doc/images/sources.png]``,
with ``SKLEARN_ARB_DATA`` pointing to the shared data folder (default
``../shared/data``).

Results: the figure of the Sources page (doc/sources.rst).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sklearn_arb import (
    AttentionExtractor,
    BootstrapAttentionRegularizer,
    load_images,
)
from sklearn_arb.plotting import overlay_map

DATA_DIR = Path(
    os.environ.get(
        "SKLEARN_ARB_DATA",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
)
IMAGES = ("n01440764", "n03417042")  # tench, garbage truck: the first of each
SOURCES = ("attention", "rollout", "cdam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("doc/images/sources.png"))
    args = parser.parse_args()
    weights = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"
    paths = [
        sorted((DATA_DIR / "imagenette" / folder).glob("*.JPEG"))[0]
        for folder in IMAGES
    ]
    shown = load_images(paths, image_size=224)
    columns = ["image"]
    tiles: list[list[np.ndarray]] = [[image] for image in shown]
    for source in SOURCES:
        extractor = AttentionExtractor(
            checkpoint_path=weights, n_bootstrap=4, source=source, random_state=0
        ).fit()
        maps = extractor.transform(paths)
        arb = BootstrapAttentionRegularizer(
            method="p", alpha=0.05, null="per_image", scale="auto"
        ).fit(maps)
        observed, regularized = arb.compute_statistics(maps).scores, arb.transform(maps)
        columns += [source, f"{source} + ARB ({arb.scale_} z)"]
        for row, image in enumerate(shown):
            signed = bool((observed[row] < 0).any())
            vmax = float(np.abs(observed[row]).max())
            for values in (observed[row], regularized[row]):
                tiles[row].append(
                    overlay_map(
                        image,
                        values,
                        grid_shape=extractor.grid_shape_,
                        vmax=vmax,
                        signed=signed,
                    )
                )
    figure, axes = plt.subplots(
        len(tiles), len(columns), figsize=(1.6 * len(columns), 1.75 * len(tiles))
    )
    for row, row_tiles in enumerate(tiles):
        for column, tile in enumerate(row_tiles):
            axes[row, column].imshow(tile)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(columns[column], fontsize=7)
    figure.tight_layout(pad=0.2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=75)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""How often pi0 collapses to 1 on real images: one-sided against two-sided p-values.

Storey's pi0 assumes null p-values uniform on [0, 1]. One-sided p-values of the
many tokens attended less than the bootstrap null pile up near 1 instead, so pi0
estimated from them comes out near 1 on real images; estimated from two-sided
p-values (the default, ``pi0_pvalues="two-sided"``) it does not. This script
measures both on the shared images (the 200 Imagenette validation images and the 30
lung CT slices): DeiT-Tiny/16 weights from a local checkpoint, 224 px, B=1, the
normal bootstrap, ``random_state=0``, a per-image null, one-sided thresholded
p-values, pi0 by Storey's smoother. For each data set and each pi0 source
(``pi0_pvalues="thresholded"``, i.e. one-sided: before; ``"two-sided"``: after) it
prints the images with pi0 >= 0.99, the median pi0, for each method (p with
alpha = 0.05, lfdr with gamma = 0.2, pi0) the maps zeroed whole (no token kept), and
the median number of tokens (of 196) the lfdr and pi0 methods keep. The p method
does not read pi0; its column is the same before and after.

Run: python benchmarks/pi0_collapse.py [--data DIR] [--memory DIR]
Results: the table of the pi0 page of the user guide (doc/pi0.rst).
"""

import argparse
from pathlib import Path

import numpy as np

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer, load_images

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATASETS = {
    "Imagenette": ("imagenette", "*/*.JPEG"),
    "lung CT": ("iqothnccd", "*/*.jpg"),
}
METHODS = ("p", "lfdr", "pi0")
PI0_SOURCES = {"one-sided (before)": "thresholded", "two-sided (after)": "two-sided"}


def collapse_counts(maps: np.ndarray, pi0_pvalues: str) -> dict[str, float]:
    """Images with pi0 >= 0.99, median pi0, maps zeroed whole per method and the
    median tokens kept."""
    regularizer = BootstrapAttentionRegularizer(
        null="per_image", pi0_pvalues=pi0_pvalues
    ).fit(maps)
    pi0 = regularizer.compute_statistics(maps).pi0
    counts = {"pi0 >= 0.99": int(np.sum(pi0 >= 0.99)), "median pi0": np.median(pi0)}
    for method in METHODS:
        kept = regularizer.set_params(method=method).transform(maps) > 0
        counts[f"{method} zeroed"] = int(np.sum(~kept.any(axis=1)))
        counts[f"{method} kept"] = np.median(kept.sum(axis=1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    parser.add_argument(
        "--memory", default=None, help="folder caching the extractor's maps"
    )
    args = parser.parse_args()
    extractor = AttentionExtractor(
        checkpoint_path=args.data / "weights" / "deit_tiny_patch16_224.pth",
        image_size=224,
        n_bootstrap=1,
        memory=args.memory,
        random_state=0,
    )
    columns = [
        "pi0 >= 0.99",
        "median pi0",
        *(f"{m} zeroed" for m in METHODS),
        "lfdr kept",
        "pi0 kept",
    ]
    print(f"{'images':<18}{'pi0 from':<20}" + "".join(f"{c:>12}" for c in columns))
    for name, (folder, pattern) in DATASETS.items():
        paths = sorted((args.data / folder).glob(pattern))
        if not paths:
            raise SystemExit(f"No images match {args.data / folder / pattern}.")
        maps = extractor.fit_transform(load_images(paths, image_size=224))
        label = f"{name} ({len(paths)})"
        for source, pi0_pvalues in PI0_SOURCES.items():
            counts = collapse_counts(maps, pi0_pvalues)
            cells = "".join(
                f"{counts[c]:>12.3f}" if c == "median pi0" else f"{counts[c]:>12g}"
                for c in columns
            )
            print(f"{label:<18}{source:<20}{cells}")


if __name__ == "__main__":
    main()

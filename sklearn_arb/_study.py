"""The noise simulation study of the ARB paper, shared by the command line
(``sklearn-arb simulate``) and ``benchmarks/simulation_study.py``.

See that script's docstring for the protocol.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ._extractor import AttentionExtractor
from ._images import load_images
from ._maps import tokens_to_grid, upsample_map
from ._regularizer import BootstrapAttentionRegularizer
from .datasets import make_noise_simulation
from .metrics import (
    mean_in_roi,
    mean_percentile_in_roi,
    nonzero_percentage_in_roi,
    pvalue_srmsd,
    select_by_roi_z,
    sensitivity,
    specificity,
    suppression_factor,
)
from .plotting import plot_sensitivity_specificity, plot_suppression_factors

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
METHODS = ("p", "lfdr", "pi0")
METHOD_COLORS = {"p": "tab:red", "lfdr": "gold", "pi0": "tab:green"}
SWEEP = np.linspace(0.02, 1.0, 50)  # alpha and gamma values of Fig. 5
CURVES_PER_CLASS = 5


def list_images(folder: Path, n_images: int | None) -> tuple[list[Path], list[str]]:
    """Image files of the class folders, taken class by class in turn."""
    if not folder.is_dir():
        raise ValueError(f"No data folder at {folder}; pass a folder of class folders.")
    per_class = [
        sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(folder.iterdir())
        if d.is_dir()
    ]
    per_class = [files for files in per_class if files]
    if not per_class:
        raise ValueError(
            f"{folder} has no class folders with images; pass a folder of class "
            "folders (one per class) of images."
        )
    longest = max(len(files) for files in per_class)
    ordered = [
        files[i] for i in range(longest) for files in per_class if i < len(files)
    ]
    paths = ordered[:n_images] if n_images else ordered
    paths = sorted(paths)
    return paths, [p.parent.name for p in paths]


def simulate(
    images: np.ndarray, noise: str, size: int | None, seed: int, patch_size: int
) -> tuple[np.ndarray, ...]:
    """Noise simulation; grey images get grey noise."""
    grey = bool(np.all(images == images[..., :1]))
    source = images[..., 0] if grey else images
    noisy, pixel_masks, token_masks = make_noise_simulation(
        source,
        noise=noise,
        size=size,
        patch_size=patch_size,
        random_state=seed,
    )
    if grey:
        noisy = np.repeat(noisy[..., np.newaxis], 3, axis=-1)
    return noisy, pixel_masks, token_masks, grey


def to_pixels(token_maps: np.ndarray, extractor) -> np.ndarray:
    return upsample_map(
        tokens_to_grid(token_maps, extractor.grid_shape_), extractor.patch_size_
    )


def regularizer(
    method: str, alpha: float, gamma: float, pvalue: str, **params
) -> BootstrapAttentionRegularizer:
    return BootstrapAttentionRegularizer(
        n_bootstrap=1,
        method=method,
        alpha=alpha,
        gamma=gamma,
        null="per_image",
        pvalue=pvalue,
        **params,
    )


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def suppression_table(results: dict, classes: np.ndarray, subset: np.ndarray):
    """D and its error per class (rows) and method (columns); NaN for < 2 images."""
    class_names = sorted(set(classes))
    factors = np.full((len(class_names) + 1, len(METHODS)), np.nan)
    errors = np.full_like(factors, np.nan)
    for row, name in enumerate([*class_names, "all classes"]):
        in_set = subset & ((classes == name) | (name == "all classes"))
        if in_set.sum() < 2:
            continue
        for col, method in enumerate(METHODS):
            factors[row, col], errors[row, col] = suppression_factor(
                results["mp_before"][in_set], results[f"mp_after_{method}"][in_set]
            )
    return [*class_names, "all classes"], factors, errors


def plot_fig3(results, subset, title, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in zip(
        axes,
        ("mp", "nz"),
        ("mean percentile in ROI", "non-zero % in ROI"),
        strict=True,
    ):
        for method in METHODS:
            ax.scatter(
                results[f"{key}_before"][subset],
                results[f"{key}_after_{method}"][subset],
                s=10,
                alpha=0.6,
                color=METHOD_COLORS[method],
                label=method,
            )
        ax.plot([0, 100], [0, 100], "--", color="tab:blue", lw=1)
        ax.set(
            xlabel=f"{label}, before",
            ylabel=f"{label}, after",
            xlim=(0, 101),
            ylim=(-1, 101),
        )
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_fig4(table, title, path: Path) -> None:
    names, factors, errors = table
    keep = np.all(np.isfinite(factors), axis=1)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    plot_suppression_factors(
        factors[keep],
        errors[keep],
        class_names=[n for n, k in zip(names, keep, strict=True) if k],
        method_names=list(METHODS),
        ax=ax,
    )
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_simulation_study(
    data: Path,
    output: Path,
    *,
    extractor: AttentionExtractor,
    noise: str = "square",
    size: int | None = None,
    n_images: int | None = None,
    alpha: float = 0.3,
    gamma: float = 0.3,
    pvalue: str = "one-sided",
    seed: int = 0,
) -> str:
    """Run the noise simulation study on a folder of class folders.

    Parameters
    ----------
    data : Path
        Folder of class folders of images.
    output : Path
        Results folder (created): ``per_image.csv``, ``curves.csv``,
        ``suppression_factors.csv``, ``summary.txt`` and PNG figures.
    extractor : AttentionExtractor
        A fitted extractor with ``n_bootstrap=1`` (the model and its weights).
    noise : {"square", "diffuse"}, default="square"
        Kind of injected noise.
    size : int, default=None
        ROI side in px (default: 100 px at 488 px, scaled).
    n_images : int, default=None
        Use this many images, spread evenly over the classes (default: all).
    alpha, gamma : float, default=0.3
        Thresholds of the ``p`` and ``lfdr`` methods.
    pvalue : {"one-sided", "reference"}, default="one-sided"
        p-value definition.
    seed : int, default=0
        Seed of the noise and of the curves' image choice.

    Returns
    -------
    summary : str
        The text written to ``summary.txt``.
    """
    data, output = Path(data), Path(output)
    data_name = data.name
    image_size = extractor.image_size_[0]
    model = extractor.model if isinstance(extractor.model, str) else "module"
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    paths, classes = list_images(data, n_images)
    classes = np.array(classes)
    images = load_images(paths, image_size=extractor.image_size_)
    noisy, pixel_masks, token_masks, grey = simulate(
        images, noise, size, seed, extractor.patch_size_
    )
    roi_side = round(np.sqrt(pixel_masks[0].sum()))
    X = extractor.transform(noisy)
    n_tokens = extractor.n_tokens_
    print(
        f"{len(paths)} images from {data} ({len(set(classes))} classes), "
        f"{noise} noise of {roi_side}^2 px{' (grey)' if grey else ''}; "
        f"maps in {time.perf_counter() - start:.0f} s"
    )

    before = to_pixels(X[:, :n_tokens], extractor)
    stats = regularizer("p", alpha, gamma, pvalue).fit(X).compute_statistics(X)
    z_pixels = to_pixels(stats.z, extractor)
    results = {
        "mean_z_roi": mean_in_roi(z_pixels, pixel_masks),
        "selected": select_by_roi_z(z_pixels, pixel_masks),
        "mp_before": mean_percentile_in_roi(before, pixel_masks),
        "nz_before": nonzero_percentage_in_roi(before, pixel_masks),
        "srmsd_roi": pvalue_srmsd(to_pixels(stats.pvalues, extractor), pixel_masks),
        "pi0": np.asarray(stats.pi0, dtype=float),
    }
    for method in METHODS:
        after = to_pixels(
            regularizer(method, alpha, gamma, pvalue).fit(X).transform(X), extractor
        )
        results[f"mp_after_{method}"] = mean_percentile_in_roi(
            after, pixel_masks, reference=before
        )
        results[f"nz_after_{method}"] = nonzero_percentage_in_roi(after, pixel_masks)
        results[f"sensitivity_{method}"] = sensitivity(before, after, pixel_masks)
        results[f"specificity_{method}"] = specificity(before, after, pixel_masks)
    selected = results["selected"]

    rows = [
        {
            "image": str(path.relative_to(data)),
            "class": cls,
            **{
                key: (bool(values[i]) if key == "selected" else float(values[i]))
                for key, values in results.items()
            },
            "token_roi_size": int(token_masks[i].sum()),
        }
        for i, (path, cls) in enumerate(zip(paths, classes, strict=True))
    ]
    write_csv(output / "per_image.csv", rows)

    # Fig. 5: threshold sweeps (for every image; five selected per class drawn).
    curves = {}
    for method, param in (("p", "alpha"), ("lfdr", "gamma")):
        sweep_reg = regularizer(method, alpha, gamma, pvalue).fit(X)
        sens, spec = [], []
        for value in SWEEP:
            after = to_pixels(
                sweep_reg.set_params(**{param: value}).transform(X), extractor
            )
            sens.append(sensitivity(before, after, pixel_masks))
            spec.append(specificity(before, after, pixel_masks))
        curves[method] = (np.array(sens).T, np.array(spec).T)  # (n_images, 50)
    curve_rows = [
        {
            "image": str(paths[i].relative_to(data)),
            "method": method,
            "threshold": float(value),
            "sensitivity": float(sens[i, j]),
            "specificity": float(spec[i, j]),
        }
        for method, (sens, spec) in curves.items()
        for i in range(len(paths))
        for j, value in enumerate(SWEEP)
    ]
    write_csv(output / "curves.csv", curve_rows)

    rng = np.random.default_rng(seed)
    shown = np.concatenate(
        [
            rng.choice(idx, size=min(CURVES_PER_CLASS, idx.size), replace=False)
            for cls in sorted(set(classes))
            if (idx := np.flatnonzero(selected & (classes == cls))).size
        ]
    ).astype(int)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (method, (sens, spec)) in zip(axes, curves.items(), strict=True):
        if shown.size:
            plot_sensitivity_specificity(
                sens[shown],
                spec[shown],
                labels=list(classes[shown]),
                points=(
                    results["sensitivity_pi0"][shown],
                    results["specificity_pi0"][shown],
                ),
                ax=ax,
            )
        ax.set_title(
            f"{method} thresholds {SWEEP[0]:.2f}..{SWEEP[-1]:.2f} "
            f"(dots: pi0), {shown.size} selected images"
        )
        ax.get_legend() and ax.get_legend().set_visible(method == "lfdr")
    fig.tight_layout()
    fig.savefig(output / "fig5_sensitivity_specificity.png", dpi=120)
    plt.close(fig)

    # Fig. 3, 4 and S10: selected and all images.
    summary = [
        f"data: {data} ({len(paths)} images), noise: {noise}, ROI "
        f"{roi_side}x{roi_side} px at {image_size} px, model {model}, "
        f"alpha={alpha}, gamma={gamma}, p-values {pvalue}, "
        f"seed={seed}",
        f"selected (|mean z in ROI| <= 1): {int(selected.sum())} of {len(paths)}",
    ]
    for subset_name, subset in (
        ("selected", selected),
        ("all", np.ones_like(selected)),
    ):
        title = (
            f"{data_name}, {noise} noise, {subset_name} images (n={int(subset.sum())})"
        )
        plot_fig3(results, subset, title, output / f"fig3_{subset_name}.png")
        table = suppression_table(results, classes, subset)
        plot_fig4(
            table,
            f"suppression factor D, {title}",
            output / f"fig4_suppression_{subset_name}.png",
        )
        names, factors, errors = table
        summary.append(
            f"\nD per class, {subset_name} images (method: D +- error [paired])"
        )
        for name, row, err in zip(names, factors, errors, strict=True):
            n_in = int((subset & ((classes == name) | (name == "all classes"))).sum())
            summary.append(
                f"  {name:<14} n={n_in:<4}"
                + "  ".join(
                    f"{m}: {d:.3f}+-{e:.3f}"
                    for m, d, e in zip(METHODS, row, err, strict=True)
                )
            )
        for method in METHODS:
            summary.append(
                f"  {method}: mean percentile {results['mp_before'][subset].mean():.1f}"
                f" -> {results[f'mp_after_{method}'][subset].mean():.1f}, non-zero % "
                f"{results['nz_before'][subset].mean():.1f} -> "
                f"{results[f'nz_after_{method}'][subset].mean():.1f}, sensitivity "
                f"{results[f'sensitivity_{method}'][subset].mean():.3f}, specificity "
                f"{results[f'specificity_{method}'][subset].mean():.3f}"
            )
    write_csv(
        output / "suppression_factors.csv",
        [
            {
                "subset": s,
                "class": name,
                "method": m,
                "D": float(d),
                "D_error": float(e),
            }
            for s, subset in (("selected", selected), ("all", np.ones_like(selected)))
            for name, row, err in zip(
                *suppression_table(results, classes, subset), strict=True
            )
            for m, d, e in zip(METHODS, row, err, strict=True)
        ],
    )

    # Fig. S6 and S7.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].scatter(
        results["mp_before"],
        results["mean_z_roi"],
        s=10,
        c=np.where(selected, "tab:blue", "tab:gray"),
    )
    axes[0].axhspan(-1, 1, color="tab:blue", alpha=0.1)
    axes[0].set(xlabel="mean percentile in ROI, before", ylabel="mean z in ROI")
    axes[1].scatter(results["mp_before"], results["srmsd_roi"], s=10)
    axes[1].set(xlabel="mean percentile in ROI, before", ylabel="sRMSD of ROI p-values")
    fig.tight_layout()
    fig.savefig(output / "figS6_S7_z_and_srmsd.png", dpi=120)
    plt.close(fig)

    summary.append(f"\ntotal time {time.perf_counter() - start:.0f} s")
    text = "\n".join(summary) + "\n"
    (output / "summary.txt").write_text(text)
    return text

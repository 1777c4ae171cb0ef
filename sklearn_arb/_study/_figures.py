"""The study's figures: the paper's Fig. 3, 4 (and S10), 5, S6 and S7."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.utils import Bunch

from ..plotting import plot_sensitivity_specificity, plot_suppression_factors
from ._compute import METHODS, SWEEP
from ._tables import defined_rows, subsets

METHOD_COLORS = {"p": "tab:red", "lfdr": "gold", "pi0": "tab:green"}
CURVES_PER_CLASS = 5
DPI = 120


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_fig3(metrics: dict, subset: np.ndarray, title: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in zip(
        axes,
        ("mp", "nz"),
        ("mean percentile in ROI", "non-zero % in ROI"),
        strict=True,
    ):
        for method in METHODS:
            ax.scatter(
                metrics[f"{key}_before"][subset],
                metrics[f"{key}_after_{method}"][subset],
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
    _save(fig, path)


def plot_fig4(table: Bunch, title: str, path: Path) -> None:
    """The bars of the classes whose D is defined (at least one)."""
    keep = defined_rows(table)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    plot_suppression_factors(
        table.factors[keep],
        table.errors[keep],
        class_names=[n for n, k in zip(table.names, keep, strict=True) if k],
        method_names=list(METHODS),
        ax=ax,
    )
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, path)


def curve_images(selected: np.ndarray, classes: np.ndarray, seed: int) -> np.ndarray:
    """Indices of the Fig. 5 images: up to five random selected images per class."""
    rng = np.random.default_rng(seed)
    shown = [
        rng.choice(idx, size=min(CURVES_PER_CLASS, idx.size), replace=False)
        for cls in sorted(set(classes))
        if (idx := np.flatnonzero(selected & (classes == cls))).size
    ]
    return np.concatenate([np.zeros(0, dtype=int), *shown]).astype(int)


def plot_fig5(results: Bunch, seed: int, path: Path) -> None:
    shown = curve_images(results.metrics["selected"], results.classes, seed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (method, (sens, spec)) in zip(axes, results.curves.items(), strict=True):
        if shown.size:
            plot_sensitivity_specificity(
                sens[shown],
                spec[shown],
                labels=list(results.classes[shown]),
                points=(
                    results.metrics["sensitivity_pi0"][shown],
                    results.metrics["specificity_pi0"][shown],
                ),
                ax=ax,
            )
        ax.set_title(
            f"{method} thresholds {SWEEP[0]:.2f}..{SWEEP[-1]:.2f} "
            f"(dots: pi0), {shown.size} selected images"
        )
        if ax.get_legend() is not None:
            ax.get_legend().set_visible(method == "lfdr")
    _save(fig, path)


def plot_figs6_s7(metrics: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].scatter(
        metrics["mp_before"],
        metrics["mean_z_roi"],
        s=10,
        c=np.where(metrics["selected"], "tab:blue", "tab:gray"),
    )
    axes[0].axhspan(-1, 1, color="tab:blue", alpha=0.1)
    axes[0].set(xlabel="mean percentile in ROI, before", ylabel="mean z in ROI")
    axes[1].scatter(metrics["mp_before"], metrics["srmsd_roi"], s=10)
    axes[1].set(xlabel="mean percentile in ROI, before", ylabel="sRMSD of ROI p-values")
    _save(fig, path)


def draw_figures(results: Bunch, output: Path, title: str, seed: int) -> None:
    """Draw the study's PNG figures into ``output``; ``title`` names data and noise."""
    plot_fig5(results, seed, output / "fig5_sensitivity_specificity.png")
    for name, subset in subsets(results.metrics["selected"]).items():
        subset_title = f"{title}, {name} images (n={int(subset.sum())})"
        plot_fig3(results.metrics, subset, subset_title, output / f"fig3_{name}.png")
        if not defined_rows(results.tables[name]).any():
            continue  # summary.txt says D is undefined and the figure not drawn
        plot_fig4(
            results.tables[name],
            f"suppression factor D, {subset_title}",
            output / f"fig4_suppression_{name}.png",
        )
    plot_figs6_s7(results.metrics, output / "figS6_S7_z_and_srmsd.png")

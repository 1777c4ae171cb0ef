"""The evaluation study's figures: deletion and insertion curves with bands, the
precision-recall of each rule beside the raw map's and chance, example panels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from sklearn.utils import Bunch

from .._images import load_images
from ._intervals import finite_mean
from ._study import METHODS

__all__ = ["draw_figures"]

DPI = 110
N_EXAMPLES = 4
_MARKERS = dict(zip(METHODS, "os^DvP*X", strict=True))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_curves(summary: Bunch, path: Path) -> None:
    """Mean deletion and insertion curves per source with their 95% bands."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        sources = dict.fromkeys(row["source"] for row in summary.curves)
        for source in sources:
            rows = [
                row
                for row in summary.curves
                if row["source"] == source and row["kind"] == kind
            ]
            fractions = [row["fraction"] for row in rows]
            line = ax.plot(fractions, [row["mean"] for row in rows], label=source)[0]
            ax.fill_between(
                fractions,
                [row["low"] for row in rows],
                [row["high"] for row in rows],
                color=line.get_color(),
                alpha=0.2,
            )
        removed = "removed" if kind == "deletion" else "restored"
        ax.set_xlabel(f"share of tokens {removed}, most relevant first (MoRF)")
        ax.set_ylabel("probability of the predicted class")
        ax.set_title(f"{kind} (ROAD), mean and 95% band over images")
        ax.legend()
    _save(fig, path)


def _top_k_precision_recall(
    observed: np.ndarray, token_masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall over images of the top k tokens, k = 1..P."""
    order = np.argsort(-observed, axis=1, kind="stable")
    inside = np.take_along_axis(token_masks, order, axis=1).cumsum(axis=1)
    k = np.arange(1, observed.shape[1] + 1)
    precision = (inside / k).mean(axis=0)
    n_inside = token_masks.sum(axis=1, keepdims=True)
    # Images whose box covers no token have no recall: left out.
    has_box = n_inside[:, 0] > 0
    if not has_box.any():
        return precision, np.full(len(k), np.nan)
    recall = (inside[has_box] / n_inside[has_box]).mean(axis=0)
    return precision, recall


def plot_precision_recall(results: Bunch, path: Path) -> None:
    """Per source: the raw map's top-k precision-recall curve, each rule's mean
    (recall, precision) and the chance precision (the mean box share)."""
    sources = list(results.sources)
    fig, axes = plt.subplots(
        1, len(sources), figsize=(4.6 * len(sources), 4.2), squeeze=False
    )
    for ax, source in zip(axes[0], sources, strict=True):
        per_source = results.sources[source]
        precision, recall = _top_k_precision_recall(
            per_source.selections.observed, results.token_masks
        )
        ax.plot(recall, precision, color="grey", label="raw map, top k")
        for method in results.settings.methods:
            scores = per_source.localisation[method]
            ax.scatter(
                finite_mean(scores["recall"]),
                finite_mean(scores["precision"]),
                marker=_MARKERS[method],
                s=50,
                label=METHODS[method],
                zorder=3,
            )
        chance = results.token_masks.mean()
        ax.axhline(chance, color="k", linestyle="--", label="chance (box share)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("recall of the box's tokens")
        ax.set_ylabel("precision")
        ax.set_title(source)
    axes[0, -1].legend(fontsize=7, loc="lower left")
    _save(fig, path)


def plot_examples(results: Bunch, source: str, path: Path) -> None:
    """A few images (rows): the raw map and each method's selection (columns),
    with the boxes drawn."""
    per_source = results.sources[source]
    n_images = len(results.images)
    picks = np.unique(np.linspace(0, n_images - 1, min(N_EXAMPLES, n_images)))
    picks = picks.astype(int)
    images = load_images([results.paths[i] for i in picks], results.image_size)
    columns = ["map", *results.settings.methods]
    fig, axes = plt.subplots(
        len(picks),
        len(columns),
        figsize=(1.9 * len(columns), 2.0 * len(picks)),
        squeeze=False,
    )
    rows, cols = results.grid_shape
    height, width = results.image_size
    for row_axes, index, image in zip(axes, picks, images, strict=True):
        observed = per_source.selections.observed[index]
        for ax, column in zip(row_axes, columns, strict=True):
            if column == "map":
                shown = np.maximum(observed, 0)
            else:
                shown = np.where(per_source.selections.masks[column][index], 1.0, 0.0)
            grid = shown.reshape(rows, cols)
            top = grid.max() if grid.max() > 0 else 1.0
            ax.imshow(image)
            ax.imshow(
                grid / top,
                cmap="inferno",
                alpha=0.55,
                extent=(0, width, height, 0),
                interpolation="nearest",
                vmin=0,
                vmax=1,
            )
            for x0, y0, x1, y1 in results.boxes[index]:
                ax.add_patch(
                    Rectangle(
                        (x0, y0), x1 - x0, y1 - y0, fill=False, color="cyan", lw=1.2
                    )
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if index == picks[0]:
                ax.set_title(
                    "raw map" if column == "map" else METHODS[column], fontsize=6
                )
    fig.suptitle(f"{source}: selections (bright) and boxes (cyan)", fontsize=9)
    _save(fig, path)


def draw_figures(results: Bunch, summary: Bunch, output: Path) -> None:
    """``curves.png`` (when curves were computed), ``precision_recall.png`` and
    ``examples_<source>.png`` in ``output``."""
    output = Path(output)
    if summary.curves:
        plot_curves(summary, output / "curves.png")
    plot_precision_recall(results, output / "precision_recall.png")
    for source in results.sources:
        plot_examples(results, source, output / f"examples_{source}.png")

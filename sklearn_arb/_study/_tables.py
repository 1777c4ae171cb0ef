"""The study's tables: per_image.csv, curves.csv, suppression_factors.csv and
summary.txt."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..metrics import suppression_factor
from ._compute import METHODS, SWEEP


def subsets(selected: np.ndarray) -> dict[str, np.ndarray]:
    return {"selected": selected, "all": np.ones_like(selected)}


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def suppression_table(metrics: dict, classes: np.ndarray, subset: np.ndarray):
    """D and its error per class (rows) and method (columns).

    NaN where D is undefined: for fewer than 2 images, or when every ROI's mean
    percentile before is 0 (no ROI score above 0: a signed map's ROI with only
    negative evidence; the metrics read a signed map's positive part).
    """
    class_names = [*sorted(set(classes)), "all classes"]
    factors = np.full((len(class_names), len(METHODS)), np.nan)
    errors = np.full_like(factors, np.nan)
    counts = []
    for row, name in enumerate(class_names):
        in_set = subset & ((classes == name) | (name == "all classes"))
        counts.append(int(in_set.sum()))
        if counts[-1] < 2 or not metrics["mp_before"][in_set].any():
            continue
        for col, method in enumerate(METHODS):
            factors[row, col], errors[row, col] = suppression_factor(
                metrics["mp_before"][in_set], metrics[f"mp_after_{method}"][in_set]
            )
    return Bunch(names=class_names, factors=factors, errors=errors, counts=counts)


def defined_rows(table: Bunch) -> np.ndarray:
    """The classes of a suppression table whose D is defined (the bars drawn)."""
    return np.all(np.isfinite(table.factors), axis=1)


def _summary_lines(results: Bunch, subset_name: str, subset: np.ndarray) -> list[str]:
    table, metrics = results.tables[subset_name], results.metrics
    lines = [f"\nD per class, {subset_name} images (method: D +- error [paired])"]
    if not defined_rows(table).any():
        lines.append(
            "  D undefined for every class (nan: fewer than 2 images, or no ROI "
            f"score above 0): fig4_suppression_{subset_name}.png not drawn"
        )
    for name, n_in, row, err in zip(
        table.names, table.counts, table.factors, table.errors, strict=True
    ):
        lines.append(
            f"  {name:<14} n={n_in:<4}"
            + "  ".join(
                f"{m}: {d:.3f}+-{e:.3f}"
                for m, d, e in zip(METHODS, row, err, strict=True)
            )
        )
    for m in METHODS if subset.any() else ():  # no means of no images
        lines.append(
            f"  {m}: mean percentile {metrics['mp_before'][subset].mean():.1f}"
            f" -> {metrics[f'mp_after_{m}'][subset].mean():.1f}, non-zero % "
            f"{metrics['nz_before'][subset].mean():.1f} -> "
            f"{metrics[f'nz_after_{m}'][subset].mean():.1f}, sensitivity "
            f"{metrics[f'sensitivity_{m}'][subset].mean():.3f}, specificity "
            f"{metrics[f'specificity_{m}'][subset].mean():.3f}"
        )
    return lines


def _per_image_rows(results: Bunch) -> list[dict]:
    return [
        {"image": name, "class": cls}
        | {key: values[i].item() for key, values in results.metrics.items()}
        for i, (name, cls) in enumerate(
            zip(results.names, results.classes, strict=True)
        )
    ]


def _curve_rows(results: Bunch) -> list[dict]:
    return [
        {
            "image": results.names[i],
            "method": method,
            "threshold": float(value),
            "sensitivity": float(sens[i, j]),
            "specificity": float(spec[i, j]),
        }
        for method, (sens, spec) in results.curves.items()
        for i in range(len(results.names))
        for j, value in enumerate(SWEEP)
    ]


def _factor_rows(results: Bunch) -> list[dict]:
    return [
        {"subset": subset, "class": name, "method": m, "D": d, "D_error": e}
        for subset, table in results.tables.items()
        for name, row, err in zip(table.names, table.factors, table.errors, strict=True)
        for m, d, e in zip(METHODS, row.tolist(), err.tolist(), strict=True)
    ]


def write_tables(results: Bunch, output: Path, header: str, footer: str) -> str:
    """Write the CSV tables and ``summary.txt`` (between ``header`` and
    ``footer``); return the summary."""
    write_csv(output / "per_image.csv", _per_image_rows(results))
    write_csv(output / "curves.csv", _curve_rows(results))
    write_csv(output / "suppression_factors.csv", _factor_rows(results))
    selected = results.metrics["selected"]
    lines = [
        header,
        f"selected (|mean z in ROI| <= 1): {int(selected.sum())} of {len(selected)}",
    ]
    for subset_name, subset in subsets(selected).items():
        lines += _summary_lines(results, subset_name, subset)
    text = "\n".join([*lines, footer]) + "\n"
    (output / "summary.txt").write_text(text)
    return text

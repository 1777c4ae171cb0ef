"""The evaluation study's tables and figures, from :func:`compute_evaluation`'s
per-image numbers: means with bootstrap intervals over images, chance levels,
paired tests of ARB p against each rule, the calibration table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from .._runs import write_atomic
from ._intervals import finite_mean, mean_interval, paired_test
from ._study import METHODS, EvaluationSettings, compute_evaluation

__all__ = ["LOCALISATION_METRICS", "run_evaluation", "summarize", "write_report"]

LOCALISATION_METRICS = (
    "pointing_game",
    "relevance_mass",
    "rank_accuracy",
    "auc",
    "precision",
    "recall",
    "iou",
    "size",
)
FAITHFULNESS_METRICS = ("comprehensiveness", "sufficiency")
CURVE_METRICS = ("deletion_auc", "insertion_auc")
# What ARB p is tested against, and whether the rule's size is matched to ARB p's
# (on average over the images, or image by image for the random selection).
_TESTED = {
    "cumulative_mass": "no",
    "mean_threshold": "no",
    "top_fraction": "mean",
    "cumulative_mass_matched": "mean",
    "random": "per image",
}
_TEST_METRICS = (
    "precision",
    "recall",
    "iou",
    "relevance_mass",
    "comprehensiveness",
    "sufficiency",
)


def per_image_rows(results: Bunch) -> list[dict[str, Any]]:
    """One row per image, source and method (``"map"``: the raw map)."""
    rows = []
    for source, per_source in results.sources.items():
        faithfulness = per_source.faithfulness
        for method, scores in per_source.localisation.items():
            for index, key in enumerate(results.images):
                row = {"image": key, "source": source, "method": method}
                row.update(
                    {
                        metric: float(scores[metric][index])
                        for metric in (*LOCALISATION_METRICS, "chance")
                        if metric in scores
                    }
                )
                if faithfulness is not None:
                    if method in faithfulness.scores:
                        for metric in FAITHFULNESS_METRICS:
                            values = faithfulness.scores[method][metric]
                            row[metric] = float(values[index])
                    if method == "map" and len(faithfulness.fractions) > 1:
                        for kind in ("deletion", "insertion"):
                            row[f"{kind}_auc"] = float(faithfulness.auc[kind][index])
                rows.append(row)
    return rows


def _chance(metric: str, method: str, scores: dict, random_scores: dict | None):
    """The chance level of ``metric`` for ``method``'s per-image scores: what a
    selection (or map) blind to the image gets. For comprehensiveness and
    sufficiency that is the random selection's, measured only at ARB p's size
    in each image: a method of other sizes has no chance level here."""
    box_share = scores["chance"]
    if metric in ("pointing_game", "relevance_mass", "rank_accuracy", "precision"):
        return box_share
    if metric == "auc":
        return np.full(len(box_share), 0.5)
    if metric == "recall" and "size" in scores:
        return scores["size"]  # a random selection of the same size
    if metric == "iou" and "size" in scores:
        size = scores["size"]
        union = size + box_share - size * box_share
        return np.divide(
            size * box_share, union, out=np.full(len(size), np.nan), where=union > 0
        )
    if (
        metric in FAITHFULNESS_METRICS
        and random_scores is not None
        and np.array_equal(scores.get("size"), random_scores["size"])
    ):
        return random_scores[metric]
    return None


def summarize(
    results: Bunch, *, n_resamples: int = 2000, random_state: int = 0
) -> Bunch:
    """Means over images with bootstrap intervals, and the paired tests.

    Parameters
    ----------
    results : Bunch
        :func:`compute_evaluation`'s result.
    n_resamples : int, default=2000
        Bootstrap resamples of the images.
    random_state : int, default=0
        Seeds the resampling.

    Returns
    -------
    summary : Bunch
        ``rows``: source, method, metric, mean, low, high, n, chance (the
        mean chance level; NaN where none is known); ``tests``: source, rule,
        metric, ARB p's and the rule's mean, their mean difference, the
        Wilcoxon p-value, the pairs, both mean sizes and whether the size is
        matched; ``curves``: source, kind, fraction, mean, low, high.
    """

    def interval(values):
        return mean_interval(values, n_resamples=n_resamples, random_state=random_state)

    rows, tests, curves = [], [], []
    for source, per_source in results.sources.items():
        faithfulness = per_source.faithfulness
        random_scores = None
        if faithfulness is not None and "random" in faithfulness.scores:
            random_scores = {
                **faithfulness.scores["random"],
                "size": per_source.localisation["random"]["size"],
            }
        per_method = {}
        for method, scores in per_source.localisation.items():
            values = dict(scores)
            values.pop("chance")
            if faithfulness is not None and method in faithfulness.scores:
                values.update(faithfulness.scores[method])
            if faithfulness is not None and method == "map":
                for kind in ("deletion", "insertion"):
                    if len(faithfulness.fractions) > 1:
                        values[f"{kind}_auc"] = faithfulness.auc[kind]
            per_method[method] = values
            for metric, metric_values in values.items():
                mean, low, high, n = interval(metric_values)
                chance = _chance(metric, method, scores, random_scores)
                rows.append(
                    {
                        "source": source,
                        "method": method,
                        "metric": metric,
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "n": n,
                        "chance": np.nan if chance is None else finite_mean(chance),
                    }
                )
        if "arb_p" in per_method:
            arb = per_method["arb_p"]
            for rule, matched in _TESTED.items():
                if rule not in per_method:
                    continue
                for metric in _TEST_METRICS:
                    if metric not in arb or metric not in per_method[rule]:
                        continue
                    first, second = arb[metric], per_method[rule][metric]
                    difference, pvalue, n = paired_test(first, second)
                    tests.append(
                        {
                            "source": source,
                            "rule": rule,
                            "metric": metric,
                            "arb_p": finite_mean(first),
                            "rule_mean": finite_mean(second),
                            "difference": difference,
                            "pvalue": pvalue,
                            "n": n,
                            "arb_p_size": np.mean(arb["size"]),
                            "rule_size": np.mean(per_method[rule]["size"]),
                            "matched": matched,
                        }
                    )
        if faithfulness is not None and len(faithfulness.fractions) > 1:
            for kind in ("deletion", "insertion"):
                for step, fraction in enumerate(faithfulness.fractions):
                    mean, low, high, _ = interval(faithfulness.curves[kind][:, step])
                    curves.append(
                        {
                            "source": source,
                            "kind": kind,
                            "fraction": float(fraction),
                            "mean": mean,
                            "low": low,
                            "high": high,
                        }
                    )
    return Bunch(rows=rows, tests=tests, curves=curves)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: f"{value:.6g}" if isinstance(value, float) else value
                    for key, value in row.items()
                }
            )

    write_atomic(path, write, mode="w")


def _calibration_rows(results: Bunch) -> list[dict[str, Any]]:
    return [
        {"source": source, **row}
        for source, per_source in results.sources.items()
        if per_source.calibration is not None
        for row in per_source.calibration.rows
    ]


def summary_text(results: Bunch, summary: Bunch, header: str) -> str:
    """The study's tables as plain text (``summary.txt``)."""
    lines = [header, ""]
    metrics = [*LOCALISATION_METRICS, *FAITHFULNESS_METRICS, *CURVE_METRICS]
    for source in results.sources:
        lines.append(f"== {source}: mean [95% interval over images] (chance)")
        for method in ("map", *results.settings.methods):
            cells = []
            for metric in metrics:
                for row in summary.rows:
                    if (row["source"], row["method"], row["metric"]) == (
                        source,
                        method,
                        metric,
                    ):
                        chance = (
                            "" if np.isnan(row["chance"]) else f" ({row['chance']:.3f})"
                        )
                        cells.append(
                            f"{metric} {row['mean']:.3f} "
                            f"[{row['low']:.3f}, {row['high']:.3f}]{chance}"
                        )
            label = METHODS.get(method, "raw map")
            lines.append(f"{label}: " + "; ".join(cells))
        lines.append("")
        lines.append(f"-- {source}: ARB p against each rule (Wilcoxon signed-rank)")
        for test in summary.tests:
            if test["source"] != source:
                continue
            lines.append(
                f"{METHODS[test['rule']]} (size matched: {test['matched']}; sizes "
                f"{test['arb_p_size']:.3f} vs {test['rule_size']:.3f}): "
                f"{test['metric']} {test['arb_p']:.3f} vs {test['rule_mean']:.3f}, "
                f"difference {test['difference']:+.3f}, p = {test['pvalue']:.2g}, "
                f"n = {test['n']}"
            )
        lines.append("")
    calibration = _calibration_rows(results)
    if calibration:
        lines.append(
            "== calibration on bootstrap noise: mean [95% interval] (expected)"
        )
        for row in calibration:
            expected = "" if np.isnan(row["expected"]) else f" ({row['expected']:.4f})"
            lines.append(
                f"{row['source']}, {row['null']} null, {row['statistic']}: "
                f"{row['mean']:.4f} [{row['low']:.4f}, {row['high']:.4f}]{expected}"
            )
    return "\n".join(lines) + "\n"


def write_report(results: Bunch, output: Path, header: str) -> str:
    """Write the tables (``per_image.csv``, ``summary.csv``, ``tests.csv``,
    ``curves.csv``, ``calibration.csv``, ``summary.txt``) and the figures;
    return the text of ``summary.txt``."""
    from ._study_figures import draw_figures

    output = Path(output)
    summary = summarize(results, random_state=results.settings.seed)
    _write_csv(output / "per_image.csv", per_image_rows(results))
    _write_csv(output / "summary.csv", summary.rows)
    _write_csv(output / "tests.csv", summary.tests)
    _write_csv(output / "curves.csv", summary.curves)
    _write_csv(output / "calibration.csv", _calibration_rows(results))
    draw_figures(results, summary, output)
    text = summary_text(results, summary, header)
    write_atomic(output / "summary.txt", lambda handle: handle.write(text), mode="w")
    return text


def run_evaluation(
    folder: str | Path,
    boxes: str | Path,
    output: str | Path,
    *,
    extractor: Any,
    settings: Any = None,
    progress: bool = False,
) -> str:
    """Run the evaluation study: ARB and the heuristic rules on images with boxes.

    For every map source, each method's selection (ARB's p, lfdr and pi0 rules
    at the regularizer's defaults with the pooled null of the images' own
    bootstrap maps; ``CumulativeMass(0.6)``; ``MeanThreshold``; and at ARB p's
    mean size ``TopFraction`` and ``CumulativeMass``; a random selection of
    ARB p's size per image as the chance level) is scored for localisation
    against the boxes and for faithfulness by perturbation (see
    :func:`compute_evaluation`), with means and 95% bootstrap intervals over
    images beside their chance levels, Wilcoxon signed-rank tests of ARB p
    against each rule, and :func:`noise_calibration` per source.

    Interrupted, it resumes: a rerun with the same images, model and settings
    computes only what is missing.

    Parameters
    ----------
    folder : str or Path
        Image folder; its images with boxes are used.
    boxes : str or Path
        The boxes CSV (:func:`read_boxes`).
    output : str or Path
        Results folder: ``per_image.csv``, ``summary.csv``, ``tests.csv``,
        ``curves.csv``, ``calibration.csv``, ``summary.txt``,
        ``curves.png``, ``precision_recall.png``, ``examples_<source>.png``.
    extractor : AttentionExtractor
        The model, its weights, image size, device and bootstrap (each source
        gets a clone with the source's defaults).
    settings : EvaluationSettings, default=None
        Sources, methods, curve fractions, removal, seed; None: the defaults.
    progress : bool, default=False
        Progress bars on stderr.

    Returns
    -------
    summary : str
        The text of ``summary.txt``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.evaluation import EvaluationSettings, run_evaluation
    >>> folder = Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for name in ("a.png", "b.png"):
    ...     pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ...     Image.fromarray(pixels).save(folder / name)
    >>> _ = (folder / "boxes.csv").write_text(
    ...     "file,class_index,original_width,original_height,x0,y0,x1,y1\\n"
    ...     "a.png,0,32,32,0,0,16,16\\nb.png,0,32,32,8,8,32,32\\n")
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> settings = EvaluationSettings(sources=("attention",), fractions=(0, 0.5, 1),
    ...                               calibration=False)
    >>> text = run_evaluation(folder, folder / "boxes.csv", folder / "out",
    ...                       extractor=AttentionExtractor(vit, image_size=32),
    ...                       settings=settings)
    >>> sorted(p.name for p in (folder / "out").glob("*.csv"))
    ['curves.csv', 'per_image.csv', 'summary.csv', 'tests.csv']
    """
    settings = EvaluationSettings() if settings is None else settings
    results = compute_evaluation(
        Path(folder),
        Path(boxes),
        Path(output),
        extractor=extractor,
        settings=settings,
        progress=progress,
    )
    model = extractor.model if isinstance(extractor.model, str) else "module"
    header = (
        f"images: {folder} ({len(results.images)} with boxes in {boxes}), model "
        f"{model} (weights {extractor.checkpoint_path or 'as given'}), image size "
        f"{results.image_size[0]}, B = {extractor.n_bootstrap} {extractor.bootstrap} "
        f"bootstrap, sources {', '.join(settings.sources)}, removal "
        f"{settings.removal}, target {settings.target} class, curve fractions "
        f"{list(settings.fractions)}, seed {settings.seed}"
    )
    return write_report(results, Path(output), header)

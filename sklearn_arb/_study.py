"""The noise simulation study of the ARB paper, run by ``sklearn-arb simulate``.

Protocol (Chung & Laletin, section 3.2, with the authors' code for what the text
lost): every image, resized to the model's input size, gets Gaussian noise
(per-channel mean and standard deviation of the image) in a region of interest (ROI),
a square of 100 px at 488 px scaled to the image (46 px at 224 px) or diffuse
clusters of as many pixels; grey images (all channels equal, e.g. CT slices) get grey
noise. The extractor's bootstrap maps (the paper: one normal bootstrap sample, B = 1,
w = 1) give z statistics against the image's own bootstrap null, then three
regularizations: p-values (alpha = 0.3), lfdr (gamma = 0.3), both the thresholds of
the authors' code, and the automatic pi0 threshold. Metrics are computed at pixel
resolution, on maps upsampled by nearest neighbour, as the authors did:

- mean percentile of the ROI scores among the rest of the original map, and the
  percentage of non-zero ROI scores, before and after (Fig. 3);
- the suppression factor D per class and method, for the images with
  |mean z in ROI| <= 1 ("selected", the paper's main result) and for all (Fig. 4,
  Fig. S10);
- sensitivity/specificity curves over 50 thresholds of alpha and gamma for five
  random selected images per class (Fig. 5);
- mean z in ROI against mean percentile (Fig. S6), sRMSD of the ROI p-values
  (Fig. S7).

The images are streamed: loaded, perturbed and mapped ``chunk_size`` at a time, and
only per-image numbers are kept (the metrics and each image's sensitivity and
specificity at every threshold of the sweep), so memory does not grow with the
number of images. Three stages: :func:`compute_study` (the numbers),
:func:`write_tables` (the CSV files and ``summary.txt``) and :func:`draw_figures`
(the PNG figures); :func:`run_simulation_study` runs the three. The statistics and
the metrics' equations: the Method page of the user guide.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xxhash
from sklearn.utils import Bunch
from tqdm import tqdm

from ._extractor import AttentionExtractor
from ._images import IMAGE_SUFFIXES, load_images
from ._layout import MapLayout
from ._maps import tokens_to_grid, upsample_map
from ._regularizer import BootstrapAttentionRegularizer
from .backbone._weights import module_weights_identity
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

METHODS = ("p", "lfdr", "pi0")
METHOD_COLORS = {"p": "tab:red", "lfdr": "gold", "pi0": "tab:green"}
SWEEP = np.linspace(0.02, 1.0, 50)  # alpha and gamma values of Fig. 5
SWEPT = {"p": "alpha", "lfdr": "gamma"}  # the threshold each Fig. 5 curve sweeps
CURVES_PER_CLASS = 5
CHUNK_SIZE = 16
CHECKPOINT = ".simulate_partial.npz"  # in the output folder, until the run ends
# Extractor parameters that change where or how fast, not what, it computes; the
# model is named by its weights' digest instead.
_RUNTIME_PARAMS = {"model", "device", "batch_size", "memory"}
DPI = 120


@dataclass(frozen=True)
class StudySettings:
    """What the study does besides the model: noise, thresholds, seed."""

    noise: str = "square"
    roi_size: int | None = None
    alpha: float = 0.3
    gamma: float = 0.3
    pvalue: str = "one-sided"
    seed: int = 0

    def regularizer(
        self, method: str, n_bootstrap: int
    ) -> BootstrapAttentionRegularizer:
        """The paper's regularizer: each image against its own bootstrap null."""
        return BootstrapAttentionRegularizer(
            n_bootstrap=n_bootstrap,
            method=method,
            alpha=self.alpha,
            gamma=self.gamma,
            null="per_image",
            pvalue=self.pvalue,
        )


# Compute: per-image numbers, chunk by chunk.


def list_images(folder: Path, n_images: int | None) -> tuple[list[Path], list[str]]:
    """Image files of the class folders, taken class by class in turn, and their
    classes; sorted by path."""
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
    paths = sorted(ordered[:n_images] if n_images else ordered)
    return paths, [p.parent.name for p in paths]


def perturb(
    images: np.ndarray,
    settings: StudySettings,
    patch_size: int,
    rng: np.random.RandomState,
) -> Bunch:
    """The noise simulation, image by image from one random stream, so chunks of a
    stream get the noise the whole set would; a grey image gets grey noise."""
    noisy = np.empty_like(images)
    pixel_masks = np.empty(images.shape[:3], dtype=bool)
    token_masks, grey = [], []
    for i, image in enumerate(images):
        grey.append(bool(np.all(image == image[..., :1])))
        source = image[np.newaxis, ..., 0] if grey[-1] else image[np.newaxis]
        perturbed, masks, tokens = make_noise_simulation(
            source,
            noise=settings.noise,
            size=settings.roi_size,
            patch_size=patch_size,
            random_state=rng,
        )
        noisy[i] = perturbed[0, ..., np.newaxis] if grey[-1] else perturbed[0]
        pixel_masks[i] = masks[0]
        token_masks.append(tokens[0])
    return Bunch(
        images=noisy,
        pixel_masks=pixel_masks,
        token_masks=np.array(token_masks),
        grey=np.array(grey),
    )


def _to_pixels(token_maps: np.ndarray, extractor: AttentionExtractor) -> np.ndarray:
    grid = tokens_to_grid(token_maps, extractor.grid_shape_)
    return upsample_map(grid, extractor.patch_size_)


def chunk_metrics(
    X: np.ndarray,
    pixel_masks: np.ndarray,
    extractor: AttentionExtractor,
    settings: StudySettings,
) -> Bunch:
    """Per-image metrics and sweep curves of one chunk of maps (its pixel maps
    live only here)."""
    layout = MapLayout(extractor.n_tokens_, extractor.n_bootstrap)
    before = _to_pixels(layout.observed(X), extractor)
    stats = settings.regularizer("p", layout.n_bootstrap).fit(X).compute_statistics(X)
    z_pixels = _to_pixels(stats.z, extractor)
    metrics = {
        "mean_z_roi": mean_in_roi(z_pixels, pixel_masks),
        "selected": select_by_roi_z(z_pixels, pixel_masks),
        "mp_before": mean_percentile_in_roi(before, pixel_masks),
        "nz_before": nonzero_percentage_in_roi(before, pixel_masks),
        "srmsd_roi": pvalue_srmsd(_to_pixels(stats.pvalues, extractor), pixel_masks),
        "pi0": np.asarray(stats.pi0, dtype=float),
    }
    curves = {}
    for method in METHODS:
        regularizer = settings.regularizer(method, layout.n_bootstrap).fit(X)
        after = _to_pixels(regularizer.transform(X), extractor)
        metrics[f"mp_after_{method}"] = mean_percentile_in_roi(
            after, pixel_masks, reference=before
        )
        metrics[f"nz_after_{method}"] = nonzero_percentage_in_roi(after, pixel_masks)
        metrics[f"sensitivity_{method}"] = sensitivity(before, after, pixel_masks)
        metrics[f"specificity_{method}"] = specificity(before, after, pixel_masks)
        if method in SWEPT:
            curves[method] = _sweep(regularizer, X, before, pixel_masks, extractor)
    return Bunch(metrics=metrics, curves=curves)


def _sweep(regularizer, X, before, pixel_masks, extractor) -> tuple[np.ndarray, ...]:
    """Sensitivity and specificity ``(n_images, len(SWEEP))`` over the sweep of the
    regularizer's threshold."""
    sens, spec = [], []
    for value in SWEEP:
        regularizer.set_params(**{SWEPT[regularizer.method]: value})
        after = _to_pixels(regularizer.transform(X), extractor)
        sens.append(sensitivity(before, after, pixel_masks))
        spec.append(specificity(before, after, pixel_masks))
    return np.array(sens).T, np.array(spec).T


def _chunk_results(
    paths: list[Path],
    extractor: AttentionExtractor,
    settings: StudySettings,
    rng: np.random.RandomState,
) -> Bunch:
    """Load, perturb, map and score one chunk of images."""
    images = load_images(paths, image_size=extractor.image_size_)
    noisy = perturb(images, settings, extractor.patch_size_, rng)
    del images
    X = extractor.transform(noisy.images)
    part = chunk_metrics(X, noisy.pixel_masks, extractor, settings)
    part.metrics["token_roi_size"] = noisy.token_masks.sum(axis=1)
    part.grey = noisy.grey
    part.roi_pixels = noisy.pixel_masks.sum(axis=(1, 2))
    return part


def compute_study(
    paths: list[Path],
    extractor: AttentionExtractor,
    settings: StudySettings,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    checkpoint: Path | None = None,
) -> Bunch:
    """Per-image results of the study, ``chunk_size`` images in memory at a time.

    Returns a Bunch: ``metrics`` (name -> array (n_images,)), ``curves`` (method ->
    (sensitivity, specificity), each (n_images, len(SWEEP))), ``grey`` (n_images,)
    and ``roi_pixels`` (n_images,), the ROI size in pixels. With a ``checkpoint``
    file, the results so far and the noise's random state are saved there after
    each chunk, and a run with the same images, model and settings continues from it.
    """
    rng = np.random.RandomState(settings.seed)
    key = "" if checkpoint is None else _checkpoint_key(paths, extractor, settings)
    done = None if checkpoint is None else _load_checkpoint(checkpoint, key, rng)
    parts = [] if done is None else [done]
    n_done = 0 if done is None else len(done.grey)
    with tqdm(
        total=len(paths),
        initial=n_done,
        desc="images",
        unit="image",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for start in range(n_done, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            parts.append(_chunk_results(chunk, extractor, settings, rng))
            if checkpoint is not None:
                parts = [_concatenate(parts)]
                _save_checkpoint(checkpoint, key, parts[0], rng)
            bar.update(len(chunk))
    return _concatenate(parts)


# What an interrupted run keeps: the numbers so far and the noise's random state.


def _checkpoint_key(
    paths: list[Path], extractor: AttentionExtractor, settings: StudySettings
) -> str:
    """A digest of what the results depend on: the image files, the extractor's
    parameters and weights, the settings (not the chunk size)."""
    params = extractor.get_params(deep=False)
    described = [
        asdict(settings),
        {k: repr(v) for k, v in sorted(params.items()) if k not in _RUNTIME_PARAMS},
        module_weights_identity(extractor.model_),
        [f"{p}|{p.stat().st_mtime_ns}|{p.stat().st_size}" for p in paths],
    ]
    return xxhash.xxh3_128_hexdigest(json.dumps(described).encode())


def _save_checkpoint(
    path: Path, key: str, done: Bunch, rng: np.random.RandomState
) -> None:
    _, state, position, has_gauss, gauss = rng.get_state()
    arrays = {
        "key": np.asarray(key),
        "rng": np.asarray(state),
        "rng_extra": np.array([position, has_gauss, gauss]),
        "grey": done.grey,
        "roi_pixels": done.roi_pixels,
        **{f"metric_{name}": values for name, values in done.metrics.items()},
        **{f"curve_{m}_{i}": done.curves[m][i] for m in done.curves for i in (0, 1)},
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)  # atomic: a kill leaves the old or the new
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Path, key: str, rng: np.random.RandomState) -> Bunch | None:
    """The results saved by an interrupted run with the same ``key`` (``rng`` set
    to its state), else None."""
    try:
        with np.load(path) as stored:
            if str(stored["key"]) != key:
                return None
            position, has_gauss, gauss = stored["rng_extra"]
            state = ("MT19937", stored["rng"], int(position), int(has_gauss), gauss)
            done = Bunch(
                metrics={
                    name.removeprefix("metric_"): stored[name]
                    for name in stored.files
                    if name.startswith("metric_")
                },
                curves={
                    m: (stored[f"curve_{m}_0"], stored[f"curve_{m}_1"]) for m in SWEPT
                },
                grey=stored["grey"],
                roi_pixels=stored["roi_pixels"],
            )
    except (OSError, KeyError, ValueError):
        return None  # none, or damaged: start afresh
    rng.set_state(state)
    return done


def _concatenate(parts: list[Bunch]) -> Bunch:
    first = parts[0]
    return Bunch(
        metrics={
            key: np.concatenate([p.metrics[key] for p in parts])
            for key in first.metrics
        },
        curves={
            method: tuple(
                np.concatenate([p.curves[method][k] for p in parts]) for k in (0, 1)
            )
            for method in first.curves
        },
        grey=np.concatenate([p.grey for p in parts]),
        roi_pixels=np.concatenate([p.roi_pixels for p in parts]),
    )


# Tables: per_image.csv, curves.csv, suppression_factors.csv, summary.txt.


def _subsets(selected: np.ndarray) -> dict[str, np.ndarray]:
    return {"selected": selected, "all": np.ones_like(selected)}


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def suppression_table(metrics: dict, classes: np.ndarray, subset: np.ndarray):
    """D and its error per class (rows) and method (columns); NaN for < 2 images."""
    class_names = [*sorted(set(classes)), "all classes"]
    factors = np.full((len(class_names), len(METHODS)), np.nan)
    errors = np.full_like(factors, np.nan)
    counts = []
    for row, name in enumerate(class_names):
        in_set = subset & ((classes == name) | (name == "all classes"))
        counts.append(int(in_set.sum()))
        if counts[-1] < 2:
            continue
        for col, method in enumerate(METHODS):
            factors[row, col], errors[row, col] = suppression_factor(
                metrics["mp_before"][in_set], metrics[f"mp_after_{method}"][in_set]
            )
    return Bunch(names=class_names, factors=factors, errors=errors, counts=counts)


def _summary_lines(results: Bunch, subset_name: str, subset: np.ndarray) -> list[str]:
    table, metrics = results.tables[subset_name], results.metrics
    lines = [f"\nD per class, {subset_name} images (method: D +- error [paired])"]
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
    for m in METHODS:
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
    for subset_name, subset in _subsets(selected).items():
        lines += _summary_lines(results, subset_name, subset)
    text = "\n".join([*lines, footer]) + "\n"
    (output / "summary.txt").write_text(text)
    return text


# Figures: Fig. 3, 4 (and S10), 5, S6 and S7.


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
    keep = np.all(np.isfinite(table.factors), axis=1)
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
    for name, subset in _subsets(results.metrics["selected"]).items():
        subset_title = f"{title}, {name} images (n={int(subset.sum())})"
        plot_fig3(results.metrics, subset, subset_title, output / f"fig3_{name}.png")
        plot_fig4(
            results.tables[name],
            f"suppression factor D, {subset_title}",
            output / f"fig4_suppression_{name}.png",
        )
    plot_figs6_s7(results.metrics, output / "figS6_S7_z_and_srmsd.png")


# The three stages.


def run_simulation_study(
    data: Path,
    output: Path,
    *,
    extractor: AttentionExtractor,
    noise: str = "square",
    roi_size: int | None = None,
    n_images: int | None = None,
    alpha: float = 0.3,
    gamma: float = 0.3,
    pvalue: str = "one-sided",
    seed: int = 0,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
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
        A fitted extractor (the model, its weights and the bootstrap; the paper
        uses ``n_bootstrap=1``).
    noise : {"square", "diffuse"}, default="square"
        Kind of injected noise.
    roi_size : int, default=None
        ROI side in px (default: 100 px at 488 px, scaled).
    n_images : int, default=None
        Use this many images, spread evenly over the classes (default: all).
    alpha, gamma : float, default=0.3
        Thresholds of the ``p`` and ``lfdr`` methods.
    pvalue : {"one-sided", "reference"}, default="one-sided"
        p-value definition.
    seed : int, default=0
        Seed of the noise and of the curves' image choice.
    chunk_size : int, default=16
        Images in memory at a time; the results do not depend on it.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    summary : str
        The text written to ``summary.txt``.

    Notes
    -----
    After each chunk the results so far are saved in ``output`` (a hidden file,
    removed at the end): an interrupted run, rerun with the same images, model and
    settings, continues where it stopped, with the results it would have had.
    """
    data, output = Path(data), Path(output)
    settings = StudySettings(noise, roi_size, alpha, gamma, pvalue, seed)
    start = time.perf_counter()
    paths, classes = list_images(data, n_images)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT
    for stale in output.glob(f"{CHECKPOINT}.*"):  # a killed run's temporary file
        stale.unlink()
    results = compute_study(
        paths,
        extractor,
        settings,
        chunk_size=chunk_size,
        progress=progress,
        checkpoint=checkpoint,
    )
    results.names = [str(path.relative_to(data)) for path in paths]
    results.classes = np.array(classes)
    results.tables = {
        name: suppression_table(results.metrics, results.classes, subset)
        for name, subset in _subsets(results.metrics["selected"]).items()
    }
    draw_figures(results, output, f"{data.name}, {noise} noise", seed)
    roi_side = round(np.sqrt(results.roi_pixels[0]))
    model = extractor.model if isinstance(extractor.model, str) else "module"
    header = (
        f"data: {data} ({len(paths)} images, {int(results.grey.sum())} grey), "
        f"noise: {noise}, ROI {roi_side}x{roi_side} px at "
        f"{extractor.image_size_[0]} px, model {model}, alpha={alpha}, "
        f"gamma={gamma}, p-values {pvalue}, seed={seed}"
    )
    footer = f"\ntotal time {time.perf_counter() - start:.0f} s"
    text = write_tables(results, output, header, footer)
    checkpoint.unlink()
    return text

"""The three stages of the study in one call: compute, tables, figures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._extractor import AttentionExtractor
from ._checkpoint import CHECKPOINT
from ._compute import CHUNK_SIZE, StudySettings, compute_study, list_images
from ._figures import draw_figures
from ._tables import subsets, suppression_table, write_tables


def run_simulation_study(
    data: Path,
    output: Path,
    *,
    extractor: AttentionExtractor,
    settings: StudySettings | None = None,
    n_images: int | None = None,
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
    settings : StudySettings, default=None
        Noise, thresholds and seed; None: ``StudySettings()``, the paper's.
    n_images : int, default=None
        Use this many images, spread evenly over the classes (default: all).
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
    A signed map (``source="cdam"``; pass ``settings.scale="linear"``) is measured
    by its positive part, the evidence for the target: D, sensitivity and
    specificity say how much of that evidence ARB removes from the noise square
    and keeps elsewhere. Where D is undefined (NaN: fewer than two images of a
    class, or no ROI score above 0) its bars are not drawn; a subset with no D at
    all gets no ``fig4_suppression_*.png``, and ``summary.txt`` says so.

    After each chunk the results so far are saved in ``output`` (a hidden file,
    removed at the end): an interrupted run, rerun with the same images, model and
    settings, continues where it stopped, with the results it would have had.
    """
    data, output = Path(data), Path(output)
    settings = StudySettings() if settings is None else settings
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
    results.names = [str(paths[i].relative_to(data)) for i in results.index]
    results.classes = np.array(classes)[results.index]
    results.tables = {
        name: suppression_table(results.metrics, results.classes, subset)
        for name, subset in subsets(results.metrics["selected"]).items()
    }
    draw_figures(results, output, f"{data.name}, {settings.noise} noise", settings.seed)
    header = _header(data, len(paths), results, extractor, settings)
    footer = f"\ntotal time {time.perf_counter() - start:.0f} s"
    text = write_tables(results, output, header, footer)
    checkpoint.unlink()
    return text


def _header(
    data: Path,
    n_files: int,
    results: Bunch,
    extractor: AttentionExtractor,
    settings: StudySettings,
) -> str:
    """The first line of ``summary.txt``: data, model and settings."""
    roi_side = round(np.sqrt(results.roi_pixels[0]))
    model = extractor.model if isinstance(extractor.model, str) else "module"
    n_images = len(results.index)
    return (
        f"data: {data} ({n_images} images, {int(results.grey.sum())} grey, "
        f"{n_files - n_images} unreadable skipped), noise: {settings.noise}, ROI "
        f"{roi_side}x{roi_side} px at {extractor.image_size_[0]} px, model {model}, "
        f"source={extractor.source} (head {extractor.head}, layer "
        f"{extractor.layer}), scale={settings.scale}, alpha={settings.alpha}, "
        f"gamma={settings.gamma}, p-values "
        f"{settings.pvalue} (pi0 from {settings.pi0_pvalues}), "
        f"in_range={settings.in_range}, seed={settings.seed}"
    )

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

A signed map (``source="cdam"``) is measured by its positive part, the evidence
for the target class: a negative score counts as 0 in the percentiles, the
non-zero share, sensitivity and specificity (the metrics do this themselves; a
positive map is unaffected). D is undefined (NaN) for a class with fewer than two
images or whose ROIs never hold a score above 0; a subset where no class has a
D gets no Fig. 4, and ``summary.txt`` says so.

The images are streamed: loaded, perturbed and mapped ``chunk_size`` at a time, and
only per-image numbers are kept (the metrics and each image's sensitivity and
specificity at every threshold of the sweep), so memory does not grow with the
number of images. The stages, one module each:

- ``_compute.py``: :func:`compute_study`, the per-image numbers, chunk by chunk;
- ``_checkpoint.py``: what an interrupted run keeps, so a rerun continues;
- ``_tables.py``: ``write_tables``, the CSV files and ``summary.txt``;
- ``_figures.py``: ``draw_figures``, the PNG figures;
- ``_run.py``: :func:`run_simulation_study`, the three stages in one call (what
  ``sklearn-arb simulate`` and ``benchmarks/simulation_study.py`` run).

The statistics and the metrics' equations: the Method page of the user guide.
"""

from ._compute import CHUNK_SIZE, StudySettings, compute_study, list_images
from ._run import run_simulation_study

__all__ = [
    "CHUNK_SIZE",
    "StudySettings",
    "compute_study",
    "list_images",
    "run_simulation_study",
]

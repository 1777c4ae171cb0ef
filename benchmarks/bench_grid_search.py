"""GridSearchCV over regularisation thresholds must not re-run the ViT.

Measures, side by side in one process on the same noisy images (Imagenette with
the shared DeiT-Tiny weights when present, else random images and a random
DeiT-Tiny):

- baseline: one fit-and-score, what each GridSearchCV candidate costs without
  caching: fit the Pipeline (extractor, regularizer) on one half of the images,
  score it on the other half (the ViT runs once per image); also timed with the
  extractor's own ``memory`` (a fresh folder), which adds hashing and cache
  writes;
- search: GridSearchCV over method x alpha/gamma (20 candidates), 2-fold, scored
  with sensitivity, specificity and balanced, refit on balanced, with the
  extractor's ``memory`` in a fresh folder and the in-process caches emptied
  first (``sklearn_arb.clear_caches``), so the search pays for loading the
  model and running the ViT once.

The goal: the search costs at most 1.3x the baseline. Baseline and search run
interleaved; the script prints their medians and the median of the per-round
ratios.

Run: ``python benchmarks/bench_grid_search.py [--n-images 40] [--repeats 3]
[--n-bootstrap 1]``, with ``SKLEARN_ARB_DATA`` pointing to the shared data
folder (default ``../shared/data``).

Results: the "Grid search with caching" table of the Benchmarks page
(doc/benchmarks.rst).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_arb import clear_caches, load_images, make_arb_pipeline
from sklearn_arb.datasets import make_noise_simulation
from sklearn_arb.metrics import balanced_scorer, make_arb_scorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIGHTS = DATA / "weights" / "deit_tiny_patch16_224.pth"
THRESHOLDS = np.geomspace(0.001, 0.9, 10)


def noisy_images(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    paths = sorted((DATA / "imagenette").glob("*/*.JPEG"))[:: 200 // n_images]
    if len(paths) >= n_images:
        images = load_images(paths[:n_images], image_size=224)
    else:
        images = np.random.default_rng(0).random((n_images, 224, 224, 3))
    noisy, _, token_masks = make_noise_simulation(images, patch_size=16, random_state=0)
    return noisy, token_masks


def pipeline(memory, n_bootstrap: int):
    checkpoint = WEIGHTS if WEIGHTS.exists() else None
    return make_arb_pipeline(
        n_bootstrap=n_bootstrap,
        extractor_params={"checkpoint_path": checkpoint, "random_state": 0},
        memory=memory,
    )


def time_baseline(X, y, n_bootstrap: int, memory: bool = False) -> float:
    clear_caches()
    train, test = next(KFold(2).split(X))
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        pipe = pipeline(cache if memory else None, n_bootstrap).fit(X[train])
        balanced_scorer(pipe, X[test], y[test])
        return time.perf_counter() - start


def time_search(X, y, n_bootstrap: int) -> tuple[float, GridSearchCV]:
    clear_caches()
    with tempfile.TemporaryDirectory() as cache:
        pipe = pipeline(cache, n_bootstrap)
        step = pipe.steps[-1][0]
        param_grid = [
            {f"{step}__method": ["p"], f"{step}__alpha": THRESHOLDS},
            {f"{step}__method": ["lfdr"], f"{step}__gamma": THRESHOLDS},
        ]
        search = GridSearchCV(
            pipe,
            param_grid,
            scoring=make_arb_scorer("all"),
            refit="balanced",
            cv=KFold(2),
        )
        start = time.perf_counter()
        search.fit(X, y)
        return time.perf_counter() - start, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--n-bootstrap", type=int, default=1, help="B: more makes the ViT costlier"
    )
    args = parser.parse_args()
    n_bootstrap = args.n_bootstrap
    X, y = noisy_images(args.n_images)
    time_baseline(X, y, n_bootstrap)  # warm-up: torch initialisation, file caches
    # Interleaved, so that drift in a shared machine's speed hits both alike; the
    # ratio is taken per round, then the median over rounds.
    baseline, cached_baseline, search_times, ratios, cached_ratios = (
        [] for _ in "12345"
    )
    for _ in range(args.repeats):
        baseline.append(time_baseline(X, y, n_bootstrap))
        cached_baseline.append(time_baseline(X, y, n_bootstrap, memory=True))
        seconds, search = time_search(X, y, n_bootstrap)
        search_times.append(seconds)
        ratios.append(seconds / baseline[-1])
        cached_ratios.append(seconds / cached_baseline[-1])
    n_candidates = len(search.cv_results_["params"])
    print(
        f"{args.n_images} images, B={args.n_bootstrap}, {n_candidates} candidates, "
        "2 folds, refit"
    )
    print(f"baseline fit-and-score: median {np.median(baseline):.2f} s")
    print(f"baseline with memory:   median {np.median(cached_baseline):.2f} s")
    print(f"grid search (memory):   median {np.median(search_times):.2f} s")
    for label, values in (("", ratios), (" with memory", cached_ratios)):
        print(
            f"ratio search / baseline{label}: median {np.median(values):.2f} (per "
            f"round {', '.join(f'{r:.2f}' for r in values)}; target <= 1.3)"
        )
    print(f"best: {search.best_params_}, balanced {search.best_score_:.3f}")


if __name__ == "__main__":
    main()

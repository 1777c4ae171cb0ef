"""GridSearchCV over regularisation thresholds must not re-run the ViT.

Compares, on the same noisy images (Imagenette with the shared DeiT-Tiny weights
when present, else random images and a random DeiT-Tiny):

- baseline: one fit-and-score, what each GridSearchCV candidate costs without
  caching: fit the Pipeline (extractor, regularizer) on one half of the images,
  score it on the other half (the ViT runs once per image);
- search: GridSearchCV over method x alpha/gamma (20 candidates), 2-fold, scored
  with sensitivity, specificity and balanced, refit on balanced, with the
  extractor's ``memory`` in a fresh folder and its in-process caches emptied
  first (so the search pays for loading the model and running the ViT once).

The search should cost at most 1.3x the baseline. Prints medians and the ratio.

python benchmarks/bench_grid_search.py [--n-images 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_arb import load_images, make_arb_pipeline
from sklearn_arb._extractor import _IMAGE_MAPS, _LOADED_MODELS
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


def pipeline(memory):
    checkpoint = WEIGHTS if WEIGHTS.exists() else None
    return make_arb_pipeline(
        n_bootstrap=1,
        extractor_params={"checkpoint_path": checkpoint, "random_state": 0},
        memory=memory,
    )


def time_baseline(X, y) -> float:
    train, test = next(KFold(2).split(X))
    start = time.perf_counter()
    pipe = pipeline(memory=None).fit(X[train])
    balanced_scorer(pipe, X[test], y[test])
    return time.perf_counter() - start


def time_search(X, y) -> tuple[float, GridSearchCV]:
    _LOADED_MODELS.clear()
    _IMAGE_MAPS.clear()
    with tempfile.TemporaryDirectory() as cache:
        pipe = pipeline(memory=cache)
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
    args = parser.parse_args()
    X, y = noisy_images(args.n_images)
    time_baseline(X, y)  # warm-up: torch initialisation, file caches
    baseline = [time_baseline(X, y) for _ in range(args.repeats)]
    searches = [time_search(X, y) for _ in range(args.repeats)]
    search_times = [seconds for seconds, _ in searches]
    search = searches[-1][1]
    n_candidates = len(search.cv_results_["params"])
    print(f"{args.n_images} images, {n_candidates} candidates, 2 folds, refit")
    print(f"baseline fit-and-score: median {np.median(baseline):.2f} s {baseline}")
    print(f"grid search (memory):   median {np.median(search_times):.2f} s")
    print(
        f"ratio search / baseline: {np.median(search_times) / np.median(baseline):.2f}"
        " (target <= 1.3)"
    )
    print(f"best: {search.best_params_}, balanced {search.best_score_:.3f}")


if __name__ == "__main__":
    main()

"""The evaluation study: ARB against the heuristic rules, on images with boxes.

For every map source, the extractor's ``[observed | bootstrap]`` maps of every
image; then each method's selection (ARB's p, lfdr and pi0 rules at the
regularizer's defaults, with the pooled null fitted on the images' own bootstrap
maps; DINO's ``CumulativeMass(0.6)``; Chefer et al.'s ``MeanThreshold``; and at
ARB p's mean size ``TopFraction`` and ``CumulativeMass``, plus a random
selection of ARB p's size in each image as the chance level); then the scores:

- localisation against the boxes' token masks: pointing game, relevance mass,
  rank accuracy, ROC-AUC and, for the selections, precision, recall, IoU and
  size, each beside its chance level (the box's share of the tokens);
- faithfulness: deletion and insertion curves of the raw map's order (MoRF) at
  ``fractions`` and, for each selection, comprehensiveness and sufficiency at
  its own size. Every rule here keeps an upper set of the raw scores (ARB's p
  and lfdr are monotone in the score, the heuristics keep the largest scores),
  so a selection of k tokens is the first k tokens of that order: its
  comprehensiveness and sufficiency are the deletion and insertion curves read
  at k, computed in the same forward batches as the curves (checked for every
  selection; one that is not an upper set would get NaN).

Stages, so that an interrupted run loses nothing: the maps are cached per image
by the extractor's ``memory`` (``<output>/.cache``); the selections need every
image (the pooled null, ARB's mean size) and cost no forward pass; the
perturbation results of each image and source are written, atomically, to
``<output>/faithfulness/<source>/<image>.npz`` as they are done, with a digest
of what they were computed from, and a rerun computes only those missing or
changed. The report (tables and figures) is :mod:`._study_report`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import xxhash
from sklearn.base import clone
from sklearn.utils import Bunch
from tqdm import tqdm

from .. import BootstrapAttentionRegularizer
from .._extractor import AttentionExtractor
from .._images import image_files, load_images
from .._layout import MapLayout, TokenMaps, with_layout
from .._runs import file_digest, write_atomic
from .._selection import cumulative_mass_mask, mean_threshold_mask, top_fraction_mask
from ..backbone import make_source
from ._calibration import noise_calibration
from ._classifier import ImageClassifier, as_classifier
from ._faithfulness import curve_auc, perturbation_curve, selection_faithfulness
from ._imputation import REMOVAL_REVISIONS
from ._localisation import (
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
    selection_scores,
)
from ._masks import (
    _file_key,
    boxes_of_files,
    boxes_to_token_masks,
    model_boxes_of_files,
    read_boxes,
)

__all__ = ["METHODS", "SOURCES", "EvaluationSettings", "compute_evaluation"]

# Method key -> label. "map" is the raw observed map (localisation only).
METHODS: dict[str, str] = {
    "arb_p": "ARB p <= 0.05",
    "arb_lfdr": "ARB lfdr <= 0.2",
    "arb_pi0": "ARB pi0",
    "cumulative_mass": "CumulativeMass 0.6",
    "mean_threshold": "MeanThreshold",
    "top_fraction": "TopFraction at ARB p's mean size",
    "cumulative_mass_matched": "CumulativeMass at ARB p's mean size",
    "random": "random, ARB p's size per image",
}
# The methods that need ARB p's selection (its mean size, or its size per image).
_NEED_ARB_P = ("top_fraction", "cumulative_mass_matched", "random")
SOURCES = ("attention", "rollout", "cdam")


@dataclass(frozen=True)
class EvaluationSettings:
    """What the study computes.

    Parameters
    ----------
    sources : tuple of str
        Map sources (the extractor's ``source``), each with its defaults.
    methods : tuple of str
        Keys of :data:`METHODS`; those that need ARB p's size bring ``arb_p``.
    mass : float
        The mass of ``cumulative_mass`` (DINO's 0.6).
    fractions : tuple of float
        The deletion and insertion curves' fractions of tokens; empty: no
        curves (comprehensiveness and sufficiency only).
    faithfulness : bool
        Compute the perturbation scores (the costly part: about
        ``2 * (len(fractions) + len(methods))`` forward passes per image and
        source).
    removal : {"road", "black", "blur"}
        How tokens are removed (see :func:`remove_tokens`).
    min_fraction : float
        A token is inside a box when at least this share of its pixels is.
    calibration : bool
        Run :func:`noise_calibration` for each source too.
    seed : int
        Seeds the bootstrap, ROAD's noise, the random selection and the
        intervals.
    target : {"predicted", "label"}
        The class the maps and the perturbation scores follow: the model's
        prediction on the intact image, or the image's label (the boxes'
        ``class_index``). Only CDAM's maps depend on it; with ``"label"``,
        CDAM's p-values are calibrated on noise, where the predicted class
        makes them liberal (see the user guide's evaluation page).
    faithfulness_every : int
        Perturbation scores for every n-th image only (in the order of the
        boxes' keys), to bound the cost; the others get NaN, left out of the
        means and tests.

    Examples
    --------
    >>> from sklearn_arb.evaluation import EvaluationSettings
    >>> settings = EvaluationSettings(methods=("top_fraction",), fractions=())
    >>> settings.methods  # TopFraction at ARB p's mean size needs ARB p
    ('arb_p', 'top_fraction')
    """

    sources: tuple[str, ...] = SOURCES
    methods: tuple[str, ...] = tuple(METHODS)
    mass: float = 0.6
    fractions: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 10))
    faithfulness: bool = True
    removal: str = "road"
    min_fraction: float = 0.5
    calibration: bool = True
    seed: int = 0
    target: str = "predicted"
    faithfulness_every: int = 1

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(
                f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}."
            )
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise ValueError(
                f"Unknown or no source(s) {bad or list(self.sources)}; choose from "
                f"{', '.join(SOURCES)}."
            )
        methods = list(self.methods)
        if any(m in _NEED_ARB_P for m in methods) and "arb_p" not in methods:
            methods.insert(0, "arb_p")
        object.__setattr__(self, "methods", tuple(m for m in METHODS if m in methods))
        fractions = tuple(float(f) for f in self.fractions)
        if fractions and (
            len(fractions) < 2
            or fractions[0] != 0.0
            or fractions[-1] != 1.0
            or np.any(np.diff(fractions) <= 0)
        ):
            raise ValueError(
                f"fractions must increase from 0 to 1 (or be empty); got "
                f"{self.fractions!r}."
            )
        object.__setattr__(self, "fractions", fractions)
        if self.target not in ("predicted", "label"):
            raise ValueError(
                f"target must be 'predicted' or 'label'; got {self.target!r}."
            )
        if int(self.faithfulness_every) < 1:
            raise ValueError(
                f"faithfulness_every must be >= 1; got {self.faithfulness_every}."
            )


def box_images(folder: Path, boxes: Bunch) -> list[tuple[Path, str]]:
    """The image files under ``folder`` that have boxes, with their boxes key,
    sorted by key."""
    rows_of = {file: [] for file in boxes.file}
    found = []
    for path in image_files(folder):
        key = _file_key(PurePath(path.relative_to(folder)).as_posix(), rows_of)
        if key is not None:
            found.append((path, key))
    if not found:
        raise ValueError(
            f"No image under {str(folder)!r} has a box in the boxes file (its "
            "'file' column names paths relative to the image folder, e.g. "
            f"{boxes.files[0]!r}); pass the folder the boxes were made for."
        )
    return sorted(found, key=lambda item: item[1])


def _source_extractor(
    extractor: AttentionExtractor,
    source: str,
    cache: Path,
    seed: int,
    labels: list[int] | None,
) -> AttentionExtractor:
    """The extractor for one source: the given one's model and bootstrap, the
    source's defaults, maps cached per image in ``cache``; a source that has a
    target follows ``labels`` (one class per image) when given."""
    uses_target = "target" in make_source(source).uses
    params = {
        "source": source,
        "head": "mean",
        "layer": -1,
        "discard_ratio": 0.0,
        "target": labels if labels is not None and uses_target else "predicted",
        "memory": str(cache),
        "random_state": seed,
        "verbose": 0,
    }
    return clone(extractor).set_params(**params).fit()


def _regularizer(source: str, method: str) -> BootstrapAttentionRegularizer:
    # Signed maps (CDAM) get z on the raw scores, as sklearn-arb regularize does.
    return BootstrapAttentionRegularizer(
        method=method, scale=make_source(source).z_scale
    )


def _matched_mass(observed: np.ndarray, mean_size: float) -> float:
    """The mass at which CumulativeMass's mean size is closest to ``mean_size``
    (the mean size grows with the mass: bisection)."""

    def size(mass: float) -> float:
        return cumulative_mass_mask(observed, mass).mean()

    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if size(middle) < mean_size:
            low = middle
        else:
            high = middle
    return low if abs(size(low) - mean_size) < abs(size(high) - mean_size) else high


def select(maps: Any, source: str, settings: EvaluationSettings) -> Bunch:
    """Each method's selection of the observed maps of one source.

    Parameters
    ----------
    maps : TokenMaps of shape (n_images, (1 + B) * n_tokens)
        The extractor's output for the images (the pooled null of ARB is
        fitted on their bootstrap maps).
    source : str
        The maps' source (CDAM's z is linear).
    settings : EvaluationSettings

    Returns
    -------
    selections : Bunch
        ``observed`` (n_images, n_tokens); ``masks``: method -> bool
        (n_images, n_tokens); ``parameters``: method -> its fitted parameter
        (the fraction or mass at ARB p's mean size).
    """
    observed = maps.layout.observed(np.asarray(maps))
    masks, parameters = {}, {}
    for method in settings.methods:
        if method.startswith("arb_"):
            rule = method.removeprefix("arb_")
            regularizer = _regularizer(source, rule).fit(maps)
            masks[method] = regularizer.compute_statistics(maps).keep_mask
        elif method == "cumulative_mass":
            masks[method] = cumulative_mass_mask(observed, settings.mass)
            parameters[method] = settings.mass
        elif method == "mean_threshold":
            masks[method] = mean_threshold_mask(observed)
    if "arb_p" in masks:
        arb_sizes = masks["arb_p"].sum(axis=1)
        mean_size = float(arb_sizes.mean()) / observed.shape[1]
        if "top_fraction" in settings.methods:
            fraction = max(mean_size, 0.5 / observed.shape[1])
            masks["top_fraction"] = top_fraction_mask(
                observed, fraction, random_state=settings.seed
            )
            parameters["top_fraction"] = fraction
        if "cumulative_mass_matched" in settings.methods:
            mass = _matched_mass(observed, mean_size)
            masks["cumulative_mass_matched"] = cumulative_mass_mask(observed, mass)
            parameters["cumulative_mass_matched"] = mass
        if "random" in settings.methods:
            rng = np.random.RandomState(settings.seed)
            keys = rng.random_sample(observed.shape)
            order = np.argsort(keys, axis=1)
            ranks = np.argsort(order, axis=1)
            masks["random"] = ranks < arb_sizes[:, None]
    return Bunch(
        observed=observed,
        masks={m: masks[m] for m in settings.methods},
        parameters=parameters,
    )


def is_upper_set(observed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image: every kept score exceeds every other score (so the selection
    is the first ``mask.sum()`` tokens of the raw map's order)."""
    kept_min = np.where(mask, observed, np.inf).min(axis=1)
    other_max = np.where(mask, -np.inf, observed).max(axis=1)
    return kept_min > other_max


def localisation_scores(
    observed: np.ndarray,
    masks: dict[str, np.ndarray],
    boxes: np.ndarray,
    random_state: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Per method (and ``"map"``, the raw map), per-image localisation scores.

    The selected map of a method is the observed map where it keeps tokens
    (the random selection: a random positive map on its tokens, so that its
    pointing game and mass are those of a blind guess, drawn from
    ``random_state``), 0 elsewhere; map scores read its positive part, the
    selection scores every kept token whatever its sign.
    """
    rng = np.random.RandomState(random_state)
    maps = {"map": observed}
    for method, mask in masks.items():
        values = observed if method != "random" else rng.random_sample(mask.shape)
        maps[method] = np.where(mask, np.maximum(values, 0.0), 0.0)
    scores = {}
    for method, selected in maps.items():
        scores[method] = {
            "pointing_game": pointing_game(selected, boxes),
            "relevance_mass": relevance_mass(selected, boxes),
            "rank_accuracy": relevance_rank_accuracy(selected, boxes),
            "auc": localisation_auc(selected, boxes),
        }
        if method != "map":
            scores[method].update(
                {
                    key: value
                    for key, value in selection_scores(
                        masks[method].astype(np.float64), boxes
                    ).items()
                    if key != "chance"
                }
            )
        scores[method]["chance"] = boxes.mean(axis=1)
    return scores


def _digest(*parts: Any) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(parts, default=str).encode())


def _image_seed(seed: int, key: str, source: str) -> int:
    return xxhash.xxh32_intdigest(f"{seed}|{source}|{key}".encode()) % (2**31 - 3)


def _faithfulness_file(output: Path, source: str, key: str) -> Path:
    return output / "faithfulness" / source / f"{key}.npz"


def image_faithfulness(
    classifier: ImageClassifier,
    pixels: np.ndarray,
    observed: np.ndarray,
    sizes: np.ndarray,
    random_mask: np.ndarray | None,
    settings: EvaluationSettings,
    seed: int,
    label: int | None = None,
) -> dict[str, np.ndarray]:
    """One image's perturbation results: the deletion and insertion curves of
    its raw map's order at the settings' fractions and at each size in
    ``sizes`` (tokens), and the random selection's scores; the probability
    followed is ``label``'s, or the prediction's on the intact image.

    Returns
    -------
    results : dict of arrays
        ``counts`` (the tokens removed, resp. restored, at each step),
        ``deletion``, ``insertion`` (the target's probability there),
        ``intact``, ``target``, and ``random_removed``, ``random_kept`` (NaN
        without a random selection).
    """
    n_tokens = observed.shape[0]
    counts = sorted(
        {int(np.floor(f * n_tokens + 0.5)) for f in settings.fractions}
        | {int(k) for k in sizes}
        | {0, n_tokens}
    )
    fractions = np.array(counts) / n_tokens
    curves = {
        kind: perturbation_curve(
            classifier,
            pixels[None],
            observed[None],
            kind=kind,
            fractions=fractions,
            removal=settings.removal,
            target="predicted" if label is None else [label],
            random_state=seed + index,
        )
        for index, kind in enumerate(("deletion", "insertion"))
    }
    deletion = curves["deletion"]
    results = {
        "counts": deletion.n_tokens,
        "deletion": deletion.probabilities[0],
        "insertion": curves["insertion"].probabilities[0],
        "target": deletion.targets,
        "intact": deletion.probabilities[0, :1],
        "random_removed": np.array([np.nan]),
        "random_kept": np.array([np.nan]),
    }
    if random_mask is not None:
        chance = selection_faithfulness(
            classifier,
            pixels[None],
            random_mask[None].astype(float),
            removal=settings.removal,
            target=deletion.targets,
            random_state=seed + 2,
        )
        results["random_removed"] = chance.removed_probability
        results["random_kept"] = chance.kept_probability
    return results


def compute_evaluation(
    folder: Path,
    boxes_path: Path,
    output: Path,
    *,
    extractor: AttentionExtractor,
    settings: EvaluationSettings | None = None,
    progress: bool = False,
) -> Bunch:
    """Compute the study's per-image numbers (resumable; see the module).

    Parameters
    ----------
    folder : Path
        Image folder; the images with boxes in ``boxes_path`` are used.
    boxes_path : Path
        The boxes CSV (see :func:`read_boxes`).
    output : Path
        Results folder (created); holds the cache and the per-image results.
    extractor : AttentionExtractor
        Its model, weights, image size, device and bootstrap are used (fitted
        or not); each source gets its own clone.
    settings : EvaluationSettings, default=None
    progress : bool, default=False
        Progress bars on stderr.

    Returns
    -------
    results : Bunch
        ``images`` (the images' boxes keys), ``paths``, ``token_masks``
        (n_images, n_tokens), and per source: ``selections`` (from
        :func:`select`), ``localisation`` (method -> metric -> per image),
        ``faithfulness`` (method -> ``comprehensiveness``/``sufficiency``
        per image, and ``curves``: ``deletion``/``insertion`` (n_images,
        n_steps) at ``fractions``), ``calibration`` (a
        :func:`noise_calibration` result, or None).
    """
    settings = EvaluationSettings() if settings is None else settings
    folder, output = Path(folder), Path(output)
    boxes = read_boxes(boxes_path)
    found = box_images(folder, boxes)
    paths = [path for path, _ in found]
    keys = [key for _, key in found]
    if settings.calibration and len(paths) < 2:
        # Checked before any map is computed: the pooled null of the calibration
        # is fitted on the other images' noise, so it needs two.
        raise ValueError(
            f"The calibration needs at least 2 images; {folder} has {len(paths)} "
            "with boxes. Pass more images, or calibration=False (--no-calibration)."
        )
    output.mkdir(parents=True, exist_ok=True)
    results = Bunch(images=keys, paths=paths, settings=settings, sources={})
    labels = None
    if settings.target == "label":
        labels = boxes_of_files(paths, boxes).class_index.tolist()
    classifier = None
    for source in settings.sources:
        source_extractor = _source_extractor(
            extractor, source, output / ".cache", settings.seed, labels
        )
        if progress:
            source_extractor.set_params(verbose=1)
        maps = _stored_maps(source_extractor, source, paths, output)
        if "token_masks" not in results:  # every source has the model's geometry
            results.image_size = source_extractor.image_size_
            results.grid_shape = source_extractor.grid_shape_
            results.boxes = model_boxes_of_files(paths, boxes, results.image_size)
            results.token_masks = boxes_to_token_masks(
                results.boxes,
                results.image_size,
                source_extractor.patch_size_,
                settings.min_fraction,
            )
        token_masks = results.token_masks
        selections = select(maps, source, settings)
        per_source = Bunch(
            selections=selections,
            localisation=localisation_scores(
                selections.observed, selections.masks, token_masks, settings.seed
            ),
            faithfulness=None,
            calibration=None,
        )
        if settings.faithfulness:
            if classifier is None:
                classifier = as_classifier(source_extractor)
            per_source.faithfulness = _source_faithfulness(
                classifier,
                source_extractor,
                source,
                selections,
                paths,
                keys,
                labels,
                output,
                settings,
                progress,
            )
        if settings.calibration:
            per_source.calibration = _calibration(
                source_extractor, source, paths, output, settings
            )
        results.sources[source] = per_source
    return results


def _stored_maps(
    extractor: AttentionExtractor, source: str, paths: list[Path], output: Path
) -> TokenMaps:
    """The extractor's maps of ``paths``, read from ``<output>/maps_<source>.npz``
    when it was written for these files, weights and settings, else computed
    (per image resumable through the extractor's ``memory``) and written."""
    file = output / f"maps_{source}.npz"
    request = _digest(extractor.maps_id_, [file_digest(path) for path in paths])
    layout = MapLayout(extractor.n_tokens_, extractor.n_bootstrap)
    try:
        with np.load(file) as stored:
            if str(stored["request"]) == request:
                return with_layout(stored["maps"], layout)
    except (OSError, KeyError, ValueError, EOFError):
        pass
    maps = np.asarray(extractor.transform(paths))
    write_atomic(
        file, lambda handle: np.savez(handle, request=np.asarray(request), maps=maps)
    )
    return with_layout(maps, layout)


def _source_faithfulness(
    classifier: ImageClassifier,
    extractor: AttentionExtractor,
    source: str,
    selections: Bunch,
    paths: list[Path],
    keys: list[str],
    labels: list[int] | None,
    output: Path,
    settings: EvaluationSettings,
    progress: bool,
) -> Bunch:
    """Per image, the perturbation results (stored, or computed and stored),
    read into comprehensiveness and sufficiency per method and the curves;
    the probability followed is the image's label's when ``labels`` is given."""
    observed = selections.observed
    n_images, n_tokens = observed.shape
    methods = [m for m in settings.methods if m != "random"]
    sizes = np.stack([selections.masks[m].sum(axis=1) for m in methods], axis=1)
    upper = np.stack(
        [is_upper_set(observed, selections.masks[m]) for m in methods], axis=1
    )
    random_masks = selections.masks.get("random")
    # The classifier runs the extractor's weights (its checkpoint, head included).
    model_digest = _digest(
        extractor.weights_id_,
        classifier.image_size,
        classifier.mean,
        classifier.std,
        settings.removal,
        REMOVAL_REVISIONS[settings.removal],
        settings.fractions,
        settings.seed,
    )
    stored = []
    with tqdm(
        total=n_images,
        desc=f"faithfulness, {source}",
        unit="image",
        disable=not progress,
    ) as bar:
        for index, (path, key) in enumerate(zip(paths, keys, strict=True)):
            if index % settings.faithfulness_every:
                stored.append(_not_measured(n_tokens))
                bar.update()
                continue
            file = _faithfulness_file(output, source, key)
            request = _digest(
                model_digest,
                # The order of the raw map, not its values: last-bit changes of
                # the maps (another thread count, library version) keep it.
                np.argsort(-observed[index], kind="stable").tolist(),
                sorted(set(sizes[index].tolist())),
                None
                if random_masks is None
                else np.flatnonzero(random_masks[index]).tolist(),
                # Results stored before targets could be labels stay valid.
                *([] if labels is None else [labels[index]]),
            )
            record = _read_record(file, request)
            if record is None:
                pixels = load_images([path], image_size=classifier.image_size)[0]
                record = image_faithfulness(
                    classifier,
                    pixels,
                    observed[index],
                    sizes[index],
                    None if random_masks is None else random_masks[index],
                    settings,
                    _image_seed(settings.seed, key, source),
                    None if labels is None else labels[index],
                )
                file.parent.mkdir(parents=True, exist_ok=True)
                arrays = {"request": np.asarray(request), **record}
                write_atomic(file, lambda handle, a=arrays: np.savez(handle, **a))
            stored.append(record)
            bar.update()
    return _read_faithfulness(stored, methods, sizes, upper, settings, n_tokens)


def _not_measured(n_tokens: int) -> dict[str, np.ndarray]:
    """The record of an image left out of the perturbation scores: NaN."""
    missing = np.full(n_tokens + 1, np.nan)
    return {
        "counts": np.arange(n_tokens + 1),
        "deletion": missing,
        "insertion": missing,
        "target": np.array([-1]),
        "intact": np.array([np.nan]),
        "random_removed": np.array([np.nan]),
        "random_kept": np.array([np.nan]),
    }


def _read_record(file: Path, request: str) -> dict | None:
    try:
        with np.load(file) as stored:
            if str(stored["request"]) != request:
                return None
            return {name: stored[name] for name in stored.files if name != "request"}
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _read_faithfulness(
    stored: list[dict],
    methods: list[str],
    sizes: np.ndarray,
    upper: np.ndarray,
    settings: EvaluationSettings,
    n_tokens: int,
) -> Bunch:
    """Comprehensiveness and sufficiency per method, read off each image's
    curves at the method's size; the curves at the settings' fractions."""
    n_images = len(stored)
    intact = np.array([record["intact"][0] for record in stored])
    scores = {}
    for column, method in enumerate(methods):
        removed = np.full(n_images, np.nan)
        kept = np.full(n_images, np.nan)
        for index, record in enumerate(stored):
            if not upper[index, column] and sizes[index, column] > 0:
                continue  # not the first k tokens of the order: not read here
            step = int(np.searchsorted(record["counts"], sizes[index, column]))
            removed[index] = record["deletion"][step]
            kept[index] = record["insertion"][step]
        scores[method] = Bunch(
            comprehensiveness=intact - removed, sufficiency=intact - kept
        )
    if "random" in settings.methods:
        removed = np.array([record["random_removed"][0] for record in stored])
        kept = np.array([record["random_kept"][0] for record in stored])
        scores["random"] = Bunch(
            comprehensiveness=intact - removed, sufficiency=intact - kept
        )
    steps = np.floor(np.array(settings.fractions) * n_tokens + 0.5).astype(int)
    curves = {}
    for kind in ("deletion", "insertion"):
        curves[kind] = np.array(
            [
                record[kind][np.searchsorted(record["counts"], steps)]
                for record in stored
            ]
        )
    fractions = np.array(settings.fractions)
    return Bunch(
        scores=scores,
        curves=curves,
        auc={
            kind: curve_auc(fractions, values) if len(fractions) > 1 else None
            for kind, values in curves.items()
        },
        intact=intact,
        targets=np.array([int(record["target"][0]) for record in stored]),
        fractions=fractions,
    )


def _calibration(
    extractor: AttentionExtractor,
    source: str,
    paths: list[Path],
    output: Path,
    settings: EvaluationSettings,
) -> Bunch:
    """:func:`noise_calibration` of one source, stored in the output folder."""
    file = output / f".calibration_{source}.json"
    # The noise images are drawn from the files' pixels: key on their content.
    request = _digest(
        extractor.maps_id_, [file_digest(path) for path in paths], settings.seed
    )
    try:
        stored = json.loads(file.read_text())
        if stored["request"] == request:
            return Bunch(rows=stored["rows"], n_null=stored["n_null"])
    except (OSError, KeyError, ValueError):
        pass
    calibration = noise_calibration(
        extractor,
        paths,
        regularizer=_regularizer(source, "p"),
        random_state=settings.seed,
    )
    text = json.dumps(
        {"request": request, "rows": calibration.rows, "n_null": calibration.n_null}
    )
    write_atomic(file, lambda handle: handle.write(text), mode="w")
    return Bunch(rows=calibration.rows, n_null=calibration.n_null)

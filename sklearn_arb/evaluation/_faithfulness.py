"""Faithfulness by perturbation: do the tokens a map ranks first move the model?

Tokens are removed (deletion) or restored into an image whose tokens are all
removed (insertion) in the map's order, and the classifier's softmax
probability of the target class is read at each step. Removal is by
:func:`~sklearn_arb.evaluation.remove_tokens` (ROAD's noisy linear imputation by
default), on pixel values before the model's normalisation.

Ties: tokens with equal scores (the zeros of a regularized or thresholded map)
are taken in a uniformly random order, drawn from ``random_state`` for each
image, never in raster order (which would remove the image top rows first and
make the curve a property of the image's layout).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state

from .._selection import order_with_random_ties
from ._classifier import ImageClassifier, as_classifier
from ._imputation import (
    REMOVALS,
    blurred,
    fill_from_blurred,
    remove_tokens,
    token_pixel_mask,
    working_dtype,
)

__all__ = [
    "PerturbationCurves",
    "SelectionFaithfulness",
    "curve_auc",
    "deletion_curve",
    "insertion_curve",
    "perturbation_curve",
    "selection_faithfulness",
    "token_order",
]

DEFAULT_FRACTIONS = np.linspace(0.0, 1.0, 11)
_KINDS = ("deletion", "insertion")
_ORDERS = ("morf", "lerf")


def token_order(
    maps: ArrayLike, *, order: str = "morf", random_state: Any = None
) -> np.ndarray:
    """Each image's tokens from the most relevant (MoRF) or the least (LeRF).

    Tokens with equal scores are taken in a uniformly random order (a seeded
    random key per token breaks the ties), never in raster order.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens)
        Scores; higher is more relevant (a signed map's negative scores are
        the least relevant).
    order : {"morf", "lerf"}, default="morf"
        Most relevant first (decreasing scores) or least relevant first.
    random_state : int, RandomState instance or None, default=None
        Seeds the tie-breaking keys.

    Returns
    -------
    order : ndarray of int, shape (n_images, n_tokens)
        Token indices, first to last.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import token_order
    >>> maps = np.array([[0.0, 0.5, 0.0, 0.0, 0.9, 0.0]])
    >>> first = token_order(maps, random_state=0)[0]
    >>> first[:2].tolist(), sorted(first[2:].tolist())
    ([4, 1], [0, 2, 3, 5])
    """
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {_ORDERS}; got {order!r}.")
    maps = _check_maps(maps)
    return order_with_random_ties(-maps if order == "morf" else maps, random_state)


def curve_auc(fractions: ArrayLike, curves: ArrayLike) -> np.ndarray:
    """Area under curves by the trapezoid rule over the fractions.

    The integral of the curve over its fractions, not divided by their span:
    over fractions from 0 to 1 (the default steps) it is the curve's mean
    height, in probability units.

    Parameters
    ----------
    fractions : array-like of shape (n_steps,)
        Increasing.
    curves : array-like of shape (n_images, n_steps) or (n_steps,)

    Returns
    -------
    auc : ndarray of shape (n_images,) or float

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import curve_auc
    >>> fractions = np.linspace(0, 1, 11)
    >>> round(float(curve_auc(fractions, 1 - fractions)), 12)  # a straight fall
    0.5
    """
    fractions = np.asarray(fractions, dtype=float)
    curves = np.asarray(curves, dtype=float)
    if fractions.ndim != 1 or curves.shape[-1] != len(fractions):
        raise ValueError(
            f"curves must have one value per fraction in their last axis; got "
            f"{len(fractions)} fractions and curves of shape {curves.shape}."
        )
    heights = (curves[..., 1:] + curves[..., :-1]) / 2
    return (heights * np.diff(fractions)).sum(axis=-1)


@dataclass(frozen=True)
class PerturbationCurves:
    """Per-image deletion or insertion curves (see :func:`perturbation_curve`).

    Attributes
    ----------
    fractions : ndarray of shape (n_steps,)
        Fractions of the tokens removed (deletion) or restored (insertion).
    n_tokens : ndarray of int, shape (n_steps,)
        The tokens removed or restored at each step:
        ``floor(fraction * n_tokens + 0.5)``.
    probabilities : ndarray of shape (n_images, n_steps)
        The target's softmax probability at each step.
    auc : ndarray of shape (n_images,)
        :func:`curve_auc` of each curve.
    targets : ndarray of int, shape (n_images,)
        The class followed in each image.
    kind, order, removal : str
        How the curves were made.
    """

    fractions: np.ndarray
    n_tokens: np.ndarray
    probabilities: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    kind: str
    order: str
    removal: str


@dataclass(frozen=True)
class SelectionFaithfulness:
    """Comprehensiveness and sufficiency of selections (see
    :func:`selection_faithfulness`).

    Attributes
    ----------
    probability : ndarray of shape (n_images,)
        The target's probability on the intact image.
    removed_probability : ndarray of shape (n_images,)
        With the selected tokens removed.
    kept_probability : ndarray of shape (n_images,)
        With every other token removed (only the selection kept).
    comprehensiveness : ndarray of shape (n_images,)
        ``probability - removed_probability``: higher means the selection holds
        what the model needs.
    sufficiency : ndarray of shape (n_images,)
        ``probability - kept_probability``: lower means the selection alone
        suffices.
    size : ndarray of int, shape (n_images,)
        Selected tokens per image.
    targets : ndarray of int, shape (n_images,)
        The class followed in each image.
    """

    probability: np.ndarray
    removed_probability: np.ndarray
    kept_probability: np.ndarray
    comprehensiveness: np.ndarray
    sufficiency: np.ndarray
    size: np.ndarray
    targets: np.ndarray


def _check_maps(maps: ArrayLike, n_images: int | None = None, n_tokens=None):
    maps = np.asarray(maps, dtype=float)
    if maps.ndim != 2:
        raise ValueError(
            f"maps must have shape (n_images, n_tokens); got shape {maps.shape}."
        )
    if n_images is not None and maps.shape != (n_images, n_tokens):
        raise ValueError(
            f"maps must have shape (n_images, n_tokens) = ({n_images}, {n_tokens}) "
            f"for these images and the model's token grid; got shape {maps.shape}. "
            f"For the extractor's [observed | bootstrap] output pass its observed "
            f"block (maps.layout.observed(maps))."
        )
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite scores; pass finite maps.")
    return maps


def _check_fractions(fractions: ArrayLike | None) -> np.ndarray:
    if fractions is None:
        return DEFAULT_FRACTIONS.copy()
    fractions = np.asarray(fractions, dtype=float)
    if (
        fractions.ndim != 1
        or len(fractions) < 2
        or not np.all(np.diff(fractions) > 0)
        or fractions[0] < 0
        or fractions[-1] > 1
    ):
        raise ValueError(
            f"fractions must be at least 2 increasing values in [0, 1]; got "
            f"{fractions!r}."
        )
    return fractions


def _check_target(target: Any, n_images: int, n_classes: int | None = None):
    """``target`` as ``"predicted"`` or ``(n_images,)`` classes, checked against
    the model's ``n_classes`` once known."""
    if isinstance(target, str) and target == "predicted":
        return target
    if isinstance(target, Integral):
        targets = np.full(n_images, int(target))
    else:
        targets = np.asarray(target)
        if targets.shape != (n_images,) or targets.dtype.kind not in "iu":
            raise ValueError(
                f"target must be 'predicted', a class index or {n_images} class "
                f"indices (one per image); got {target!r}."
            )
    if targets.min() < 0 or (n_classes is not None and targets.max() >= n_classes):
        raise ValueError(
            f"target classes must lie in [0, {n_classes}) for this model; got "
            f"classes from {targets.min()} to {targets.max()}."
        )
    return targets


@dataclass(frozen=True)
class _Removal:
    """How tokens are removed, and the model that reads the result."""

    classifier: ImageClassifier
    method: str
    noise: float
    blur_sigma: float

    def target_probabilities(
        self,
        pixels: np.ndarray,
        removed: np.ndarray,
        target: Any,
        rng: np.random.RandomState,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The targets ``(n_images,)``, their probability on the intact images
        ``(n_images,)`` and with each image's ``removed[i, s]`` tokens removed
        ``(n_images, n_settings)`` (``removed``: bool ``(n_images, n_settings,
        P)``). Each intact image and its perturbed images go to the model in
        turn, a batch at a time; a setting with nothing removed is the intact
        image (one forward pass per image)."""
        n_images, n_settings, n_tokens = removed.shape
        # Setting 0 is the intact image.
        settings = np.concatenate(
            [np.zeros((n_images, 1, n_tokens), dtype=bool), removed], axis=1
        )
        todo = np.argwhere(settings.any(axis=2) | (np.arange(n_settings + 1) == 0))
        probabilities = None
        batch_size = self.classifier.batch_size
        # Every setting of an image blurs the same image: blur it once.
        blurred_images: dict[int, np.ndarray] = {}

        def blurred_of(index: int) -> np.ndarray:
            if index not in blurred_images:
                image = pixels[index].astype(working_dtype(pixels), copy=False)
                blurred_images[index] = blurred(image, self.blur_sigma)
            return blurred_images[index]

        for start in range(0, len(todo), batch_size):
            image, setting = todo[start : start + batch_size].T
            if self.method == "blur":
                perturbed = pixels[image].astype(working_dtype(pixels), copy=True)
                fill_from_blurred(
                    perturbed,
                    token_pixel_mask(
                        settings[image, setting],
                        self.classifier.grid_shape,
                        self.classifier.patch_size,
                    ),
                    lambda row, image=image: blurred_of(int(image[row])),
                )
            else:
                perturbed = remove_tokens(
                    pixels[image],
                    settings[image, setting],
                    self.classifier.patch_size,
                    method=self.method,
                    noise=self.noise,
                    background=self.classifier.mean,
                    blur_sigma=self.blur_sigma,
                    random_state=rng,
                )
            batch = self.classifier.batch_probabilities(perturbed)
            if probabilities is None:  # the number of classes is known now
                target = _check_target(target, n_images, batch.shape[1])
                shape = (n_images, n_settings + 1, batch.shape[1])
                probabilities = np.full(shape, np.nan)
            probabilities[image, setting] = batch
        intact = probabilities[:, 0]
        nothing_removed = ~settings.any(axis=2)
        probabilities[nothing_removed] = np.repeat(
            intact, nothing_removed.sum(axis=1), axis=0
        )
        targets = intact.argmax(axis=1) if isinstance(target, str) else target
        at_target = probabilities[np.arange(n_images), :, targets]
        return targets, at_target[:, 0], at_target[:, 1:]


def _setup(model, images, maps, removal, target, batch_size, noise, blur_sigma):
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}; got {removal!r}.")
    classifier = as_classifier(model)
    if batch_size is not None:
        classifier = replace(classifier, batch_size=int(batch_size))
    pixels = classifier.load(images)
    maps = _check_maps(maps, len(pixels), classifier.n_tokens)
    _check_target(target, len(pixels))
    return _Removal(classifier, removal, noise, blur_sigma), pixels, maps


def perturbation_curve(
    model: Any,
    images: Any,
    maps: ArrayLike,
    *,
    kind: str = "deletion",
    order: str = "morf",
    fractions: ArrayLike | None = None,
    removal: str = "road",
    target: Any = "predicted",
    noise: float = 0.01,
    blur_sigma: float = 5.0,
    batch_size: int | None = None,
    random_state: Any = None,
) -> PerturbationCurves:
    """Deletion or insertion curves of token maps: the target's probability as
    tokens are removed or restored in the maps' order.

    Deletion removes the first ``floor(f * P + 0.5)`` tokens of the order from
    the intact image, for each fraction ``f``; insertion starts from the image
    with every token removed and restores them in that order. With MoRF order
    (most relevant first) a faithful map makes the deletion curve fall fast
    (low AUC) and the insertion curve rise fast (high AUC); LeRF order the
    reverse.

    Parameters
    ----------
    model : AttentionExtractor, Pipeline, torch.nn.Module or ImageClassifier
        The classifier and its preprocessing (see :func:`as_classifier`).
    images : images
        Anything :func:`~sklearn_arb.load_images` reads; resized to the model's
        size. Never modified.
    maps : array-like of shape (n_images, n_tokens)
        One token map per image, row-major over the model's token grid (the
        observed maps, or a regularized or thresholded map).
    kind : {"deletion", "insertion"}, default="deletion"
    order : {"morf", "lerf"}, default="morf"
        Most or least relevant tokens first; ties in a random order (see
        :func:`token_order`).
    fractions : array-like, default=None
        Increasing fractions of the tokens in [0, 1]; None:
        0, 0.1, ..., 1 (11 steps).
    removal : {"road", "black", "blur"}, default="road"
        See :func:`remove_tokens`; ROAD's value where every token is removed is
        the model's normalisation mean (0 after normalisation).
    target : "predicted", int or array-like of int, default="predicted"
        The class whose probability is followed: the model's prediction on the
        intact image, one class, or one class per image (e.g. the labels).
    noise : float, default=0.01
        ROAD's noise std in pixel values.
    blur_sigma : float, default=5.0
        The blur's std in pixels.
    batch_size : int, default=None
        Perturbed images per forward pass (None: the classifier's, 32).
    random_state : int, RandomState instance or None, default=None
        Seeds the tie-breaking order and ROAD's noise.

    Returns
    -------
    curves : PerturbationCurves
        ``probabilities`` (n_images, n_steps) and their ``auc``.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import perturbation_curve
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> maps = np.random.default_rng(1).random((2, 16))
    >>> curves = perturbation_curve(vit, images, maps, random_state=0)
    >>> curves.probabilities.shape, curves.n_tokens.tolist()
    ((2, 11), [0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16])
    >>> bool(np.allclose(curves.auc, curves.probabilities[:, 1:-1].mean(1) * 0.9
    ...      + curves.probabilities[:, [0, -1]].mean(1) * 0.1))
    True
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}.")
    fractions = _check_fractions(fractions)
    removal_, pixels, maps = _setup(
        model, images, maps, removal, target, batch_size, noise, blur_sigma
    )
    rng = check_random_state(random_state)
    ranked = token_order(maps, order=order, random_state=rng)
    n_tokens = maps.shape[1]
    counts = np.floor(fractions * n_tokens + 0.5).astype(int)
    # rank[i, t]: the position of token t in image i's order.
    rank = np.empty_like(ranked)
    np.put_along_axis(rank, ranked, np.arange(n_tokens)[None], axis=1)
    first = rank[:, None, :] < counts[None, :, None]  # (n_images, n_steps, P)
    removed = first if kind == "deletion" else ~first
    targets, _, probabilities = removal_.target_probabilities(
        pixels, removed, target, rng
    )
    return PerturbationCurves(
        fractions=fractions,
        n_tokens=counts,
        probabilities=probabilities,
        auc=curve_auc(fractions, probabilities),
        targets=targets,
        kind=kind,
        order=order,
        removal=removal,
    )


def deletion_curve(
    model: Any, images: Any, maps: ArrayLike, *, order: str = "morf", **kwargs: Any
) -> PerturbationCurves:
    """Deletion curves: :func:`perturbation_curve` with ``kind="deletion"``.

    Parameters
    ----------
    model, images, maps
        As in :func:`perturbation_curve`.
    order : {"morf", "lerf"}, default="morf"
        Most or least relevant tokens removed first.
    **kwargs
        The other keywords of :func:`perturbation_curve`.

    Returns
    -------
    curves : PerturbationCurves

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import deletion_curve
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> maps = np.random.default_rng(1).random((2, 16))
    >>> curves = deletion_curve(vit, images, maps, removal="black", random_state=0)
    >>> curves.kind, curves.probabilities.shape, curves.fractions[:3].tolist()
    ('deletion', (2, 11), [0.0, 0.1, 0.2])
    """
    return perturbation_curve(
        model, images, maps, kind="deletion", order=order, **kwargs
    )


def insertion_curve(
    model: Any, images: Any, maps: ArrayLike, *, order: str = "morf", **kwargs: Any
) -> PerturbationCurves:
    """Insertion curves: :func:`perturbation_curve` with ``kind="insertion"``.

    Parameters
    ----------
    model, images, maps
        As in :func:`perturbation_curve`.
    order : {"morf", "lerf"}, default="morf"
        Most or least relevant tokens restored first.
    **kwargs
        The other keywords of :func:`perturbation_curve`.

    Returns
    -------
    curves : PerturbationCurves

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import deletion_curve, insertion_curve
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> maps = np.random.default_rng(1).random((2, 16))
    >>> inserted = insertion_curve(vit, images, maps, removal="black")
    >>> deleted = deletion_curve(vit, images, maps, removal="black")
    >>> # all restored = nothing removed: the intact image at both ends
    >>> bool(np.allclose(inserted.probabilities[:, -1], deleted.probabilities[:, 0]))
    True
    """
    return perturbation_curve(
        model, images, maps, kind="insertion", order=order, **kwargs
    )


def selection_faithfulness(
    model: Any,
    images: Any,
    maps: ArrayLike,
    *,
    removal: str = "road",
    target: Any = "predicted",
    noise: float = 0.01,
    blur_sigma: float = 5.0,
    batch_size: int | None = None,
    random_state: Any = None,
) -> SelectionFaithfulness:
    """Comprehensiveness and sufficiency of each map's selection at its own size.

    The selection is the map's nonzero tokens (what a regularizer or a
    selection rule keeps). Comprehensiveness is the drop of the target's
    probability when the selected tokens are removed; sufficiency the drop
    when only they are kept (every other token removed). An empty selection
    has comprehensiveness 0 (nothing is removed).

    Parameters
    ----------
    model, images, maps
        As in :func:`perturbation_curve`; only where ``maps`` is nonzero matters.
    removal, target, noise, blur_sigma, batch_size, random_state
        As in :func:`perturbation_curve`.

    Returns
    -------
    scores : SelectionFaithfulness

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import selection_faithfulness
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> selected = np.zeros((2, 16))
    >>> selected[0, :4] = 1.0  # image 1 selects nothing
    >>> scores = selection_faithfulness(vit, images, selected, random_state=0)
    >>> scores.size.tolist(), float(scores.comprehensiveness[1])
    ([4, 0], 0.0)
    """
    removal_, pixels, maps = _setup(
        model, images, maps, removal, target, batch_size, noise, blur_sigma
    )
    rng = check_random_state(random_state)
    selected = maps != 0
    removed = np.stack([selected, ~selected], axis=1)
    targets, intact, perturbed = removal_.target_probabilities(
        pixels, removed, target, rng
    )
    without, only = perturbed.T
    return SelectionFaithfulness(
        probability=intact,
        removed_probability=without,
        kept_probability=only,
        comprehensiveness=intact - without,
        sufficiency=intact - only,
        size=selected.sum(axis=1),
        targets=targets,
    )

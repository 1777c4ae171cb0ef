"""Localisation: where a map puts its evidence, against ground-truth masks.

Every function takes maps with one row per image, token maps (n_images, n_tokens)
or pixel maps (n_images, height, width), and boolean masks of the same shape
(True on the object, e.g. :func:`token_masks_for_files`), and returns one value
per image. A map enters by its positive part, as in :mod:`sklearn_arb.metrics`:
a signed map's negative scores (evidence against the target) count as 0. A value
that is undefined for an image (no positive score for the pointing game, an
empty mask for recall, ...) is NaN, an abstention: count them with
:func:`summarize_scores`, which averages over the other images.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata
from sklearn.utils import Bunch

from ..metrics._validation import check_evidence, check_maps, check_roi_masks

__all__ = [
    "localisation_auc",
    "pointing_game",
    "relevance_mass",
    "relevance_rank_accuracy",
    "selection_scores",
    "summarize_scores",
]


def _evidence_and_masks(maps: ArrayLike, masks: ArrayLike):
    evidence = check_evidence(maps)
    return evidence, check_roi_masks(masks, evidence.shape, "masks")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(
        numerator,
        denominator,
        out=np.full(numerator.shape, np.nan),
        where=np.asarray(denominator) != 0,
    )


def pointing_game(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Whether each map's maximum lies inside the mask (Zhang et al. 2018).

    1 when every token at the map's maximum is inside (tied maxima hit only if
    all of them lie inside), 0 otherwise. A map with no positive score (all zero,
    or a signed map with nothing for the target) points nowhere: it abstains
    (NaN), never a hit.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
    masks : array-like of bool, same shape as ``maps``

    Returns
    -------
    hits : ndarray of shape (n_images,)
        1.0, 0.0 or NaN (abstention).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import pointing_game
    >>> masks = np.array([[True, True, False, False]] * 4)
    >>> maps = np.array([[0.1, 0.9, 0.3, 0.2],   # maximum inside
    ...                  [0.9, 0.1, 0.9, 0.0],   # tied maxima, one outside
    ...                  [0.0, 0.0, 0.0, 0.0],   # no evidence: abstains
    ...                  [-1., -2., 0.0, -1.]])  # none for the target: abstains
    >>> pointing_game(maps, masks)
    array([ 1.,  0., nan, nan])
    """
    evidence, masks = _evidence_and_masks(maps, masks)
    top = evidence.max(axis=1, keepdims=True)
    hit = ~((evidence == top) & ~masks).any(axis=1)
    return np.where(top[:, 0] > 0, hit.astype(np.float64), np.nan)


def relevance_mass(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Share of each map's positive mass inside the mask (Arras et al. 2022).

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
    masks : array-like of bool, same shape as ``maps``

    Returns
    -------
    mass : ndarray of shape (n_images,)
        In [0, 1]; NaN for a map with no positive score. The chance level, a map
        spread evenly, is the mask's share of tokens.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import relevance_mass
    >>> masks = np.array([[True, True, False, False]])
    >>> relevance_mass(np.array([[0.5, 0.25, 0.25, -1.0]]), masks)
    array([0.75])
    """
    evidence, masks = _evidence_and_masks(maps, masks)
    return _ratio((evidence * masks).sum(axis=1), evidence.sum(axis=1))


def relevance_rank_accuracy(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """Share of each map's K highest tokens inside the mask, K the mask's size.

    Arras et al. (2022). Ties at the K-th score are averaged: the tokens tied
    there share the remaining places equally, which is the expected value when
    ties are broken at random (never by token position). So a map with no
    positive score (all tied at 0) scores the chance level, the mask's share of
    tokens.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
    masks : array-like of bool, same shape as ``maps``

    Returns
    -------
    accuracy : ndarray of shape (n_images,)
        In [0, 1]; NaN for an empty mask.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import relevance_rank_accuracy
    >>> masks = np.array([[True, True, False, False]] * 2)
    >>> maps = np.array([[0.9, 0.2, 0.5, 0.1],   # top 2: tokens 0 and 2
    ...                  [0.9, 0.4, 0.4, 0.4]])  # token 0, then 1 of 3 tied
    >>> relevance_rank_accuracy(maps, masks)
    array([0.5       , 0.66666667])
    """
    evidence, masks = _evidence_and_masks(maps, masks)
    mask_size = masks.sum(axis=1)
    descending = -np.sort(-evidence, axis=1)
    kth = np.take_along_axis(
        descending, np.maximum(mask_size - 1, 0)[:, np.newaxis], axis=1
    )
    above, tied = evidence > kth, evidence == kth
    places_left = mask_size - above.sum(axis=1)
    inside = (above & masks).sum(axis=1) + places_left * _ratio(
        (tied & masks).sum(axis=1), tied.sum(axis=1)
    )
    return _ratio(inside, mask_size)


def localisation_auc(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """ROC-AUC of each map's scores as a classifier of the mask's tokens.

    The probability that a token inside scores above a token outside, ties
    counted one half (the Mann-Whitney statistic, equal to
    ``sklearn.metrics.roc_auc_score(mask, map)``). 0.5 is chance; a map with no
    positive score scores 0.5.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
    masks : array-like of bool, same shape as ``maps``

    Returns
    -------
    auc : ndarray of shape (n_images,)
        In [0, 1]; NaN where the mask is empty or covers the whole image.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import localisation_auc
    >>> masks = np.array([[True, True, False, False]])
    >>> localisation_auc(np.array([[0.9, 0.3, 0.3, 0.1]]), masks)  # (1+1+.5+1)/4
    array([0.875])
    """
    evidence, masks = _evidence_and_masks(maps, masks)
    n_inside = masks.sum(axis=1)
    n_outside = masks.shape[1] - n_inside
    ranks = rankdata(evidence, axis=1)  # ties get their mean rank
    rank_sum = (ranks * masks).sum(axis=1) - n_inside * (n_inside + 1) / 2
    return _ratio(rank_sum, n_inside * n_outside)


def selection_scores(maps: ArrayLike, masks: ArrayLike) -> Bunch:
    """How a selection (the nonzero tokens of a map) matches the mask.

    For a regularized map (ARB, or a selection rule such as
    :class:`~sklearn_arb.CumulativeMass`) the selection is the tokens it kept,
    whatever their sign: ARB on a signed map can keep a negative score that
    lies significantly above its null, and such a token counts as selected, as
    it does in :func:`selection_faithfulness`.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
    masks : array-like of bool, same shape as ``maps``

    Returns
    -------
    scores : Bunch
        Arrays of shape (n_images,):

        - ``precision``: share of the selected tokens inside the mask (NaN when
          nothing is selected);
        - ``recall``: share of the mask selected (NaN for an empty mask);
        - ``iou``: selected and inside over selected or inside (NaN when both
          are empty);
        - ``size``: share of the tokens selected;
        - ``chance``: the mask's share of tokens, the expected precision of a
          selection drawn at random (and the expected recall of one of that
          size).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import selection_scores
    >>> masks = np.array([[True, True, False, False]])
    >>> scores = selection_scores(np.array([[0.7, 0.0, 0.3, 0.0]]), masks)
    >>> scores.precision, scores.recall, scores.iou, scores.size, scores.chance
    (array([0.5]), array([0.5]), array([0.33333333]), array([0.5]), array([0.5]))
    """
    maps = check_maps(maps)
    selected = maps != 0
    masks = check_roi_masks(masks, maps.shape, "masks")
    n_selected, n_inside = selected.sum(axis=1), masks.sum(axis=1)
    n_both = (selected & masks).sum(axis=1)
    n_tokens = masks.shape[1]
    return Bunch(
        precision=_ratio(n_both, n_selected),
        recall=_ratio(n_both, n_inside),
        iou=_ratio(n_both, (selected | masks).sum(axis=1)),
        size=n_selected / n_tokens,
        chance=n_inside / n_tokens,
    )


def summarize_scores(scores: ArrayLike) -> Bunch:
    """Mean of per-image scores over the images that did not abstain (NaN).

    Parameters
    ----------
    scores : array-like of shape (n_images,)
        Per-image values, NaN for an abstention (e.g. :func:`pointing_game`).

    Returns
    -------
    summary : Bunch
        ``mean`` (NaN when every image abstained), ``n_scored`` and
        ``n_abstained``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import summarize_scores
    >>> summary = summarize_scores([1.0, 0.0, np.nan, 1.0])
    >>> float(summary.mean), summary.n_scored, summary.n_abstained
    (0.6666666666666666, 3, 1)
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    scored = scores[~np.isnan(scores)]
    return Bunch(
        mean=scored.mean() if scored.size else np.nan,
        n_scored=int(scored.size),
        n_abstained=int(scores.size - scored.size),
    )

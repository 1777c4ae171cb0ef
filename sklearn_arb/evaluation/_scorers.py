"""A scikit-learn scorer of localisation against ground-truth token masks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

from ..metrics._validation import check_roi_masks
from ._localisation import (
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
    selection_scores,
    summarize_scores,
)

__all__ = ["LocalisationScorer", "make_localisation_scorer"]


def _selection_score(name: str) -> Callable[..., np.ndarray]:
    def score(maps, masks):
        return selection_scores(maps, masks)[name]

    return score


# Per-image metrics by name; every one is "greater is better".
LOCALISATION_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "pointing_game": pointing_game,
    "relevance_mass": relevance_mass,
    "relevance_rank_accuracy": relevance_rank_accuracy,
    "localisation_auc": localisation_auc,
    "precision": _selection_score("precision"),
    "recall": _selection_score("recall"),
    "iou": _selection_score("iou"),
}


class LocalisationScorer:
    """Scores a fitted Pipeline (or transformer) by the localisation of its maps.

    Built by :func:`make_localisation_scorer`. Called as ``scorer(estimator, X,
    y)`` like any scikit-learn scorer: the estimator's ``transform(X)`` gives one
    map per image (for a Pipeline of extractor and regularizer or selection rule,
    the regularized maps), ``y`` holds the token masks (n_images, n_tokens), and
    the score is the metric's mean over the images that did not abstain (NaN
    values are left out). Greater is better.

    Parameters
    ----------
    metric : str or callable
        See :func:`make_localisation_scorer`.
    """

    def __init__(self, metric: str | Callable[..., np.ndarray]) -> None:
        self.metric = metric

    def _metrics(self) -> dict[str, Callable[..., np.ndarray]]:
        if callable(self.metric):
            return {getattr(self.metric, "__name__", "metric"): self.metric}
        if self.metric == "all":
            return LOCALISATION_METRICS
        return {self.metric: LOCALISATION_METRICS[self.metric]}

    def __call__(self, estimator, X, y) -> float | dict[str, float]:
        maps = np.asarray(estimator.transform(X))
        if y is None:
            raise ValueError(
                "Localisation scorers need y: the token masks (n_images, n_tokens) "
                "of the images, e.g. from token_masks_for_files."
            )
        if maps.ndim != 2:
            raise ValueError(
                f"The estimator's transform returned shape {maps.shape}; a "
                "localisation scorer needs one map of tokens per image, "
                "(n_images, n_tokens): end the Pipeline with a regularizer or rule."
            )
        masks = check_roi_masks(np.asarray(y), maps.shape, "y")
        scores = {
            name: float(summarize_scores(metric(maps, masks)).mean)
            for name, metric in self._metrics().items()
        }
        return scores if self.metric == "all" else next(iter(scores.values()))

    def __repr__(self) -> str:
        return f"make_localisation_scorer(metric={self.metric!r})"


@validate_params(
    {"metric": [StrOptions({*LOCALISATION_METRICS, "all"}), callable]},
    prefer_skip_nested_validation=True,
)
def make_localisation_scorer(
    metric: str | Callable[..., np.ndarray] = "localisation_auc",
) -> LocalisationScorer:
    """Make a scorer for ``GridSearchCV`` / ``cross_validate`` by localisation.

    The estimator is a fitted Pipeline (extractor, then
    :class:`~sklearn_arb.BootstrapAttentionRegularizer` or a selection rule
    such as :class:`~sklearn_arb.CumulativeMass`) scored on images, or a fitted
    regularizer or rule scored on the extractor's maps; ``y`` holds the
    boolean token masks of the objects, e.g. from :func:`token_masks_for_files`.
    The score is the per-image metric's mean over the images; images where the
    metric abstains (NaN, e.g. the pointing game on an all-zero map) are left
    out of the mean.

    Parameters
    ----------
    metric : str or callable, default="localisation_auc"
        ``"pointing_game"``, ``"relevance_mass"``, ``"relevance_rank_accuracy"``,
        ``"localisation_auc"`` (the functions of those names), ``"precision"``,
        ``"recall"`` or ``"iou"`` (of :func:`selection_scores`); ``"all"`` for a
        dict of all of them from one pass, usable as ``scoring=`` with
        ``refit=`` one of the names; or a callable ``metric(maps, masks)``
        returning one value per image, greater is better.

    Returns
    -------
    scorer : LocalisationScorer
        A callable ``scorer(estimator, X, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import CumulativeMass
    >>> from sklearn_arb.evaluation import make_localisation_scorer
    >>> observed = np.array([[0.5, 0.3, 0.1, 0.1], [0.0, 0.2, 0.7, 0.1]])
    >>> masks = np.array([[True, True, False, False], [False, False, True, True]])
    >>> rule = CumulativeMass(0.6, n_bootstrap=0).fit(observed)
    >>> make_localisation_scorer("precision")(rule, observed, masks)
    1.0
    >>> make_localisation_scorer("recall")(rule, observed, masks)
    0.75
    """
    return LocalisationScorer(metric)

"""A scikit-learn scorer of faithfulness: the fitted Pipeline's maps against its
own model."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import StrOptions, validate_params

from .._layout import MapLayout
from ._classifier import as_classifier
from ._faithfulness import perturbation_curve, selection_faithfulness
from ._imputation import REMOVALS

__all__ = ["FaithfulnessScorer", "make_faithfulness_scorer"]

# Each metric, "greater is better" (sklearn's neg_ prefix where lower is better).
FAITHFULNESS_METRICS = (
    "neg_deletion_auc",
    "insertion_auc",
    "comprehensiveness",
    "neg_sufficiency",
)


def _token_maps(estimator: Pipeline, X: Any, n_tokens: int) -> np.ndarray:
    """One map of ``n_tokens`` per image: the Pipeline's output, or the observed
    block of an extractor's ``[observed | bootstrap]`` output."""
    maps = np.asarray(estimator.transform(X))
    if maps.ndim == 2 and maps.shape[1] != n_tokens and maps.shape[1] % n_tokens == 0:
        maps = MapLayout(n_tokens, maps.shape[1] // n_tokens - 1).observed(maps)
    return maps


class FaithfulnessScorer:
    """Scores a fitted Pipeline by how faithful its maps are to its own model.

    Built by :func:`make_faithfulness_scorer`. Called as ``scorer(estimator,
    X, y)`` like any scikit-learn scorer, with ``X`` the images; greater is
    better.

    Parameters
    ----------
    metric : str
        See :func:`make_faithfulness_scorer`.
    options : dict
        Keywords of :func:`perturbation_curve` and
        :func:`selection_faithfulness`.
    target : {"predicted", "y"}
        Follow the model's prediction, or the classes in ``y``.
    """

    def __init__(self, metric: str, options: dict[str, Any], target: str) -> None:
        self.metric = metric
        self.options = options
        self.target = target

    def _target(self, y: ArrayLike | None, n_images: int) -> Any:
        if self.target == "predicted":
            return "predicted"
        labels = None if y is None else np.asarray(y)
        if labels is None or labels.shape != (n_images,):
            raise ValueError(
                f"target='y' reads one class label per image from y, shape "
                f"({n_images},); got "
                f"{'None' if labels is None else f'shape {labels.shape}'}."
            )
        return labels

    def __call__(self, estimator: Pipeline, X: Any, y: ArrayLike | None = None):
        classifier = as_classifier(estimator)
        maps = _token_maps(estimator, X, classifier.n_tokens)
        target = self._target(y, len(maps))
        wanted = FAITHFULNESS_METRICS if self.metric == "all" else (self.metric,)
        scores = {}
        # Deletion's AUC is smaller the more faithful the map: negated, as sklearn's
        # neg_* scorers, so that greater is better for every metric.
        for name, kind, sign in (
            ("neg_deletion_auc", "deletion", -1.0),
            ("insertion_auc", "insertion", 1.0),
        ):
            if name in wanted:
                curves = perturbation_curve(
                    classifier, X, maps, kind=kind, target=target, **self.options
                )
                scores[name] = sign * float(curves.auc.mean())
        if {"comprehensiveness", "neg_sufficiency"} & set(wanted):
            options = {k: v for k, v in self.options.items() if k != "fractions"}
            options.pop("order", None)
            selection = selection_faithfulness(
                classifier, X, maps, target=target, **options
            )
            scores["comprehensiveness"] = float(selection.comprehensiveness.mean())
            scores["neg_sufficiency"] = -float(selection.sufficiency.mean())
        scores = {name: scores[name] for name in wanted}
        return scores if self.metric == "all" else scores[self.metric]

    def __repr__(self) -> str:
        return f"make_faithfulness_scorer(metric={self.metric!r})"


@validate_params(
    {
        "metric": [StrOptions({*FAITHFULNESS_METRICS, "all"})],
        "order": [StrOptions({"morf", "lerf"})],
        "fractions": ["array-like", None],
        "removal": [StrOptions(set(REMOVALS))],
        "target": [StrOptions({"predicted", "y"})],
        "batch_size": [int, None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_faithfulness_scorer(
    metric: str = "neg_deletion_auc",
    *,
    order: str = "morf",
    fractions: ArrayLike | None = None,
    removal: str = "road",
    target: str = "predicted",
    batch_size: int | None = None,
    random_state: Any = 0,
) -> FaithfulnessScorer:
    """Make a scorer for ``GridSearchCV`` of a Pipeline's maps by faithfulness.

    The estimator is a fitted Pipeline (extractor, ..., regularizer or
    selection rule) scored on images ``X``: its maps are ``transform(X)``, and
    the model that must depend on them is the extractor's own ViT with its
    classifier (see :func:`as_classifier`). Each score is the mean over images:

    - ``"neg_deletion_auc"``: minus the AUC of the deletion curve
      (:func:`deletion_curve`, over the fractions 0, 0.1, ..., 1 by default);
    - ``"insertion_auc"``: the AUC of the insertion curve;
    - ``"comprehensiveness"``: the probability drop when the selection (the
      map's nonzero tokens) is removed (:func:`selection_faithfulness`);
    - ``"neg_sufficiency"``: minus the drop when only the selection is kept.

    Parameters
    ----------
    metric : {"neg_deletion_auc", "insertion_auc", "comprehensiveness", \
"neg_sufficiency", "all"}, default="neg_deletion_auc"
        "all" returns a dict of the four (usable as ``scoring=`` with
        ``refit=`` one of them).
    order : {"morf", "lerf"}, default="morf"
        The curves' order (ties in a random order, see :func:`token_order`).
    fractions : array-like, default=None
        The curves' fractions of tokens (None: 0, 0.1, ..., 1).
    removal : {"road", "black", "blur"}, default="road"
        See :func:`remove_tokens`.
    target : {"predicted", "y"}, default="predicted"
        The class followed: the model's prediction on the intact image (``y``
        is ignored, so localisation masks can be passed to other scorers), or
        the class labels given as ``y`` ``(n_images,)``.
    batch_size : int, default=None
        Perturbed images per forward pass (None: 32).
    random_state : int, RandomState instance or None, default=0
        Seeds the tie-breaking order and ROAD's noise, so every candidate of a
        search sees the same draws.

    Returns
    -------
    scorer : FaithfulnessScorer
        A callable ``scorer(estimator, X, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
    >>> from sklearn_arb.evaluation import make_faithfulness_scorer
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3))
    >>> pipe = make_pipeline(
    ...     AttentionExtractor(vit, image_size=32, n_bootstrap=4, random_state=0),
    ...     BootstrapAttentionRegularizer(),
    ... ).fit(images)
    >>> scores = make_faithfulness_scorer("all", removal="black")(pipe, images)
    >>> sorted(scores)
    ['comprehensiveness', 'insertion_auc', 'neg_deletion_auc', 'neg_sufficiency']
    """
    options = {
        "order": order,
        "fractions": fractions,
        "removal": removal,
        "batch_size": batch_size,
        "random_state": random_state,
    }
    return FaithfulnessScorer(metric, options, target)

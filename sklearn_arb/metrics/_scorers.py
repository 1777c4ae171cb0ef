"""scikit-learn scorers: tune regularisation on the noise simulation's ROI masks."""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import StrOptions, validate_params

from .._layout import MapLayout
from ._sensitivity import sensitivity, specificity

SCORER_METRICS = ("sensitivity", "specificity", "balanced")


def _check_token_masks(y, n_images: int) -> np.ndarray:
    if y is None:
        raise ValueError(
            "ARB scorers need y: the token ROI masks of shape (n_images, n_tokens) "
            "returned by make_noise_simulation(..., patch_size=...)."
        )
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[0] != n_images:
        raise ValueError(
            f"y must be token ROI masks of shape (n_images, n_tokens) = "
            f"({n_images}, n_tokens); got shape {y.shape}."
        )
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError(
                "y must be boolean token ROI masks (or 0/1); pass the token masks "
                "of make_noise_simulation(..., patch_size=...)."
            )
        y = y.astype(bool)
    return y


def _maps_before_and_after(estimator, X, y) -> tuple[np.ndarray, ...]:
    """Observed maps, regularised maps and ROI masks of the images ``X``.

    For a Pipeline, every step but the last transforms ``X`` (the extractor: its
    ``memory`` avoids running the ViT again) and the last is the regularizer. A bare
    regularizer gets ``X`` as the extractor's output. Either way the regularizer's
    layout says where the observed maps are.
    """
    regularizer = estimator
    if isinstance(estimator, Pipeline):
        regularizer = estimator.steps[-1][1]
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
    maps_after = np.asarray(regularizer.transform(X))
    roi_masks = _check_token_masks(y, maps_after.shape[0])
    if maps_after.shape != roi_masks.shape:
        raise ValueError(
            f"The regularizer returned maps of shape {maps_after.shape} but y has "
            f"shape {roi_masks.shape}; y must be token masks of the same patch grid "
            "(make them with the extractor's patch size and image size)."
        )
    # Any regularizer returns one map of P tokens per image from [observed P | ...].
    X = np.asarray(X)
    n_tokens = maps_after.shape[1]
    if X.ndim != 2 or X.shape[1] % n_tokens:
        raise ValueError(
            f"The regularizer's input has shape {X.shape}, which is not "
            f"(n_images, (1 + n_bootstrap) * {n_tokens}) for the {n_tokens} tokens "
            "of its output maps."
        )
    layout = MapLayout(n_tokens, X.shape[1] // n_tokens - 1)
    return layout.observed(X), maps_after, roi_masks


class ARBScorer:
    """Scores a fitted regularizer (or Pipeline) on images with known noise ROIs.

    Built by :func:`make_arb_scorer`; the instances :data:`sensitivity_scorer`,
    :data:`specificity_scorer` and :data:`balanced_scorer` are ready to use. Called
    as ``scorer(estimator, X, y)`` like any scikit-learn scorer, with ``y`` the
    token ROI masks (n_images, n_tokens). Greater is better.

    Parameters
    ----------
    metric : {"sensitivity", "specificity", "balanced", "all"}
        See :func:`make_arb_scorer`.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, estimator, X, y) -> float | dict[str, float]:
        maps_before, maps_after, roi_masks = _maps_before_and_after(estimator, X, y)
        scores = {
            "sensitivity": float(
                sensitivity(maps_before, maps_after, roi_masks).mean()
            ),
            "specificity": float(
                specificity(maps_before, maps_after, roi_masks).mean()
            ),
        }
        scores["balanced"] = (scores["sensitivity"] + scores["specificity"]) / 2
        return scores if self.metric == "all" else scores[self.metric]

    def __repr__(self) -> str:
        return f"make_arb_scorer(metric={self.metric!r})"


@validate_params(
    {"metric": [StrOptions({*SCORER_METRICS, "all"})]},
    prefer_skip_nested_validation=True,
)
def make_arb_scorer(metric: str = "balanced") -> ARBScorer:
    """Make a scorer for ``GridSearchCV`` / ``cross_validate`` over regularizers.

    The estimator is a fitted ``BootstrapAttentionRegularizer`` scored on
    precomputed maps (``X`` = ``AttentionExtractor`` output) or a fitted Pipeline
    (extractor, ..., regularizer) scored on images; ``y`` holds the token ROI masks
    of the noise simulation. Per image (see :func:`sensitivity`,
    :func:`specificity`):

    - ``"sensitivity"``: share of the ROI's attention removed (1 when the ROI holds
      no attention to begin with);
    - ``"specificity"``: share of the attention outside the ROI kept;
    - ``"balanced"``: their mean, ``(sensitivity + specificity) / 2``. Shrinking
      every score by the same factor (or doing nothing, or zeroing everything)
      scores 0.5, the paper's diagonal in its Fig. 5; a useful regularizer scores
      above it, a perfect one 1.

    Each score is the mean over the images.

    Parameters
    ----------
    metric : {"sensitivity", "specificity", "balanced", "all"}, default="balanced"
        The score; "all" returns a dict of the three from one pass (the ViT and the
        regularizer run once), usable as ``scoring=`` with ``refit="balanced"``.

    Returns
    -------
    scorer : ARBScorer
        A callable ``scorer(estimator, X, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator, TransformerMixin
    >>> from sklearn_arb.metrics import make_arb_scorer
    >>> class KeepTopHalf(TransformerMixin, BaseEstimator):  # a stand-in regularizer
    ...     def fit(self, X, y=None):
    ...         return self
    ...     def transform(self, X):
    ...         observed = X[:, :4]
    ...         return np.where(observed >= np.median(observed), observed, 0.0)
    >>> X = np.array([[0.4, 0.3, 0.1, 0.1, 0.25, 0.25, 0.25, 0.25]])  # P=4, B=1
    >>> y = np.array([[False, False, True, True]])
    >>> make_arb_scorer("all")(KeepTopHalf().fit(X), X, y)
    {'sensitivity': 1.0, 'specificity': 1.0, 'balanced': 1.0}
    """
    return ARBScorer(metric)


sensitivity_scorer = make_arb_scorer("sensitivity")
specificity_scorer = make_arb_scorer("specificity")
balanced_scorer = make_arb_scorer("balanced")

"""Heuristic selection rules that stand in for the regularizer in a Pipeline.

Each rule keeps some tokens of each observed map and zeroes the rest, as
:class:`BootstrapAttentionRegularizer` does, but by a fixed rule instead of a
bootstrap null: a share of the tokens (:class:`TopFraction`), a share of the
map's mass (:class:`CumulativeMass`, DINO's rule) or the tokens above the map's
mean (:class:`MeanThreshold`, Chefer et al.'s rule). So a ``GridSearchCV`` over
the Pipeline's ``"regularizer"`` step compares them with ARB on the same maps.

Every rule reads the map's positive part: a score <= 0 (evidence against the
target in a signed map such as CDAM's) is never kept. ARB differs here: it keeps
a score that lies significantly above its null, which on a signed map whose null
mean is below 0 can be a negative one.
"""

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._layout import layout_of, resolve_layout
from ._regularizer import ObservedMapsMixin
from ._thresholds import regularize_scores

__all__ = [
    "CumulativeMass",
    "MeanThreshold",
    "TopFraction",
    "cumulative_mass_mask",
    "mean_threshold_mask",
    "order_with_random_ties",
    "top_fraction_mask",
]


def order_with_random_ties(keys: np.ndarray, random_state=None) -> np.ndarray:
    """The indices that sort each row of ``keys`` in increasing order, tied
    keys in a uniformly random order (a seeded random key per entry breaks the
    ties), never in their order in the row.

    Parameters
    ----------
    keys : ndarray of shape (n_images, n_tokens)
    random_state : int, RandomState instance or None, default=None
        Draws the tie-breaking keys.

    Returns
    -------
    order : ndarray of int, shape (n_images, n_tokens)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._selection import order_with_random_ties
    >>> order = order_with_random_ties(np.zeros((1000, 3)), random_state=0)
    >>> bool((np.sort(order, axis=1) == [0, 1, 2]).all())
    True
    >>> bool(np.bincount(order[:, 0], minlength=3).min() > 250)
    True
    """
    ties = check_random_state(random_state).random_sample(keys.shape)
    return np.lexsort((ties, keys), axis=-1)


def top_fraction_mask(
    scores: np.ndarray, fraction: float, random_state=None
) -> np.ndarray:
    """Keep the ``k = floor(fraction * P + 1/2)`` highest positive scores per image.

    ``k`` is at least 1 and at most the number of positive scores of the image
    (a score <= 0 is never kept). Exactly ``k`` tokens are kept: tokens tied at
    the boundary are drawn uniformly at random among the tied ones (by
    ``random_state``), never by their position in the map.

    Parameters
    ----------
    scores : ndarray of shape (n_images, n_tokens)
    fraction : float in (0, 1]
    random_state : int, RandomState instance or None, default=None
        Breaks ties at the boundary.

    Returns
    -------
    keep_mask : ndarray of shape (n_images, n_tokens), bool

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._selection import top_fraction_mask
    >>> top_fraction_mask(np.array([[0.1, 0.4, 0.3, 0.2]]), 0.5)
    array([[False,  True,  True, False]])
    >>> tied = top_fraction_mask(np.ones((1000, 4)), 0.25, random_state=0)
    >>> bool((tied.sum(axis=1) == 1).all()), bool(tied.mean(axis=0).min() > 0.2)
    (True, True)
    """
    n_tokens = scores.shape[1]
    n_keep = max(1, int(np.floor(fraction * n_tokens + 0.5)))
    # Descending score, ties in a random order: the first n_keep positions.
    order = order_with_random_ties(-scores, random_state)
    keep = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n_keep], True, axis=1)
    return keep & (scores > 0)


def cumulative_mass_mask(scores: np.ndarray, mass: float) -> np.ndarray:
    """Keep the fewest highest tokens that hold at least ``mass`` of the positive mass.

    DINO's rule (Caron et al. 2021, "keep 60% of the mass"). With the positive
    scores sorted in decreasing order, ``k`` is the smallest count whose sum
    reaches ``mass`` times the total, and every token scoring at least the
    ``k``-th score is kept: tokens tied with the last one kept are kept with it,
    so the set never depends on token order (it may then exceed ``k``). An image
    with no positive score keeps nothing.

    Parameters
    ----------
    scores : ndarray of shape (n_images, n_tokens)
    mass : float in (0, 1]

    Returns
    -------
    keep_mask : ndarray of shape (n_images, n_tokens), bool

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._selection import cumulative_mass_mask
    >>> scores = np.array([[0.1, 0.5, 0.25, 0.15]])  # sums: 0.5, 0.75, 0.9, 1
    >>> cumulative_mass_mask(scores, 0.6)
    array([[False,  True,  True, False]])
    >>> cumulative_mass_mask(scores, 0.5)
    array([[False,  True, False, False]])
    """
    evidence = np.maximum(scores.astype(np.float64, copy=False), 0.0)
    descending = -np.sort(-evidence, axis=1)
    cumulative = np.cumsum(descending, axis=1)
    total = cumulative[:, -1:]
    # A relative tolerance, so that a target reached exactly is not missed by
    # the rounding of the cumulative sum.
    reached = cumulative >= mass * total * (1 - 1e-12)
    last_kept = np.argmax(reached, axis=1)[:, np.newaxis]
    threshold = np.take_along_axis(descending, last_kept, axis=1)
    return (evidence >= threshold) & (evidence > 0)


def mean_threshold_mask(scores: np.ndarray) -> np.ndarray:
    """Keep the tokens scoring strictly above their image's mean score.

    Chefer et al.'s (2021) segmentation rule; the mean is that of the map's
    positive part over all its tokens. A constant map keeps nothing.

    Parameters
    ----------
    scores : ndarray of shape (n_images, n_tokens)

    Returns
    -------
    keep_mask : ndarray of shape (n_images, n_tokens), bool

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._selection import mean_threshold_mask
    >>> mean_threshold_mask(np.array([[0.1, 0.4, 0.3, 0.2]]))  # mean 0.25
    array([[False,  True,  True, False]])
    """
    evidence = np.maximum(scores, 0.0)
    return evidence > evidence.mean(axis=1, keepdims=True)


class _SelectionRule(ObservedMapsMixin, TransformerMixin, BaseEstimator):
    """Validation, layout and output shared by the selection rules.

    A subclass implements ``_keep(observed)``: the boolean mask of the tokens
    kept from the observed maps.
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_bootstrap": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ]
    }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: None = None):
        """Check the input and record its layout (the rule learns nothing).

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Token maps ``[observed | bootstrap 1 | ... | bootstrap B]`` per row:
            :meth:`AttentionExtractor.transform`'s output (which carries its
            layout), or any array in that layout; the bootstrap maps are not read.
        y : None
            Ignored.

        Returns
        -------
        self
            The fitted rule.
        """
        attached = layout_of(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self._set_layout(resolve_layout(self.n_bootstrap, attached, X.shape[1]))
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The observed maps with the tokens the rule does not keep set to 0.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Token maps in the layout of ``fit``.

        Returns
        -------
        selected : ndarray of shape (n_images, n_tokens)
            The observed scores where kept, else 0; same float dtype as ``X``.
        """
        check_is_fitted(self)
        # Parameters may have been set after fit.
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            caller_name=type(self).__name__,
        )
        layout = layout_of(X)
        if layout is not None and layout != self.layout_:
            raise ValueError(
                f"The maps have the layout {layout} but the rule was fitted on "
                f"{self.layout_}. Call fit on maps of this layout first."
            )
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        observed = self.layout_.observed(X)
        return regularize_scores(observed, self._keep(observed))


_FITTED_ATTRIBUTES = """
    Attributes
    ----------
    n_features_in_ : int
        Input width ``(1 + n_bootstrap_) * n_tokens_``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names, when ``X`` has string column names.
    layout_ : MapLayout
        The row layout of the maps ``fit`` saw.
    n_bootstrap_ : int
        Bootstrap maps per image, B (not read by the rule).
    n_tokens_ : int
        Tokens per map, P.
"""

_N_BOOTSTRAP = """n_bootstrap : "auto" or int >= 0, default="auto"
        Bootstrap maps per image in each input row, read as the regularizer
        reads it: ``"auto"`` takes the layout the extractor attaches to its
        output, and B = 1 for a plain array; 0 for rows holding the observed
        map alone."""


class TopFraction(_SelectionRule):
    """Keep a fixed share of each map's tokens: the highest scores.

    A top-k rule at ``k = floor(fraction * P + 1/2)`` (at least 1) of the P
    tokens, to compare ARB with a selection of the same size. Exactly ``k``
    tokens are kept, fewer only where a map has fewer positive scores; tokens tied
    at the boundary are drawn uniformly at random among the tied ones
    (``random_state``), never by their position in the map. A score <= 0 is
    never kept.

    Parameters
    ----------
    fraction : float in (0, 1], default=0.2
        Share of the tokens kept.
    {n_bootstrap}
    random_state : int, RandomState instance or None, default=0
        Breaks ties at the boundary; an int makes the selection reproducible.
    {attributes}
    See Also
    --------
    CumulativeMass, MeanThreshold, BootstrapAttentionRegularizer

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import TopFraction
    >>> observed = np.array([[0.1, 0.4, 0.3, 0.2]])
    >>> X = np.hstack([observed, np.full((1, 4), 0.25)])  # [observed | bootstrap]
    >>> TopFraction(0.5).fit_transform(X)
    array([[0. , 0.4, 0.3, 0. ]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SelectionRule._parameter_constraints,
        "fraction": [Interval(Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, fraction: float = 0.2, *, n_bootstrap: int | str = "auto", random_state=0
    ) -> None:
        self.fraction = fraction
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _keep(self, observed: np.ndarray) -> np.ndarray:
        return top_fraction_mask(observed, self.fraction, self.random_state)


class CumulativeMass(_SelectionRule):
    """Keep the fewest highest tokens holding a share of each map's positive mass.

    DINO's rule (Caron et al. 2021), whose figures keep 60% of the mass. With a
    map's positive scores sorted in decreasing order, ``k`` is the smallest count
    whose sum reaches ``mass`` times their total, and every token scoring at least
    the ``k``-th score is kept: tokens tied with the last one kept are kept with
    it, so the selection never depends on token order. A map with no positive
    score keeps nothing.

    Parameters
    ----------
    mass : float in (0, 1], default=0.6
        Share of the positive mass the kept tokens hold at least.
    {n_bootstrap}
    {attributes}
    See Also
    --------
    TopFraction, MeanThreshold, BootstrapAttentionRegularizer

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import CumulativeMass
    >>> observed = np.array([[0.1, 0.5, 0.25, 0.15]])
    >>> CumulativeMass(0.6, n_bootstrap=0).fit_transform(observed)
    array([[0.  , 0.5 , 0.25, 0.  ]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SelectionRule._parameter_constraints,
        "mass": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, mass: float = 0.6, *, n_bootstrap: int | str = "auto") -> None:
        self.mass = mass
        self.n_bootstrap = n_bootstrap

    def _keep(self, observed: np.ndarray) -> np.ndarray:
        return cumulative_mass_mask(observed, self.mass)


class MeanThreshold(_SelectionRule):
    """Keep the tokens scoring above their map's mean score.

    Chefer et al.'s (2021) rule for segmenting a relevance map: a token is kept
    when its score is strictly above the mean of the map's positive part over
    all its tokens. A constant map keeps nothing.

    Parameters
    ----------
    {n_bootstrap}
    {attributes}
    See Also
    --------
    TopFraction, CumulativeMass, BootstrapAttentionRegularizer

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import MeanThreshold
    >>> observed = np.array([[0.1, 0.4, 0.3, 0.2]])  # mean 0.25
    >>> MeanThreshold(n_bootstrap=0).fit_transform(observed)
    array([[0. , 0.4, 0.3, 0. ]])
    """

    def __init__(self, *, n_bootstrap: int | str = "auto") -> None:
        self.n_bootstrap = n_bootstrap

    def _keep(self, observed: np.ndarray) -> np.ndarray:
        return mean_threshold_mask(observed)


for _rule in (TopFraction, CumulativeMass, MeanThreshold):
    _rule.__doc__ = _rule.__doc__.format(
        n_bootstrap=_N_BOOTSTRAP, attributes=_FITTED_ATTRIBUTES
    )

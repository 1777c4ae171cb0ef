"""BootstrapAttentionRegularizer: zero the scores a bootstrap null explains."""

import warnings
from collections.abc import Callable
from functools import lru_cache
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import Bunch, Tags
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._layout import MapLayout, layout_of, resolve_layout
from ._thresholds import THRESHOLD_RULES, regularize_scores, significance_mask
from .stats import PooledNull
from .stats._lfdr import local_fdr_unchecked
from .stats._null_models import FittedPooledNull, NullReference, PerImageNull
from .stats._pi0 import (
    STOREY_LAMBDAS,
    estimate_pi0_from_counts,
    estimate_pi0_unchecked,
)
from .stats._pvalues import PVALUE_KINDS, SortedNull
from .stats._threads import one_blas_thread
from .stats._zscores import log_scores_unchecked

_THRESHOLD = [Interval(Real, 0, 1, closed="both"), StrOptions({"median"})]


class ObservedMapsMixin:
    """Layout and output side shared by the transformers that return one map per
    image: the regularizer and the selection rules.

    The output is the input's observed block (zeroed where not kept), so its
    columns are the observed block's and its float dtype is the input's.
    """

    def _set_layout(self, layout: MapLayout) -> None:
        """Record the fitted layout and its B and P."""
        self.layout_ = layout
        self.n_bootstrap_ = layout.n_bootstrap
        self.n_tokens_ = layout.n_tokens

    def get_feature_names_out(
        self, input_features: ArrayLike | None = None
    ) -> np.ndarray:
        """Names of the output columns: those of the observed block of the input.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input column names; default ``feature_names_in_`` or ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects, shape (n_tokens_,)
        """
        check_is_fitted(self)
        return self.layout_.observed(
            _check_feature_names_in(self, input_features)[None]
        )[0]

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # Statistics may run in float64; the returned maps keep the input's dtype.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class BootstrapAttentionRegularizer(ObservedMapsMixin, TransformerMixin, BaseEstimator):
    """Attention Regularization by the Bootstrap (ARB) of ViT attention maps.

    Each attention score is compared with the scores a structureless bootstrap input
    gets from the same model; scores such a null explains are set to 0, the others
    keep their value. Input rows are laid out as ``AttentionExtractor`` emits them:
    ``[observed P | bootstrap 1 P | ... | bootstrap B P]`` (P tokens per map, B
    bootstrap maps; see :class:`~sklearn_arb.MapLayout`). The equations are on the
    Method page of the user guide (:ref:`method`):

    1. log scores (a score <= 0 is floored at the smallest positive score of its
       image, see :func:`sklearn_arb.stats.log_scores`), or the raw scores with
       ``scale="linear"``, standardised by the null's mean and standard
       deviation: ``z`` (:func:`~sklearn_arb.stats.z_scores`);
    2. empirical p-values against the null z
       (:func:`~sklearn_arb.stats.empirical_pvalues`);
    3. pi0, the proportion of null scores (:func:`~sklearn_arb.stats.estimate_pi0`);
    4. local FDR by Lindsey's method (:func:`~sklearn_arb.stats.local_fdr`);
    5. the z-step ``z >= z_threshold``, then the ``method``'s threshold.

    Parameters
    ----------
    n_bootstrap : "auto" or int, default="auto"
        Number B of bootstrap maps per image in each input row (the extractor's
        ``n_bootstrap``). ``"auto"``: the B of the layout the extractor attaches
        to its output (:func:`~sklearn_arb.layout_of`), so that a change of the
        extractor's ``n_bootstrap`` (``set_params``, ``GridSearchCV``) needs
        nothing else; 1 for a plain array. An int must agree with an attached
        layout. The input width must be ``(1 + B) * P``.
    method : {"z", "p", "lfdr", "pi0"}, default="p"
        After the z-step, also zero scores with ``p > alpha`` (``"p"``), with
        ``lfdr > gamma`` (``"lfdr"``), or outside the ``1 - pi0`` most significant
        (``"pi0"``, an automatic threshold); ``"z"`` is the z-step alone. The
        rules are the registry ``sklearn_arb._thresholds.THRESHOLD_RULES``.
    alpha : float in [0, 1] or "median", default=0.05
        p-value threshold of ``method="p"``.
    gamma : float in [0, 1] or "median", default=0.2
        lfdr threshold of ``method="lfdr"``.
    z_threshold : float or "median", default=0.0
        Scores with ``z < z_threshold`` are always zeroed; ``"median"`` is the
        median z of each image; ``-np.inf`` disables the z-step.
    threshold_kind : {"value", "quantile"}, default="value"
        Whether numeric ``alpha`` / ``gamma`` are values of the statistic or
        quantile levels of each image's own statistic. ``"median"`` always means
        the image's median (the authors' notebooks).
    pvalue : {"one-sided", "two-sided", "reference"}, default="one-sided"
        The p-values thresholded: ``(1 + #{z0 >= z}) / (1 + m0)``, the same with
        ``|z0| >= |z|``, or the authors' two-sided definition with the observed
        values in the reference set.
    pi0 : {"smoother", "bootstrap"} or float in [0, 1], default="smoother"
        Storey's smoother (cubic smoothing spline, 3 effective df, at lambda=0.95),
        Storey's bootstrap choice of lambda, or a fixed value (1 is conservative).
        Used by ``method="pi0"`` and by the lfdr.
    pi0_pvalues : {"two-sided", "thresholded"}, default="two-sided"
        The p-values pi0 is estimated from. ``"two-sided"`` (the authors' choice):
        ``(1 + #{|z0| >= |z|}) / (1 + m0)``, or the reference p-values when
        ``pvalue="reference"`` (already two-sided), whatever ``pvalue`` is
        thresholded. ``"thresholded"``: the p-values of ``pvalue``. Storey's
        estimator assumes null p-values uniform on [0, 1]; one-sided p-values of
        the many tokens attended less than the null pile up near 1 instead, and
        pi0 then comes out near 1 on real images (measurements: :ref:`pi0`).
    pi0_pixels_per_token : int >= 1 or None, default=None
        How many tokens ``method="pi0"`` keeps, with ``q = 1 - pi0``: None keeps
        ``floor(q P)``; an int r keeps ``floor(q P - q / r) + 1``, what the
        authors' ``q`` percentile keeps on maps upsampled to r pixels per token
        (r = patch size squared, 256 for a /16 model; one token even at pi0 = 1).
    lfdr_null : {"normal", "bootstrap"}, default="normal"
        Null density of the lfdr: standard normal, or the bootstrap z density.
    null : {"pooled", "per_image"}, default="pooled"
        ``"pooled"``: ``fit`` learns one null from the bootstrap maps of all
        training images (moments, sorted null z) and ``transform`` judges every
        image against it. ``"per_image"``: the paper's procedure, each row against
        its own bootstrap maps; ``fit`` only checks and records the layout.
        The pooled null can also be learnt in chunks (:meth:`partial_fit`) or
        by merging regularizers fitted on disjoint images (:meth:`merge`).
    max_exact_null : int >= 0, default=4_194_304
        With ``null="pooled"``, the pooled null's values (``n_images * B * P``)
        are kept, sorted, while there are at most this many (32 MB), and
        p-values against it are exact. Beyond, only the null's moments and a
        fixed-grid histogram of its log scores are kept (2 MB whatever the
        number of images) and p-values are read from the histogram,
        conservatively: ``0 <= p - p_exact <= pvalue_bound_``, the mass of one
        histogram bin (two for two-sided p-values); see the Large image sets
        page of the user guide. ``lfdr_null="bootstrap"`` needs the exact null.
    soft : bool, default=False
        If True, kept scores are shrunk to ``a * (1 - lfdr)``.
    scale : {"log", "linear", "auto"}, default="log"
        The scale z is computed on: log scores (positive maps: attention,
        rollout), or the raw scores (signed maps: CDAM), whose null mean and
        standard deviation standardise them the same way. ``"auto"``: linear
        when the maps :meth:`fit` (or the first :meth:`partial_fit`) sees hold
        a score <= 0, else log. Everything after z is the same on both scales.
        With ``"log"``, maps that hold scores <= 0 get a UserWarning at fit
        (they are floored, step 1), naming ``"auto"``.
        On a signed map the significant side is large positive z. A score is
        kept for lying significantly above its null, not for its sign: when
        the null's mean is below 0, a negative score (evidence against the
        target, but less than noise gives) can be kept. The heuristic rules
        (:class:`TopFraction` and the others) keep positive scores only.

    Attributes
    ----------
    n_features_in_ : int
        Input width ``(1 + n_bootstrap_) * n_tokens_``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names, when ``X`` has string column names.
    layout_ : MapLayout
        The row layout of the maps ``fit`` saw.
    n_bootstrap_ : int
        Bootstrap maps per image, B (``layout_.n_bootstrap``).
    n_tokens_ : int
        Tokens per map, P (``layout_.n_tokens``).
    scale_ : {"log", "linear"}
        The scale z is computed on (``scale``, with ``"auto"`` resolved).
    null_mean_ : float or None
        Mean of the pooled null log scores (None when fitted with
        ``null="per_image"``).
    null_std_ : float or None
        Their standard deviation (ddof 0; 1 when the null is constant).
    null_z_sorted_ : ndarray of shape (n_images * n_bootstrap_ * n_tokens_,) or None
        Pooled null z, sorted (None when fitted with ``null="per_image"``, or
        when the pooled null has more than ``max_exact_null`` values).
    null_abs_z_sorted_ : ndarray of the same shape, or None
        Their absolute values, sorted (for the two-sided p-values).
    null_count_ : int or None
        Number of pooled null values (None with ``null="per_image"``).
    pooled_null_ : PooledNull or None
        The mergeable state of the pooled null (count, moments, histogram of
        the log scores, sorted log scores while kept); None with
        ``null="per_image"``.
    pvalue_bound_ : float or None
        Largest error ``p - p_exact`` of the p-values against the pooled null:
        0 while the exact null is kept, else twice the largest histogram bin's
        count over ``1 + null_count_`` (None with ``null="per_image"``).

    See Also
    --------
    sklearn_arb.stats : the statistics as pure functions.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import BootstrapAttentionRegularizer
    >>> rng = np.random.default_rng(0)
    >>> null = rng.lognormal(-6.0, 0.5, size=(2, 196))
    >>> observed = rng.lognormal(-6.0, 0.5, size=(2, 196))
    >>> observed[:, :10] *= 20.0  # ten strongly attended tokens
    >>> X = np.hstack([observed, null])  # [observed 196 | bootstrap 196]
    >>> arb = BootstrapAttentionRegularizer(alpha=0.05).fit(X)  # B = 1, a plain array
    >>> maps = arb.transform(X)
    >>> maps.shape
    (2, 196)
    >>> bool((maps[:, :10] > 0).all()), int((maps[:, 10:] > 0).sum()) < 40
    (True, True)
    >>> arb.compute_statistics(X).pvalues.shape
    (2, 196)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_bootstrap": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "method": [StrOptions(set(THRESHOLD_RULES))],
        "alpha": _THRESHOLD,
        "gamma": _THRESHOLD,
        "z_threshold": [
            Interval(Real, None, None, closed="both"),
            StrOptions({"median"}),
        ],
        "threshold_kind": [StrOptions({"value", "quantile"})],
        "pvalue": [StrOptions(set(PVALUE_KINDS))],
        "pi0": [
            StrOptions({"smoother", "bootstrap"}),
            Interval(Real, 0, 1, closed="both"),
        ],
        "pi0_pvalues": [StrOptions({"two-sided", "thresholded"})],
        "pi0_pixels_per_token": [Interval(Integral, 1, None, closed="left"), None],
        "lfdr_null": [StrOptions({"normal", "bootstrap"})],
        "null": [StrOptions({"pooled", "per_image"})],
        "max_exact_null": [Interval(Integral, 0, None, closed="left")],
        "soft": ["boolean"],
        "scale": [StrOptions({"log", "linear", "auto"})],
    }

    def __init__(
        self,
        *,
        n_bootstrap: int | str = "auto",
        method: str = "p",
        alpha: float | str = 0.05,
        gamma: float | str = 0.2,
        z_threshold: float | str = 0.0,
        threshold_kind: str = "value",
        pvalue: str = "one-sided",
        pi0: str | float = "smoother",
        pi0_pvalues: str = "two-sided",
        pi0_pixels_per_token: int | None = None,
        lfdr_null: str = "normal",
        null: str = "pooled",
        max_exact_null: int = 4_194_304,
        soft: bool = False,
        scale: str = "log",
    ) -> None:
        self.n_bootstrap = n_bootstrap
        self.method = method
        self.alpha = alpha
        self.gamma = gamma
        self.z_threshold = z_threshold
        self.threshold_kind = threshold_kind
        self.pvalue = pvalue
        self.pi0 = pi0
        self.pi0_pvalues = pi0_pvalues
        self.pi0_pixels_per_token = pi0_pixels_per_token
        self.lfdr_null = lfdr_null
        self.null = null
        self.max_exact_null = max_exact_null
        self.soft = soft
        self.scale = scale

    def _layout(self, attached: MapLayout | None, n_features: int) -> MapLayout:
        """The layout of the maps: the one attached to them, or ``n_bootstrap``'s
        for ``n_features`` columns; a clear error where they disagree."""
        layout = resolve_layout(self.n_bootstrap, attached, n_features)
        if layout.n_bootstrap < 1:
            raise ValueError(
                "The maps hold no bootstrap map (n_bootstrap=0): ARB needs at least "
                "one. Set the extractor's n_bootstrap >= 1."
            )
        return layout

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: None = None) -> "BootstrapAttentionRegularizer":
        """Check the layout and, for ``null="pooled"``, learn the pooled null.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps, ``[observed | bootstrap 1 | ... | bootstrap B]`` per
            row: :meth:`AttentionExtractor.transform`'s output (which carries its
            layout), or any array in that layout.
        y : None
            Ignored.

        Returns
        -------
        self : BootstrapAttentionRegularizer
            The fitted regularizer.
        """
        attached = layout_of(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self._set_layout(self._layout(attached, X.shape[1]))
        self.scale_ = self._resolved_scale(X)
        self._warn_if_floored(X)
        self._set_pooled_null(self._pooled_null_of(X))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: ArrayLike, y: None = None
    ) -> "BootstrapAttentionRegularizer":
        """Add the bootstrap maps of a chunk of images to the pooled null.

        The pooled null's state after any sequence of calls on the chunks of a
        set of images, in any order, equals that of one :meth:`fit` on them:
        the same count and histogram, the same exact sorted null while it is
        kept (``max_exact_null``), and the same moments up to floating-point
        rounding (they are merged by Chan et al.'s pairwise update). So are the
        masks :meth:`transform` gives. With ``null="per_image"`` only the
        layout is checked. A call after :meth:`fit` continues from its state.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps of a chunk of images, in the layout of the first call.
        y : None
            Ignored.

        Returns
        -------
        self : BootstrapAttentionRegularizer
            The regularizer, fitted on every chunk seen so far.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(6, 2 * 49))
        >>> arb = BootstrapAttentionRegularizer()
        >>> for chunk in (X[:2], X[2:]):
        ...     arb = arb.partial_fit(chunk)
        >>> whole = BootstrapAttentionRegularizer().fit(X)
        >>> arb.null_count_ == whole.null_count_ == 6 * 49
        True
        >>> bool(np.array_equal(arb.transform(X), whole.transform(X)))
        True
        """
        first_call = not hasattr(self, "layout_")
        attached = layout_of(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=first_call)
        layout = self._layout(attached, X.shape[1])
        if not first_call and layout != self.layout_:
            raise ValueError(
                f"The maps have the layout {layout} but earlier chunks had "
                f"{self.layout_}. Give every chunk the same extractor settings."
            )
        self._set_layout(layout)
        if first_call:
            self.scale_ = self._resolved_scale(X)
        self._warn_if_floored(X)
        pooled = self._pooled_null_of(X)
        previous = None if first_call else self.pooled_null_
        if pooled is not None and previous is not None:
            pooled = previous.merge(pooled, self.max_exact_null)
        self._set_pooled_null(pooled)
        return self

    def merge(
        self, other: "BootstrapAttentionRegularizer"
    ) -> "BootstrapAttentionRegularizer":
        """A new regularizer whose pooled null joins this one's and ``other``'s.

        For regularizers fitted (:meth:`fit` or :meth:`partial_fit`) on disjoint
        sets of images, the result's state is that of fitting on their union,
        as :meth:`partial_fit` describes; so workers can each fit a share of
        the images and one merge gives the pooled null. Neither input is
        modified; the result has this regularizer's parameters.

        Parameters
        ----------
        other : BootstrapAttentionRegularizer
            Fitted with ``null="pooled"`` on maps of the same layout.

        Returns
        -------
        merged : BootstrapAttentionRegularizer
            A fitted regularizer.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(6, 2 * 49))
        >>> a = BootstrapAttentionRegularizer().fit(X[:3])
        >>> b = BootstrapAttentionRegularizer().fit(X[3:])
        >>> merged = a.merge(b)
        >>> whole = BootstrapAttentionRegularizer().fit(X)
        >>> bool(np.allclose(merged.null_z_sorted_, whole.null_z_sorted_))
        True
        >>> bool(np.array_equal(merged.transform(X), whole.transform(X)))
        True
        """
        for regularizer in (self, other):
            if not isinstance(regularizer, BootstrapAttentionRegularizer):
                raise TypeError(
                    "merge joins two BootstrapAttentionRegularizer; got "
                    f"{type(regularizer).__name__}."
                )
            check_is_fitted(regularizer)
            if regularizer.pooled_null_ is None:
                raise ValueError(
                    "merge joins pooled nulls, but a regularizer was fitted with "
                    "null='per_image'. Fit both with null='pooled'."
                )
        if other.scale_ != self.scale_:
            raise ValueError(
                f"Cannot merge regularizers whose z are on the {self.scale_} and "
                f"{other.scale_} scales. Fit both with the same scale."
            )
        if other.layout_ != self.layout_:
            raise ValueError(
                f"Cannot merge regularizers fitted on maps of layouts {self.layout_} "
                f"and {other.layout_}. Fit both on the same extractor's maps."
            )
        merged = type(self).from_pooled_null(
            self.pooled_null_.merge(other.pooled_null_, self.max_exact_null),
            self.layout_,
            self.scale_,
            **self.get_params(),
        )
        if hasattr(self, "feature_names_in_"):
            merged.feature_names_in_ = self.feature_names_in_
        return merged

    @classmethod
    def from_pooled_null(
        cls,
        pooled_null: PooledNull,
        layout: MapLayout,
        null_scale: str,
        **params: Any,
    ) -> "BootstrapAttentionRegularizer":
        """A regularizer fitted with a given pooled null state.

        The regularizer :meth:`fit` would leave on maps of ``layout`` whose
        bootstrap log scores have the state ``pooled_null`` (e.g. one read back
        from :meth:`~sklearn_arb.stats.PooledNull.to_arrays`' arrays, or merged
        from fits on shards). :meth:`merge` builds its result this way.

        Parameters
        ----------
        pooled_null : PooledNull
            The pooled null's state.
        layout : MapLayout
            The row layout of the maps the null was learnt from.
        null_scale : {"log", "linear"}
            The scale of z its values are on (the fitted ``scale_``).
        **params
            Other parameters of the regularizer; ``null`` must be ``"pooled"``
            (the default here), ``scale`` ``"auto"`` or ``null_scale``, and an int
            ``n_bootstrap`` the layout's B.

        Returns
        -------
        regularizer : BootstrapAttentionRegularizer
            Fitted, with ``null="pooled"``.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(4, 2 * 49))
        >>> fitted = BootstrapAttentionRegularizer(alpha=0.1).fit(X)
        >>> again = BootstrapAttentionRegularizer.from_pooled_null(
        ...     fitted.pooled_null_, fitted.layout_, "log", alpha=0.1)
        >>> bool(np.array_equal(again.transform(X), fitted.transform(X)))
        True
        """
        if not isinstance(pooled_null, PooledNull):
            raise TypeError(
                "pooled_null must be a sklearn_arb.stats.PooledNull; got "
                f"{type(pooled_null).__name__}."
            )
        if null_scale not in ("log", "linear"):
            raise ValueError(
                f"null_scale must be 'log' or 'linear'; got {null_scale!r}."
            )
        regularizer = cls(**{"null": "pooled", **params})
        regularizer._validate_params()
        if regularizer.null != "pooled":
            raise ValueError(
                f"A pooled null state makes a null='pooled' regularizer; got "
                f"null={regularizer.null!r}."
            )
        if regularizer.scale not in ("auto", null_scale):
            raise ValueError(
                f"scale={regularizer.scale!r} but the pooled null is on the "
                f"{null_scale} scale. Pass scale='auto' or the null's scale."
            )
        if regularizer.n_bootstrap not in ("auto", layout.n_bootstrap):
            raise ValueError(
                f"n_bootstrap={regularizer.n_bootstrap} but the pooled null was "
                f"learnt from maps with n_bootstrap={layout.n_bootstrap}. Pass "
                "n_bootstrap='auto' or the layout's."
            )
        regularizer.n_features_in_ = layout.width
        regularizer._set_layout(layout)
        regularizer.scale_ = null_scale
        regularizer._set_pooled_null(pooled_null)
        return regularizer

    def _resolved_scale(self, X: np.ndarray) -> str:
        """``scale``, with ``"auto"`` resolved on the maps ``X``."""
        if self.scale != "auto":
            return self.scale
        return "linear" if (X <= 0).any() else "log"

    def _warn_if_floored(self, X: np.ndarray) -> None:
        """One UserWarning when log scores would floor scores <= 0 of ``X``."""
        if self.scale_ != "log":
            return
        n_floored = int(np.count_nonzero(X <= 0))
        if n_floored:
            warnings.warn(
                f"{n_floored} of {X.size} scores are <= 0, which scale='log' floors "
                "at the smallest positive score of their image (a signed map, "
                "such as CDAM's, loses its sign). For signed maps set "
                "scale='auto' (or 'linear').",
                UserWarning,
                stacklevel=4,
            )

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        """float64 scores on the scale of z: logs, or the scores themselves
        (a new array either way; ``X`` is never modified)."""
        if self.scale_ == "linear":
            return X.astype(np.float64, copy=True)
        return log_scores_unchecked(X.astype(np.float64, copy=False))

    def _pooled_null_of(self, X: np.ndarray) -> PooledNull | None:
        """The pooled null state of validated maps; None for ``null="per_image"``
        (nothing to learn; None, so a later null="pooled" cannot use a stale one)."""
        if self.null != "pooled":
            return None
        null_logs = self.layout_.bootstrap(self._scaled(X))
        return PooledNull.from_logs(null_logs, self.max_exact_null)

    def _set_pooled_null(self, pooled: PooledNull | None) -> None:
        """Set the pooled null state and what transform reads from it."""
        self.pooled_null_ = pooled
        self.null_z_sorted_ = self.null_abs_z_sorted_ = None
        if pooled is None:
            self.null_mean_ = self.null_std_ = None
            self.null_count_ = self.pvalue_bound_ = None
            return
        self.null_count_ = pooled.count
        self.null_mean_ = pooled.mean
        self.null_std_ = pooled.std
        if pooled.sorted_logs is None:
            self.pvalue_bound_ = pooled.pvalue_bound("two-sided")
            return
        self.pvalue_bound_ = 0.0
        sorted_null = FittedPooledNull.of(pooled).sorted_null
        self.null_z_sorted_ = sorted_null.signed[0]
        self.null_abs_z_sorted_ = sorted_null.absolute[0]

    def _null_model(self) -> PerImageNull | FittedPooledNull:
        """The null the images are judged against (``null``'s strategy)."""
        if self.null == "per_image":
            return PerImageNull()
        sorted_null = None  # beyond max_exact_null: the histogram's p-values
        if self.null_z_sorted_ is not None:
            sorted_null = SortedNull(
                self.null_z_sorted_[np.newaxis], self.null_abs_z_sorted_[np.newaxis]
            )
        return FittedPooledNull(self.pooled_null_, sorted_null)

    def _statistics(self, X: np.ndarray, layout: MapLayout, everything: bool) -> Bunch:
        """The statistics of validated ``X`` of ``layout`` in one pass; only those
        the thresholds need unless ``everything``."""
        logs = self._scaled(X)
        observed_logs = layout.observed(logs)
        reference = self._null_model().reference(layout.bootstrap(logs))
        stats = Bunch(
            scores=layout.observed(X),
            z=reference.z(observed_logs),
            null_z=reference.null_z,
            null_mean=reference.mean,
            null_std=reference.std,
        )

        def pvalues_of(kind: str) -> np.ndarray:
            return reference.pvalues(stats.z, observed_logs, kind)

        needs = self._needs(everything)
        if self._decided_by_critical_values(needs):
            # The p rule alone: p <= alpha from each image's critical z.
            stats.keep_mask = significance_mask(
                stats.z, method="z", z_threshold=self.z_threshold
            ) & reference.pvalues_at_most(
                stats.z, observed_logs, self.pvalue, self.alpha
            )
            stats.regularized = regularize_scores(stats.scores, stats.keep_mask)
            return stats
        if "pvalues" in needs:
            stats.pvalues = pvalues_of(self.pvalue)
        if "pi0" in needs:
            stats.pi0 = self._pi0(stats, reference, pvalues_of)
        if "lfdr" in needs:
            sorted_null = reference.sorted_null
            stats.lfdr = local_fdr_unchecked(
                stats.z,
                stats.pi0,
                self.lfdr_null,
                None if sorted_null is None else sorted_null.signed,
            )
        stats.keep_mask, stats.regularized = self._thresholded(stats)
        return stats

    def _thresholded(self, stats: Bunch) -> tuple[np.ndarray, np.ndarray]:
        """The keep mask and regularized maps of ``stats`` at this estimator's
        method and thresholds."""
        keep_mask = significance_mask(
            stats.z,
            method=self.method,
            pvalues=stats.get("pvalues"),
            lfdr=stats.get("lfdr"),
            pi0=stats.get("pi0"),
            alpha=self.alpha,
            gamma=self.gamma,
            z_threshold=self.z_threshold,
            threshold_kind=self.threshold_kind,
            pixels_per_token=self.pi0_pixels_per_token,
        )
        regularized = regularize_scores(
            stats.scores, keep_mask, lfdr=stats.get("lfdr") if self.soft else None
        )
        return keep_mask, regularized

    def regularize_statistics(self, statistics: Bunch) -> np.ndarray:
        """Regularized maps from statistics already computed, at the current
        method and thresholds.

        The statistics do not depend on ``method``, ``alpha``, ``gamma``,
        ``z_threshold``, ``threshold_kind`` or ``soft``, so a sweep over any of
        them computes :meth:`compute_statistics` once and calls this for each
        setting: the result equals :meth:`transform`'s at that setting.

        Parameters
        ----------
        statistics : Bunch
            :meth:`compute_statistics`' output, from this estimator as fitted.

        Returns
        -------
        regularized : ndarray of shape (n_images, n_tokens)

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(3, 2 * 49))
        >>> arb = BootstrapAttentionRegularizer(null="per_image").fit(X)
        >>> stats = arb.compute_statistics(X)
        >>> sweep = []
        >>> for alpha in (0.1, 0.3, 0.5):
        ...     _ = arb.set_params(alpha=alpha)
        ...     sweep.append(arb.regularize_statistics(stats))
        >>> bool(np.array_equal(sweep[-1], arb.transform(X)))
        True
        """
        check_is_fitted(self)
        _check_parameters(self)
        missing = [
            name
            for name in ("scores", "z", "pvalues", "lfdr", "pi0")
            if name not in statistics
        ]
        if missing:
            raise ValueError(
                f"statistics lack {', '.join(missing)}; pass the output of "
                "compute_statistics."
            )
        return self._thresholded(statistics)[1]

    def _decided_by_critical_values(self, needs: set[str]) -> bool:
        """Whether the maps need no statistic beyond whether ``p <= alpha``:
        ``method="p"`` with a numeric value threshold (what transform computes
        then, the same mask as from the p-values)."""
        return (
            needs == {"pvalues"}
            and self.method == "p"
            and self.threshold_kind == "value"
            and not isinstance(self.alpha, str)
        )

    def _needs(self, everything: bool) -> set[str]:
        """The statistics to compute beyond z: the method's, or all of them."""
        if everything:
            return {"pvalues", "pi0", "lfdr"}
        needs = set(THRESHOLD_RULES[self.method].needs)
        if self.soft:
            needs.add("lfdr")
        if "lfdr" in needs:  # lfdr is proportional to pi0
            needs.add("pi0")
        if "pi0" in needs and self._pi0_pvalue_kind() == self.pvalue:
            needs.add("pvalues")
        return needs

    def _pi0(
        self,
        stats: Bunch,
        reference: NullReference,
        pvalues_of: Callable[[str], np.ndarray],
    ) -> np.ndarray:
        """pi0 per image, from the p-values ``pi0_pvalues`` names (or fixed)."""
        kind = self._pi0_pvalue_kind()
        if kind is None:
            return np.full(len(stats.z), float(self.pi0))
        if kind == self.pvalue:
            return estimate_pi0_unchecked(stats.pvalues, self.pi0)
        # Storey's estimator reads how many p-values reach each lambda.
        counts = reference.pvalue_counts_at_least(stats.z, kind, STOREY_LAMBDAS)
        if counts is None:
            return estimate_pi0_unchecked(pvalues_of(kind), self.pi0)
        return estimate_pi0_from_counts(counts, stats.z.shape[1], self.pi0)

    def _pi0_pvalue_kind(self) -> str | None:
        """The kind of p-values pi0 is estimated from; None for a fixed pi0."""
        if not isinstance(self.pi0, str):
            return None
        if self.pi0_pvalues == "thresholded" or self.pvalue == "reference":
            return self.pvalue  # the reference p-values are two-sided already
        return "two-sided"

    def _validate_for_transform(self, X: ArrayLike) -> tuple[np.ndarray, MapLayout]:
        """Validated maps and their layout (the fitted one, or the observed
        maps alone for a pooled null)."""
        check_is_fitted(self)
        _check_parameters(self)  # they may have been set after fit
        if self.null == "pooled" and self.pooled_null_ is None:
            raise ValueError(
                "null='pooled' judges images against the null that fit learns, but "
                "this regularizer was fitted with null='per_image'. Call fit again."
            )
        if (
            self.null == "pooled"
            and self.lfdr_null == "bootstrap"
            and self.null_z_sorted_ is None
        ):
            raise ValueError(
                f"lfdr_null='bootstrap' needs the exact pooled null, but it has "
                f"{self.null_count_} values, more than max_exact_null="
                f"{self.max_exact_null}, and only its histogram was kept. Set "
                "lfdr_null='normal', or fit again with a larger max_exact_null."
            )
        if self.scale not in ("auto", self.scale_):
            raise ValueError(
                f"scale={self.scale!r} but the regularizer's null was learnt on the "
                f"{self.scale_} scale. Call fit again."
            )
        if self.n_bootstrap not in ("auto", self.n_bootstrap_):
            raise ValueError(
                f"n_bootstrap={self.n_bootstrap} but the regularizer was fitted on "
                f"maps with n_bootstrap={self.n_bootstrap_}. Call fit again."
            )
        layout = layout_of(X)
        observed_alone = MapLayout(self.n_tokens_, 0)
        if not self._null_model().needs_bootstrap_maps and (
            layout == observed_alone
            or (layout is None and _n_columns(X) == self.n_tokens_)
        ):
            # A pooled null judges the observed maps alone: no bootstrap block.
            if not _plain_maps(X, self.n_tokens_):
                X = check_array(X, dtype=[np.float64, np.float32])
            return np.asarray(X), observed_alone
        if layout is not None and layout != self.layout_:
            raise ValueError(
                f"The maps have the layout {layout} but the regularizer was fitted "
                f"on {self.layout_}. Call fit on maps of this layout first."
            )
        if hasattr(self, "feature_names_in_") or not _plain_maps(X, self.layout_.width):
            X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.asarray(X), self.layout_

    def needs_bootstrap_maps(self) -> bool:
        """Whether :meth:`transform` needs the images' bootstrap maps.

        False for a regularizer fitted with ``null="pooled"``: it judges every
        image against the null ``fit`` learnt, so :meth:`transform` and
        :meth:`compute_statistics` also take the observed maps alone, of width
        ``n_tokens_`` (:meth:`AttentionExtractor.transform_observed`, which runs
        the model on the observed images only), with the same result as on
        the whole rows. True with ``null="per_image"``.

        Returns
        -------
        needs_bootstrap_maps : bool

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(3, 2 * 49))
        >>> arb = BootstrapAttentionRegularizer(null="pooled").fit(X)
        >>> arb.needs_bootstrap_maps()
        False
        >>> observed = X[:, :49]
        >>> bool(np.array_equal(arb.transform(observed), arb.transform(X)))
        True
        """
        check_is_fitted(self)
        return self._null_model().needs_bootstrap_maps

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Regularized observed maps: scores that are not significant set to 0.

        Computes only the statistics the thresholds need. To get the maps and the
        statistics, call :meth:`compute_statistics` once instead: its
        ``regularized`` is this output, from the same single pass.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps in the layout of ``fit``; with a pooled null also
            the observed maps alone, of shape (n_images, n_tokens) (see
            :meth:`needs_bootstrap_maps`).

        Returns
        -------
        regularized : ndarray of shape (n_images, n_tokens)
            The observed scores where kept (times ``1 - lfdr`` if ``soft``), else 0;
            same float dtype as ``X``.
        """
        X, layout = self._validate_for_transform(X)
        with one_blas_thread(len(X)):
            return self._statistics(X, layout, everything=False).regularized

    def compute_statistics(self, X: ArrayLike) -> Bunch:
        """All the statistics of ARB for each image, and the regularized maps.

        One pass gives both: ``regularized`` equals :meth:`transform`'s output,
        so a caller who wants maps and statistics needs no second call.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps in the layout of ``fit``; with a pooled null also
            the observed maps alone, of shape (n_images, n_tokens) (see
            :meth:`needs_bootstrap_maps`).

        Returns
        -------
        statistics : Bunch
            With arrays ``scores``, ``z``, ``pvalues``, ``lfdr``, ``keep_mask``
            (bool) and ``regularized`` of shape (n_images, n_tokens); ``null_z``
            (n_images, n_bootstrap * n_tokens), the image's own bootstrap maps
            standardised by the null moments used; ``null_mean``, ``null_std`` and
            ``pi0`` of shape (n_images,).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb import BootstrapAttentionRegularizer
        >>> X = np.random.default_rng(0).lognormal(size=(3, 2 * 49))
        >>> arb = BootstrapAttentionRegularizer(null="per_image").fit(X)
        >>> stats = arb.compute_statistics(X)
        >>> stats.z.shape, stats.null_z.shape, stats.pi0.shape
        ((3, 49), (3, 49), (3,))
        >>> bool(np.all(stats.regularized[~stats.keep_mask] == 0))
        True
        """
        X, layout = self._validate_for_transform(X)
        with one_blas_thread(len(X)):
            return self._statistics(X, layout, everything=True)


def _n_columns(X: ArrayLike) -> int | None:
    """Columns of a 2-D array-like; None for anything else."""
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.shape(X)
    return shape[1] if len(shape) == 2 else None


def _check_parameters(estimator: BaseEstimator) -> None:
    """``estimator._parameter_constraints``, checked once per setting of the
    parameters: a transform of one image costs a tenth of what checking them
    does."""
    parameters = tuple(
        (name, type(value), value)
        for name in estimator._parameter_constraints
        for value in [getattr(estimator, name)]
    )
    try:
        hash(parameters)
    except TypeError:  # an unhashable value, invalid anyway: checked directly
        _check_parameters_of.__wrapped__(type(estimator), parameters)
    else:
        _check_parameters_of(type(estimator), parameters)


@lru_cache(maxsize=64)
def _check_parameters_of(estimator_type: type, parameters: tuple) -> None:
    """``_parameter_constraints`` of ``(name, type, value)`` triples."""
    validate_parameter_constraints(
        estimator_type._parameter_constraints,
        {name: value for name, _, value in parameters},
        caller_name=estimator_type.__name__,
    )


def _plain_maps(X: ArrayLike, width: int) -> bool:
    """Whether ``X`` is a finite float ndarray of ``width`` columns and at least
    one row, which ``check_array`` would return as it is (the check of one
    image costs less than a tenth of ``check_array``'s)."""
    return (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] == width
        and X.dtype in (np.float64, np.float32)
        and bool(np.isfinite(X).all())
    )

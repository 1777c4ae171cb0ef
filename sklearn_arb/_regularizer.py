"""BootstrapAttentionRegularizer: zero the scores a bootstrap null explains."""

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import Bunch, Tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ._thresholds import regularize_scores, significance_mask
from .stats import (
    PVALUE_KINDS,
    empirical_pvalues,
    estimate_pi0,
    local_fdr,
    log_scores,
    null_moments,
    z_scores,
)

_THRESHOLD = [Interval(Real, 0, 1, closed="both"), StrOptions({"median"})]


class BootstrapAttentionRegularizer(TransformerMixin, BaseEstimator):
    """Attention Regularization by the Bootstrap (ARB) of ViT attention maps.

    Each attention score is compared with the scores a structureless bootstrap input
    gets from the same model; scores such a null explains are set to 0, the others
    keep their value. Input rows are laid out as ``AttentionExtractor`` emits them:
    ``[observed P | bootstrap 1 P | ... | bootstrap B P]`` (P tokens per map, B =
    ``n_bootstrap``). The equations are on the Method page of the user
    guide (:ref:`method`):

    1. log scores (a score <= 0 is floored at the smallest positive score of its
       image, see :func:`sklearn_arb.stats.log_scores`), standardised by the null's
       mean and standard deviation: ``z`` (:func:`~sklearn_arb.stats.z_scores`);
    2. empirical p-values against the null z
       (:func:`~sklearn_arb.stats.empirical_pvalues`);
    3. pi0, the proportion of null scores (:func:`~sklearn_arb.stats.estimate_pi0`);
    4. local FDR by Lindsey's method (:func:`~sklearn_arb.stats.local_fdr`);
    5. the z-step ``z >= z_threshold``, then the ``method``'s threshold.

    Parameters
    ----------
    n_bootstrap : int, default=1
        Number B of bootstrap maps per image in each input row (the extractor's
        ``n_bootstrap``). The input width must be ``(1 + B) * P``.
    method : {"z", "p", "lfdr", "pi0"}, default="p"
        After the z-step, also zero scores with ``p > alpha`` (``"p"``), with
        ``lfdr > gamma`` (``"lfdr"``), or outside the ``1 - pi0`` most significant
        (``"pi0"``, an automatic threshold); ``"z"`` is the z-step alone.
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
        pi0 then comes out near 1 on real images (see the pi0 page of the user
        guide for the measurements).
    lfdr_null : {"normal", "bootstrap"}, default="normal"
        Null density of the lfdr: standard normal, or the bootstrap z density.
    null : {"pooled", "per_image"}, default="pooled"
        ``"pooled"``: ``fit`` learns one null from the bootstrap maps of all
        training images (moments, sorted null z) and ``transform`` judges every
        image against it. ``"per_image"``: the paper's procedure, each row against
        its own bootstrap maps; ``fit`` only checks and records the layout.
    soft : bool, default=False
        If True, kept scores are shrunk to ``a * (1 - lfdr)``.

    Attributes
    ----------
    n_features_in_ : int
        Input width ``(1 + n_bootstrap) * n_tokens_``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names, when ``X`` has string column names.
    n_tokens_ : int
        Tokens per map, P.
    null_mean_ : float
        Mean of the pooled null log scores (``null="pooled"`` only).
    null_std_ : float
        Their standard deviation (ddof 0; 1 when the null is constant).
    null_z_sorted_ : ndarray of shape (n_images * n_bootstrap * n_tokens_,)
        Pooled null z, sorted (``null="pooled"`` only).

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
    >>> arb = BootstrapAttentionRegularizer(n_bootstrap=1, alpha=0.05).fit(X)
    >>> maps = arb.transform(X)
    >>> maps.shape
    (2, 196)
    >>> bool((maps[:, :10] > 0).all()), int((maps[:, 10:] > 0).sum()) < 40
    (True, True)
    >>> arb.compute_statistics(X).pvalues.shape
    (2, 196)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_bootstrap": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions({"z", "p", "lfdr", "pi0"})],
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
        "lfdr_null": [StrOptions({"normal", "bootstrap"})],
        "null": [StrOptions({"pooled", "per_image"})],
        "soft": ["boolean"],
    }

    def __init__(
        self,
        *,
        n_bootstrap: int = 1,
        method: str = "p",
        alpha: float | str = 0.05,
        gamma: float | str = 0.2,
        z_threshold: float | str = 0.0,
        threshold_kind: str = "value",
        pvalue: str = "one-sided",
        pi0: str | float = "smoother",
        pi0_pvalues: str = "two-sided",
        lfdr_null: str = "normal",
        null: str = "pooled",
        soft: bool = False,
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
        self.lfdr_null = lfdr_null
        self.null = null
        self.soft = soft

    def _n_tokens(self, n_features: int) -> int:
        n_maps = 1 + self.n_bootstrap
        if n_features % n_maps:
            blocks = [f"bootstrap {b} P" for b in range(1, self.n_bootstrap + 1)]
            if len(blocks) > 2:
                blocks[1:-1] = ["..."]
            layout = " | ".join(["observed P", *blocks])
            raise ValueError(
                f"X has {n_features} feature(s) (columns), which cannot be split into "
                f"1 + n_bootstrap = {n_maps} maps of equal width: the layout is "
                f"[{layout}]. "
                "Set n_bootstrap to the extractor's n_bootstrap, or pass X with a "
                f"multiple of {n_maps} columns."
            )
        return n_features // n_maps

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: None = None) -> "BootstrapAttentionRegularizer":
        """Check the layout and, for ``null="pooled"``, learn the pooled null.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps, ``[observed | bootstrap 1 | ... | bootstrap B]`` per row.
        y : None
            Ignored.

        Returns
        -------
        self : BootstrapAttentionRegularizer
            The fitted regularizer.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.n_tokens_ = self._n_tokens(X.shape[1])
        if self.null == "pooled":
            null_logs = log_scores(X)[:, self.n_tokens_ :]
            mean, std = null_moments(null_logs, pooled=True)
            self.null_mean_ = float(mean[0])
            self.null_std_ = float(std[0])
            self.null_z_sorted_ = np.sort(z_scores(null_logs, mean, std), axis=None)
        return self

    def _statistics(self, X: np.ndarray, everything: bool) -> Bunch:
        """The statistics of validated ``X``; only those the thresholds need unless
        ``everything``."""
        n_tokens = self.n_tokens_
        logs = log_scores(X)
        observed_logs, null_logs = logs[:, :n_tokens], logs[:, n_tokens:]
        if self.null == "pooled":
            mean = np.full(X.shape[0], self.null_mean_)
            std = np.full(X.shape[0], self.null_std_)
        else:
            mean, std = null_moments(null_logs)
        stats = Bunch(
            scores=X[:, :n_tokens],
            z=z_scores(observed_logs, mean, std),
            null_z=z_scores(null_logs, mean, std),
            null_mean=mean,
            null_std=std,
        )
        if self.null == "pooled":
            sorted_null_z = self.null_z_sorted_
        else:
            sorted_null_z = np.sort(stats.null_z, axis=1)
        needs_lfdr = everything or self.soft or self.method == "lfdr"
        needs_pi0 = needs_lfdr or self.method == "pi0"
        if everything or needs_pi0 or self.method == "p":
            stats.pvalues = empirical_pvalues(
                stats.z, sorted_null_z, kind=self.pvalue, null_is_sorted=True
            )
        if needs_pi0:
            if isinstance(self.pi0, str):
                stats.pi0 = estimate_pi0(
                    self._pi0_pvalues(stats, sorted_null_z), method=self.pi0
                )
            else:
                stats.pi0 = np.full(X.shape[0], float(self.pi0))
        if needs_lfdr:
            stats.lfdr = local_fdr(
                stats.z,
                stats.pi0,
                null=self.lfdr_null,
                null_z=sorted_null_z,
                null_is_sorted=True,
            )
        stats.keep_mask = significance_mask(
            stats.z,
            method=self.method,
            pvalues=stats.get("pvalues"),
            lfdr=stats.get("lfdr"),
            pi0=stats.get("pi0"),
            alpha=self.alpha,
            gamma=self.gamma,
            z_threshold=self.z_threshold,
            threshold_kind=self.threshold_kind,
        )
        stats.regularized = regularize_scores(
            stats.scores, stats.keep_mask, lfdr=stats.lfdr if self.soft else None
        )
        return stats

    def _pi0_pvalues(self, stats: Bunch, sorted_null_z: np.ndarray) -> np.ndarray:
        """The p-values pi0 is estimated from (``pi0_pvalues``)."""
        if self.pi0_pvalues == "thresholded" or self.pvalue != "one-sided":
            return stats.pvalues  # two-sided already, or asked for
        return empirical_pvalues(
            stats.z, sorted_null_z, kind="two-sided", null_is_sorted=True
        )

    def _validate_for_transform(self, X: ArrayLike) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Regularized observed maps: scores that are not significant set to 0.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps in the layout of ``fit``.

        Returns
        -------
        regularized : ndarray of shape (n_images, n_tokens)
            The observed scores where kept (times ``1 - lfdr`` if ``soft``), else 0;
            same float dtype as ``X``.
        """
        X = self._validate_for_transform(X)
        return self._statistics(X, everything=False).regularized

    def compute_statistics(self, X: ArrayLike) -> Bunch:
        """All the statistics of ARB for each image.

        Parameters
        ----------
        X : array-like of shape (n_images, (1 + n_bootstrap) * n_tokens)
            Attention maps in the layout of ``fit``.

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
        X = self._validate_for_transform(X)
        return self._statistics(X, everything=True)

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
        return _check_feature_names_in(self, input_features)[: self.n_tokens_]

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # Statistics run in float64; the returned maps keep the input's float dtype.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

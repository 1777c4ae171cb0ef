"""The regularisation step: which scores to keep (Method page, step 7)."""

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Method = Literal["z", "p", "lfdr", "pi0"]
ThresholdKind = Literal["value", "quantile"]
Threshold = float | Literal["median"]

# (1 - pi0) * n_tokens may land a rounding error below an integer (0.1 * 10).
_COUNT_ROUNDING = 1e-9


def resolve_threshold(
    threshold: Threshold, statistic: np.ndarray, kind: ThresholdKind = "value"
) -> np.ndarray:
    """Per-image threshold for a statistic, as a column ``(n_images, 1)``.

    Parameters
    ----------
    threshold : float or "median"
        A value (``kind="value"``), a quantile level in [0, 1] of each image's own
        statistic (``kind="quantile"``), or ``"median"`` (the 0.5 quantile,
        whatever ``kind``; the authors' notebooks use it).
    statistic : ndarray of shape (n_images, n_tokens)
        The statistic compared to the threshold.
    kind : {"value", "quantile"}, default="value"

    Returns
    -------
    threshold : ndarray of shape (n_images, 1)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._thresholds import resolve_threshold
    >>> p = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    >>> resolve_threshold("median", p), resolve_threshold(0.25, p, "quantile")
    (array([[0.3]]), array([[0.2]]))
    """
    if isinstance(threshold, str):
        if threshold != "median":
            raise ValueError(
                f"a string threshold must be 'median'; got {threshold!r}. Pass a "
                "number, with threshold_kind='quantile' for another quantile."
            )
        return np.median(statistic, axis=1, keepdims=True)
    if kind == "quantile":
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"a quantile level must lie in [0, 1]; got {threshold}.")
        return np.quantile(statistic, threshold, axis=1, keepdims=True)
    if kind != "value":
        raise ValueError(f"kind must be 'value' or 'quantile'; got {kind!r}.")
    return np.full((statistic.shape[0], 1), float(threshold))


def keep_most_significant(
    pvalues: np.ndarray, pi0: np.ndarray, *, pixels_per_token: int | None = None
) -> np.ndarray:
    """Keep the ``1 - pi0`` most significant scores of each image (the pi0 method).

    With ``q = 1 - pi0`` and P tokens, ``k = floor(q P)`` scores are kept (the
    project's rule), or, with ``pixels_per_token=r``, ``k = floor(q P - q / r) + 1``:
    what the authors' ``q`` percentile of the p-values keeps on maps upsampled so
    that each token is repeated r times (the percentile at position ``q (rP - 1)``
    of the rP sorted values falls in token ``floor(q P - q / r)``; one token even at
    pi0 = 1). A score is kept when its p-value is at most the k-th smallest p-value
    of its image. Tied p-values are kept or dropped together, so the result does not
    depend on token order; ``k = 0`` keeps nothing.

    Parameters
    ----------
    pvalues : ndarray of shape (n_images, n_tokens)
    pi0 : ndarray of shape (n_images,)
    pixels_per_token : int, default=None
        None: ``floor(q P)``; r >= 1: the authors' count on r-fold repeated maps
        (r = patch size squared: 256 for a /16 model).

    Returns
    -------
    keep_mask : ndarray of shape (n_images, n_tokens), bool

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._thresholds import keep_most_significant
    >>> p, pi0 = np.array([[0.5, 0.01, 0.2, 0.9]]), np.array([0.5])
    >>> keep_most_significant(p, pi0)
    array([[False,  True,  True, False]])
    >>> keep_most_significant(p, pi0, pixels_per_token=256)  # floor(2 - 1/512) + 1
    array([[False,  True,  True, False]])
    >>> keep_most_significant(p, np.array([1.0]), pixels_per_token=256)
    array([[False,  True, False, False]])
    """
    n_tokens = pvalues.shape[1]
    kept_fraction = 1.0 - np.asarray(pi0, dtype=np.float64)
    if pixels_per_token is None:
        n_keep = np.floor(kept_fraction * n_tokens + _COUNT_ROUNDING)
    else:
        n_keep = 1 + np.floor(
            kept_fraction * (n_tokens - 1.0 / pixels_per_token) + _COUNT_ROUNDING
        )
    n_keep = np.minimum(n_keep, n_tokens).astype(np.intp)
    kth_smallest = np.take_along_axis(
        np.sort(pvalues, axis=1), np.maximum(n_keep - 1, 0)[:, np.newaxis], axis=1
    )
    return (pvalues <= kth_smallest) & (n_keep > 0)[:, np.newaxis]


class ThresholdSettings(NamedTuple):
    """The thresholds a rule may read (the regularizer's parameters)."""

    alpha: Threshold = 0.05
    gamma: Threshold = 0.2
    threshold_kind: ThresholdKind = "value"
    pixels_per_token: int | None = None


class ThresholdRule(NamedTuple):
    """A method: the statistics it reads, and which scores it keeps."""

    needs: tuple[str, ...]
    keep: Callable[[Mapping[str, np.ndarray], ThresholdSettings], np.ndarray]


def _keep_all(statistics: Mapping[str, np.ndarray], _: ThresholdSettings) -> np.ndarray:
    return np.ones(statistics["z"].shape, dtype=bool)


def _keep_small_p(
    statistics: Mapping[str, np.ndarray], settings: ThresholdSettings
) -> np.ndarray:
    p = statistics["pvalues"]
    return p <= resolve_threshold(settings.alpha, p, settings.threshold_kind)


def _keep_small_lfdr(
    statistics: Mapping[str, np.ndarray], settings: ThresholdSettings
) -> np.ndarray:
    lfdr = statistics["lfdr"]
    return lfdr <= resolve_threshold(settings.gamma, lfdr, settings.threshold_kind)


def _keep_1_minus_pi0(
    statistics: Mapping[str, np.ndarray], settings: ThresholdSettings
) -> np.ndarray:
    return keep_most_significant(
        statistics["pvalues"],
        statistics["pi0"],
        pixels_per_token=settings.pixels_per_token,
    )


# The methods, applied after the z-step; the regularizer's ``method`` options.
THRESHOLD_RULES: dict[str, ThresholdRule] = {
    "z": ThresholdRule((), _keep_all),
    "p": ThresholdRule(("pvalues",), _keep_small_p),
    "lfdr": ThresholdRule(("lfdr",), _keep_small_lfdr),
    "pi0": ThresholdRule(("pvalues", "pi0"), _keep_1_minus_pi0),
}


def significance_mask(
    z: np.ndarray,
    *,
    method: Method = "p",
    pvalues: np.ndarray | None = None,
    lfdr: np.ndarray | None = None,
    pi0: np.ndarray | None = None,
    alpha: Threshold = 0.05,
    gamma: Threshold = 0.2,
    z_threshold: Threshold = 0.0,
    threshold_kind: ThresholdKind = "value",
    pixels_per_token: int | None = None,
) -> np.ndarray:
    """Which scores survive the regularisation step.

    First the z-step keeps ``z_t >= z_threshold``; then the ``method``'s rule
    (:data:`THRESHOLD_RULES`):

    - ``"z"``: the z-step alone;
    - ``"p"``: also ``p_t <= alpha``;
    - ``"lfdr"``: also ``lfdr_t <= gamma``;
    - ``"pi0"``: also the ``1 - pi0`` most significant scores
      (:func:`keep_most_significant`).

    Parameters
    ----------
    z : ndarray of shape (n_images, n_tokens)
    method : {"z", "p", "lfdr", "pi0"}, default="p"
    pvalues, lfdr : ndarray of shape (n_images, n_tokens), default=None
        Needed by ``"p"`` and ``"pi0"``, resp. ``"lfdr"``.
    pi0 : ndarray of shape (n_images,), default=None
        Needed by ``"pi0"``.
    alpha, gamma, z_threshold : float or "median"
        Thresholds (see :func:`resolve_threshold`); ``z_threshold`` is a value or
        ``"median"``, ``alpha`` and ``gamma`` follow ``threshold_kind``.
    threshold_kind : {"value", "quantile"}, default="value"
    pixels_per_token : int, default=None
        The pi0 rule's count (see :func:`keep_most_significant`).

    Returns
    -------
    keep_mask : ndarray of shape (n_images, n_tokens), bool

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._thresholds import significance_mask
    >>> z = np.array([[2.5, 1.0, -0.5]])
    >>> p = np.array([[0.01, 0.2, 0.01]])
    >>> significance_mask(z, method="p", pvalues=p, alpha=0.05)
    array([[ True, False, False]])
    """
    if method not in THRESHOLD_RULES:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, THRESHOLD_RULES))}; got "
            f"{method!r}."
        )
    rule = THRESHOLD_RULES[method]
    statistics = {"z": z, "pvalues": pvalues, "lfdr": lfdr, "pi0": pi0}
    missing = [name for name in rule.needs if statistics[name] is None]
    if missing:
        raise ValueError(
            f"method={method!r} needs {' and '.join(missing)}; pass "
            f"{'them' if len(missing) > 1 else 'it'}."
        )
    settings = ThresholdSettings(alpha, gamma, threshold_kind, pixels_per_token)
    keep = z >= resolve_threshold(z_threshold, z, "value")
    return keep & rule.keep(statistics, settings)


def regularize_scores(
    scores: ArrayLike, keep_mask: np.ndarray, *, lfdr: np.ndarray | None = None
) -> np.ndarray:
    """Zero the scores that are not kept; optionally shrink kept ones by ``1 - lfdr``.

    Parameters
    ----------
    scores : array-like of shape (n_images, n_tokens)
        Observed attention scores.
    keep_mask : ndarray of shape (n_images, n_tokens), bool
    lfdr : ndarray of shape (n_images, n_tokens), default=None
        If given, the soft variant ``a'_t = a_t (1 - lfdr_t)`` on kept scores.

    Returns
    -------
    regularized : ndarray of shape (n_images, n_tokens)
        Same dtype as ``scores`` (floating); a new array.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._thresholds import regularize_scores
    >>> scores = np.array([[0.5, 0.3, 0.2]])
    >>> keep = np.array([[True, False, True]])
    >>> regularize_scores(scores, keep)
    array([[0.5, 0. , 0.2]])
    >>> regularize_scores(scores, keep, lfdr=np.array([[0.5, 0.0, 1.0]]))
    array([[0.25, 0.  , 0.  ]])
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    kept = scores if lfdr is None else scores * (1.0 - lfdr)
    return np.where(keep_mask, kept, 0.0).astype(scores.dtype, copy=False)

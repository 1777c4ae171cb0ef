"""Empirical p-values of observed z against bootstrap null z (Method page, step 4)."""

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ._validation import as_finite_2d, as_sorted_reference

PValueKind = Literal["one-sided", "two-sided", "reference"]
PVALUE_KINDS = ("one-sided", "two-sided", "reference")
# Rows of at most this many values are searched as given (histogram edges,
# Storey's lambdas): sorting them first costs more than it saves.
_FEW_KEYS = 32


def search_rows(sorted_rows: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
    """``np.searchsorted`` of each row of ``values`` in its row of ``sorted_rows``.

    ``sorted_rows`` of one row (or 1-D) is shared by every row of ``values``: one
    vectorised call. Otherwise one call per image, each O(n_values log n_null).
    The values are searched in ascending order (the whole array for a shared
    row, each row otherwise) and the counts put back in place: a binary search
    whose keys come in order takes the branches the previous one took and stays
    in cache, several times faster than for keys in random order.
    """
    if values.shape[-1] <= _FEW_KEYS:  # too few to gain from their order
        return _search_rows_as_given(sorted_rows, values, side)
    if sorted_rows.ndim == 1 or sorted_rows.shape[0] == 1:
        flat = values.ravel()
        order = np.argsort(flat)
        counts = np.empty(flat.shape, dtype=np.intp)
        counts[order] = np.searchsorted(sorted_rows.ravel(), flat[order], side=side)
        return counts.reshape(values.shape)
    order = np.argsort(values, axis=1)
    in_order = np.take_along_axis(values, order, axis=1)
    counts_in_order = np.empty(values.shape, dtype=np.intp)
    for row, (sorted_row, row_values) in enumerate(
        zip(sorted_rows, in_order, strict=True)
    ):
        counts_in_order[row] = np.searchsorted(sorted_row, row_values, side=side)
    counts = np.empty(values.shape, dtype=np.intp)
    np.put_along_axis(counts, order, counts_in_order, axis=1)
    return counts


def _search_rows_as_given(
    sorted_rows: np.ndarray, values: np.ndarray, side: str
) -> np.ndarray:
    if sorted_rows.ndim == 1 or sorted_rows.shape[0] == 1:
        return np.searchsorted(sorted_rows.ravel(), values, side=side)
    counts = np.empty(values.shape, dtype=np.intp)
    for row, (sorted_row, row_values) in enumerate(
        zip(sorted_rows, values, strict=True)
    ):
        counts[row] = np.searchsorted(sorted_row, row_values, side=side)
    return counts


class SortedNull:
    """Null z sorted once, for every p-value definition: each row (one per image,
    or a single row shared by all images) sorted, and its absolute values sorted
    (computed on first use: one-sided p-values do not need them).

    Parameters
    ----------
    signed : ndarray of shape (n_rows, m0)
        Rows sorted ascending.
    absolute : ndarray of shape (n_rows, m0), default=None
        ``np.sort(np.abs(signed), axis=1)`` when already known.
    """

    __slots__ = ("_absolute", "signed")

    def __init__(self, signed: np.ndarray, absolute: np.ndarray | None = None):
        self.signed = signed
        self._absolute = absolute

    @property
    def absolute(self) -> np.ndarray:
        """The absolute values of each row, sorted."""
        if self._absolute is None:
            self._absolute = np.sort(np.abs(self.signed), axis=1)
        return self._absolute


def sort_null(null_z: np.ndarray, *, is_sorted: bool = False) -> SortedNull:
    """:class:`SortedNull` of 2-D finite null z (no checks)."""
    return SortedNull(null_z if is_sorted else np.sort(null_z, axis=1))


def pvalues_from_sorted(
    z: np.ndarray, null: SortedNull, kind: PValueKind = "one-sided"
) -> np.ndarray:
    """p-values of validated ``z`` against a sorted null (no checks): one binary
    search per image for the one- and two-sided p-values, two for the reference."""
    n_null = null.signed.shape[-1]
    if kind == "one-sided":
        n_at_least = n_null - search_rows(null.signed, z, "left")
        return (1.0 + n_at_least) / (1.0 + n_null)
    abs_z = np.abs(z)
    if kind == "two-sided":
        n_at_least = n_null - search_rows(null.absolute, abs_z, "left")
        return (1.0 + n_at_least) / (1.0 + n_null)
    # The authors' reference set R joins |observed z| and |null z|.
    n_at_most = search_rows(np.sort(abs_z, axis=1), abs_z, "right") + search_rows(
        null.absolute, abs_z, "right"
    )
    return 1.0 - n_at_most / (z.shape[1] + n_null)


def pvalues_at_most(
    z: np.ndarray, null: SortedNull, kind: PValueKind, alpha: float
) -> np.ndarray:
    """Whether each p-value of validated ``z`` is at most ``alpha``, exactly as
    ``pvalues_from_sorted(z, null, kind) <= alpha`` is, without the p-values.

    A one- or two-sided p-value ``(1 + c) / (1 + m0)`` grows with the count ``c``
    of null values at least as extreme, so ``p <= alpha`` holds while ``c`` is at
    most the largest count ``k`` that passes, that is where ``z`` (or ``|z|``)
    exceeds the ``(k + 1)``-th largest null value: one critical value per row and
    one comparison per score, no search.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._pvalues import (
    ...     pvalues_at_most, pvalues_from_sorted, sort_null)
    >>> null = sort_null(np.random.default_rng(0).standard_normal((2, 99)))
    >>> z = np.random.default_rng(1).normal(1.0, 1.5, size=(2, 50))
    >>> small = pvalues_at_most(z, null, "one-sided", 0.05)
    >>> bool(np.array_equal(small, pvalues_from_sorted(z, null) <= 0.05))
    True
    """
    if kind not in ("one-sided", "two-sided"):
        raise ValueError(f"kind must be 'one-sided' or 'two-sided'; got {kind!r}.")
    sorted_null = null.signed if kind == "one-sided" else null.absolute
    values = z if kind == "one-sided" else np.abs(z)
    n_null = sorted_null.shape[-1]
    alpha = float(alpha)
    # The largest count that passes, found with the p-values' own arithmetic.
    count = int(np.floor(alpha * (1.0 + n_null))) - 1
    while count < n_null and (1.0 + (count + 1)) / (1.0 + n_null) <= alpha:
        count += 1
    while count >= 0 and (1.0 + count) / (1.0 + n_null) > alpha:
        count -= 1
    if count < 0:
        return np.zeros(values.shape, dtype=bool)
    if count >= n_null:
        return np.ones(values.shape, dtype=bool)
    critical = sorted_null[:, n_null - 1 - count]
    return values > critical[:, np.newaxis]


def pvalue_counts_at_least(
    z: np.ndarray, null: SortedNull, kind: PValueKind, lambdas: np.ndarray
) -> np.ndarray:
    """``#{t : p_t >= lambda_j}`` per row: the counts Storey's pi0 reads, exactly
    as counted from ``pvalues_from_sorted(z, null, kind)``, without the p-values.

    ``p >= lambda`` holds while the count of null values at least as extreme is
    at least the smallest count that reaches ``lambda``, that is where ``z`` (or
    ``|z|``) is at most a critical null value: one search per lambda in each
    row's sorted values.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._pvalues import (
    ...     pvalue_counts_at_least, pvalues_from_sorted, sort_null)
    >>> null = sort_null(np.random.default_rng(0).standard_normal((2, 99)))
    >>> z = np.random.default_rng(1).normal(0.5, 1.5, size=(2, 50))
    >>> lambdas = np.array([0.05, 0.5, 0.95])
    >>> p = pvalues_from_sorted(z, null, "two-sided")
    >>> counts = pvalue_counts_at_least(z, null, "two-sided", lambdas)
    >>> bool(np.array_equal(counts, (p[:, :, None] >= lambdas).sum(axis=1)))
    True
    """
    if kind not in ("one-sided", "two-sided"):
        raise ValueError(f"kind must be 'one-sided' or 'two-sided'; got {kind!r}.")
    sorted_null = null.signed if kind == "one-sided" else null.absolute
    values = np.sort(z if kind == "one-sided" else np.abs(z), axis=1)
    n_null = sorted_null.shape[-1]
    # Per lambda, the smallest count of null values at least as extreme with
    # p >= lambda, found with the p-values' own arithmetic; the critical value
    # is the null value of that rank (+inf: every p reaches lambda; -inf: none).
    columns = []
    for lam in np.asarray(lambdas, dtype=np.float64).tolist():
        least = max(int(np.ceil(lam * (1.0 + n_null))) - 1, 0)
        while least > 0 and (1.0 + (least - 1)) / (1.0 + n_null) >= lam:
            least -= 1
        while least <= n_null and (1.0 + least) / (1.0 + n_null) < lam:
            least += 1
        if least == 0:
            columns.append(np.full(len(sorted_null), np.inf))
        elif least > n_null:
            columns.append(np.full(len(sorted_null), -np.inf))
        else:
            columns.append(sorted_null[:, n_null - least])
    critical = np.broadcast_to(np.stack(columns, axis=1), (len(values), len(columns)))
    return search_rows(values, np.ascontiguousarray(critical), "right")


def empirical_pvalues(
    z: ArrayLike,
    null_z: ArrayLike,
    *,
    kind: PValueKind = "one-sided",
    null_is_sorted: bool = False,
) -> np.ndarray:
    """Empirical p-values of observed z statistics against bootstrap null z.

    With ``m0`` null values per image:

    - ``"one-sided"`` (default, the paper's definition, never 0):
      ``p_t = (1 + #{z0 >= z_t}) / (1 + m0)``; ties count as at least as extreme.
    - ``"two-sided"``: the same with absolute values,
      ``p_t = (1 + #{|z0| >= |z_t|}) / (1 + m0)``; what pi0 is estimated from by
      default (Storey's estimator assumes null p-values uniform on [0, 1], which
      one-sided p-values of tokens attended less than the null are not).
    - ``"reference"`` (the authors' code): two-sided, the observed values join the
      reference set ``R = {|z_t|} U {|z0|}`` and
      ``p_t = 1 - #{r in R : r <= |z_t|} / |R|``.

    Each image's null is sorted once and the observed values are located by binary
    search, so the cost is O((m0 + P) log m0) per image, not O(m0 P).

    Parameters
    ----------
    z : array-like of shape (n_images, n_tokens) or (n_tokens,)
        Observed z statistics.
    null_z : array-like of shape (n_images, m0), (1, m0) or (m0,)
        Null z statistics: one row per image (per-image null), or a single row
        shared by all images (pooled null).
    kind : {"one-sided", "two-sided", "reference"}, default="one-sided"
        The p-value definition.
    null_is_sorted : bool, default=False
        Set True when every row of ``null_z`` is already sorted ascending, to skip
        the sort (for a large pooled null used many times).

    Returns
    -------
    pvalues : ndarray of shape (n_images, n_tokens)

    Examples
    --------
    >>> from sklearn_arb.stats import empirical_pvalues
    >>> empirical_pvalues([[2.0, 0.0, -1.0]], [[1.0, 0.0, -0.5]])
    array([[0.25, 0.75, 1.  ]])
    >>> empirical_pvalues([[2.0, 0.0, -1.0]], [[1.0, 0.0, -0.5]], kind="two-sided")
    array([[0.25, 1.  , 0.5 ]])
    >>> empirical_pvalues([[2.0, 0.0, -1.0]], [[1.0, 0.0, -0.5]], kind="reference")
    array([[0.        , 0.66666667, 0.16666667]])
    """
    if kind not in PVALUE_KINDS:
        raise ValueError(
            f"kind must be one of {', '.join(map(repr, PVALUE_KINDS))}; got {kind!r}."
        )
    z = as_finite_2d(z, "z")
    sorted_null_z = as_sorted_reference(
        null_z,
        "null_z",
        z.shape[0],
        "null_z has {n_rows} rows but z has {n_images} images; pass one null row "
        "per image, or a single (pooled) row.",
        null_is_sorted,
    )
    return pvalues_from_sorted(z, sort_null(sorted_null_z, is_sorted=True), kind)

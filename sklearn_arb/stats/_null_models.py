"""The null each image is judged against: its own bootstrap maps, or a pooled null.

The two nulls of :class:`~sklearn_arb.BootstrapAttentionRegularizer` differ in one
place only: where the null moments and the null z the p-values are counted against
come from. :class:`PerImageNull` takes them from each row's own bootstrap log
scores; :class:`FittedPooledNull` from one :class:`PooledNull` learnt by ``fit``,
shared by every image (its sorted null z, or its histogram beyond the exact size).
Each builds a :class:`NullReference` for a batch of images, which everything after
z reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._pooled_null import PooledNull
from ._pvalues import (
    PValueKind,
    SortedNull,
    pvalue_counts_at_least,
    pvalues_at_most,
    pvalues_from_sorted,
    sort_null,
)
from ._zscores import null_moments_unchecked


@dataclass(frozen=True)
class NullReference:
    """The null of a batch of ``n`` images.

    Attributes
    ----------
    mean, std : ndarray of shape (n,)
        The null moments each image's log scores are standardised by.
    null_z : ndarray of shape (n, m)
        The batch's own bootstrap log scores standardised the same way (``m`` is 0
        for observed maps alone).
    sorted_null : SortedNull or None
        Sorted null z: one row per image, or one row shared by all; None when
        p-values are read from ``histogram``.
    histogram : PooledNull or None
        The pooled state whose histogram gives the p-values (``sorted_null`` None).
    """

    mean: np.ndarray
    std: np.ndarray
    null_z: np.ndarray
    sorted_null: SortedNull | None
    histogram: PooledNull | None

    def z(self, logs: np.ndarray) -> np.ndarray:
        """``(logs - mean) / std`` per row."""
        return (logs - self.mean[:, np.newaxis]) / self.std[:, np.newaxis]

    def pvalues(
        self, z: np.ndarray, observed_logs: np.ndarray, kind: PValueKind
    ) -> np.ndarray:
        """p-values of the observed ``z`` (from ``observed_logs``) of ``kind``."""
        if self.sorted_null is None:
            return self.histogram.histogram_pvalues(observed_logs, kind)
        return pvalues_from_sorted(z, self.sorted_null, kind)

    def pvalue_counts_at_least(
        self, z: np.ndarray, kind: PValueKind, lambdas: np.ndarray
    ) -> np.ndarray | None:
        """``#{t : p_t >= lambda_j}`` per image for :meth:`pvalues` of ``kind``
        (Storey's pi0 reads no more); None where only the p-values tell (the
        histogram, the reference p-values)."""
        if self.sorted_null is None or kind == "reference":
            return None
        return pvalue_counts_at_least(z, self.sorted_null, kind, lambdas)

    def pvalues_at_most(
        self, z: np.ndarray, observed_logs: np.ndarray, kind: PValueKind, alpha: float
    ) -> np.ndarray:
        """Whether each p-value of :meth:`pvalues` is at most ``alpha`` (from
        critical values, without the p-values, where the null is sorted)."""
        if self.sorted_null is None or kind == "reference":
            return self.pvalues(z, observed_logs, kind) <= float(alpha)
        return pvalues_at_most(z, self.sorted_null, kind, alpha)


class PerImageNull:
    """Each image against its own bootstrap maps (the paper's procedure).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._null_models import PerImageNull
    >>> reference = PerImageNull().reference(np.log([[1.0, 3.0], [2.0, 2.0]]))
    >>> reference.std.tolist(), reference.sorted_null.signed.shape
    ([0.5493061443340549, 1.0], (2, 2))
    """

    needs_bootstrap_maps: ClassVar[bool] = True

    def reference(self, null_logs: np.ndarray) -> NullReference:
        """The null of images whose bootstrap log scores are the rows of
        ``null_logs`` (n, B P)."""
        mean, std = null_moments_unchecked(null_logs)
        null_z = (null_logs - mean[:, np.newaxis]) / std[:, np.newaxis]
        return NullReference(mean, std, null_z, sort_null(null_z), None)


@dataclass(frozen=True)
class FittedPooledNull:
    """Every image against one pooled null learnt by ``fit``.

    Parameters
    ----------
    state : PooledNull
        The pooled null's state.
    sorted_null : SortedNull or None
        Its null z (standardised by its own moments), sorted, as one shared row;
        None beyond the exact size (p-values from the histogram).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._null_models import FittedPooledNull
    >>> from sklearn_arb.stats._pooled_null import PooledNull
    >>> pooled = FittedPooledNull.of(PooledNull.from_logs([0.0, 2.0], max_exact=9))
    >>> reference = pooled.reference(np.empty((3, 0)))  # observed maps alone
    >>> reference.mean.tolist(), reference.sorted_null.signed.tolist()
    ([1.0, 1.0, 1.0], [[-1.0, 1.0]])
    """

    state: PooledNull
    sorted_null: SortedNull | None

    needs_bootstrap_maps: ClassVar[bool] = False

    @classmethod
    def of(cls, state: PooledNull) -> FittedPooledNull:
        """The pooled null of ``state``, its exact null z sorted once."""
        if state.sorted_logs is None:
            return cls(state, None)
        null_z = (state.sorted_logs - state.mean) / state.std
        return cls(state, sort_null(null_z[np.newaxis], is_sorted=True))

    def reference(self, null_logs: np.ndarray) -> NullReference:
        """The null of images whose bootstrap log scores (if any; they do not
        change the null) are the rows of ``null_logs`` (n, m)."""
        n_images = len(null_logs)
        mean = np.full(n_images, self.state.mean)
        std = np.full(n_images, self.state.std)
        null_z = (null_logs - self.state.mean) / self.state.std
        return NullReference(mean, std, null_z, self.sorted_null, self.state)

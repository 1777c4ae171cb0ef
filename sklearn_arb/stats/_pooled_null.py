"""A pooled null that merges: exact moments, a fixed-grid histogram, and the
exact sorted null while it is small (Method page, steps 3 and 4).

The pooled null of ``BootstrapAttentionRegularizer(null="pooled")`` is the set of
all bootstrap log scores of the training images. Its state here does not grow with
the number of images beyond ``max_exact`` values:

- the count, mean and sum of squared deviations (M2) of the null log scores,
  merged exactly by Chan, Golub and LeVeque's pairwise update (equal to a
  two-pass computation up to floating-point rounding);
- a histogram of the null log scores on a fixed grid (``HISTOGRAM_BINS`` bins of
  width ``HISTOGRAM_WIDTH`` from ``HISTOGRAM_LOG_MIN`` to ``HISTOGRAM_LOG_MAX``, one
  underflow and one overflow bin). The grid does not depend on the data, so
  histograms of disjoint chunks add up exactly, in any order;
- the sorted null log scores themselves while there are at most ``max_exact`` of
  them (their merge is order-free too); p-values are then exact;
- a 64-bit digest of each image's bootstrap block (8 bytes per image), so that a
  merge of states that share images, which would count their null twice, is
  refused.

Beyond ``max_exact`` values the p-values are read from the histogram,
conservatively: a null value in the bin of the observed one counts as at least as
extreme. With ``m0`` null values and ``c`` the count of that bin,
``0 <= p_hist - p_exact <= c / (1 + m0)`` for one-sided p-values; two-sided and
reference p-values have two boundary bins, so ``c`` is their sum (at most twice
the largest bin).
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xxhash
from numpy.typing import ArrayLike

from ._pvalues import PValueKind, search_rows
from ._zscores import _ZERO_STD_RTOL

HISTOGRAM_LOG_MIN = -128.0
HISTOGRAM_LOG_MAX = 32.0
HISTOGRAM_BINS = 2**18
HISTOGRAM_WIDTH = (HISTOGRAM_LOG_MAX - HISTOGRAM_LOG_MIN) / HISTOGRAM_BINS


def histogram_bin(log_scores: np.ndarray) -> np.ndarray:
    """Bin index of each log score: 0 below ``HISTOGRAM_LOG_MIN``, ``1..BINS`` on
    the grid, ``BINS + 1`` at or above ``HISTOGRAM_LOG_MAX``."""
    position = np.floor((log_scores - HISTOGRAM_LOG_MIN) / HISTOGRAM_WIDTH)
    return (np.clip(position, -1, HISTOGRAM_BINS) + 1).astype(np.intp)


def block_digests(null_logs: np.ndarray) -> np.ndarray:
    """Sorted uint64 digests (xxh3-64) of the rows of 2-D null log scores, one
    row per image; rows whose values are all equal are left out (the maps of
    every constant image of a colour are alike, so they name no image).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._pooled_null import block_digests
    >>> logs = np.log([[0.1, 0.2], [0.3, 0.4], [0.1, 0.2], [0.5, 0.5]])
    >>> digests = block_digests(logs)
    >>> digests.dtype, digests.size, np.unique(digests).size
    (dtype('uint64'), 3, 2)
    """
    rows = np.ascontiguousarray(null_logs, dtype=np.float64)
    informative = rows.min(axis=1) < rows.max(axis=1) if rows.size else []
    digests = [xxhash.xxh3_64_intdigest(row) for row in rows[informative]]
    return np.sort(np.asarray(digests, dtype=np.uint64))


def _check_sorted_logs(
    sorted_logs: np.ndarray, histogram: np.ndarray, mean: float, m2: float, abs_max
) -> None:
    """ValueError unless the sorted null log scores are the values the histogram
    counts and have the stated moments (up to the rounding of a merge)."""
    if sorted_logs.size == 0:
        return
    recounted = np.bincount(histogram_bin(sorted_logs), minlength=HISTOGRAM_BINS + 2)
    mean_again = sorted_logs.mean()
    m2_again = np.sum((sorted_logs - mean_again) ** 2)
    scale = max(abs_max, 1.0)
    if (
        not np.array_equal(recounted, histogram)
        or np.abs(sorted_logs).max() != abs_max
        or abs(mean_again - mean) > 1e-9 * scale
        or abs(m2_again - m2) > 1e-9 * (m2 + scale * scale * sorted_logs.size)
    ):
        raise ValueError(
            "the pooled null state's sorted null disagrees with its histogram or "
            "moments (the file was altered or damaged); fit the null again"
        )


@dataclass(frozen=True, eq=False)
class PooledNull:
    """Mergeable state of a pooled null of log scores (see the module docstring).

    Attributes
    ----------
    count : int
        Number m0 of null log scores.
    mean : float
        Their mean.
    m2 : float
        Their sum of squared deviations from the mean.
    abs_max : float
        Their largest absolute value (to tell a constant null from rounding).
    histogram : ndarray of shape (HISTOGRAM_BINS + 2,), int64
        Counts per bin, underflow first and overflow last.
    sorted_logs : ndarray of shape (count,) or None
        The null log scores sorted, while ``count <= max_exact``.
    image_digests : ndarray of shape (n_images,), uint64
        Sorted digests of the images' bootstrap blocks (:func:`block_digests`).
        Two states that share one hold the same image (for an extractor with
        an int ``random_state``, also the same image content given twice) and
        are not merged.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats import PooledNull
    >>> logs = np.log([[0.1, 0.2, 0.3], [0.2, 0.4, 0.1]])
    >>> a = PooledNull.from_logs(logs[:1], max_exact=10)
    >>> b = PooledNull.from_logs(logs[1:], max_exact=10)
    >>> merged = a.merge(b, max_exact=10)
    >>> merged.count, merged.image_digests.size
    (6, 2)
    >>> a.merge(merged, max_exact=10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The pooled nulls share 1 image(s) (identical bootstrap maps): ...
    """

    count: int
    mean: float
    m2: float
    abs_max: float
    histogram: np.ndarray
    sorted_logs: np.ndarray | None
    image_digests: np.ndarray

    @classmethod
    def from_logs(cls, null_logs: ArrayLike, max_exact: int) -> "PooledNull":
        """The state of finite null log scores, one row per image (a 1-D array
        is one image)."""
        rows = np.asarray(null_logs, dtype=np.float64)
        rows = rows.reshape(-1, rows.shape[-1]) if rows.ndim else rows.reshape(1, 1)
        logs = rows.ravel()
        if logs.size == 0:
            return cls.empty()
        mean = logs.mean()
        histogram = np.bincount(histogram_bin(logs), minlength=HISTOGRAM_BINS + 2)
        return cls(
            count=logs.size,
            mean=float(mean),
            m2=float(np.sum((logs - mean) ** 2)),
            abs_max=float(np.abs(logs).max()),
            histogram=histogram.astype(np.int64),
            sorted_logs=np.sort(logs) if logs.size <= max_exact else None,
            image_digests=block_digests(rows),
        )

    @classmethod
    def empty(cls) -> "PooledNull":
        """The state of no null value (the identity of :meth:`merge`)."""
        histogram = np.zeros(HISTOGRAM_BINS + 2, np.int64)
        return cls(0, 0.0, 0.0, 0.0, histogram, None, np.zeros(0, np.uint64))

    def merge(self, other: "PooledNull", max_exact: int) -> "PooledNull":
        """The state of the union of two disjoint sets of null values; a
        ValueError when the two share an image (or are the same state)."""
        shared = np.intersect1d(self.image_digests, other.image_digests)
        if shared.size or (self is other and self.count):
            raise ValueError(
                f"The pooled nulls share {max(shared.size, 1)} image(s) (identical "
                "bootstrap maps): merging them would count their null twice. "
                "Merge nulls fitted on disjoint images."
            )
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        sorted_logs = None
        if (
            count <= max_exact
            and self.sorted_logs is not None
            and other.sorted_logs is not None
        ):
            sorted_logs = np.sort(np.concatenate([self.sorted_logs, other.sorted_logs]))
        return PooledNull(
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            abs_max=max(self.abs_max, other.abs_max),
            histogram=self.histogram + other.histogram,
            sorted_logs=sorted_logs,
            image_digests=np.sort(
                np.concatenate([self.image_digests, other.image_digests])
            ),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as plain arrays (for ``np.savez``; no pickle needed): the
        scalars, the histogram's grid and its nonzero bins, the sorted null, the
        images' digests.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_arb.stats._pooled_null import PooledNull
        >>> state = PooledNull.from_logs(np.log([0.1, 0.2, 0.3]), max_exact=10)
        >>> again = PooledNull.from_arrays(state.to_arrays())
        >>> again.count, bool(np.array_equal(again.histogram, state.histogram))
        (3, True)
        """
        (bins,) = np.nonzero(self.histogram)
        arrays = {
            "count": np.int64(self.count),
            "mean": np.float64(self.mean),
            "m2": np.float64(self.m2),
            "abs_max": np.float64(self.abs_max),
            "histogram_grid": np.array(
                [HISTOGRAM_LOG_MIN, HISTOGRAM_LOG_MAX, HISTOGRAM_BINS]
            ),
            "histogram_bins": bins.astype(np.int64),
            "histogram_counts": self.histogram[bins],
            "image_digests": self.image_digests,
        }
        if self.sorted_logs is not None:
            arrays["sorted_logs"] = self.sorted_logs
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "PooledNull":
        """The state :meth:`to_arrays` wrote; a ValueError naming what is wrong
        where the arrays are not such a state (missing, of another grid,
        inconsistent counts, a sorted null that is not the histogram's values)."""
        try:
            grid = np.asarray(arrays["histogram_grid"], dtype=np.float64)
            count = int(arrays["count"])
            scalars = [float(arrays[name]) for name in ("mean", "m2", "abs_max")]
            bins = np.asarray(arrays["histogram_bins"])
            counts = np.asarray(arrays["histogram_counts"])
            digests = np.asarray(arrays["image_digests"])
        except KeyError as exc:
            raise ValueError(f"the pooled null state lacks {exc}") from None
        if grid.tolist() != [HISTOGRAM_LOG_MIN, HISTOGRAM_LOG_MAX, HISTOGRAM_BINS]:
            raise ValueError(
                f"the pooled null's histogram grid {grid.tolist()} is not this "
                "version's; fit the null again with this version"
            )
        if (
            bins.shape != counts.shape
            or bins.ndim != 1
            or bins.dtype.kind != "i"
            or counts.dtype.kind != "i"
            or np.any((bins < 0) | (bins > HISTOGRAM_BINS + 1) | (counts < 0))
            or counts.sum() != count
            or not np.all(np.isfinite(scalars))
            or scalars[1] < 0
            or digests.ndim != 1
            or digests.dtype != np.uint64
            or np.any(digests[1:] < digests[:-1])
        ):
            raise ValueError(
                "the pooled null state is inconsistent (its histogram does not "
                "hold its count, a moment is not finite, or its image digests are "
                "not sorted uint64)"
            )
        histogram = np.zeros(HISTOGRAM_BINS + 2, np.int64)
        histogram[bins] = counts
        sorted_logs = arrays.get("sorted_logs")
        if sorted_logs is not None:
            sorted_logs = np.asarray(sorted_logs, dtype=np.float64)
            if sorted_logs.shape != (count,) or np.any(np.diff(sorted_logs) < 0):
                raise ValueError(
                    "the pooled null state's sorted null does not hold its count "
                    "of sorted values"
                )
            _check_sorted_logs(sorted_logs, histogram, *scalars)
        return cls(count, *scalars, histogram, sorted_logs, digests)

    @property
    def std(self) -> float:
        """Standard deviation (ddof 0); 1 for a null constant up to rounding,
        or for no null value."""
        if self.count == 0:
            return 1.0
        std = float(np.sqrt(self.m2 / self.count))
        return 1.0 if std <= _ZERO_STD_RTOL * self.abs_max else std

    def pvalue_bound(self, kind: PValueKind) -> float:
        """Largest ``p_hist - p_exact`` of :meth:`histogram_pvalues` (0 <= it)."""
        bins = 1 if kind == "one-sided" else 2
        return bins * int(self.histogram.max()) / (1 + self.count)

    def histogram_pvalues(
        self, observed_logs: np.ndarray, kind: PValueKind
    ) -> np.ndarray:
        """p-values of observed log scores (n_images, P) read from the histogram.

        The same definitions as :func:`~sklearn_arb.stats.empirical_pvalues` on
        ``z = (L - mean) / std``; each count includes the whole bin of its
        boundary, so ``p_exact <= p <= p_exact + c / (1 + m0)`` (``P + m0`` for
        ``"reference"``), ``c`` the count of the boundary bin(s).
        """
        # at_least[b]: null values in bins >= b; at_most[b]: in bins <= b.
        at_least = np.concatenate([np.cumsum(self.histogram[::-1])[::-1], [0]])
        at_most = np.cumsum(self.histogram)
        if kind == "one-sided":
            n_at_least = at_least[histogram_bin(observed_logs)]
            return (1.0 + n_at_least) / (1.0 + self.count)
        distance = np.abs(observed_logs - self.mean)
        n_beyond = np.minimum(
            at_least[histogram_bin(self.mean + distance)]
            + at_most[histogram_bin(self.mean - distance)],
            self.count,
        )
        if kind == "two-sided":
            return (1.0 + n_beyond) / (1.0 + self.count)
        # The authors' reference set joins |observed z| and |null z|; the null
        # values within |z| are all but those beyond it.
        abs_z = distance / self.std
        n_observed = search_rows(np.sort(abs_z, axis=1), abs_z, "right")
        n_at_most = n_observed + (self.count - n_beyond)
        return 1.0 - n_at_most / (observed_logs.shape[1] + self.count)

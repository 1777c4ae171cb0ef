"""Where the attention falls inside the region of interest (ROI).

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

import numpy as np

from ._validation import (
    check_evidence,
    check_maps,
    check_roi_masks,
    require_nonempty,
)


def mean_in_roi(values: np.ndarray, roi_masks: np.ndarray) -> np.ndarray:
    """Mean of each image's values over its ROI.

    Parameters
    ----------
    values : array-like of shape (n_images, n_tokens) or (n_images, height, width)
        Per-token (or per-pixel) values, e.g. z statistics.
    roi_masks : array-like of bool, same shape as ``values``
        True in the ROI; every image needs at least one ROI value.

    Returns
    -------
    roi_means : ndarray of shape (n_images,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.metrics import mean_in_roi
    >>> mean_in_roi([[1.0, 2.0, 6.0]], [[False, True, True]])
    array([4.])
    """
    values = check_maps(values, "values")
    roi_masks = check_roi_masks(roi_masks, values.shape)
    roi_counts = roi_masks.sum(axis=1)
    require_nonempty(roi_counts, "ROI value")
    return np.where(roi_masks, values, 0.0).sum(axis=1) / roi_counts


def select_by_roi_z(
    z: np.ndarray, roi_masks: np.ndarray, *, max_abs_mean_z: float = 1.0
) -> np.ndarray:
    """Images whose injected noise the model treated as noise: |mean z in ROI| <= 1.

    The paper keeps only such perturbed images: a ROI whose mean z statistic is far
    from the bootstrap null's 0 is noise the model already read as structure
    (or ignored entirely), so suppressing it says little about the method.

    Parameters
    ----------
    z : array-like of shape (n_images, n_tokens) or (n_images, height, width)
        z statistics of the observed maps (``compute_statistics(X).z`` of the
        regularizer, ideally with a per-image null as in the paper).
    roi_masks : array-like of bool, same shape as ``z``
        True in the ROI.
    max_abs_mean_z : float, default=1.0
        Keep images with ``abs(mean z in ROI) <= max_abs_mean_z``.

    Returns
    -------
    selected : ndarray of shape (n_images,), dtype=bool

    Examples
    --------
    >>> from sklearn_arb.metrics import select_by_roi_z
    >>> z = [[3.0, 0.5, -0.5], [3.0, 2.0, 2.5]]
    >>> roi = [[False, True, True], [False, True, True]]
    >>> select_by_roi_z(z, roi)
    array([ True, False])
    """
    return np.abs(mean_in_roi(z, roi_masks)) <= max_abs_mean_z


def mean_percentile_in_roi(
    maps: np.ndarray, roi_masks: np.ndarray, *, reference: np.ndarray | None = None
) -> np.ndarray:
    """Mean percentile of the ROI scores among the rest of the reference map.

    For each ROI value v: ``100 * #{rest values of the reference < v} / #rest``,
    averaged over the ROI. Score the map before regularisation with the default
    ``reference=None`` (the map itself) and the map after it with
    ``reference=maps_before``, as the paper does, so both are read against the same
    original scores. A zeroed score has percentile 0.

    A signed map (CDAM) is read by its positive part, the evidence for its target,
    in ``maps`` and ``reference`` alike: a negative score counts as 0, so a zeroed
    score still has percentile 0 rather than ranking above the negative scores.
    Positive maps (attention, rollout) are unaffected.

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
        Attention maps to score.
    roi_masks : array-like of bool, same shape as ``maps``
        True in the ROI; each image needs ROI and non-ROI values.
    reference : array-like, same shape as ``maps``, default=None
        The maps whose non-ROI values are the reference; None uses ``maps``.

    Returns
    -------
    mean_percentiles : ndarray of shape (n_images,)
        In [0, 100].

    Examples
    --------
    >>> from sklearn_arb.metrics import mean_percentile_in_roi
    >>> before = [[0.1, 0.2, 0.3, 0.4, 0.25]]
    >>> after = [[0.0, 0.2, 0.3, 0.4, 0.0]]
    >>> roi = [[False, False, False, True, True]]
    >>> mean_percentile_in_roi(before, roi)  # 0.4 beats 3 of 3, 0.25 beats 2
    array([83.33333333])
    >>> mean_percentile_in_roi(after, roi, reference=before)
    array([50.])
    """
    maps = check_evidence(maps)
    reference = maps if reference is None else check_evidence(reference, "reference")
    if reference.shape != maps.shape:
        raise ValueError(
            f"reference has shape {reference.shape} but maps {maps.shape}; pass the "
            "maps before regularisation of the same images."
        )
    roi_masks = check_roi_masks(roi_masks, maps.shape)
    n_values = maps.shape[1]
    roi_counts = roi_masks.sum(axis=1)
    rest_counts = n_values - roi_counts
    require_nonempty(roi_counts, "ROI value")
    require_nonempty(rest_counts, "value outside the ROI")

    # Count the rest values below each query for all images at once: sort queries
    # and rest values together (queries first, so ties do not count as below) and
    # count the rest values that precede each query.
    rest_values = np.where(roi_masks, np.inf, reference)
    combined = np.concatenate([maps, rest_values], axis=1)
    is_rest = np.concatenate([np.zeros_like(roi_masks), ~roi_masks], axis=1)
    order = np.argsort(combined, axis=1, kind="stable")
    rest_in_order = np.take_along_axis(is_rest, order, axis=1).astype(np.int64)
    rest_before = np.cumsum(rest_in_order, axis=1) - rest_in_order
    n_below = np.empty_like(rest_before)
    np.put_along_axis(n_below, order, rest_before, axis=1)
    percentiles = 100.0 * n_below[:, :n_values] / rest_counts[:, np.newaxis]
    return np.where(roi_masks, percentiles, 0.0).sum(axis=1) / roi_counts


def nonzero_percentage_in_roi(maps: np.ndarray, roi_masks: np.ndarray) -> np.ndarray:
    """Percentage of the ROI scores that are not zero.

    A signed map (CDAM) is read by its positive part: the percentage of the ROI
    with evidence for the target (a negative score counts as 0).

    Parameters
    ----------
    maps : array-like of shape (n_images, n_tokens) or (n_images, height, width)
        Attention maps (100 everywhere before regularisation: softmax is > 0).
    roi_masks : array-like of bool, same shape as ``maps``
        True in the ROI; every image needs at least one ROI value.

    Returns
    -------
    nonzero_percentages : ndarray of shape (n_images,)
        In [0, 100].

    Examples
    --------
    >>> from sklearn_arb.metrics import nonzero_percentage_in_roi
    >>> nonzero_percentage_in_roi([[0.0, 0.3, 0.0, 0.2]], [[True, True, True, False]])
    array([33.33333333])
    """
    maps = check_evidence(maps)
    roi_masks = check_roi_masks(roi_masks, maps.shape)
    roi_counts = roi_masks.sum(axis=1)
    require_nonempty(roi_counts, "ROI value")
    return 100.0 * (roi_masks & (maps != 0)).sum(axis=1) / roi_counts

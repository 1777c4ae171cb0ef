"""How much attention regularisation removes from the ROI and keeps elsewhere.

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

import numpy as np

from ._validation import check_evidence, check_roi_masks


def _kept_fraction(
    maps_before, maps_after, region_masks, no_attention_value: float
) -> np.ndarray:
    """sum_region A' / sum_region A per image, ``no_attention_value`` where 0 / 0.

    A region with no attention before (empty, or all scores 0) has nothing to
    remove or keep (regularisation only zeroes scores), so each metric defines its
    best value there instead of 0 / 0.
    """
    before = np.where(region_masks, maps_before, 0.0).sum(axis=1)
    after = np.where(region_masks, maps_after, 0.0).sum(axis=1)
    no_attention = before == 0
    kept = after / np.where(no_attention, 1.0, before)
    return np.where(no_attention, no_attention_value, kept)


def _check(maps_before, maps_after, roi_masks):
    maps_before = check_evidence(maps_before, "maps_before")
    maps_after = check_evidence(maps_after, "maps_after")
    if maps_after.shape != maps_before.shape:
        raise ValueError(
            f"maps_after has shape {maps_after.shape} but maps_before "
            f"{maps_before.shape}; pass the same images before and after "
            "regularisation."
        )
    return maps_before, maps_after, check_roi_masks(roi_masks, maps_before.shape)


def sensitivity(
    maps_before: np.ndarray, maps_after: np.ndarray, roi_masks: np.ndarray
) -> np.ndarray:
    """Share of the ROI's (noise) attention removed: ``1 - sum_ROI A' / sum_ROI A``.

    1 when the noise is fully removed, 0 when it is untouched. An image whose ROI
    holds no attention before regularisation (an empty ROI, or all scores zero)
    has nothing left to remove: its sensitivity is defined as 1.

    A signed map (CDAM) is read by its positive part, the evidence for its target
    (a negative score counts as 0), before and after alike: the sums of signed
    scores could cancel or change sign, and the ratio would leave [0, 1].

    Parameters
    ----------
    maps_before : array-like of shape (n_images, n_tokens) or \
(n_images, height, width)
        Attention maps before regularisation (A).
    maps_after : array-like, same shape
        The same maps after regularisation (A').
    roi_masks : array-like of bool, same shape
        True in the ROI (the injected noise).

    Returns
    -------
    sensitivities : ndarray of shape (n_images,)

    Examples
    --------
    >>> from sklearn_arb.metrics import sensitivity
    >>> before = [[0.1, 0.3, 0.4, 0.2]]
    >>> after = [[0.1, 0.0, 0.4, 0.0]]
    >>> sensitivity(before, after, [[False, True, False, True]])
    array([1.])
    >>> sensitivity(before, after, [[True, True, False, False]])
    array([0.75])
    """
    maps_before, maps_after, roi_masks = _check(maps_before, maps_after, roi_masks)
    return 1.0 - _kept_fraction(maps_before, maps_after, roi_masks, 0.0)


def specificity(
    maps_before: np.ndarray, maps_after: np.ndarray, roi_masks: np.ndarray
) -> np.ndarray:
    """Share of the attention outside the ROI kept: ``sum_rest A' / sum_rest A``.

    1 when the signal outside the ROI is intact. An image with no attention outside
    the ROI before regularisation has nothing to lose: its specificity is 1.
    A signed map (CDAM) is read by its positive part, as in :func:`sensitivity`.

    Parameters
    ----------
    maps_before : array-like of shape (n_images, n_tokens) or \
(n_images, height, width)
        Attention maps before regularisation (A).
    maps_after : array-like, same shape
        The same maps after regularisation (A').
    roi_masks : array-like of bool, same shape
        True in the ROI (the injected noise).

    Returns
    -------
    specificities : ndarray of shape (n_images,)

    Examples
    --------
    >>> from sklearn_arb.metrics import specificity
    >>> before = [[0.1, 0.3, 0.4, 0.2]]
    >>> after = [[0.1, 0.0, 0.4, 0.0]]
    >>> specificity(before, after, [[False, True, False, True]])
    array([1.])
    >>> specificity(before, after, [[False, False, True, True]])
    array([0.25])
    """
    maps_before, maps_after, roi_masks = _check(maps_before, maps_after, roi_masks)
    return _kept_fraction(maps_before, maps_after, ~roi_masks, 1.0)

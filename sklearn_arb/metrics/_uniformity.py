"""Signed RMSD: how far p-values are from uniform (Yao & Ochoa 2023).

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

import numpy as np

from ._validation import check_maps, check_roi_masks, require_nonempty


def pvalue_srmsd(pvalues: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Signed root mean square deviation of each image's p-values from uniform.

    With the n p-values sorted, p_(k), against the uniform quantiles
    u_k = (k - 0.5) / n: ``sRMSD = sign * sqrt(mean_k (p_(k) - u_k)^2)``, the sign
    positive when the median p-value is <= 0.5 (p-values piled towards 0, i.e.
    signal), negative otherwise. 0 for perfectly uniform p-values; at most
    ``1 / sqrt(3)`` in magnitude.

    Parameters
    ----------
    pvalues : array-like of shape (n_images, n_tokens) or (n_images, height, width)
        p-values in [0, 1].
    masks : array-like of bool, same shape, default=None
        Use only these p-values of each image (e.g. the ROI, as in the paper's
        Fig. S7); None uses all. Every image needs at least one.

    Returns
    -------
    srmsd : ndarray of shape (n_images,)

    Examples
    --------
    >>> from sklearn_arb.metrics import pvalue_srmsd
    >>> pvalue_srmsd([[0.125, 0.375, 0.625, 0.875], [0.0, 0.25, 0.5, 0.75]])
    array([0.   , 0.125])
    """
    pvalues = check_maps(pvalues, "pvalues")
    if np.any((pvalues < 0) | (pvalues > 1)):
        raise ValueError("pvalues must lie in [0, 1]; pass p-values, not scores.")
    if masks is None:
        masks = np.ones(pvalues.shape, dtype=bool)
    masks = check_roi_masks(masks, pvalues.shape, "masks")
    counts = masks.sum(axis=1)
    require_nonempty(counts, "p-value in the mask")

    # Masked-out values sort to the end (as 2 > 1), so the first counts[i] entries
    # of row i are its sorted p-values.
    sorted_pvalues = np.sort(np.where(masks, pvalues, 2.0), axis=1)
    ranks = np.arange(pvalues.shape[1])[np.newaxis, :]
    in_use = ranks < counts[:, np.newaxis]
    uniform = (ranks + 0.5) / counts[:, np.newaxis]
    squared = np.where(in_use, (sorted_pvalues - uniform) ** 2, 0.0)
    rmsd = np.sqrt(squared.sum(axis=1) / counts)
    rows = np.arange(pvalues.shape[0])
    median = 0.5 * (
        sorted_pvalues[rows, (counts - 1) // 2] + sorted_pvalues[rows, counts // 2]
    )
    return np.where(median <= 0.5, rmsd, -rmsd)

"""The suppression factor D over a set of images.

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params


@validate_params(
    {
        "mean_percentiles_before": ["array-like"],
        "mean_percentiles_after": ["array-like"],
        "error": [StrOptions({"paired", "independent"})],
    },
    prefer_skip_nested_validation=True,
)
def suppression_factor(
    mean_percentiles_before: np.ndarray,
    mean_percentiles_after: np.ndarray,
    *,
    error: str = "paired",
) -> tuple[float, float]:
    """Suppression factor ``D = sum_i MP_after_i / sum_i MP_before_i`` and its error.

    D = 1: regularisation left the noise's rank unchanged; D = 0: noise fully
    removed. For a signed map (CDAM) the mean percentiles are those of its
    positive part (:func:`mean_percentile_in_roi` reads it so), so D measures the
    evidence for the target left in the noise; it is undefined when no ROI has a
    score above 0 (every mean percentile before is 0).

    The error is first-order propagation for the ratio of the two sums
    S_a and S_b, each sum's variance estimated as ``n * var(ddof=1)`` of its terms:
    ``err^2 = Var(S_a) / S_b^2 + S_a^2 Var(S_b) / S_b^4 - 2 S_a Cov(S_a, S_b) / S_b^3``.

    Parameters
    ----------
    mean_percentiles_before : array-like of shape (n_images,)
        Mean percentiles in the ROI before regularisation
        (:func:`mean_percentile_in_roi`); their sum must be positive.
    mean_percentiles_after : array-like of shape (n_images,)
        The same images after regularisation.
    error : {"paired", "independent"}, default="paired"
        "paired" keeps the covariance term (before and after come from the same
        images, so they are correlated); "independent" drops it, as the paper's
        code does (a larger, conservative error bar, to reproduce its figures).

    Returns
    -------
    D : float
    D_error : float

    Examples
    --------
    >>> from sklearn_arb.metrics import suppression_factor
    >>> D, D_error = suppression_factor([60.0, 40.0], [6.0, 14.0])
    >>> round(D, 3), round(D_error, 3)
    (0.2, 0.12)
    """
    before = np.asarray(mean_percentiles_before, dtype=np.float64)
    after = np.asarray(mean_percentiles_after, dtype=np.float64)
    if before.ndim != 1 or after.shape != before.shape:
        raise ValueError(
            "mean_percentiles_before and mean_percentiles_after must be 1-D arrays "
            f"of the same length (one value per image); got shapes {before.shape} "
            f"and {after.shape}."
        )
    if before.size < 2:
        raise ValueError(f"The error of D needs at least 2 images; got {before.size}.")
    if not (np.all(np.isfinite(before)) and np.all(np.isfinite(after))):
        raise ValueError("Mean percentiles contain NaN or infinite values.")
    sum_before, sum_after = before.sum(), after.sum()
    if sum_before <= 0:
        raise ValueError(
            "The mean percentiles before regularisation sum to 0: the ROI was "
            "already below all other scores, so D is undefined for this set."
        )
    n_images = before.size
    covariance = np.cov(after, before, ddof=1) * n_images  # of the two sums
    variance = (
        covariance[0, 0] / sum_before**2
        + sum_after**2 * covariance[1, 1] / sum_before**4
    )
    if error == "paired":
        variance -= 2 * sum_after * covariance[0, 1] / sum_before**3
    return float(sum_after / sum_before), float(np.sqrt(max(variance, 0.0)))

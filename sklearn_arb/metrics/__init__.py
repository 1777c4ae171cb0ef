"""How well regularisation works on the noise simulation, and scorers for search.

Metric functions take maps with one row per image, token maps (n_images, n_tokens)
or pixel maps (n_images, height, width), and boolean ROI masks of the same shape,
and return one value per image.
"""

from ._roi import (
    mean_in_roi,
    mean_percentile_in_roi,
    nonzero_percentage_in_roi,
    select_by_roi_z,
)
from ._scorers import (
    ARBScorer,
    balanced_scorer,
    make_arb_scorer,
    sensitivity_scorer,
    specificity_scorer,
)
from ._sensitivity import sensitivity, specificity
from ._suppression import suppression_factor
from ._uniformity import pvalue_srmsd

__all__ = [
    "ARBScorer",
    "balanced_scorer",
    "make_arb_scorer",
    "mean_in_roi",
    "mean_percentile_in_roi",
    "nonzero_percentage_in_roi",
    "pvalue_srmsd",
    "select_by_roi_z",
    "sensitivity",
    "sensitivity_scorer",
    "specificity",
    "specificity_scorer",
    "suppression_factor",
]

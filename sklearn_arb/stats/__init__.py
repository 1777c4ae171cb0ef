"""Statistics of ARB: z, p-values, pi0 and local FDR, vectorised over images.

Pure numpy functions on arrays of shape ``(n_images, n_values)`` (steps 3-6 of the
Method page of the user guide).
"""

from ._lfdr import fit_log_polynomial, lindsey_log_density, local_fdr
from ._pi0 import STOREY_LAMBDAS, estimate_pi0, pi0_lambda, spline_smoother_matrix
from ._pooled_null import PooledNull
from ._pvalues import PVALUE_KINDS, empirical_pvalues
from ._zscores import log_scores, null_moments, z_scores

__all__ = [
    "PVALUE_KINDS",
    "STOREY_LAMBDAS",
    "PooledNull",
    "empirical_pvalues",
    "estimate_pi0",
    "fit_log_polynomial",
    "lindsey_log_density",
    "local_fdr",
    "log_scores",
    "null_moments",
    "pi0_lambda",
    "spline_smoother_matrix",
    "z_scores",
]

"""Simulated data with a known ground truth: noise injected into images.

The equations: the Method page of the user guide, "Evaluation: the noise
simulation".
"""

from ._noise_simulation import make_noise_simulation
from ._token_masks import pixel_to_token_masks

__all__ = ["make_noise_simulation", "pixel_to_token_masks"]

"""Do the maps explain? Localisation and faithfulness of (regularized) maps.

Functions take maps with one row per image and return one value per image; a NaN
is an abstention (the score is undefined for that image) and is left out of means.
"""

from ._calibration import noise_calibration, noise_images
from ._localisation import (
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
    selection_scores,
    summarize_scores,
)
from ._masks import (
    boxes_to_token_masks,
    read_boxes,
    token_masks_for_files,
)
from ._scorers import (
    LocalisationScorer,
    make_localisation_scorer,
)

__all__ = [
    "LocalisationScorer",
    "boxes_to_token_masks",
    "localisation_auc",
    "make_localisation_scorer",
    "noise_calibration",
    "noise_images",
    "pointing_game",
    "read_boxes",
    "relevance_mass",
    "relevance_rank_accuracy",
    "selection_scores",
    "summarize_scores",
    "token_masks_for_files",
]

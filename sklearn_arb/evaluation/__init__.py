"""Do the maps explain? Localisation and faithfulness of (regularized) maps.

Functions take maps with one row per image and return one value per image; a NaN
is an abstention (the score is undefined for that image) and is left out of means.
"""

from ._calibration import noise_calibration, noise_images
from ._classifier import (
    ImageClassifier,
    as_classifier,
)
from ._faithfulness import (
    PerturbationCurves,
    SelectionFaithfulness,
    curve_auc,
    deletion_curve,
    insertion_curve,
    perturbation_curve,
    selection_faithfulness,
    token_order,
)
from ._faithfulness_scorer import (
    FaithfulnessScorer,
    make_faithfulness_scorer,
)
from ._imputation import (
    REMOVALS,
    remove_tokens,
    token_pixel_mask,
)
from ._localisation import (
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
    selection_scores,
    summarize_scores,
)
from ._masks import (
    boxes_of_files,
    boxes_to_token_masks,
    model_boxes_of_files,
    read_boxes,
    token_masks_for_files,
)
from ._randomisation import (
    RandomisationResult,
    cascading_randomisation,
    randomise_top_blocks,
    rank_correlation,
)
from ._scorers import (
    LocalisationScorer,
    make_localisation_scorer,
)
from ._study import EvaluationSettings
from ._study_report import run_evaluation

__all__ = [
    "REMOVALS",
    "EvaluationSettings",
    "FaithfulnessScorer",
    "ImageClassifier",
    "LocalisationScorer",
    "PerturbationCurves",
    "RandomisationResult",
    "SelectionFaithfulness",
    "as_classifier",
    "boxes_of_files",
    "boxes_to_token_masks",
    "cascading_randomisation",
    "curve_auc",
    "deletion_curve",
    "insertion_curve",
    "localisation_auc",
    "make_faithfulness_scorer",
    "make_localisation_scorer",
    "model_boxes_of_files",
    "noise_calibration",
    "noise_images",
    "perturbation_curve",
    "pointing_game",
    "randomise_top_blocks",
    "rank_correlation",
    "read_boxes",
    "relevance_mass",
    "relevance_rank_accuracy",
    "remove_tokens",
    "run_evaluation",
    "selection_faithfulness",
    "selection_scores",
    "summarize_scores",
    "token_masks_for_files",
    "token_order",
    "token_pixel_mask",
]

"""Attention Regularization by the Bootstrap (ARB) for Vision Transformers.

Significant attention maps as scikit-learn estimators: ``AttentionExtractor`` turns
images into last-block CLS attention maps together with the maps of structureless
bootstrap inputs, and ``BootstrapAttentionRegularizer`` learns from those the null
distribution of attention scores and zeroes the scores that are not significant.
"""

from ._config import config_context, get_config, set_config
from ._extractor import AttentionExtractor
from ._images import load_images
from ._layout import MapLayout, TokenMaps, layout_of
from ._maps import tokens_to_grid, upsample_map
from ._pipeline import ArbPipeline, make_arb_pipeline
from ._regularizer import BootstrapAttentionRegularizer
from ._selection import CumulativeMass, MeanThreshold, TopFraction
from .backbone._cache import clear_caches

__version__ = "0.1.0"

__all__ = [
    "ArbPipeline",
    "AttentionExtractor",
    "BootstrapAttentionRegularizer",
    "CumulativeMass",
    "MapLayout",
    "MeanThreshold",
    "TokenMaps",
    "TopFraction",
    "__version__",
    "clear_caches",
    "config_context",
    "get_config",
    "layout_of",
    "load_images",
    "make_arb_pipeline",
    "set_config",
    "tokens_to_grid",
    "upsample_map",
]

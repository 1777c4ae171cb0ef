"""Attention Regularization by the Bootstrap (ARB) for Vision Transformers.

Significant attention maps as scikit-learn estimators: ``AttentionExtractor`` turns
images into last-block CLS attention maps together with the maps of structureless
bootstrap inputs, and ``BootstrapAttentionRegularizer`` learns from those the null
distribution of attention scores and zeroes the scores that are not significant.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

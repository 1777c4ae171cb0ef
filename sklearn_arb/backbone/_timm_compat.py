"""The one place the extractor reaches into timm's private API.

Everything else uses timm's public classes and functions: models run their own
``forward_features`` (their own position-embedding step included), blocks are
recognised by their public classes and forwards. What is left has no public
equivalent in timm (pinned in ``setup.cfg``; ``tests/test_models.py`` compares
every family with the model's own attention, so a timm release that changes
these fails there rather than in users' maps).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["beit_relative_position_bias"]


def beit_relative_position_bias(attn: nn.Module) -> torch.Tensor:
    """A BEiT attention's own relative position bias, ``(1, heads, N, N)``.

    timm computes it in ``Attention._get_rel_pos_bias`` (private, no public
    equivalent); calling it keeps the gather from the bias table exactly as the
    model does instead of copying it here.
    """
    return attn._get_rel_pos_bias()

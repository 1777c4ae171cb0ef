"""The sources of token maps: one block's CLS attention, rollout, CDAM.

================  ================================  ===========================
source            map of a patch token              values
================  ================================  ===========================
``attention``     CLS attention in block ``layer``  positive (softmax)
``rollout``       CLS row of ``Ã_layer ... Ã_1``    positive
``cdam``          ``x_t . d score / d x_t``         signed
================  ================================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._attention import cls_attention
from ._cdam import cdam, target_classes
from ._rollout import rollout

__all__ = ["SOURCES", "MapSource"]

SOURCES = ("attention", "rollout", "cdam")


@dataclass(frozen=True)
class MapSource:
    """Which map a forward pass computes, and with what settings.

    Parameters
    ----------
    name : {"attention", "rollout", "cdam"}
        The source.
    layer : int, default=-1
        The block read (attention), the last block of the product (rollout), or
        the block whose pre-attention norm output is explained (cdam).
    head : {"mean", "max", "min"} or int, default="mean"
        Head fusion (``max``/``min``: rollout only) or one head (attention and
        rollout; CDAM uses every head).
    discard_ratio : float, default=0.0
        Rollout: fraction of each row's lowest attention dropped.
    target : int, "predicted" or callable, default="predicted"
        CDAM's target (see :func:`~sklearn_arb.backbone._cdam.cdam`).

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._sources import MapSource
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2, num_classes=4).eval()
    >>> images = torch.randn(2, 3, 32, 32)
    >>> [MapSource(name).maps(vit, images).shape[1] for name in ("rollout", "cdam")]
    [16, 16]
    """

    name: str = "attention"
    layer: int = -1
    head: str | int = "mean"
    discard_ratio: float = 0.0
    target: Any = "predicted"

    @property
    def needs_classes(self) -> bool:
        """Whether each image's class is resolved before its bootstrap maps."""
        return self.name == "cdam" and not callable(self.target)

    def classes(
        self, model: nn.Module, observed: torch.Tensor, classes: Any = None
    ) -> torch.Tensor | None:
        """The class of each observed image (CDAM), or None."""
        if not self.needs_classes:
            return None
        return target_classes(model, observed, self.target, classes)

    def maps(
        self,
        model: nn.Module,
        images: torch.Tensor,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``(n, P)`` maps of normalised ``(n, 3, H, W)`` images."""
        if self.name == "rollout":
            return rollout(model, images, self.layer, self.head, self.discard_ratio)
        if self.name == "cdam":
            return cdam(model, images, self.layer, self.target, classes)
        return cls_attention(model, images, self.layer, self.head)

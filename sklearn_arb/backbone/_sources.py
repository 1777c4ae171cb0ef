"""The sources of token maps, one class each, in one registry.

================  ================================  ===========================
source            map of a patch token              values
================  ================================  ===========================
``attention``     CLS attention in block ``layer``  positive (softmax)
``rollout``       CLS row of ``Ã_layer ... Ã_1``    positive
``cdam``          ``x_t . d score / d x_t``         signed
================  ================================  ===========================

A source holds its settings and knows what it is: which settings it uses (one
it does not use is refused), how it fuses or reads heads, whether its maps are
signed (z on the scores themselves rather than their logarithm), whether it
needs each image's class first and keeps the model's classifier, what of its
settings keys a cache, and how a panel titles it. The extractor, the command
line and Ray ask the source; none of them tests for a source's name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ._attention import cls_attention
from ._cdam import cdam, check_cdam_target, target_classes
from ._rollout import HEAD_FUSIONS, rollout

__all__ = ["SOURCES", "MapSource", "make_source", "source_of"]

# The settings a source may not use, with the value that means "not used".
_OPTIONAL_SETTINGS = ("discard_ratio", "target")


def _is_default(value: Any, default: Any) -> bool:
    """Whether a setting holds its default (a list or a callable never does)."""
    if callable(value) or isinstance(value, (list, tuple, np.ndarray)):
        return False
    return bool(value == default)


@dataclass(frozen=True)
class MapSource:
    """A map source and its settings; the base of each source's class.

    Parameters
    ----------
    layer : int, default=-1
        The block read (attention), the last block of the product (rollout), or
        the block whose pre-attention norm output is explained (cdam).
    head : {"mean", "max", "min"} or int, default="mean"
        Head fusion (``max``/``min``: rollout only) or one head (attention and
        rollout; CDAM uses every head).
    discard_ratio : float, default=0.0
        Rollout: fraction of each row's lowest attention dropped.
    target : int, "predicted", list of int or callable, default="predicted"
        CDAM's target (see :func:`~sklearn_arb.backbone._cdam.cdam`).

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._sources import make_source
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2, num_classes=4).eval()
    >>> images = torch.randn(2, 3, 32, 32)
    >>> [make_source(name).maps(vit, images).shape[1] for name in ("rollout", "cdam")]
    [16, 16]
    >>> make_source("cdam", target=3).label, make_source("cdam").signed
    ('cdam, class 3, L-1', True)
    """

    layer: int = -1
    head: str | int = "mean"
    discard_ratio: float = 0.0
    target: Any = "predicted"

    name: ClassVar[str]
    #: Signed scores (z on the scores themselves, not their logarithm).
    signed: ClassVar[bool] = False
    #: The head fusions it takes by name.
    head_fusions: ClassVar[tuple[str, ...]] = ("mean",)
    #: Whether it reads one head by index.
    reads_one_head: ClassVar[bool] = True
    #: Of :data:`_OPTIONAL_SETTINGS`, those it uses.
    uses: ClassVar[tuple[str, ...]] = ()
    #: Whether a named model keeps its classifier for it.
    keeps_classifier: ClassVar[bool] = False

    def check(self, model: nn.Module) -> None:
        """ValueError for a setting the source does not use, or that the model
        cannot give (raised at the extractor's ``fit``)."""
        if isinstance(self.head, str) and self.head not in self.head_fusions:
            fusing = [s.name for s in SOURCES.values() if self.head in s.head_fusions]
            raise ValueError(
                f"head={self.head!r} fuses heads in {', '.join(fusing)} only; use "
                f"source={fusing[0]!r}, or head='mean' or a head index."
            )
        if not isinstance(self.head, str) and not self.reads_one_head:
            raise ValueError(
                f"source={self.name!r} explains every head together; use "
                f"head='mean' (got head={self.head!r})."
            )
        defaults = {f.name: f.default for f in fields(MapSource)}
        for setting in _OPTIONAL_SETTINGS:
            value = getattr(self, setting)
            if setting in self.uses or _is_default(value, defaults[setting]):
                continue
            users = [s.name for s in SOURCES.values() if setting in s.uses]
            raise ValueError(
                f"{setting}={value!r} applies to source={users[0]!r} only; use "
                f"{setting}={defaults[setting]!r} (the default) with "
                f"source={self.name!r}."
            )

    @property
    def z_scale(self) -> str:
        """The scale of z for these maps: ``"linear"`` for signed scores, else
        ``"log"``."""
        return "linear" if self.signed else "log"

    @property
    def needs_classes(self) -> bool:
        """Whether each image's class is resolved before its bootstrap maps."""
        return False

    @property
    def cacheable(self) -> bool:
        """Whether its maps are a function of the images and settings (a
        callable target may be anything)."""
        return True

    def cache_settings(self) -> dict[str, Any]:
        """Its settings that key cached maps, beside the layer and head."""
        return {}

    def image_classes(self, n_images: int) -> np.ndarray | None:
        """One class per image when the settings list them, else None."""
        return None

    @property
    def label(self) -> str:
        """How a panel titles the maps: source, head and layer."""
        return f"{self.name}, {self.head}, L{self.layer}"

    def classes(
        self, model: nn.Module, observed: torch.Tensor, classes: Any = None
    ) -> torch.Tensor | None:
        """The class of each observed image, where the source needs it."""
        return None

    def maps(
        self,
        model: nn.Module,
        images: torch.Tensor,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``(n, P)`` maps of normalised ``(n, 3, H, W)`` images."""
        raise NotImplementedError


@dataclass(frozen=True)
class AttentionSource(MapSource):
    """The CLS attention of block ``layer`` (one head, or their mean)."""

    name: ClassVar[str] = "attention"

    def maps(self, model, images, classes=None):
        return cls_attention(model, images, self.layer, self.head)


@dataclass(frozen=True)
class RolloutSource(MapSource):
    """Attention rollout up to block ``layer``, heads fused by ``head``."""

    name: ClassVar[str] = "rollout"
    head_fusions: ClassVar[tuple[str, ...]] = HEAD_FUSIONS
    uses: ClassVar[tuple[str, ...]] = ("discard_ratio",)

    def cache_settings(self) -> dict[str, Any]:
        return {"discard_ratio": float(self.discard_ratio)}

    def maps(self, model, images, classes=None):
        return rollout(model, images, self.layer, self.head, self.discard_ratio)


@dataclass(frozen=True)
class CdamSource(MapSource):
    """CDAM's signed scores of block ``layer``'s tokens for ``target``."""

    name: ClassVar[str] = "cdam"
    signed: ClassVar[bool] = True
    reads_one_head: ClassVar[bool] = False
    uses: ClassVar[tuple[str, ...]] = ("target",)
    keeps_classifier: ClassVar[bool] = True

    def check(self, model: nn.Module) -> None:
        super().check(model)
        check_cdam_target(model, self.target)

    @property
    def needs_classes(self) -> bool:
        return not callable(self.target)

    @property
    def cacheable(self) -> bool:
        return not callable(self.target)

    def cache_settings(self) -> dict[str, Any]:
        # A list target keys each image's maps on its class instead.
        named = isinstance(self.target, (str, Integral))
        return {"target": self.target} if named else {}

    def image_classes(self, n_images: int) -> np.ndarray | None:
        if callable(self.target) or isinstance(self.target, (str, Integral)):
            return None
        classes = np.asarray(self.target)
        if classes.shape != (n_images,) or classes.dtype.kind not in "iu":
            raise ValueError(
                f"target holds one class per image: {n_images} ints for "
                f"{n_images} images; got shape {classes.shape} of "
                f"{classes.dtype}. Pass an int or 'predicted' for all images."
            )
        return classes

    @property
    def label(self) -> str:
        return f"{self.name}, class {self.target}, L{self.layer}"

    def classes(self, model, observed, classes=None):
        if not self.needs_classes:
            return None
        return target_classes(model, observed, self.target, classes)

    def maps(self, model, images, classes=None):
        return cdam(model, images, self.layer, self.target, classes)


#: The sources by name, in the order the documentation lists them.
SOURCES: dict[str, type[MapSource]] = {
    source.name: source for source in (AttentionSource, RolloutSource, CdamSource)
}


def make_source(name: str = "attention", **settings: Any) -> MapSource:
    """The source called ``name`` with ``settings``.

    Parameters
    ----------
    name : {"attention", "rollout", "cdam"}, default="attention"
        A key of :data:`SOURCES`.
    **settings
        ``layer``, ``head``, ``discard_ratio``, ``target``, as in
        :class:`MapSource` (checked against a model by :meth:`MapSource.check`).

    Returns
    -------
    source : MapSource
        The source's own class, holding the settings.

    Examples
    --------
    >>> from sklearn_arb.backbone._sources import make_source
    >>> make_source("rollout", head="max").label
    'rollout, max, L-1'
    """
    return SOURCES[name](**settings)


# The settings of a source, as an extractor and a run's settings hold them.
_SOURCE_SETTINGS = ("layer", "head", "discard_ratio", "target")


def source_of(owner: Any) -> MapSource:
    """The source ``owner.source`` with ``owner``'s ``layer``, ``head``,
    ``discard_ratio`` and ``target``: the source an extractor or a run's
    settings name.

    Parameters
    ----------
    owner : object
        Anything with the attributes ``source``, ``layer``, ``head``,
        ``discard_ratio`` and ``target``.

    Returns
    -------
    source : MapSource

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from sklearn_arb.backbone import source_of
    >>> settings = SimpleNamespace(source="rollout", layer=-1, head="max",
    ...                            discard_ratio=0.0, target="predicted")
    >>> source_of(settings).label
    'rollout, max, L-1'
    """
    settings = {name: getattr(owner, name) for name in _SOURCE_SETTINGS}
    return make_source(owner.source, **settings)

"""The model side: backbones, their token maps, bootstrap inputs, caches.

:func:`load_vit` builds the backbone (a timm name or module, a checkpoint, a
``transformers`` model, folder or hub id), whose blocks belong to one of the
attention families of ``_families.py``; the map sources (:data:`SOURCES`, one
class each: CLS attention in O(N) with :func:`cls_attention`, rollout, CDAM)
compute the maps of a batch; :func:`draw_bootstrap` draws the structureless
bootstrap images; :func:`weights_file_digest` identifies weights by content.
:class:`~sklearn_arb.AttentionExtractor` is the scikit-learn face of these
functions; the rest of the package reaches models through it.
"""

from ._attention import (
    block_index,
    cls_attention,
    embed_tokens,
    reference_cls_attention,
)
from ._blocks import run_blocks
from ._bootstrap import BOOTSTRAP_KINDS, draw_bootstrap
from ._loading import load_checkpoint, load_vit, resolve_device, validate_vit
from ._sources import SOURCES, MapSource, make_source, source_of
from ._weights import file_digest, weights_file_digest

__all__ = [
    "BOOTSTRAP_KINDS",
    "SOURCES",
    "MapSource",
    "block_index",
    "cls_attention",
    "draw_bootstrap",
    "embed_tokens",
    "file_digest",
    "load_checkpoint",
    "load_vit",
    "make_source",
    "reference_cls_attention",
    "resolve_device",
    "run_blocks",
    "source_of",
    "validate_vit",
    "weights_file_digest",
]

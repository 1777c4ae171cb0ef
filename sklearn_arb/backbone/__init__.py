"""The model side: ViT loading, CLS attention, bootstrap inputs, streams, caches.

Everything that knows about torch and timm lives here, behind one boundary:
:func:`load_vit` builds the backbone from a timm name, a module or a checkpoint;
:func:`cls_attention` reads a block's CLS attention in O(N); :func:`draw_bootstrap`
draws the structureless bootstrap images. :class:`~sklearn_arb.AttentionExtractor`
is the scikit-learn face of these functions.
"""

from ._attention import cls_attention, embed_tokens, reference_cls_attention
from ._blocks import run_blocks
from ._bootstrap import BOOTSTRAP_KINDS, draw_bootstrap
from ._loading import load_checkpoint, load_vit, resolve_device, validate_vit
from ._sources import SOURCES, MapSource, make_source
from ._weights import weights_file_digest

__all__ = [
    "BOOTSTRAP_KINDS",
    "SOURCES",
    "MapSource",
    "cls_attention",
    "draw_bootstrap",
    "embed_tokens",
    "load_checkpoint",
    "load_vit",
    "make_source",
    "reference_cls_attention",
    "resolve_device",
    "run_blocks",
    "validate_vit",
    "weights_file_digest",
]

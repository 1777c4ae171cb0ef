"""The families of attention blocks whose attention rows the extractor computes.

Each family computes, from the read block's own modules, the softmax logits of
a chunk of query rows over all tokens exactly as the block's attention does
(the same norm, projections, position terms and scale, in the same order): the
CLS row alone (rows ``0:1``) for the attention map, O(N) instead of the
``N x N`` matrix, and every row a chunk at a time for rollout. A family is
recognised only when the block and its attention run the library's own
``forward`` (a subclass that inherits them is the same family; a ``forward``
overridden on the class or on the instance is not), so a changed computation is
never read as the original.

===========  ======================================  =============================
family       blocks                                  position terms in the logits
===========  ======================================  =============================
vit          timm ``vision_transformer.Block``       none (absolute, in the tokens)
eva          timm ``eva.EvaBlock``                   rotary (patch queries, keys)
eva_rope     timm ``EvaBlock`` + ``AttentionRope``   rotary, one per block (mixed)
beit         timm ``beit.Block``                     relative position bias
hf_<type>    transformers layers, one family per     none
             model type of ``_hf.HF_MODEL_TYPES``
===========  ======================================  =============================

Each family names the models built of its blocks (``examples``);
:func:`all_families` is the registry ``tests/test_models.py`` generates its
cases from, one per family, model and map source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import AttentionRope, apply_rot_embed_cat
from timm.models.beit import Attention as BeitAttention
from timm.models.beit import Block as BeitBlock
from timm.models.eva import EvaAttention, EvaBlock
from timm.models.vision_transformer import Attention, Block
from torch import nn

from ._hf import HF_MODEL_TYPES
from ._timm_compat import beit_relative_position_bias

__all__ = ["AttentionFamily", "all_families", "read_family"]

# rows -> the (n, heads, r, N) logits of those query rows.
LogitRows = Callable[[slice], torch.Tensor]
# (block, its pre-attention norm's output, the model's other block inputs).
Logits = Callable[[nn.Module, torch.Tensor, dict[str, Any]], LogitRows]


def _runs_own_forward(module: nn.Module, cls: type, forward: Callable) -> bool:
    return (
        isinstance(module, cls)
        and type(module).forward is forward
        and "forward" not in vars(module)
    )


@dataclass(frozen=True)
class AttentionFamily:
    """A block class and its attention class, with the logits they compute.

    ``logits(block, normed, inputs)``: for the output ``normed`` of the block's
    pre-attention norm (module ``norm_name`` of the block) and the other
    ``inputs`` the model passes the block (rotary embeddings, shared position
    bias, attention mask, ...), a function of a slice of query rows giving
    their ``(n, heads, r, N)`` logits over all tokens. ``n_heads(block)``:
    its number of heads. ``examples``: models built of this family's blocks
    (timm names, transformers classes); ``tests/test_models.py`` checks each,
    for every map source, against the model's own computation.
    """

    name: str
    block: type
    attention: type
    attention_name: str
    norm_name: str
    logits: Logits
    n_heads: Callable[[nn.Module], int]
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The forwards whose computation the logits mirror, as imported.
        object.__setattr__(self, "_block_forward", self.block.forward)
        object.__setattr__(self, "_attention_forward", self.attention.forward)

    def recognises(self, block: nn.Module) -> bool:
        """Whether ``block`` computes its attention as this family does."""
        attention = getattr(block, self.attention_name, None)
        return _runs_own_forward(
            block, self.block, self._block_forward
        ) and _runs_own_forward(attention, self.attention, self._attention_forward)

    def norm(self, block: nn.Module) -> nn.Module:
        """The norm whose output the block's attention projects (timm's
        ``norm1``, transformers' ``layernorm_before``)."""
        return getattr(block, self.norm_name)

    def attention_rows(
        self, block: nn.Module, tokens: torch.Tensor, inputs: dict[str, Any]
    ) -> LogitRows:
        """The block's softmax attention, a chunk of query rows at a time.

        Parameters
        ----------
        block : nn.Module
            A block this family recognises.
        tokens : Tensor of shape (n, N, D)
            The block's input tokens.
        inputs : dict
            The other inputs the model passes the block, by name.

        Returns
        -------
        callable
            ``rows`` (a slice of the N query tokens) -> their attention
            ``(n, heads, r, N)``, float32. The norm and the keys are computed
            once, the queries per call.

        Examples
        --------
        >>> import torch
        >>> from timm.models.vision_transformer import VisionTransformer
        >>> from sklearn_arb.backbone._families import read_family
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
        ...                         depth=1, num_heads=2).eval()
        >>> block = vit.blocks[0]
        >>> rows = read_family(block).attention_rows(block, torch.randn(1, 17, 32), {})
        >>> with torch.inference_mode():
        ...     cls_row = rows(slice(0, 1))
        >>> cls_row.shape, round(float(cls_row.sum()), 4)
        (torch.Size([1, 2, 1, 17]), 2.0)
        """
        logits = self.logits(block, self.norm(block)(tokens), inputs)
        n_tokens = tokens.shape[1]

        def rows_of(rows: slice) -> torch.Tensor:
            # softmax over all tokens, in float32 even under autocast.
            return logits(slice(*rows.indices(n_tokens))).float().softmax(dim=-1)

        return rows_of


def _heads(projected: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(n, r, heads * d)`` -> ``(n, heads, r, d)``."""
    return projected.unflatten(-1, (-1, head_dim)).transpose(1, 2)


def _project_rows(
    rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` for the ``(n, r, D)`` query rows of ``n``
    images, as ``n`` products of ``r`` rows: the rounding of one product over
    all ``n * r`` rows depends on ``n``, so an image's queries would change in
    the last bits with the number of images in its batch."""
    projected = torch.bmm(rows, weight.t().expand(len(rows), -1, -1))
    return projected if bias is None else projected + bias


def _image_products(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``queries @ keys`` ``(n, h, r, N)`` one image at a time: the batched
    product over all ``n`` images rounds differently with ``n`` (on one thread
    its kernel changes between one image and several), so an image's logits
    would change in the last bits with the number of images in its batch."""
    return torch.stack([query @ key for query, key in zip(queries, keys, strict=True)])


def _fused_qk(
    attn: nn.Module, normed: torch.Tensor
) -> tuple[Callable[[slice], torch.Tensor], torch.Tensor]:
    """The queries of a slice of rows ``(n, h, r, d)`` (a function) and all keys
    ``(n, h, N, d)`` from a fused qkv weight (its q and k slices, with the q and
    k slices of its bias, or EVA's and BEiT's separate ``q_bias``/``k_bias``),
    before any q/k norm."""
    weight = attn.qkv.weight
    dim = weight.shape[0] // 3
    head_dim = dim // attn.num_heads
    if attn.qkv.bias is not None:
        q_bias, k_bias = attn.qkv.bias[:dim], attn.qkv.bias[dim : 2 * dim]
    else:
        q_bias, k_bias = getattr(attn, "q_bias", None), getattr(attn, "k_bias", None)
    keys = _heads(F.linear(normed, weight[dim : 2 * dim], k_bias), head_dim)

    def queries(rows: slice) -> torch.Tensor:
        return _heads(_project_rows(normed[:, rows], weight[:dim], q_bias), head_dim)

    return queries, keys


def _vit_logits(block: nn.Module, normed: torch.Tensor, inputs: dict) -> LogitRows:
    attn = block.attn
    queries, keys = _fused_qk(attn, normed)
    keys = attn.k_norm(keys).transpose(-2, -1)
    return lambda rows: _image_products(attn.q_norm(queries(rows)) * attn.scale, keys)


def _rotate(
    x: torch.Tensor, rope: torch.Tensor | None, attn: nn.Module, first: int
) -> torch.Tensor:
    """EVA's rotary embedding of the queries or keys ``x`` ``(n, h, r, d)`` of
    tokens ``first .. first + r - 1``: the patch tokens turn by their position's
    angles (the token axis of ``rope`` is its second last), the prefix tokens
    (CLS, registers) stay as they are."""
    if rope is None:
        return x
    n_prefix = attn.num_prefix_tokens
    split = min(max(n_prefix - first, 0), x.shape[2])
    patches = slice(first + split - n_prefix, first + x.shape[2] - n_prefix)
    rotated = apply_rot_embed_cat(
        x[:, :, split:], rope[..., patches, :], half=getattr(attn, "rotate_half", False)
    )
    return torch.cat([x[:, :, :split], rotated], dim=2).type_as(x)


def _eva_logits(block: nn.Module, normed: torch.Tensor, inputs: dict) -> LogitRows:
    """EVA's attention and timm's ``AttentionRope`` (whose keys may have fewer
    heads than the queries: grouped-query attention)."""
    attn = block.attn
    if attn.qkv is not None:
        queries, keys = _fused_qk(attn, normed)
    else:
        keys = _heads(attn.k_proj(normed), attn.head_dim)

        def queries(rows: slice) -> torch.Tensor:
            q_proj = attn.q_proj
            return _heads(
                _project_rows(normed[:, rows], q_proj.weight, q_proj.bias),
                attn.head_dim,
            )

    rope = inputs.get("rope")
    keys = _rotate(attn.k_norm(keys), rope, attn, 0)
    # Each key head serves num_kv_groups query heads, after its norm and rotation.
    groups = getattr(attn, "num_kv_groups", 1)
    keys = keys.repeat_interleave(groups, dim=1).transpose(-2, -1)

    def logit_rows(rows: slice) -> torch.Tensor:
        query = _rotate(attn.q_norm(queries(rows)), rope, attn, rows.start)
        return _image_products(query * attn.scale, keys)

    return logit_rows


def _beit_logits(block: nn.Module, normed: torch.Tensor, inputs: dict) -> LogitRows:
    attn = block.attn
    queries, keys = _fused_qk(attn, normed)
    keys = keys.transpose(-2, -1)
    biases = [inputs.get("shared_rel_pos_bias")]
    if attn.relative_position_bias_table is not None:
        biases.insert(0, beit_relative_position_bias(attn))
    biases = [bias for bias in biases if bias is not None]

    def logit_rows(rows: slice) -> torch.Tensor:
        logits = _image_products(queries(rows) * attn.scale, keys)
        for bias in biases:  # (1, heads, N, N): the rows' part
            logits = logits + bias[..., rows, :]
        return logits

    return logit_rows


def _timm_heads(block: nn.Module) -> int:
    return int(block.attn.num_heads)


TIMM_FAMILIES = (
    AttentionFamily(
        "vit", Block, Attention, "attn", "norm1", _vit_logits, _timm_heads,
        (
            "deit_tiny_patch16_224",
            "deit_tiny_distilled_patch16_224",  # distillation token
            "deit3_small_patch16_224",  # LayerScale
            "vit_small_patch8_224.dino",
            "vit_small_patch14_reg4_dinov2",  # registers, LayerScale
            "vit_base_patch16_clip_224",  # pre-norm
            "vit_base_patch16_224.mae",
            "flexivit_small",
        ),
    ),
    AttentionFamily(
        "eva", EvaBlock, EvaAttention, "attn", "norm1", _eva_logits, _timm_heads,
        (
            "eva02_tiny_patch14_224",  # rotary
            "eva_giant_patch14_224",  # EVA-01: no rotary
            "vit_small_patch16_dinov3",  # + registers
        ),
    ),
    AttentionFamily(
        "eva_rope", EvaBlock, AttentionRope, "attn", "norm1", _eva_logits,
        _timm_heads,
        # one rotary embedding for all blocks, or one per block
        ("vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224"),
    ),
    AttentionFamily(
        "beit", BeitBlock, BeitAttention, "attn", "norm1", _beit_logits, _timm_heads,
        ("beit_base_patch16_224", "beitv2_base_patch16_224"),
    ),
)  # fmt: skip


def _hf_logits(layer: nn.Module, normed: torch.Tensor, inputs: dict) -> LogitRows:
    """A transformers ViT layer: ``softmax(q k^T * scaling + mask)``."""
    attn = layer.attention
    keys = _heads(attn.k_proj(normed), attn.head_dim).transpose(-2, -1)
    mask = inputs.get("attention_mask")

    def logit_rows(rows: slice) -> torch.Tensor:
        q_proj = attn.q_proj
        query = _heads(
            _project_rows(normed[:, rows], q_proj.weight, q_proj.bias), attn.head_dim
        )
        logits = (query @ keys) * attn.scaling
        return logits if mask is None else logits + mask[..., rows, :]

    return logit_rows


@cache
def _hf_families() -> tuple[AttentionFamily, ...]:
    """The transformers layer classes of :data:`~._hf.HF_MODEL_TYPES`, read by
    :func:`_hf_logits` (transformers imported only for a transformers model)."""
    import importlib

    def heads(layer: nn.Module) -> int:
        return int(layer.attention.num_attention_heads)

    families = []
    for model_type, known in HF_MODEL_TYPES.items():
        module = importlib.import_module(
            f"transformers.models.{model_type}.modeling_{model_type}"
        )
        layer, attention = (
            getattr(module, known.layer),
            getattr(module, known.attention),
        )
        examples = (known.base, *known.classifiers)
        families.append(
            AttentionFamily(
                f"hf_{model_type}",
                layer,
                attention,
                "attention",
                known.norm,
                _hf_logits,
                heads,
                examples,
            )
        )
    return tuple(families)


def read_family(block: nn.Module) -> AttentionFamily | None:
    """The family that computes ``block``'s attention, or None.

    Examples
    --------
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._families import read_family
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2)
    >>> read_family(vit.blocks[0]).name
    'vit'
    """
    families = TIMM_FAMILIES
    if type(block).__module__.startswith("transformers."):
        families = _hf_families()
    return next((f for f in families if f.recognises(block)), None)


def all_families() -> tuple[AttentionFamily, ...]:
    """Every family the extractor reads: timm's, and transformers' where it is
    installed (the registry the tests are generated from).

    Examples
    --------
    >>> from sklearn_arb.backbone._families import all_families
    >>> [family.name for family in all_families()][:4]
    ['vit', 'eva', 'eva_rope', 'beit']
    """
    try:
        import transformers  # noqa: F401
    except ImportError:
        return TIMM_FAMILIES
    return TIMM_FAMILIES + _hf_families()

"""The families of attention blocks whose CLS row the extractor computes.

Each family computes, from the read block's own modules, the logits of the CLS
query over all tokens exactly as the block's attention does (the same
projections, norms, position terms and scale, in the same order), for the CLS
query alone: O(N) instead of the ``N x N`` matrix. A family is recognised only
when the block and its attention run the library's own ``forward`` (a subclass
that inherits them is the same family; a ``forward`` overridden on the class or
on the instance is not), so a changed computation is never read as the
original. ``tests/test_models.py`` checks every family against the softmax the
model itself computes.

===========  ======================================  =============================
family       blocks                                  position terms in the logits
===========  ======================================  =============================
vit          timm ``vision_transformer.Block``       none (absolute, in the tokens)
eva          timm ``eva.EvaBlock``                   rotary (patch keys)
beit         timm ``beit.Block``                     relative position bias
hf_vit       transformers ViT/DeiT/DINOv2 layers     none
===========  ======================================  =============================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat
from timm.models.beit import Attention as BeitAttention
from timm.models.beit import Block as BeitBlock
from timm.models.eva import EvaAttention, EvaBlock
from timm.models.vision_transformer import Attention, Block
from torch import nn

from ._timm_compat import beit_relative_position_bias

__all__ = ["AttentionFamily", "read_family"]

Logits = Callable[[nn.Module, torch.Tensor, dict[str, Any]], torch.Tensor]


def _runs_own_forward(module: nn.Module, cls: type, forward: Callable) -> bool:
    return (
        isinstance(module, cls)
        and type(module).forward is forward
        and "forward" not in vars(module)
    )


@dataclass(frozen=True)
class AttentionFamily:
    """A block class and its attention class, with the CLS logits they compute.

    ``cls_logits(block, tokens, inputs)``: the ``(n, heads, N)`` logits of the
    CLS query for the block's input ``tokens`` and the other ``inputs`` the
    model passes the block (rotary embeddings, shared position bias, ...).
    """

    name: str
    block: type
    attention: type
    attention_name: str
    cls_logits: Logits
    n_heads: Callable[[nn.Module], int]

    def __post_init__(self) -> None:
        # The forwards whose computation cls_logits mirrors, as imported.
        object.__setattr__(self, "_block_forward", self.block.forward)
        object.__setattr__(self, "_attention_forward", self.attention.forward)

    def recognises(self, block: nn.Module) -> bool:
        """Whether ``block`` computes its attention as this family does."""
        attention = getattr(block, self.attention_name, None)
        return _runs_own_forward(
            block, self.block, self._block_forward
        ) and _runs_own_forward(attention, self.attention, self._attention_forward)


def _split_qk(attn: nn.Module, normed: torch.Tensor, q_bias, k_bias):
    """The CLS query ``(n, h, 1, d)`` and all keys ``(n, h, N, d)`` from a fused
    qkv weight (its q and k slices), before any q/k norm."""
    n_images, n_tokens, _ = normed.shape
    weight = attn.qkv.weight
    dim = weight.shape[0] // 3
    head_dim = dim // attn.num_heads
    query = F.linear(normed[:, :1], weight[:dim], q_bias)
    keys = F.linear(normed, weight[dim : 2 * dim], k_bias)
    query = query.view(n_images, 1, attn.num_heads, head_dim).transpose(1, 2)
    keys = keys.view(n_images, n_tokens, attn.num_heads, head_dim).transpose(1, 2)
    return query, keys


def _vit_logits(block: nn.Module, tokens: torch.Tensor, inputs: dict) -> torch.Tensor:
    attn = block.attn
    bias = attn.qkv.bias
    dim = attn.qkv.weight.shape[0] // 3
    query, keys = _split_qk(
        attn,
        block.norm1(tokens),
        None if bias is None else bias[:dim],
        None if bias is None else bias[dim : 2 * dim],
    )
    query, keys = attn.q_norm(query), attn.k_norm(keys)
    return (query @ keys.transpose(-2, -1)).squeeze(2) * attn.scale


def _eva_logits(block: nn.Module, tokens: torch.Tensor, inputs: dict) -> torch.Tensor:
    attn = block.attn
    normed = block.norm1(tokens)
    if attn.qkv is not None:
        query, keys = _split_qk(attn, normed, attn.q_bias, attn.k_bias)
    else:
        n_images, n_tokens, _ = normed.shape
        query = attn.q_proj(normed[:, :1]).view(n_images, 1, attn.num_heads, -1)
        keys = attn.k_proj(normed).view(n_images, n_tokens, attn.num_heads, -1)
        query, keys = query.transpose(1, 2), keys.transpose(1, 2)
    query, keys = attn.q_norm(query), attn.k_norm(keys)
    rope = inputs.get("rope")
    if rope is not None:
        # Rotary embeddings turn the patch tokens' queries and keys; the CLS
        # token, a prefix token, is left as it is.
        n_prefix = attn.num_prefix_tokens
        rotated = apply_rot_embed_cat(
            keys[:, :, n_prefix:], rope, half=getattr(attn, "rotate_half", False)
        )
        keys = torch.cat([keys[:, :, :n_prefix], rotated], dim=2).type_as(keys)
    return ((query * attn.scale) @ keys.transpose(-2, -1)).squeeze(2)


def _beit_logits(block: nn.Module, tokens: torch.Tensor, inputs: dict) -> torch.Tensor:
    attn = block.attn
    query, keys = _split_qk(attn, block.norm1(tokens), attn.q_bias, attn.k_bias)
    logits = ((query * attn.scale) @ keys.transpose(-2, -1)).squeeze(2)
    if attn.relative_position_bias_table is not None:
        logits = logits + beit_relative_position_bias(attn)[..., 0, :]
    shared = inputs.get("shared_rel_pos_bias")
    if shared is not None:
        logits = logits + shared[..., 0, :]
    return logits


def _timm_heads(block: nn.Module) -> int:
    return int(block.attn.num_heads)


TIMM_FAMILIES = (
    AttentionFamily("vit", Block, Attention, "attn", _vit_logits, _timm_heads),
    AttentionFamily("eva", EvaBlock, EvaAttention, "attn", _eva_logits, _timm_heads),
    AttentionFamily(
        "beit", BeitBlock, BeitAttention, "attn", _beit_logits, _timm_heads
    ),
)


def _hf_logits(layer: nn.Module, tokens: torch.Tensor, inputs: dict) -> torch.Tensor:
    """A transformers ViT layer: ``softmax(q k^T * scaling + mask)``."""
    norm = getattr(layer, "layernorm_before", None) or layer.norm1
    attn = layer.attention
    n_images, n_tokens, _ = tokens.shape
    normed = norm(tokens)
    query = attn.q_proj(normed[:, :1]).view(n_images, 1, -1, attn.head_dim)
    keys = attn.k_proj(normed).view(n_images, n_tokens, -1, attn.head_dim)
    query, keys = query.transpose(1, 2), keys.transpose(1, 2)
    logits = (query @ keys.transpose(-2, -1)).squeeze(2) * attn.scaling
    mask = inputs.get("attention_mask")
    if mask is not None:
        logits = logits + mask[..., 0, :]
    return logits


@cache
def _hf_families() -> tuple[AttentionFamily, ...]:
    """The transformers layer classes read by :func:`_hf_logits` (imported only
    for a transformers model)."""
    from transformers.models.deit import modeling_deit as deit
    from transformers.models.dinov2 import modeling_dinov2 as dinov2
    from transformers.models.dinov2_with_registers import (
        modeling_dinov2_with_registers as dinov2_reg,
    )
    from transformers.models.vit import modeling_vit as vit

    def heads(layer: nn.Module) -> int:
        return int(layer.attention.num_attention_heads)

    return tuple(
        AttentionFamily(f"hf_{name}", layer, attention, "attention", _hf_logits, heads)
        for name, layer, attention in (
            ("vit", vit.ViTLayer, vit.ViTAttention),
            ("deit", deit.DeiTLayer, deit.DeiTAttention),
            ("dinov2", dinov2.Dinov2Layer, dinov2.Dinov2Attention),
            (
                "dinov2_with_registers",
                dinov2_reg.Dinov2WithRegistersLayer,
                dinov2_reg.Dinov2WithRegistersAttention,
            ),
        )
    )


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

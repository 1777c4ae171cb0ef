"""CLS attention of a timm ViT block, computed in O(N) for the block that is read.

The blocks before the read one run as timm runs them, with the fused attention
kernel (``F.scaled_dot_product_attention``), which never materialises the
``N x N`` attention matrix (on CPU in place, with reused buffers: see
``_blocks.py``). The read block needs one row of that matrix, the CLS query's:
its query is computed for the CLS token alone and its keys for all tokens (the
value projection, the attention output, the MLP and everything after never run).
:func:`reference_cls_attention` is the plain computation (explicit ``N x N``
attention in every block, as DINO's ``get_last_selfattention``), kept as the
ground truth for tests and the speed baseline for benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import run_blocks

__all__ = ["cls_attention", "embed_tokens", "reference_cls_attention"]


def embed_tokens(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding, prefix tokens and position embedding: ``(n, N, D)``."""
    tokens = model.patch_embed(images)
    tokens = model._pos_embed(tokens)
    tokens = model.patch_drop(tokens)
    return model.norm_pre(tokens)


def _select_heads(weights: torch.Tensor, head: str | int) -> torch.Tensor:
    """``(n, heads, P)`` -> ``(n, P)``: the mean over heads or one head."""
    return weights.mean(dim=1) if head == "mean" else weights[:, head]


def _cls_row(block: nn.Module, tokens: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Per-head softmax(q_cls k^T * scale) of one block, prefix dropped: (n, h, P)."""
    attn = block.attn
    n_images, n_tokens, _ = tokens.shape
    normed = block.norm1(tokens)
    dim, n_heads, head_dim = attn.attn_dim, attn.num_heads, attn.head_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q_bias = None if bias is None else bias[:dim]
    k_bias = None if bias is None else bias[dim : 2 * dim]
    # Slicing the fused qkv weight: q for the CLS token alone, k for every token.
    query = F.linear(normed[:, 0], weight[:dim], q_bias)
    keys = F.linear(normed, weight[dim : 2 * dim], k_bias)
    query = attn.q_norm(query.view(n_images, n_heads, 1, head_dim))
    keys = attn.k_norm(keys.view(n_images, n_tokens, n_heads, head_dim)).transpose(1, 2)
    logits = (query @ keys.transpose(-2, -1)).squeeze(2) * attn.scale
    # softmax over all tokens (prefix included), in float32 even under autocast.
    return logits.float().softmax(dim=-1)[:, :, n_prefix:]


def _block_index(model: nn.Module, layer: int) -> int:
    depth = len(model.blocks)
    if not -depth <= layer < depth:
        raise ValueError(
            f"layer={layer} is out of range for a model with {depth} blocks; use "
            f"-{depth}..{depth - 1} (-1 is the last block)."
        )
    return layer % depth


def cls_attention(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
) -> torch.Tensor:
    """CLS attention to the patch tokens in one block of a timm ViT, fast.

    Parameters
    ----------
    model : timm VisionTransformer
        In eval mode (see ``sklearn_arb.backbone.load_vit``).
    images : Tensor of shape (n, 3, H, W)
        Normalised images.
    layer : int, default=-1
        The block whose attention is read (negative counts from the end).
    head : "mean" or int, default="mean"
        Average the heads, or read one head.

    Returns
    -------
    Tensor of shape (n, P)
        float32; patch tokens in row-major grid order, prefix tokens (CLS,
        registers, distillation) dropped, so a row sums to the CLS attention mass
        on the patches (< 1).

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone import cls_attention
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2).eval()
    >>> with torch.inference_mode():
    ...     maps = cls_attention(vit, torch.randn(3, 3, 32, 32))
    >>> maps.shape, bool((maps.sum(dim=1) < 1).all())
    (torch.Size([3, 16]), True)
    """
    index = _block_index(model, layer)
    tokens = run_blocks(model.blocks[:index], embed_tokens(model, images))
    weights = _cls_row(model.blocks[index], tokens, model.num_prefix_tokens)
    return _select_heads(weights, head)


def reference_cls_attention(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
) -> torch.Tensor:
    """The plain computation of :func:`cls_attention`: full attention everywhere.

    Every block up to ``layer`` computes its ``(heads, N, N)`` attention matrix
    explicitly (``softmax(q k^T * scale)``, then ``@ v``), independent of timm's
    attention kernels; the CLS row of the read block's matrix is returned. Slow
    and memory-hungry by design: the ground truth and the speed baseline.

    Parameters
    ----------
    model, images, layer, head
        As in :func:`cls_attention`.

    Returns
    -------
    Tensor of shape (n, P)

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone import cls_attention, reference_cls_attention
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2).eval()
    >>> images = torch.randn(2, 3, 32, 32)
    >>> with torch.inference_mode():
    ...     gap = reference_cls_attention(vit, images) - cls_attention(vit, images)
    >>> bool(gap.abs().max() < 1e-6)
    True
    """
    index = _block_index(model, layer)
    tokens = embed_tokens(model, images)
    n_images, n_tokens, _ = tokens.shape
    for block in model.blocks[: index + 1]:
        attn = block.attn
        qkv = attn.qkv(block.norm1(tokens)).reshape(
            n_images, n_tokens, 3, attn.num_heads, attn.head_dim
        )
        query, keys, values = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        query, keys = attn.q_norm(query), attn.k_norm(keys)
        weights = ((query * attn.scale) @ keys.transpose(-2, -1)).float().softmax(-1)
        if block is model.blocks[index]:
            return _select_heads(weights[:, :, 0, model.num_prefix_tokens :], head)
        mixed = (weights.to(values.dtype) @ values).transpose(1, 2)
        mixed = attn.proj(attn.norm(mixed.reshape(n_images, n_tokens, attn.attn_dim)))
        tokens = tokens + block.ls1(mixed)
        tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
    raise AssertionError("unreachable: the read block is always visited")

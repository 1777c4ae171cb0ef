"""Attention rollout (Abnar & Zuidema, 2020), the CLS row only, in row chunks.

Per block, the heads' attention is fused (mean, max, min, or one head), the
lowest ``discard_ratio`` of each row is dropped (never the CLS column), the
identity is added and the rows renormalised: ``Ã = (A + I) / rowsum``. The map is
the CLS row of ``Ã_L ... Ã_1`` at the patch columns (prefix tokens take part in
the product but are not output).

Only that row is computed: a row vector ``r`` (``e_CLS`` at first) times each
block's ``Ã``, from the last block of the product to the first, and each ``Ã``
a chunk of rows at a time, so at most ``_CHUNK_BYTES`` per image of one block's
``heads x N x N`` attention exist at once (the last block needs only its CLS
row). Each block's attention rows are computed as its family computes them
(``_families.py``: timm ViT, EVA with rotary embeddings, BEiT with relative
position bias, transformers ViT/DeiT/DINOv2), from the tokens and the other
inputs (rotary embeddings, shared position bias, ...) the model passes each
block in one forward pass, which stops at the last block of the product.
:func:`reference_rollout` is the plain computation (every block's full
matrices, multiplied as matrices), kept as the ground truth for tests and the
speed baseline for benchmarks.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ._attention import block_index, block_inputs, read_block_family

__all__ = ["HEAD_FUSIONS", "reference_rollout", "rollout"]

HEAD_FUSIONS = ("mean", "max", "min")
# Most bytes of one block's attention rows held at once per image (float32):
# the chunks of rows do not depend on the number of images, so neither do the
# sums over them.
_CHUNK_BYTES = 4 << 20


def _block_attention(model: nn.Module, images: torch.Tensor, index: int) -> list:
    """Blocks ``0 .. index``: for each, a function giving its attention rows
    (``AttentionFamily.attention_rows``, built when called, so that one block's
    keys and position terms are held at a time), its numbers of heads and tokens."""
    # Every block of the product is recognised before the model runs.
    families = [read_block_family(model, position) for position in range(index + 1)]
    inputs = block_inputs(model, images, range(index + 1))
    return [
        (
            partial(family.attention_rows, block, tokens, other),
            family.n_heads(block),
            tokens.shape[1],
        )
        for family, block, (tokens, other) in zip(
            families, model.blocks, inputs, strict=False
        )
    ]


def fuse_heads(weights: torch.Tensor, head: str | int) -> torch.Tensor:
    """``(n, heads, ...)`` -> ``(n, ...)``: mean, max or min over heads, or one."""
    if head == "mean":
        return weights.mean(dim=1)
    if head == "max":
        return weights.amax(dim=1)
    if head == "min":
        return weights.amin(dim=1)
    return weights[:, head]


def _discard_lowest(weights: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the ``discard_ratio`` lowest entries of each row, the CLS column
    (column 0) excepted."""
    n_dropped = int(discard_ratio * (weights.shape[-1] - 1))
    if not n_dropped:
        return weights
    ranked = weights.clone()
    ranked[..., 0] = torch.inf
    lowest = ranked.topk(n_dropped, dim=-1, largest=False).indices
    return weights.scatter(-1, lowest, 0.0)


def _rollout_rows(
    weights: torch.Tensor, first_row: int, discard_ratio: float
) -> torch.Tensor:
    """``Ã`` rows from fused attention rows ``(n, r, N)`` starting at ``first_row``."""
    weights = _discard_lowest(weights, discard_ratio)
    n_rows = weights.shape[1]
    diagonal = torch.arange(n_rows, device=weights.device)
    weights[:, diagonal, first_row + diagonal] += 1.0
    return weights / weights.sum(dim=-1, keepdim=True)


def rollout(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Attention rollout to the patch tokens, the CLS row only.

    Parameters
    ----------
    model : timm ViT, EVA or BEiT, or a loaded transformers ViT
        In eval mode; every block up to ``layer`` of a family the extractor
        reads (see the Models page of the user guide).
    images : Tensor of shape (n, 3, H, W)
        Normalised images.
    layer : int, default=-1
        The last block of the product (negative counts from the end).
    head : {"mean", "max", "min"} or int, default="mean"
        How each block's heads are fused, or the one head read in every block.
    discard_ratio : float in [0, 1), default=0.0
        Fraction of each row's lowest attention set to zero before the
        identity is added (the CLS column is never dropped).

    Returns
    -------
    Tensor of shape (n, P)
        float32, patch tokens in row-major grid order; positive.

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._rollout import reference_rollout, rollout
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3,
    ...                         num_heads=2).eval()
    >>> images = torch.randn(2, 3, 32, 32)
    >>> with torch.inference_mode():
    ...     fast, plain = rollout(vit, images), reference_rollout(vit, images)
    >>> fast.shape, bool((fast - plain).abs().max() < 1e-6)
    (torch.Size([2, 16]), True)
    """
    index = block_index(model, layer)
    blocks = _block_attention(model, images, index)
    n_images, n_tokens = len(images), blocks[0][2]
    cls_row = torch.zeros(n_images, n_tokens, device=images.device)
    cls_row[:, 0] = 1.0
    for position in range(index, -1, -1):
        block_attention, n_heads, _ = blocks[position]
        attention_rows = block_attention()
        # r is e_CLS in the last block: only its CLS row is needed.
        n_rows = 1 if position == index else n_tokens
        chunk = max(1, _CHUNK_BYTES // (4 * n_heads * n_tokens))
        product = torch.zeros_like(cls_row)
        for start in range(0, n_rows, chunk):
            rows = slice(start, min(start + chunk, n_rows))
            fused = fuse_heads(attention_rows(rows), head)
            mixed = _rollout_rows(fused, start, discard_ratio)
            product += (cls_row[:, rows, None] * mixed).sum(dim=1)
        cls_row = product
    return cls_row[:, model.num_prefix_tokens :]


def reference_rollout(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    head: str | int = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """The plain computation of :func:`rollout`: every block's full ``N x N``
    ``Ã``, multiplied as matrices (``Ã_L @ ... @ Ã_1``), then the CLS row.

    Slow and memory-hungry by design: the ground truth and the speed baseline.

    Parameters
    ----------
    model, images, layer, head, discard_ratio
        As in :func:`rollout`.

    Returns
    -------
    Tensor of shape (n, P)

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._rollout import reference_rollout
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2).eval()
    >>> with torch.inference_mode():
    ...     maps = reference_rollout(vit, torch.randn(1, 3, 32, 32))
    >>> maps.shape
    torch.Size([1, 16])
    """
    index = block_index(model, layer)
    product = None
    for block_attention, _, _ in _block_attention(model, images, index):
        mixed = _rollout_rows(
            fuse_heads(block_attention()(slice(None)), head), 0, discard_ratio
        )
        product = mixed if product is None else mixed @ product
    return product[:, 0, model.num_prefix_tokens :]

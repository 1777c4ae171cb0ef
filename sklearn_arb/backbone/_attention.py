"""CLS attention of a ViT block, computed in O(N) for the block that is read.

The model runs its own ``forward_features`` (its own patch and position
embedding, prefix tokens, and, for EVA and BEiT, the rotary embeddings or shared
position bias it passes its blocks) up to the read block, where a forward
pre-hook takes the block's inputs and stops the pass. For a timm
``VisionTransformer`` the pass stops at the first block instead, and the blocks
before the read one run on CPU in place with reused buffers (bit-identical to
timm: see ``_blocks.py``); elsewhere they run as the model runs them, with its
fused attention kernel, which never materialises the ``N x N`` attention matrix.
The read block needs one row of that matrix, the CLS query's: its query is
computed for the CLS token alone and its keys for all tokens, as the block's
family computes them (``_families.py``); the value projection, the attention
output, the MLP and everything after never run.
:func:`reference_cls_attention` is the plain computation (explicit ``N x N``
attention in every block, as DINO's ``get_last_selfattention``), kept as the
ground truth for tests and the speed baseline for benchmarks.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ._blocks import run_blocks
from ._families import read_family
from ._hooks import this_thread_only

__all__ = [
    "block_index",
    "block_inputs",
    "cls_attention",
    "embed_tokens",
    "reference_cls_attention",
]

# The forward_features whose block loop is ``self.blocks(x)``, as timm defined it.
_VIT_FORWARD_FEATURES = VisionTransformer.forward_features


class _BlockInputs(Exception):
    """Raised by the pre-hook of the block where a forward pass stops (not an
    error: how the pass stops early)."""


def _stop_here(module: nn.Module, args: tuple, kwargs: dict) -> None:
    raise _BlockInputs


def _named_inputs(
    block: nn.Module, args: tuple, kwargs: dict
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A block call's tokens, and its other inputs by their parameter names."""
    tokens, *rest = args
    if rest:  # positional inputs after the tokens
        names = list(inspect.signature(block.forward).parameters)[1:]
        kwargs = {**dict(zip(names, rest, strict=False)), **kwargs}
    return tokens, kwargs


def _recorded_inputs(
    model: nn.Module, images: torch.Tensor, blocks: range
) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """The inputs of ``blocks`` recorded from the model's own forward, which
    stops at the last of them."""
    recorded: list[tuple[torch.Tensor, dict[str, Any]]] = []
    handles = []
    for position in blocks:
        block = model.blocks[position]

        def record(module: nn.Module, args: tuple, kwargs: dict, block=block):
            recorded.append(_named_inputs(block, args, kwargs))

        # Only this thread's pass records and stops: the CPU streams share the
        # model.
        hooks = [record] if position != blocks[-1] else [record, _stop_here]
        handles += [
            block.register_forward_pre_hook(this_thread_only(hook), with_kwargs=True)
            for hook in hooks
        ]
    try:
        model.forward_features(images)
    except _BlockInputs:
        return recorded
    finally:
        for handle in handles:
            handle.remove()
    raise RuntimeError(
        f"{type(model).__name__}.forward_features never ran block {blocks[-1]}; "
        f"the extractor reads blocks the model runs."
    )


def embed_tokens(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens entering the first block, ``(n, N, D)``, as the model embeds
    them (patches, prefix tokens, position embedding).

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone import embed_tokens
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2, reg_tokens=2).eval()
    >>> with torch.inference_mode():
    ...     embed_tokens(vit, torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 19, 32])
    """
    return _recorded_inputs(model, images, range(1))[0][0]


def block_inputs(
    model: nn.Module, images: torch.Tensor, blocks: range
) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """The tokens and other inputs (rotary embeddings, shared position bias,
    attention mask, ...) the model's forward passes each of ``blocks``
    (consecutive), from one pass that stops at the last of them.

    A timm ``VisionTransformer`` runs its blocks in sequence with the tokens
    alone (``self.blocks(x)``): the blocks before the first run on the CPU fast
    path of ``_blocks.py``, bit-identical to timm.

    Examples
    --------
    >>> import torch
    >>> from timm.models.eva import Eva
    >>> from sklearn_arb.backbone._attention import block_inputs
    >>> eva = Eva(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
    ...           use_rot_pos_emb=True).eval()
    >>> with torch.inference_mode():
    ...     inputs = block_inputs(eva, torch.randn(1, 3, 32, 32), range(1, 3))
    >>> [tuple(tokens.shape) for tokens, _ in inputs], sorted(inputs[1][1])
    ([(1, 17, 32), (1, 17, 32)], ['attn_mask', 'is_causal', 'rope'])
    """
    runs_blocks_in_sequence = type(
        model
    ).forward_features is _VIT_FORWARD_FEATURES and "forward_features" not in vars(
        model
    )
    if not (blocks.start and runs_blocks_in_sequence):
        return _recorded_inputs(model, images, blocks)
    # timm's forward_features runs self.blocks(x): the same blocks in order.
    tokens = run_blocks(model.blocks[: blocks.start], embed_tokens(model, images))
    recorded = [(tokens, {})]
    for position in blocks[:-1]:
        tokens = run_blocks(model.blocks[position : position + 1], tokens)
        recorded.append((tokens, {}))
    return recorded


def _read_block_inputs(
    model: nn.Module, images: torch.Tensor, index: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The inputs of block ``index``, the blocks before it run as fast as can be
    while computing what the model computes."""
    return block_inputs(model, images, range(index, index + 1))[0]


def _select_heads(weights: torch.Tensor, head: str | int) -> torch.Tensor:
    """``(n, heads, P)`` -> ``(n, P)``: the mean over heads or one head."""
    return weights.mean(dim=1) if head == "mean" else weights[:, head]


def read_block_family(model: nn.Module, index: int):
    """The family of block ``index``; ValueError naming it when unrecognised."""
    block = model.blocks[index]
    family = read_family(block)
    if family is None:
        raise ValueError(
            f"Block {index} of the model is a {type(block).__name__} whose "
            f"attention the extractor does not recognise (a changed forward, or a "
            f"block of another kind); read another layer=, or use the model's "
            f"blocks unchanged (see the Models page of the user guide)."
        )
    return family


def block_index(model: nn.Module, layer: int) -> int:
    """The index (0 .. depth - 1) of block ``layer`` (negative counts from the
    end); ValueError naming the range when there is no such block.

    Examples
    --------
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone import block_index
    >>> block_index(VisionTransformer(depth=3, embed_dim=32, num_heads=2), -1)
    2
    """
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
    """CLS attention to the patch tokens in one block of a ViT, fast.

    Parameters
    ----------
    model : timm ViT, EVA or BEiT, or a loaded transformers ViT
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
    index = block_index(model, layer)
    family = read_block_family(model, index)
    tokens, inputs = _read_block_inputs(model, images, index)
    rows = family.attention_rows(model.blocks[index], tokens, inputs)
    # The CLS row of the softmax over all tokens, at the patch tokens.
    weights = rows(slice(0, 1))[:, :, 0, model.num_prefix_tokens :]
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
    index = block_index(model, layer)
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

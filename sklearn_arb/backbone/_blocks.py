"""timm ViT blocks run on CPU with in-place updates and reused buffers.

A block's activations are fresh multi-megabyte tensors (the qkv projection, the
MLP's hidden layer). On CPU, glibc serves allocations that large with ``mmap``
and returns them to the system when freed, so every block pays page faults to
touch its new memory again: measured on this project's 2-core VM, DeiT-Tiny at
448 px spends ~14% of its block time there (ViT-S/8 at 488 px ~4%). Here the
projections write into buffers allocated once per forward pass
(``torch.addmm(..., out=)``), GELU and the residual additions work in place, and
every operation is the one timm's block runs, in the same order, so the tokens
are bit-identical to ``block(tokens)``.

Only the plain pre-norm block in eval mode is rewritten (timm ``Attention`` with
the fused kernel and no q/k norm, gate or scale norm, optional LayerScale, timm
``Mlp`` with GELU; the norms run as they are), and only when it is recognised
exactly: the block, its attention, MLP and LayerScales are of timm's own classes
(not subclasses) running timm's own ``forward`` (not one replaced on the class
or the instance). Any other block (a subclass, a changed forward, SwiGLU,
parallel or residual-post-norm blocks, ...) runs as ``block(tokens)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerScale, Mlp
from timm.models.vision_transformer import Attention, Block
from torch import nn

__all__ = ["is_plain_block", "run_blocks"]


# The forwards _plain_block reproduces, as timm defined them when imported.
_TIMM_FORWARDS = {
    cls: cls.forward for cls in (Block, Attention, Mlp, LayerScale, nn.GELU)
}


def _is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _runs_timm_forward(module: nn.Module, cls: type) -> bool:
    """``module`` is a ``cls`` (not a subclass) running timm's own forward."""
    return (
        type(module) is cls
        and cls.forward is _TIMM_FORWARDS[cls]
        and "forward" not in vars(module)
    )


def is_plain_block(block: nn.Module) -> bool:
    """Whether ``block`` computes exactly what :func:`_plain_block` does.

    Examples
    --------
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._blocks import is_plain_block
    >>> vit = VisionTransformer(depth=1, embed_dim=32, num_heads=2).eval()
    >>> is_plain_block(vit.blocks[0])
    True
    """
    if (
        not _runs_timm_forward(block, Block)
        or not _runs_timm_forward(block.attn, Attention)
        or block.training
        or not block.attn.fused_attn
    ):
        return False
    attn, mlp = block.attn, block.mlp
    return (
        all(_is_identity(m) for m in (attn.q_norm, attn.k_norm, attn.norm))
        and getattr(attn, "gate", None) is None
        and all(
            _is_identity(scale) or _runs_timm_forward(scale, LayerScale)
            for scale in (block.ls1, block.ls2)
        )
        and _runs_timm_forward(mlp, Mlp)
        and type(mlp.fc1) is nn.Linear  # not Mlp(use_conv=True)
        and _runs_timm_forward(mlp.act, nn.GELU)
        and _is_identity(mlp.norm)
    )


def _linear_into(inputs: torch.Tensor, linear: nn.Linear, out: torch.Tensor) -> None:
    """``out = linear(inputs)`` for 2-D ``inputs``, into ``out``."""
    if linear.bias is None:
        torch.mm(inputs, linear.weight.t(), out=out)
    else:
        torch.addmm(linear.bias, inputs, linear.weight.t(), out=out)


def _add_scaled_(tokens: torch.Tensor, update: torch.Tensor, scale: nn.Module) -> None:
    """``tokens += scale(update)``, in place (``update`` may be overwritten)."""
    if isinstance(scale, LayerScale):
        update.mul_(scale.gamma)
    tokens.add_(update)


class _Buffers:
    """Output buffers of one forward pass, one per role, reused by every block."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(
        self, role: str, like: torch.Tensor, shape: tuple[int, ...]
    ) -> torch.Tensor:
        buffer = self._buffers.get(role)
        if buffer is None or buffer.shape != shape:
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._buffers[role] = buffer
        return buffer


def _plain_block(block: Block, tokens: torch.Tensor, buffers: _Buffers) -> None:
    """``tokens = block(tokens)``, in place, for a block :func:`is_plain_block`."""
    attn, mlp = block.attn, block.mlp
    n_images, n_tokens, dim = tokens.shape
    rows = n_images * n_tokens
    normed = block.norm1(tokens).view(rows, dim)
    qkv = buffers.get("qkv", tokens, (rows, 3 * attn.attn_dim))
    _linear_into(normed, attn.qkv, qkv)
    query, keys, values = (
        qkv.view(n_images, n_tokens, 3, attn.num_heads, attn.head_dim)
        .permute(2, 0, 3, 1, 4)
        .unbind(0)
    )
    mixed = F.scaled_dot_product_attention(query, keys, values)
    mixed = mixed.transpose(1, 2).reshape(rows, attn.attn_dim)
    update = buffers.get("update", tokens, (rows, dim))
    _linear_into(mixed, attn.proj, update)
    _add_scaled_(tokens, update.view_as(tokens), block.ls1)
    hidden = buffers.get("hidden", tokens, (rows, mlp.fc1.out_features))
    _linear_into(block.norm2(tokens).view(rows, dim), mlp.fc1, hidden)
    torch._C._nn.gelu(hidden, approximate=mlp.act.approximate, out=hidden)
    _linear_into(hidden, mlp.fc2, update)
    _add_scaled_(tokens, update.view_as(tokens), block.ls2)


def run_blocks(blocks: nn.Sequential | list, tokens: torch.Tensor) -> torch.Tensor:
    """Run ``tokens`` through ``blocks`` in eval mode, as ``blocks(tokens)`` does.

    On CPU, without autocast, plain pre-norm blocks update a copy of ``tokens``
    in place with buffers shared by all blocks (see the module's notes); other
    blocks, and every block on other devices, run as ``block(tokens)``.
    ``tokens`` itself is never modified.

    Parameters
    ----------
    blocks : sequence of nn.Module
        timm ViT blocks, in eval mode.
    tokens : Tensor of shape (n, N, D)

    Returns
    -------
    Tensor of shape (n, N, D)

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone import run_blocks
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2).eval()
    >>> tokens = torch.randn(3, 17, 32)
    >>> with torch.inference_mode():
    ...     same = torch.equal(run_blocks(vit.blocks, tokens), vit.blocks(tokens))
    >>> same
    True
    """
    buffered = tokens.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
    buffers = _Buffers()
    tokens = tokens.clone() if buffered else tokens
    for block in blocks:
        if buffered and is_plain_block(block):
            _plain_block(block, tokens, buffers)
        else:
            tokens = block(tokens)
            if buffered:
                # A block may return a view of its input; the next plain block
                # writes into its tokens.
                tokens = tokens.clone()
    return tokens

"""The identity of a backbone's weights: the key of every cache in front of it.

Two extractors share cached models and maps only when their weights are the
same. Named weights (a hub name, a checkpoint file) are identified before they
are loaded, so a cache hit skips the load; a passed module or random weights are
identified by a digest of the architecture and the weights themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import xxhash
from torch import nn

from ._cache import array_digests

__all__ = ["module_weights_identity", "named_weights_identity"]


def named_weights_identity(
    model: str | nn.Module, pretrained: bool, checkpoint_path: str | os.PathLike | None
) -> str | None:
    """A key for named weights, known before loading them.

    Parameters
    ----------
    model : str or torch.nn.Module
        As in :func:`~sklearn_arb.backbone.load_vit`.
    pretrained : bool
        Whether the hub weights of a named model are loaded.
    checkpoint_path : str or path-like or None
        A local checkpoint file.

    Returns
    -------
    key : str or None
        The model name with the checkpoint's resolved path, modification time and
        size, or with ``hub``; None for a module, random weights or a missing file
        (which :func:`~sklearn_arb.backbone.load_vit` reports).

    Examples
    --------
    >>> from sklearn_arb.backbone._weights import named_weights_identity
    >>> named_weights_identity("deit_tiny_patch16_224", True, None)
    'deit_tiny_patch16_224|hub'
    >>> named_weights_identity("deit_tiny_patch16_224", False, None) is None
    True
    """
    if isinstance(model, str) and checkpoint_path is not None:
        path = Path(checkpoint_path).resolve()
        if not path.is_file():
            return None
        stat = path.stat()
        return f"{model}|{path}|{stat.st_mtime_ns}|{stat.st_size}"
    if isinstance(model, str) and pretrained:
        return f"{model}|hub"
    return None


def module_weights_identity(vit: nn.Module) -> str:
    """A key for a module's architecture and weights: a digest of both.

    Parameters
    ----------
    vit : timm VisionTransformer
        The loaded backbone.

    Returns
    -------
    key : str
        32 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._weights import module_weights_identity
    >>> def vit(seed):
    ...     torch.manual_seed(seed)
    ...     return VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
    ...                              depth=1, num_heads=2)
    >>> module_weights_identity(vit(0)) == module_weights_identity(vit(0))
    True
    >>> module_weights_identity(vit(0)) == module_weights_identity(vit(1))
    False
    """
    state = vit.state_dict()
    # The head count changes the attention without changing any weight's shape.
    architecture = (
        f"{type(vit).__qualname__}|heads={vit.blocks[0].attn.num_heads}|"
        f"prefix={vit.num_prefix_tokens}|{list(state)}"
    )
    weights = array_digests(v.detach().float().cpu().numpy() for v in state.values())
    return xxhash.xxh3_128_hexdigest("|".join([architecture, *weights]).encode())

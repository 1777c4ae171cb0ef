"""The identity of a backbone's weights: the key of every cache in front of it.

Two extractors, results or null states share cached maps only when their
weights are the same. A weights file is identified by a digest of its content,
computed once per file and remembered by its path, size and modification time
(so a file touched or copied keeps its identity, and one overwritten with other
weights gets another); hub weights by their model name; a passed module or
random weights by a digest of the architecture and the weights themselves.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import xxhash
from torch import nn

from ._cache import array_digests
from ._families import read_family

__all__ = [
    "file_digest",
    "module_weights_identity",
    "named_weights_identity",
    "weights_file_digest",
]

# (resolved path, size, mtime in ns) -> the file's content digest.
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}
_FILE_DIGESTS_LOCK = threading.Lock()


def file_digest(path: str | os.PathLike) -> str:
    """xxh3-128 of a file's bytes, read in 1 MiB blocks (memory stays flat).

    Parameters
    ----------
    path : str or path-like
        An existing file.

    Returns
    -------
    digest : str
        32 hexadecimal characters, read anew at every call (see
        :func:`weights_file_digest` for the remembered one).

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_arb.backbone import file_digest
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "a.bin")
    ...     _ = open(path, "wb").write(b"bytes")
    ...     len(file_digest(path))
    32
    """
    digest = xxhash.xxh3_128()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_file_digest(path: str | os.PathLike) -> str:
    """xxh3-128 of a file's bytes, read once per (path, size, mtime) per process.

    Parameters
    ----------
    path : str or path-like
        An existing file.

    Returns
    -------
    digest : str
        32 hexadecimal characters: the same for the same bytes, wherever the
        file is and whenever it was last touched.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_arb.backbone import weights_file_digest
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "w.pth")
    ...     _ = open(path, "wb").write(b"weights")
    ...     before = weights_file_digest(path)
    ...     os.utime(path, (0, 0))  # touched: the same bytes
    ...     before == weights_file_digest(path)
    True
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _FILE_DIGESTS_LOCK:
        known = _FILE_DIGESTS.get(key)
    if known is not None:
        return known
    digest = file_digest(resolved)
    with _FILE_DIGESTS_LOCK:
        _FILE_DIGESTS[key] = digest
    return digest


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
        The model name with the checkpoint's content digest
        (:func:`weights_file_digest`), or with ``hub``; None for a module,
        random weights or a missing file (which
        :func:`~sklearn_arb.backbone.load_vit` reports).

    Examples
    --------
    >>> from sklearn_arb.backbone._weights import named_weights_identity
    >>> named_weights_identity("deit_tiny_patch16_224", True, None)
    'deit_tiny_patch16_224|hub'
    >>> named_weights_identity("deit_tiny_patch16_224", False, None) is None
    True
    """
    if isinstance(model, str) and checkpoint_path is not None:
        if not Path(checkpoint_path).is_file():
            return None
        return f"{model}|{weights_file_digest(checkpoint_path)}"
    if isinstance(model, str) and pretrained:
        return f"{model}|hub"
    return None


def module_weights_identity(vit: nn.Module) -> str:
    """A key for a loaded backbone's architecture and weights: a digest of both.

    Parameters
    ----------
    vit : torch.nn.Module
        A loaded backbone (see :func:`~sklearn_arb.backbone.load_vit`), of any
        family the extractor reads.

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
    heads = [
        None if family is None else family.n_heads(block)
        for block in vit.blocks
        for family in [read_family(block)]
    ]
    architecture = (
        f"{type(vit).__qualname__}|heads={heads}|"
        f"prefix={vit.num_prefix_tokens}|{list(state)}"
    )
    weights = array_digests(v.detach().float().cpu().numpy() for v in state.values())
    return xxhash.xxh3_128_hexdigest("|".join([architecture, *weights]).encode())

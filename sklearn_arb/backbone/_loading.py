"""ViT backbones: a timm name or module, or a transformers model, folder or hub
id; hub or local-checkpoint weights."""

from __future__ import annotations

import copy
import os
from contextlib import nullcontext
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ._attention import block_index, read_block_family
from ._families import TIMM_FAMILIES, read_family
from ._hf import HF_MODEL_TYPES, is_hf_folder, is_hf_model, load_hf_vit
from ._hub import local_hub_only
from ._unreadable import unreadable_reason

__all__ = [
    "check_geometry",
    "load_checkpoint",
    "load_vit",
    "resolve_device",
    "validate_vit",
]

# DINO and similar training checkpoints nest the weights under one of these keys;
# the teacher is the network DINO evaluates.
_NESTED_KEYS = ("teacher", "model", "state_dict", "student", "model_ema")
_WRAPPER_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# The classifier (or DINO projection head) never runs: ARB needs the attention only.
_HEAD_PREFIXES = ("head.", "head_dist.", "fc_norm.")


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device of a ``device`` parameter (``"auto"``: CUDA if available).

    Examples
    --------
    >>> from sklearn_arb.backbone import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'."
        )
    return resolved


def _read_checkpoint_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated/garbled files fail in many ways
        raise ValueError(
            f"Could not read checkpoint {str(path)!r}: the file is corrupt or not a "
            f"PyTorch/safetensors checkpoint ({unreadable_reason(exc)}). "
            f"Re-download it, or save weights with torch.save(model.state_dict(), "
            f"path) or safetensors.torch.save_file."
        ) from None


def load_checkpoint(
    path: str | os.PathLike, keep_head: bool = False
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat timm-style state_dict, safely.

    Plain state_dicts (``.pth``/``.pt``, read with ``torch.load(weights_only=True)``),
    safetensors files, and training checkpoints that nest the weights (the DINO
    release format: ``{"teacher": ..., "student": ...}``; the teacher is used) are
    accepted; ``module.``/``backbone.`` prefixes are stripped and classifier or
    projection-head weights dropped.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    keep_head : bool, default=False
        Keep the classifier weights (CDAM explains a class logit).

    Returns
    -------
    state_dict : dict of str to Tensor

    Examples
    --------
    >>> import tempfile, torch
    >>> from sklearn_arb.backbone import load_checkpoint
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     torch.save({"teacher": {"module.backbone.cls_token": torch.zeros(1)}},
    ...                f"{tmp}/dino.pth")
    ...     sorted(load_checkpoint(f"{tmp}/dino.pth"))
    ['cls_token']
    """
    path = Path(path)
    checkpoint = _read_checkpoint_file(path)
    while isinstance(checkpoint, dict) and not any(
        isinstance(v, torch.Tensor) for v in checkpoint.values()
    ):
        nested = next(
            (k for k in _NESTED_KEYS if isinstance(checkpoint.get(k), dict)), None
        )
        if nested is None:
            break
        checkpoint = checkpoint[nested]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(
            f"Checkpoint {str(path)!r} holds no weights (expected a state_dict, or a "
            f"dict with one under {', '.join(_NESTED_KEYS)})."
        )
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            continue
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if keep_head or not key.startswith(_HEAD_PREFIXES):
            state_dict[key] = value
    return state_dict


def _resample_pos_embed(state_dict: dict, model: VisionTransformer) -> dict:
    """Interpolate a checkpoint's position embeddings to the model's grid."""
    pos_embed = state_dict.get("pos_embed")
    if pos_embed is None or pos_embed.shape == model.pos_embed.shape:
        return state_dict
    num_prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    state_dict = dict(state_dict)
    state_dict["pos_embed"] = resample_abs_pos_embed(
        pos_embed, new_size=model.patch_embed.grid_size, num_prefix_tokens=num_prefix
    )
    return state_dict


def _load_state_dict(
    model: nn.Module, state_dict: dict, source: str, keep_head: bool = False
) -> None:
    """strict loading (head excepted unless kept), with an error that names
    the keys. A kept head loads where the model has one (a DINO projection
    head in the checkpoint is dropped)."""
    expected = {
        k: v
        for k, v in model.state_dict().items()
        if keep_head or not k.startswith(_HEAD_PREFIXES)
    }
    if keep_head:
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if k in expected or not k.startswith(_HEAD_PREFIXES)
        }
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    problems = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if keys:
            shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {label} ({shown})")
    if problems:
        raise ValueError(
            f"Checkpoint {source} does not fit the model: {'; '.join(problems)}. Check "
            f"that the model name matches the checkpoint's architecture."
        )
    model.load_state_dict(state_dict, strict=False)


# Models that read well, named in the errors.
_EXAMPLES = (
    "a timm VisionTransformer, EVA or BEiT, or a transformers ViT or DINOv2, e.g. "
    "'deit_tiny_patch16_224' or 'vit_small_patch8_224.dino'"
)


def _why_not_readable(model: nn.Module) -> str | None:
    """Why the extractor cannot read ``model``'s CLS attention, or None."""
    blocks = getattr(model, "blocks", None)
    attends = any("Attention" in type(m).__name__ for m in model.modules())
    if blocks is None or len(blocks) == 0:
        if "Swin" in type(model).__name__:
            return (
                "it attends within shifted windows and pools its patch tokens; "
                "there is no CLS token"
            )
        if not attends and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            return "it is a convolutional network, without attention over tokens"
        if not attends:
            return "it has no attention over tokens"
        return "it has no sequence of Transformer blocks the extractor reads"
    if getattr(model, "cls_token", None) is None:
        pooling = getattr(model, "global_pool", None)
        pooled = f" (global_pool={pooling!r})" if pooling else ""
        return (
            f"it pools its patch tokens{pooled} and was built without a CLS "
            f"token (class_token=False)"
        )
    families = tuple(f.block for f in TIMM_FAMILIES)
    for index, block in enumerate(blocks):
        if read_family(block) is None and not isinstance(block, families):
            return (
                f"block {index} is a {type(block).__name__}, whose attention is not "
                f"one the extractor reads ({_readable_blocks()})"
            )
    return None


def _readable_blocks() -> str:
    """The blocks of the registered families, as an error names them."""
    timm_blocks = dict.fromkeys(
        f"{f.block.__module__.rsplit('.', 1)[-1]}.{f.block.__name__}"
        for f in TIMM_FAMILIES
    )
    layers = [known.layer for known in HF_MODEL_TYPES.values()]
    return f"timm {', '.join(timm_blocks)}; transformers {', '.join(layers)}"


def validate_vit(model: nn.Module) -> None:
    """Raise TypeError unless ``model`` is a ViT with a CLS token whose attention
    the extractor reads (see the Models page of the user guide).

    Examples
    --------
    >>> import timm
    >>> from sklearn_arb.backbone import validate_vit
    >>> validate_vit(timm.create_model("resnet18"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: The model ResNet is not a Vision Transformer with a CLS token ...
    """
    reason = _why_not_readable(model)
    if reason is not None:
        raise TypeError(_not_a_cls_vit(f"The model {type(model).__name__}", reason))


def load_vit(
    model: str | nn.Module,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    keep_head: bool = False,
) -> nn.Module:
    """Build a Vision Transformer (timm or transformers) for map extraction, in
    eval mode.

    Parameters
    ----------
    model : str or torch.nn.Module
        A timm model name (``"vit_small_patch8_224.dino"``,
        ``"deit_tiny_patch16_224"``, ``"vit_small_patch14_reg4_dinov2"``,
        ``"eva02_tiny_patch14_224"``, ...), a timm ViT, EVA or BEiT module, a
        ``transformers`` ViT/DeiT/DINOv2 model, or a folder written by its
        ``save_pretrained`` or a hub id (loaded with ``from_pretrained``, with
        their weights; normalisation and input size from the saved image
        processor). A module is deep-copied, never modified.
    pretrained : bool, default=False
        Download the hub weights of a named model (needs internet).
    checkpoint_path : str or path-like, default=None
        A local checkpoint (see :func:`load_checkpoint`) loaded into a named
        model, or into a copy of a given module.
    image_size : int or (int, int), default=None
        The input size the model will see; position embeddings are interpolated
        to its patch grid. ``None`` keeps the model's own size.
    keep_head : bool, default=False
        Keep a named model's classifier and a checkpoint's classifier weights
        (CDAM explains class logits); a given module keeps what it has.

    Returns
    -------
    model : torch.nn.Module
        The ViT (classifier head removed for named models), in eval mode, on CPU
        for named models.

    Examples
    --------
    >>> from sklearn_arb.backbone import load_vit
    >>> vit = load_vit("vit_tiny_patch16_224", image_size=64)
    >>> vit.patch_embed.grid_size, vit.pos_embed.shape[1]
    ((4, 4), 17)
    """
    check_weights_source(model, pretrained, checkpoint_path)
    if is_hf_model(model) or (isinstance(model, str) and _is_hf_source(model)):
        if checkpoint_path is not None:
            raise ValueError(
                f"checkpoint_path={str(checkpoint_path)!r} loads timm checkpoints; a "
                f"transformers model brings its own weights: pass the model or the "
                f"folder written by its save_pretrained."
            )
        vit = load_hf_vit(model)
        if image_size is not None:
            vit.set_input_size(image_size)
        _check_finite(vit, f"The model {type(vit.hf_model).__name__}")
        return vit
    if isinstance(model, str):
        vit = _create_named_vit(model, pretrained, image_size, keep_head)
        source = f"{model!r}"
    elif isinstance(model, nn.Module):
        vit = copy.deepcopy(model)
        source = type(model).__name__
        if image_size is not None and hasattr(vit, "set_input_size"):
            vit.set_input_size(img_size=image_size)
    else:
        raise TypeError(
            f"model must be a timm model name or a torch.nn.Module; got "
            f"{type(model).__name__}."
        )
    validate_vit(vit)
    weights = f"The model {source}"
    if checkpoint_path is not None:
        state_dict = _resample_pos_embed(
            load_checkpoint(checkpoint_path, keep_head), vit
        )
        _load_state_dict(
            vit, state_dict, f"{str(checkpoint_path)!r} for {source}", keep_head
        )
        weights = f"Checkpoint {str(checkpoint_path)!r}"
    _check_finite(vit, weights)
    return vit.eval()


def check_weights_source(
    model: str | nn.Module, pretrained: bool, checkpoint_path: str | os.PathLike | None
) -> None:
    """Raise ValueError when two sources of weights are asked for at once.

    Examples
    --------
    >>> from sklearn_arb.backbone._loading import check_weights_source
    >>> check_weights_source("deit_tiny_patch16_224", True, "deit.pth")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: pretrained=True and checkpoint_path='deit.pth' both give weights; ...
    """
    if pretrained and checkpoint_path is not None:
        raise ValueError(
            f"pretrained=True and checkpoint_path={str(checkpoint_path)!r} both give "
            f"weights; choose one: pretrained=False to use the file, or "
            f"checkpoint_path=None for the hub weights."
        )


def _not_a_cls_vit(name: str, reason: str) -> str:
    return (
        f"{name} is not a Vision Transformer with a CLS token ({reason}); the "
        f"extractor reads the CLS token's attention: use {_EXAMPLES}."
    )


def _is_hf_source(name: str) -> bool:
    """A ``save_pretrained`` folder, or a hub id that is not a timm name."""
    if Path(name).is_dir():
        return is_hf_folder(name)
    return "/" in name and not timm.is_model(name) and not Path(name).exists()


def _check_named_architecture(name: str) -> None:
    """Build the named model without memory or weights, and check it is a ViT
    whose CLS attention can be read: before any download or allocation."""
    with torch.device("meta"):
        skeleton = timm.create_model(name, pretrained=False, num_classes=0)
    reason = _why_not_readable(skeleton)
    if reason is not None:
        reason = f"it builds a {type(skeleton).__name__}: {reason}"
        raise ValueError(_not_a_cls_vit(repr(name), reason))


def _create_named_vit(
    name: str,
    pretrained: bool,
    image_size: int | tuple[int, int] | None,
    keep_head: bool = False,
) -> nn.Module:
    """``timm.create_model`` with the hub offline at once where unreachable."""
    if not timm.is_model(name):
        raise ValueError(
            f"{name!r} is not a timm model name; see timm.list_models('vit_*'), or "
            f"pass a torch.nn.Module, a transformers model or its save_pretrained "
            f"folder."
        )
    _check_named_architecture(name)
    kwargs = {} if keep_head else {"num_classes": 0}
    if image_size is not None:
        kwargs["img_size"] = image_size
    try:
        with local_hub_only() if pretrained else nullcontext():
            vit = timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as exc:  # the hub client's errors when it cannot download
        if not pretrained:
            raise
        raise OSError(
            f"The pretrained weights of {name!r} could not be downloaded from the "
            f"Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'offline?'}); go online, "
            f"or pass checkpoint_path= a local state_dict, safetensors or DINO "
            f"checkpoint file."
        ) from exc
    return vit


def _check_finite(vit: nn.Module, weights: str) -> None:
    """Raise ValueError naming the weights that hold NaN or infinite values."""
    bad = [
        name
        for name, tensor in vit.state_dict().items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (
            f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        )
        raise ValueError(
            f"{weights} has NaN/inf values in {shown}; the weights are damaged (or "
            f"their training diverged): use another checkpoint."
        )


def check_geometry(
    vit: nn.Module, size: tuple[int, int] | None, head: str | int, layer: int
) -> tuple[tuple[int, int], int]:
    """The input size and the (square) patch size, once the model and the
    extractor's ``image_size``, ``head`` and ``layer`` are known to fit.

    Examples
    --------
    >>> from sklearn_arb.backbone._loading import check_geometry, load_vit
    >>> vit = load_vit("vit_tiny_patch16_224", image_size=64)
    >>> check_geometry(vit, (64, 64), "mean", -1)
    ((64, 64), 16)
    >>> check_geometry(vit, (60, 64), "mean", -1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image_size=(60, 64) is not divisible by the model's patch size 16; ...
    """
    patch_h, patch_w = vit.patch_embed.patch_size
    if patch_h != patch_w:
        raise ValueError(
            f"The model's patches are {patch_h}x{patch_w}; only square patches "
            f"are supported."
        )
    image_size = size if size is not None else tuple(vit.patch_embed.img_size)
    if image_size[0] % patch_h or image_size[1] % patch_h:
        fits = [(s // patch_h) * patch_h or patch_h for s in image_size]
        raise ValueError(
            f"image_size={image_size} is not divisible by the model's patch size "
            f"{patch_h}; use a multiple of {patch_h}, e.g. image_size={fits}."
        )
    index = block_index(vit, layer)
    n_heads = read_block_family(vit, index).n_heads(vit.blocks[index])
    if head != "mean" and head >= n_heads:
        raise ValueError(
            f"head={head} but the model has {n_heads} heads; use 'mean' or "
            f"0..{n_heads - 1}."
        )
    return tuple(int(s) for s in image_size), int(patch_h)

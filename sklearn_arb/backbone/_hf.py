"""Hugging Face ``transformers`` ViTs, seen as the extractor sees timm's.

A ``transformers`` model object, a folder written by ``save_pretrained`` or a hub
id becomes a :class:`HFVisionTransformer`: the model's own base network, with
the attributes and methods the extractor reads from a timm ViT (``blocks``,
``patch_embed``, ``num_prefix_tokens``, ``embed_dim``, ``pretrained_cfg``,
``norm``, ``forward_head``, ``num_classes``), and the classifier of an image
classification model (CDAM explains its logits). The model runs its own forward
up to the read layer; a layer's attention rows are computed from its own query
and key projections (see ``_families.py``). ``transformers`` is optional
(``pip install sklearn-arb[hf]``) and imported only when such a model is given.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ._hub import local_hub_only
from ._unreadable import unreadable_reason

__all__ = [
    "CLASSIFIERS",
    "HF_MODEL_TYPES",
    "HFVisionTransformer",
    "is_hf_model",
    "load_hf_vit",
    "timm_vit_to_transformers",
]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _cls_token_head(head: nn.ModuleDict, tokens: torch.Tensor, n_prefix: int):
    return head["classifier"](tokens[:, 0])


def _cls_and_distillation_head(
    head: nn.ModuleDict, tokens: torch.Tensor, n_prefix: int
):
    # DeiT with its teacher: the mean of both classifiers (its inference mode).
    cls_logits = head["cls_classifier"](tokens[:, 0])
    return (cls_logits + head["distillation_classifier"](tokens[:, 1])) / 2


def _cls_and_mean_patch_head(head: nn.ModuleDict, tokens: torch.Tensor, n_prefix: int):
    # DINOv2: the CLS token next to the mean of the patch tokens (registers out).
    pooled = torch.cat([tokens[:, 0], tokens[:, n_prefix:].mean(dim=1)], dim=1)
    return head["classifier"](pooled)


@dataclass(frozen=True)
class HFModelType:
    """What the extractor knows of one transformers model type.

    ``base`` is its base model class; ``layer``, ``attention`` and ``norm`` name
    its layer and attention classes (in ``transformers.models.<type>``) and the
    layer's pre-attention norm; ``normalisation`` is the (mean, std) of its
    published checkpoints' image processors (used for a model object that comes
    without one); ``classifiers`` maps its image classification model classes
    to the function computing their logits from the base model's last hidden
    state, as their own forward does; ``distillation_token``: a second prefix
    token after CLS.
    """

    base: str
    layer: str
    attention: str
    norm: str
    normalisation: tuple[tuple[float, ...], tuple[float, ...]]
    classifiers: dict[str, Callable] = field(default_factory=dict)
    distillation_token: bool = False


# The transformers model types whose layers the extractor reads (their attention
# is softmax(q k^T * scale) over all tokens, CLS first): the one table of them.
HF_MODEL_TYPES = {
    "vit": HFModelType(
        "ViTModel",
        "ViTLayer",
        "ViTAttention",
        "layernorm_before",
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # google/vit-*
        {"ViTForImageClassification": _cls_token_head},
    ),
    "deit": HFModelType(
        "DeiTModel",
        "DeiTLayer",
        "DeiTAttention",
        "layernorm_before",
        _IMAGENET,
        {
            "DeiTForImageClassification": _cls_token_head,
            "DeiTForImageClassificationWithTeacher": _cls_and_distillation_head,
        },
        distillation_token=True,
    ),
    "dinov2": HFModelType(
        "Dinov2Model",
        "Dinov2Layer",
        "Dinov2Attention",
        "norm1",
        _IMAGENET,
        {"Dinov2ForImageClassification": _cls_and_mean_patch_head},
    ),
    "dinov2_with_registers": HFModelType(
        "Dinov2WithRegistersModel",
        "Dinov2WithRegistersLayer",
        "Dinov2WithRegistersAttention",
        "norm1",
        _IMAGENET,
        {"Dinov2WithRegistersForImageClassification": _cls_and_mean_patch_head},
    ),
}
SUPPORTED_MODEL_TYPES = tuple(HF_MODEL_TYPES)
# The image classification models of every type, by class name.
CLASSIFIERS = {
    name: head
    for model_type in HF_MODEL_TYPES.values()
    for name, head in model_type.classifiers.items()
}


def _classifier(model: nn.Module):
    """The head function of ``model`` if it is one of :data:`CLASSIFIERS`
    running its own forward (not a subclass or a changed forward), else None."""
    import transformers

    name = type(model).__name__
    if name not in CLASSIFIERS or "forward" in vars(model):
        return None
    if type(model) is not getattr(transformers, name, None):
        return None
    return CLASSIFIERS[name] if int(model.config.num_labels) > 0 else None


@dataclass(frozen=True)
class PatchGeometry:
    """The patch grid of a model, named as timm's ``patch_embed`` names it."""

    patch_size: tuple[int, int]
    img_size: tuple[int, int]

    @property
    def grid_size(self) -> tuple[int, int]:
        return (
            self.img_size[0] // self.patch_size[0],
            self.img_size[1] // self.patch_size[1],
        )


def is_hf_model(model: object) -> bool:
    """Whether ``model`` is a ``transformers`` model object.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_arb.backbone._hf import is_hf_model
    >>> is_hf_model(nn.Linear(2, 2))
    False
    """
    return isinstance(model, nn.Module) and type(model).__module__.startswith(
        "transformers."
    )


def is_hf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``save_pretrained``."""
    return (Path(path) / "config.json").is_file()


class HFVisionTransformer(nn.Module):
    """A ``transformers`` ViT with the attributes of a timm ViT the extractor reads.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        ``ViTModel``, ``DeiTModel``, ``Dinov2Model``, ``Dinov2WithRegistersModel``
        or a model built on one (``*ForImageClassification``, ...); its base
        network is kept, and the classifier of the image classification models
        in :data:`CLASSIFIERS` (another head is dropped). Not copied.
    mean, std : tuple of float
        The normalisation of its image processor.
    input_size : (int, int)
        The input size of its image processor.

    Examples
    --------
    >>> from transformers import ViTConfig, ViTModel
    >>> from sklearn_arb.backbone._hf import HFVisionTransformer
    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...                    intermediate_size=64, image_size=32, patch_size=8)
    >>> vit = HFVisionTransformer(ViTModel(config), (0.5,) * 3, (0.5,) * 3, (32, 32))
    >>> len(vit.blocks), vit.num_prefix_tokens, vit.patch_embed.grid_size
    (2, 1, (4, 4))

    An image classification model keeps its classifier (``num_labels=2``):

    >>> import torch
    >>> from transformers import ViTForImageClassification
    >>> classifier = HFVisionTransformer(
    ...     ViTForImageClassification(config).eval(), (0.5,) * 3, (0.5,) * 3, (32, 32)
    ... )
    >>> with torch.inference_mode():
    ...     logits = classifier(torch.randn(3, 3, 32, 32))
    >>> classifier.num_classes, tuple(logits.shape)
    (2, (3, 2))
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        base = model.base_model
        config = base.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise TypeError(_unsupported_message(type(model).__name__, config))
        self.hf_model = base
        self._head = _classifier(model)
        # The classifier's modules (the top model's children but the base).
        self.hf_head = nn.ModuleDict(
            {
                name: child
                for name, child in model.named_children()
                if self._head is not None and child is not base
            }
        )
        self.num_classes = int(config.num_labels) if self._head is not None else 0
        # transformers 5 keeps the layers on the model, 4 on its encoder.
        layers = getattr(base, "layers", None)
        self.blocks = layers if layers is not None else base.encoder.layer
        self.embed_dim = int(config.hidden_size)
        self.num_prefix_tokens = (
            1
            + int(HF_MODEL_TYPES[config.model_type].distillation_token)
            + int(getattr(config, "num_register_tokens", 0) or 0)
        )
        patch = int(config.patch_size)
        self.patch_embed = PatchGeometry((patch, patch), tuple(input_size))
        self.pretrained_cfg = {
            "input_size": (3, *input_size),
            "mean": tuple(mean),
            "std": tuple(std),
            "interpolation": "bicubic",
            "crop_pct": 1.0,
        }
        parameters = inspect.signature(base.forward).parameters
        # ViT and DeiT interpolate position embeddings only when asked; DINOv2
        # always does.
        self._forward_kwargs = (
            {"interpolate_pos_encoding": True}
            if "interpolate_pos_encoding" in parameters
            else {}
        )

    def set_input_size(self, img_size: int | tuple[int, int]) -> None:
        """Read images of ``img_size`` (the model interpolates its position
        embeddings)."""
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_embed = PatchGeometry(self.patch_embed.patch_size, size)
        self.pretrained_cfg = {**self.pretrained_cfg, "input_size": (3, *size)}

    @property
    def norm(self) -> nn.Module:
        """The base model's final norm (its ``layernorm``), as timm's ``norm``."""
        return self.hf_model.layernorm

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The model's own forward: its last hidden state (after ``norm``)."""
        return self.hf_model(pixel_values=images, **self._forward_kwargs)[0]

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """The output of the last hidden state ``tokens`` ``(n, N, D)``: the
        classifier's logits ``(n, C)`` as the classification model computes
        them, or, without a classifier, the CLS token ``(n, D)`` (as a timm ViT
        without head: DINO's image embedding)."""
        if self._head is None:
            return tokens[:, 0]
        return self._head(self.hf_head, tokens, self.num_prefix_tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``forward_head(forward_features(images))``, as a timm ViT."""
        return self.forward_head(self.forward_features(images))


def _unsupported_message(name: str, config) -> str:
    return (
        f"{name} (model_type {config.model_type!r}) is not a transformers Vision "
        f"Transformer whose CLS attention the extractor reads; use a "
        f"{', '.join(SUPPORTED_MODEL_TYPES)} model, e.g. ViTModel or Dinov2Model."
    )


def _saved_file(source: str | None, filename: str) -> Path | None:
    """A file saved with a folder or hub id (the hub cache when the hub cannot
    be reached), if any."""
    if source is None:
        return None
    if Path(source).is_dir():
        path = Path(source) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        with local_hub_only():
            return Path(hf_hub_download(source, filename))
    except Exception:  # not saved, or offline without it
        return None


def _weights_files(source: str) -> str:
    """The weights files of a folder, as named in errors (``"in a.bin "``)."""
    if not Path(source).is_dir():
        return ""
    files = sorted(
        path.name
        for pattern in ("*.bin", "*.safetensors", "*.pt", "*.pth")
        for path in Path(source).glob(pattern)
    )
    return f"in {', '.join(files)} " if files else ""


def _refuse_remote_code(source: str, name: str) -> None:
    """ValueError, before transformers reads anything, when the model's
    ``config.json`` maps its classes to code of its own (``auto_map``):
    a model folder's code is never run."""
    config_file = _saved_file(source, "config.json")
    if config_file is None:
        return
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"The transformers model {name} has an unreadable config.json "
            f"({unreadable_reason(exc)}); write it again with save_pretrained."
        ) from None
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if auto_map:
        entries = (
            "; ".join(f"{key}: {value}" for key, value in auto_map.items())
            if isinstance(auto_map, dict)
            else str(auto_map)
        )
        raise ValueError(
            f"The transformers model {name} asks to run code of its own "
            f"(config.json auto_map {{{entries}}}); a model folder's code is never "
            f"run: use a {', '.join(SUPPORTED_MODEL_TYPES)} model that transformers "
            f"itself defines."
        )


def _processor_settings(config_file: Path | None, model_type: str, image_size: int):
    """(mean, std, (H, W)) of the image processor saved in ``config_file``, or
    the defaults of the model type's checkpoints."""
    mean, std = HF_MODEL_TYPES[model_type].normalisation
    size = (image_size, image_size)
    if config_file is None:
        return mean, std, size
    settings = json.loads(config_file.read_text())
    if settings.get("do_normalize", True):
        mean = tuple(settings.get("image_mean", mean))
        std = tuple(settings.get("image_std", std))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    crop = settings.get("crop_size") if settings.get("do_center_crop") else None
    resize = crop or settings.get("size") or {}
    if "height" in resize and "width" in resize:
        size = (int(resize["height"]), int(resize["width"]))
    elif "shortest_edge" in resize:
        size = (int(resize["shortest_edge"]),) * 2
    return mean, std, size


def _from_pretrained(source: str, name: str) -> nn.Module:
    """``from_pretrained``: a folder, or a hub id (the hub cache only when the hub
    cannot be reached); an image classification model of :data:`CLASSIFIERS`
    with its classifier, any other as ``AutoModel`` (its base network)."""
    _refuse_remote_code(source, name)
    import transformers

    try:
        with local_hub_only():
            # Never the model's own code (nor a prompt asking whether to run it).
            config = transformers.AutoConfig.from_pretrained(
                source, trust_remote_code=False
            )
            if config.model_type not in SUPPORTED_MODEL_TYPES:
                raise TypeError(_unsupported_message(name, config))
            classifier = next(
                (a for a in config.architectures or () if a in CLASSIFIERS), None
            )
            model_class = (
                transformers.AutoModel
                if classifier is None
                else getattr(transformers, classifier)
            )
            try:
                return model_class.from_pretrained(source, trust_remote_code=False)
            except (OSError, TypeError):
                raise
            except Exception as exc:  # a refused pickle, a damaged file, ...
                raise ValueError(
                    f"Could not read the weights of the transformers model {name} "
                    f"{_weights_files(source)}({unreadable_reason(exc)}); "
                    f"re-download them, or write them with save_pretrained "
                    f"(safetensors)."
                ) from None
    except OSError as exc:
        raise OSError(
            f"The transformers model {name} could not be loaded from the Hugging "
            f"Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'offline?'}); go online, or "
            f"pass a folder written by save_pretrained or the model object."
        ) from exc


def load_hf_vit(model: str | os.PathLike | nn.Module) -> HFVisionTransformer:
    """A ``transformers`` model object, ``save_pretrained`` folder or hub id as
    an :class:`HFVisionTransformer` (a model object is deep-copied first).

    Examples
    --------
    >>> from transformers import Dinov2Config, Dinov2Model
    >>> from sklearn_arb.backbone._hf import load_hf_vit
    >>> config = Dinov2Config(hidden_size=32, num_hidden_layers=2,
    ...                       num_attention_heads=2, image_size=32, patch_size=8)
    >>> vit = load_hf_vit(Dinov2Model(config))
    >>> type(vit.hf_model).__name__, vit.pretrained_cfg["mean"]
    ('Dinov2Model', (0.485, 0.456, 0.406))
    """
    if isinstance(model, nn.Module):
        source = getattr(model.config, "_name_or_path", None) or None
        model = copy.deepcopy(model)
        name = type(model).__name__
    else:
        source = str(model)
        name = repr(source)
        model = _from_pretrained(source, name)
    config = model.base_model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise TypeError(_unsupported_message(name, config))
    mean, std, size = _processor_settings(
        _saved_file(source, "preprocessor_config.json"),
        config.model_type,
        int(config.image_size),
    )
    return HFVisionTransformer(model, mean, std, size).eval()


def timm_vit_to_transformers(
    state_dict: dict[str, torch.Tensor], depth: int
) -> dict[str, torch.Tensor]:
    """A timm ViT state_dict (head dropped) under transformers ``ViTModel``'s keys.

    For a plain timm ViT (pre-norm blocks, fused qkv, GELU MLP, one CLS token):
    the same network as ``ViTModel(config, add_pooling_layer=False)`` with
    ``layer_norm_eps=1e-6`` and ``qkv_bias=True``.

    Examples
    --------
    >>> import timm
    >>> from sklearn_arb.backbone._hf import timm_vit_to_transformers
    >>> vit = timm.create_model("vit_tiny_patch16_224", depth=1, num_classes=0)
    >>> sorted(timm_vit_to_transformers(vit.state_dict(), depth=1))[:2]
    ['embeddings.cls_token', 'embeddings.patch_embeddings.projection.bias']
    """
    converted = {
        "embeddings.cls_token": state_dict["cls_token"],
        "embeddings.position_embeddings": state_dict["pos_embed"],
        "layernorm.weight": state_dict["norm.weight"],
        "layernorm.bias": state_dict["norm.bias"],
    }
    for kind in ("weight", "bias"):
        converted[f"embeddings.patch_embeddings.projection.{kind}"] = state_dict[
            f"patch_embed.proj.{kind}"
        ]
    renamed = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for i in range(depth):
        for kind in ("weight", "bias"):
            for timm_name, hf_name in renamed.items():
                converted[f"layers.{i}.{hf_name}.{kind}"] = state_dict[
                    f"blocks.{i}.{timm_name}.{kind}"
                ]
            query, key, value = state_dict[f"blocks.{i}.attn.qkv.{kind}"].chunk(3)
            for name, tensor in (("q", query), ("k", key), ("v", value)):
                converted[f"layers.{i}.attention.{name}_proj.{kind}"] = tensor
    return converted

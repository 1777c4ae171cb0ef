"""The classifier that perturbation metrics query: a model and its preprocessing."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from timm.data import resolve_data_config
from torch import nn

from .._extractor import AttentionExtractor
from .._images import load_images, size_pair
from ..backbone._cache import shared_model
from ..backbone._loading import load_vit
from ..backbone._weights import named_weights_identity

__all__ = ["ImageClassifier", "as_classifier"]


def _has_classifier(module: nn.Module) -> bool:
    return int(getattr(module, "num_classes", 0) or 0) > 0


@dataclass(frozen=True)
class ImageClassifier:
    """A classifier with the preprocessing its images need.

    Parameters
    ----------
    module : torch.nn.Module
        Maps normalised images ``(n, 3, H, W)`` to logits ``(n, n_classes)``;
        in eval mode, never modified.
    image_size : (int, int)
        (H, W) the images are resized to.
    patch_size : int
        Pixels per token side.
    mean, std : tuple of float
        Per-channel normalisation: the module sees ``(pixels - mean) / std``.
    batch_size : int
        Images per forward pass.

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.evaluation import as_classifier
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> classifier = as_classifier(vit)
    >>> classifier.image_size, classifier.patch_size, classifier.grid_shape
    ((32, 32), 8, (4, 4))
    >>> classifier.n_tokens
    16
    >>> probabilities = classifier.probabilities(np.zeros((2, 32, 32, 3)))
    >>> probabilities.shape, bool(np.allclose(probabilities.sum(axis=1), 1))
    ((2, 5), True)
    """

    module: nn.Module
    image_size: tuple[int, int]
    patch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_size: int = 32

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the token grid."""
        return (
            self.image_size[0] // self.patch_size,
            self.image_size[1] // self.patch_size,
        )

    @property
    def n_tokens(self) -> int:
        """Tokens per image, the size of the grid (one map value each)."""
        rows, cols = self.grid_shape
        return rows * cols

    @property
    def device(self) -> torch.device:
        """Where the module's parameters are."""
        parameter = next(self.module.parameters(), None)
        return torch.device("cpu") if parameter is None else parameter.device

    def load(self, images: Any) -> np.ndarray:
        """Pixel values in [0, 1] ``(n, H, W, 3)`` float32 at the model's size
        (:func:`~sklearn_arb.load_images`)."""
        return load_images(images, image_size=self.image_size)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(n, n_classes)`` float64 of pixel
        values ``(n, H, W, 3)`` in [0, 1], a batch at a time."""
        return np.concatenate(
            [
                self.batch_probabilities(pixels[start : start + self.batch_size])
                for start in range(0, len(pixels), self.batch_size)
            ]
        )

    def batch_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """:meth:`probabilities` of one forward batch."""
        device = self.device
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        batch = batch.to(device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            logits = self.module((batch - mean) / std)
            if logits.ndim != 2:
                raise ValueError(
                    f"The model returned an output of shape {tuple(logits.shape)}; "
                    f"a classifier returns logits of shape (n_images, n_classes)."
                )
            return torch.softmax(logits.double(), dim=1).cpu().numpy()


def _extractor_of(pipeline: Pipeline) -> AttentionExtractor:
    for _, step in pipeline.steps:
        if isinstance(step, AttentionExtractor):
            return step
    raise ValueError(
        "The Pipeline has no AttentionExtractor step to take the model from; pass "
        "the fitted extractor or a torch classifier."
    )


def _extractor_module(extractor: AttentionExtractor) -> nn.Module:
    """The extractor's ViT with its classifier: its own module when it has one,
    else its named weights loaded again with the head (shared in-process)."""
    check_is_fitted(extractor, "model_")
    if _has_classifier(extractor.model_):
        return extractor.model_
    weights = named_weights_identity(
        extractor.model, extractor.pretrained, extractor.checkpoint_path
    )
    if weights is None:
        raise ValueError(
            "The extractor's model has no classification head and its weights are "
            "not named (a module without head, or random weights), so class "
            "probabilities cannot be had; give the extractor a classifier (a timm "
            "ViT with num_classes > 0, or a checkpoint with its head)."
        )
    key = (weights, extractor.image_size_, str(extractor.device_), True)
    module = shared_model(
        key,
        lambda: load_vit(
            extractor.model,
            pretrained=extractor.pretrained,
            checkpoint_path=extractor.checkpoint_path,
            image_size=extractor.image_size_,
            keep_head=True,
        ).to(extractor.device_),
    )
    if not _has_classifier(module):
        raise ValueError(
            f"The model {extractor.model!r} has no classification head (e.g. DINO); "
            f"faithfulness needs class probabilities: use a classifier."
        )
    return module


def as_classifier(
    model: Any,
    *,
    image_size: int | Sequence[int] | None = None,
    patch_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 32,
) -> ImageClassifier:
    """The classifier of a fitted extractor, Pipeline or torch module.

    Parameters
    ----------
    model : AttentionExtractor, Pipeline, torch.nn.Module or ImageClassifier
        A fitted :class:`~sklearn_arb.AttentionExtractor` (its ViT with the
        classifier, image size, patch size, normalisation and device; a model
        loaded without its head, as the attention source loads named weights,
        is loaded again with it), a fitted Pipeline holding one, or a torch
        classifier of normalised images (used on its own device; a module in
        training mode is deep-copied and put in eval mode, the original is not
        touched).
    image_size, patch_size, mean, std : optional
        For a torch module: its input size, patch size and normalisation
        (read from a timm ViT when not given, as the extractor reads them).
    batch_size : int, default=32
        Images per forward pass.

    Returns
    -------
    classifier : ImageClassifier

    Examples
    --------
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb import AttentionExtractor
    >>> from sklearn_arb.evaluation import as_classifier
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1,
    ...                         num_heads=2, num_classes=5)
    >>> extractor = AttentionExtractor(vit, image_size=32).fit()
    >>> classifier = as_classifier(extractor)
    >>> classifier.mean == extractor.mean_, classifier.grid_shape
    (True, (4, 4))
    """
    if isinstance(model, ImageClassifier):
        return model
    if isinstance(model, Pipeline):
        model = _extractor_of(model)
    if isinstance(model, AttentionExtractor):
        return ImageClassifier(
            _extractor_module(model),
            model.image_size_,
            model.patch_size_,
            model.mean_,
            model.std_,
            batch_size,
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a fitted AttentionExtractor, a Pipeline holding one, or "
            f"a torch classifier; got {type(model).__name__}."
        )
    if model.training:
        model = copy.deepcopy(model).eval()
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None:
        # A timm-style ViT: its geometry, and the normalisation the extractor
        # would read from it.
        config = resolve_data_config(model=model)
        if image_size is None:
            image_size = tuple(patch_embed.img_size)
        if patch_size is None:
            patch_size = int(patch_embed.patch_size[0])
        mean = config["mean"] if mean is None else mean
        std = config["std"] if std is None else std
    for name, value in (
        ("image_size", image_size),
        ("patch_size", patch_size),
        ("mean", mean),
        ("std", std),
    ):
        if value is None:
            raise ValueError(
                f"{name} is not known for a {type(model).__name__}; pass {name}=..."
            )
    return ImageClassifier(
        model,
        size_pair(image_size),
        int(patch_size),
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        batch_size,
    )

"""Class-discriminative attention maps (CDAM; Brocki & Chung, 2023).

For each patch token ``t``, ``CDAM_t = x_t . d s / d x_t``: the dot product of
the read block's pre-attention norm output ``x_t`` (the tokens its attention
sees: timm's ``norm1``, transformers' ``layernorm_before``) with
the gradient of a target score ``s`` (a class logit, or a scalar of the model's
output) with respect to ``x_t``. Scores are signed: positive where the token
raises the target score.

The gradient needs a backward pass through the read block, the blocks after it,
the final norm and the head only: the blocks before it run without autograd
(one forward pass of the model records the tokens entering the read block and
the other inputs it passes every block from there on: rotary embeddings, shared
position bias, ...), and the read block's norm output is replaced by a leaf
tensor (a forward hook), so the graph starts there. :func:`reference_cdam` takes
the same gradient through the whole network (autograd from the pixels on), the
ground truth for tests and the baseline for benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from ._attention import block_index, block_inputs, read_block_family
from ._hooks import this_thread_only

__all__ = ["cdam", "check_cdam_target", "reference_cdam", "target_classes"]

Target = int | str | Callable[[torch.Tensor], torch.Tensor]


def _has_class_head(model: nn.Module) -> bool:
    return int(getattr(model, "num_classes", 0) or 0) > 0


def check_cdam_target(model: nn.Module, target: Any) -> None:
    """ValueError when ``model`` cannot give ``target``'s score for CDAM."""
    if not all(hasattr(model, name) for name in ("forward_head", "norm", "blocks")):
        raise ValueError(
            f"source='cdam' needs a ViT with blocks, norm and forward_head (timm, or "
            f"a transformers model loaded by the extractor); got a "
            f"{type(model).__name__}. Use source='attention' or 'rollout'."
        )
    if callable(target):
        return
    if not _has_class_head(model):
        raise ValueError(
            f"target={target!r} names a class, but the model has no "
            f"classification head (num_classes=0, e.g. DINO); pass a callable "
            f"target mapping the model's output (n, D) to one score per image."
        )
    n_classes = int(model.num_classes)
    named = [] if isinstance(target, str) else np.ravel(target).tolist()
    outside = [c for c in named if isinstance(c, Integral) and not 0 <= c < n_classes]
    if outside:
        raise ValueError(
            f"target names class {outside[0]}, but the model has {n_classes} "
            f"classes; use a class 0..{n_classes - 1} or 'predicted'."
        )


def target_classes(
    model: nn.Module, observed: torch.Tensor, target: Any, classes: Any = None
) -> torch.Tensor | None:
    """The class whose logit CDAM explains, one per observed image (``(n,)``
    long), or None for a callable target.

    ``classes``: one class per image (a list target) overrides ``target``;
    ``"predicted"``: the observed image's top class (one forward pass).
    """
    n_images = len(observed)
    if classes is not None:
        return torch.as_tensor(classes, dtype=torch.long, device=observed.device)
    if callable(target):
        return None
    if isinstance(target, Integral):
        return torch.full((n_images,), int(target), device=observed.device)
    return model(observed).argmax(dim=-1)


def _scores(output: torch.Tensor, target: Any, classes: torch.Tensor | None):
    if classes is None:
        scores = target(output)
        if scores.shape != (len(output),):
            raise ValueError(
                f"The target callable must return one score per image, shape "
                f"({len(output)},); it returned shape {tuple(scores.shape)}."
            )
        return scores
    return output.gather(1, classes[:, None]).squeeze(1)


def cdam(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    target: Any = "predicted",
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """CDAM scores of the patch tokens, with a backward pass from ``layer`` on.

    Parameters
    ----------
    model : timm ViT, EVA or BEiT, or a loaded transformers ViT
        In eval mode, with a classification head unless ``target`` is callable.
    images : Tensor of shape (n, 3, H, W)
        Normalised images.
    layer : int, default=-1
        The block whose pre-attention norm output is explained (-1: the last).
    target : int, "predicted" or callable, default="predicted"
        The class whose logit is the score, the image's top class, or a callable
        mapping the model's output ``(n, C)`` to ``(n,)`` scores.
    classes : Tensor of shape (n,), default=None
        The class of each image (overrides an int or "predicted" target; the
        bootstrap images of an image get its class).

    Returns
    -------
    Tensor of shape (n, P)
        float32, signed, patch tokens in row-major grid order.

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._cdam import cdam, reference_cdam
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2, num_classes=5).eval()
    >>> images = torch.randn(2, 3, 32, 32)
    >>> fast, full = cdam(vit, images, target=3), reference_cdam(vit, images, target=3)
    >>> fast.shape, bool((fast - full).abs().max() < 1e-5)
    (torch.Size([2, 16]), True)
    """
    index = block_index(model, layer)
    norm = read_block_family(model, index).norm(model.blocks[index])
    with torch.inference_mode(False), torch.no_grad():
        images = images.clone()  # an inference tensor cannot enter autograd
        inputs = block_inputs(model, images, range(index, len(model.blocks)))
        if classes is None:
            classes = target_classes(model, images, target)
    normed: list[torch.Tensor] = []

    def leaf_output(module: nn.Module, args: tuple, output: torch.Tensor):
        normed.append(output.detach().requires_grad_(True))
        return normed[-1]

    # this thread's pass only: the CPU streams share the model between threads.
    handle = norm.register_forward_hook(this_thread_only(leaf_output))
    try:
        with torch.inference_mode(False), torch.enable_grad():
            tokens = inputs[0][0].clone()
            for block, (_, other) in zip(model.blocks[index:], inputs, strict=True):
                tokens = block(tokens, **other)
                handle.remove()  # the leaf is the read block's norm output
            output = model.forward_head(model.norm(tokens))
            scores = _scores(output, target, classes)
            (gradient,) = torch.autograd.grad(scores.sum(), normed[0])
    finally:
        handle.remove()
    maps = (normed[0].detach() * gradient).sum(dim=-1)
    return maps[:, model.num_prefix_tokens :].float()


def reference_cdam(
    model: nn.Module,
    images: torch.Tensor,
    layer: int = -1,
    target: Any = "predicted",
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain computation of :func:`cdam`: autograd through the whole model.

    The model runs its own ``forward`` with the pixels requiring gradients; the
    read block's pre-attention norm output is kept and differentiated with
    ``torch.autograd.grad``. The ground truth and the speed baseline.

    Parameters
    ----------
    model, images, layer, target, classes
        As in :func:`cdam`.

    Returns
    -------
    Tensor of shape (n, P)

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from sklearn_arb.backbone._cdam import reference_cdam
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
    ...                         num_heads=2, num_classes=5).eval()
    >>> reference_cdam(vit, torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 16])
    """
    index = block_index(model, layer)
    norm = read_block_family(model, index).norm(model.blocks[index])
    normed: list[torch.Tensor] = []
    handle = norm.register_forward_hook(
        this_thread_only(lambda module, args, output: normed.append(output))
    )
    try:
        with torch.inference_mode(False), torch.enable_grad():
            pixels = images.clone().requires_grad_(True)
            output = model(pixels)
            if classes is None:
                classes = target_classes(model, pixels, target)
            scores = _scores(output, target, classes)
            (gradient,) = torch.autograd.grad(scores.sum(), normed[0])
    finally:
        handle.remove()
    maps = (normed[0].detach() * gradient).sum(dim=-1)
    return maps[:, model.num_prefix_tokens :].float()

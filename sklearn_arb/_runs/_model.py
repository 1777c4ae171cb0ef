"""The fitted extractor of a run, or one clear line saying why there is none."""

from __future__ import annotations

from typing import Any

from ..backbone._hub import hub_declared_offline, hub_reachable
from ._errors import RunError, first_line
from ._settings import RunSettings


def build_extractor(settings: RunSettings) -> Any:
    """The fitted extractor of ``settings``; a RunError where no real weights
    can be had or the model cannot run (not a ViT, an image size it cannot
    take)."""
    from .._extractor import AttentionExtractor

    model, weights = settings.model, settings.weights
    if weights is not None and settings.pretrained:
        raise RunError(
            f"--pretrained and --weights {weights} both name weights for "
            f"{model}; pass one of them"
        )
    if weights is None and not settings.pretrained:
        raise RunError(
            f"no weights for {model}: pass --weights PATH (a state_dict, "
            "safetensors or DINO checkpoint file) or --pretrained to download them "
            "(needs internet); random weights would give meaningless maps"
        )
    import timm

    if not timm.is_model(model):
        raise RunError(
            f"unknown model {model!r}; pass a timm ViT name such as "
            "deit_tiny_patch16_224 or vit_small_patch8_224.dino (timm.list_models())"
        )
    extractor = AttentionExtractor(
        model,
        pretrained=settings.pretrained,
        checkpoint_path=weights,
        image_size=settings.image_size,
        n_bootstrap=settings.n_bootstrap,
        bootstrap=settings.bootstrap,
        bootstrap_width=settings.bootstrap_width,
        source=settings.source,
        head=settings.head,
        layer=settings.layer,
        discard_ratio=settings.discard_ratio,
        target=settings.target,
        device=settings.device,
        # Images per forward pass: sized to the device.
        batch_size=None,
        random_state=settings.seed,
    )
    no_weights = (
        f"no weights for {model}: they could not be downloaded from the hub "
        "({why}) and no --weights file was given; pass --weights PATH (a local "
        "state_dict, safetensors or DINO checkpoint) or go online"
    )
    # Probe first: without a network, the hub client retries for about a minute
    # before failing. Declared offline (HF_HUB_OFFLINE) it reads its local cache
    # and fails at once where the weights are not there: no probe then.
    if settings.pretrained and not hub_declared_offline() and not hub_reachable():
        raise RunError(no_weights.format(why="the hub cannot be reached"))
    try:
        extractor.fit()
    except Exception as exc:
        if settings.pretrained:
            # The hub fails in many ways when it cannot be reached; all mean the same.
            raise RunError(
                no_weights.format(why=f"offline? {type(exc).__name__}")
            ) from None
        if isinstance(exc, (ValueError, TypeError, OSError)):
            raise RunError(first_line(exc)) from None
        if isinstance(exc, RuntimeError):  # torch, e.g. an image size below a patch
            raise RunError(
                f"{model} cannot run at --image-size {settings.image_size} "
                f"({first_line(exc)}); use a multiple of the model's patch size, "
                "e.g. 224"
            ) from None
        raise
    return extractor

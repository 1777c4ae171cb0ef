"""Every supported model family gives, for every source, what its own forward
computes.

The reference of each test is the model's own computation, not the project's
code: its dense attention (timm models run a deep copy with the fused kernel
switched off and the softmax taken at ``attn_drop``; transformers models return
``output_attentions`` from eager attention), a plain dense rollout of those
matrices, and CDAM by ``torch.autograd.grad`` through the model's own forward
from the pixels on. Adding a family is adding a name.
"""

from __future__ import annotations

import copy
import functools
import types

import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import Block

from sklearn_arb import AttentionExtractor
from sklearn_arb.backbone import SOURCES, _rollout, cls_attention, validate_vit
from sklearn_arb.backbone._blocks import is_plain_block
from sklearn_arb.backbone._families import all_families, read_family

transformers = pytest.importorskip("transformers")

# Every family of the registry, with each model it names, and variants that a
# name alone does not build (model, kwargs): the cases are generated, so a new
# family or model cannot ship untested.
VARIANTS = {
    "beit": [
        ("beit_base_patch16_224", {"use_rel_pos_bias": False,
                                   "use_shared_rel_pos_bias": True}),
    ],  # one relative position bias shared by all blocks
}  # fmt: skip
CASES = [
    pytest.param(family.name, model, kwargs, id=f"{family.name}-{model}-{i}")
    for family in all_families()
    for i, (model, kwargs) in enumerate(
        [(model, {}) for model in family.examples] + VARIANTS.get(family.name, [])
    )
]

# Rejected models and what their error says: (name, kwargs, expected reason).
REJECTED = {
    "avg-pool ViT": (
        "vit_base_patch16_224",
        {"global_pool": "avg", "class_token": False},
        r"pools its patch tokens \(global_pool='avg'\)",
    ),
    "SigLIP (attention pool)": ("vit_base_patch16_siglip_224", {}, "pools its"),
    "ViT with a register, no CLS": (
        "vit_medium_patch16_rope_reg1_gap_256",
        {},
        "without a CLS token",
    ),
    "Swin": ("swin_tiny_patch4_window7_224", {}, "shifted windows"),
    "ConvNet": ("resnet18", {}, "convolutional network"),
    "ConvNeXt": ("convnext_atto", {}, "convolutional network"),
    "CaiT (class attention)": ("cait_xxs24_224", {}, "LayerScaleBlock"),
    "XCiT (cross-covariance)": ("xcit_nano_12_p16_224", {}, "XCABlock"),
}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (timm zero-initialises some biases and tables)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.2 * noise)
    return model.eval()


def timm_attention_matrices(model, images) -> list[torch.Tensor]:
    """Every block's ``(n, heads, N, N)`` softmax, as the model's own unfused
    forward computes it."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    captured = []
    for block in model.blocks:
        block.attn.attn_drop.register_forward_hook(
            lambda module, args, output: captured.append(output)
        )
    with torch.inference_mode():
        model.forward_features(images)
    return captured


def dense_timm_cls_row(model, images, index: int) -> torch.Tensor:
    """Mean-over-heads CLS row of block ``index``'s softmax, as the model's own
    unfused forward computes it."""
    weights = timm_attention_matrices(model, images)[index]
    return weights[:, :, 0, model.num_prefix_tokens :].mean(1)


def dense_rollout(matrices: list[torch.Tensor], n_prefix: int) -> np.ndarray:
    """Abnar & Zuidema's rollout (mean over heads) of full attention matrices,
    multiplied as matrices, in float64; the CLS row at the patch tokens."""
    product = None
    for weights in matrices:
        fused = weights.double().mean(1)
        mixed = fused + torch.eye(fused.shape[-1], dtype=fused.dtype)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        product = mixed if product is None else mixed @ product
    return product[:, 0, n_prefix:].numpy()


def autograd_cdam(forward, norm, images, score, n_prefix: int) -> np.ndarray:
    """CDAM by autograd from the pixels through the model's own ``forward``:
    the output of ``norm`` (the read block's pre-attention norm) times the
    gradient of ``score(output)`` with respect to it."""
    kept = []
    handle = norm.register_forward_hook(lambda module, args, out: kept.append(out))
    try:
        output = forward(images.clone().requires_grad_(True))
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score(output).sum(), kept[0])
    products = (kept[0] * gradient).sum(-1)[:, n_prefix:]
    return products.detach().double().numpy()


def predicted_logit(output: torch.Tensor) -> torch.Tensor:
    """The logit of each image's top class (CDAM's default target)."""
    return output.gather(1, output.argmax(1, keepdim=True))[:, 0]


def normalised(extractor, images: np.ndarray) -> torch.Tensor:
    """``(n, H, W, 3)`` images in [0, 1] normalised as the extractor does."""
    mean = torch.tensor(extractor.mean_).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std_).view(1, 3, 1, 1)
    return (torch.from_numpy(images).float().permute(0, 3, 1, 2) - mean) / std


@pytest.fixture
def one_row_chunks(monkeypatch):
    """Rollout reads every block's attention one query row at a time (the
    chunked product must not depend on the chunking)."""
    monkeypatch.setattr(_rollout, "_CHUNK_BYTES", 1)


@pytest.mark.parametrize("case", REJECTED)
def test_models_without_a_readable_cls_token_are_named(case):
    name, kwargs, reason = REJECTED[case]
    if kwargs:  # a module built that way (checked without allocating it)
        with torch.device("meta"):
            module = timm.create_model(name, num_classes=0, **kwargs)
        with pytest.raises(TypeError, match=rf"VisionTransformer is not .*{reason}"):
            validate_vit(module)
    else:  # a name: checked before any download or allocation
        with pytest.raises(
            ValueError, match=rf"'{name}' is not a Vision .*{reason}.*use a timm"
        ):
            AttentionExtractor(name, image_size=None, pretrained=True).fit()


# --- The CPU in-place path recognises blocks exactly -----------------------------


class _HalvedBlock(Block):
    """A Block subclass with its own forward."""

    def forward(self, x, **kwargs):
        return super().forward(x, **kwargs) * 0.5


def test_changed_blocks_run_their_own_forward(make_tiny_vit):
    vit = _randomise(make_tiny_vit(depth=4))
    vit.blocks[0].__class__ = _HalvedBlock
    changed = vit.blocks[1]
    changed.forward = types.MethodType(
        lambda self, x, **kwargs: Block.forward(self, x, **kwargs) + 1.0, changed
    )
    assert not is_plain_block(vit.blocks[0]) and not is_plain_block(changed)
    assert is_plain_block(vit.blocks[2])
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        maps = cls_attention(vit, images)
    torch.testing.assert_close(
        maps, dense_timm_cls_row(vit, images, -1), rtol=0, atol=1e-6
    )


def test_a_read_block_with_a_changed_forward_is_refused(make_tiny_vit):
    vit = make_tiny_vit(depth=2)
    vit.blocks[1].__class__ = _HalvedBlock
    AttentionExtractor(vit, image_size=32, layer=0).fit()  # block 0 is readable
    with pytest.raises(ValueError, match="Block 1 of the model is a _HalvedBlock"):
        AttentionExtractor(vit, image_size=32, layer=-1).fit()


# --- Hugging Face transformers ---------------------------------------------------


def _hf_small(config_class, model_class, **kwargs):
    config = config_class(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        **kwargs,
    )
    torch.manual_seed(0)
    return _randomise(model_class(config))


def _hf_forward_kwargs(model) -> dict:
    # ViT and DeiT interpolate position embeddings when asked; DINOv2 always does.
    interpolates = model.config.model_type in ("vit", "deit")
    return {"interpolate_pos_encoding": True} if interpolates else {}


def hf_attention_matrices(model, images) -> list[torch.Tensor]:
    """Every layer's ``(n, heads, N, N)`` softmax from the model's own eager
    ``output_attentions``."""
    model = copy.deepcopy(model.base_model)
    model.set_attn_implementation("eager")
    with torch.inference_mode():
        output = model(
            pixel_values=images, output_attentions=True, **_hf_forward_kwargs(model)
        )
    return list(output.attentions)


def hf_output(model, images) -> torch.Tensor:
    """The model's own output: a classifier's logits, or the CLS token of the
    last hidden state (a model without classifier)."""
    output = model(pixel_values=images, **_hf_forward_kwargs(model))
    logits = getattr(output, "logits", None)
    return output.last_hidden_state[:, 0] if logits is None else logits


def hf_pre_attention_norm(model, index: int) -> torch.nn.Module:
    """Layer ``index``'s norm before its attention, named as transformers names
    it (transformers 5 keeps the layers on the model, 4 on its encoder)."""
    base = model.base_model
    layer = (base.layers if hasattr(base, "layers") else base.encoder.layer)[index]
    return layer.layernorm_before if hasattr(layer, "layernorm_before") else layer.norm1


# --- Every family x every source, generated from the registries ----------------


class SmallModel:
    """A small random model of a case, with the model's own computations: its
    attention matrices, its output and a block's pre-attention norm."""

    def __init__(self, family: str, name: str, kwargs: dict) -> None:
        self.hf = family.startswith("hf_")
        if self.hf:
            model_class = getattr(transformers, name)
            config_class = model_class.config_class
            extra = {"num_labels": 5}
            if "num_register_tokens" in config_class().to_dict():
                extra["num_register_tokens"] = 4
            self.model = _hf_small(config_class, model_class, **extra, **kwargs)
            config = self.model.config
            self.size = 32
            self.n_prefix = (
                1
                + (config.model_type == "deit")
                + int(getattr(config, "num_register_tokens", 0) or 0)
            )
            heads = ("classifier", "cls_classifier")
            self.has_classifier = any(hasattr(self.model, h) for h in heads)
        else:
            with torch.device("meta"):
                skeleton = timm.create_model(name, pretrained=False)
            patch = skeleton.patch_embed.patch_size[0]
            self.size = 4 * patch  # a 4 x 4 grid
            small = dict(depth=2, embed_dim=64, num_heads=2, num_classes=5)
            torch.manual_seed(0)  # timm's initialisation: whatever ran before
            self.model = _randomise(
                timm.create_model(name, img_size=self.size, **small, **kwargs)
            )
            self.n_prefix = self.model.num_prefix_tokens
            self.has_classifier = True

    def matrices(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        if self.hf:
            return hf_attention_matrices(self.model, inputs)
        return timm_attention_matrices(self.model, inputs)

    def output(self, pixels: torch.Tensor) -> torch.Tensor:
        return hf_output(self.model, pixels) if self.hf else self.model(pixels)

    def norm(self, layer: int) -> torch.nn.Module:
        if self.hf:
            return hf_pre_attention_norm(self.model, layer)
        return self.model.blocks[layer].norm1


@functools.cache
def _small_model(family: str, name: str, kwargs: tuple) -> SmallModel:
    """One small model per case, shared by its sources (never modified: the
    extractor deep-copies it)."""
    return SmallModel(family, name, dict(kwargs))


def _attention_reference(case, layer, inputs, score):
    weights = case.matrices(inputs)[layer]
    return weights[:, :, 0, case.n_prefix :].mean(1).double().numpy()


def _rollout_reference(case, layer, inputs, score):
    # layer -1: the product of every block's attention
    return dense_rollout(case.matrices(inputs), case.n_prefix)


def _cdam_reference(case, layer, inputs, score):
    return autograd_cdam(case.output, case.norm(layer), inputs, score, case.n_prefix)


# Per source: the layers checked and the model's own computation of its map.
REFERENCES = {
    "attention": ((-1, 0), _attention_reference),
    "rollout": ((-1,), _rollout_reference),
    "cdam": ((-1, 0), _cdam_reference),
}


def test_every_family_and_source_is_covered():
    assert set(REFERENCES) == set(SOURCES)
    assert all(family.examples for family in all_families())
    assert {case.values[0] for case in CASES} == {f.name for f in all_families()}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(("family", "name", "kwargs"), CASES)
def test_every_family_gives_every_source_as_its_model_computes_it(
    family, name, kwargs, source, one_row_chunks
):
    """The observed maps equal the model's own computation (1e-6; signed CDAM
    1e-5) at the last and first block; the bootstrap maps are finite and
    differ; positive sources are positive, signed ones take both signs."""
    case = _small_model(family, name, tuple(sorted(kwargs.items())))
    size, kind = case.size, SOURCES[source]
    images = np.random.default_rng(0).random((2, size, size, 3))
    params, score = {}, predicted_logit
    if kind.keeps_classifier and not case.has_classifier:
        with pytest.raises(ValueError, match="no classification head"):
            AttentionExtractor(case.model, image_size=size, source=source).fit()
        # a concept similarity of the CLS embedding
        concept = torch.randn(32, generator=torch.Generator().manual_seed(1))
        params["target"] = score = lambda output: output @ concept
    layers, reference = REFERENCES[source]
    for layer in layers:
        extractor = AttentionExtractor(
            case.model, image_size=size, n_bootstrap=2, random_state=0,
            source=source, layer=layer, **params,
        ).fit()  # fmt: skip
        assert read_family(extractor.model_.blocks[layer]).name == family
        assert extractor.n_prefix_tokens_ == case.n_prefix
        maps = extractor.transform(images)
        n_patches = extractor.n_tokens_
        assert maps.shape == (2, 3 * n_patches)
        expected = reference(case, layer, normalised(extractor, images), score)
        observed, bootstrap = maps[:, :n_patches], maps[:, n_patches:]
        tolerance = 1e-5 if kind.signed else 1e-6
        np.testing.assert_allclose(observed, expected, rtol=0, atol=tolerance)
        assert np.isfinite(bootstrap).all()
        assert np.abs(bootstrap[:, :n_patches] - observed).max() > 1e-4
        if kind.signed:
            assert (observed < 0).any() and (observed > 0).any()
        else:
            assert (maps > 0).all()


@pytest.mark.parametrize("name", ["ViTModel", "Dinov2WithRegistersModel"])
def test_transformers_attention_at_an_interpolated_size(name):
    family = "hf_" + getattr(transformers, name).config_class.model_type
    case = SmallModel(family, name, {})
    images = np.random.default_rng(0).random((2, 48, 48, 3))
    extractor = AttentionExtractor(case.model, image_size=48, n_bootstrap=0).fit()
    expected = _attention_reference(case, -1, normalised(extractor, images), None)
    maps = extractor.transform(images)
    assert maps.shape == (2, 36)
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-6)


def test_a_save_pretrained_folder_loads_with_its_image_processor(tmp_path):
    model = _hf_small(transformers.ViTConfig, transformers.ViTModel)
    model.save_pretrained(tmp_path)
    processor = transformers.ViTImageProcessor(
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        size={"height": 48, "width": 48},
    )
    processor.save_pretrained(tmp_path)
    images = np.random.default_rng(1).random((2, 48, 48, 3))
    from_folder = AttentionExtractor(str(tmp_path), image_size=None, n_bootstrap=2)
    from_folder.set_params(random_state=0).fit()
    # The processor's normalisation and size, unless image_size is given.
    assert from_folder.mean_ == pytest.approx((0.485, 0.456, 0.406))
    assert from_folder.std_ == pytest.approx((0.229, 0.224, 0.225))
    assert from_folder.image_size_ == (48, 48)
    assert AttentionExtractor(str(tmp_path), image_size=32).fit().image_size_ == (
        32,
        32,
    )
    # A model object without a processor: its checkpoints' normalisation (0.5).
    from_object = AttentionExtractor(
        model, image_size=48, n_bootstrap=2, random_state=0
    ).fit()
    assert from_object.mean_ == (0.5, 0.5, 0.5)
    from_object.mean_, from_object.std_ = from_folder.mean_, from_folder.std_
    np.testing.assert_allclose(
        from_folder.transform(images), from_object.transform(images), atol=1e-6
    )


def test_a_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = AttentionExtractor("google/vit-base-patch16-224-in21k-unlikely")
    with pytest.raises(
        OSError, match=r"could not be loaded from the Hugging Face hub"
    ) as info:
        extractor.fit()
    assert "\n" not in str(info.value)
    assert "save_pretrained" in str(info.value)


def test_transformers_models_that_are_not_cls_vits_are_named():
    config = transformers.SwinConfig(embed_dim=16, depths=[1], num_heads=[1])
    with pytest.raises(TypeError, match=r"SwinModel \(model_type 'swin'\) is not"):
        AttentionExtractor(transformers.SwinModel(config)).fit()


def test_real_deit_weights_give_the_same_maps_through_timm_and_transformers(
    deit_weights, imagenette_paths, tmp_path
):
    from sklearn_arb.backbone import load_checkpoint
    from sklearn_arb.backbone._hf import timm_vit_to_transformers

    config = transformers.ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=224,
        patch_size=16,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        num_labels=1000,
    )
    # With the classifier: CDAM explains the predicted class's logit.
    model = transformers.ViTForImageClassification(config)
    state_dict = load_checkpoint(deit_weights, keep_head=True)
    model.vit.load_state_dict(
        timm_vit_to_transformers(state_dict, depth=12), strict=True
    )
    with torch.no_grad():
        model.classifier.weight.copy_(state_dict["head.weight"])
        model.classifier.bias.copy_(state_dict["head.bias"])
    model.save_pretrained(tmp_path)
    transformers.ViTImageProcessor(
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(tmp_path)
    images = imagenette_paths[:: len(imagenette_paths) // 2][:2]
    settings = {"n_bootstrap": 1, "random_state": 0}
    for extra in (
        {},
        {"layer": 5, "head": 1},
        {"source": "rollout"},
        {"source": "rollout", "layer": 5, "head": "max", "discard_ratio": 0.5},
        {"source": "cdam"},
        {"source": "cdam", "layer": 5, "target": 217},
    ):
        timm_maps = AttentionExtractor(
            "deit_tiny_patch16_224", checkpoint_path=deit_weights, **settings, **extra
        ).fit_transform(images)
        hf_maps = AttentionExtractor(str(tmp_path), **settings, **extra).fit_transform(
            images
        )
        np.testing.assert_allclose(hf_maps, timm_maps, rtol=0, atol=1e-5)
        # Real, image-dependent maps (not maps equal by being uniform).
        assert np.abs(timm_maps[0, :196] - timm_maps[1, :196]).max() > 1e-3

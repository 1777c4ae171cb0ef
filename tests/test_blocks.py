"""The CPU block runner computes exactly what timm's blocks compute."""

import pytest
import torch

from sklearn_arb.backbone._blocks import is_plain_block, run_blocks

# Block variants of the timm ViT family: the plain one, no qkv bias, LayerScale
# (DINOv2), and blocks the runner must leave to timm (q/k norm, activations other
# than nn.GELU, timm's GELUTanh included).
VARIANTS = {
    "plain": ({}, True),
    "no_qkv_bias": ({"qkv_bias": False}, True),
    "layer_scale": ({"init_values": 0.3}, True),
    "qk_norm": ({"qk_norm": True}, False),
    "gelu_tanh": ({"act_layer": "gelu_tanh"}, False),
    "silu_mlp": ({"act_layer": "silu"}, False),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocks_are_bit_identical_to_timm(make_tiny_vit, variant):
    kwargs, plain = VARIANTS[variant]
    vit = make_tiny_vit(depth=3, **kwargs)
    # Random, not zero-initialised, weights everywhere (timm zeroes some biases).
    with torch.no_grad():
        for parameter in vit.blocks.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    assert all(is_plain_block(block) == plain for block in vit.blocks)
    tokens = torch.randn(2, 17, 32, generator=torch.Generator().manual_seed(0))
    original = tokens.clone()
    with torch.inference_mode():
        expected = vit.blocks(tokens)
        result = run_blocks(vit.blocks, tokens)
    assert torch.equal(result, expected)
    assert torch.equal(tokens, original)  # the input was not updated in place


def test_training_mode_and_unfused_attention_run_as_timm(make_tiny_vit):
    vit = make_tiny_vit()
    block = vit.blocks[0]
    assert is_plain_block(block)
    block.train()
    assert not is_plain_block(block)
    block.eval()
    block.attn.fused_attn = False
    assert not is_plain_block(block)


def test_mixed_blocks_keep_the_input_intact(make_tiny_vit):
    # A timm block, then a plain one writing in place: the first one's output is
    # its own tensor, and the caller's tokens are untouched.
    vit = make_tiny_vit(depth=2)
    vit.blocks[0].attn.fused_attn = False
    tokens = torch.randn(1, 17, 32, generator=torch.Generator().manual_seed(1))
    original = tokens.clone()
    with torch.inference_mode():
        torch.testing.assert_close(
            run_blocks(vit.blocks, tokens), vit.blocks(tokens), rtol=1e-6, atol=1e-6
        )
    assert torch.equal(tokens, original)

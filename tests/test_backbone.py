"""Model loading: checkpoint formats, safe loading errors, position-embed resizing."""

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from sklearn_arb import AttentionExtractor
from sklearn_arb.backbone import cls_attention, load_checkpoint, load_vit


def _maps(vit, images):
    with torch.inference_mode():
        return cls_attention(vit, images)


@pytest.fixture
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _save_formats(state, tmp_path):
    paths = {"pth": tmp_path / "plain.pth", "safetensors": tmp_path / "w.safetensors"}
    torch.save(state, paths["pth"])
    save_file({k: v.contiguous() for k, v in state.items()}, paths["safetensors"])
    dino = {
        "teacher": {f"backbone.{k}": v for k, v in state.items()},
        "student": {
            f"module.backbone.{k}": torch.zeros_like(v) for k, v in state.items()
        },
        "epoch": 100,
    }
    dino["teacher"]["head.mlp.0.weight"] = torch.zeros(4, 4)  # DINO projection head
    paths["dino"] = tmp_path / "dino.pth"
    torch.save(dino, paths["dino"])
    return paths


def test_checkpoint_formats_load_identically(make_tiny_vit, images, tmp_path):
    source = make_tiny_vit(seed=0)
    paths = _save_formats(source.state_dict(), tmp_path)
    expected = _maps(source, images)
    target = make_tiny_vit(seed=1)
    assert not torch.allclose(_maps(target, images), expected)
    for path in paths.values():
        loaded = load_vit(target, checkpoint_path=path)
        torch.testing.assert_close(_maps(loaded, images), expected, rtol=0, atol=0)
    # the passed module itself was not modified
    assert not torch.allclose(_maps(target, images), expected)


def test_dino_teacher_chosen_and_prefixes_stripped(make_tiny_vit, tmp_path):
    paths = _save_formats(make_tiny_vit().state_dict(), tmp_path)
    state = load_checkpoint(paths["dino"])
    assert "cls_token" in state and not any(k.startswith("head") for k in state)
    assert state["cls_token"].abs().sum() > 0  # the teacher, not the zero student


def test_bad_checkpoints(make_tiny_vit, tmp_path):
    vit = make_tiny_vit()
    corrupt = tmp_path / "corrupt.pth"
    torch.save(vit.state_dict(), corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt"):
        load_vit(vit, checkpoint_path=corrupt)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vit(vit, checkpoint_path=tmp_path / "nope.pth")

    missing = tmp_path / "missing.pth"
    torch.save(
        {k: v for k, v in vit.state_dict().items() if "blocks.1" not in k}, missing
    )
    with pytest.raises(ValueError, match=r"missing keys.*blocks\.1"):
        load_vit(vit, checkpoint_path=missing)

    wider = tmp_path / "wider.pth"
    torch.save(make_tiny_vit(embed_dim=64).state_dict(), wider)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_vit(vit, checkpoint_path=wider)

    extra = tmp_path / "extra.pth"
    torch.save({**vit.state_dict(), "blocks.9.attn.qkv.weight": torch.zeros(1)}, extra)
    with pytest.raises(ValueError, match=r"unexpected keys.*blocks\.9"):
        load_vit(vit, checkpoint_path=extra)

    pickled = tmp_path / "pickled.pth"
    torch.save({"model": vit}, pickled)  # a whole module: refused by weights_only
    with pytest.raises(ValueError, match="corrupt or not"):
        load_vit(vit, checkpoint_path=pickled)


def test_model_type_errors():
    with pytest.raises(ValueError, match="not a timm model name"):
        load_vit("no_such_vit_model")
    with pytest.raises(TypeError, match="VisionTransformer"):
        load_vit(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"model name or a torch\.nn\.Module"):
        load_vit(3)


def test_register_and_distilled_prefix_tokens(make_tiny_vit):
    from timm.models.deit import VisionTransformerDistilled

    # DINOv2-style registers (no class embedding in pos_embed) and DeiT distillation
    reg = load_vit(make_tiny_vit(reg_tokens=4, no_embed_class=True), image_size=48)
    distilled = load_vit(
        VisionTransformerDistilled(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2
        ),
        image_size=48,
    )
    assert reg.num_prefix_tokens == 5 and distilled.num_prefix_tokens == 2
    with torch.inference_mode():
        for vit in (reg, distilled):
            assert cls_attention(vit, torch.randn(1, 3, 48, 48)).shape == (1, 36)


def test_deit_checkpoint_at_448_interpolates_pos_embed(deit_weights, imagenette_paths):
    from sklearn_arb import load_images

    vit = load_vit(
        "deit_tiny_patch16_224", checkpoint_path=deit_weights, image_size=448
    )
    assert vit.pos_embed.shape == (1, 1 + 28 * 28, 192)
    native = load_vit("deit_tiny_patch16_224", checkpoint_path=deit_weights)
    # the interpolated grid agrees with bicubic resampling of the 14x14 grid
    grid = native.pos_embed[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    resampled = torch.nn.functional.interpolate(
        grid, size=(28, 28), mode="bicubic", antialias=True, align_corners=False
    )
    torch.testing.assert_close(
        vit.pos_embed[:, 1:], resampled.permute(0, 2, 3, 1).reshape(1, 784, 192)
    )
    images = torch.from_numpy(load_images(imagenette_paths[:1], 448)).permute(
        0, 3, 1, 2
    )
    images = (
        images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    maps = _maps(vit, images)
    assert maps.shape == (1, 784) and np.isfinite(maps.numpy()).all()


# Counts the connections a subprocess opens (the probe is one; the hub client,
# left to itself, retries for about 50 s), printed last as "connections N".
_COUNT_CONNECTIONS = """
import atexit, socket
_connections = []
_connect = socket.socket.connect
def _counted(self, address):
    _connections.append(address)
    return _connect(self, address)
socket.socket.connect = _counted
atexit.register(lambda: print("connections", len(_connections)))
"""


def _run_offline(
    code: str, hf_home, declared: bool = True
) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``code`` in a fresh Python with the hub cache ``hf_home`` (also its
    working folder), offline: declared (``HF_HUB_OFFLINE=1``), or not declared
    with a hub endpoint that refuses connections. huggingface_hub reads these
    variables at import. Returns the result and the connections it opened."""
    env = {**os.environ, "HF_HOME": str(hf_home)}
    env.pop("HF_HUB_OFFLINE", None)
    if declared:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: refused
    result = subprocess.run(
        [sys.executable, "-c", _COUNT_CONNECTIONS + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=hf_home,
        check=False,
    )
    *lines, last = result.stdout.strip().splitlines()
    result.stdout = "\n".join(lines)
    return result, int(last.removeprefix("connections "))


@pytest.mark.parametrize("declared", [True, False])
def test_offline_hub_weights_say_how_to_fix_it(tmp_path, declared):
    # Offline with an empty hub cache, whether declared or not: at once, with
    # no connection but the probe's (the hub client alone retries for ~50 s).
    code = (
        "from sklearn_arb import AttentionExtractor\n"
        "try:\n"
        "    AttentionExtractor('vit_small_patch8_224.dino', pretrained=True).fit()\n"
        "except OSError as exc:\n"
        "    print(exc)\n"
    )
    result, connections = _run_offline(code, hf_home=tmp_path, declared=declared)
    assert connections == (0 if declared else 1)
    message = result.stdout.strip()
    assert "'vit_small_patch8_224.dino' could not be downloaded" in message
    assert "checkpoint_path=" in message and "go online" in message


@pytest.mark.parametrize("declared", [True, False])
def test_hub_weights_by_name_from_the_local_hub_cache(
    deit_hub_cache, deit_weights, declared
):
    # pretrained=True goes through timm's hub loading (offline, from the cache,
    # whether declared or not) and gives the same model as the same weights from
    # a checkpoint file, the position embeddings resampled alike (timm's filter
    # vs ours) at 448 px.
    code = (
        "import torch\n"
        "from sklearn_arb.backbone import load_vit\n"
        "vit = load_vit('deit_tiny_patch16_224', pretrained=True, image_size=448)\n"
        "torch.save(vit.state_dict(), 'hub.pth')\n"
    )
    result, connections = _run_offline(code, hf_home=deit_hub_cache, declared=declared)
    assert result.returncode == 0, result.stderr
    assert connections == (0 if declared else 1)
    from_hub = torch.load(deit_hub_cache / "hub.pth", weights_only=True)
    from_file = load_vit(
        "deit_tiny_patch16_224", checkpoint_path=deit_weights, image_size=448
    ).state_dict()
    assert from_file["pos_embed"].shape == (1, 785, 192)
    assert from_hub.keys() == from_file.keys()
    assert all(torch.equal(from_hub[k], from_file[k]) for k in from_file)


def test_nan_weights_in_a_checkpoint_are_named(tmp_path):
    torch.manual_seed(0)
    state = timm.create_model("vit_tiny_patch16_224").state_dict()
    state["blocks.1.attn.qkv.weight"][3, 5] = float("nan")
    state["norm.bias"][0] = float("inf")
    torch.save(state, tmp_path / "diverged.pth")
    extractor = AttentionExtractor(
        "vit_tiny_patch16_224", checkpoint_path=tmp_path / "diverged.pth"
    )
    with pytest.raises(
        ValueError,
        match=r"diverged\.pth' has NaN/inf values in blocks\.1\.attn\.qkv\.weight, "
        r"norm\.bias; .*use another checkpoint",
    ):
        extractor.fit()
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32)
    with torch.no_grad():
        vit.cls_token[0, 0, 0] = float("nan")
    with pytest.raises(
        ValueError, match=r"VisionTransformer has NaN/inf values in cls"
    ):
        AttentionExtractor(vit, image_size=32).fit()


@pytest.mark.parametrize("image_size", [224, None])
@pytest.mark.parametrize("pretrained", [False, True])
def test_a_model_that_is_not_a_vit_is_named(image_size, pretrained):
    # resnet18 takes no img_size (a TypeError from timm) and has no CLS token;
    # with pretrained=True this is found before any download.
    extractor = AttentionExtractor(
        "resnet18", image_size=image_size, pretrained=pretrained
    )
    with pytest.raises(
        ValueError,
        match=r"'resnet18'.* is not a Vision Transformer with a CLS token .*e\.g\. "
        r"'deit_tiny_patch16_224' or 'vit_small_patch8_224\.dino'",
    ):
        extractor.fit()


def test_pretrained_and_a_checkpoint_together_raise_before_loading(tmp_path):
    extractor = AttentionExtractor(
        "vit_tiny_patch16_224",
        pretrained=True,
        checkpoint_path=tmp_path / "vit.pth",
        memory=str(tmp_path),
    )
    with pytest.raises(ValueError, match=r"both give weights; choose one"):
        extractor.fit()


# --- model folders: their code never runs -------------------------------------

# A module that, imported, leaves a marker file: the proof that a folder's code
# ran (transformers imports a copy of it from its modules cache).
_REMOTE_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
"""


def _folder_with_remote_code(folder):
    """A save_pretrained-like folder whose config asks transformers to import
    its own module (an ``auto_map`` with a model type transformers lacks)."""
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"model_type": "evil_vit", "auto_map": {"AutoConfig": '
        '"evil.EvilConfig", "AutoModel": "evil.EvilModel"}}'
    )
    (folder / "evil.py").write_text(_REMOTE_CODE.format(marker=str(folder / "MARKER")))
    return folder


def test_a_folder_with_an_auto_map_is_refused_in_one_line(tmp_path):
    folder = _folder_with_remote_code(tmp_path / "model")
    with pytest.raises(ValueError) as info:
        AttentionExtractor(str(folder)).fit()
    message = str(info.value)
    assert "\n" not in message and "auto_map" in message
    assert "evil.EvilModel" in message and "never run" in message
    assert not (folder / "MARKER").exists()


def test_a_folder_s_code_never_runs_even_when_stdin_says_yes(tmp_path):
    # transformers asks "[y/N]" on stdin before running a folder's code unless
    # told not to; here every answer is yes.
    folder = _folder_with_remote_code(tmp_path / "model")
    code = (
        "import sys\n"
        "from sklearn_arb import AttentionExtractor\n"
        "try:\n"
        f"    AttentionExtractor({str(folder)!r}).fit()\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        f"yes | {sys.executable} -c {shlex.quote(code)}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
        check=False,
    )
    assert not (folder / "MARKER").exists()
    assert result.returncode == 3, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 1
    assert "auto_map" in result.stdout and "[y/N]" not in result.stdout


def test_a_malicious_pickle_in_a_model_folder_is_refused_in_one_line(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    config.save_pretrained(tmp_path)
    marker = tmp_path / "MARKER"

    class Payload:  # unpickling it would call os.system
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises((ValueError, OSError)) as info:
        AttentionExtractor(str(tmp_path)).fit()
    message = str(info.value)
    assert "\n" not in message and "pytorch_model.bin" in message
    assert not marker.exists()

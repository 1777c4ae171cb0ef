"""Shared fixtures: the real data beside the project, and tiny random ViTs."""

import os
from pathlib import Path

import pytest

_DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA_DIR = Path(os.environ.get("SKLEARN_ARB_DATA", _DEFAULT_DATA_DIR)).resolve()
DEIT_WEIGHTS = DATA_DIR / "weights" / "deit_tiny_patch16_224.pth"
IMAGENETTE_DIR = DATA_DIR / "imagenette"
LUNG_CT_DIR = DATA_DIR / "iqothnccd"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(
            f"{what} not found at {path}; "
            "set SKLEARN_ARB_DATA to the shared data folder"
        )
    return path


@pytest.fixture(scope="session")
def deit_weights() -> Path:
    """Path of the real DeiT-Tiny/16 state_dict (skips where absent)."""
    return _require(DEIT_WEIGHTS, "DeiT-Tiny weights")


@pytest.fixture(scope="session")
def imagenette_paths() -> list[Path]:
    """The 200 Imagenette JPEGs, sorted (skips where absent)."""
    return sorted(_require(IMAGENETTE_DIR, "Imagenette images").glob("*/*.JPEG"))


@pytest.fixture(scope="session")
def lung_ct_paths() -> list[Path]:
    """The 30 lung CT slices, sorted (skips where absent)."""
    return sorted(_require(LUNG_CT_DIR, "Lung CT images").glob("*/*.jpg"))


N_ROOT_IMAGES = 16


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """The image folders the command-line and Ray tests run on: ``images/``,
    16 small RGB PNGs of various heights in two subfolders (``part0``,
    ``part1``); ``broken/corrupt.jpg``, not a JPEG; and ``mixed/``, two RGB
    PNGs and a grey one (``a``, ``b``, ``grey``) beside a text file."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("root")
    rng = np.random.default_rng(0)
    for i in range(N_ROOT_IMAGES):
        folder = root / "images" / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    mixed = root / "mixed"
    mixed.mkdir()
    for name, shape in [("a", (70, 90, 3)), ("b", (64, 64, 3)), ("grey", (80, 64))]:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
            mixed / f"{name}.png"
        )
    (mixed / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def image_folder(image_root) -> Path:
    """``image_root``'s ``mixed/``: ``a.png``, ``b.png``, ``grey.png`` and a text
    file."""
    return image_root / "mixed"


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray of 2 CPUs for the whole test session (starting one takes
    seconds); the Ray tests skip where Ray is not installed."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def make_tiny_vit():
    """Factory of tiny random timm ViTs (32 px, patch 8, 2 blocks), in eval mode."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    def make(seed: int = 0, **kwargs):
        torch.manual_seed(seed)
        params = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
        return VisionTransformer(**{**params, **kwargs}).eval()

    return make


@pytest.fixture
def forward_passes(monkeypatch) -> list[int]:
    """The number of images of every call that runs the ViT, in order (a spy on
    ``AttentionExtractor._iter_maps``, where every transform computes maps)."""
    from sklearn_arb import AttentionExtractor

    calls = []
    iter_maps = AttentionExtractor._iter_maps

    def counted(self, images):
        calls.append(len(images))
        return iter_maps(self, images)

    monkeypatch.setattr(AttentionExtractor, "_iter_maps", counted)
    return calls


@pytest.fixture(autouse=True)
def _empty_in_process_caches():
    """Each test starts without the models and maps earlier tests cached."""
    from sklearn_arb import clear_caches

    clear_caches()


@pytest.fixture(scope="session")
def deit_hub_cache(deit_weights, tmp_path_factory) -> Path:
    """An HF_HOME whose hub cache holds the real DeiT-Tiny weights under timm's
    hub name for ``deit_tiny_patch16_224``, as a download would leave them, so
    that ``pretrained=True`` loads them with ``HF_HUB_OFFLINE=1``."""
    import timm
    import torch
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg("deit_tiny_patch16_224").hf_hub_id
    home = tmp_path_factory.mktemp("hf_home")
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    state = torch.load(deit_weights, map_location="cpu", weights_only=True)
    save_file(
        {k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors"
    )
    return home


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A DeiT-Tiny state_dict file with random weights, so no download is needed."""
    import timm
    import torch

    path = tmp_path_factory.mktemp("weights") / "deit_tiny_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), path)
    return path

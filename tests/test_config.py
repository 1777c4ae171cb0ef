"""set_config / config_context / clear_caches: the in-process caches' settings."""

import joblib
import numpy as np
import pytest
import timm
import torch
from sklearn.base import clone

from sklearn_arb import (
    AttentionExtractor,
    clear_caches,
    config_context,
    get_config,
    set_config,
)

# timm's own test ViT (0.4 M parameters): loading it costs little, and the
# caches key a named model with its weights file as they key any other.
MODEL = "test_vit"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = folder / f"vit{seed}.pth"
        torch.save(timm.create_model(MODEL).state_dict(), path)
        paths.append(path)
    return paths


def _extractor(checkpoint, memory):
    return AttentionExtractor(
        MODEL,
        checkpoint_path=checkpoint,
        image_size=32,
        memory=memory,
        random_state=0,
    )


def test_defaults_copies_and_restoration():
    assert get_config() == {
        "cache_enabled": True,
        "model_cache_size": 4,
        "map_cache_bytes": 512 << 20,
    }
    get_config()["model_cache_size"] = 99  # a copy
    assert get_config()["model_cache_size"] == 4
    with pytest.raises(KeyError), config_context(model_cache_size=1):
        assert get_config()["model_cache_size"] == 1
        raise KeyError
    assert get_config()["model_cache_size"] == 4
    set_config(model_cache_size=2)
    try:
        assert get_config()["model_cache_size"] == 2
    finally:
        set_config(model_cache_size=4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(model_cache_size=-1), r"model_cache_size=-1 must be an int >= 0"),
        (dict(map_cache_bytes=1.5), r"map_cache_bytes=1.5 must be an int"),
        (dict(cache_enabled="yes"), r"cache_enabled='yes' must be True or False"),
    ],
)
def test_bad_settings_raise_and_change_nothing(bad, match):
    before = get_config()
    with pytest.raises(ValueError, match=match):
        set_config(**{"map_cache_bytes": 1 << 20, **bad})
    assert get_config() == before


def test_model_cache_is_shared_bounded_switched_and_cleared(checkpoints, tmp_path):
    memory = str(tmp_path / "cache")
    first = _extractor(checkpoints[0], memory).fit()
    assert _extractor(checkpoints[0], memory).fit().model_ is first.model_
    with config_context(cache_enabled=False):
        assert _extractor(checkpoints[0], memory).fit().model_ is not first.model_
    with config_context(model_cache_size=1):
        _extractor(checkpoints[1], memory).fit()  # evicts the first model
        assert _extractor(checkpoints[0], memory).fit().model_ is not first.model_
    shared = _extractor(checkpoints[0], memory).fit().model_
    clear_caches()
    assert _extractor(checkpoints[0], memory).fit().model_ is not shared


@pytest.mark.parametrize(
    "settings", [dict(cache_enabled=False), dict(map_cache_bytes=0)]
)
def test_maps_kept_in_process_unless_switched_off(
    settings, checkpoints, tmp_path, forward_passes
):
    memory = joblib.Memory(tmp_path / "cache", verbose=0)
    images = np.random.default_rng(0).random((2, 32, 32, 3))
    extractor = _extractor(checkpoints[0], memory).fit()
    with config_context(**settings):
        maps = extractor.transform(images)
        memory.clear(warn=False)
        # nothing in this process and nothing on disk: computed again
        np.testing.assert_array_equal(clone(extractor).fit().transform(images), maps)
    assert forward_passes == [2, 2]
    memory.clear(warn=False)
    maps = extractor.transform(images)
    memory.clear(warn=False)
    np.testing.assert_array_equal(clone(extractor).fit().transform(images), maps)
    assert forward_passes == [2, 2, 2]  # the clone was served from this process

"""AttentionExtractor: exact maps, output layout, bootstrap seeding, caching, API."""

import os
import pickle

import joblib
import numpy as np
import pytest
import timm
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_arb import AttentionExtractor, clear_caches, load_images
from sklearn_arb.backbone import embed_tokens, reference_cls_attention

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _normalised(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return (torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) - mean) / std


def _reference(vit, inputs, **kwargs):
    with torch.inference_mode():
        return reference_cls_attention(vit, inputs, **kwargs).double().numpy()


@pytest.fixture
def images():
    return np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)


@pytest.fixture
def register_vit(make_tiny_vit):
    # DINOv2-like: 4 registers, qk-norm, layer scale, no class position embedding
    return make_tiny_vit(
        reg_tokens=4, no_embed_class=True, qk_norm=True, init_values=0.5, depth=3
    )


def _cls_prefix_mass(vit, inputs):
    """CLS attention on the prefix tokens in the last block (explicitly, per head)."""
    with torch.inference_mode():
        tokens = embed_tokens(vit, inputs)
        for block in vit.blocks[:-1]:
            tokens = block(tokens)
        attn = vit.blocks[-1].attn
        n, n_tokens, _ = tokens.shape
        qkv = attn.qkv(vit.blocks[-1].norm1(tokens))
        q, k, _ = qkv.reshape(n, n_tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
        return weights[:, :, 0, : vit.num_prefix_tokens].sum(-1).mean(1).numpy()


def test_real_deit_maps_equal_full_attention(deit_weights, imagenette_paths):
    paths = imagenette_paths[::100][:2]
    extractor = AttentionExtractor(
        checkpoint_path=deit_weights, n_bootstrap=1, random_state=0
    ).fit()
    maps = extractor.transform(paths)
    assert maps.shape == (2, 2 * 196) and maps.dtype == np.float64
    vit = extractor.model_
    observed = _normalised(load_images(paths, 224))
    np.testing.assert_allclose(
        maps[:, :196], _reference(vit, observed), rtol=0, atol=1e-6
    )
    # rows are CLS attention on the patches: positive, summing to 1 - prefix mass
    assert (maps > 0).all()
    np.testing.assert_allclose(
        maps[:, :196].sum(1), 1 - _cls_prefix_mass(vit, observed), atol=1e-6
    )
    assert (maps[:, :196].sum(1) < 1).all()


def test_register_model_maps_equal_full_attention(register_vit, images):
    extractor = AttentionExtractor(
        register_vit, image_size=32, n_bootstrap=0, random_state=0
    ).fit()
    maps = extractor.transform(images)
    assert extractor.n_prefix_tokens_ == 5 and maps.shape == (3, 16)
    inputs = _normalised(
        images,
        *(torch.tensor(v).view(1, 3, 1, 1) for v in (extractor.mean_, extractor.std_)),
    )
    np.testing.assert_allclose(maps, _reference(register_vit, inputs), atol=1e-6)
    np.testing.assert_allclose(
        maps.sum(1), 1 - _cls_prefix_mass(register_vit, inputs), atol=1e-6
    )
    for head, layer in [(1, -1), ("mean", 0), (0, 1)]:
        one = AttentionExtractor(
            register_vit, image_size=32, n_bootstrap=0, head=head, layer=layer
        ).fit()
        np.testing.assert_allclose(
            one.transform(images),
            _reference(register_vit, inputs, head=head, layer=layer),
            atol=1e-6,
        )


def test_layout_bootstrap_blocks_and_feature_names(make_tiny_vit, images):
    vit = make_tiny_vit()
    extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=3, random_state=0)
    maps = extractor.fit_transform(images)
    assert maps.shape == (3, 4 * 16) and extractor.grid_shape_ == (4, 4)
    observed_only = AttentionExtractor(vit, image_size=32, n_bootstrap=0).fit()
    np.testing.assert_allclose(maps[:, :16], observed_only.transform(images), atol=1e-6)
    blocks = maps.reshape(3, 4, 16)
    assert not np.allclose(blocks[:, 1], blocks[:, 2])  # distinct bootstrap samples
    names = extractor.get_feature_names_out()
    assert names.shape == (64,) and names[0] == "observed_t0"
    assert names[16] == "bootstrap1_t0" and names[-1] == "bootstrap3_t15"


@pytest.mark.parametrize("bootstrap", ["normal", "pixel", "uniform", "patch"])
def test_random_state_determinism(make_tiny_vit, images, bootstrap):
    vit = make_tiny_vit()
    params = dict(image_size=32, n_bootstrap=2, bootstrap=bootstrap)
    first = AttentionExtractor(vit, random_state=3, **params).fit().transform(images)
    again = AttentionExtractor(vit, random_state=3, **params).fit().transform(images)
    one_by_one = AttentionExtractor(vit, random_state=3, batch_size=1, **params)
    other = AttentionExtractor(vit, random_state=4, **params).fit().transform(images)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, one_by_one.fit().transform(images), atol=1e-6)
    np.testing.assert_array_equal(first[:, :16], other[:, :16])
    assert not np.allclose(first[:, 16:], other[:, 16:])


def test_input_forms_agree_and_are_not_modified(make_tiny_vit, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for i, image in enumerate(uint8):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    before = uint8.copy()
    extractor = AttentionExtractor(make_tiny_vit(), image_size=32, random_state=0).fit()
    from_uint8 = extractor.transform(uint8)
    np.testing.assert_array_equal(uint8, before)
    np.testing.assert_allclose(
        extractor.transform(uint8 / 255.0), from_uint8, atol=1e-6
    )
    np.testing.assert_allclose(extractor.transform(tmp_path), from_uint8, atol=1e-6)
    grey = extractor.transform(uint8[..., 0])
    rgb_grey = extractor.transform(np.repeat(uint8[..., :1], 3, axis=-1))
    np.testing.assert_array_equal(grey, rgb_grey)


def test_validation_errors(make_tiny_vit, images):
    vit = make_tiny_vit()
    with pytest.raises(ValueError, match=r"not divisible by the model's patch size 8"):
        AttentionExtractor(vit, image_size=30).fit()
    with pytest.raises(ValueError, match="GPU only"):
        AttentionExtractor(vit, device="cpu", precision="bfloat16").fit()
    with pytest.raises(ValueError, match="model has 2 heads"):
        AttentionExtractor(vit, image_size=32, head=2).fit()
    with pytest.raises(ValueError, match="out of range"):
        AttentionExtractor(vit, image_size=32, layer=2).fit()
    with pytest.raises(InvalidParameterError, match="bootstrap"):
        AttentionExtractor(vit, bootstrap="gaussian").fit()
    with pytest.raises(InvalidParameterError, match="n_bootstrap"):
        AttentionExtractor(vit, n_bootstrap=-1).fit()
    with pytest.raises(ValueError, match="not a torch device"):
        AttentionExtractor(vit, device="tpu9").fit()
    extractor = AttentionExtractor(vit, image_size=32).fit()
    with pytest.raises(ValueError, match="NaN"):
        extractor.transform(np.full((1, 32, 32, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        extractor.transform(np.zeros((0, 32, 32, 3)))
    with pytest.warns(UserWarning, match="constant"):
        extractor.transform(np.zeros((1, 32, 32, 3)))


def _vit_must_not_run(*args):
    raise AssertionError("the ViT ran although the maps were cached")


def test_memory_caches_transform(make_tiny_vit, images, tmp_path, monkeypatch):
    memory = joblib.Memory(tmp_path, verbose=0)
    vit = make_tiny_vit()
    extractor = AttentionExtractor(vit, image_size=32, memory=memory, random_state=0)
    first = extractor.fit().transform(images)
    # a refitted clone (as in GridSearchCV) reads the cache: the ViT does not run
    refit = clone(extractor).fit()

    monkeypatch.setattr(AttentionExtractor, "_iter_maps", _vit_must_not_run)
    np.testing.assert_array_equal(refit.transform(images), first)
    # anything that changes the output misses the cache
    for changed in (
        dict(random_state=1),
        dict(bootstrap="pixel"),
        dict(head=0),
        dict(model=make_tiny_vit(seed=1)),
    ):
        with pytest.raises(AssertionError, match="the ViT ran"):
            clone(extractor).set_params(**changed).fit().transform(images)
    # the cache is per image: a subset or a reordering is served from it
    np.testing.assert_array_equal(refit.transform(images[::-1][:2]), first[::-1][:2])


def test_clones_share_the_maps_in_process_then_on_disk(
    make_tiny_vit, images, tmp_path, monkeypatch
):
    memory = joblib.Memory(tmp_path / "cache", verbose=0)
    extractor = AttentionExtractor(
        make_tiny_vit(), image_size=32, memory=memory, random_state=0
    ).fit()
    first = extractor.transform(images)
    monkeypatch.setattr(AttentionExtractor, "_iter_maps", _vit_must_not_run)
    # another process (an empty in-process cache) reads the disk
    clear_caches()
    np.testing.assert_array_equal(clone(extractor).fit().transform(images), first)
    # in this process: served without the disk
    memory.clear(warn=False)
    served = clone(extractor).fit().transform(images)
    np.testing.assert_array_equal(served, first)
    # the caller owns the output: changing it does not change the cache
    served[:] = -1.0
    np.testing.assert_array_equal(extractor.transform(images), first)


def test_an_interrupted_cached_transform_keeps_its_finished_chunks(
    make_tiny_vit, images, tmp_path, monkeypatch
):
    extractor = AttentionExtractor(
        make_tiny_vit(),
        image_size=32,
        batch_size=2,
        memory=str(tmp_path),
        random_state=0,
    ).fit()  # B=1 and batches of 2 forward images: one image per chunk
    iter_maps = AttentionExtractor._iter_maps
    computed = []

    def interrupted_after_one_chunk(self, batch):
        for n_done, chunk in enumerate(iter_maps(self, batch)):
            if n_done == 1:
                raise KeyboardInterrupt
            computed.append(len(batch[chunk[0]]))
            yield chunk

    monkeypatch.setattr(AttentionExtractor, "_iter_maps", interrupted_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        extractor.transform(images)
    monkeypatch.undo()
    resumed = []

    def counted(self, batch):
        resumed.append(len(batch))
        return iter_maps(self, batch)

    monkeypatch.setattr(AttentionExtractor, "_iter_maps", counted)
    maps = clone(extractor).fit().transform(images)
    assert computed == [1] and resumed == [len(images) - 1]
    uncached = clone(extractor).set_params(memory=None).fit().transform(images)
    np.testing.assert_allclose(maps, uncached, rtol=1e-6)


def test_cached_maps_do_not_depend_on_the_input_form(make_tiny_vit, tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    as_float = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32) / 255
    extractor = AttentionExtractor(
        make_tiny_vit(), image_size=32, memory=str(tmp_path), random_state=0
    ).fit()
    # keyed on the input as given, seeded on the image as loaded
    np.testing.assert_array_equal(
        extractor.transform(grey), extractor.transform(as_float)
    )
    np.testing.assert_array_equal(
        extractor.transform(list(as_float)), extractor.transform(grey)
    )
    for bad, match in ((np.full((1, 32, 32, 3), np.nan), "NaN"), (grey[:0], "empty")):
        with pytest.raises(ValueError, match=match):
            extractor.transform(bad)


def test_named_weights_load_once_per_process_with_memory(tmp_path):
    checkpoint = tmp_path / "vit.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), checkpoint)
    params = dict(checkpoint_path=checkpoint, image_size=32, random_state=0)
    cached = AttentionExtractor("vit_tiny_patch16_224", memory=str(tmp_path), **params)
    first = cached.fit()
    assert clone(cached).fit().model_ is first.model_
    uncached = AttentionExtractor("vit_tiny_patch16_224", **params)
    assert uncached.fit().model_ is not clone(uncached).fit().model_
    # new weights in the same file are a new model, with new maps
    images = np.random.default_rng(0).random((2, 32, 32, 3))
    maps = first.transform(images)
    torch.manual_seed(1)
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), checkpoint)
    os.utime(checkpoint, ns=(0, checkpoint.stat().st_mtime_ns + 10**9))
    refit = clone(cached).fit()
    assert refit.model_ is not first.model_
    assert not np.allclose(refit.transform(images), maps)


def test_weights_identity_sees_the_head_count(make_tiny_vit, tmp_path):
    two_heads, four_heads = make_tiny_vit(), make_tiny_vit(num_heads=4)
    four_heads.load_state_dict(two_heads.state_dict())
    ids = [
        AttentionExtractor(vit, image_size=32, memory=str(tmp_path)).fit().weights_id_
        for vit in (two_heads, four_heads, make_tiny_vit())
    ]
    assert ids[0] != ids[1] and ids[0] == ids[2]


def test_maps_id_changes_with_what_changes_maps_only(make_tiny_vit, tmp_path):
    vit = make_tiny_vit(num_classes=5)
    extractor = AttentionExtractor(vit, image_size=32, random_state=0).fit()
    maps_id = extractor.maps_id_
    # how fast or where the maps are computed and cached: the same maps
    for params in ({"batch_size": 1}, {"memory": str(tmp_path)}, {"verbose": 1}):
        assert clone(extractor).set_params(**params).fit().maps_id_ == maps_id
    # what the maps are: another identity, at once after set_params
    for params in (
        {"n_bootstrap": 2},
        {"random_state": 1},
        {"source": "rollout"},
        {"source": "cdam", "target": 2},
        {"head": 0},
        {"bootstrap_width": 2},
    ):
        assert clone(extractor).set_params(**params).fit().maps_id_ != maps_id
        assert clone(extractor).fit().set_params(**params).maps_id_ != maps_id
    cdam = clone(extractor).set_params(source="cdam", target=2).fit()
    assert cdam.set_params(target=3).maps_id_ != cdam.set_params(target=2).maps_id_
    with pytest.raises(NotFittedError):
        AttentionExtractor(vit).maps_id_


@pytest.mark.parametrize("source", ["attention", "rollout", "cdam"])
def test_maps_of_an_image_do_not_depend_on_the_others(make_tiny_vit, images, source):
    # Bit for bit: whatever the other images, their order, the batch size and
    # the number of threads (which decide how the work is split).
    vit = make_tiny_vit(depth=3, num_classes=5)
    params = dict(image_size=32, n_bootstrap=2, random_state=0, source=source)
    extractor = AttentionExtractor(vit, **params).fit()
    maps = extractor.transform(images)
    order = np.arange(len(images))[::-1]
    threads = torch.get_num_threads()
    try:
        for n_threads, batch_size in [(1, None), (2, 1), (2, 4), (3, 2)]:
            torch.set_num_threads(n_threads)
            extractor.set_params(batch_size=batch_size)
            np.testing.assert_array_equal(
                extractor.transform(images[order]), maps[order]
            )
            np.testing.assert_array_equal(extractor.transform(images[1:2]), maps[1:2])
    finally:
        torch.set_num_threads(threads)
    # the bootstrap blocks of distinct images are distinct draws
    null = maps[:, extractor.n_tokens_ :]
    assert not np.allclose(null[0], null[1])


@pytest.mark.parametrize("source", ["attention", "rollout"])
def test_maps_of_deit_tiny_alone_and_in_a_batch_are_equal_on_one_thread(source):
    # At DeiT-Tiny's width, one thread's batched attention product rounds
    # otherwise for one image than for several: the logits are computed per
    # image, so an image alone and in a batch get the same maps, bit for bit.
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("deit_tiny_patch16_224", img_size=64).eval()
    images = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        extractor = AttentionExtractor(
            vit, image_size=64, n_bootstrap=0, source=source
        ).fit()
        together = extractor.transform(images)
        alone = np.vstack([extractor.transform(image[None]) for image in images])
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(alone, together)


def test_a_stream_keeps_one_torch_thread_whatever_other_threads_set():
    # torch gives a thread the process-wide count the first time it runs an
    # operator unless its own was read before: a stream started while the
    # caller briefly set one thread, then restored two, ran on two threads, and
    # its products rounded otherwise (maps that changed with the load).
    import threading

    from sklearn_arb.backbone._streams import ordered_map

    started, go = threading.Event(), threading.Event()

    def count(item):
        started.set()
        go.wait(timeout=10)
        return torch.get_num_threads()

    def items():
        yield 0
        started.wait(timeout=10)
        torch.set_num_threads(2)  # another thread sets the process-wide count
        go.set()

    threads = torch.get_num_threads()
    try:
        assert list(ordered_map(count, items(), n_streams=2)) == [1]
    finally:
        torch.set_num_threads(threads)


def test_what_check_estimator_skips_holds_on_images(make_tiny_vit, images, tmp_path):
    # Image input is declared through tags, as PatchExtractor declares it, so
    # check_estimator runs none of its checks that feed data; the properties
    # those checks test hold on images.
    extractor = AttentionExtractor(make_tiny_vit(), image_size=32, random_state=0)
    tags = extractor.__sklearn_tags__()
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
    assert not tags.non_deterministic
    assert (
        clone(extractor)
        .set_params(random_state=None)
        .__sklearn_tags__()
        .non_deterministic
    )
    maps = extractor.fit_transform(images)  # check_transformer_general
    np.testing.assert_array_equal(extractor.fit(images).transform(images), maps)
    (path,) = joblib.dump(images, tmp_path / "images.pkl")
    readonly = joblib.load(path, mmap_mode="r")  # check_readonly_memmap_input
    np.testing.assert_array_equal(extractor.transform(readonly), maps)
    # check_fit_idempotent, check_estimators_fit_returns_self, and fitting a
    # clone changes no parameter (check_dont_overwrite_parameters)
    cloned = clone(extractor)
    params = cloned.get_params()
    assert cloned.fit(images) is cloned and cloned.get_params() == params
    np.testing.assert_array_equal(cloned.transform(images), maps)


# API checks of sklearn.utils.estimator_checks._yield_api_checks that do not feed
# 2-D arrays. The others (check_fit_score_takes_y, check_estimators_overwrite_params,
# check_dont_overwrite_parameters, check_estimators_fit_returns_self,
# check_readonly_memmap_input, check_estimators_unfitted,
# check_n_features_in_after_fitting, check_positive_only_tag_during_fit) are
# expected failures, as they pass 2-D (n_samples, n_features) data that is not
# an image batch; their properties are tested explicitly below.
API_CHECKS_WITHOUT_DATA = [
    "check_estimator_cloneable",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_get_params_invariance",
    "check_set_params",
    "check_parameters_default_constructible",
]


@pytest.mark.parametrize("check", API_CHECKS_WITHOUT_DATA)
def test_sklearn_api_checks_without_data(check):
    getattr(estimator_checks, check)("AttentionExtractor", AttentionExtractor())


def test_clone_params_fit_returns_self_and_not_fitted(make_tiny_vit, images):
    vit = make_tiny_vit()
    extractor = AttentionExtractor(vit, image_size=32, n_bootstrap=2, random_state=0)
    params = extractor.get_params()
    with pytest.raises(NotFittedError):
        extractor.transform(images)
    with pytest.raises(NotFittedError):
        extractor.get_feature_names_out()
    assert extractor.fit(images) is extractor
    cloned = clone(extractor)
    assert not hasattr(cloned, "model_")
    assert cloned.get_params()["n_bootstrap"] == 2
    assert cloned.set_params(n_bootstrap=0) is cloned and cloned.n_bootstrap == 0
    # fitting and transforming mutate neither the parameters nor the passed module
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    extractor.transform(images)
    assert extractor.get_params() == params and extractor.model is vit
    assert all(torch.equal(v, state[k]) for k, v in vit.state_dict().items())


def test_pickle_round_trip_identical_output(make_tiny_vit, images):
    extractor = AttentionExtractor(
        make_tiny_vit(), image_size=32, n_bootstrap=1, random_state=0
    ).fit()
    restored = pickle.loads(pickle.dumps(extractor))
    np.testing.assert_array_equal(
        restored.transform(images), extractor.transform(images)
    )


def test_missing_checkpoint_is_named_with_or_without_memory(tmp_path):
    missing = tmp_path / "missing.pth"
    for memory in (None, str(tmp_path)):
        extractor = AttentionExtractor(
            "vit_tiny_patch16_224", checkpoint_path=missing, memory=memory
        )
        with pytest.raises(FileNotFoundError, match=r"missing\.pth' does not exist"):
            extractor.fit()


def test_cpu_streams_give_the_sequential_maps(make_tiny_vit, monkeypatch):
    import sklearn_arb.backbone._batching as batching

    real_ordered_map = batching.ordered_map
    streams = []

    def spy(func, items, n_streams):
        streams.append(n_streams)
        return real_ordered_map(func, items, n_streams)

    monkeypatch.setattr(batching, "ordered_map", spy)
    images = np.random.default_rng(0).random((5, 32, 32, 3))
    extractor = AttentionExtractor(
        make_tiny_vit(), image_size=32, batch_size=2, random_state=0, device="cpu"
    ).fit()  # B=1, batches of 2 forward images: 5 chunks of one image
    # one image, B=3: its 4 forward images make 2 batches, one per stream
    many_bootstraps = clone(extractor).set_params(n_bootstrap=3).fit()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = extractor.transform(images)
        one_image = many_bootstraps.transform(images[:1])
        torch.set_num_threads(2)
        parallel = extractor.transform(images)
        one_batch = extractor.transform(images[:1])
        one_image_parallel = many_bootstraps.transform(images[:1])
    finally:
        torch.set_num_threads(threads)
    # One stream per thread; a batch too few to go round is split (one image
    # and its bootstrap sample: two batches of one).
    assert streams == [1, 1, 2, 2, 2]
    np.testing.assert_array_equal(parallel, sequential)
    np.testing.assert_array_equal(one_batch, sequential[:1])
    np.testing.assert_array_equal(one_image_parallel, one_image)


def test_verbose_shows_a_progress_bar_over_images(
    make_tiny_vit, images, tmp_path, capsys
):
    params = dict(image_size=32, batch_size=2, random_state=0)
    quiet = AttentionExtractor(make_tiny_vit(), **params).fit()
    maps = quiet.transform(images)
    assert capsys.readouterr().err == ""
    verbose = clone(quiet).set_params(verbose=1).fit()
    np.testing.assert_array_equal(verbose.transform(images), maps)
    bar = capsys.readouterr().err
    assert "attention maps" in bar and "3/3" in bar
    # with memory, the images already cached count as done at once
    cached = clone(verbose).set_params(memory=str(tmp_path)).fit()
    cached.transform(images[:2])
    capsys.readouterr()
    np.testing.assert_array_equal(cached.transform(images), maps)
    bar = capsys.readouterr().err
    assert "2/3" in bar and "3/3" in bar and "0/3" not in bar


def test_a_transformers_model_with_memory_fits_and_caches(images, tmp_path):
    # The weights' identity reads each block's head count through its family
    # (a transformers layer has no timm ``attn``).
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    model = transformers.ViTModel(config)
    params = dict(image_size=32, n_bootstrap=1, random_state=0)
    cached = AttentionExtractor(model, memory=str(tmp_path), **params).fit()
    plain = AttentionExtractor(model, **params).fit()
    np.testing.assert_array_equal(cached.transform(images), plain.transform(images))
    assert len(cached.weights_id_) == 32


def test_touching_the_weights_file_recomputes_nothing(images, tmp_path, forward_passes):
    # The weights are named by their content: a file touched (or copied) is the
    # same weights; one overwritten with others is not.
    path = tmp_path / "vit.pth"
    name = "test_vit"  # timm's smallest ViT
    params = dict(
        checkpoint_path=path,
        image_size=32,
        memory=str(tmp_path / "cache"),
        random_state=0,
    )

    def transform():
        clear_caches()
        return AttentionExtractor(name, **params).fit().transform(images)

    def save_random_weights(seed):
        torch.manual_seed(seed)
        torch.save(timm.create_model(name, num_classes=0).state_dict(), path)

    save_random_weights(0)
    first = transform()
    os.utime(path, (1_000_000_000, 1_000_000_000))
    again = transform()
    assert forward_passes == [len(images)]
    np.testing.assert_array_equal(again, first)
    save_random_weights(1)
    transform()
    assert forward_passes == [len(images), len(images)]


def test_touching_the_weights_file_recomputes_no_cli_result(tmp_path, forward_passes):
    from PIL import Image

    from sklearn_arb.cli import main

    image = tmp_path / "a.png"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    weights = tmp_path / "weights.pth"
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), weights)
    args = ["regularize", str(image), "--weights", str(weights), "--no-plots"]
    args += ["--model", "test_vit"]  # timm's smallest ViT
    args += ["--output", str(tmp_path / "out"), "--image-size", "32", "--quiet"]
    assert main(args) == 0
    (result,) = (tmp_path / "out").rglob("*.npz")
    written = result.read_bytes()
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    assert main(args) == 0
    assert forward_passes == [1] and result.read_bytes() == written

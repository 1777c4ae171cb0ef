"""Map sources: rollout and CDAM against plain computations, in the extractor."""

import io
from contextlib import redirect_stderr

import joblib
import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_arb import AttentionExtractor, load_images
from sklearn_arb.backbone import _rollout
from sklearn_arb.backbone._bootstrap import image_seeds
from sklearn_arb.backbone._cache import array_digests
from sklearn_arb.backbone._cdam import cdam, reference_cdam
from sklearn_arb.backbone._rollout import reference_rollout, rollout


@pytest.fixture
def images():
    return np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)


def _full_attention(vit, inputs):
    """Every block's (n, heads, N, N) softmax attention, as timm's unfused
    attention computes it (read from its ``attn_drop`` input, as vit-explain
    does), on a copy of the model."""
    vit = __import__("copy").deepcopy(vit)
    matrices = []
    for block in vit.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(
            lambda module, args, output: matrices.append(output)
        )
    with torch.inference_mode():
        vit.forward_features(inputs)
    return [m.double() for m in matrices]


def _dense_rollout(vit, inputs, layer=-1, head="mean", discard_ratio=0.0):
    """Abnar & Zuidema's rollout with full matrices and a dense per-row discard."""
    matrices = _full_attention(vit, inputs)[: layer % len(vit.blocks) + 1]
    product = None
    for weights in matrices:
        fused = {
            "mean": lambda w: w.mean(1),
            "max": lambda w: w.amax(1),
            "min": lambda w: w.amin(1),
        }.get(head, lambda w: w[:, head])(weights)
        n_tokens = fused.shape[-1]
        n_dropped = int(discard_ratio * (n_tokens - 1))
        for image in range(len(fused)):
            for row in range(n_tokens):
                order = [c for c in fused[image, row].argsort().tolist() if c != 0]
                fused[image, row, order[:n_dropped]] = 0.0
        mixed = fused + torch.eye(n_tokens, dtype=fused.dtype)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        product = mixed if product is None else mixed @ product
    return product[:, 0, vit.num_prefix_tokens :].numpy()


@pytest.mark.parametrize(
    ("head", "discard_ratio", "layer", "vit_kwargs"),
    [
        ("mean", 0.0, -1, {}),
        ("max", 0.5, -1, {"depth": 3}),
        ("min", 0.2, 1, {"depth": 3}),
        (1, 0.9, -1, {"reg_tokens": 2, "qk_norm": True, "init_values": 0.5}),
    ],
)
def test_rollout_equals_the_dense_product(
    make_tiny_vit, head, discard_ratio, layer, vit_kwargs, monkeypatch
):
    vit = make_tiny_vit(**vit_kwargs)
    inputs = torch.randn(2, 3, 32, 32)
    # Chunks of 3 rows: the row-chunked product must not depend on the chunking.
    monkeypatch.setattr(_rollout, "_CHUNK_BYTES", 4 * 2 * 3 * 19)
    expected = _dense_rollout(vit, inputs, layer, head, discard_ratio)
    with torch.inference_mode():
        fast = rollout(vit, inputs, layer, head, discard_ratio).double().numpy()
        plain = reference_rollout(vit, inputs, layer, head, discard_ratio)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(plain.double().numpy(), expected, rtol=0, atol=1e-6)
    # Positive; a discarded token keeps a zero only where no path reaches it.
    assert (fast > 0).all() if discard_ratio == 0 else (fast >= 0).all()


def _autograd_cdam(vit, inputs, score, layer=-1):
    """CDAM by autograd from the pixels through the whole model."""
    kept = []
    handle = vit.blocks[layer].norm1.register_forward_hook(
        lambda module, args, output: kept.append(output)
    )
    pixels = inputs.clone().requires_grad_(True)
    try:
        output = vit(pixels)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score(output).sum(), kept[0])
    products = (kept[0] * gradient).sum(-1)[:, vit.num_prefix_tokens :]
    return products.detach().double().numpy()


@pytest.mark.parametrize("layer", [-1, 0])
def test_cdam_equals_autograd_through_the_whole_model(make_tiny_vit, layer):
    vit = make_tiny_vit(num_classes=7, depth=3, reg_tokens=1)
    inputs = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        predicted = vit(inputs).argmax(-1)
    cases = {
        3: lambda out: out[:, 3],
        "predicted": lambda out: out.gather(1, predicted[:, None])[:, 0],
        (lambda out: out.norm(dim=1)): lambda out: out.norm(dim=1),
    }
    for target, score in cases.items():
        expected = _autograd_cdam(vit, inputs, score, layer)
        with torch.inference_mode():  # as the extractor calls it
            fast = cdam(vit, inputs, layer, target).double().numpy()
        np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-5)
        plain = reference_cdam(vit, inputs, layer, target).double().numpy()
        np.testing.assert_allclose(plain, expected, rtol=0, atol=1e-5)
        assert (fast < 0).any() and (fast > 0).any()  # signed


def _observed_and_bootstrap(extractor, images):
    """The normalised observed images and their bootstrap samples, as the
    extractor draws them."""
    loaded = load_images(images, image_size=extractor.image_size_)
    mean = torch.tensor(extractor.mean_).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std_).view(1, 3, 1, 1)
    observed = (torch.from_numpy(loaded).permute(0, 3, 1, 2) - mean) / std
    forward = extractor._forward_pass()
    seeds = image_seeds(array_digests(loaded), extractor.random_state)
    return observed, forward.draw_samples(observed, seeds=seeds)


@pytest.mark.parametrize("source", ["rollout", "cdam"])
def test_extractor_maps_and_bootstrap_maps_of_a_source(make_tiny_vit, images, source):
    vit = make_tiny_vit(num_classes=5)
    extractor = AttentionExtractor(
        vit, image_size=32, n_bootstrap=2, source=source, random_state=0
    ).fit()
    maps = extractor.transform(images)
    assert maps.shape == (3, 3 * 16)
    observed, samples = _observed_and_bootstrap(extractor, images)
    with torch.no_grad():
        predicted = vit(observed).argmax(-1)
    for b in range(3):
        inputs = observed if b == 0 else samples[:, b - 1]
        if source == "rollout":
            with torch.inference_mode():
                expected = rollout(vit, inputs)
        else:  # every bootstrap sample explains its observed image's class
            expected = reference_cdam(vit, inputs, classes=predicted)
        np.testing.assert_allclose(
            maps[:, b * 16 : (b + 1) * 16], expected.double().numpy(), atol=1e-5
        )
    # Determinism: the same maps again, and in batches of one image.
    again = extractor.set_params(batch_size=1).transform(images)
    np.testing.assert_allclose(again, maps, rtol=0, atol=1e-6)


def test_cdam_list_and_int_targets(make_tiny_vit, images):
    vit = make_tiny_vit(num_classes=5)
    params = dict(image_size=32, n_bootstrap=1, source="cdam", random_state=0)
    by_list = AttentionExtractor(vit, target=[4, 1, 1], **params).fit()
    by_int = AttentionExtractor(vit, target=1, **params).fit()
    listed, single = by_list.transform(images), by_int.transform(images)
    np.testing.assert_array_equal(listed[1:], single[1:])
    assert not np.allclose(listed[0], single[0])
    with pytest.raises(ValueError, match="one class per image: 2 ints"):
        by_list.transform(images[:2])


def test_source_settings_errors(make_tiny_vit, images):
    vit = make_tiny_vit()
    cases = [
        ({"head": "max"}, "fuses heads in rollout only"),
        ({"source": "cdam", "head": 0}, "explains every head together"),
        ({"discard_ratio": 0.5}, "applies to source='rollout' only"),
        ({"target": 3}, "applies to source='cdam' only"),
        ({"source": "rollout", "target": [1, 2, 3]}, "applies to source='cdam'"),
    ]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            AttentionExtractor(vit, image_size=32, **params).fit()
    headless = make_tiny_vit(num_classes=0)
    with pytest.raises(ValueError, match="no classification head"):
        AttentionExtractor(headless, image_size=32, source="cdam").fit()
    # A callable target explains a headless model (e.g. a concept similarity).
    concept = torch.randn(32)
    extractor = AttentionExtractor(
        headless,
        image_size=32,
        source="cdam",
        target=lambda features: features @ concept,
        n_bootstrap=1,
        random_state=0,
    )
    assert extractor.fit().transform(images).shape == (3, 32)


@pytest.mark.parametrize("target", [50, [1, 50, 2]])
def test_a_cdam_class_outside_the_model_is_refused_at_fit(make_tiny_vit, target):
    vit = make_tiny_vit(num_classes=10)
    extractor = AttentionExtractor(vit, image_size=32, source="cdam", target=target)
    with pytest.raises(ValueError) as info:
        extractor.fit()
    message = str(info.value)
    assert "\n" not in message and "class 50" in message
    assert "10 classes" in message and "0..9" in message


def test_cache_key_holds_the_source_settings(make_tiny_vit, images, tmp_path):
    vit = make_tiny_vit(num_classes=5)
    memory = joblib.Memory(tmp_path, verbose=0)
    settings = [
        {"source": "attention"},
        {"source": "rollout"},
        {"source": "rollout", "discard_ratio": 0.5},
        {"source": "rollout", "head": "max"},
        {"source": "cdam"},
        {"source": "cdam", "target": 2},
        {"source": "cdam", "layer": 0},
    ]
    cached = []
    for params in settings:
        uncached = AttentionExtractor(
            vit, image_size=32, n_bootstrap=1, random_state=0, **params
        )
        expected = uncached.fit().transform(images)
        cached_extractor = AttentionExtractor(
            vit, image_size=32, n_bootstrap=1, memory=memory, random_state=0, **params
        )
        for _ in range(2):  # computed, then read from the cache
            maps = cached_extractor.fit().transform(images)
            np.testing.assert_array_equal(maps, expected)
        cached.append(maps)
    for first in range(len(cached)):
        for second in range(first):
            assert not np.allclose(cached[first], cached[second])


def _signed_maps(seed=0, n_images=6, n_tokens=400, n_bootstrap=3):
    """CDAM-like signed maps: null scores around 0; tokens 0-39 carry evidence
    for the target (+), tokens 40-79 against it (-)."""
    rng = np.random.default_rng(seed)
    null = rng.normal(0.0, 1e-3, size=(n_images, n_bootstrap * n_tokens))
    observed = rng.normal(0.0, 1e-3, size=(n_images, n_tokens))
    observed[:, :40] += 8e-3
    observed[:, 40:80] -= 8e-3
    return np.hstack([observed, null])


@pytest.mark.parametrize("method", ["p", "lfdr", "pi0"])
@pytest.mark.parametrize("null", ["pooled", "per_image"])
def test_signed_maps_end_to_end(method, null):
    from sklearn_arb import BootstrapAttentionRegularizer

    X = _signed_maps()
    before = X.copy()
    params = dict(n_bootstrap=3, method=method, null=null)
    linear = BootstrapAttentionRegularizer(scale="linear", **params).fit(X)
    auto = BootstrapAttentionRegularizer(scale="auto", **params).fit(X)
    assert auto.scale_ == "linear"
    maps = linear.transform(X)
    np.testing.assert_array_equal(auto.transform(X), maps)
    np.testing.assert_array_equal(X, before)  # input untouched
    stats = linear.compute_statistics(X)
    assert (stats.z[:, :40] > 4).all() and (stats.z[:, 40:80] < -4).all()
    assert (stats.pvalues[:, :40] < 0.01).all()
    assert (stats.lfdr[:, :40] < 0.05).all()
    # 320 of 400 tokens are null: pi0 (per image) near 0.8.
    assert ((stats.pi0 >= 0) & (stats.pi0 <= 1)).all()
    assert 0.6 < stats.pi0.mean() < 0.95
    # Evidence against the target (negative z) is zeroed, kept scores keep
    # their value.
    assert (maps[:, 40:80] == 0).all()
    kept = maps != 0
    np.testing.assert_array_equal(maps[kept], linear.layout_.observed(X)[kept])
    if method == "pi0":  # keeps the 1 - pi0 largest z: the signal, and some noise
        assert kept[:, :40].mean() > 0.8 and kept[:, 80:].mean() < 0.3
    else:  # evidence for the target kept, the null's tokens mostly zeroed
        assert kept[:, :40].all() and kept[:, 80:].mean() < 0.1


def test_signed_scale_pooled_in_chunks_and_errors():
    from sklearn_arb import BootstrapAttentionRegularizer

    X = _signed_maps(n_images=8)
    whole = BootstrapAttentionRegularizer(n_bootstrap=3, scale="auto").fit(X)
    chunked = BootstrapAttentionRegularizer(n_bootstrap=3, scale="auto")
    for chunk in (X[:3], X[3:]):
        chunked.partial_fit(chunk)
    assert chunked.scale_ == "linear"
    np.testing.assert_array_equal(chunked.transform(X), whole.transform(X))
    positive = BootstrapAttentionRegularizer(n_bootstrap=3, scale="auto")
    assert positive.fit(np.exp(X)).scale_ == "log"
    with pytest.raises(ValueError, match="the log and linear scales"):
        positive.merge(whole)
    with pytest.raises(ValueError, match="learnt on the linear scale"):
        whole.set_params(scale="log").transform(X)


def test_grid_search_over_the_source_runs_the_vit_once_per_source(
    make_tiny_vit, tmp_path, forward_passes
):
    from sklearn.model_selection import GridSearchCV

    from sklearn_arb import make_arb_pipeline

    images = np.random.default_rng(1).random((6, 32, 32, 3)).astype(np.float32)
    pipe = make_arb_pipeline(
        make_tiny_vit(num_classes=5),
        n_bootstrap=2,
        extractor_params={"image_size": 32, "random_state": 0, "source": "cdam"},
        regularizer_params={"scale": "auto"},
        memory=joblib.Memory(tmp_path, verbose=0),
    )
    assert pipe["extractor"].source == "cdam"
    scales = []

    def kept_share(estimator, X, y=None):
        scales.append(estimator["regularizer"].scale_)
        return float((estimator.transform(X) > 0).mean())

    search = GridSearchCV(
        pipe,
        {
            "extractor__source": ["attention", "rollout", "cdam"],
            "regularizer__alpha": [0.05, 0.5],
        },
        scoring=kept_share,
        cv=2,
    ).fit(images)
    # 6 candidates x 2 folds and the refit: per source, each half's maps
    # computed once (its fold's fit), and the observed maps alone of the half
    # scored first, before its whole rows exist (the pooled null transforms
    # observed maps: 3 forward images); every other call served by the cache.
    assert sorted(forward_passes) == [3] * 9
    assert sorted(set(scales)) == ["linear", "log"]  # CDAM's maps are signed
    assert search.best_params_["extractor__source"] in ("attention", "rollout", "cdam")


@pytest.fixture(scope="module")
def random_deit(tmp_path_factory):
    """A DeiT-Tiny state_dict with random weights (no download)."""
    import timm

    path = tmp_path_factory.mktemp("weights") / "deit_tiny_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("options", "params", "title"),
    [
        (
            ["--source", "rollout", "--head", "max"],
            {"source": "rollout", "head": "max"},
            "rollout, max, L-1",
        ),
        (
            ["--source", "cdam", "--target", "3", "--layer", "-2"],
            {"source": "cdam", "target": 3, "layer": -2},
            "cdam, class 3, L-2",
        ),
    ],
)
def test_cli_regularizes_a_source(random_deit, tmp_path, options, params, title):
    from PIL import Image

    from sklearn_arb.cli import main

    path = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    output = tmp_path / "out"
    args = ["regularize", str(path), "--weights", str(random_deit), "--output",
            str(output), "--image-size", "64", "--quiet", "--n-bootstrap", "2",
            *options]  # fmt: skip
    assert main(args) == 0
    expected = AttentionExtractor(
        checkpoint_path=random_deit, image_size=64, n_bootstrap=2, random_state=0,
        **params,
    ).fit().transform([path])[0]  # fmt: skip
    (stored_path,) = output.rglob("*.npz")
    with np.load(stored_path) as stored:
        assert str(stored["source"]) == title
        np.testing.assert_allclose(stored["attention"], expected[:16], rtol=1e-5)
        np.testing.assert_allclose(stored["null_attention"], expected[16:], rtol=1e-5)
        if params["source"] == "cdam":  # signed: z on the scores themselves
            null = stored["null_attention"]
            z = (stored["attention"] - null.mean()) / null.std()
            np.testing.assert_allclose(stored["z"], z, rtol=1e-9)
    assert (stored_path.with_suffix("").with_suffix(".png")).is_file() or any(
        output.rglob("*.png")
    )


def test_cli_source_errors_are_one_line(random_deit, tmp_path, capsys):
    from PIL import Image

    from sklearn_arb.cli import main

    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")

    for options, message in [
        (["--head", "max"], "fuses heads in rollout only"),
        (["--discard-ratio", "1.5"], "expected a fraction in [0, 1)"),
        (["--target", "cat"], "expected a class index >= 0 or 'predicted'"),
    ]:
        args = ["regularize", str(tmp_path), "--weights", str(random_deit),
                "--image-size", "64", "--quiet", *options]  # fmt: skip
        assert main(args) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1


def test_simulate_with_a_source(random_deit, tmp_path):
    from PIL import Image

    from sklearn_arb.cli import main

    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (data / cls).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            data / cls / f"{cls}.png"
        )
    output = tmp_path / "study"
    args = ["simulate", str(data), "--weights", str(random_deit), "--output",
            str(output), "--image-size", "64", "--quiet",
            "--source", "cdam"]  # fmt: skip
    assert main(args) == 0
    summary = (output / "summary.txt").read_text()
    assert "source=cdam (head mean, layer -1), scale=linear" in summary


# ImageNet class index of each Imagenette folder.
_IMAGENETTE_CLASSES = {
    "n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491,
    "n03028079": 497, "n03394916": 566, "n03417042": 569, "n03425413": 571,
    "n03445777": 574, "n03888257": 701,
}  # fmt: skip


def test_real_deit_rollout_and_cdam_regularized(deit_weights, imagenette_paths):
    from sklearn_arb import BootstrapAttentionRegularizer

    paths = imagenette_paths[::50][:4]  # four classes
    common = dict(checkpoint_path=deit_weights, n_bootstrap=2, random_state=0)
    rollout_ex = AttentionExtractor(source="rollout", **common).fit()
    cdam_ex = AttentionExtractor(source="cdam", **common).fit()
    rollout_maps = rollout_ex.transform(paths)
    cdam_maps = cdam_ex.transform(paths)
    assert rollout_maps.shape == cdam_maps.shape == (4, 3 * 196)
    # Rollout's CLS row is a probability vector over all tokens: the patches
    # hold less than 1, the rest is on the CLS token.
    observed = rollout_maps[:, :196]
    assert (rollout_maps > 0).all() and (observed.sum(1) < 1).all()
    # Against the plain computations on the real weights.
    images = torch.from_numpy(load_images(paths[:2], image_size=224))
    mean = torch.tensor(cdam_ex.mean_).view(1, 3, 1, 1)
    std = torch.tensor(cdam_ex.std_).view(1, 3, 1, 1)
    inputs = (images.permute(0, 3, 1, 2) - mean) / std
    with torch.inference_mode():
        dense = reference_rollout(rollout_ex.model_, inputs).double().numpy()
    np.testing.assert_allclose(observed[:2], dense, rtol=0, atol=1e-5)
    full = reference_cdam(cdam_ex.model_, inputs).double().numpy()
    np.testing.assert_allclose(cdam_maps[:2, :196], full, rtol=1e-3, atol=1e-5)
    # The classifier was loaded with the checkpoint: DeiT-Tiny names the
    # class of 2 of these 4 images (a random classifier: none, 1 in 1000 each).
    loaded = torch.from_numpy(load_images(paths, image_size=224))
    with torch.inference_mode():
        logits = cdam_ex.model_((loaded.permute(0, 3, 1, 2) - mean) / std)
    truth = [_IMAGENETTE_CLASSES[p.parent.name] for p in paths]
    assert sum(int(a == b) for a, b in zip(logits.argmax(1), truth, strict=True)) >= 2
    for maps, scale in ((rollout_maps, "log"), (cdam_maps, "linear")):
        for method in ("p", "lfdr", "pi0"):
            arb = BootstrapAttentionRegularizer(
                method=method, scale="auto", null="per_image"
            ).fit(maps)
            assert arb.scale_ == scale
            stats = arb.compute_statistics(maps)
            kept = arb.transform(maps) != 0
            assert 0 < kept.mean() < 1
            assert (stats.z[kept] >= 0).all()
            assert ((stats.pi0 >= 0) & (stats.pi0 <= 1)).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source", "cdam", "--target", "5000"], "1000 classes"),
        (["--target", "3"], "applies to source='cdam' only"),
    ],
)
def test_cli_target_errors_are_one_line(extra, message, random_weights, tmp_path):
    from sklearn_arb.cli import main

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    args = ["regularize", str(image), "--weights", str(random_weights)]
    out = tmp_path / "out"
    with redirect_stderr(io.StringIO()) as err:
        code = main([*args, *extra, "--output", str(out), "--image-size", "32"])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines

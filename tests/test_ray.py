"""Many images: --shard K/N, and ARB on Ray (local Ray, a tiny random ViT)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
from sklearn_arb.cli import main

MAPS = ("attention", "null_attention", "z", "null_z", "pvalues", "lfdr", "pi0")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """16 small RGB images in two subfolders, and a corrupt "JPEG"."""
    root = tmp_path_factory.mktemp("root")
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = root / "images" / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def _args(weights, output, *extra):
    return [
        "regularize",
        "images",
        "--weights",
        str(weights),
        "--output",
        str(output),
        "--image-size",
        "32",
        "--no-plots",
        "--quiet",
        "--batch-size",  # each image alone: maps bitwise independent of batching
        "1",
        *extra,
    ]


def _results(output: Path) -> dict[str, dict[str, np.ndarray]]:
    results = {}
    for npz in sorted(output.rglob("*.npz")):
        with np.load(npz) as stored:
            results[str(npz.relative_to(output))] = {m: stored[m] for m in MAPS}
    return results


@pytest.fixture(scope="module")
def local_run(image_root, random_weights, tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(image_root)
    try:
        output = tmp_path_factory.mktemp("local")
        assert main(_args(random_weights, output)) == 0
    finally:
        os.chdir(cwd)
    return _results(output)


def _assert_same(got, expected, exact=True):
    """The same results; else the maps to 1e-6 and the statistics to 1e-4 (a Ray
    actor runs torch on one thread: other float32 summation orders, which the
    z of a 4-token null amplifies)."""
    assert sorted(got) == sorted(expected) and len(got) == 16
    for key, arrays in expected.items():
        for name, values in arrays.items():
            if exact:
                np.testing.assert_array_equal(got[key][name], values, err_msg=key)
            elif name.endswith("attention"):
                np.testing.assert_allclose(got[key][name], values, rtol=1e-6)
            else:
                np.testing.assert_allclose(got[key][name], values, atol=1e-4)


def test_shards_together_are_one_run(
    image_root, random_weights, local_run, tmp_path, monkeypatch
):
    """Three shards into one folder: the same files, the same maps bit for bit
    (at equal batches: other images in a batch change float32 BLAS sums); each
    image in exactly one shard."""
    monkeypatch.chdir(image_root)
    counts = []
    for k in range(3):
        before = len(list(tmp_path.rglob("*.npz")))
        assert main(_args(random_weights, tmp_path, "--shard", f"{k}/3")) == 0
        counts.append(len(list(tmp_path.rglob("*.npz"))) - before)
    assert sum(counts) == 16 and all(count > 0 for count in counts)
    _assert_same(_results(tmp_path), local_run)
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 16


@pytest.mark.parametrize("text", ["3/3", "1", "a/2", "1/0"])
def test_a_bad_shard_is_one_line(text, capsys):
    assert main(["regularize", "x.png", "--shard", text]) == 2
    assert "expected K/N" in capsys.readouterr().err


def test_ray_options_without_the_ray_engine_are_refused(capsys):
    assert main(["regularize", "x.png", "--workers", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs; the Ray tests skip where Ray is not installed (the
    shard tests above still run)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ray_maps_equal_the_local_run(
    workers, local_ray, image_root, random_weights, local_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(image_root)
    args = _args(random_weights, tmp_path, "--engine", "ray", "--workers", workers)
    assert main(args) == 0
    _assert_same(_results(tmp_path), local_run, exact=False)
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 1 + 16


def test_a_corrupt_file_is_named_as_the_local_command_names_it(
    local_ray, image_root, random_weights, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(image_root)
    base = [*_args(random_weights, tmp_path / "local"), "broken"]
    base[1:2] = []  # only the broken folder
    assert main(base) == 1
    local_error = capsys.readouterr().err
    on_ray = [*_args(random_weights, tmp_path / "ray"), "broken", "--engine", "ray"]
    on_ray[1:2] = []
    assert main(on_ray) == 1
    ray_error = capsys.readouterr().err
    line = [x for x in local_error.splitlines() if x.startswith("skipping")]
    assert len(line) == 1 and "corrupt.jpg" in line[0]
    assert line[0] in ray_error.splitlines()


def test_a_failed_worker_loses_no_finished_image_and_a_rerun_completes(
    local_ray, image_root, random_weights, local_run, tmp_path, monkeypatch, capsys
):
    """An actor that raises on one image: the images of earlier batches are on
    disk; the rerun computes the rest and the results are a whole run's."""
    from sklearn_arb import ray as arb_ray

    class Failing(arb_ray._RegularizeFiles):  # pickled by value to the actors
        def __call__(self, batch):
            if any("img09" in str(source) for source in batch["source"]):
                raise RuntimeError("worker lost")
            return super().__call__(batch)

    monkeypatch.chdir(image_root)
    original = arb_ray._RegularizeFiles
    monkeypatch.setattr(arb_ray, "_RegularizeFiles", Failing)
    args = _args(random_weights, tmp_path, "--engine", "ray")
    assert main(args) == 1
    assert "rerun to continue" in capsys.readouterr().err
    done = _results(tmp_path)
    assert 0 < len(done) < 16
    assert not list(tmp_path.rglob("*.partial"))
    monkeypatch.setattr(arb_ray, "_RegularizeFiles", original)
    assert main(args) == 0
    assert f"{len(done)} image(s) already done" in capsys.readouterr().err
    _assert_same(_results(tmp_path), local_run, exact=False)


def test_extract_and_regularize_maps_equal_the_pipeline(local_ray, make_tiny_vit):
    from sklearn_arb.ray import ExtractMaps, RegularizeMaps, fit_pooled_null

    images = np.random.default_rng(1).random((16, 32, 32, 3))
    extractor = AttentionExtractor(make_tiny_vit(), image_size=32, random_state=0)
    expected_maps = clone(extractor).fit().transform(images)  # actors fit their own
    dataset = local_ray.data.from_items(
        [{"index": i, "image": image} for i, image in enumerate(images)]
    )
    for workers in (1, 2):
        maps_dataset = dataset.map_batches(
            ExtractMaps,
            fn_constructor_args=(extractor,),
            concurrency=workers,
            batch_size=5,
        ).materialize()
        frame = maps_dataset.to_pandas().sort_values("index")
        maps = np.stack(frame["maps"].to_list())
        np.testing.assert_allclose(maps, expected_maps, rtol=1e-6)
        pooled = fit_pooled_null(maps_dataset, BootstrapAttentionRegularizer())
        whole = BootstrapAttentionRegularizer().fit(expected_maps)
        assert pooled.null_count_ == whole.null_count_
        out = (
            maps_dataset.map_batches(
                RegularizeMaps, fn_constructor_args=(pooled,), batch_size=7
            )
            .to_pandas()
            .sort_values("index")
        )
        np.testing.assert_allclose(
            np.stack(out["regularized"].to_list()),
            whole.transform(expected_maps),
            rtol=1e-6,
        )

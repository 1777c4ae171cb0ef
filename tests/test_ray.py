"""Many images: --shard K/N, and ARB on Ray (local Ray, a tiny random ViT)."""

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
from sklearn_arb.cli import main

METHODS = ["p", "lfdr", "pi0"]  # the command's default --methods
MAPS = (
    "attention",
    "null_attention",
    "z",
    "null_z",
    "pvalues",
    "lfdr",
    "pi0",
    *(f"regularized_{m}" for m in METHODS),
)


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


def _skipped_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skipping")]


def test_ray_maps_equal_the_local_run_and_a_corrupt_file_is_named_alike(
    local_ray, image_root, random_weights, local_run, tmp_path, capsys, monkeypatch
):
    """Two workers, the images and a corrupt file: the local run's maps, and the
    line the local command prints for the corrupt file."""
    monkeypatch.chdir(image_root)
    local = _args(random_weights, tmp_path / "local")
    local[1] = "broken"
    assert main(local) == 1
    local_error = _skipped_lines(capsys.readouterr().err)
    assert len(local_error) == 1 and "corrupt.jpg" in local_error[0]
    args = _args(random_weights, tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert main([*args[:2], "broken", *args[2:]]) == 1
    assert _skipped_lines(capsys.readouterr().err) == local_error
    _assert_same(_results(tmp_path / "ray"), local_run, exact=False)
    assert len((tmp_path / "ray" / "summary.csv").read_text().splitlines()) == 1 + 16


def test_a_failed_worker_loses_no_finished_image_and_a_rerun_completes(
    local_ray, image_root, random_weights, local_run, tmp_path, monkeypatch, capsys
):
    """An actor that raises on one image: the images of earlier batches are on
    disk; the rerun (here with the local engine: either engine reads the
    other's results) computes the rest and the results are a whole run's."""
    from sklearn_arb._runs import RegularizeActor

    class Failing(RegularizeActor):  # pickled by value to the actors
        def __call__(self, batch):
            if any("img09" in str(source) for source in batch["source"]):
                raise RuntimeError("worker lost")
            return super().__call__(batch)

    monkeypatch.chdir(image_root)
    monkeypatch.setattr("sklearn_arb._runs._on_ray.RegularizeActor", Failing)
    args = _args(random_weights, tmp_path, "--engine", "ray")
    assert main(args) == 1
    assert "rerun to continue" in capsys.readouterr().err
    done = _results(tmp_path)
    assert 0 < len(done) < 16
    assert not list(tmp_path.rglob("*.partial"))
    assert main(args[: args.index("--engine")]) == 0
    assert f"{len(done)} image(s) already done" in capsys.readouterr().err
    _assert_same(_results(tmp_path), local_run, exact=False)


def test_a_quiet_ray_run_says_only_its_own_lines_and_drops_stale_results(
    image_root, random_weights, tmp_path
):
    """``--engine ray --quiet`` in a fresh process (Ray started by the command,
    as a user runs it): stderr holds the run's lines only, no Ray log line; and
    an image done before and unreadable now loses its old results, as locally."""
    import subprocess
    import sys

    pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
    image = tmp_path / "photo.png"
    image.write_bytes((image_root / "images/part0/img00.png").read_bytes())
    args = _args(random_weights, tmp_path / "out")
    args[1] = str(image)
    assert main(args) == 0
    assert (tmp_path / "out" / f"{args[1].lstrip('/')}.npz").is_file()
    image.write_bytes(b"junk")
    command = [sys.executable, "-m", "sklearn_arb", *args, "--engine", "ray"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.splitlines()[0].startswith(f"skipping {image}: Could not read")
    assert ran.stderr.splitlines()[1:] == [
        f"results in {tmp_path / 'out'} (summary.csv, one .npz per image)"
    ]
    assert not list((tmp_path / "out").rglob("*.npz"))
    assert not (tmp_path / "out" / "summary.csv").exists()  # it listed only that


def test_extract_and_regularize_maps_equal_the_pipeline(local_ray, make_tiny_vit):
    """The map_batches callables on batches of two sizes (in this process: an
    actor calls them alike), and the pooled null merged from Ray's blocks."""
    from sklearn_arb.ray import ExtractMaps, RegularizeMaps, fit_pooled_null

    images = np.random.default_rng(1).random((16, 32, 32, 3))
    extractor = AttentionExtractor(make_tiny_vit(), image_size=32, random_state=0)
    expected_maps = clone(extractor).fit().transform(images)
    whole = BootstrapAttentionRegularizer().fit(expected_maps)
    extract = ExtractMaps(clone(extractor))  # fitted in the callable, as an actor
    maps = np.concatenate(
        [extract({"image": images[:5]})["maps"], extract({"image": images[5:]})["maps"]]
    )
    np.testing.assert_allclose(maps, expected_maps, rtol=1e-6)
    dataset = local_ray.data.from_items([{"maps": row} for row in maps])
    pooled = fit_pooled_null(dataset.repartition(3), BootstrapAttentionRegularizer())
    assert pooled.null_count_ == whole.null_count_
    regularize = RegularizeMaps(pooled)
    regularized = np.concatenate(
        [
            regularize({"maps": maps[:7]})["regularized"],
            regularize({"maps": maps[7:]})["regularized"],
        ]
    )
    np.testing.assert_allclose(regularized, whole.transform(expected_maps), rtol=1e-6)


# regularize_dataset: a Pipeline over many images, results as Parquet.

# The Parquet columns and the command's .npz arrays of the same content.
NPZ_NAMES = {
    "scores": "attention",
    "bootstrap_scores": "null_attention",
    "z": "z",
    "null_z": "null_z",
    "pvalues": "pvalues",
    "lfdr": "lfdr",
    "pi0": "pi0",
    **{f"regularized_{m}": f"regularized_{m}" for m in METHODS},
}
IMAGES = ["images/part0", "images/part1"]  # img09 (part1) comes late


def _pipeline(weights, null="per_image", extractor=None):
    """The pipeline of the command's settings (``_args``)."""
    from sklearn_arb import make_arb_pipeline

    pipe = make_arb_pipeline(
        "deit_tiny_patch16_224",
        extractor_params={
            "checkpoint_path": weights,
            "image_size": 32,
            "random_state": 0,
        },
        regularizer_params={"null": null},
    )
    if extractor is not None:
        pipe.steps[0] = ("extractor", extractor(**pipe[0].get_params()))
    return pipe


@contextmanager
def chdir(folder):  # contextlib.chdir from Python 3.11
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        yield


def _image_files(image_root):
    return sorted(image_root.glob("images/*/*"))


def _local(image_root, weights, null):
    """``pipeline.fit(paths).transform(paths)`` in this process, per path."""
    paths = [str(p.relative_to(image_root)) for p in _image_files(image_root)]
    pipe = _pipeline(weights, null)
    with chdir(image_root):
        maps = pipe[0].fit().transform(paths)
        regularized = pipe.fit(paths).transform(paths)
    return {p: (maps[i], regularized[i]) for i, p in enumerate(paths)}


@pytest.fixture(scope="module")
def dataset_run(local_ray, image_root, random_weights, tmp_path_factory):
    """One actor on the image files and the corrupt one, per-image null: a run
    whose extractor raises on one image (img09), then the rerun that completes
    it (what the first run left is recorded for the test of resuming)."""
    from sklearn_arb import load_images
    from sklearn_arb._parquet import read_keys
    from sklearn_arb.ray import regularize_dataset

    lost = load_images(image_root / "images/part1/img09.png", image_size=32)[0]

    class FailingExtractor(AttentionExtractor):  # pickled by value to the actors
        def transform(self, X):
            if any(np.array_equal(image, lost) for image in np.asarray(X)):
                raise RuntimeError("actor lost")
            return super().transform(X)

    output = tmp_path_factory.mktemp("parquet")
    images = [*IMAGES, "broken"]
    with chdir(image_root):
        failing = _pipeline(random_weights, extractor=FailingExtractor)
        with pytest.raises(Exception, match="actor lost"):
            regularize_dataset(images, failing, output, methods=METHODS, batch_size=4)
        left = {path: path.stat().st_mtime_ns for path in output.iterdir()}
        done = read_keys(output)
        result = regularize_dataset(
            images, _pipeline(random_weights), output, methods=METHODS, batch_size=4
        )
    return result, output, left, done


def _assert_maps_equal(results, local, observed_only=False):
    """The same maps as the local pipeline's; against a pooled null the
    observed maps alone (the actors ran no bootstrap sample)."""
    assert sorted(results) == sorted(local)
    for key, (maps, regularized) in local.items():
        if observed_only:
            assert "bootstrap_scores" not in results[key]
            assert "null_z" not in results[key]
            got, maps = results[key]["scores"], maps[: len(results[key]["scores"])]
        else:
            got = np.concatenate(
                [results[key]["scores"], results[key]["bootstrap_scores"]]
            )
        np.testing.assert_allclose(got, maps, rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(
            results[key]["regularized_p"], regularized, rtol=1e-6, err_msg=key
        )


def test_regularize_dataset_equals_the_pipeline_with_one_actor(
    dataset_run, image_root, random_weights
):
    from sklearn_arb._parquet import read_results

    _, output, _, _ = dataset_run
    _assert_maps_equal(
        read_results(output), _local(image_root, random_weights, "per_image")
    )


def test_regularize_dataset_with_two_actors_a_dataset_and_a_pooled_null(
    local_ray, image_root, random_weights, tmp_path
):
    """Images given as a ray.data.Dataset of arrays, two actors, a pooled null
    learnt in a first pass: the pipeline fitted on all the images, locally."""
    from sklearn_arb._parquet import read_results
    from sklearn_arb.ray import regularize_dataset

    rows = [
        {"image": np.asarray(Image.open(p)), "path": str(p.relative_to(image_root))}
        for p in _image_files(image_root)
    ]
    result = regularize_dataset(
        local_ray.data.from_items(rows),
        _pipeline(random_weights, null="pooled"),
        tmp_path,
        workers=2,
        batch_size=3,
    )
    assert result.written == 16 and result.failed == {}
    local = _local(image_root, random_weights, "pooled")
    _assert_maps_equal(read_results(tmp_path), local, observed_only=True)
    whole = _pipeline(random_weights, null="pooled")
    with chdir(image_root):
        whole.fit(sorted(local))
    assert result.pipeline[-1].null_count_ == whole[-1].null_count_


def test_a_corrupt_file_is_one_failed_image_named_as_the_command_names_it(
    dataset_run, image_root, random_weights, tmp_path, capsys, monkeypatch
):
    result = dataset_run[0]
    assert list(result.failed) == ["broken/corrupt.jpg"]
    monkeypatch.chdir(image_root)
    command = _args(random_weights, tmp_path)
    command[1] = "broken"
    assert main(command) == 1
    line = f"skipping broken/corrupt.jpg: {result.failed['broken/corrupt.jpg']}"
    assert line in capsys.readouterr().err.splitlines()


def test_the_parquet_results_are_the_command_npz(dataset_run, local_run):
    """Every array of the command's .npz, in the Parquet row of the same image
    (maps to 1e-6, statistics to 1e-4: another float32 summation order)."""
    from sklearn_arb._parquet import read_results

    results = read_results(dataset_run[1])
    assert sorted(f"{key}.npz" for key in results) == sorted(local_run)
    for key, row in results.items():
        expected = local_run[f"{key}.npz"]
        for column, name in NPZ_NAMES.items():
            if column.endswith("scores"):
                np.testing.assert_allclose(row[column], expected[name], rtol=1e-6)
            else:
                np.testing.assert_allclose(row[column], expected[name], atol=1e-4)
        assert row["grid_shape"].tolist() == [2, 2]


def test_a_failed_actor_loses_no_written_batch_and_a_rerun_computes_the_rest(
    dataset_run,
):
    """The run whose extractor raised: the batches written before stay (complete
    files, nothing half-written); the rerun skips them, computes only the others
    and leaves the first run's files as they were."""
    result, output, left, done = dataset_run
    assert 0 < len(done) < 16 and "images/part1/img09.png" not in done
    assert all(path.suffix == ".parquet" for path in left)  # no temporary file
    assert (result.done_before, result.written) == (len(done), 16 - len(done))
    assert all(path.stat().st_mtime_ns == t for path, t in left.items())
    assert len(list(output.iterdir())) > len(left)


def test_a_rerun_with_other_settings_is_refused(
    dataset_run, image_root, random_weights, monkeypatch
):
    from sklearn_arb.ray import regularize_dataset

    monkeypatch.chdir(image_root)
    other = _pipeline(random_weights).set_params(regularizer__alpha=0.1)
    with pytest.raises(ValueError, match=r"other settings .*regularizer__alpha"):
        regularize_dataset(IMAGES, other, dataset_run[1], methods=METHODS)


def test_regularize_dataset_refuses_a_pipeline_it_cannot_run_alike(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_arb import make_arb_pipeline
    from sklearn_arb.ray import regularize_dataset

    with pytest.raises(TypeError, match="make_arb_pipeline"):
        regularize_dataset(["x.png"], make_pipeline(StandardScaler()), tmp_path)
    with pytest.raises(ValueError, match="int random_state"):
        regularize_dataset(["x.png"], make_arb_pipeline(), tmp_path)
    seeded = make_arb_pipeline(extractor_params={"random_state": 0})
    with pytest.raises(ValueError, match=r"methods must be among .* got 'q'"):
        regularize_dataset(["x.png"], seeded, tmp_path, methods=["p", "q"])
    assert not list(tmp_path.iterdir())


def test_decode_reads_paths_arrays_and_file_contents_alike(image_root, tmp_path):
    """What the read tasks give the actors (called in-process): each image as
    ``load_images(path, image_size)`` reads it, whether given as a path, an
    array or the file's bytes; keys done are dropped; a corrupt file is its
    error, not an exception."""
    from sklearn_arb import load_images
    from sklearn_arb._runs import decode_batch

    files = _image_files(image_root)[:3]
    expected = load_images(files, image_size=32)
    corrupt = image_root / "broken" / "corrupt.jpg"
    columns = {
        "path": np.array([str(f) for f in files], dtype=object),
        "arrays": np.array([np.asarray(Image.open(f)) for f in files], dtype=object),
        "bytes": np.array([f.read_bytes() for f in files], dtype=object),
    }
    for column in columns:
        batch = {"key": columns["path"], "image": columns[column]}
        done = frozenset([str(files[1])])
        out = decode_batch(batch, "image", "key", (32, 32), done, os.getcwd())
        assert out["key"].tolist() == [str(files[0]), str(files[2])]
        np.testing.assert_array_equal(out["image"], expected[[0, 2]], err_msg=column)
        assert out["error"].tolist() == ["", ""]
    for image in (str(corrupt), corrupt.read_bytes()):
        batch = {"key": np.array(["bad"], dtype=object), "image": np.array([image])}
        out = decode_batch(batch, "image", "key", (32, 32), frozenset(), os.getcwd())
        assert out["key"].tolist() == ["bad"] and out["image"].shape == (1, 32, 32, 3)
        assert out["error"][0]  # the message; its wording is tested on Ray above


def test_a_folder_means_the_same_images_everywhere(
    local_ray, random_weights, tmp_path, make_tiny_vit, monkeypatch
):
    """A folder with macOS's ``._a.jpg`` beside a subfolder's ``sub/b.jpg``:
    load_images, the command, Ray and the simulation study all take b.jpg
    alone (the one walk: subfolders in, hidden files out)."""
    from sklearn_arb import load_images, make_arb_pipeline
    from sklearn_arb._study import list_images
    from sklearn_arb.ray import regularize_dataset

    monkeypatch.chdir(tmp_path)
    folder = Path("data", "cls")
    (folder / "sub").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "sub" / "b.jpg")
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not a JPEG")
    only = load_images(folder / "sub" / "b.jpg")
    np.testing.assert_array_equal(load_images(folder), only)
    args = ["regularize", str(folder), "--weights", str(random_weights)]
    assert main([*args, "--output", "out", "--image-size", "32", "--quiet"]) == 0
    assert sorted(p.name for p in Path("out").rglob("*.npz")) == ["b.jpg.npz"]
    pipe = make_arb_pipeline(
        make_tiny_vit(), extractor_params={"image_size": 32, "random_state": 0}
    )
    result = regularize_dataset([folder], pipe, "parquet")
    assert (result.written, result.failed) == (1, {})
    assert list_images(Path("data"), None) == ([folder / "sub" / "b.jpg"], ["cls"])

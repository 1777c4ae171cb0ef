"""A pooled null from the command line: fit-null (per shard), merge-null,
regularize --null-state; and the state file's format."""

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer, load_images
from sklearn_arb.cli import main
from sklearn_arb.stats._pooled_null import PooledNull

SIZE = 64  # 16 tokens of DeiT-Tiny
N_IMAGES = 16  # conftest's image_root/images
# Each image alone through the model: maps bitwise independent of batching.
MODEL = ["--image-size", str(SIZE), "--batch-size", "1", "--quiet"]
EXACT = ("attention", "pvalues")
# The null's moments: Chan's update over the images vs one pass in the Pipeline.
ROUNDED = ("z", "lfdr", "pi0")
METHODS = ("p", "lfdr", "pi0")


@pytest.fixture
def in_root(image_root, monkeypatch) -> Path:
    monkeypatch.chdir(image_root)
    return image_root


def _fit_null(weights, output, *extra) -> int:
    args = ["fit-null", "images", "--weights", str(weights), "--output", str(output)]
    return main([*args, *MODEL, *extra])


def _state(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        return dict(stored)


def _paths() -> list[Path]:
    """The images in the order the command walks them."""
    return sorted(Path("images").glob("*/*.png"))


@pytest.fixture(scope="module")
def one_run(image_root, random_weights, tmp_path_factory) -> Path:
    """The null fitted on all images in one fit-null run."""
    cwd = os.getcwd()
    os.chdir(image_root)
    try:
        output = tmp_path_factory.mktemp("one") / "null.npz"
        assert _fit_null(random_weights, output) == 0
    finally:
        os.chdir(cwd)
    return output


def test_shards_merged_state_equals_the_single_run_state(
    in_root, random_weights, one_run, tmp_path, capsys
):
    """Three shards, merged: the count, histogram and sorted null of one run,
    bit for bit; the moments to rounding (Chan's update, another order)."""
    parts = [tmp_path / f"null_{k}.npz" for k in range(3)]
    for k, part in enumerate(parts):
        assert _fit_null(random_weights, part, "--shard", f"{k}/3") == 0
    counts = [int(_state(part)["count"]) for part in parts]
    assert sum(counts) == N_IMAGES * 16 and all(counts)
    merged = tmp_path / "null.npz"
    assert main(["merge-null", *map(str, parts), "--output", str(merged)]) == 0
    assert "note" not in capsys.readouterr().err  # every shard is in
    got, expected = _state(merged), _state(one_run)
    for name in ("count", "histogram_bins", "histogram_counts", "sorted_logs"):
        assert_array_equal(got[name], expected[name], err_msg=name)
    for name in ("mean", "m2", "abs_max"):
        assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)
    assert str(got["settings"]) == str(expected["settings"])


@pytest.mark.parametrize("max_exact_null", [None, "0"])
def test_regularize_with_the_null_state_is_the_pooled_regularizer(
    max_exact_null, in_root, random_weights, one_run, tmp_path, monkeypatch
):
    """regularize --null-state runs the model on the observed images alone (n
    forward images, not n * (1 + B); no bootstrap map written) and gives, per
    image, the maps and statistics of null="pooled" fitted on all the images'
    maps: exactly, with the exact null and with the histogram alone
    (max_exact_null=0); and the histogram's p-values are within its stated
    bound of the exact ones."""
    import timm

    null = one_run
    if max_exact_null is not None:
        null = tmp_path / "bounded.npz"
        assert _fit_null(random_weights, null, "--max-exact-null", "0") == 0
        assert "sorted_logs" not in _state(null)
    output = tmp_path / "out"
    args = ["regularize", "images", "--weights", str(random_weights), "--no-plots"]
    args += ["--output", str(output), "--null-state", str(null), *MODEL]
    forward, embed = [], timm.layers.PatchEmbed.forward

    def counted(self, x):
        forward.append(len(x))
        return embed(self, x)

    monkeypatch.setattr(timm.layers.PatchEmbed, "forward", counted)
    assert main(args) == 0
    assert sum(forward) == N_IMAGES

    # The arrays the command feeds the model, each image alone (--batch-size 1):
    # the extractor's own reading of paths, or other batches, round otherwise.
    images = [load_images(path, image_size=SIZE) for path in _paths()]
    extractor = AttentionExtractor(
        checkpoint_path=random_weights, image_size=SIZE, random_state=0
    ).fit()
    maps = np.vstack([extractor.transform(image) for image in images])

    def pooled(max_exact):
        regularizer = BootstrapAttentionRegularizer(
            null="pooled", max_exact_null=max_exact
        )
        return regularizer.fit(maps)

    regularizer = pooled(4_194_304 if max_exact_null is None else 0)
    statistics = regularizer.compute_statistics(maps)
    for i, path in enumerate(_paths()):
        with np.load(output / f"{path}.npz") as stored:
            assert "null_attention" not in stored and "null_z" not in stored
            for name in EXACT:
                expected = statistics["scores" if name == "attention" else name][i]
                assert_array_equal(stored[name], expected, err_msg=name)
            for name in ROUNDED:
                assert_allclose(
                    stored[name], statistics[name][i], rtol=1e-9, err_msg=name
                )
            for method in METHODS:
                expected = regularizer.set_params(method=method).transform(maps)
                assert_array_equal(stored[f"regularized_{method}"], expected[i])
    if max_exact_null is not None:
        exact = pooled(4_194_304)
        p_exact = exact.compute_statistics(maps).pvalues
        error = statistics.pvalues - p_exact
        assert error.min() >= 0 and error.max() <= regularizer.pvalue_bound_
        assert regularizer.pvalue_bound_ > 0


def test_an_interrupted_fit_resumes_to_the_same_state(
    in_root, random_weights, one_run, tmp_path, monkeypatch
):
    calls = []
    transform = AttentionExtractor.transform

    def interrupted(self, X):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return transform(self, X)

    monkeypatch.setattr(AttentionExtractor, "transform", interrupted)
    output = tmp_path / "null.npz"
    assert _fit_null(random_weights, output) == 130
    unfinished = _state(output)
    assert int(unfinished["count"]) == 3 * 16  # the three batches done are kept
    assert unfinished["part_counts"][0, 3] == 3
    regularize = ["regularize", "images", "--weights", str(random_weights)]
    regularize += ["--null-state", str(output), "--output", str(tmp_path / "o")]
    assert main([*regularize, *MODEL]) == 2  # an unfinished null is refused
    monkeypatch.setattr(AttentionExtractor, "transform", transform)
    assert _fit_null(random_weights, output) == 0
    assert len(calls) == 4  # the rerun started after the third image
    got, expected = _state(output), _state(one_run)
    for name in ("count", "histogram_counts", "sorted_logs"):
        assert_array_equal(got[name], expected[name])
    assert _fit_null(random_weights, output) == 0  # complete: nothing to do


def test_an_unreadable_image_is_left_out_and_named(
    image_root, random_weights, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    os.symlink(image_root / "images", "images")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not a png")
    output = tmp_path / "null.npz"
    args = ["fit-null", "images", "broken.png", "--weights", str(random_weights)]
    assert main([*args, "--output", str(output), *MODEL]) == 1
    err = capsys.readouterr().err
    assert "skipping broken.png:" in err and "Traceback" not in err
    state = _state(output)
    assert int(state["count"]) == N_IMAGES * 16
    assert state["part_counts"][0].tolist() == [0, 1, N_IMAGES + 1, N_IMAGES + 1, 1]


def test_images_left_out_fail_every_rerun_until_readable_or_removed(
    image_root, random_weights, one_run, tmp_path, monkeypatch, capsys
):
    """fit-null over a folder with an unreadable image exits 1; so does every
    rerun (not "complete already"), and merge-null of the state, until the
    file is readable (then it joins the null: the state of a run on good files)
    or removed from the inputs (the state then is that of the run without it)."""
    monkeypatch.chdir(tmp_path)
    os.symlink(image_root / "images", "images")
    Path("more").mkdir()
    bad = Path("more/late.png")
    bad.write_bytes(b"\x89PNG not a png")
    output = tmp_path / "null.npz"
    args = ["fit-null", "images", str(bad), "--weights", str(random_weights)]
    args += ["--output", str(output), *MODEL]
    assert main(args) == 1
    for command in (args, ["merge-null", str(output), "--output", "merged.npz"]):
        capsys.readouterr()
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "1 unreadable image(s) left out" in err and "complete" not in err
    state = _state(output)
    assert state["left_out_key"].tolist() == ["more/late.png"]
    # Readable now: it joins the null, and the rerun succeeds.
    pixels = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(bad)
    assert main(args) == 0
    fixed = _state(output)
    assert int(fixed["count"]) == (N_IMAGES + 1) * 16
    assert fixed["part_counts"][0, 4] == 0 and not len(fixed["left_out_key"])
    # Removed from the inputs: the state is that of a run without it.
    bad.write_bytes(b"junk")
    removed = tmp_path / "removed.npz"
    args[args.index(str(output))] = str(removed)
    assert main(args) == 1
    args.remove(str(bad))
    capsys.readouterr()
    assert main(args) == 0
    assert "complete already" in capsys.readouterr().err
    got, expected = _state(removed), _state(one_run)
    for name in ("count", "histogram_counts", "sorted_logs", "part_inputs"):
        assert_array_equal(got[name], expected[name], err_msg=name)
    assert got["part_counts"].tolist() == expected["part_counts"].tolist()


def test_an_empty_shard_writes_an_empty_null_that_merges(
    in_root, random_weights, one_run, tmp_path
):
    """With more shards than images some are empty: their state merges as
    nothing; regularize refuses a null of no value."""
    from sklearn_arb._runs import read_state, shard_of

    keys = {shard_of(path, 40) for path in _paths()}
    empty = min(set(range(40)) - keys)
    output = tmp_path / "empty.npz"
    assert _fit_null(random_weights, output, "--shard", f"{empty}/40") == 0
    assert int(_state(output)["count"]) == 0
    whole = read_state(one_run).regularizer
    for merged in (
        read_state(output).regularizer.merge(whole),
        whole.merge(read_state(output).regularizer),
    ):
        assert merged.null_count_ == whole.null_count_
        assert_array_equal(merged.null_z_sorted_, whole.null_z_sorted_)
        assert merged.null_std_ == whole.null_std_
    args = ["regularize", "images", "--weights", str(random_weights)]
    args += ["--null-state", str(output), "--output", str(tmp_path / "o")]
    assert main([*args, *MODEL]) == 2


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    """Another random DeiT-Tiny state_dict."""
    import timm
    import torch

    path = tmp_path_factory.mktemp("weights") / "deit_tiny_other.pth"
    torch.manual_seed(1)
    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n-bootstrap", "2"], "(--n-bootstrap 1 vs 2)"),
        (["--source", "rollout"], "--source attention vs rollout"),
        (["--image-size", "32"], "--image-size 64 vs 32"),
        (["__other_weights__"], "--weights (other weights"),
    ],
)
def test_a_null_of_other_settings_is_refused_naming_them(
    extra, message, in_root, random_weights, other_weights, one_run, tmp_path, capsys
):
    weights = random_weights
    if extra == ["__other_weights__"]:
        extra, weights = [], other_weights
    args = ["regularize", "images", "--weights", str(weights), *MODEL, *extra]
    args += ["--null-state", str(one_run), "--output", str(tmp_path / "out")]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "fitted with other settings" in line and message in line
    assert not (tmp_path / "out").exists()  # refused before anything is made


def test_a_corrupt_or_pickled_state_is_one_line(
    in_root, random_weights, one_run, tmp_path, capsys
):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not a zip")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **_state(one_run), extra=np.array([{"a": 1}], dtype=object))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(one_run.read_bytes()[:500])
    inconsistent = tmp_path / "inconsistent.npz"
    np.savez(inconsistent, **{**_state(one_run), "count": np.int64(7)})
    cases = {
        garbage: "is not a null state",
        pickled: "pickled objects, never loaded",
        truncated: "is not a null state",
        inconsistent: "inconsistent",
    }
    for path, message in cases.items():
        args = ["regularize", "images", "--weights", str(random_weights), *MODEL]
        args += ["--null-state", str(path), "--output", str(tmp_path / "out")]
        assert main(args) == 2
        line = _one_error_line(capsys)
        assert line.startswith("sklearn-arb regularize: error:") and message in line
        assert main(["merge-null", str(path), "--output", str(tmp_path / "m.npz")])
        assert message in _one_error_line(capsys)


def test_merge_refuses_the_same_images_twice(
    in_root, random_weights, one_run, tmp_path, capsys
):
    merged = tmp_path / "twice.npz"
    assert main(["merge-null", str(one_run), str(one_run), "--output", str(merged)])
    assert "both hold shard 0/1" in _one_error_line(capsys)
    half = tmp_path / "half.npz"
    assert _fit_null(random_weights, half, "--shard", "0/2") == 0
    capsys.readouterr()
    assert main(["merge-null", str(one_run), str(half), "--output", str(merged)])
    assert "into 1 and 2 shards, which overlap" in _one_error_line(capsys)
    assert not merged.exists()


def test_fit_null_never_overwrites_another_file(
    in_root, random_weights, tmp_path, capsys
):
    output = tmp_path / "precious.npz"
    np.savez(output, data=np.arange(3))
    assert _fit_null(random_weights, output) == 2
    assert "is not a null state" in _one_error_line(capsys)
    assert_array_equal(_state(output)["data"], np.arange(3))


def test_state_arrays_round_trip_and_reject_another_grid():
    rng = np.random.default_rng(0)
    state = PooledNull.from_logs(rng.normal(-5, 1, 1000), max_exact=10_000)
    again = PooledNull.from_arrays(state.to_arrays())
    assert_array_equal(again.histogram, state.histogram)
    assert_array_equal(again.sorted_logs, state.sorted_logs)
    assert (again.count, again.mean, again.m2) == (state.count, state.mean, state.m2)
    arrays = {**state.to_arrays(), "histogram_grid": np.array([-64.0, 32.0, 2**18])}
    with pytest.raises(ValueError, match="grid"):
        PooledNull.from_arrays(arrays)
    arrays = {**state.to_arrays(), "sorted_logs": state.sorted_logs[::-1]}
    with pytest.raises(ValueError, match="sorted"):
        PooledNull.from_arrays(arrays)


def test_the_null_state_on_ray_gives_the_local_results(
    local_ray, in_root, random_weights, one_run, tmp_path
):
    """regularize --null-state --engine ray: each actor judges its images
    against the same null (the maps to float32 rounding: an actor's torch
    sums in another order)."""
    results = {}
    for engine in ("local", "ray"):
        output = tmp_path / engine
        args = ["regularize", "images", "--weights", str(random_weights)]
        args += ["--null-state", str(one_run), "--output", str(output)]
        assert main([*args, "--no-plots", "--engine", engine, *MODEL]) == 0
        results[engine] = {
            str(npz.relative_to(output)): dict(np.load(npz))
            for npz in sorted(output.rglob("*.npz"))
        }
    assert sorted(results["ray"]) == sorted(results["local"])
    assert len(results["local"]) == N_IMAGES
    for key, local in results["local"].items():
        on_ray = results["ray"][key]
        assert str(on_ray["settings"]) == str(local["settings"])
        assert_allclose(on_ray["attention"], local["attention"], rtol=1e-6)
        for name in ("z", "pvalues", "lfdr"):
            assert_allclose(on_ray[name], local[name], atol=1e-4, err_msg=name)


def test_a_folder_random_bytes_or_another_token_count_are_named(
    in_root, random_weights, one_run, tmp_path, capsys
):
    """merge-null of a folder, random bytes named .npz, and a state of maps of
    another token count (its settings tampered to match): one line each,
    naming the file and what it is."""
    merged = str(tmp_path / "m.npz")
    assert main(["merge-null", str(tmp_path), "--output", merged]) == 2
    assert f"{tmp_path} is a folder; pass the state files" in _one_error_line(capsys)
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(400))
    assert main(["merge-null", str(noise), "--output", merged]) == 2
    line = _one_error_line(capsys)
    assert f"{noise} is not a null state" in line and "not an .npz archive" in line
    assert "pickled" not in line
    other = tmp_path / "other_tokens.npz"
    tampered = {"n_tokens": np.int64(9), "part_inputs": np.asarray(["0" * 32])}
    np.savez(other, **{**_state(one_run), **tampered})
    assert main(["merge-null", str(one_run), str(other), "--output", merged]) == 2
    line = _one_error_line(capsys)
    assert f"{one_run} and {other} cannot be merged" in line
    args = ["regularize", "images", "--weights", str(random_weights), *MODEL]
    args += ["--null-state", str(other), "--output", str(tmp_path / "out")]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert f"--null-state {other} holds a null of maps of 9 tokens" in line
    assert "this run's maps have 16" in line

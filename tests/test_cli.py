"""Tests of the sklearn-arb command line."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from sklearn_arb.cli import main

SMALL = ["--image-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A DeiT-Tiny state_dict with random weights, so no download is needed."""
    path = tmp_path_factory.mktemp("weights") / "deit_tiny_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Two RGB images and a grey one, plus a file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, shape in [("a", (70, 90, 3)), ("b", (64, 64, 3)), ("grey", (80, 64))]:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
            folder / f"{name}.png"
        )
    (folder / "notes.txt").write_text("not an image")
    return folder


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["regularize", "x.png", "--alpha", "1.5"], "--alpha: expected a number in"),
        (["regularize", "x.png", "--gamma", "lots"], "--gamma: expected a number"),
        (["regularize", "x.png", "--n-bootstrap", "0"], "--n-bootstrap: expected a"),
        (["regularize", "x.png", "--image-size", "-3"], "--image-size: expected a"),
        (["regularize", "x.png", "--methods", "q"], "--methods: invalid choice"),
        (["regularize", "x.png", "--bootstrap", "cauchy"], "--bootstrap: invalid"),
        (["regularize", "x.png", "--weights", "missing.pth"], "no such file"),
        (["regularize", "x.png", "--device", "tpu9"], "--device"),
        (["regularize", "x.png", "--bootstrap-width", "0"], "positive number"),
        (["regularize"], "required: IMAGES_OR_FOLDERS"),
        (["frobnicate"], "invalid choice"),
        (["regularize", "no_such_image.png"], "no such file or folder"),
        (["simulate", "no_such_folder", "--pretrained"], "no such folder"),
    ],
)
def test_bad_argument_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert line.startswith("sklearn-arb")
    assert message in line


def test_no_weights_is_refused_not_random(image_folder, tmp_path, capsys):
    assert main(["regularize", str(image_folder), "--output", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "--weights PATH" in line and "--pretrained" in line
    assert not list(tmp_path.iterdir())


def test_unknown_model_is_a_bad_argument(image_folder, random_weights, capsys):
    args = ["regularize", str(image_folder), "--model", "vit_nope"]
    assert main([*args, "--weights", str(random_weights)]) == 2
    assert "unknown model 'vit_nope'" in _one_error_line(capsys)


def test_regularize_writes_panel_npz_and_summary(
    image_folder, random_weights, tmp_path
):
    output = tmp_path / "out"
    args = [
        "regularize",
        str(image_folder),
        "--weights",
        str(random_weights),
        "--output",
        str(output),
        "--methods",
        "p",
        "lfdr",
        "--n-bootstrap",
        "2",
        *SMALL,
    ]
    assert main(args) == 0
    names = ["a", "b", "grey"]
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [f"{n}.png" for n in names] + [f"{n}.npz" for n in names] + ["summary.csv"]
    )
    with open(output / "summary.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == names
    with np.load(output / "a.npz") as stored:
        attention, p, lfdr = stored["attention"], stored["pvalues"], stored["lfdr"]
        assert tuple(stored["grid_shape"]) == (4, 4)
        assert stored["null_attention"].shape == (2 * 16,)
        kept_p = stored["regularized_p"] > 0
        # Kept scores keep their value; kept p-values pass alpha and z >= 0.
        np.testing.assert_array_equal(
            stored["regularized_p"][kept_p], attention[kept_p]
        )
        assert np.all(p[kept_p] <= 0.05) and np.all(stored["z"][kept_p] >= 0)
        assert np.all(lfdr[stored["regularized_lfdr"] > 0] <= 0.2)
    assert float(rows[0]["nonzero_percent_p"]) == pytest.approx(
        100 * kept_p.mean(), abs=1e-3
    )
    assert float(rows[0]["attention_kept_p"]) == pytest.approx(
        attention[kept_p].sum() / attention.sum(), abs=1e-5
    )
    with Image.open(output / "a.png") as panel:
        assert panel.width > 3 * panel.height  # image | attention | p | lfdr


def test_rerun_skips_done_images_and_recomputes_on_new_settings(
    image_folder, random_weights, tmp_path, capsys
):
    args = [
        "regularize",
        str(image_folder / "a.png"),
        str(image_folder / "b.png"),
        "--weights",
        str(random_weights),
        "--output",
        str(tmp_path),
        *SMALL,
    ]
    assert main(args) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    (tmp_path / "b.npz").unlink()  # as if interrupted before b was done
    capsys.readouterr()
    assert main(args) == 0
    assert "1 image(s) already done" in capsys.readouterr().err
    assert (tmp_path / "a.npz").stat().st_mtime_ns == stamps["a.npz"]
    assert (tmp_path / "a.png").stat().st_mtime_ns == stamps["a.png"]
    assert (tmp_path / "b.npz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temps
    # Other settings: a is computed again, not silently reused.
    assert main([*args, "--alpha", "0.1"]) == 0
    assert (tmp_path / "a.npz").stat().st_mtime_ns != stamps["a.npz"]
    with np.load(tmp_path / "a.npz") as stored:
        assert json.loads(str(stored["settings"]))["alpha"] == "0.1"


def test_unreadable_image_is_reported_and_others_done(
    image_folder, random_weights, tmp_path, capsys
):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    args = [
        "regularize",
        str(bad),
        str(image_folder / "b.png"),
        "--weights",
        str(random_weights),
        "--output",
        str(tmp_path / "out"),
        *SMALL,
    ]
    assert main(args) == 1
    assert "skipping" in capsys.readouterr().err
    assert (tmp_path / "out" / "b.npz").is_file()


def _demo_in_subprocess(output, timeout, **env) -> subprocess.CompletedProcess:
    """``python -m sklearn_arb demo`` in a fresh process with ``env`` added (the
    hub client reads its settings at import), killed after ``timeout`` s."""
    return subprocess.run(
        [sys.executable, "-m", "sklearn_arb", "demo", "--output", str(output)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    "offline",
    # declared offline; or a hub endpoint that refuses connections (no network)
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
)
def test_offline_demo_says_how_to_fix_it(tmp_path, offline):
    result = _demo_in_subprocess(
        tmp_path, timeout=120, **offline, HF_HOME=str(tmp_path / "hf")
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--weights PATH" in lines[0] and "go online" in lines[0]
    assert not list(tmp_path.glob("*.npz"))


def test_offline_demo_uses_hub_weights_already_in_the_cache(deit_hub_cache, tmp_path):
    result = _demo_in_subprocess(
        tmp_path, timeout=300, HF_HUB_OFFLINE="1", HF_HOME=str(deit_hub_cache)
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["china.npz", "flower.npz"]


def test_demo_on_sample_images_with_real_weights(deit_weights, tmp_path):
    assert (
        main(
            [
                "demo",
                "--weights",
                str(deit_weights),
                "--output",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["china.png", "flower.png"]
    with np.load(tmp_path / "china.npz") as stored:
        # Real weights: regularization removes most tokens but not all attention.
        assert 0 < np.count_nonzero(stored["regularized_p"]) < stored["attention"].size


def test_simulate_writes_the_study(random_weights, tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (data / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                data / cls / f"{cls}{i}.png"
            )
    output = tmp_path / "study"
    args = [
        "simulate",
        str(data),
        "--weights",
        str(random_weights),
        "--output",
        str(output),
        *SMALL,
    ]
    assert main(args) == 0
    with open(output / "per_image.csv") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["class"] for row in rows) == ["cats", "cats", "dogs", "dogs"]
    assert (output / "fig4_suppression_all.png").is_file()
    assert (output / "summary.txt").read_text().startswith(f"data: {data}")

"""Tests of the sklearn-arb command line."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_arb.cli import main

SMALL = ["--image-size", "64", "--quiet"]


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


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, as sorted relative paths (hidden ones too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _summary(output: Path) -> list[dict]:
    with open(output / "summary.csv") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory, random_weights) -> Path:
    """The random DeiT-Tiny state_dict with one NaN weight."""
    state = torch.load(random_weights, weights_only=True)
    state["blocks.0.attn.qkv.weight"][0, 0] = float("nan")
    path = tmp_path_factory.mktemp("weights") / "deit_tiny_nan.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image-size", "8"], "multiple of the model's patch size"),
        (["--image-size", "100"], "use a multiple of 16"),
        (["--model", "resnet18"], "is not a Vision Transformer"),
        (["--pretrained"], "--pretrained and --weights"),
        (["--output", "__file__"], "is a file; pass a folder"),
    ],
)
def test_model_and_output_errors_are_one_line(
    extra, message, image_folder, random_weights, tmp_path, capsys
):
    extra = [str(tmp_path / "taken") if e == "__file__" else e for e in extra]
    (tmp_path / "taken").write_text("a file")
    args = ["regularize", str(image_folder / "a.png"), "--weights", str(random_weights)]
    if "--output" not in extra:
        extra += ["--output", str(tmp_path / "out")]
    assert main([*args, *extra, "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("sklearn-arb regularize: error:") and message in line


def test_nan_weights_are_one_line_naming_the_weights(
    image_folder, nan_weights, tmp_path, capsys
):
    args = ["regularize", str(image_folder / "a.png"), "--weights", str(nan_weights)]
    assert main([*args, "--output", str(tmp_path), *SMALL]) == 2
    line = _one_error_line(capsys)
    assert "NaN" in line and str(nan_weights) in line
    assert not list(tmp_path.iterdir())


def test_version(capsys):
    import sklearn_arb

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sklearn-arb {sklearn_arb.__version__}"


def test_choices_are_the_estimators_constraints():
    from sklearn_arb import AttentionExtractor, BootstrapAttentionRegularizer
    from sklearn_arb.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    options = {a.dest: a for a in commands.choices["regularize"]._actions}
    for dest, estimator, parameter in [
        ("bootstrap", AttentionExtractor, "bootstrap"),
        ("methods", BootstrapAttentionRegularizer, "method"),
        ("pvalue", BootstrapAttentionRegularizer, "pvalue"),
    ]:
        (constraint,) = [
            c
            for c in estimator._parameter_constraints[parameter]
            if hasattr(c, "options")
        ]
        assert set(options[dest].choices) == set(constraint.options)


def test_regularize_writes_panel_npz_and_summary(
    image_folder, random_weights, tmp_path, monkeypatch
):
    monkeypatch.chdir(image_folder.parent)
    output = tmp_path / "out"
    args = [
        "regularize",
        image_folder.name,
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
    names = [f"{image_folder.name}/{n}.png" for n in ["a", "b", "grey"]]
    expected = [f"{n}.{kind}" for n in names for kind in ("npz", "png")]
    assert _files(output) == sorted([*expected, "summary.csv"])
    rows = _summary(output)
    assert [row["image"] for row in rows] == names
    with np.load(output / f"{names[0]}.npz") as stored:
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
    with Image.open(output / f"{names[0]}.png") as panel:
        assert panel.width > 3 * panel.height  # image | attention | p | lfdr


def test_maps_are_the_extractors_on_the_same_files(
    image_folder, random_weights, tmp_path, monkeypatch
):
    """The command's maps are the API's, whatever the batch size."""
    from sklearn_arb import AttentionExtractor

    monkeypatch.chdir(image_folder.parent)
    files = [image_folder / f"{n}.png" for n in ["a", "b", "grey"]]
    extractor = AttentionExtractor(
        checkpoint_path=random_weights, image_size=64, n_bootstrap=1, random_state=0
    ).fit()
    expected = extractor.transform(files)
    for batch_size in ("1", "2"):
        output = tmp_path / batch_size
        args = [
            "regularize",
            image_folder.name,
            "--weights",
            str(random_weights),
            "--output",
            str(output),
            "--batch-size",
            batch_size,
            "--no-plots",
            *SMALL,
        ]
        assert main(args) == 0
        for path, maps in zip(files, expected, strict=True):
            with np.load(output / image_folder.name / f"{path.name}.npz") as stored:
                np.testing.assert_allclose(stored["attention"], maps[:16], rtol=1e-5)
                np.testing.assert_allclose(
                    stored["null_attention"], maps[16:], rtol=1e-5
                )


@pytest.mark.parametrize("in_range", ["dtype", "image"])
def test_16_bit_files_are_read_with_their_range(
    in_range, random_weights, tmp_path, monkeypatch
):
    """A 12-bit scan in a 16-bit PNG: the maps are the API's for the same
    ``in_range`` (and the two readings differ, so the option reaches the model)."""
    from sklearn_arb import AttentionExtractor, load_images

    monkeypatch.chdir(tmp_path)
    ramp = (np.arange(64 * 64, dtype=np.uint16) % 4096).reshape(64, 64)
    Image.fromarray(ramp).save("scan.png")
    args = ["regularize", "scan.png", "--weights", str(random_weights), "--no-plots"]
    assert main([*args, "--output", "out", "--in-range", in_range, *SMALL]) == 0
    extractor = AttentionExtractor(
        checkpoint_path=random_weights, image_size=64, random_state=0
    ).fit()
    images = {r: load_images("scan.png", in_range=r) for r in ("dtype", "image")}
    maps = {r: extractor.transform(images[r])[0, :16] for r in images}
    assert not np.allclose(maps["dtype"], maps["image"])
    with np.load("out/scan.png.npz") as stored:
        np.testing.assert_allclose(stored["attention"], maps[in_range], rtol=1e-5)


def test_images_run_through_the_model_in_batches(
    image_folder, random_weights, tmp_path, monkeypatch
):
    from sklearn_arb import AttentionExtractor

    batches = []
    transform = AttentionExtractor.transform

    def recording_transform(self, X):
        batches.append(len(X))
        return transform(self, X)

    monkeypatch.setattr(AttentionExtractor, "transform", recording_transform)
    args = ["regularize", str(image_folder), "--weights", str(random_weights)]
    assert main([*args, "--output", str(tmp_path / "a"), *SMALL]) == 0
    assert batches == [3]
    batches.clear()
    output = tmp_path / "b"
    assert main([*args, "--output", str(output), "--batch-size", "2", *SMALL]) == 0
    assert batches == [2, 1]


def test_no_plots_and_dpi(image_folder, random_weights, tmp_path):
    args = [
        "regularize",
        str(image_folder / "a.png"),
        "--weights",
        str(random_weights),
        *SMALL,
    ]
    output = tmp_path / "none"
    assert main([*args, "--output", str(output), "--no-plots"]) == 0
    assert not list(output.rglob("*.png")) and list(output.rglob("*.npz"))
    widths = {}
    for dpi in (50, 100):
        output = tmp_path / str(dpi)
        assert main([*args, "--output", str(output), "--dpi", str(dpi)]) == 0
        (panel,) = output.rglob("*.png")
        with Image.open(panel) as image:
            widths[dpi] = image.width
            assert image.info["dpi"] == pytest.approx((dpi, dpi), abs=0.05)
    assert widths[100] == pytest.approx(2 * widths[50], rel=0.1)


def test_panel_of_a_large_image_is_drawn_from_a_small_copy(random_weights, tmp_path):
    """A panel's size does not follow the file's: 3000 x 2000 px drawn at 300 px
    a tile, so a huge photograph costs no more memory to draw than a small one."""
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)).save(big)
    output = tmp_path / "out"
    args = ["regularize", str(big), "--weights", str(random_weights), *SMALL]
    assert main([*args, "--output", str(output), "--methods", "p"]) == 0
    (panel,) = output.rglob("*.png")
    with Image.open(panel) as image:
        # image, attention, p: 3 tiles of 3 in at 100 dpi, and a colour bar.
        assert 900 < image.width < 1300 and image.height < 400


def test_rerun_decides_by_content_not_by_name(random_weights, tmp_path, monkeypatch):
    """Two folders with a photo1.png each, and an image edited in place: every
    distinct image gets its own result, and the summary lists them all."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    for folder in ("A", "B"):
        Path(folder).mkdir()
        for name in ("photo1", "photo2"):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(f"{folder}/{name}.png")
    base = ["--weights", str(random_weights), "--output", "out", *SMALL]
    assert main(["regularize", "A", *base]) == 0
    assert main(["regularize", "B", *base]) == 0

    def attention(path: str) -> np.ndarray:
        with np.load(Path("out", f"{path}.npz")) as stored:
            return stored["attention"]

    assert not np.array_equal(attention("A/photo1.png"), attention("B/photo1.png"))
    rows = _summary(Path("out"))
    assert [row["image"] for row in rows] == [
        "A/photo1.png",
        "A/photo2.png",
        "B/photo1.png",
        "B/photo2.png",
    ]
    # Edited in place: recomputed; its neighbour untouched.
    stamp = Path("out/A/photo2.png.npz").stat().st_mtime_ns
    before = attention("A/photo1.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        "A/photo1.png"
    )
    assert main(["regularize", "A", *base]) == 0
    assert not np.array_equal(attention("A/photo1.png"), before)
    assert Path("out/A/photo2.png.npz").stat().st_mtime_ns == stamp
    assert len(_summary(Path("out"))) == 4


def test_subfolders_are_walked_and_mirrored(random_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    for path in ("scans/p1/x.png", "scans/p2/x.png", "scans/top.jpg"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    Path("scans/.hidden").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save("scans/.hidden/h.png")
    args = ["regularize", "scans", "--weights", str(random_weights), "--no-plots"]
    assert main([*args, "--output", "scans/out", *SMALL]) == 0
    # The output folder inside the input folder is not read as input on a rerun.
    assert main([*args, "--output", "scans/out", *SMALL]) == 0
    assert _files(Path("scans/out")) == [
        "scans/p1/x.png.npz",
        "scans/p2/x.png.npz",
        "scans/top.jpg.npz",
        "summary.csv",
    ]


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
    results = {p.name: p for p in tmp_path.rglob("*.png.*")}
    stamps = {name: p.stat().st_mtime_ns for name, p in results.items()}
    results["b.png.npz"].unlink()  # as if interrupted before b was done
    capsys.readouterr()
    assert main(args) == 0
    assert "1 image(s) already done" in capsys.readouterr().err
    assert results["a.png.npz"].stat().st_mtime_ns == stamps["a.png.npz"]
    assert results["a.png.png"].stat().st_mtime_ns == stamps["a.png.png"]
    assert results["b.png.npz"].is_file()
    # A panel missing (an earlier --no-plots run): drawn from the stored maps.
    results["a.png.png"].unlink()
    assert main(args) == 0
    assert results["a.png.npz"].stat().st_mtime_ns == stamps["a.png.npz"]
    assert results["a.png.png"].is_file()
    assert not [p for p in tmp_path.rglob(".*")]  # no temporaries, no claims
    # Other settings: a is computed again, not silently reused.
    assert main([*args, "--alpha", "0.1"]) == 0
    assert results["a.png.npz"].stat().st_mtime_ns != stamps["a.png.npz"]
    with np.load(results["a.png.npz"]) as stored:
        assert json.loads(str(stored["settings"]))["alpha"] == "0.1"


def test_a_recomputed_result_never_keeps_the_old_panel(
    image_folder, random_weights, tmp_path
):
    args = ["regularize", str(image_folder / "a.png"), "--output", str(tmp_path)]
    args += ["--weights", str(random_weights), *SMALL]
    assert main(args) == 0
    (panel,) = tmp_path.rglob("*.png.png")
    # New settings without panels: the old settings' panel must not stay, or a
    # later run with panels would take it for this result's.
    assert main([*args, "--alpha", "0.1", "--no-plots"]) == 0
    assert not panel.exists()
    assert main([*args, "--alpha", "0.1"]) == 0
    assert panel.is_file()


def test_summary_describes_every_result_in_the_folder(
    image_folder, random_weights, tmp_path
):
    base = ["--weights", str(random_weights), "--output", str(tmp_path), *SMALL]
    assert main(["regularize", str(image_folder / "a.png"), *base]) == 0
    assert main(["regularize", str(image_folder / "b.png"), *base]) == 0
    images = [row["image"] for row in _summary(tmp_path)]
    assert images == [str(image_folder / "a.png"), str(image_folder / "b.png")]


def test_output_files_get_ordinary_permissions(image_folder, random_weights, tmp_path):
    old = os.umask(0o022)
    try:
        args = ["regularize", str(image_folder / "a.png"), "--output", str(tmp_path)]
        assert main([*args, "--weights", str(random_weights), *SMALL]) == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3
    assert {p.stat().st_mode & 0o777 for p in files} == {0o644}


def test_an_image_claimed_by_another_process_is_left_to_it(
    image_folder, random_weights, tmp_path, capsys
):
    from sklearn_arb._runs import Claim, output_key

    key = output_key(image_folder / "a.png")
    folder = tmp_path / key.parent
    folder.mkdir(parents=True)
    claim = Claim(folder, key.name)
    assert claim.acquire()  # held as a live process holds it: a flock
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
    try:
        assert main(args) == 0
        assert "1 image(s) being computed by another process" in capsys.readouterr().err
        assert not (folder / "a.png.npz").exists()
        assert (folder / "b.png.npz").is_file()
    finally:
        claim.release()
    assert main(args) == 0
    assert (folder / "a.png.npz").is_file()


def test_a_claim_dies_with_its_process(image_folder, random_weights, tmp_path):
    """Another process claims an image (an flock on its claim file, as a run
    holds it): it is left alone while that process lives, and computed once
    the process is killed (SIGKILL: no cleanup)."""
    import signal

    from sklearn_arb._runs import output_key

    key = output_key(image_folder / "a.png")
    folder = tmp_path / key.parent
    folder.mkdir(parents=True)
    holder = subprocess.Popen(  # plain Python: it starts in a blink
        [
            sys.executable,
            "-c",
            "import fcntl, os, time; "
            f"fd = os.open({str(folder / '.a.png.lock')!r}, os.O_CREAT | os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["regularize", str(image_folder / "a.png"), "--output", str(tmp_path)]
        args += ["--weights", str(random_weights), *SMALL]
        assert main(args) == 0
        assert not (folder / "a.png.npz").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / ".a.png.lock").exists()  # left behind by the killed process
    assert main(args) == 0
    assert (folder / "a.png.npz").is_file()
    assert not (folder / ".a.png.lock").exists()


def test_a_killed_runs_claims_and_partial_files_are_taken_over(
    image_folder, random_weights, tmp_path
):
    """What a SIGKILL leaves: a claim file nobody locks, a half-written result."""
    from sklearn_arb._runs import output_key

    key = output_key(image_folder / "a.png")
    folder = tmp_path / key.parent
    folder.mkdir(parents=True)
    (folder / ".a.png.lock").write_text("")
    (folder / ".a.png.npz~dead0001.partial").write_bytes(b"half")
    (tmp_path / ".summary.csv~dead0002.partial").write_bytes(b"half")
    args = ["regularize", str(image_folder / "a.png"), "--output", str(tmp_path)]
    assert main([*args, "--weights", str(random_weights), *SMALL]) == 0
    assert _files(tmp_path) == sorted([f"{key}.npz", f"{key}.png", "summary.csv"])


def _interrupt_second_batch(monkeypatch) -> None:
    """Make the model's second batch raise KeyboardInterrupt (Ctrl-C)."""
    from sklearn_arb import AttentionExtractor

    calls = []
    transform = AttentionExtractor.transform

    def interrupted(self, X):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return transform(self, X)

    monkeypatch.setattr(AttentionExtractor, "transform", interrupted)


def test_interrupted_run_keeps_finished_batches(
    image_folder, random_weights, tmp_path, monkeypatch
):
    _interrupt_second_batch(monkeypatch)
    args = ["regularize", str(image_folder), "--output", str(tmp_path)]
    args += ["--weights", str(random_weights), "--batch-size", "2", *SMALL]
    assert main(args) == 130
    done = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    # The first batch is complete, panels included; nothing half-written.
    assert sorted(done) == [
        "a.png.npz",
        "a.png.png",
        "b.png.npz",
        "b.png.png",
        "summary.csv",
    ]
    assert len(_summary(tmp_path)) == 2
    monkeypatch.undo()  # the rerun is not interrupted
    assert main(args) == 0
    assert len(_summary(tmp_path)) == 3


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
    assert list((tmp_path / "out").rglob("b.png.npz"))


def test_over_large_image_is_one_error_and_the_run_goes_on(
    image_folder, random_weights, tmp_path, monkeypatch, capsys
):
    """PIL refuses files over MAX_IMAGE_PIXELS as decompression bombs (a 14000 px
    square PNG by default): here the limit is lowered to make one of 64 x 64."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bomb)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((20, 20, 3), 9, np.uint8)).save(small)
    args = ["regularize", str(bomb), str(small), "--output", str(tmp_path / "out")]
    args += ["--weights", str(random_weights), "--no-plots", *SMALL]
    for _ in range(2):  # the rerun too
        capsys.readouterr()
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"skipping {bomb}:" in err and "Traceback" not in err
        assert list((tmp_path / "out").rglob("small.png.npz"))


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


def test_offline_demo_says_how_to_fix_it(tmp_path, monkeypatch, capsys):
    """Declared offline (read by the hub client at import: a fresh process),
    or a hub endpoint that refuses connections (the probe, in this process):
    one line naming the fix, exit status 2, nothing written."""
    result = _demo_in_subprocess(
        tmp_path, timeout=120, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf")
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["demo", "--output", str(tmp_path), "--quiet"]) == 2
    for status, err in (
        (result.returncode, result.stderr),
        (2, _one_error_line(capsys)),
    ):
        assert status == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        assert "--weights PATH" in lines[0] and "go online" in lines[0]
    assert not list(tmp_path.glob("*.npz"))


def test_offline_demo_uses_hub_weights_already_in_the_cache(deit_hub_cache, tmp_path):
    """``python -m sklearn_arb demo`` offline, on the real DeiT-Tiny weights
    already in the hub's cache: both sample images' maps and panels."""
    result = _demo_in_subprocess(
        tmp_path, timeout=300, HF_HUB_OFFLINE="1", HF_HOME=str(deit_hub_cache)
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        "china.jpg.npz",
        "flower.jpg.npz",
    ]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "china.jpg.png",
        "flower.jpg.png",
    ]
    with np.load(tmp_path / "china.jpg.npz") as stored:
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


def _arrays(output: Path) -> dict[str, dict]:
    """Every result's arrays; the summary row without its timing."""
    results = {}
    for npz in sorted(output.rglob("*.npz")):
        with np.load(npz) as stored:
            arrays = dict(stored)
        summary = json.loads(str(arrays.pop("summary")))
        summary.pop("seconds")
        results[str(npz.relative_to(output))] = {**arrays, "summary": summary}
    return results


def test_reading_ahead_gives_the_results_of_reading_in_turn(
    image_folder, random_weights, tmp_path, capsys
):
    """Images read by 3 threads a batch ahead, or each batch read before it is
    computed (--loader-threads 0): the same files, arrays and panels; a
    broken file among them named alike, the others done."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    outputs = {}
    for threads in ("0", "3"):
        outputs[threads] = output = tmp_path / threads
        args = ["regularize", str(image_folder), str(bad), "--output", str(output)]
        args += ["--weights", str(random_weights), "--batch-size", "2"]
        assert main([*args, "--loader-threads", threads, *SMALL]) == 1
        assert f"skipping {bad}:" in capsys.readouterr().err
    assert _files(outputs["0"]) == _files(outputs["3"])
    assert len(_arrays(outputs["0"])) == 3
    serial, ahead = _arrays(outputs["0"]), _arrays(outputs["3"])
    for key, arrays in serial.items():
        assert arrays.keys() == ahead[key].keys()
        for name, values in arrays.items():
            np.testing.assert_array_equal(ahead[key][name], values, err_msg=name)
    for panel in outputs["0"].rglob("*.png"):
        twin = outputs["3"] / panel.relative_to(outputs["0"])
        assert panel.read_bytes() == twin.read_bytes()


def test_the_next_batch_is_read_while_the_model_computes(
    image_folder, random_weights, tmp_path, monkeypatch
):
    """With loader threads, the second batch's image is read (in a loader
    thread) before the first batch's computation ends."""
    import threading

    from sklearn_arb import AttentionExtractor

    read_threads, second_read = [], threading.Event()
    open_image, transform = Image.open, AttentionExtractor.transform

    def recorded_open(path, *args, **kwargs):
        if str(path).endswith(".png"):
            read_threads.append((threading.current_thread().name, Path(path).name))
            if str(path).endswith("b.png"):
                second_read.set()
        return open_image(path, *args, **kwargs)

    def computing(self, X):
        if not second_read.is_set():  # the first batch
            assert second_read.wait(timeout=30), "the next batch was not read ahead"
        return transform(self, X)

    monkeypatch.setattr(Image, "open", recorded_open)
    monkeypatch.setattr(AttentionExtractor, "transform", computing)
    args = ["regularize", str(image_folder / "a.png"), str(image_folder / "b.png")]
    args += ["--weights", str(random_weights), "--output", str(tmp_path)]
    assert main([*args, "--batch-size", "1", "--loader-threads", "1", *SMALL]) == 0
    assert {name for _, name in read_threads} == {"a.png", "b.png"}
    assert all(thread.startswith("sklearn-arb-loader") for thread, _ in read_threads)


def test_an_interrupt_releases_the_batch_read_ahead(
    image_folder, random_weights, tmp_path, monkeypatch
):
    """Interrupted while computing the second of three batches (the third
    claimed and read ahead): nothing of theirs is left, no claim is kept,
    and a rerun computes them."""
    from sklearn_arb._runs import Claim

    _interrupt_second_batch(monkeypatch)
    args = ["regularize", str(image_folder), "--output", str(tmp_path), "--no-plots"]
    args += ["--weights", str(random_weights), "--batch-size", "1", *SMALL]
    assert main([*args, "--loader-threads", "2"]) == 130
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "a.png.npz",
        "summary.csv",
    ]
    (folder,) = {npz.parent for npz in tmp_path.rglob("a.png.npz")}
    for name in ("b.png", "grey.png"):  # free for any process to take
        claim = Claim(folder, name)
        assert claim.acquire()
        claim.release()
    monkeypatch.undo()  # the rerun is not interrupted
    assert main(args) == 0
    assert len(_summary(tmp_path)) == 3


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_an_image_that_became_unreadable_loses_its_old_results(
    damage, image_folder, random_weights, tmp_path, capsys
):
    """Done once, then replaced by junk or truncated: the rerun names it, exits
    1, and no result of its old bytes is left (files or summary row)."""
    image = tmp_path / "photo.png"
    image.write_bytes((image_folder / "a.png").read_bytes())
    args = ["regularize", str(image), str(image_folder / "b.png")]
    args += ["--weights", str(random_weights), "--output", str(tmp_path / "out")]
    assert main([*args, *SMALL]) == 0
    assert len(list((tmp_path / "out").rglob("photo.png.*"))) == 2
    data = image.read_bytes()
    image.write_bytes(b"junk" * 50 if damage == "junk" else data[: len(data) // 3])
    capsys.readouterr()
    assert main([*args, *SMALL]) == 1
    assert f"skipping {image}:" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("photo.png.*"))
    assert [Path(row["image"]).name for row in _summary(tmp_path / "out")] == ["b.png"]


def test_the_last_line_names_only_the_files_written(
    image_folder, random_weights, tmp_path, capsys
):
    args = ["regularize", str(image_folder / "a.png"), "--weights", str(random_weights)]
    assert main([*args, "--output", str(tmp_path), "--no-plots", *SMALL]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"results in {tmp_path} (summary.csv, one .npz per image)"

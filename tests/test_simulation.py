"""Tests for sklearn_arb.datasets: the noise simulation and token ROI masks."""

import numpy as np
import pytest
from scipy import ndimage

from sklearn_arb.datasets import make_noise_simulation, pixel_to_token_masks


@pytest.fixture
def float_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Channels with clearly different means and spreads.
    return rng.normal([0.2, 0.5, 0.8], [0.05, 0.1, 0.2], size=(3, 64, 64, 3))


def test_square_roi_is_a_square_inside_and_only_roi_changes(float_images):
    original = float_images.copy()
    noisy, pixel_masks = make_noise_simulation(float_images, size=20, random_state=0)
    np.testing.assert_array_equal(float_images, original)  # input untouched
    assert noisy.dtype == float_images.dtype and noisy.shape == float_images.shape
    for image, mask, clean in zip(noisy, pixel_masks, float_images, strict=True):
        rows, cols = np.nonzero(mask)
        assert mask.sum() == 400
        assert rows.max() - rows.min() == 19 and cols.max() - cols.min() == 19
        np.testing.assert_array_equal(image[~mask], clean[~mask])
        assert not np.any(image[mask] == clean[mask])


def test_roi_noise_follows_each_channels_mean_and_std(float_images):
    noisy, pixel_masks = make_noise_simulation(
        float_images, size=60, clip=False, random_state=1
    )
    roi_pixels = noisy[0][pixel_masks[0]]  # 3600 x 3
    np.testing.assert_allclose(
        roi_pixels.mean(axis=0), float_images[0].mean(axis=(0, 1)), atol=0.01
    )
    np.testing.assert_allclose(
        roi_pixels.std(axis=0), float_images[0].std(axis=(0, 1)), rtol=0.05
    )
    # i.i.d. pixels: neighbouring noise pixels are uncorrelated.
    red = noisy[0][..., 0][pixel_masks[0]].reshape(60, 60)
    assert abs(np.corrcoef(red[:, :-1].ravel(), red[:, 1:].ravel())[0, 1]) < 0.06


def test_square_position_is_uniform_over_all_valid_corners():
    images = np.zeros((400, 10, 10))
    _, pixel_masks = make_noise_simulation(images, size=8, random_state=0)
    corners = {tuple(np.argwhere(mask)[0]) for mask in pixel_masks}
    assert corners == {(r, c) for r in range(3) for c in range(3)}


def test_noise_is_clipped_to_the_unit_range_unless_asked_not_to(float_images):
    wide = float_images * 4 - 1.5  # channel spreads reach far outside [0, 1]
    clipped, masks = make_noise_simulation(np.clip(wide, 0, 1), size=40, random_state=0)
    assert clipped.min() >= 0 and clipped.max() <= 1
    raw, masks = make_noise_simulation(wide, size=40, clip=False, random_state=0)
    assert raw[masks].min() < 0 and raw[masks].max() > 1


def test_uint8_and_grey_input():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 32, 32), dtype=np.uint8)
    noisy, pixel_masks = make_noise_simulation(images, size=10, random_state=0)
    assert noisy.shape == (2, 32, 32) and noisy.dtype == np.float32
    np.testing.assert_allclose(noisy[~pixel_masks], images[~pixel_masks] / 255.0)


def test_default_size_scales_the_papers_100px_at_488px():
    images = np.zeros((1, 224, 224, 3))
    _, pixel_masks = make_noise_simulation(images, random_state=0)
    assert pixel_masks.sum() == 46**2


def test_diffuse_roi_has_size_squared_pixels_in_smooth_clusters():
    images = np.random.default_rng(3).random((2, 224, 224, 3))
    _, pixel_masks = make_noise_simulation(
        images, noise="diffuse", size=46, random_state=0
    )
    assert np.all(pixel_masks.sum(axis=(1, 2)) == 46**2)
    for mask in pixel_masks:
        _, n_clusters = ndimage.label(mask)
        # Far fewer clusters than a random set of pixels would make (~2000).
        assert 1 <= n_clusters < 30
    # Larger cluster_scale smooths more: fewer, larger clusters.
    _, coarse = make_noise_simulation(
        images, noise="diffuse", size=46, cluster_scale=60.0, random_state=0
    )
    assert ndimage.label(coarse[0])[1] <= ndimage.label(pixel_masks[0])[1]


def test_random_state_reproduces_and_varies(float_images):
    first = make_noise_simulation(float_images, noise="diffuse", random_state=5)
    second = make_noise_simulation(float_images, noise="diffuse", random_state=5)
    third = make_noise_simulation(float_images, noise="diffuse", random_state=6)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[1], third[1])


@pytest.mark.parametrize("noise", ["square", "diffuse"])
def test_noise_of_a_set_equals_noise_image_by_image_from_one_stream(noise):
    # The study streams images in chunks through one random stream: each image's
    # noise (its own channel means and spreads) must not depend on the batch.
    images = np.random.default_rng(4).random((5, 48, 40, 3), dtype=np.float32)
    whole = make_noise_simulation(images, noise=noise, random_state=0)
    rng = np.random.RandomState(0)
    one_by_one = [
        make_noise_simulation(image[np.newaxis], noise=noise, random_state=rng)
        for image in images
    ]
    for k in (0, 1):
        np.testing.assert_array_equal(
            whole[k], np.concatenate([part[k] for part in one_by_one])
        )


def test_token_masks_follow_the_half_rule():
    pixel_masks = np.zeros((1, 8, 8), dtype=bool)
    pixel_masks[0, 0:4, 0:4] = True  # token 0: full
    pixel_masks[0, 0:2, 4:8] = True  # token 1: exactly half
    pixel_masks[0, 4:5, 0:4] = True  # token 2: a quarter
    expected = np.array([[True, True, False, False]])
    np.testing.assert_array_equal(pixel_to_token_masks(pixel_masks, 4), expected)
    np.testing.assert_array_equal(
        pixel_to_token_masks(pixel_masks, 4, min_fraction=0.25),
        [[True, True, True, False]],
    )
    np.testing.assert_array_equal(
        pixel_to_token_masks(pixel_masks, 4, min_fraction=1.0),
        [[True, False, False, False]],
    )


def test_token_masks_returned_with_patch_size_match_pixel_masks(float_images):
    _, pixel_masks, token_masks = make_noise_simulation(
        float_images, size=16, patch_size=16, random_state=0
    )
    assert token_masks.shape == (3, 16) and token_masks.dtype == bool
    np.testing.assert_array_equal(token_masks, pixel_to_token_masks(pixel_masks, 16))
    # A 16 px square on a 16 px grid covers 1, 2 or 4 patches; with the half rule
    # at most 2 are in the ROI, and none when it straddles 4 patches unevenly.
    assert np.all(token_masks.sum(axis=1) <= 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 65}, "larger than the images"),
        ({"noise": "diffuse", "size": 65}, "more than the images have"),
        ({"patch_size": 10}, "not a multiple of patch_size"),
        ({"noise": "circle"}, "noise"),
        ({"size": 0}, "size"),
    ],
)
def test_bad_parameters_raise_clear_errors(float_images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_noise_simulation(float_images, **kwargs)


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match=r"X\[None\]"):
        make_noise_simulation(np.zeros((8, 8)))
    # One (H, W, 3) image without its batch axis is not read as H grey images.
    with pytest.raises(ValueError, match=r"ambiguous.*X\[None\]"):
        make_noise_simulation(np.zeros((16, 16, 3)))
    with pytest.raises(TypeError, match="numbers"):
        make_noise_simulation(np.zeros((1, 8, 8), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        make_noise_simulation(np.full((1, 8, 8), np.nan))
    with pytest.raises(ValueError, match="boolean"):
        pixel_to_token_masks(np.zeros((1, 8, 8)), 4)


@pytest.mark.parametrize(
    ("factors", "method_names", "legend"),
    [
        ([0.4, 0.7], None, None),  # one unnamed method: nothing to tell apart
        ([0.4, 0.7], ["p"], ["p"]),
        ([[0.4, 0.1], [0.7, 0.2]], None, ["method 0", "method 1"]),
    ],
)
def test_suppression_bars_get_a_legend_only_to_name_or_tell_methods_apart(
    factors, method_names, legend
):
    import matplotlib.pyplot as plt

    from sklearn_arb.plotting import plot_suppression_factors

    ax = plot_suppression_factors(factors, method_names=method_names).ax
    shown = ax.get_legend()
    assert legend == (None if shown is None else [t.get_text() for t in shown.texts])
    plt.close(ax.figure)


# The simulation study (sklearn_arb._study): streamed in chunks.


def _make_class_folders(root, n_per_class):
    """Two class folders of ``n_per_class`` 40 x 36 RGB images each."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}{i}.png")
    return root


@pytest.fixture
def class_folders(tmp_path):
    return _make_class_folders(tmp_path, 3)


@pytest.fixture
def tiny_extractor(make_tiny_vit):
    from sklearn_arb import AttentionExtractor

    return AttentionExtractor(
        make_tiny_vit(), image_size=32, n_bootstrap=1, random_state=0
    ).fit()


def _all_in_memory(paths, extractor, settings):
    """The study's numbers computed on all images at once, from the public
    functions: the reference the streamed computation must reproduce."""
    from sklearn_arb import BootstrapAttentionRegularizer, MapLayout, load_images
    from sklearn_arb._study._compute import SWEEP
    from sklearn_arb.metrics import (
        mean_in_roi,
        mean_percentile_in_roi,
        sensitivity,
        specificity,
    )

    noisy, pixel_masks = make_noise_simulation(
        load_images(paths, image_size=32), random_state=settings.seed
    )
    X = extractor.transform(noisy)
    pixels = lambda maps: np.repeat(np.repeat(maps.reshape(-1, 4, 4), 8, 1), 8, 2)  # noqa: E731
    before = pixels(MapLayout(n_tokens=16, n_bootstrap=1).observed(X))
    reg = BootstrapAttentionRegularizer(null="per_image", alpha=0.3, gamma=0.3)
    reference = {
        "mean_z_roi": mean_in_roi(
            pixels(reg.fit(X).compute_statistics(X).z), pixel_masks
        ),
        "mp_before": mean_percentile_in_roi(before, pixel_masks),
    }
    for method in ("p", "lfdr", "pi0"):
        after = pixels(reg.set_params(method=method).transform(X))
        reference[f"sensitivity_{method}"] = sensitivity(before, after, pixel_masks)
    for method, name in (("p", "alpha"), ("lfdr", "gamma")):
        reg.set_params(method=method, alpha=0.3, gamma=0.3)
        sweep = [pixels(reg.set_params(**{name: v}).transform(X)) for v in SWEEP]
        for curve, metric in enumerate((sensitivity, specificity)):
            reference[f"curve_{method}_{curve}"] = np.stack(
                [metric(before, after, pixel_masks) for after in sweep], axis=1
            )
    return reference


def test_streamed_study_equals_the_all_in_memory_computation(
    class_folders, tiny_extractor
):
    from sklearn_arb._study import StudySettings, compute_study, list_images

    paths, _ = list_images(class_folders, None)
    settings = StudySettings(seed=3)
    whole = compute_study(paths, tiny_extractor, settings, chunk_size=len(paths))
    streamed = compute_study(paths, tiny_extractor, settings, chunk_size=4)
    reference = _all_in_memory(paths, tiny_extractor, settings)
    # The model's float32 rounding varies with the batch's composition (z moves
    # by ~1e-6): equal to that precision; a misaligned noise stream, image or
    # chunk boundary would be off by ~0.1.
    for result in (whole, streamed):
        for key in (
            "mean_z_roi",
            "mp_before",
            *(f"sensitivity_{m}" for m in "p lfdr pi0".split()),
        ):
            np.testing.assert_allclose(
                result.metrics[key], reference[key], rtol=1e-5, atol=1e-5
            )
        for method in ("p", "lfdr"):  # sensitivity and specificity curves
            for curve in (0, 1):
                np.testing.assert_allclose(
                    result.curves[method][curve],
                    reference[f"curve_{method}_{curve}"],
                    rtol=1e-5,
                    atol=1e-5,
                )
    for key, values in whole.metrics.items():
        np.testing.assert_allclose(streamed.metrics[key], values, rtol=1e-5, atol=1e-5)
        assert streamed.metrics[key].dtype == values.dtype


def test_study_memory_does_not_grow_with_the_number_of_images(tmp_path, tiny_extractor):
    import tracemalloc

    from sklearn_arb._study import StudySettings, compute_study, list_images

    folder = _make_class_folders(tmp_path, 8)
    paths, _ = list_images(folder, None)
    compute_study(paths[:2], tiny_extractor, StudySettings(), chunk_size=2)  # warm
    peaks = {}
    for n_images in (4, 16):
        tracemalloc.start()
        compute_study(paths[:n_images], tiny_extractor, StudySettings(), chunk_size=2)
        peaks[n_images] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Kept per image: ~25 numbers and 2 x 2 curves of 50 (measured: ~6 KB with the
    # chunks' copies). In one chunk, as before streaming, it grows ~150 KB per
    # image: images and a dozen pixel maps (32 x 32 float64, 8 KB each).
    growth_per_image = (peaks[16] - peaks[4]) / 12
    assert growth_per_image < 2 * 32 * 32 * 8, peaks


def test_interrupted_study_continues_where_it_stopped(
    class_folders, tiny_extractor, tmp_path, monkeypatch
):
    from sklearn_arb._study import _compute as _study
    from sklearn_arb._study._checkpoint import CHECKPOINT

    paths, _ = _study.list_images(class_folders, None)
    settings = _study.StudySettings(noise="diffuse", seed=2)
    uninterrupted = _study.compute_study(paths, tiny_extractor, settings, chunk_size=2)
    checkpoint = tmp_path / CHECKPOINT
    chunk_results = _study._chunk_results
    calls, interrupt = [], [True]

    def interrupted_after_two_chunks(*args):
        calls.append(len(args[0]))
        if len(calls) == 3 and interrupt.pop():
            raise KeyboardInterrupt
        return chunk_results(*args)

    monkeypatch.setattr(_study, "_chunk_results", interrupted_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        _study.compute_study(
            paths, tiny_extractor, settings, chunk_size=2, checkpoint=checkpoint
        )
    calls.clear()
    resumed = _study.compute_study(
        paths, tiny_extractor, settings, chunk_size=2, checkpoint=checkpoint
    )
    assert calls == [2]  # only the last two of six images computed again
    for key, values in uninterrupted.metrics.items():
        np.testing.assert_allclose(resumed.metrics[key], values, rtol=1e-5, atol=1e-5)
    for method, curves in uninterrupted.curves.items():
        np.testing.assert_allclose(resumed.curves[method], curves, atol=1e-5)
    # Other settings do not take the saved results.
    calls.clear()
    interrupt.append(False)
    other = _study.StudySettings(noise="diffuse", seed=3)
    _study.compute_study(
        paths, tiny_extractor, other, chunk_size=2, checkpoint=checkpoint
    )
    assert calls == [2, 2, 2]


def test_unreadable_file_is_skipped_and_draws_no_noise(
    class_folders, tiny_extractor, capsys
):
    from sklearn_arb._study import StudySettings, compute_study, list_images

    paths, _ = list_images(class_folders, None)
    clean = compute_study(paths, tiny_extractor, StudySettings(), chunk_size=4)
    broken = class_folders / "cats" / "cats1b.png"  # sorts third: mid-chunk
    broken.write_text("not an image")
    with_broken, _ = list_images(class_folders, None)
    assert with_broken[2] == broken
    result = compute_study(with_broken, tiny_extractor, StudySettings(), chunk_size=4)
    assert "skipping" in capsys.readouterr().err
    np.testing.assert_array_equal(result.index, [0, 1, 3, 4, 5, 6])
    for key, values in clean.metrics.items():
        np.testing.assert_allclose(result.metrics[key], values, rtol=1e-5, atol=1e-5)


# sklearn-arb simulate, and the benchmark script that runs it.


@pytest.fixture(scope="module")
def small_model_args(tmp_path_factory):
    """``--model`` and ``--weights`` of timm's 0.4 M-parameter ``test_vit`` with
    random weights: no download, and a model that loads in a moment."""
    import timm
    import torch

    path = tmp_path_factory.mktemp("weights") / "test_vit_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit").state_dict(), path)
    return ["--model", "test_vit", "--weights", str(path)]


def test_simulate_options_reach_the_study(
    class_folders, small_model_args, tmp_path, capsys, monkeypatch
):
    from sklearn_arb._study import _run
    from sklearn_arb.cli import main

    output = tmp_path / "study"
    args = ["simulate", str(class_folders), *small_model_args]
    args += ["--image-size", "32", "--roi-size", "12", "--pvalue", "reference"]
    args += ["--pi0-pvalues", "thresholded", "--in-range", "image"]
    args += ["--batch-size", "4", "--n-images", "4", "--output", str(output)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4/4" in err  # the progress bar, on stderr
    header = (output / "summary.txt").read_text().splitlines()[0]
    assert (
        "(4 images, 0 grey, 0 unreadable skipped)" in header
        and "ROI 12x12 px at 32 px" in header
    )
    assert "p-values reference (pi0 from thresholded), in_range=image" in header
    with open(output / "per_image.csv") as file:
        assert sum(1 for _ in file) == 1 + 4
    assert not list(output.glob(".*"))  # the checkpoint is gone once done
    assert (output / "fig5_sensitivity_specificity.png").is_file()
    # Drawing the figures (most of a run's time) again would tell nothing more.
    monkeypatch.setattr(_run, "draw_figures", lambda *args: None)
    assert main([*args, "--quiet"]) == 0
    assert "4/4" not in capsys.readouterr().err


def test_simulate_output_naming_a_file_is_one_line(class_folders, tmp_path, capsys):
    from sklearn_arb.cli import main

    (tmp_path / "taken").write_text("")
    args = ["simulate", str(class_folders), "--output", str(tmp_path / "taken")]
    assert main([*args, "--pretrained"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file; pass a folder" in err[0]


def test_benchmark_script_runs_the_simulate_command(monkeypatch):
    # The script is the command with the shared weights by default: what it
    # passes on is checked here; the command itself is run above.
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "simulation_study.py"
    spec = importlib.util.spec_from_file_location("simulation_study", script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    calls = []
    monkeypatch.setattr(benchmark, "main", lambda argv: calls.append(argv) or 0)
    given = ["folder", "--image-size", "32"]
    for weights in (["--weights", "w.pth"], ["--weights=w.pth"], ["--pretrained"]):
        assert benchmark.run([*given, *weights]) == 0
        assert calls.pop() == ["simulate", *given, *weights]
    monkeypatch.setattr(benchmark, "WEIGHTS", script)  # an existing file
    assert benchmark.run(given) == 0
    assert calls.pop() == ["simulate", "--weights", str(script), *given]
    monkeypatch.setattr(benchmark, "WEIGHTS", script.with_name("absent.pth"))
    assert benchmark.run(given) == 0
    assert calls.pop() == ["simulate", *given]


# Signed maps (CDAM): the metrics read their positive part, the evidence for the
# target; D is undefined (NaN, its bars not drawn) where no image supports it.


def test_metrics_read_the_positive_part_of_a_signed_map():
    from sklearn_arb.metrics import (
        mean_percentile_in_roi,
        nonzero_percentage_in_roi,
        sensitivity,
        specificity,
    )

    before = np.array([[-2.0, 1.0, 3.0, -3.0, 2.0]])
    after = np.array([[0.0, 0.0, 3.0, 0.0, 2.0]])  # ARB kept 3 and 2
    roi = np.array([[False, False, False, True, True]])
    original = before.copy()
    # Positive parts: rest (0, 1, 3), ROI (0, 2). Read as signed sums, the ROI's
    # evidence would be -1 (sensitivity 3) and the rest's 2 (specificity 1.5).
    assert sensitivity(before, after, roi)[0] == 0.0  # the ROI's 2 kept
    assert specificity(before, after, roi)[0] == 0.75  # 3 of 1 + 3 kept
    # 0 beats none of (0, 1, 3), 2 beats two: (0 + 66.7) / 2. A zeroed score has
    # percentile 0 (signed, it would beat the rest's -2).
    np.testing.assert_allclose(mean_percentile_in_roi(before, roi), [100 / 3])
    np.testing.assert_allclose(
        mean_percentile_in_roi(after, roi, reference=before), [100 / 3]
    )
    zeroed = np.zeros_like(after)
    assert mean_percentile_in_roi(zeroed, roi, reference=before)[0] == 0.0
    assert nonzero_percentage_in_roi(before, roi)[0] == 50.0  # -3 is no evidence
    np.testing.assert_array_equal(before, original)


@pytest.fixture
def tiny_cdam_extractor(make_tiny_vit):
    from sklearn_arb import AttentionExtractor

    vit = make_tiny_vit(num_classes=5)
    return AttentionExtractor(
        vit, image_size=32, n_bootstrap=1, source="cdam", random_state=0
    ).fit()


def test_study_of_a_signed_source_reads_its_positive_part(
    class_folders, tiny_cdam_extractor
):
    from sklearn_arb._study import StudySettings, compute_study, list_images

    paths, _ = list_images(class_folders, None)
    assert (tiny_cdam_extractor.transform(paths) < 0).any()  # signed maps
    metrics = compute_study(
        paths, tiny_cdam_extractor, StudySettings(scale="linear")
    ).metrics
    for method in ("p", "lfdr", "pi0"):
        for name in ("sensitivity", "specificity"):
            values = metrics[f"{name}_{method}"]
            assert np.all((values >= 0) & (values <= 1)), (name, method, values)
        # A ROI emptied by ARB ranks below everything, as for a positive map.
        emptied = metrics[f"nz_after_{method}"] == 0
        np.testing.assert_array_equal(metrics[f"mp_after_{method}"][emptied], 0.0)
        assert np.all(
            metrics[f"mp_after_{method}"] <= metrics["mp_before"] + 1e-9
        )  # ARB only removes evidence


def test_suppression_factor_is_undefined_without_evidence_in_the_roi():
    from sklearn_arb._study._tables import suppression_table

    metrics = {"mp_before": np.array([0.0, 0.0, 40.0, 60.0])}
    for method in ("p", "lfdr", "pi0"):
        metrics[f"mp_after_{method}"] = np.array([0.0, 0.0, 4.0, 16.0])
    classes = np.array(["a", "a", "b", "b"])
    table = suppression_table(metrics, classes, np.ones(4, dtype=bool))
    assert table.names == ["a", "b", "all classes"]
    assert np.all(np.isnan(table.factors[0]))  # class a: ROI never above 0
    np.testing.assert_allclose(table.factors[1:], 0.2)


def test_simulate_without_a_defined_suppression_factor_skips_its_figure(
    class_folders, tiny_cdam_extractor, tmp_path, monkeypatch
):
    from sklearn_arb._study import _compute, run_simulation_study

    # No image selected: the selected images' D is undefined for every class.
    monkeypatch.setattr(
        _compute, "select_by_roi_z", lambda z, masks: np.zeros(len(z), dtype=bool)
    )
    summary = run_simulation_study(
        class_folders, tmp_path, extractor=tiny_cdam_extractor
    )
    assert not (tmp_path / "fig4_suppression_selected.png").exists()
    assert (tmp_path / "fig4_suppression_all.png").exists()
    assert "fig4_suppression_selected.png not drawn" in summary
    assert "fig4_suppression_all.png not drawn" not in summary

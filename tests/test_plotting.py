"""Tests of sklearn_arb.plotting: the artists carry the data they were given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sklearn_arb import plotting, upsample_map
from sklearn_arb.plotting import (
    overlay_map,
    plot_attention_overlay,
    plot_attention_panel,
    plot_lfdr_histogram,
    plot_pvalue_histogram,
    plot_sensitivity_specificity,
    plot_statistics,
    plot_suppression_factors,
    plot_z_histogram,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _heights(bars) -> np.ndarray:
    return np.array([bar.get_height() for bar in bars])


def test_overlay_map_known_values():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    scores = np.array([0.0, 0.5, 1.0, 2.0, 0.25, 0.75])  # 2 x 3 patches of 3 x 3
    # alpha 0 gives the image, whatever the map
    plain = overlay_map(image, scores, grid_shape=(2, 3), alpha=0.0, hide_zeros=False)
    assert plain.dtype == np.uint8 and plain.shape == (6, 9, 3)
    np.testing.assert_array_equal(plain, image)
    # alpha 1 gives the colormap of score / vmax, each patch over its 3 x 3 pixels
    inferno = matplotlib.colormaps["inferno"]
    full = overlay_map(image, scores, grid_shape=(2, 3), alpha=1.0, vmax=1.0)
    expected = np.round(255 * inferno(np.clip(scores, 0, 1))[:, :3])
    expected = upsample_map(expected.reshape(2, 3, 3).transpose(2, 0, 1), 3)
    expected = expected.transpose(1, 2, 0)
    expected[:3, :3] = image[:3, :3]  # the zero score is hidden: the image shows
    np.testing.assert_allclose(full, expected, atol=1)  # float32 rounding only
    grey = overlay_map(image, scores, grid_shape=(2, 3), alpha=1.0, cmap="gray")
    assert grey[0, 8].tolist() == [128, 128, 128] and grey[3, 0].tolist() == [255] * 3
    # alpha 0.5 of a white image and a black colour: half the image
    white = np.ones((2, 2))
    half = overlay_map(white, np.full((2, 2), 0.1), alpha=0.5, vmax=1e6, cmap="gray")
    np.testing.assert_array_equal(half, 128)  # rint(127.5)


def test_overlay_map_lines_up_with_an_image_of_another_size():
    # The 2 x 2 map of the model's resized input over a 5 x 7 original image.
    grid = np.array([[1.0, 0.0], [0.0, 0.0]])
    overlay = overlay_map(np.zeros((5, 7), np.uint8), grid, alpha=1.0, cmap="gray")
    coloured = overlay[..., 0] > 0
    np.testing.assert_array_equal(np.flatnonzero(coloured.any(axis=1)), [0, 1, 2])
    np.testing.assert_array_equal(np.flatnonzero(coloured.any(axis=0)), [0, 1, 2, 3])


def test_overlay_map_inputs_and_errors():
    image = np.random.default_rng(1).random((8, 8, 4))  # alpha channel dropped
    scores = np.arange(4.0)
    image_copy, scores_copy = image.copy(), scores.copy()
    overlay_map(image, scores, patch_size=4)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(scores, scores_copy)
    sixteen = (image[..., :3] * 65535).astype(np.uint16)  # 16-bit like an 8-bit
    np.testing.assert_allclose(
        overlay_map(sixteen, scores, patch_size=4),
        overlay_map((image[..., :3] * 255).astype(np.uint8), scores, patch_size=4),
        atol=1,
    )
    with pytest.raises(ValueError, match="alpha"):
        overlay_map(image, scores, patch_size=4, alpha=1.5)
    with pytest.raises(ValueError, match="divide 0-255"):
        overlay_map(image * 255, scores, patch_size=4)
    with pytest.raises(ValueError, match="one image"):
        overlay_map(np.zeros((2, 8, 8, 3)), scores, patch_size=4)


def test_overlay_draws_the_overlay_array_and_keeps_the_grid():
    image = np.random.default_rng(0).random((32, 48, 3))
    scores = np.arange(1.0, 7.0)
    result = plot_attention_overlay(image, scores, patch_size=16)
    assert result.image.get_extent() == [-0.5, 47.5, 31.5, -0.5]
    np.testing.assert_array_equal(
        result.image.get_array(), overlay_map(image, scores, patch_size=16)
    )
    np.testing.assert_array_equal(result.attention.get_array(), [[1, 2, 3], [4, 5, 6]])
    # Same picture from the grid itself, or from an explicit grid_shape.
    grid = plot_attention_overlay(image, scores.reshape(2, 3))
    np.testing.assert_array_equal(grid.attention.get_array(), [[1, 2, 3], [4, 5, 6]])
    shaped = plot_attention_overlay(image, scores, grid_shape=(2, 3))
    np.testing.assert_array_equal(shaped.image.get_array(), result.image.get_array())


def test_panel_draws_16bit_and_grey_images_as_load_images_scales_them():
    ramp = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    result = plot_attention_panel(ramp, {"attention": np.ones(4)}, grid_shape=(2, 2))
    shown = result.image.get_array()
    assert shown.shape == (8, 8, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[..., 1], np.rint(ramp / 65535 * 255))
    np.testing.assert_array_equal(
        shown, overlay_map(ramp, np.ones(4), grid_shape=(2, 2), alpha=0.0)
    )


def test_overlay_of_a_grey_image_of_another_size():
    # The map of a 224 px model input drawn over the original 427 x 640 image.
    image = np.zeros((427, 640), dtype=np.uint8)
    result = plot_attention_overlay(image, np.ones(196), grid_shape=(14, 14))
    assert result.image.get_extent() == [-0.5, 639.5, 426.5, -0.5]
    assert result.image.get_array().shape == (427, 640, 3)
    untouched = plot_attention_overlay(image, np.zeros(196), grid_shape=(14, 14))
    assert not untouched.image.get_array().any()  # grey, zeros hidden: the image


def test_overlay_hides_zeros_and_keeps_the_colour_scale():
    image = np.ones((2, 2, 3))
    result = plot_attention_overlay(
        image, [0.0, 0.2, 0.0, 0.4], grid_shape=(2, 2), vmax=0.8
    )
    shown = result.attention.get_array()
    np.testing.assert_array_equal(shown.mask, [[True, False], [True, False]])
    assert result.attention.get_clim() == (0.0, 0.8)
    visible = plot_attention_overlay(
        image, [0.0, 0.2, 0.0, 0.4], grid_shape=(2, 2), hide_zeros=False
    )
    assert not np.ma.is_masked(visible.attention.get_array())
    assert visible.attention.get_clim() == (0.0, 0.4)


def test_overlay_does_not_modify_inputs():
    image = np.random.default_rng(1).random((16, 16))
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    image_copy, scores_copy = image.copy(), scores.copy()
    plot_attention_overlay(image, scores, patch_size=8)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(scores, scores_copy)


def test_overlay_draws_on_the_given_axes():
    _, ax = plt.subplots()
    result = plot_attention_overlay(np.zeros((4, 4)), np.ones(4), patch_size=2, ax=ax)
    assert result.ax is ax
    assert ax.get_images() == [result.image]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attention": np.ones(4)}, "grid_shape"),
        ({"attention": np.ones(4), "patch_size": 3}, "does not divide"),
        ({"attention": np.ones(5), "grid_shape": (2, 2)}, "do not fit"),
        ({"attention": np.ones((1, 2, 2))}, "token vector"),
        ({"attention": [np.nan, 1, 1, 1], "grid_shape": (2, 2)}, "NaN"),
        ({"attention": np.ones(4), "grid_shape": (2, 2), "ax": "axes"}, "Axes"),
    ],
)
def test_overlay_bad_input_names_the_problem(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        plot_attention_overlay(np.zeros((8, 8, 3)), **kwargs)


def test_overlay_rejects_a_batch_of_images():
    with pytest.raises(ValueError, match="one image"):
        plot_attention_overlay(np.zeros((2, 8, 8, 3)), np.ones(4), grid_shape=(2, 2))


def test_panel_shares_one_colour_scale_and_reports_non_zero_share():
    scores = np.array([0.1, 0.4, 0.2, 0.3])
    kept = np.where(scores > 0.25, scores, 0.0)
    result = plot_attention_panel(
        np.zeros((8, 8, 3)), {"attention": scores, "p": kept}, patch_size=4
    )
    assert len(result.axes) == 3
    assert result.axes[0].get_images() == [result.image]
    for overlay in result.overlays.values():
        assert overlay.attention.get_clim() == (0.0, 0.4)
    assert result.overlays["attention"].ax.get_title() == "attention\n100% non-zero"
    assert result.overlays["p"].ax.get_title() == "p\n50% non-zero"
    np.testing.assert_array_equal(
        result.overlays["p"].attention.get_array().filled(0), kept.reshape(2, 2)
    )


def test_panel_needs_one_axes_per_map_plus_the_image():
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="3 are needed"):
        plot_attention_panel(
            np.zeros((4, 4)),
            {"a": np.ones(4), "b": np.ones(4)},
            patch_size=2,
            axes=axes,
        )


def test_z_histogram_bars_are_densities_on_shared_edges():
    rng = np.random.default_rng(0)
    z, null_z = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 600)
    result = plot_z_histogram(z, null_z, bins=25, z_threshold=0.5)
    edges = np.histogram_bin_edges(np.concatenate([z, null_z]), bins=25)
    np.testing.assert_allclose(result.bin_edges, edges)
    np.testing.assert_allclose(
        _heights(result.observed), np.histogram(z, edges, density=True)[0]
    )
    np.testing.assert_allclose(
        _heights(result.null), np.histogram(null_z, edges, density=True)[0]
    )
    assert result.threshold.get_xdata()[0] == 0.5


def test_pvalue_and_lfdr_histograms_count_tokens_on_unit_bins():
    values = np.array([0.01, 0.02, 0.5, 0.51, 0.99, 1.0])
    p_result = plot_pvalue_histogram(values, alpha=0.05, bins=4)
    np.testing.assert_array_equal(_heights(p_result.bars), [2, 0, 2, 2])
    assert p_result.threshold.get_label() == "\N{GREEK SMALL LETTER ALPHA} = 0.05"
    lfdr_result = plot_lfdr_histogram(values.reshape(2, 3), bins=2)
    np.testing.assert_array_equal(_heights(lfdr_result.bars), [2, 4])
    assert lfdr_result.threshold is None


def test_unit_histograms_reject_values_outside_zero_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_pvalue_histogram([0.5, 1.5])
    with pytest.raises(ValueError, match="empty"):
        plot_lfdr_histogram([])


def test_plot_statistics_draws_all_three_from_a_bunch():
    rng = np.random.default_rng(0)
    stats = {
        "z": rng.normal(size=49),
        "null_z": rng.normal(size=98),
        "pvalues": rng.random(49),
        "lfdr": rng.random(49),
    }
    result = plot_statistics(stats, alpha=0.1, gamma=0.3)
    assert sum(_heights(result.pvalues.bars)) == 49
    assert result.lfdr.threshold.get_xdata()[0] == 0.3
    assert len({result.z.ax, result.pvalues.ax, result.lfdr.ax}) == 3
    with pytest.raises(KeyError, match="lfdr"):
        plot_statistics({k: v for k, v in stats.items() if k != "lfdr"})


def test_suppression_bars_heights_and_error_bars_equal_inputs():
    factors = np.array([[0.1, 0.2, 0.3], [0.4, 0.05, 0.15]])
    errors = factors / 10
    result = plot_suppression_factors(
        factors,
        errors,
        class_names=["tench", "church"],
        method_names=["p", "lfdr", "pi0"],
    )
    assert len(result.bars) == 3
    for j, bars in enumerate(result.bars):
        np.testing.assert_allclose(_heights(bars), factors[:, j])
        assert bars.get_label() == ["p", "lfdr", "pi0"][j]
        segments = bars.errorbar.lines[2][0].get_segments()
        lengths = [segment[1, 1] - segment[0, 1] for segment in segments]
        np.testing.assert_allclose(lengths, 2 * errors[:, j])
    labels = [tick.get_text() for tick in result.ax.get_xticklabels()]
    assert labels == ["tench", "church"]
    # Bars of one class sit side by side around the class tick, never overlapping.
    centres = np.array(
        [[bar.get_x() + bar.get_width() / 2 for bar in bars] for bars in result.bars]
    )
    np.testing.assert_allclose(centres.mean(axis=0), [0, 1], atol=1e-12)
    assert np.all(np.diff(centres, axis=0) >= result.bars[0][0].get_width() - 1e-12)


def test_suppression_bars_single_method_and_shape_errors():
    result = plot_suppression_factors([0.2, 0.3])
    np.testing.assert_allclose(_heights(result.bars[0]), [0.2, 0.3])
    with pytest.raises(ValueError, match="one error per factor"):
        plot_suppression_factors([[0.1, 0.2]], [0.1])
    with pytest.raises(ValueError, match="class_names"):
        plot_suppression_factors([0.1, 0.2], class_names=["only one"])


def test_sensitivity_specificity_curves_median_and_chance_line():
    sens = np.array([[0.2, 0.6, 0.9], [0.1, 0.5, 0.8], [0.3, 0.4, 1.0]])
    spec = np.array([[0.99, 0.9, 0.6], [0.98, 0.85, 0.5], [0.9, 0.8, 0.7]])
    result = plot_sensitivity_specificity(
        sens, spec, labels=["a", "b", "a"], points=(sens[:, 1], spec[:, 1])
    )
    for i, line in enumerate(result.curves):
        np.testing.assert_array_equal(line.get_xdata(), sens[i])
        np.testing.assert_array_equal(line.get_ydata(), spec[i])
    assert result.curves[0].get_color() == result.curves[2].get_color()
    assert result.curves[0].get_color() != result.curves[1].get_color()
    legend = [text.get_text() for text in result.ax.get_legend().get_texts()]
    assert legend[:2] == ["a", "b"]
    np.testing.assert_allclose(result.median.get_xdata(), np.median(sens, axis=0))
    np.testing.assert_allclose(result.median.get_ydata(), np.median(spec, axis=0))
    chance_x, chance_y = result.chance.get_data()
    np.testing.assert_allclose(np.asarray(chance_x) + np.asarray(chance_y), 1.0)
    np.testing.assert_allclose(
        result.points.get_offsets(), np.column_stack([sens[:, 1], spec[:, 1]])
    )


def test_sensitivity_specificity_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        plot_sensitivity_specificity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="labels"):
        plot_sensitivity_specificity(np.ones((2, 3)), np.ones((2, 3)), labels=["a"])


def test_public_names_are_exported():
    assert sorted(plotting.__all__) == sorted(
        name
        for name in dir(plotting)
        if name.startswith("plot_") or name == "overlay_map"
    )


# Signed maps (CDAM): one diverging scale centred at 0, negative blue, positive red.


def test_overlay_draws_a_signed_map_on_a_scale_centred_at_zero():
    image = np.full((4, 6, 3), 255, dtype=np.uint8)
    scores = np.array([-2.0, -1.0, 0.5, 1.0, 2.0, 0.25])  # 2 x 3 patches of 2 x 2
    drawn = overlay_map(image, scores, grid_shape=(2, 3), alpha=1.0)
    diverging = matplotlib.colormaps["RdBu_r"]
    levels = (scores / 2.0 + 1.0) / 2.0  # -vmax .. vmax on 0 .. 1, 0 at the middle
    expected = np.round(255 * diverging(levels)[:, :3]).reshape(2, 3, 3)
    np.testing.assert_allclose(drawn[::2, ::2], expected, atol=1)
    negative, positive = drawn[0, 0].astype(int), drawn[2, 2].astype(int)
    assert negative[2] > negative[0] + 50 and positive[0] > positive[2] + 50
    # Read from 0 up (the old drawing, signed=False), both negative scores would
    # take the colour of 0; signed, they differ from it and from each other.
    clipped = overlay_map(image, scores, grid_shape=(2, 3), alpha=1.0, signed=False)
    np.testing.assert_array_equal(clipped[0, 0], clipped[0, 2])
    zero_colour = overlay_map(image, [[1e-9]], alpha=1.0, vmax=2.0)[0, 0]
    assert not np.array_equal(drawn[0, 0], zero_colour)
    assert not np.array_equal(drawn[0, 0], drawn[0, 2])
    result = plot_attention_overlay(image, scores, grid_shape=(2, 3))
    assert result.attention.get_clim() == (-2.0, 2.0)
    assert result.attention.get_cmap().name == "RdBu_r"


def test_overlay_of_a_positive_map_is_drawn_from_zero_up_as_before():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    scores = rng.random(16)
    drawn = overlay_map(image, scores, grid_shape=(4, 4))
    old = overlay_map(image, scores, grid_shape=(4, 4), cmap="inferno", signed=False)
    np.testing.assert_array_equal(drawn, old)
    clim = plot_attention_overlay(image, scores, grid_shape=(4, 4)).attention
    assert clim.get_clim() == (0.0, scores.max())


def test_panel_of_a_signed_map_draws_every_map_on_one_signed_scale():
    scores = np.array([-0.4, 0.1, 0.2, 0.3])
    kept = np.where(scores > 0.15, scores, 0.0)  # no negative score left
    result = plot_attention_panel(
        np.zeros((8, 8, 3)), {"cdam": scores, "p": kept}, patch_size=4
    )
    for overlay in result.overlays.values():
        assert overlay.attention.get_clim() == (-0.4, 0.4)
        assert overlay.attention.get_cmap().name == "RdBu_r"


def _panel_tiles(panel, n_tiles, tile_width):
    """The tiles of a ``render_panel`` panel, by its layout (font size from the
    tile width, a gap of half of it, a head of 3.5 font sizes)."""
    font_size = max(10, tile_width // 18)
    gap, head = font_size // 2, 3 * font_size + font_size // 2
    pixels = np.asarray(panel)
    return [
        pixels[head : head + tile_width, left : left + tile_width]
        for left in (gap + i * (tile_width + gap) for i in range(n_tiles))
    ]


def test_cli_panel_shows_negative_scores_and_keeps_positive_maps():
    from sklearn_arb._runs import render_panel

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    positive = rng.random(16)
    kept = np.where(positive > 0.5, positive, 0.0)
    panel = render_panel(image, {"attention": positive, "p": kept}, (4, 4), "t")
    _, before, after = _panel_tiles(panel, 3, 64)
    # A positive map: the tiles of the drawing from 0 up, inferno, as before.
    for tile, grid in ((before, positive), (after, kept)):
        old = overlay_map(
            image, grid.reshape(4, 4), cmap="inferno", alpha=0.6,
            vmax=positive.max(), signed=False,
        )  # fmt: skip
        np.testing.assert_array_equal(tile, old)

    signed = positive - 0.5
    panel = render_panel(image, {"cdam": signed}, (4, 4), "t")
    _, tile = _panel_tiles(panel, 2, 64)
    # Each token over its 16 x 16 pixels: the diverging scale's colour, blended.
    diverging = matplotlib.colormaps["RdBu_r"]
    levels = (signed / np.abs(signed).max() + 1.0) / 2.0
    colours = 255 * diverging(levels)[:, :3]
    expected = 0.4 * image[::16, ::16].reshape(16, 3) + 0.6 * colours
    np.testing.assert_allclose(tile[::16, ::16].reshape(16, 3), expected, atol=2)
    zero_colour = 0.4 * image[::16, ::16].reshape(16, 3) + 0.6 * 255 * np.array(
        matplotlib.colormaps["inferno"](0.0)[:3]
    )
    negative = signed < -0.1
    assert negative.any()
    # Before, a negative score was clipped to the colour of 0.
    assert np.all(
        np.abs(tile[::16, ::16].reshape(16, 3)[negative] - zero_colour[negative]).max(
            axis=1
        )
        > 20
    )


def test_every_character_of_the_panels_text_has_a_glyph(
    random_weights, tmp_path, monkeypatch
):
    # Every string the regularize panels draw (titles, method labels for every
    # method, notes, colour bar numbers) is recorded with its font, and each of
    # its characters must be in that font's character map (no "p ▯ 0.05").
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw

    from sklearn_arb.cli import main

    drawn = []
    text = ImageDraw.ImageDraw.text

    def recorded(self, xy, string, *args, font=None, **kwargs):
        drawn.append((string, font.path))
        return text(self, xy, string, *args, font=font, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recorded)
    image = tmp_path / "ünïcode image.png"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    args = ["regularize", str(image), "--weights", str(random_weights)]
    args += ["--methods", "z", "p", "lfdr", "pi0", "--source", "rollout"]
    args += ["--output", str(tmp_path / "out"), "--image-size", "32", "--quiet"]
    assert main(args) == 0
    characters = {c for string, _ in drawn for c in string}
    assert {"≤", ">", "ü"} <= characters
    (font_file,) = {path for _, path in drawn}
    covered = TTFont(font_file).getBestCmap()
    assert not [c for c in characters if ord(c) not in covered]

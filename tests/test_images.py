"""load_images: scikit-learn's image convention, validation, no input mutation."""

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_arb import load_images


def test_uint8_scaled_and_grey_repeated():
    grey = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    images = load_images(grey)
    assert images.dtype == np.float32 and images.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(images[0, :, :, 0], grey[0] / 255, rtol=1e-6)
    assert np.array_equal(images[..., 0], images[..., 2])


def test_rgba_drops_alpha_and_float_kept():
    rgba = np.random.default_rng(0).random((2, 5, 6, 4))
    images = load_images(rgba)
    np.testing.assert_allclose(images, rgba[..., :3].astype(np.float32))


def test_list_of_sizes_and_resize():
    sources = [np.zeros((8, 8, 3)), np.ones((4, 6), dtype=np.uint8) * 255]
    listed = load_images(sources)
    assert isinstance(listed, list) and [i.shape for i in listed] == [
        (8, 8, 3),
        (4, 6, 3),
    ]
    resized = load_images(sources, image_size=(6, 10))
    assert resized.shape == (2, 6, 10, 3)
    # bilinear resize of a constant image stays constant and within [0, 1]
    np.testing.assert_allclose(resized[1], 1.0, atol=1e-6)
    assert resized.min() >= 0 and resized.max() <= 1


def test_paths_folder_and_pil_agree(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(2)]
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    from_folder = load_images(tmp_path)
    from_paths = load_images([str(tmp_path / "im0.png"), tmp_path / "im1.png"])
    from_pil = load_images([Image.fromarray(a) for a in arrays])
    expected = np.stack(arrays).astype(np.float32) / 255
    for loaded in (from_folder, from_paths, from_pil):
        np.testing.assert_allclose(loaded, expected)


def test_real_grey_ct_gets_three_channels(lung_ct_paths):
    images = load_images(lung_ct_paths[:2], image_size=64)
    assert images.shape == (2, 64, 64, 3)
    assert np.array_equal(images[..., 0], images[..., 1])


def test_inputs_not_modified():
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    before = images.copy()
    out = load_images(images, image_size=4)
    out[:] = 0
    assert np.array_equal(images, before)


@pytest.mark.parametrize(
    "sources, error, match",
    [
        (np.zeros((0, 8, 8, 3)), ValueError, "empty"),
        ([], ValueError, "empty"),
        (np.full((1, 4, 4, 3), np.nan), ValueError, "NaN"),
        (np.full((1, 4, 4, 3), 200.0), ValueError, "divide 0-255"),
        (np.zeros((1, 4, 4, 2)), ValueError, "expected"),
        (np.zeros((4, 4)), ValueError, "X\\[None\\]"),
        (np.zeros((1, 4, 4, 3), dtype=bool), TypeError, "dtype"),
        (np.zeros((1, 0, 4, 3)), ValueError, "empty"),
        (42, TypeError, "Cannot read"),
    ],
)
def test_bad_input_errors(sources, error, match):
    with pytest.raises(error, match=match):
        load_images(sources)


def test_bad_files(tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ValueError, match="Could not read"):
        load_images([corrupt])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images([tmp_path / "missing.png"])
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_images(empty_dir)
    with pytest.raises(ValueError, match="image_size"):
        load_images(np.zeros((1, 4, 4, 3)), image_size=(0, 4))


# A 12-bit ramp, as 16-bit CT files hold it: 0, 1, ..., 4095 on 64 x 64 pixels.
_RAMP = np.arange(4096, dtype=np.uint16).reshape(64, 64)


def _saved(tmp_path, array, mode, suffix):
    image = Image.fromarray(array)  # uint16: "I;16", int32: "I", float32: "F"
    assert image.mode == mode
    path = tmp_path / f"{mode.replace(';', '_')}{array.max():g}{suffix}"
    image.save(path)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_files_keep_their_range(tmp_path, suffix):
    path = _saved(tmp_path, _RAMP, "I;16", suffix)
    from_file = load_images(path)
    from_array = load_images(_RAMP[None])
    expected = _RAMP.astype(np.float32) / np.float32(65535)
    np.testing.assert_array_equal(from_file[0, :, :, 0], expected)
    np.testing.assert_array_equal(from_file, from_array)
    assert len(np.unique(from_file)) == 4096  # no 8-bit clip or quantisation
    stretched = load_images(path, in_range="image")
    np.testing.assert_allclose(stretched[0, :, :, 1], _RAMP / 4095, rtol=1e-6)
    np.testing.assert_array_equal(stretched, load_images(_RAMP[None], in_range="image"))


def test_big_endian_16bit_reads_as_native():
    big = Image.frombytes("I;16B", (64, 64), _RAMP.astype(">u2").tobytes())
    np.testing.assert_array_equal(load_images([big]), load_images(_RAMP[None]))


def test_float_tiff_equals_the_float_array(tmp_path):
    values = (_RAMP / 4095).astype(np.float32)
    from_file = load_images(_saved(tmp_path, values, "F", ".tif"))
    np.testing.assert_array_equal(from_file[0, :, :, 2], values)
    np.testing.assert_array_equal(from_file, load_images(values[None]))
    out_of_range = _saved(tmp_path, values * 4095, "F", ".tif")
    with pytest.raises(ValueError, match='in_range="image"'):
        load_images(out_of_range)
    np.testing.assert_allclose(
        load_images(out_of_range, in_range="image"), from_file, atol=1e-6
    )


def test_32bit_integer_tiff_equals_the_int32_array(tmp_path):
    ramp = _RAMP.astype(np.int32)
    path = _saved(tmp_path, ramp, "I", ".tif")
    for source in (path, ramp[None]):  # no image depth: never guessed
        with pytest.raises(
            ValueError, match="int32 image with values in \\[0, 4095\\]"
        ):
            load_images(source)
    for in_range in ("image", (0, 4095)):
        from_file = load_images(path, in_range=in_range)
        np.testing.assert_array_equal(
            from_file, load_images(ramp[None], in_range=in_range)
        )
        np.testing.assert_allclose(from_file[0, :, :, 0], ramp / 4095, rtol=1e-6)
    small = _saved(tmp_path, ramp % 256, "I", ".tiff")  # fits 8 bits: read as 8-bit
    np.testing.assert_array_equal(
        load_images(small), load_images((_RAMP % 256).astype(np.uint8)[None])
    )


def test_window_clips_and_image_range_per_image():
    ct = np.array([[[-1024, 0], [40, 3071]]], dtype=np.int16)
    window = load_images(ct, in_range=(-160, 240))[0, :, :, 0]
    np.testing.assert_allclose(window, [[0, 0.4], [0.5, 1]], rtol=1e-6)
    both = load_images([ct[0], 2 * ct[0]], in_range="image")
    np.testing.assert_allclose(both[0], both[1], rtol=1e-6)  # own min and max each
    assert not load_images(np.full((1, 3, 5), 7), in_range="image").any()
    rgba = np.zeros((1, 2, 2, 4), np.uint16)
    rgba[..., 3] = 65535  # the alpha channel takes no part in the range
    rgba[0, 0, 0, :3] = 100
    assert load_images(rgba, in_range="image").max() == 1.0


@pytest.mark.parametrize("in_range", ["dtypes", (1, 1), (0, np.nan), "0-1", None])
def test_bad_in_range(in_range):
    with pytest.raises(ValueError, match="in_range must be"):
        load_images(np.zeros((1, 4, 4)), in_range=in_range)


def test_one_image_without_batch_axis_is_refused():
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]  # (427, 640, 3)
    with pytest.raises(ValueError, match=r"ambiguous.*X\[None\]"):
        load_images(china)
    with pytest.raises(ValueError, match=r"ambiguous.*X\[None\]"):
        load_images(torch.tensor(china))  # a tensor iterates like an array
    assert load_images(china[None], image_size=8).shape == (1, 8, 8, 3)
    # grey images stay valid, and thin ones are asked for with a channel axis
    assert load_images(np.zeros((5, 6, 8))).shape == (5, 6, 8, 3)
    assert load_images(np.zeros((5, 6, 3))[..., None]).shape == (5, 6, 3, 3)


def test_channels_first_named_in_the_error():
    with pytest.raises(ValueError, match=r"transpose\(0, 2, 3, 1\)"):
        load_images(np.zeros((2, 3, 16, 16)))


def test_extractor_refuses_one_image_without_batch_axis(make_tiny_vit):
    from sklearn_arb import AttentionExtractor

    extractor = AttentionExtractor(make_tiny_vit(), image_size=32).fit()
    with pytest.raises(ValueError, match=r"X\[None\]"):
        extractor.transform(np.zeros((40, 50, 3), dtype=np.uint8))


def test_extractor_maps_of_a_16bit_file_equal_those_of_its_array(
    make_tiny_vit, tmp_path
):
    from sklearn_arb import AttentionExtractor

    ramp = (np.arange(32 * 32, dtype=np.uint16) * 4).reshape(32, 32)  # 12-bit
    path = _saved(tmp_path, ramp, "I;16", ".png")
    extractor = AttentionExtractor(make_tiny_vit(), image_size=32, random_state=0)
    from_file = extractor.fit().transform([path])
    from_array = extractor.transform(ramp[None])
    np.testing.assert_array_equal(from_file, from_array)
    clipped = extractor.transform(np.minimum(ramp, 255).astype(np.uint8)[None])
    assert not np.allclose(from_file, clipped)  # not the old 8-bit reading

"""load_images: scikit-learn's image convention, validation, no input mutation."""

import numpy as np
import pytest
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

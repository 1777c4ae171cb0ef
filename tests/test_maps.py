"""tokens_to_grid and upsample_map: row-major grid order, nearest upsampling."""

import numpy as np
import pytest

from sklearn_arb import tokens_to_grid, upsample_map


def test_grid_is_row_major_and_round_trips():
    maps = np.arange(2 * 6).reshape(2, 6)
    grid = tokens_to_grid(maps, (2, 3))
    assert grid.shape == (2, 2, 3) and grid[1, 1, 0] == maps[1, 3]
    np.testing.assert_array_equal(grid.reshape(2, -1), maps)


def test_upsample_repeats_each_token_over_its_patch():
    grid = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    pixels = upsample_map(grid, 3)
    assert pixels.shape == (1, 6, 6)
    # each 3x3 block is constant and equal to its token; totals scale by 9
    blocks = pixels.reshape(1, 2, 3, 2, 3)
    assert (blocks == grid[:, :, None, :, None]).all()
    assert pixels.sum() == 9 * grid.sum()
    expected = np.repeat(np.repeat(grid[0], 2, axis=0), 3, axis=1)
    np.testing.assert_array_equal(upsample_map(grid[0], (4, 6)), expected)


def test_extractor_grid_matches_patch_positions(make_tiny_vit):
    from sklearn_arb import AttentionExtractor

    extractor = AttentionExtractor(make_tiny_vit(), image_size=(32, 48), n_bootstrap=0)
    maps = extractor.fit().transform(np.random.default_rng(0).random((1, 32, 48, 3)))
    grid = tokens_to_grid(maps, extractor.grid_shape_)
    assert grid.shape == (1, 4, 6)
    assert upsample_map(grid, extractor.patch_size_).shape == (1, 32, 48)


def test_errors():
    with pytest.raises(ValueError, match="rows \\* cols = 6"):
        tokens_to_grid(np.zeros((2, 5)), (2, 3))
    with pytest.raises(ValueError, match=r"maps\.layout\.observed\(maps\)"):
        tokens_to_grid(np.zeros((2, 12)), (2, 3))  # observed and bootstrap maps
    with pytest.raises(ValueError, match="whole multiple"):
        upsample_map(np.zeros((2, 3)), (5, 6))
    with pytest.raises(ValueError, match="tokens_to_grid"):
        upsample_map(np.zeros(6), 2)

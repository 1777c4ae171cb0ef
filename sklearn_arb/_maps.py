"""Token maps as grids, and grids at pixel resolution (nearest neighbour)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["tokens_to_grid", "upsample_map"]


def tokens_to_grid(maps: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """Reshape token maps (row-major patch order) to their patch grid.

    Parameters
    ----------
    maps : array-like of shape (P,) or (n, P)
        One map per row, ``P = rows * cols`` tokens: the observed maps of an
        extractor output (``maps.layout.observed(maps)``, see
        :class:`~sklearn_arb.MapLayout`), or regularized maps.
    grid_shape : (int, int)
        (rows, cols) of the patch grid, e.g. ``AttentionExtractor.grid_shape_``.

    Returns
    -------
    grid : ndarray of shape (rows, cols) or (n, rows, cols)
        A view of ``maps`` where possible (never a modified input).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import tokens_to_grid
    >>> tokens_to_grid(np.arange(6), (2, 3))
    array([[0, 1, 2],
           [3, 4, 5]])
    """
    maps = np.asarray(maps)
    rows, cols = (int(s) for s in grid_shape)
    if maps.ndim not in (1, 2) or maps.shape[-1] != rows * cols:
        raise ValueError(
            f"maps of shape {maps.shape} do not fit a {rows}x{cols} grid: the last "
            f"axis must hold rows * cols = {rows * cols} tokens. Of an extractor's "
            f"output, pass its observed maps: maps.layout.observed(maps)."
        )
    return maps.reshape(*maps.shape[:-1], rows, cols)


def upsample_map(grid_map: np.ndarray, scale: int | Sequence[int]) -> np.ndarray:
    """Repeat each token of a grid map over its pixels (nearest neighbour).

    Parameters
    ----------
    grid_map : array-like of shape (rows, cols) or (n, rows, cols)
        Maps on the patch grid (see :func:`tokens_to_grid`).
    scale : int or (int, int)
        The patch size (each token becomes a ``scale x scale`` block), or the
        output (height, width), which must be a whole multiple of the grid.

    Returns
    -------
    pixel_map : ndarray of shape (H, W) or (n, H, W)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import upsample_map
    >>> upsample_map(np.array([[1, 2]]), 2)
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]])
    >>> upsample_map(np.array([[1, 2]]), (3, 4)).shape
    (3, 4)
    """
    grid_map = np.asarray(grid_map)
    if grid_map.ndim not in (2, 3):
        raise ValueError(
            f"grid_map must have shape (rows, cols) or (n, rows, cols); got "
            f"{grid_map.shape}. Reshape token maps with tokens_to_grid first."
        )
    rows, cols = grid_map.shape[-2:]
    if isinstance(scale, (int, np.integer)):
        factors = (int(scale), int(scale))
    else:
        height, width = (int(s) for s in scale)
        if height % rows or width % cols:
            raise ValueError(
                f"Output size {(height, width)} is not a whole multiple of the "
                f"{rows}x{cols} grid; pass the patch size or a multiple of the grid."
            )
        factors = (height // rows, width // cols)
    if min(factors) < 1:
        raise ValueError(f"scale must be positive; got {scale!r}.")
    return np.repeat(np.repeat(grid_map, factors[0], axis=-2), factors[1], axis=-1)

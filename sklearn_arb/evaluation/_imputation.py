"""Removing tokens from images: ROAD's noisy linear imputation, a constant, a blur.

A removed token removes the pixels of its patch. Removal works on pixel values
in [0, 1] before the model's normalisation.

``"road"`` is the noisy linear imputation of ROAD (Rong et al., 2022, "A
Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML):
every removed pixel equals the weighted mean of its 8 neighbours (1/6 for the 4
direct neighbours, 1/12 for the diagonals; at the image border the mean is over
the neighbours inside the image), which is one sparse linear system over all
the removed pixels of an image (the three channels share its matrix: a
Dirichlet graph Laplacian, factorised once), plus Gaussian noise. The kept
pixels are the boundary values, so a removed region is filled by the smooth
surface they span: a linear ramp is reproduced exactly, and the region's shape
leaks no information through its colour (what a constant fill does).

The system is solved exactly, but not over every removed pixel: the removed
tokens are covered by aligned squares of 4 x 4, 2 x 2 and single tokens, and a
removed square's interior pixels see only their own square, so they are a fixed
linear map of its one-pixel ring, the same for every square of that size;
eliminating them (a Schur complement computed once per size) leaves a system
over the rings alone (60 of the 256 pixels of a 16 px patch), which SuperLU
factorises.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import splu
from sklearn.utils import check_random_state

__all__ = ["REMOVALS", "remove_tokens", "token_pixel_mask"]

REMOVALS = ("road", "black", "blur")

# ROAD's neighbour weights: (row offset, column offset) -> weight; they sum to 1.
_NEIGHBOURS = (
    ((-1, 0), 1 / 6),
    ((1, 0), 1 / 6),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((1, 1), 1 / 12),
)
_WEIGHTS = np.array([w for _, w in _NEIGHBOURS])


@lru_cache(maxsize=8)
def _neighbour_table(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The flat index of each pixel's 8 neighbours ``(8, H * W)`` (-1 outside
    the image), and each pixel's total neighbour weight inside the image."""
    rows, cols = np.divmod(np.arange(height * width), width)
    neighbours = np.full((len(_NEIGHBOURS), height * width), -1, dtype=np.int64)
    for k, ((dr, dc), _) in enumerate(_NEIGHBOURS):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbours[k, inside] = r[inside] * width + c[inside]
    total = (_WEIGHTS[:, None] * (neighbours >= 0)).sum(axis=0)
    neighbours.setflags(write=False)
    total.setflags(write=False)
    return neighbours, total


# Removed regions are covered by aligned squares of 4 x 4, 2 x 2 and single
# tokens (largest first); each square's interior is eliminated exactly.
_SQUARE_LEVELS = (2, 1, 0)


@lru_cache(maxsize=16)
def _square_operators(side: int) -> tuple[np.ndarray, ...]:
    """What every removed ``side x side`` square of pixels shares: its ring and
    interior pixels, and the elimination of the interior.

    The interior pixels of a removed square (all but its one-pixel ring) see
    only pixels of the same square, so their values are a fixed linear map of
    the ring's: ``interior = E @ ring`` with ``E = A_ii^-1 W_ir`` (``A_ii``:
    the interior rows of the system, ``W_ir``: interior-to-ring weights).
    Eliminating them leaves the ring pixels alone (60 of 256 for a 16 px
    patch, 252 of 4096 for 4 x 4 such patches), each ring coupled within
    itself by ``-W_rr - W_ri E`` (its Schur complement, besides the diagonal).

    Returns ring (row, col) offsets, interior (row, col) offsets, ``E`` and the
    ring block ``-W_rr - W_ri E``.
    """
    rows, cols = np.divmod(np.arange(side**2), side)
    entries = []
    for (dr, dc), w in _NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < side) & (c >= 0) & (c < side)
        entries.append((np.flatnonzero(inside), (r * side + c)[inside], w))
    weights = sp.csr_matrix(
        (
            np.concatenate([np.full(len(i), w) for i, _, w in entries]),
            (
                np.concatenate([i for i, _, _ in entries]),
                np.concatenate([j for _, j, _ in entries]),
            ),
        ),
        shape=(side**2, side**2),
    )
    interior = (rows > 0) & (rows < side - 1) & (cols > 0) & (cols < side - 1)
    ring = ~interior
    w_ir = weights[interior][:, ring].toarray()
    if interior.any():
        # Interior pixels have all 8 neighbours: their diagonal is 1.
        w_ii = weights[interior][:, interior]
        system = (sp.identity(w_ii.shape[0]) - w_ii).tocsc()
        extension = splu(system).solve(w_ir)
    else:
        extension = w_ir
    ring_block = (
        -weights[ring][:, ring].toarray() - weights[ring][:, interior] @ extension
    )
    return (
        np.stack([rows[ring], cols[ring]], axis=1),
        np.stack([rows[interior], cols[interior]], axis=1),
        extension,
        ring_block,
    )


def _cover_with_squares(tokens: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Removed tokens ``(rows, cols)`` covered by aligned squares of ``2**level``
    tokens a side, largest first: ``[(level, (n, 2) token row/col of each
    square's corner)]``."""
    free = tokens.copy()
    squares = []
    for level in _SQUARE_LEVELS:
        k = 2**level
        rows, cols = free.shape[0] // k * k, free.shape[1] // k * k
        windows = free[:rows, :cols].reshape(rows // k, k, cols // k, k)
        full = windows.all(axis=(1, 3))
        corners = np.argwhere(full) * k
        for r, c in corners:
            free[r : r + k, c : c + k] = False
        squares.append((level, corners))
    return squares


def _road_fill(image: np.ndarray, removed: np.ndarray, patch_size: int) -> None:
    """Fill the removed tokens of one ``(H, W, C)`` image in place with their
    noise-free ROAD values. ``removed``: flat bool over the token grid, with
    some token kept (so every removed region touches a kept pixel and the
    system is non-singular)."""
    height, width, n_channels = image.shape
    grid = removed.reshape(height // patch_size, width // patch_size)
    neighbours, total = _neighbour_table(height, width)
    dtype = image.dtype
    flat = image.reshape(-1, n_channels)
    removed_pixels = token_pixel_mask(removed[None], grid.shape, patch_size)
    removed_pixels = removed_pixels.ravel()
    # Per size of square: its operators and the pixels of its rings and interiors.
    groups = []
    for level, corners in _cover_with_squares(grid):
        if not len(corners):
            continue
        side = patch_size * 2**level
        ring_offsets, interior_offsets, extension, ring_block = _square_operators(side)

        def pixels(offsets: np.ndarray, corners=corners) -> np.ndarray:
            r = corners[:, :1] * patch_size + offsets[None, :, 0]
            c = corners[:, 1:] * patch_size + offsets[None, :, 1]
            return r * width + c

        groups.append(
            (pixels(ring_offsets), pixels(interior_offsets), extension, ring_block)
        )
    ring = np.concatenate([g[0].ravel() for g in groups])
    n_unknowns = len(ring)
    square_of = np.concatenate(
        [np.repeat(np.arange(len(g[0])) + 1_000_000 * i, g[0].shape[1])
         for i, g in enumerate(groups)]
    )  # fmt: skip
    variable = np.full(height * width, -1, dtype=np.int64)
    variable[ring] = np.arange(n_unknowns)
    around = neighbours[:, ring]  # (8, n_unknowns)
    inside = around >= 0
    safe = np.where(inside, around, 0)
    around_variable = np.where(inside, variable[safe], -1)
    cross = (around_variable >= 0) & (
        square_of[np.maximum(around_variable, 0)] != square_of[None, :]
    )
    known = inside & ~removed_pixels[safe]
    weights = np.broadcast_to(_WEIGHTS[:, None], around.shape)
    # Each square's own block (dense, shared by its size), the diagonal (the
    # neighbour weight inside the image), and the couplings to the rings of
    # neighbouring removed squares.
    rows, cols, values = [], [], []
    first = 0
    for ring_pixels, _, _, ring_block in groups:
        n_squares, n_ring = ring_pixels.shape
        starts = first + np.arange(n_squares)[:, None, None] * n_ring
        shape = (n_squares, n_ring, n_ring)
        rows.append(np.broadcast_to(starts + np.arange(n_ring)[:, None], shape).ravel())
        cols.append(np.broadcast_to(starts + np.arange(n_ring)[None, :], shape).ravel())
        values.append(np.broadcast_to(ring_block, shape).ravel())
        first += n_squares * n_ring
    row_of = np.broadcast_to(np.arange(n_unknowns), around.shape)
    rows += [np.arange(n_unknowns), row_of[cross]]
    cols += [np.arange(n_unknowns), around_variable[cross]]
    values += [total[ring], -weights[cross]]
    matrix = sp.csc_matrix(
        (
            np.concatenate(values).astype(dtype),
            (np.concatenate(rows), np.concatenate(cols)),
        ),
        shape=(n_unknowns,) * 2,
    )
    rhs = np.einsum("kn,knc->nc", np.where(known, weights, 0.0), flat[safe])
    # Symmetric positive definite: a symmetric ordering and no pivoting.
    factor = splu(
        matrix,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    solution = factor.solve(rhs.astype(dtype))
    flat[ring] = solution
    first = 0
    for ring_pixels, interior_pixels, extension, _ in groups:
        n_squares, n_ring = ring_pixels.shape
        ring_values = solution[first : first + n_squares * n_ring]
        ring_values = ring_values.reshape(n_squares, n_ring, n_channels)
        interior = np.einsum("ir,src->sic", extension.astype(dtype), ring_values)
        flat[interior_pixels.ravel()] = interior.reshape(-1, n_channels)
        first += n_squares * n_ring


def token_pixel_mask(tokens: ArrayLike, grid_shape: tuple[int, int], patch_size: int):
    """Token masks ``(n, P)`` as pixel masks ``(n, H, W)``: a token covers its
    patch.

    Parameters
    ----------
    tokens : array-like of bool, shape (n_images, n_tokens)
        Tokens in row-major grid order.
    grid_shape : (int, int)
        (rows, cols) of the patch grid; rows * cols = n_tokens.
    patch_size : int
        Pixels per patch side.

    Returns
    -------
    pixels : ndarray of bool, shape (n_images, rows * patch_size, cols * patch_size)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.evaluation import token_pixel_mask
    >>> token_pixel_mask(np.array([[True, False, False, True]]), (2, 2), 2)[0]
    array([[ True,  True, False, False],
           [ True,  True, False, False],
           [False, False,  True,  True],
           [False, False,  True,  True]])
    """
    tokens = np.asarray(tokens, dtype=bool)
    rows, cols = grid_shape
    grid = tokens.reshape(len(tokens), rows, cols)
    return grid.repeat(patch_size, axis=1).repeat(patch_size, axis=2)


def _check_removal(
    images: np.ndarray, removed: np.ndarray, patch_size: int
) -> tuple[int, int]:
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(
            f"images must have shape (n_images, H, W, 3), channels last, as "
            f"load_images returns them; got shape {images.shape}."
        )
    height, width = images.shape[1:3]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide the image size "
            f"{height} x {width}; resize the images to a multiple of the patch size "
            f"(load_images(..., image_size=...))."
        )
    grid_shape = (height // patch_size, width // patch_size)
    n_tokens = grid_shape[0] * grid_shape[1]
    if removed.shape != (len(images), n_tokens):
        raise ValueError(
            f"removed must be token masks of shape (n_images, n_tokens) = "
            f"({len(images)}, {n_tokens}) for {height} x {width} images with "
            f"patch_size={patch_size}; got shape {removed.shape}."
        )
    return grid_shape


def remove_tokens(
    images: ArrayLike,
    removed: ArrayLike,
    patch_size: int,
    *,
    method: str = "road",
    noise: float = 0.01,
    background: float | ArrayLike = 0.5,
    blur_sigma: float = 5.0,
    random_state: Any = None,
) -> np.ndarray:
    """Replace the pixels of the removed tokens of each image.

    Parameters
    ----------
    images : array-like of shape (n_images, H, W, 3)
        Pixel values in [0, 1] before the model's normalisation (as
        :func:`~sklearn_arb.load_images` returns them). Never modified.
    removed : array-like of bool, shape (n_images, n_tokens)
        The tokens to remove, row-major over the ``(H / patch_size,
        W / patch_size)`` grid.
    patch_size : int
        Pixels per token side.
    method : {"road", "black", "blur"}, default="road"
        ``"road"``: ROAD's noisy linear imputation (each removed pixel is the
        weighted mean of its 8 neighbours, 1/6 direct and 1/12 diagonal, solved
        jointly over the removed pixels, plus Gaussian noise of std ``noise``);
        where every token is removed nothing is left to impute from, and the
        pixels take the value ``background`` (plus the noise).
        ``"black"``: pixel value 0. ``"blur"``: the image blurred by a
        Gaussian of std ``blur_sigma`` pixels (per channel, reflected at the
        border).
    noise : float, default=0.01
        Std of ROAD's Gaussian noise, in pixel values (ROAD's default).
    background : float or array-like of shape (3,), default=0.5
        ROAD's value where every token is removed (per channel); the
        faithfulness functions pass the model's normalisation mean, which the
        model sees as 0.
    blur_sigma : float, default=5.0
        Std in pixels of ``"blur"``'s Gaussian.
    random_state : int, RandomState instance or None, default=None
        Seeds ROAD's noise (drawn image after image).

    Returns
    -------
    perturbed : ndarray of shape (n_images, H, W, 3)
        A new array, of the images' float type (float32 for integer input).

    Examples
    --------
    A linear ramp is what ROAD fills a removed region with:

    >>> import numpy as np
    >>> from sklearn_arb.evaluation import remove_tokens
    >>> ramp = np.broadcast_to(np.linspace(0, 1, 32)[None, :, None], (32, 32, 3))
    >>> removed = np.zeros((1, 16), dtype=bool)
    >>> removed[0, [5, 6, 9, 10]] = True  # the four centre tokens of a 4 x 4 grid
    >>> road = remove_tokens(ramp[None], removed, 8, noise=0.0)
    >>> bool(np.abs(road - ramp).max() < 1e-10)
    True
    >>> float(remove_tokens(ramp[None], removed, 8, method="black")[0, 12, 12, 0])
    0.0
    """
    if method not in REMOVALS:
        raise ValueError(f"method must be one of {REMOVALS}; got {method!r}.")
    if not isinstance(patch_size, Integral) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int; got {patch_size!r}.")
    if not isinstance(noise, Real) or noise < 0:
        raise ValueError(f"noise must be a std >= 0; got {noise!r}.")
    images = np.asarray(images)
    removed = np.asarray(removed)
    if removed.dtype != bool:
        raise ValueError(
            f"removed must be boolean token masks; got dtype {removed.dtype}."
        )
    grid_shape = _check_removal(images, removed, patch_size)
    dtype = images.dtype if images.dtype.kind == "f" else np.dtype(np.float32)
    pixels = token_pixel_mask(removed, grid_shape, patch_size)
    perturbed = images.astype(dtype, copy=True)
    if method == "black":
        perturbed[pixels] = 0
        return perturbed
    if method == "blur":
        for image, mask in zip(perturbed, pixels, strict=True):
            if mask.any():
                blurred = gaussian_filter(
                    image, sigma=(blur_sigma, blur_sigma, 0), mode="reflect"
                )
                image[mask] = blurred[mask]
        return perturbed
    rng = check_random_state(random_state)
    fill = np.broadcast_to(np.asarray(background, dtype=np.float64), (3,))
    n_channels = images.shape[3]
    for image, tokens in zip(perturbed, removed, strict=True):
        n_removed = int(tokens.sum())
        if n_removed == 0:
            continue
        if n_removed < tokens.size:
            _road_fill(image, tokens, patch_size)
        mask = token_pixel_mask(tokens[None], grid_shape, patch_size)[0]
        if n_removed == tokens.size:
            image[:] = fill[:n_channels]
        if noise:
            image[mask] += (
                noise * rng.standard_normal((mask.sum(), n_channels))
            ).astype(image.dtype)
    return perturbed

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

The system is solved exactly, but not over every removed pixel: a removed
patch's interior pixels see only their own patch, so they are a fixed linear map
of the patch's one-pixel ring, the same for every patch; eliminating them (a
Schur complement computed once per patch size) leaves a system over the rings
alone, 60 of the 256 pixels of a 16 px patch, which SuperLU factorises.
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


@lru_cache(maxsize=8)
def _patch_operators(patch_size: int) -> tuple[np.ndarray, ...]:
    """What every removed patch shares: its ring and interior pixels, and the
    elimination of the interior.

    The interior pixels of a removed patch (all but its one-pixel ring) see
    only pixels of the same patch, so their values are a fixed linear map of
    the ring's: ``interior = E @ ring`` with ``E = A_ii^-1 W_ir`` (``A_ii``:
    the interior rows of the system, ``W_ir``: interior-to-ring weights).
    Eliminating them leaves the ring pixels alone (60 of 256 for 16 px
    patches), each patch's ring coupled within itself by
    ``-W_rr - W_ri E`` (its Schur complement, besides the diagonal).

    Returns ring (row, col) offsets, interior (row, col) offsets, ``E`` and the
    ring block ``-W_rr - W_ri E``.
    """
    rows, cols = np.divmod(np.arange(patch_size**2), patch_size)
    weights = np.zeros((patch_size**2, patch_size**2))
    for (dr, dc), w in _NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < patch_size) & (c >= 0) & (c < patch_size)
        weights[np.flatnonzero(inside), (r * patch_size + c)[inside]] = w
    interior = (
        (rows > 0) & (rows < patch_size - 1) & (cols > 0) & (cols < patch_size - 1)
    )
    ring = ~interior
    w_ii = weights[np.ix_(interior, interior)]
    w_ir = weights[np.ix_(interior, ring)]
    # Interior pixels have all 8 neighbours: their diagonal is 1.
    extension = np.linalg.solve(np.eye(len(w_ii)) - w_ii, w_ir) if len(w_ii) else w_ir
    ring_block = -weights[np.ix_(ring, ring)] - weights[np.ix_(ring, interior)] @ (
        extension
    )
    return (
        np.stack([rows[ring], cols[ring]], axis=1),
        np.stack([rows[interior], cols[interior]], axis=1),
        extension,
        ring_block,
    )


def _road_fill(image: np.ndarray, removed: np.ndarray, patch_size: int) -> None:
    """Fill the removed tokens of one ``(H, W, C)`` image in place with their
    noise-free ROAD values. ``removed``: flat bool over the token grid, with
    some token kept (so every removed region touches a kept pixel and the
    system is non-singular)."""
    height, width, n_channels = image.shape
    grid_cols = width // patch_size
    neighbours, total = _neighbour_table(height, width)
    ring_offsets, interior_offsets, extension, ring_block = _patch_operators(patch_size)
    n_ring = len(ring_offsets)
    patch_rows, patch_cols = np.divmod(np.flatnonzero(removed), grid_cols)
    n_patches = len(patch_rows)

    def pixels(offsets: np.ndarray) -> np.ndarray:  # (n_patches, len(offsets))
        r = patch_rows[:, None] * patch_size + offsets[None, :, 0]
        c = patch_cols[:, None] * patch_size + offsets[None, :, 1]
        return r * width + c

    ring = pixels(ring_offsets).ravel()
    n_unknowns = len(ring)
    variable = np.full(height * width, -1, dtype=np.int64)
    variable[ring] = np.arange(n_unknowns)
    removed_pixels = np.zeros(height * width, dtype=bool)
    removed_pixels[ring] = True
    removed_pixels[pixels(interior_offsets).ravel()] = True
    around = neighbours[:, ring]  # (8, n_unknowns)
    inside = around >= 0
    safe = np.where(inside, around, 0)
    around_variable = np.where(inside, variable[safe], -1)
    own_patch = np.arange(n_unknowns) // n_ring
    cross = (around_variable >= 0) & (around_variable // n_ring != own_patch)
    known = inside & ~removed_pixels[safe]
    weights = np.broadcast_to(_WEIGHTS[:, None], around.shape)
    # Each patch's own block (dense, shared), the diagonal (the neighbour
    # weight inside the image), and the couplings to the rings of removed
    # neighbouring patches.
    first = (np.arange(n_patches) * n_ring)[:, None, None]
    block_rows = np.broadcast_to(first + np.arange(n_ring)[None, :, None],
                                 (n_patches, n_ring, n_ring))  # fmt: skip
    block_cols = np.broadcast_to(first + np.arange(n_ring)[None, None, :],
                                 (n_patches, n_ring, n_ring))  # fmt: skip
    row_of = np.broadcast_to(np.arange(n_unknowns), around.shape)
    rows = np.concatenate([block_rows.ravel(), np.arange(n_unknowns), row_of[cross]])
    cols = np.concatenate(
        [block_cols.ravel(), np.arange(n_unknowns), around_variable[cross]]
    )
    dtype = image.dtype
    values = np.concatenate(
        [
            np.broadcast_to(ring_block, (n_patches, n_ring, n_ring)).ravel(),
            total[ring],
            -weights[cross],
        ]
    ).astype(dtype)
    matrix = sp.csc_matrix((values, (rows, cols)), shape=(n_unknowns,) * 2)
    flat = image.reshape(-1, n_channels)
    rhs = np.einsum("kn,knc->nc", np.where(known, weights, 0.0), flat[safe])
    # Symmetric positive definite: a symmetric ordering and no pivoting.
    factor = splu(
        matrix,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    ring_values = factor.solve(rhs.astype(dtype)).reshape(n_patches, n_ring, -1)
    flat[ring] = ring_values.reshape(-1, n_channels)
    interior_values = np.einsum("ir,prc->pic", extension.astype(dtype), ring_values)
    flat[pixels(interior_offsets).ravel()] = interior_values.reshape(-1, n_channels)


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

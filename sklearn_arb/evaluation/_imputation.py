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
tokens are covered by squares of 4 x 4, 2 x 2 and single tokens, and the
interior of a removed square (all its pixels but its first row and first
column) sees only the square and the first row or column of the tokens right
of it and below it (its frame), so the interior is a fixed linear map of the
frame, the same for every square of that size (and border position);
eliminating the interiors (a Schur complement computed once per size) leaves a
system over the first rows and columns of the removed squares alone (31 of the
256 pixels of a lone 16 px patch). Neighbouring squares share these one-pixel
lines, so the separators of the system are single lines of pixels, which keeps
SuperLU's factorisation small.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import cpu_count
from numpy.typing import ArrayLike
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import splu
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

__all__ = ["REMOVALS", "remove_tokens", "token_pixel_mask"]

REMOVALS = ("road", "black", "blur")

# The revision of what each removal returns for the same input and seed: bumped
# whenever that changes, so that stored perturbation results (the evaluation
# study's) from an earlier revision are computed again, not read as current.
REMOVAL_REVISIONS = {"road": 2, "black": 1, "blur": 1}

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


# Removed regions are covered by squares of 4 x 4, 2 x 2 and single tokens
# (largest first); each square's interior is eliminated exactly. Larger
# squares barely shrink the system and cost large operators.
_SQUARE_SIZES = (4, 2, 1)  # ends with 1


@lru_cache(maxsize=48)
def _square_operators(
    side: int, below: bool, right: bool, dtype: np.dtype
) -> tuple[np.ndarray, ...]:
    """What every removed ``side x side`` square of pixels shares: its frame
    and interior pixels, and the elimination of the interior.

    The interior of a removed square (its pixels but its first row and first
    column) sees only pixels of its frame: the rest of the ``(side + 1) x
    (side + 1)`` block from the square's corner, that is the square's own first
    row and column and the first row or column of the squares right of it,
    below it and diagonally below right (``below`` / ``right``: whether that
    row / column lies inside the image; where it does not, the interior's last
    row / column has fewer neighbours). So the interior is a fixed linear map of
    the frame, ``interior = E @ frame`` with ``E = A_ii^-1 W_if`` (``A_ii``: the
    interior rows of the system, ``W_if``: interior-to-frame weights), and
    eliminating it couples the frame by ``W_fi E`` (its Schur complement).

    Returns the frame (row, col) offsets, whether each frame pixel is the
    square's own (its first row or column), the interior (row, col) offsets,
    ``E`` and ``W_fi E``, both of ``dtype``.
    """
    n_rows, n_cols = side + below, side + right
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    entries = []
    for (dr, dc), w in _NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < n_rows) & (c >= 0) & (c < n_cols)
        entries.append((np.flatnonzero(inside), (r * n_cols + c)[inside], w))
    weights = sp.csr_matrix(
        (
            np.concatenate([np.full(len(i), w) for i, _, w in entries]),
            (
                np.concatenate([i for i, _, _ in entries]),
                np.concatenate([j for _, j, _ in entries]),
            ),
        ),
        shape=(n_rows * n_cols,) * 2,
    )
    interior = (rows > 0) & (rows < side) & (cols > 0) & (cols < side)
    frame = ~interior
    own = frame[frame] & (rows[frame] < side) & (cols[frame] < side)
    w_if = weights[interior][:, frame].toarray()
    if interior.any():
        # The block holds every neighbour of an interior pixel inside the
        # image: its row sum is the pixel's total neighbour weight.
        interior_rows = weights[interior]
        total = np.asarray(interior_rows.sum(axis=1)).ravel()
        system = (sp.diags(total) - interior_rows[:, interior]).tocsc()
        extension = splu(system).solve(w_if)
    else:
        extension = w_if
    block = weights[frame][:, interior] @ extension
    block = (block + block.T) / 2  # symmetric but for rounding
    return (
        np.stack([rows[frame], cols[frame]], axis=1),
        own,
        np.stack([rows[interior], cols[interior]], axis=1),
        extension.astype(dtype),
        block.astype(dtype),
    )


def _cover_with_squares(tokens: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Removed tokens ``(rows, cols)`` covered by squares of ``_SQUARE_SIZES``
    tokens a side, largest first, each placed greedily in raster order where all
    its tokens are removed and not yet covered: ``[(tokens a side, (n, 2) token
    row/col of each square's corner)]``."""
    free = tokens.copy()
    squares = []
    for k in _SQUARE_SIZES:
        if k == 1:  # every token left is a square of its own
            squares.append((k, np.argwhere(free)))
            break
        if k > min(free.shape):  # a grid narrower than the square has none
            continue
        windows = np.lib.stride_tricks.sliding_window_view(free, (k, k))
        corners = []
        for r, c in np.argwhere(windows.all(axis=(2, 3))):
            if free[r : r + k, c : c + k].all():
                free[r : r + k, c : c + k] = False
                corners.append((r, c))
        squares.append((k, np.array(corners, dtype=np.int64).reshape(-1, 2)))
    return squares


def _square_groups(grid: np.ndarray, patch_size: int, dtype: np.dtype) -> list[tuple]:
    """The removed squares covering the removed tokens of ``grid``, grouped by
    the operators they share: ``[(frame pixels (n, m), own (m,), interior
    pixels (n, i), E, W_fi E)]``, pixels as flat indices into the image."""
    n_rows, n_cols = grid.shape
    width = n_cols * patch_size
    groups = []
    for tokens, corners in _cover_with_squares(grid):
        below = corners[:, 0] + tokens < n_rows
        right = corners[:, 1] + tokens < n_cols
        for is_below in (False, True):
            for is_right in (False, True):
                chosen = (below == is_below) & (right == is_right)
                if not chosen.any():
                    continue
                origin = corners[chosen] * patch_size
                frame, own, interior, extension, block = _square_operators(
                    tokens * patch_size, is_below, is_right, dtype
                )

                def pixels(offsets: np.ndarray, origin=origin) -> np.ndarray:
                    r = origin[:, :1] + offsets[None, :, 0]
                    return r * width + origin[:, 1:] + offsets[None, :, 1]

                groups.append((pixels(frame), own, pixels(interior), extension, block))
    return groups


def _road_fill(
    image: np.ndarray,
    removed: np.ndarray,
    patch_size: int,
    noise: float,
    rng: np.random.Generator,
) -> None:
    """Fill the removed tokens of one ``(H, W, C)`` image in place with their
    ROAD values plus Gaussian noise of std ``noise`` drawn from ``rng``.
    ``removed``: flat bool over the token grid, with some token kept (so every
    removed region touches a kept pixel and the system is non-singular)."""
    height, width, n_channels = image.shape
    grid = removed.reshape(height // patch_size, width // patch_size)
    neighbours, total = _neighbour_table(height, width)
    dtype = image.dtype
    flat = image.reshape(-1, n_channels)
    removed_pixels = token_pixel_mask(removed[None], grid.shape, patch_size)
    removed_pixels = removed_pixels.ravel()
    groups = _square_groups(grid, patch_size, dtype)
    # The unknowns: the first row and column of every removed square.
    unknowns = np.concatenate([frame[:, own].ravel() for frame, own, *_ in groups])
    n_unknowns = len(unknowns)
    # int32 indices: the sparse matrix keeps them, and builds faster.
    variable = np.full(height * width, -1, dtype=np.int32)
    variable[unknowns] = np.arange(n_unknowns)
    # Their direct couplings: the diagonal (the neighbour weight inside the
    # image), unknown neighbours, and known ones (kept pixels: the right-hand
    # side). A neighbour inside a removed square's interior couples through
    # that square's block instead.
    around = neighbours[:, unknowns]  # (8, n_unknowns)
    inside = around >= 0
    safe = np.where(inside, around, 0)
    around_variable = np.where(inside, variable[safe], -1)
    coupled = around_variable >= 0
    known = inside & ~removed_pixels[safe]
    weights = np.broadcast_to(_WEIGHTS[:, None], around.shape)
    diagonal = np.arange(n_unknowns, dtype=np.int32)
    rows = [diagonal, np.broadcast_to(diagonal, around.shape)[coupled]]
    cols = [diagonal, around_variable[coupled]]
    values = [total[unknowns].astype(dtype), -weights[coupled].astype(dtype)]
    rhs = np.einsum("kn,knc->nc", np.where(known, weights, 0.0), flat[safe])
    # Each removed square's eliminated interior couples its frame: the pairs
    # of unknown frame pixels enter the matrix, the known ones the right side.
    for frame, _, _, _, block in groups:
        n_squares, n_frame = frame.shape
        frame_variable = variable[frame]
        unknown = frame_variable >= 0
        pairs = unknown[:, :, None] & unknown[:, None, :]
        shape = (n_squares, n_frame, n_frame)
        rows.append(np.broadcast_to(frame_variable[:, :, None], shape)[pairs])
        cols.append(np.broadcast_to(frame_variable[:, None, :], shape)[pairs])
        values.append(-np.broadcast_to(block, shape)[pairs])
        known_values = np.where(unknown[:, :, None], 0, flat[frame])
        moved = block @ known_values.transpose(1, 0, 2).reshape(n_frame, -1)
        moved = moved.reshape(n_frame, n_squares, n_channels).transpose(1, 0, 2)
        for channel in range(n_channels):
            rhs[:, channel] += np.bincount(
                frame_variable[unknown],
                moved[..., channel][unknown],
                minlength=n_unknowns,
            )
    matrix = sp.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_unknowns,) * 2,
    )
    # Symmetric positive definite: a symmetric ordering and no pivoting.
    factor = splu(
        matrix,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    flat[unknowns] = factor.solve(rhs.astype(dtype))
    # The interiors from the noise-free frames, then the noise on every pixel.
    filled = [(unknowns, flat[unknowns])]
    for frame, _, interior, extension, _ in groups:
        n_frame = frame.shape[1]
        frame_values = flat[frame].transpose(1, 0, 2).reshape(n_frame, -1)
        interior_values = (extension @ frame_values).reshape(-1, n_channels)
        filled.append((interior.T.ravel(), interior_values))
    for pixels, pixel_values in filled:
        _add_noise(pixel_values, noise, rng)
        flat[pixels] = pixel_values


def _add_noise(values: np.ndarray, noise: float, rng: np.random.Generator) -> None:
    """Add Gaussian noise of std ``noise`` to ``values`` in place, drawn in
    float32 unless ``values`` are float64 (a Generator draws those two only)."""
    if noise:
        dtype = np.float64 if values.dtype == np.float64 else np.float32
        draws = rng.standard_normal(values.shape, dtype=dtype)
        values += (draws * noise).astype(values.dtype, copy=False)


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


def working_dtype(images: np.ndarray) -> np.dtype:
    """The dtype removed tokens are filled in: the images' own float, else
    float32."""
    return images.dtype if images.dtype.kind == "f" else np.dtype(np.float32)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    """One (H, W, C) image blurred by a Gaussian of std ``sigma`` pixels, per
    channel, reflected at the border: the ``"blur"`` removal's fill."""
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")


def fill_from_blurred(
    images: np.ndarray,
    pixel_masks: np.ndarray,
    blurred_of: Callable[[int], np.ndarray],
) -> None:
    """Write, in place, each image's masked pixels from its blurred copy
    ``blurred_of(index)``, asked for only where the mask holds a pixel."""
    for index, mask in enumerate(pixel_masks):
        if mask.any():
            images[index][mask] = blurred_of(index)[mask]


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
        Seeds ROAD's noise: a seed for each image is drawn from it in turn.

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
    perturbed = images.astype(working_dtype(images), copy=True)
    if method == "black":
        perturbed[token_pixel_mask(removed, grid_shape, patch_size)] = 0
        return perturbed
    if method == "blur":
        fill_from_blurred(
            perturbed,
            token_pixel_mask(removed, grid_shape, patch_size),
            lambda index: blurred(perturbed[index], blur_sigma),
        )
        return perturbed
    # One seed per image drawn from random_state (so the noise does not depend
    # on how images are batched): a Generator draws float32 normals several
    # times faster than a RandomState.
    rng = check_random_state(random_state)
    seeds = rng.randint(2**32, size=(len(images), 2), dtype=np.uint64)
    fill = np.broadcast_to(np.asarray(background, dtype=np.float64), (3,))
    n_channels = images.shape[3]

    def fill_image(index: int) -> None:
        image, tokens = perturbed[index], removed[index]
        n_removed = int(tokens.sum())
        noise_rng = np.random.default_rng(seeds[index])
        if 0 < n_removed < tokens.size:
            _road_fill(image, tokens, patch_size, noise, noise_rng)
        elif n_removed == tokens.size:
            image[:] = fill[:n_channels]
            _add_noise(image, noise, noise_rng)

    # Images are independent (each has its own seed) and the solver releases
    # the GIL: one thread per core, each with single-threaded BLAS (threaded
    # BLAS calls from several threads at once slow each other down, and one
    # BLAS thread makes an image's fill independent of the batch it is in).
    n_threads = min(len(images), cpu_count())
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(fill_image, range(len(images))))
    return perturbed

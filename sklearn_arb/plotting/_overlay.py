"""Attention maps drawn over their image, alone or as a before/after panel."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.image import AxesImage
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from .._maps import tokens_to_grid
from ._axes import finite_values, get_axes


def _image_array(image: ArrayLike) -> np.ndarray:
    """Validate an image for ``imshow``: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
            f"{array.shape}; pass one image, e.g. images[0]"
        )
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise TypeError(f"image must be a non-empty numeric array, got {array.dtype}")
    return array


def _draw_image(ax: Axes, image: np.ndarray) -> AxesImage:
    """Draw an image validated by ``_image_array``; grey images in grey."""
    grey = image.ndim == 2
    top = 255 if image.dtype == np.uint8 else 1.0
    artist = ax.imshow(
        image,
        cmap="gray" if grey else None,
        vmin=0 if grey else None,
        vmax=top if grey else None,
    )
    ax.set_axis_off()
    return artist


def _attention_grid(
    attention: ArrayLike,
    image_shape: tuple[int, int],
    grid_shape: tuple[int, int] | None,
    patch_size: int | None,
) -> np.ndarray:
    """Return the map as a (rows, cols) grid, reshaping a token vector if needed."""
    values = np.asarray(attention, dtype=float)
    if values.ndim == 2:
        grid = values
    elif values.ndim == 1:
        if grid_shape is None and patch_size is None:
            raise ValueError(
                "attention is a token vector; pass grid_shape=(rows, cols) (the "
                "extractor's grid_shape_) or patch_size to recover the patch grid"
            )
        if grid_shape is None:
            if any(side % patch_size for side in image_shape):
                raise ValueError(
                    f"patch_size={patch_size} does not divide the image shape "
                    f"{image_shape}; pass grid_shape=(rows, cols) instead"
                )
            grid_shape = (image_shape[0] // patch_size, image_shape[1] // patch_size)
        grid = tokens_to_grid(values, grid_shape)
    else:
        raise ValueError(
            f"attention must be a token vector (P,) or a grid (rows, cols), got shape "
            f"{values.shape}; pass one image's map, e.g. maps[0]"
        )
    return finite_values(grid, "attention").reshape(grid.shape)


def plot_attention_overlay(
    image: ArrayLike,
    attention: ArrayLike,
    *,
    grid_shape: tuple[int, int] | None = None,
    patch_size: int | None = None,
    ax: Axes | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmax: float | None = None,
    hide_zeros: bool = True,
    colorbar: bool = False,
    title: str | None = None,
) -> Bunch:
    """Draw an attention map over its image.

    Each patch's score covers the pixels of that patch (nearest-neighbour
    upsampling): the map is drawn with the image's own extent, so it lines up
    with the image whatever the image's size.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        The image, uint8 or float in [0, 1]. Grey images are drawn in grey.
    attention : array-like of shape (n_tokens,) or (rows, cols)
        The attention map of that image: a token vector in row-major order of
        the patch grid (one row of the extractor's or regularizer's output), or
        the grid itself.
    grid_shape : tuple of int, default=None
        ``(rows, cols)`` of the patch grid when ``attention`` is a token vector.
    patch_size : int, default=None
        Patch size in pixels of ``image``; gives the grid when ``grid_shape``
        is None.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    cmap : str, default="inferno"
        Colormap of the attention scores.
    alpha : float, default=0.6
        Opacity of the map over the image (1 hides the image).
    vmax : float, default=None
        Score drawn with the top colour (the bottom one is 0). None: the map's
        maximum. Give the same ``vmax`` to a map before and after
        regularization so that their colours compare.
    hide_zeros : bool, default=True
        Draw scores that are exactly 0 (removed by regularization) as
        transparent, so the image shows through.
    colorbar : bool, default=False
        Add a colorbar of the scores.
    title : str, default=None
        Title of the axes.

    Returns
    -------
    result : Bunch
        ``ax``, ``image`` (the image's ``AxesImage``), ``attention`` (the map's
        ``AxesImage``) and ``colorbar`` (a ``Colorbar`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_attention_overlay
    >>> image = np.random.default_rng(0).random((32, 48, 3))
    >>> scores = np.linspace(0.0, 1.0, 6)
    >>> result = plot_attention_overlay(image, scores, patch_size=16)
    >>> result.attention.get_array().shape
    (2, 3)
    """
    image_array = _image_array(image)
    image_shape = image_array.shape[:2]
    grid = _attention_grid(attention, image_shape, grid_shape, patch_size)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ax = get_axes(ax)

    image_artist = _draw_image(ax, image_array)
    top = float(grid.max()) if vmax is None else float(vmax)
    # A map of zeros (everything removed) still needs a non-empty colour range.
    top = top if top > 0 else 1.0
    shown = np.ma.masked_equal(grid, 0.0) if hide_zeros else grid
    attention_artist = ax.imshow(
        shown,
        cmap=cmap,
        alpha=alpha,
        vmin=0.0,
        vmax=top,
        extent=image_artist.get_extent(),
        interpolation="nearest",
    )
    if title is not None:
        ax.set_title(title)
    bar = ax.figure.colorbar(attention_artist, ax=ax, shrink=0.8) if colorbar else None
    return Bunch(ax=ax, image=image_artist, attention=attention_artist, colorbar=bar)


def plot_attention_panel(
    image: ArrayLike,
    maps: Mapping[str, ArrayLike],
    *,
    grid_shape: tuple[int, int] | None = None,
    patch_size: int | None = None,
    axes: np.ndarray | list[Axes] | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
) -> Bunch:
    """Draw an image beside its attention maps, before and after regularization.

    The first axes shows the image alone, then one axes per map in the order
    of ``maps``, all maps on one colour scale (0 to the largest score of all
    maps) so that a score keeps its colour when regularization keeps it. Each
    title gives the share of tokens whose score is not zero.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        The image, uint8 or float in [0, 1].
    maps : mapping of str to array-like of shape (n_tokens,) or (rows, cols)
        Title -> attention map, e.g. ``{"attention": scores, "p": regularized}``.
    grid_shape : tuple of int, default=None
        ``(rows, cols)`` of the patch grid when the maps are token vectors.
    patch_size : int, default=None
        Patch size in pixels of ``image``, when ``grid_shape`` is None.
    axes : sequence of 1 + len(maps) matplotlib Axes, default=None
        Where to draw; a new figure with one row of axes is created when None.
    cmap : str, default="inferno"
        Colormap of the attention scores.
    alpha : float, default=0.6
        Opacity of the maps over the image.

    Returns
    -------
    result : Bunch
        ``figure``, ``axes`` (array of Axes), ``image`` (the first axes'
        ``AxesImage``) and ``overlays`` (dict title -> the Bunch returned by
        :func:`plot_attention_overlay`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_attention_panel
    >>> image = np.random.default_rng(0).random((32, 32))
    >>> scores = np.array([0.1, 0.4, 0.2, 0.3])
    >>> result = plot_attention_panel(
    ...     image, {"attention": scores, "p": np.where(scores > 0.25, scores, 0.0)},
    ...     grid_shape=(2, 2))
    >>> len(result.axes)
    3
    """
    if not isinstance(maps, Mapping) or len(maps) == 0:
        raise TypeError(
            "maps must be a non-empty mapping of title -> attention map, e.g. "
            "{'attention': scores}"
        )
    n_axes = 1 + len(maps)
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(
            1, n_axes, figsize=(3.2 * n_axes + 0.8, 3.4), layout="constrained"
        )
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != n_axes:
        raise ValueError(
            f"axes holds {axes.size} Axes but 1 + len(maps) = {n_axes} are needed "
            "(the image, then one per map)"
        )
    image_array = _image_array(image)
    grids = {
        name: _attention_grid(values, image_array.shape[:2], grid_shape, patch_size)
        for name, values in maps.items()
    }
    vmax = max(float(grid.max()) for grid in grids.values())

    image_artist = _draw_image(axes[0], image_array)
    axes[0].set_title("image")
    overlays = {
        name: plot_attention_overlay(
            image_array,
            grid,
            ax=ax,
            cmap=cmap,
            alpha=alpha,
            vmax=vmax,
            title=f"{name}\n{np.count_nonzero(grid) / grid.size:.0%} non-zero",
        )
        for ax, (name, grid) in zip(axes[1:], grids.items(), strict=True)
    }
    figure = axes[0].figure
    last = overlays[next(reversed(overlays))]
    figure.colorbar(last.attention, ax=list(axes[1:]), shrink=0.8, label="attention")
    return Bunch(figure=figure, axes=axes, image=image_artist, overlays=overlays)

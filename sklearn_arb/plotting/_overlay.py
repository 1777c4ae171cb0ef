"""Attention maps blended into their image: as an RGB array, on an axes, or as a
before/after panel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.image import AxesImage
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from .._images import as_float_rgb
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
    """Draw an image validated by ``_image_array`` as the RGB array :func:`overlay_map`
    starts from (scaled as ``load_images`` scales it; grey as grey RGB)."""
    rgb = as_float_rgb(image, "image", "dtype")
    rgb *= 255.0
    artist = ax.imshow(np.rint(rgb, out=rgb).astype(np.uint8))
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


POSITIVE_CMAP = "inferno"  # scores from 0 up (attention, rollout)
SIGNED_CMAP = "RdBu_r"  # scores either side of 0 (CDAM): blue < 0 < red


def is_signed(grids: Iterable[np.ndarray]) -> bool:
    """Whether maps drawn together need a signed scale: any score below 0."""
    return any(float(grid.min()) < 0 for grid in grids)


def shared_scale(grids: Iterable[np.ndarray]) -> tuple[bool, float]:
    """``(signed, vmax)`` of maps drawn side by side on one colour scale: signed
    when any has a score below 0, ``vmax`` the largest score (largest absolute
    score when signed)."""
    grids = list(grids)
    signed = is_signed(grids)
    return signed, max(_colour_top(grid, None, signed) for grid in grids)


def _colour_top(grid: np.ndarray, vmax: float | None, signed: bool) -> float:
    """The score drawn with the top colour (its negative gets the bottom one on a
    signed scale); a map of zeros (everything removed) still needs a non-empty
    colour range."""
    if vmax is None:
        vmax = np.abs(grid).max() if signed else grid.max()
    top = float(vmax)
    return top if top > 0 else 1.0


def colour_scale(
    grid: np.ndarray,
    cmap: str | None,
    vmax: float | None,
    signed: bool | None,
) -> tuple[str, float, float]:
    """``(cmap, vmin, vmax)`` of a map: from 0 up with ``POSITIVE_CMAP``, or on a
    signed map (``signed=None``: one with a score below 0) from ``-vmax`` to
    ``vmax``, centred at 0, with ``SIGNED_CMAP``; an explicit ``cmap`` wins."""
    signed = is_signed([grid]) if signed is None else signed
    top = _colour_top(grid, vmax, signed)
    default = SIGNED_CMAP if signed else POSITIVE_CMAP
    return cmap or default, -top if signed else 0.0, top


def overlay_map(
    image: ArrayLike,
    attention: ArrayLike,
    *,
    grid_shape: tuple[int, int] | None = None,
    patch_size: int | None = None,
    cmap: str | None = None,
    alpha: float = 0.6,
    vmax: float | None = None,
    hide_zeros: bool = True,
    signed: bool | None = None,
) -> np.ndarray:
    """Blend an attention map into its image, as an RGB array.

    What pytorch-grad-cam users know as ``show_cam_on_image``: each pixel is
    ``(1 - alpha) * image + alpha * cmap(score / vmax)``, with the score of the
    patch the pixel lies in (nearest-neighbour upsampling on the image's own
    extent, so a map of the model's resized input lines up with the original
    image). Scores that are exactly 0 (removed by regularization) leave the
    image unchanged when ``hide_zeros``. :func:`plot_attention_overlay` and
    :func:`plot_attention_panel` draw these arrays.

    A signed map (CDAM: negative scores are evidence against the target) is drawn
    on a diverging scale centred at 0, the same on both sides:
    ``cmap((score / vmax + 1) / 2)`` with ``vmax`` the largest absolute score,
    negative scores blue and positive ones red by default, so that negative
    evidence shows instead of being clipped to the colour of 0. A map without
    negative scores (attention, rollout) is drawn from 0 up as before.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        The image: uint8 (0-255), uint16 (0-65535) or float in [0, 1]
        (see :func:`sklearn_arb.load_images`); grey images become grey RGB, an
        alpha channel is dropped.
    attention : array-like of shape (n_tokens,) or (rows, cols)
        The attention map of that image: a token vector in row-major order of
        the patch grid (one observed or regularized map), or the grid itself (a
        map at the image's resolution is a grid of one pixel per cell).
    grid_shape : tuple of int, default=None
        ``(rows, cols)`` of the patch grid when ``attention`` is a token vector.
    patch_size : int, default=None
        Patch size in pixels of ``image``; gives the grid when ``grid_shape``
        is None.
    cmap : str, default=None
        Matplotlib colormap of the scores. None: "inferno" from 0 up, or
        "RdBu_r" (blue below 0, red above) on a signed scale.
    alpha : float in [0, 1], default=0.6
        Weight of the map's colour: 0 gives the image, 1 the colormap alone.
    vmax : float, default=None
        Score given the top colour (the bottom one is 0, or ``-vmax`` on a
        signed scale; scores are clipped to the range). None: the map's maximum
        (its largest absolute score on a signed scale). Give the same ``vmax``
        to maps before and after regularization so that their colours compare.
    hide_zeros : bool, default=True
        Leave pixels whose score is exactly 0 as the image.
    signed : bool, default=None
        Draw on the signed scale centred at 0 (True) or from 0 up, negative
        scores clipped to 0 (False). None: signed when the map has a score
        below 0. Maps drawn side by side should share it (and ``vmax``).

    Returns
    -------
    overlay : ndarray of shape (H, W, 3), dtype uint8
        A new array; the inputs are not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import overlay_map
    >>> image = np.full((4, 6, 3), 200, dtype=np.uint8)
    >>> scores = np.array([0.0, 0.5, 1.0, 0.0, 0.0, 1.0])  # a 2 x 3 patch grid
    >>> overlay = overlay_map(image, scores, grid_shape=(2, 3), cmap="gray")
    >>> overlay.shape, overlay.dtype
    ((4, 6, 3), dtype('uint8'))
    >>> overlay[0, :, 0].tolist()  # 200; 0.4 * 200 + 0.6 * 128; 0.4 * 200 + 0.6 * 255
    [200, 200, 157, 157, 233, 233]
    >>> bool((overlay_map(image, scores, grid_shape=(2, 3), alpha=0.0) == image).all())
    True

    A signed map: -1 takes the bottom colour, 1 the top one, 0.5 three quarters up.

    >>> signed = np.array([-1.0, 0.5, 1.0, 0.0, 0.0, 1.0])
    >>> overlay_map(image, signed, grid_shape=(2, 3), cmap="gray")[0, ::2, 0].tolist()
    [80, 195, 233]
    """
    image_array = _image_array(image)
    grid = _attention_grid(attention, image_array.shape[:2], grid_shape, patch_size)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = as_float_rgb(image_array, "image", "dtype")  # a new float32 array
    cmap, bottom, top = colour_scale(grid, cmap, vmax, signed)
    levels = np.clip((grid - bottom) / (top - bottom), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](levels)[..., :3].astype(np.float32)
    weights = np.full(grid.shape, alpha, dtype=np.float32)
    if hide_zeros:
        weights[grid == 0] = 0.0
    # Nearest neighbour: pixel (y, x) takes the token its patch belongs to, on the
    # image's own extent, whatever the image's size (the model saw it resized).
    height, width = blended.shape[:2]
    rows = np.arange(height) * grid.shape[0] // height
    cols = np.arange(width) * grid.shape[1] // width
    # take along one axis, then the other: ~8x faster than one 2-D fancy index
    weight = weights.take(rows, axis=0).take(cols, axis=1)[:, :, np.newaxis]
    # (1 - w) image + w colour, in place: exactly the image at w = 0, the colour
    # at w = 1.
    blended *= 1.0 - weight
    blended += weight * colours.take(rows, axis=0).take(cols, axis=1)
    blended *= 255.0
    return np.rint(blended, out=blended).astype(np.uint8)


def plot_attention_overlay(
    image: ArrayLike,
    attention: ArrayLike,
    *,
    grid_shape: tuple[int, int] | None = None,
    patch_size: int | None = None,
    ax: Axes | None = None,
    cmap: str | None = None,
    alpha: float = 0.6,
    vmax: float | None = None,
    hide_zeros: bool = True,
    signed: bool | None = None,
    colorbar: bool = False,
    title: str | None = None,
) -> Bunch:
    """Draw an attention map over its image.

    Draws the RGB array of :func:`overlay_map`: each patch's score covers the
    pixels of that patch (nearest-neighbour upsampling) on the image's own
    extent, so the map lines up with the image whatever the image's size. A
    signed map (CDAM) is drawn on a diverging scale centred at 0, as
    :func:`overlay_map` describes.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        The image, uint8, uint16 or float in [0, 1]. Grey images are drawn in
        grey.
    attention : array-like of shape (n_tokens,) or (rows, cols)
        The attention map of that image: a token vector in row-major order of
        the patch grid (one observed or regularized map), or the grid itself.
    grid_shape : tuple of int, default=None
        ``(rows, cols)`` of the patch grid when ``attention`` is a token vector.
    patch_size : int, default=None
        Patch size in pixels of ``image``; gives the grid when ``grid_shape``
        is None.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    cmap : str, default=None
        Colormap of the attention scores. None: "inferno" from 0 up, or
        "RdBu_r" on a signed scale.
    alpha : float in [0, 1], default=0.6
        Weight of the map's colour over the image (1 hides the image).
    vmax : float, default=None
        Score drawn with the top colour (the bottom one is 0, or ``-vmax`` on a
        signed scale). None: the map's maximum (largest absolute score when
        signed). Give the same ``vmax`` to a map before and after
        regularization so that their colours compare.
    hide_zeros : bool, default=True
        Leave the image unchanged where scores are exactly 0 (removed by
        regularization).
    signed : bool, default=None
        The signed scale centred at 0 (True) or from 0 up (False); None: signed
        when the map has a score below 0.
    colorbar : bool, default=False
        Add a colorbar of the scores.
    title : str, default=None
        Title of the axes.

    Returns
    -------
    result : Bunch
        ``ax``, ``image`` (the ``AxesImage`` of the blended RGB array),
        ``attention`` (a ``ScalarMappable`` holding the map's grid, masked where
        zeros are hidden, and its colour scale: pass it to ``colorbar``) and
        ``colorbar`` (a ``Colorbar`` or None).

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
    grid = _attention_grid(attention, image_array.shape[:2], grid_shape, patch_size)
    cmap, bottom, top = colour_scale(grid, cmap, vmax, signed)
    overlay = overlay_map(
        image_array,
        grid,
        cmap=cmap,
        alpha=alpha,
        vmax=top,
        hide_zeros=hide_zeros,
        signed=bottom < 0,
    )
    ax = get_axes(ax)
    image_artist = ax.imshow(overlay)
    ax.set_axis_off()
    # The colours are in the pixels; this carries the scores and their scale.
    attention_scale = ScalarMappable(norm=Normalize(bottom, top), cmap=cmap)
    attention_scale.set_array(np.ma.masked_equal(grid, 0.0) if hide_zeros else grid)
    if title is not None:
        ax.set_title(title)
    bar = ax.figure.colorbar(attention_scale, ax=ax, shrink=0.8) if colorbar else None
    return Bunch(ax=ax, image=image_artist, attention=attention_scale, colorbar=bar)


def plot_attention_panel(
    image: ArrayLike,
    maps: Mapping[str, ArrayLike],
    *,
    grid_shape: tuple[int, int] | None = None,
    patch_size: int | None = None,
    axes: np.ndarray | list[Axes] | None = None,
    cmap: str | None = None,
    alpha: float = 0.6,
) -> Bunch:
    """Draw an image beside its attention maps, before and after regularization.

    The first axes shows the image alone, then one axes per map in the order
    of ``maps``, all maps on one colour scale (0 to the largest score of all
    maps) so that a score keeps its colour when regularization keeps it. Each
    title gives the share of tokens whose score is not zero. When any map is
    signed (CDAM, with scores below 0), all are drawn on one diverging scale
    centred at 0, from minus to plus the largest absolute score (blue below 0,
    red above), so negative evidence shows.

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
    cmap : str, default=None
        Colormap of the attention scores. None: "inferno" from 0 up, or
        "RdBu_r" on a signed scale.
    alpha : float, default=0.6
        Opacity of the maps over the image.

    Returns
    -------
    result : Bunch
        ``figure``, ``axes`` (array of Axes), ``image`` (the first axes'
        ``AxesImage``, the image alone) and ``overlays`` (dict title -> the
        Bunch returned by :func:`plot_attention_overlay`).

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
    signed, vmax = shared_scale(grids.values())

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
            signed=signed,
            title=f"{name}\n{np.count_nonzero(grid) / grid.size:.0%} non-zero",
        )
        for ax, (name, grid) in zip(axes[1:], grids.items(), strict=True)
    }
    figure = axes[0].figure
    last = overlays[next(reversed(overlays))]
    figure.colorbar(last.attention, ax=list(axes[1:]), shrink=0.8, label="attention")
    return Bunch(figure=figure, axes=axes, image=image_artist, overlays=overlays)

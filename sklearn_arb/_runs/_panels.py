"""The PNG panels of ``regularize``, drawn as pixels in a background thread.

A panel is the image beside its attention map and each regularized map, on one
colour scale (0 to the largest score; for a signed map such as CDAM's, a diverging
scale centred at 0, minus to plus the largest absolute score, negative blue and
positive red), tokens that are zero left clear, as
:func:`sklearn_arb.plotting.plot_attention_panel` draws them. It is composed with
numpy and PIL (the tiles are :func:`sklearn_arb.plotting.overlay_map` arrays), not
with matplotlib's figure layout, which took ~90% of a run: a few
milliseconds a panel, from a copy of the image no larger than the panel, so a
huge photograph costs no more than a small one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._maps import tokens_to_grid
from ..plotting import overlay_map
from ..plotting._overlay import POSITIVE_CMAP, SIGNED_CMAP, shared_scale
from ._store import write_atomic

MAP_INCHES = 3.0  # width of each tile at --dpi
_OPACITY = 0.6


def tile_shape(image_shape: tuple[int, int], dpi: int) -> tuple[int, int]:
    """(height, width) in pixels of each tile of a panel at ``dpi``."""
    width = max(16, round(MAP_INCHES * dpi))
    return max(1, round(width * image_shape[0] / image_shape[1])), width


@cache
def _colormap(name: str) -> np.ndarray:
    import matplotlib

    table = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(255 * table).astype(np.uint8)


def panel_font_file() -> Path:
    """The font of the panels' text: matplotlib's DejaVu Sans, which has every
    glyph the titles use (``≤``, ``≥``, ``π``, ...; PIL's own default lacks ``≤``)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(panel_font_file()), size=size)


def render_panel(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    grid_shape: tuple[int, int],
    title: str,
) -> Image.Image:
    """The panel of one image: ``image`` (uint8 RGB, already at tile size), then
    each token map of ``maps`` over it, titled, with a colour bar."""
    height, width = image.shape[:2]
    grids = {name: tokens_to_grid(values, grid_shape) for name, values in maps.items()}
    signed, vmax = shared_scale(grids.values())
    cmap = SIGNED_CMAP if signed else POSITIVE_CMAP
    font_size = max(10, width // 18)
    font = _font(font_size)
    gap, head, bar = font_size // 2, 3 * font_size + font_size // 2, font_size
    picture = Image.fromarray(image)
    tiles = [("image", "", picture)] + [
        (name, f"{np.count_nonzero(grid) / grid.size:.0%} non-zero", None)
        for name, grid in grids.items()
    ]
    label_width = 5 * font_size
    panel = Image.new(
        "RGB",
        (len(tiles) * (width + gap) + gap + bar + label_width, height + head + gap),
        "white",
    )
    draw = ImageDraw.Draw(panel)
    draw.text((gap, 0), title, fill="black", font=font)
    for i, (name, note, pixels) in enumerate(tiles):
        left = gap + i * (width + gap)
        if pixels is None:
            tile = overlay_map(
                image,
                grids[name],
                cmap=cmap,
                alpha=_OPACITY,
                vmax=vmax,
                signed=signed,
            )
            pixels = Image.fromarray(tile)
        panel.paste(pixels, (left, head))
        draw.text((left, head - 2 * font_size - 2), name, fill="black", font=font)
        draw.text((left, head - font_size - 2), note, fill="black", font=font)
    # The colour bar: vmax at the top, 0 (or -vmax when signed) at the bottom.
    left = len(tiles) * (width + gap) + gap
    ramp = np.linspace(255, 0, height).astype(np.uint8)
    bar_pixels = np.repeat(_colormap(cmap)[ramp][:, None], bar, axis=1)
    panel.paste(Image.fromarray(bar_pixels), (left, head))
    bottom = f"{-vmax:.3g}" if signed else "0"
    labels = [(0, f"{vmax:.3g}"), (height - font_size, bottom)]
    if signed:
        labels.append(((height - font_size) // 2, "0"))
    for top, label in labels:
        draw.text((left + bar + 2, head + top), label, fill="black", font=font)
    return panel


def write_panel(path: Path, panel: Image.Image, dpi: int) -> None:
    """Save ``panel`` as a PNG at ``path``, atomically."""
    write_atomic(
        path,
        lambda file: panel.save(file, format="PNG", dpi=(dpi, dpi), compress_level=1),
    )


class PanelWriter:
    """Draws and writes panels in one background thread, off the model's path.

    ``submit`` queues a job and returns at once unless ``max_pending`` jobs are
    waiting (then it waits for the oldest, so memory stays bounded). A job's
    ``done`` callback runs after its file is in place, whether it failed or not;
    a failed job is reported on stderr and counted in ``failures``.
    """

    def __init__(self, max_pending: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panels")
        self._pending: list[Future] = []
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self.failures = 0

    def submit(self, job: Callable[[], None], done: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except Exception as exc:
                with self._lock:
                    self.failures += 1
                print(f"panel not written: {exc}", file=sys.stderr)
            finally:
                done()

        self._pending = [future for future in self._pending if not future.done()]
        if len(self._pending) >= self._max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(run))

    def close(self) -> None:
        """Finish every queued panel (also on interrupt: each is milliseconds)."""
        self._pool.shutdown(wait=True)

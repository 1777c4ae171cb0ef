"""Images in, float RGB arrays out: scikit-learn's image convention made uniform."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "load_images"]

# The one list of file suffixes read as images (lower case; compare with
# ``path.suffix.lower()``): every folder walk in the package reads it from here.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"
)


def _size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as (height, width), validated."""
    if isinstance(image_size, (int, np.integer)):
        pair = (int(image_size), int(image_size))
    else:
        pair = tuple(int(s) for s in image_size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(
            f"image_size must be a positive int or a (height, width) pair; got "
            f"{image_size!r}."
        )
    return pair


def _read_file(path: Path) -> np.ndarray:
    """One image file as an RGB uint8 array (grey and RGBA converted)."""
    try:
        with Image.open(path) as image:
            return _pil_to_array(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"Could not read {str(path)!r} as an image ({exc}); pass image files "
            f"PIL can open ({', '.join(IMAGE_SUFFIXES)})."
        ) from None


def _pil_to_array(image: Image.Image) -> np.ndarray:
    # convert("RGB") drops alpha and repeats grey; 16-bit and float modes go via "RGB".
    return np.asarray(image.convert("RGB"))


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"Folder {str(folder)!r} holds no image files (looked for "
            f"{', '.join(IMAGE_SUFFIXES)}); pass a folder of images or a list of files."
        )
    return files


def _as_float_rgb(array: np.ndarray, where: str) -> np.ndarray:
    """One (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as float32 RGB in [0, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{where} has shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
            f"or (H, W, 4) (channels last, like sklearn.datasets.load_sample_images)."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{where} is empty (shape {array.shape}); pass non-empty images."
        )
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(
            f"{where} has dtype {array.dtype}; pass uint8 (0-255) or float (0-1) "
            f"images."
        )
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype != np.uint8 and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"{where} is an integer image with values outside 0-255; pass uint8 "
                f"images or floats scaled to [0, 1]."
            )
        image = array.astype(np.float32) / np.float32(255)
    else:
        if not np.isfinite(array).all():
            raise ValueError(
                f"{where} contains NaN or infinite values; fill or drop those pixels "
                f"before extracting attention."
            )
        lo, hi = float(array.min()), float(array.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{where} is a float image with values in [{lo:.4g}, {hi:.4g}]; float "
                f"images must lie in [0, 1] (divide 0-255 data by 255)."
            )
        image = np.clip(array, 0, 1).astype(np.float32)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, anti-aliased resize of one (H, W, 3) float image (stays in [0, 1])."""
    if image.shape[:2] == size:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    resized = F.interpolate(
        tensor, size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0].permute(1, 2, 0).numpy()


def _split_sources(sources: Any) -> list[tuple[Any, str]]:
    """Each image source with a name for error messages."""
    if isinstance(sources, (str, os.PathLike)):
        path = Path(sources)
        if path.is_dir():
            return [(p, f"image {str(p)!r}") for p in _folder_files(path)]
        return [(path, f"image {str(path)!r}")]
    if isinstance(sources, Image.Image):
        return [(sources, "the image")]
    if isinstance(sources, np.ndarray):
        if sources.ndim not in (3, 4):
            raise ValueError(
                f"An image array must have shape (n, H, W) or (n, H, W, C); got shape "
                f"{sources.shape}. For one image use X[None]."
            )
        return [(image, f"image {i}") for i, image in enumerate(sources)]
    if isinstance(sources, Sequence) or hasattr(sources, "__iter__"):
        return [(source, f"image {i}") for i, source in enumerate(sources)]
    raise TypeError(
        f"Cannot read images from a {type(sources).__name__}; pass an array "
        f"(n, H, W[, C]), a list of arrays / PIL images / paths, or a folder path."
    )


def load_images(
    sources: Any, image_size: int | Sequence[int] | None = None
) -> np.ndarray | list[np.ndarray]:
    """Load images as float32 RGB arrays in [0, 1], channels last.

    Follows scikit-learn's image convention
    (``sklearn.datasets.load_sample_images().images``): grey images get three
    equal channels, an alpha channel is dropped, uint8 is scaled by 1/255.
    The inputs are never modified.

    Parameters
    ----------
    sources : array-like, list, str or path
        An array ``(n, H, W)`` or ``(n, H, W, C)`` (C = 1, 3 or 4) of uint8
        (0-255) or float (0-1) images; a list of such single-image arrays, PIL
        images or file paths, of any sizes; one file path; or a folder path, whose
        image files are read in sorted order.
    image_size : int or (int, int), default=None
        Resize every image to this (height, width) (bilinear, anti-aliased).
        ``None`` keeps the sizes.

    Returns
    -------
    images : ndarray of shape (n, H, W, 3) or list of ndarray
        float32 in [0, 1]. A list of ``(H_i, W_i, 3)`` arrays when the sizes
        differ and ``image_size`` is None.

    Raises
    ------
    ValueError
        Empty input, NaN or out-of-range values, wrong shapes, files that are
        not images, folders without images.
    TypeError
        Unsupported dtypes or source types.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb import load_images
    >>> grey = np.zeros((2, 20, 30), dtype=np.uint8)
    >>> load_images(grey, image_size=16).shape
    (2, 16, 16, 3)
    >>> [im.shape for im in load_images([np.ones((8, 8, 4)), np.ones((4, 6, 3))])]
    [(8, 8, 3), (4, 6, 3)]
    """
    size = None if image_size is None else _size_pair(image_size)
    named_sources = _split_sources(sources)
    if not named_sources:
        raise ValueError("No images were given (empty input); pass at least one image.")
    images = []
    for source, where in named_sources:
        if isinstance(source, (str, os.PathLike)):
            array = _read_file(Path(source))
        elif isinstance(source, Image.Image):
            array = _pil_to_array(source)
        else:
            array = np.asarray(source)
            if array.dtype == object:
                raise TypeError(
                    f"{where} is not a numeric array, PIL image or path; got "
                    f"{type(source).__name__}."
                )
        image = _as_float_rgb(array, where)
        images.append(image if size is None else _resize(image, size))
    if len({image.shape for image in images}) > 1:
        return images
    return np.stack(images)

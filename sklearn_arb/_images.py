"""Images in, float RGB arrays out: scikit-learn's image convention made uniform."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "as_float_rgb",
    "image_files",
    "load_images",
    "size_pair",
]

# The one list of file suffixes read as images (lower case; compare with
# ``path.suffix.lower()``): every folder walk in the package reads it from here.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
)


InRange: TypeAlias = Literal["dtype", "image"] | tuple[float, float]

# The values an image type maps to [0, 1] with in_range="dtype": the depths PIL
# reads (8-bit, 16-bit) and floats. Other integer types are handled apart.
_DTYPE_RANGES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.uint8): (0.0, 255.0),
    np.dtype(np.uint16): (0.0, 65535.0),
}


def size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as (height, width), validated.

    Parameters
    ----------
    image_size : int or (int, int)
        A square side, or (height, width); positive.

    Returns
    -------
    size : (int, int)

    Examples
    --------
    >>> from sklearn_arb._images import size_pair
    >>> size_pair(224), size_pair((224, 320))
    ((224, 224), (224, 320))
    """
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


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file opened by PIL (pixels not yet decoded), with a missing or
    unreadable file said in one line."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"Could not read {str(path)!r} as an image ({exc}); pass image files "
            f"PIL can open ({', '.join(IMAGE_SUFFIXES)})."
        ) from None


def _read_file(path: Path) -> np.ndarray:
    """One image file as an RGB uint8 array (grey and RGBA converted)."""
    with _opened(path) as image:
        return _pil_to_array(image)


def file_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """The (height, width) of an image file, read from its header.

    Parameters
    ----------
    path : str or path-like
        An image file PIL can open.

    Returns
    -------
    size : (int, int)
        Its height and width in pixels, as :func:`load_images` reads it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_arb._images import file_image_size
    >>> path = Path(tempfile.mkdtemp()) / "wide.png"
    >>> Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    >>> file_image_size(path)
    (20, 30)
    """
    with _opened(Path(path)) as image:
        width, height = image.size
    return height, width


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """One PIL image as an array of its own depth: 16-bit and float files keep their
    values (converting them to "RGB" would clip them to 8 bits)."""
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # big-endian "I;16B" to native
    if image.mode in ("L", "RGB", "I", "F"):
        return np.asarray(image)
    if image.mode in ("1", "LA", "La"):
        return np.asarray(image.convert("L"))
    # Palettes, alpha, CMYK, YCbCr, LAB, HSV: 8-bit modes PIL converts exactly.
    return np.asarray(image.convert("RGB"))


def image_files(folder: str | os.PathLike, skip: Path | None = None) -> list[Path]:
    """The image files under ``folder`` and its subfolders: the one meaning of
    a folder of images, for :func:`load_images`, the command line, Ray and the
    simulation study alike.

    Each folder's files in sorted order, then its subfolders' in sorted order;
    hidden files and folders (names starting with ``.``, such as the ``._*``
    files macOS leaves beside copies) are left out, and so is the folder
    ``skip`` (an output folder inside the input, say). A file is an image by
    its suffix (:data:`IMAGE_SUFFIXES`, any case).

    Parameters
    ----------
    folder : path-like
        The folder walked.
    skip : Path, default=None
        A folder left out, compared resolved.

    Returns
    -------
    files : list of Path
        Empty where there is none.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_arb._images import image_files
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.JPG", "._a.jpg", "notes.txt", "sub/c.png"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     (root / name).touch()
    >>> [str(p.relative_to(root)) for p in image_files(root)]
    ['a.JPG', 'b.png', 'sub/c.png']
    """
    files = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and Path(root, name).resolve() != skip
        )
        files.extend(
            Path(root, name)
            for name in sorted(names)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return files


def _folder_files(folder: Path) -> list[Path]:
    files = image_files(folder)
    if not files:
        raise ValueError(
            f"Folder {str(folder)!r} holds no image files (looked for "
            f"{', '.join(IMAGE_SUFFIXES)}); pass a folder of images or a list of files."
        )
    return files


def as_float_rgb(array: np.ndarray, where: str, in_range: InRange) -> np.ndarray:
    """One (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as float32 RGB in [0, 1].

    The reading of one image that :func:`load_images` applies to each: grey
    repeated to three channels, alpha dropped, values mapped to [0, 1] by
    ``in_range``. A new array; ``array`` is never modified.

    Parameters
    ----------
    array : ndarray
        One image, channels last.
    where : str
        What to call it in an error message, e.g. ``"image 3"``.
    in_range : {"dtype", "image"} or (float, float)
        As in :func:`load_images`.

    Returns
    -------
    image : ndarray of shape (H, W, 3), float32

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb._images import as_float_rgb
    >>> as_float_rgb(np.full((2, 2), 255, np.uint8), "grey", "dtype")[0, 0]
    array([1., 1., 1.], dtype=float32)
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        channels_first = array.ndim == 3 and array.shape[0] in (1, 3, 4)
        raise ValueError(
            f"{where} has shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
            f"or (H, W, 4) (channels last, like sklearn.datasets.load_sample_images)"
            + (
                "; for channels-first images pass X.transpose(0, 2, 3, 1)."
                if channels_first
                else "."
            )
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
            f"{where} has dtype {array.dtype}; pass uint8 (0-255), uint16 (0-65535) "
            f"or float (0-1) images."
        )
    array = array[:, :, :3]  # alpha dropped before any range is taken
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(
            f"{where} contains NaN or infinite values; fill or drop those pixels "
            f"before extracting attention."
        )
    low, high = _input_range(array, where, in_range)
    image = array.astype(np.float32)
    if (low, high) == (0.0, 1.0):
        image = np.clip(image, 0, 1, out=image)  # float rounding just outside [0, 1]
    elif high > low:
        image -= np.float32(low)
        image /= np.float32(high - low)
        np.clip(image, 0, 1, out=image)  # only a (low, high) window cuts values
    else:
        image[:] = 0  # a constant image under in_range="image"
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def _input_range(
    array: np.ndarray, where: str, in_range: InRange
) -> tuple[float, float]:
    """The input values mapped to 0 and 1 (see ``in_range`` in load_images)."""
    if not isinstance(in_range, str):
        return float(in_range[0]), float(in_range[1])
    if in_range == "image":
        return float(array.min()), float(array.max())
    if array.dtype in _DTYPE_RANGES:
        return _DTYPE_RANGES[array.dtype]
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.floating):
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{where} is a float image with values in [{lo:.4g}, {hi:.4g}]; float "
                f"images must lie in [0, 1] (divide 0-255 data by 255), or pass "
                f'in_range="image" (its own min and max) or a (low, high) window.'
            )
        return 0.0, 1.0
    # Other integer types (int64 from Python ints, PIL's 32-bit "I" files) carry
    # no image depth: read as 8-bit when the values fit, never guessed otherwise.
    if lo < 0 or hi > 255:
        raise ValueError(
            f"{where} is a {array.dtype} image with values in [{lo:.6g}, {hi:.6g}] "
            f'outside 0-255; pass in_range="image" (its own min and max) or a '
            f"(low, high) window, or cast 16-bit data to uint16."
        )
    return 0.0, 255.0


def _check_in_range(in_range: Any) -> InRange:
    if isinstance(in_range, str):
        if in_range in ("dtype", "image"):
            return in_range
    elif isinstance(in_range, Sequence) and len(in_range) == 2:
        try:
            low, high = float(in_range[0]), float(in_range[1])
        except (TypeError, ValueError):
            pass
        else:
            if np.isfinite([low, high]).all() and low < high:
                return low, high
    raise ValueError(
        f'in_range must be "dtype", "image" or a (low, high) pair of finite numbers '
        f"with low < high; got {in_range!r}."
    )


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
    if isinstance(sources, np.ndarray) or (
        hasattr(sources, "__array__") and hasattr(sources, "shape")
    ):
        sources = np.asarray(sources)  # a torch tensor iterates like an array
        check_batch_axis(sources.shape)
        return [(image, f"image {i}") for i, image in enumerate(sources)]
    if isinstance(sources, Sequence) or hasattr(sources, "__iter__"):
        return [(source, f"image {i}") for i, source in enumerate(sources)]
    raise TypeError(
        f"Cannot read images from a {type(sources).__name__}; pass an array "
        f"(n, H, W[, C]), a list of arrays / PIL images / paths, or a folder path."
    )


def check_batch_axis(shape: tuple[int, ...]) -> None:
    """Raise a ValueError unless ``shape`` is a batch of images, (n, H, W[, C]).

    A 3-D shape ending in 1, 3 or 4 is refused as ambiguous: one (H, W, C) image
    or n grey images 1, 3 or 4 pixels wide? The caller says which.

    Examples
    --------
    >>> from sklearn_arb._images import check_batch_axis
    >>> check_batch_axis((2, 32, 32, 3)), check_batch_axis((2, 32, 32))
    (None, None)
    >>> check_batch_axis((427, 640, 3))
    Traceback (most recent call last):
    ...
    ValueError: An image array of shape (427, 640, 3) is ambiguous: ...
    """
    if len(shape) not in (3, 4):
        raise ValueError(
            f"An image array must have shape (n, H, W) or (n, H, W, C); got shape "
            f"{shape}. For one image use X[None]."
        )
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        raise ValueError(
            f"An image array of shape {shape} is ambiguous: one image with "
            f"{shape[2]} channels, or {shape[0]} grey images {shape[2]} pixels wide? "
            "For one image pass X[None]; for grey images pass X[..., None]."
        )


def load_images(
    sources: Any,
    image_size: int | Sequence[int] | None = None,
    *,
    in_range: InRange = "dtype",
) -> np.ndarray | list[np.ndarray]:
    """Load images as float32 RGB arrays in [0, 1], channels last.

    Follows scikit-learn's image convention
    (``sklearn.datasets.load_sample_images().images``): grey images get three
    equal channels, an alpha channel is dropped, uint8 is scaled by 1/255.
    Files keep their bit depth: a 16-bit PNG or TIFF reads as its uint16 values,
    a float TIFF as its floats, so an array and a file holding the same values
    load to the same image. The inputs are never modified.

    Parameters
    ----------
    sources : array-like, list, str or path
        An array ``(n, H, W)`` or ``(n, H, W, C)`` (C = 1, 3 or 4) of images; a
        list of such single-image arrays ``(H, W)`` or ``(H, W, C)``, PIL images
        or file paths, of any sizes; one file path; or a folder path, whose image
        files (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp) are read with
        its subfolders' in sorted order, hidden files left out
        (:func:`image_files`). A 3-D array whose
        last axis is 1, 3 or 4 could be one image or grey images a few pixels
        wide, and raises a ValueError: pass ``X[None]`` for one image,
        ``X[..., None]`` for grey images.
    image_size : int or (int, int), default=None
        Resize every image to this (height, width) (bilinear, anti-aliased).
        ``None`` keeps the sizes.
    in_range : {"dtype", "image"} or (float, float), default="dtype"
        The input values mapped to 0 and 1 (as in scikit-image's
        ``rescale_intensity``).

        - ``"dtype"``: the range of the image's type, the same for every image:
          uint8 0-255 (8-bit files), uint16 0-65535 (16-bit files; a 12-bit CT
          scan then lies in [0, 0.0625]), float 0-1 (float files; values outside
          raise). Other integer types (such as 32-bit integer files) have no image
          depth: values in 0-255 are read as 8-bit, others raise and name the
          options below.
        - ``"image"``: each image's own minimum and maximum (over its colour
          channels together), stretching its contrast to the full range; a
          constant image becomes zeros. Images are then no longer comparable in
          brightness.
        - ``(low, high)``: a window, e.g. of CT values: ``low`` maps to 0,
          ``high`` to 1, values outside are clipped.

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
    >>> ramp = np.arange(0, 4096, 16, dtype=np.uint16).reshape(1, 16, 16)  # 12-bit
    >>> round(float(load_images(ramp)[0, -1, -1, 0]), 5)  # 4080 / 65535
    0.06226
    >>> float(load_images(ramp, in_range="image")[0, -1, -1, 0])  # 4080 / 4080
    1.0
    """
    size = None if image_size is None else size_pair(image_size)
    in_range = _check_in_range(in_range)
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
        image = as_float_rgb(array, where, in_range)
        images.append(image if size is None else _resize(image, size))
    if len({image.shape for image in images}) > 1:
        return images
    return np.stack(images)

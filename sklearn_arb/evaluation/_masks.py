"""Ground truth for localisation: bounding boxes as token masks."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path, PurePath

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from .._images import file_image_size, size_pair
from ..datasets import pixel_to_token_masks

__all__ = [
    "boxes_of_files",
    "boxes_to_token_masks",
    "model_boxes_of_files",
    "read_boxes",
    "token_masks_for_files",
]

BOX_COLUMNS = (
    "file",
    "class_index",
    "original_width",
    "original_height",
    "x0",
    "y0",
    "x1",
    "y1",
)


def read_boxes(path: str | os.PathLike) -> Bunch:
    """Read bounding boxes from a CSV file, one row per box.

    The columns are ``file`` (the image's path relative to the image folder, with
    ``/`` separators), ``class_index`` (the ImageNet-1k class of the box),
    ``original_width`` and ``original_height`` (the size of the image the boxes
    were drawn on), and ``x0, y0, x1, y1``: the box's left, top, right and bottom
    edges in the pixels of the file itself, whatever its size (x to the right,
    y down, from the image's top-left corner). An image can have several boxes.

    Parameters
    ----------
    path : str or path-like
        The CSV file.

    Returns
    -------
    boxes : Bunch
        ``file`` (n_boxes,) str, ``class_index`` (n_boxes,) int,
        ``original_size`` (n_boxes, 2) int (width, height), ``boxes``
        (n_boxes, 4) float ``x0, y0, x1, y1``; ``files``, the distinct files in
        the order they first appear.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_arb.evaluation import read_boxes
    >>> csv_path = Path(tempfile.mkdtemp()) / "boxes.csv"
    >>> _ = csv_path.write_text(
    ...     "file,class_index,original_width,original_height,x0,y0,x1,y1\\n"
    ...     "a/1.JPEG,0,500,375,10,20,100,200\\n"
    ...     "a/1.JPEG,0,500,375,150,20,200,60\\n"
    ...     "b/2.JPEG,7,640,480,0,0,224,224\\n"
    ... )
    >>> boxes = read_boxes(csv_path)
    >>> boxes.files, boxes.boxes.shape
    (['a/1.JPEG', 'b/2.JPEG'], (3, 4))
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(
                    f"{str(path)!r} lacks the column(s) {missing}; a boxes file has "
                    f"the header {','.join(BOX_COLUMNS)}."
                )
            rows = list(reader)
    except FileNotFoundError:
        raise FileNotFoundError(f"Boxes file {str(path)!r} does not exist.") from None
    try:
        boxes = np.array(
            [[float(row[c]) for c in ("x0", "y0", "x1", "y1")] for row in rows],
            dtype=np.float64,
        ).reshape(-1, 4)
        class_index = np.array([int(row["class_index"]) for row in rows], dtype=int)
        original_size = np.array(
            [[int(row["original_width"]), int(row["original_height"])] for row in rows],
            dtype=int,
        ).reshape(-1, 2)
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r} holds a value that is not a number ({exc}); the box "
            "columns must be numbers and class_index an integer."
        ) from None
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ValueError(
            f"{str(path)!r} holds a box with x1 < x0, y1 < y0 or a non-finite "
            "edge; each row must give the left, top, right and bottom edges."
        )
    files = [row["file"] for row in rows]
    return Bunch(
        file=np.asarray(files, dtype=object),
        class_index=class_index,
        original_size=original_size,
        boxes=boxes,
        files=list(dict.fromkeys(files)),
    )


def _box_pixel_mask(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The union of ``boxes`` (n_boxes, 4) as a boolean (height, width) pixel
    mask: a pixel is inside when its centre lies in a box, edges included."""
    x_centres = np.arange(size[1]) + 0.5
    y_centres = np.arange(size[0]) + 0.5
    inside_x = (x_centres >= boxes[:, :1]) & (x_centres <= boxes[:, 2:3])
    inside_y = (y_centres >= boxes[:, 1:2]) & (y_centres <= boxes[:, 3:4])
    return (inside_y[:, :, np.newaxis] & inside_x[:, np.newaxis, :]).any(axis=0)


def boxes_to_token_masks(
    boxes: Sequence[ArrayLike],
    image_size: int | tuple[int, int],
    patch_size: int,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Token masks of the union of each image's boxes.

    Overlap rule, in two steps: a pixel (the unit square ``[c, c + 1) x [r,
    r + 1)`` of column c and row r) is inside when its centre ``(c + 1/2,
    r + 1/2)`` lies in one of the image's boxes (edges included); then a token
    (one ``patch_size`` x ``patch_size`` patch) is inside when at least
    ``min_fraction`` of its pixels are, as
    :func:`~sklearn_arb.datasets.pixel_to_token_masks` decides. Tokens are in
    row-major order of the patch grid, the order of the extractor's maps.

    Parameters
    ----------
    boxes : sequence of array-like of shape (n_boxes_i, 4)
        For each image, its boxes ``x0, y0, x1, y1`` in the pixels of the image
        of ``image_size`` the model sees; an image may have no box.
    image_size : int or (int, int)
        The model's image side, or (height, width); multiples of ``patch_size``.
    patch_size : int
        Side of the model's square patches, in pixels.
    min_fraction : float in (0, 1], default=0.5
        Smallest share of a patch's pixels inside a box for the token to be
        inside.

    Returns
    -------
    token_masks : ndarray of shape (n_images, n_tokens), bool
        ``n_tokens = (height // patch_size) * (width // patch_size)``.

    Examples
    --------
    >>> from sklearn_arb.evaluation import boxes_to_token_masks
    >>> masks = boxes_to_token_masks([[[0, 0, 8, 4]]], image_size=8, patch_size=4)
    >>> masks.reshape(2, 2)  # the box covers the top two patches
    array([[ True,  True],
           [False, False]])
    >>> boxes_to_token_masks([[[0, 0, 8, 2]]], 8, 4, min_fraction=0.75).any()
    np.False_
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1]; got {min_fraction}.")
    size = size_pair(image_size)
    pixel_masks = np.empty((len(boxes), *size), dtype=bool)
    for index, image_boxes in enumerate(boxes):
        image_boxes = np.asarray(image_boxes, dtype=np.float64)
        if image_boxes.size and (image_boxes.ndim != 2 or image_boxes.shape[1] != 4):
            raise ValueError(
                f"The boxes of image {index} have shape {image_boxes.shape}; give "
                "each image an array of shape (n_boxes, 4) of x0, y0, x1, y1."
            )
        pixel_masks[index] = _box_pixel_mask(image_boxes.reshape(-1, 4), size)
    return pixel_to_token_masks(pixel_masks, patch_size, min_fraction=min_fraction)


def _file_key(file: str | os.PathLike, known: dict[str, list[int]]) -> str | None:
    """The boxes file's name of ``file``: its longest trailing part that names a
    file with boxes (so absolute paths and paths relative to the folder match)."""
    parts = PurePath(os.fspath(file)).parts
    for start in range(len(parts)):
        key = "/".join(parts[start:])
        if key in known:
            return key
    return None


def boxes_of_files(files: Sequence[str | os.PathLike], boxes: Bunch) -> Bunch:
    """The boxes and class of each of ``files``, in the order of ``files``.

    A file matches the boxes file's ``file`` its path ends with, so absolute
    paths, paths relative to the image folder and the folder's own names all
    match; a file without boxes is a clear ValueError.

    Parameters
    ----------
    files : sequence of str or path-like
        Image files, e.g. those given to the extractor.
    boxes : Bunch
        :func:`read_boxes`' result.

    Returns
    -------
    file_boxes : Bunch
        ``boxes``, a list of one (n_boxes_i, 4) array per file, in the file's
        pixels; ``class_index`` (n_files,), the class of the
        file's first box (an ImageNet image's boxes all have its class), e.g.
        the target of a faithfulness curve.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_arb.evaluation import boxes_of_files, read_boxes
    >>> csv_path = Path(tempfile.mkdtemp()) / "boxes.csv"
    >>> _ = csv_path.write_text(
    ...     "file,class_index,original_width,original_height,x0,y0,x1,y1\\n"
    ...     "a/1.JPEG,3,500,375,0,0,112,224\\n"
    ...     "a/1.JPEG,3,500,375,150,20,200,60\\n"
    ... )
    >>> found = boxes_of_files(["/data/a/1.JPEG"], read_boxes(csv_path))
    >>> found.class_index, found.boxes[0].shape
    (array([3]), (2, 4))
    """
    rows_of: dict[str, list[int]] = {}
    for row, file in enumerate(boxes.file):
        rows_of.setdefault(file, []).append(row)
    keys = [_file_key(file, rows_of) for file in files]
    missing = [
        os.fspath(file) for file, key in zip(files, keys, strict=True) if key is None
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} file(s) have no box in the boxes file, e.g. "
            f"{missing[:3]}; pass only images with boxes (the boxes' files)."
        )
    return Bunch(
        boxes=[boxes.boxes[rows_of[key]] for key in keys],
        class_index=np.array(
            [boxes.class_index[rows_of[key][0]] for key in keys], dtype=int
        ),
    )


def model_boxes_of_files(
    files: Sequence[str | os.PathLike],
    boxes: Bunch,
    image_size: int | tuple[int, int],
) -> list[np.ndarray]:
    """The boxes of ``files`` in the pixels of the image the model sees.

    Each file's boxes, matched as :func:`boxes_of_files` does, are scaled from
    the file's own size (read from its header) to ``image_size``, x and y apart:
    the extractor resizes a file to ``image_size`` without cropping.

    Parameters
    ----------
    files : sequence of str or path-like
        Image files with boxes, e.g. those given to the extractor.
    boxes : Bunch
        :func:`read_boxes`' result.
    image_size : int or (int, int)
        The model's image side, or (height, width) (the extractor's
        ``image_size_``).

    Returns
    -------
    model_boxes : list of ndarray of shape (n_boxes_i, 4)
        ``x0, y0, x1, y1`` of each file's boxes in the model's pixels.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_arb.evaluation import model_boxes_of_files, read_boxes
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(folder / "1.png")
    >>> _ = (folder / "boxes.csv").write_text(
    ...     "file,class_index,original_width,original_height,x0,y0,x1,y1\\n"
    ...     "1.png,0,200,100,100,0,200,50\\n"
    ... )
    >>> boxes = read_boxes(folder / "boxes.csv")
    >>> model_boxes_of_files([folder / "1.png"], boxes, 32)  # the top right
    [array([[16.,  0., 32., 16.]])]
    """
    height, width = size_pair(image_size)
    model_boxes = []
    for file, file_boxes in zip(files, boxes_of_files(files, boxes).boxes, strict=True):
        file_height, file_width = file_image_size(file)
        scale = np.array([width / file_width, height / file_height] * 2)
        model_boxes.append(file_boxes * scale)
    return model_boxes


def token_masks_for_files(
    files: Sequence[str | os.PathLike],
    boxes: Bunch,
    *,
    image_size: int | tuple[int, int],
    patch_size: int,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Token masks of the boxes of ``files``, in the order of ``files``.

    The boxes are brought to the model's pixels by
    :func:`model_boxes_of_files` (each file's size is read from the file), then
    turned into token masks by :func:`boxes_to_token_masks`, whose overlap rule
    applies.

    Parameters
    ----------
    files : sequence of str or path-like
        Image files with boxes, e.g. those given to the extractor.
    boxes : Bunch
        :func:`read_boxes`' result.
    image_size : int or (int, int)
        The model's image side, or (height, width) (the extractor's
        ``image_size_``).
    patch_size : int
        The model's patch size.
    min_fraction : float in (0, 1], default=0.5
        See :func:`boxes_to_token_masks`.

    Returns
    -------
    token_masks : ndarray of shape (n_files, n_tokens), bool

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_arb.evaluation import read_boxes, token_masks_for_files
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(folder / "1.png")
    >>> _ = (folder / "boxes.csv").write_text(
    ...     "file,class_index,original_width,original_height,x0,y0,x1,y1\\n"
    ...     "1.png,0,500,375,0,0,112,224\\n"
    ... )
    >>> masks = token_masks_for_files(
    ...     [folder / "1.png"], read_boxes(folder / "boxes.csv"),
    ...     image_size=32, patch_size=16,
    ... )
    >>> masks  # the box is the left half: tokens 0 and 2 of the 2 x 2 grid
    array([[ True, False,  True, False]])
    """
    return boxes_to_token_masks(
        model_boxes_of_files(files, boxes, image_size),
        image_size,
        patch_size,
        min_fraction,
    )

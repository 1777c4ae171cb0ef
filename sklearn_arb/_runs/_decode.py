"""A batch of images read and resized for the model, each given as a file
path, an array or a file's bytes; an image that cannot be read is its error,
not an exception (the Ray engine's read tasks)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._images import load_images
from ._errors import first_line
from ._loader import IMAGE_ERRORS


def decode_batch(
    batch: dict[str, np.ndarray],
    column: str,
    key_column: str,
    image_size: tuple[int, int],
    done: frozenset[str],
    cwd: str,
) -> dict[str, np.ndarray]:
    """The images of a batch not yet ``done``, read and resized: the model's
    inputs, or per image the error that kept it from being read.

    Parameters
    ----------
    batch : dict of str to ndarray
        A batch of rows: ``batch[column]`` the images (paths, arrays of shape
        (H, W) or (H, W, C), or file contents as bytes), ``batch[key_column]``
        their keys.
    column, key_column : str
        The columns of images and keys.
    image_size : (int, int)
        The model's input size; every image is resized to it.
    done : frozenset of str
        Keys left out (their results exist).
    cwd : str
        The folder relative paths are read from (the caller's), where it exists.

    Returns
    -------
    decoded : dict of str to ndarray
        ``key`` (object), ``image`` (float32, (n, H, W, 3); zeros where
        unreadable) and ``error`` (object: "" or the one-line reason).

    Examples
    --------
    >>> import os
    >>> import numpy as np
    >>> from sklearn_arb._runs import decode_batch
    >>> batch = {"key": np.array(["a", "b"], dtype=object),
    ...          "image": np.array([np.zeros((8, 8, 3), np.uint8), b"junk"],
    ...                            dtype=object)}
    >>> out = decode_batch(batch, "image", "key", (4, 4), frozenset(), os.getcwd())
    >>> out["image"].shape, out["error"][0], out["error"][1][:23]
    ((2, 4, 4, 3), '', 'cannot identify image f')
    """
    if os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)  # relative paths, and their messages, as the caller has them
    keys, images, errors = [], [], []
    for key, image in zip(batch[key_column], batch[column], strict=True):
        key = str(key)
        if key in done:
            continue
        try:
            if isinstance(image, (str, os.PathLike)):
                source: Any = Path(image)
            elif isinstance(image, bytes):  # a file's content (read_binary_files)
                source = [Image.open(io.BytesIO(image))]
            else:
                source = np.asarray(image)[np.newaxis]
            images.append(load_images(source, image_size=image_size)[0])
            errors.append("")
        except IMAGE_ERRORS as exc:
            images.append(np.zeros((*image_size, 3), dtype=np.float32))
            errors.append(first_line(exc))
        keys.append(key)
    return {
        "key": np.array(keys, dtype=object),
        "image": np.stack(images)
        if images
        else np.zeros((0, *image_size, 3), dtype=np.float32),
        "error": np.array(errors, dtype=object),
    }

"""A run's inputs: image files and folders (walked by :func:`~sklearn_arb.
_images.image_files`, as everywhere), or arrays; and the shard of them a job
takes.

An image belongs to shard ``xxh3_64(its result key) mod N``: the key is its path
relative to the working directory (see :func:`._store.output_key`), so every job
of an array that starts in the same folder with the same arguments makes the
same split, whatever the order or number of the files the others see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from .._images import IMAGE_SUFFIXES, image_files
from ..backbone import file_digest
from ._errors import RunError
from ._store import array_digest, output_key


@dataclass
class Input:
    """One image to regularize: where it comes from and how to read it."""

    source: str  # for messages and the summary
    key: Path  # where its results go, relative to the output folder
    image: Path | np.ndarray  # a file, or one image as a batch of one

    def digest(self) -> str:
        """Of the file's bytes, or of the array."""
        if isinstance(self.image, Path):
            return file_digest(self.image)
        return array_digest(self.image)


def file_inputs(sources: Sequence[Path], output: Path) -> list[Input]:
    """Files, and the image files of folders, in the order given, each once;
    the output folder ``output`` is never read as input."""
    skip = output.resolve()
    files: dict[Path, None] = {}
    for source in sources:
        if source.is_dir():
            found = image_files(source, skip)
            if not found:
                raise RunError(
                    f"no image files in {source} or its subfolders (looked for "
                    f"{', '.join(IMAGE_SUFFIXES)}); pass image files or folders of "
                    "them"
                )
            files.update(dict.fromkeys(found))
        elif source.is_file():
            files[source] = None
        else:
            raise RunError(f"no such file or folder: {source}")
    return [Input(source=str(path), key=output_key(path), image=path) for path in files]


def shard_of(key: Path, count: int) -> int:
    """The shard, out of ``count``, of the image whose results go to ``key``."""
    return xxhash.xxh3_64_intdigest(key.as_posix().encode()) % count


def in_shard(keys: list[Path], selected: tuple[int, int] | None) -> list[bool]:
    """Whether each key is in the ``(K, N)`` shard; all when ``selected`` is None."""
    if selected is None:
        return [True] * len(keys)
    index, count = selected
    return [shard_of(key, count) == index for key in keys]

"""Per-image results as Parquet files that are never half-written.

An output folder holds ``part-<digest>.parquet`` files, one per batch of images,
each named by the digest of its image keys and written under a hidden temporary
name renamed into place: a file either is complete or is not there. A crash
leaves at most hidden temporary files, which readers (pyarrow, pandas, Ray Data
skip names starting with ``.``) ignore and the next run removes. Each file's
schema metadata records the settings that made it, so a rerun with other
settings is refused instead of mixing results.

pyarrow (a dependency of ``ray[data]``) is imported when a function needs it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

__all__ = [
    "SETTINGS_KEY",
    "read_keys",
    "read_results",
    "remove_temporary_files",
    "write_results",
]

SETTINGS_KEY = b"sklearn_arb.settings"
_PATTERN = "part-*.parquet"
_TEMPORARY = ".part-*.tmp"


def _list_array(matrix: np.ndarray) -> Any:
    """Rows of a 2-D array as an Arrow fixed-size list column."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.reshape(-1)), matrix.shape[1]
    )


def write_results(
    output: Path, keys: Iterable[str], columns: dict[str, np.ndarray], settings: str
) -> Path:
    """Write one batch of results atomically; its path.

    ``columns``: per image a scalar (1-D array) or a row (2-D array, stored as a
    list column). The file is named by the digest of the sorted ``keys``, so the
    same batch always lands in the same file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = [str(key) for key in keys]
    arrays = {"key": pa.array(keys, type=pa.string())}
    for name, values in columns.items():
        values = np.asarray(values)
        arrays[name] = _list_array(values) if values.ndim == 2 else pa.array(values)
    table = pa.table(arrays).replace_schema_metadata({SETTINGS_KEY: settings})
    name = xxhash.xxh3_128_hexdigest("\n".join(sorted(keys)).encode())
    path = output / f"part-{name}.parquet"
    temporary = output / f".part-{name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "wb") as file:
            pq.write_table(table, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def remove_temporary_files(output: Path) -> int:
    """Remove what an interrupted run left half-written; how many files."""
    removed = 0
    for path in output.glob(_TEMPORARY):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def read_keys(output: Path, settings: str | None = None) -> set[str]:
    """The image keys already in ``output`` (only that column is read).

    With ``settings``, a file written with other settings is a ValueError.
    """
    import pyarrow.parquet as pq

    keys: set[str] = set()
    for path in sorted(output.glob(_PATTERN)):
        file = pq.ParquetFile(path)
        stored = (file.schema_arrow.metadata or {}).get(SETTINGS_KEY, b"").decode()
        if settings is not None and stored != settings:
            raise ValueError(
                f"{path} holds results of other settings than this run's "
                f"({_difference(stored, settings)}); pass another output folder, "
                "or remove its part-*.parquet files to start again."
            )
        keys.update(file.read(columns=["key"]).column("key").to_pylist())
    return keys


def _difference(stored: str, settings: str) -> str:
    """The settings that differ, named (for the error message)."""
    try:
        old, new = json.loads(stored), json.loads(settings)
    except ValueError:
        return "unreadable settings"
    names = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return "differ in " + ", ".join(names)


def read_results(output: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every image's results in ``output``: key -> column name -> array."""
    import pyarrow.parquet as pq

    results = {}
    for path in sorted(output.glob(_PATTERN)):
        table = pq.read_table(path)
        columns = {name: table.column(name) for name in table.column_names}
        for i, key in enumerate(columns.pop("key").to_pylist()):
            results[key] = {
                name: np.asarray(column[i].as_py()) for name, column in columns.items()
            }
    return results

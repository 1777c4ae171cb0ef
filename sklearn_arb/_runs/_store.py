"""The output folder of ``regularize``: per-image results that are never lost.

Each input's results live at its own path in the output tree
(``<output>/<input path>.npz`` and ``.png``), so inputs never collide. A result is
done when its ``.npz`` records the digest of the input's bytes and of the settings
that made it; anything else (another image at that path, an image edited in
place, other settings) is computed again.

Every file is written through a hidden ``.partial`` file renamed into place, while
the writer holds the result's claim: a lock file that the operating system
releases when its process dies. So two processes on one folder never compute the
same image, and a ``.partial`` file whose claim nobody holds is what a killed run
left behind, removed by the next run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, claims always succeed
    fcntl = None

SUMMARY = "summary.csv"
_PARTIAL = ".partial"


def array_digest(array: np.ndarray) -> str:
    """xxh3-128 of an array's shape, dtype and values."""
    array = np.ascontiguousarray(array)
    header = f"{array.shape}|{array.dtype.str}|".encode()
    return xxhash.xxh3_128_hexdigest(header + array.tobytes())


def output_key(path: Path) -> Path:
    """Where an input file's results go, relative to the output folder: its path
    relative to the working directory, or its absolute path without the root when
    it lies elsewhere (as ``tar`` stores paths)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return absolute.relative_to(absolute.anchor)


class Claim:
    """An exclusive, non-blocking claim on one result ``key`` in ``folder``.

    A hidden ``.<key>.lock`` file locked with ``flock``: the lock dies with its
    process, so a killed run's claims are free at once, and removed on release.
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.path = folder / f".{key}.lock"
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        """Take the claim; False when another live process holds it."""
        if fcntl is None:
            return True
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            # The holder before us may have removed the file we locked: then our
            # lock guards nothing, and we try again on the path's current file.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self._fd = fd
                    return True
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def held(folder: Path, key: str) -> Iterator[None]:
    """Hold the claim on ``key``, waiting for it."""
    claim = Claim(folder, key)
    claim.acquire(wait=True)
    try:
        yield
    finally:
        claim.release()


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a hidden ``.partial`` file beside ``path``, then
    rename it onto ``path``; the file gets the permissions the umask gives."""
    temporary = path.parent / f".{path.name}~{secrets.token_hex(4)}{_PARTIAL}"
    try:
        # os.open applies the umask (0644 usually), unlike mkstemp's 0600.
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, mode) as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_stale_partials(output: Path) -> int:
    """Remove the ``.partial`` files of dead runs under ``output``; their count."""
    removed = 0
    for temporary in output.rglob(f".*{_PARTIAL}"):
        target = temporary.name[1 : -len(_PARTIAL)].rsplit("~", 1)[0]
        claim = Claim(temporary.parent, _claim_key(target))
        if claim.acquire():
            try:
                temporary.unlink(missing_ok=True)
                removed += 1
            finally:
                claim.release()
    return removed


def _claim_key(file_name: str) -> str:
    """The claim that guards writes of ``file_name``: its name without the
    result's suffix (``a.jpg.npz`` and ``a.jpg.png`` share ``a.jpg``)."""
    return file_name.rsplit(".", 1)[0]


class Result:
    """The files of one input's result: ``<folder>/<name>.npz`` and ``.png``."""

    def __init__(self, output: Path, key: Path) -> None:
        self.key = key
        self.folder = output / key.parent
        self.npz = self.folder / f"{key.name}.npz"
        self.png = self.folder / f"{key.name}.png"
        self.claim = Claim(self.folder, key.name)

    def stored(self, digest: str) -> dict | None:
        """The stored arrays when the ``.npz`` was made from ``digest``, else None."""
        try:
            with np.load(self.npz) as stored:
                if str(stored["digest"]) != digest:
                    return None
                return dict(stored)
        except (OSError, KeyError, ValueError, EOFError):
            return None  # absent, of an older layout, or damaged: recomputed

    def remove(self) -> None:
        """Remove the ``.npz`` and panel (under the claim): of an input that
        can no longer be read, they describe bytes that are gone."""
        self.npz.unlink(missing_ok=True)
        self.png.unlink(missing_ok=True)

    def write(self, arrays: dict[str, Any]) -> None:
        """Write the ``.npz``; a panel of the result it replaces goes first, so
        that a run killed before the new panel leaves none (then drawn on rerun)
        rather than a wrong one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.png.unlink(missing_ok=True)
        write_atomic(self.npz, lambda file: np.savez(file, **arrays))


def read_summary_rows(output: Path) -> dict[str, dict]:
    """The summary row of every result under ``output``, by ``.npz`` path."""
    rows = {}
    for npz in sorted(output.rglob("*.npz")):
        if any(part.startswith(".") for part in npz.relative_to(output).parts):
            continue
        try:
            with np.load(npz) as stored:
                rows[str(npz.relative_to(output))] = json.loads(str(stored["summary"]))
        except (OSError, KeyError, ValueError, EOFError):
            continue  # not one of ours, or damaged (then recomputed on rerun)
    return rows


def write_summary(output: Path, rows: dict[str, dict]) -> None:
    """``summary.csv``: one row per result, sorted by result path; none
    without results (an earlier one removed)."""
    if not rows:
        with held(output, _claim_key(SUMMARY)):
            (output / SUMMARY).unlink(missing_ok=True)
        return
    ordered = [rows[key] for key in sorted(rows)]
    fields = list(dict.fromkeys(key for row in ordered for key in row))

    def write(file: Any) -> None:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(ordered)

    with held(output, _claim_key(SUMMARY)):
        write_atomic(output / SUMMARY, write, mode="w")

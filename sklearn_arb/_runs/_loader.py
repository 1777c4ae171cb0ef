"""Read the next batch of images while the model computes this one.

Decoding and resizing run in a pool of threads (PIL releases the GIL while it
decodes and resizes), one batch ahead of the caller, so that the model does not
wait for the files. Each image is read by the same function as without the pool,
so the results do not depend on the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from PIL import Image

Entry = TypeVar("Entry")
# What one unreadable image raises; the caller goes on with the others.
IMAGE_ERRORS = (ValueError, OSError, MemoryError, Image.DecompressionBombError)
Read = tuple[Any, BaseException | None]  # (value, None), or (None, the error)


def default_loader_threads() -> int:
    """Threads that read images: one per core, at most 8."""
    return min(8, os.cpu_count() or 1)


def _attempt(read: Callable[[Entry], Any], entry: Entry) -> Read:
    try:
        return read(entry), None
    except IMAGE_ERRORS as exc:
        return None, exc


def read_ahead(
    batches: Iterable[list[Entry]], read: Callable[[Entry], Any], threads: int
) -> Iterator[tuple[list[Entry], list[Read]]]:
    """Each batch with its entries read: ``(value, None)``, or ``(None, error)``
    for an image that cannot be read (:data:`IMAGE_ERRORS`; others propagate).

    With ``threads >= 1`` the next batch is taken from ``batches`` and read in
    that many background threads before this batch is yielded; with 0 each
    batch is read when it is yielded, in this thread. Closing the iterator
    (a ``for`` loop left by an exception) cancels the reads not started and
    waits for those running.

    Examples
    --------
    >>> from sklearn_arb._runs import read_ahead
    >>> for batch, reads in read_ahead([["1", "x"], ["3"]], int, threads=2):
    ...     print(batch, [value for value, error in reads])
    ['1', 'x'] [1, None]
    ['3'] [3]
    """
    if threads == 0:
        for batch in batches:
            yield batch, [_attempt(read, entry) for entry in batch]
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="sklearn-arb-loader")
    try:
        ahead = None
        for batch in batches:
            futures = [pool.submit(_attempt, read, entry) for entry in batch]
            if ahead is not None:
                yield ahead[0], [future.result() for future in ahead[1]]
            ahead = (batch, futures)
        if ahead is not None:
            yield ahead[0], [future.result() for future in ahead[1]]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

"""In-process caches shared by the clones of an estimator, and content digests.

``GridSearchCV`` clones and refits a Pipeline for every candidate and fold; with
``memory`` set, these caches let every clone reuse the model already loaded and
the attention maps already computed in this process, at the cost of a dictionary
lookup, before falling back to ``memory``'s disk cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import xxhash

__all__ = ["LRUCache", "array_digests"]


def array_digests(arrays: Iterable[np.ndarray]) -> list[str]:
    """A 128-bit content digest of each array: its bytes, dtype and shape.

    xxh3-128, about 30 GB/s, so hashing a batch of images costs a fraction of a
    millisecond (blake2b or md5 would cost more than the cache saves). It is an
    identity, not a security measure.

    Parameters
    ----------
    arrays : iterable of ndarray
        E.g. the images of an ``(n, H, W, C)`` array.

    Returns
    -------
    digests : list of str
        32 hexadecimal characters per array.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.backbone._cache import array_digests
    >>> a, b = array_digests([np.zeros((2, 2)), np.zeros((2, 2), dtype=np.float32)])
    >>> len(a), a == b
    (32, False)
    """
    digests = []
    for array in arrays:
        hasher = xxhash.xxh3_128(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(np.ascontiguousarray(array))
        digests.append(hasher.hexdigest())
    return digests


class LRUCache:
    """A thread-safe least-recently-used mapping bounded by item count and bytes.

    Parameters
    ----------
    max_items : int
        Most entries kept.
    max_bytes : int, default=None
        Most total ``nbytes`` kept (values without ``nbytes`` count 0).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.backbone._cache import LRUCache
    >>> cache = LRUCache(max_items=2)
    >>> for key in "abc":
    ...     cache.put(key, np.zeros(1))
    >>> cache.get("a") is None, cache.get("c")
    (True, array([0.]))
    """

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key`` (now the most recent), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``, evicting the least recently used entries over the bounds."""
        nbytes = getattr(value, "nbytes", 0)
        if self.max_bytes is not None and nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._nbytes -= getattr(self._items.pop(key), "nbytes", 0)
            self._items[key] = value
            self._nbytes += nbytes
            while len(self._items) > self.max_items or (
                self.max_bytes is not None and self._nbytes > self.max_bytes
            ):
                _, evicted = self._items.popitem(last=False)
                self._nbytes -= getattr(evicted, "nbytes", 0)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

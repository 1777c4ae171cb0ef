"""Caches shared by the clones of an estimator, and content digests.

``GridSearchCV`` clones and refits a Pipeline for every candidate and fold; with
``memory`` set, the caches here let every clone reuse the model already loaded
and the attention maps already computed in this process, at the cost of a
dictionary lookup, before falling back to ``memory``'s disk cache. Both are
keyed on everything that changes their content.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import joblib
import numpy as np
import xxhash
from torch import nn

from .._config import get_config

__all__ = [
    "LRUCache",
    "MapCache",
    "array_digests",
    "clear_caches",
    "settings_digest",
    "shared_model",
]


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
            self._evict()

    def resize(self, max_items: int, max_bytes: int | None = None) -> None:
        """Set new bounds, evicting the least recently used entries over them."""
        with self._lock:
            self.max_items, self.max_bytes = max_items, max_bytes
            self._evict()

    def _evict(self) -> None:
        while len(self._items) > self.max_items or (
            self.max_bytes is not None and self._nbytes > self.max_bytes
        ):
            _, evicted = self._items.popitem(last=False)
            self._nbytes -= getattr(evicted, "nbytes", 0)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0


# Bounded by the settings of sklearn_arb.set_config, read at each use.
_LOADED_MODELS = LRUCache(max_items=4)
_IMAGE_MAPS = LRUCache(max_items=1 << 20, max_bytes=512 << 20)


def clear_caches() -> None:
    """Empty the in-process caches of loaded models and computed maps.

    ``memory``'s disk cache is left as it is (``joblib.Memory.clear`` empties
    it). Bounds and the on/off switch are settings of
    :func:`~sklearn_arb.set_config`.

    Examples
    --------
    >>> from sklearn_arb import clear_caches
    >>> clear_caches()
    """
    _LOADED_MODELS.clear()
    _IMAGE_MAPS.clear()


def shared_model(key: Hashable | None, load: Callable[[], nn.Module]) -> nn.Module:
    """``load()``, or the module an earlier call loaded under ``key`` in this
    process (None: always ``load()``). The shared module must not be modified.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_arb.backbone._cache import shared_model
    >>> first = shared_model("doc-example", nn.Identity)
    >>> shared_model("doc-example", nn.Identity) is first
    True
    """
    config = get_config()
    if key is None or not config["cache_enabled"]:
        return load()
    _LOADED_MODELS.resize(max_items=config["model_cache_size"])
    model = _LOADED_MODELS.get(key)
    if model is None:
        model = load()
        _LOADED_MODELS.put(key, model)
    return model


def settings_digest(settings: dict[str, Any]) -> str:
    """A key for settings whose values are str, int, float, None or tuples of
    them: an xxh3 of their sorted repr, cheaper than ``joblib.hash`` on every
    (cache-hit) call.

    Examples
    --------
    >>> from sklearn_arb.backbone._cache import settings_digest
    >>> settings_digest({"a": 1, "b": "x"}) == settings_digest({"b": "x", "a": 1})
    True
    """
    return xxhash.xxh3_128_hexdigest(repr(sorted(settings.items())).encode())


def _cached_image_maps(
    settings_key: str, image_key: str, computed: np.ndarray | None
) -> np.ndarray | None:
    """One image's maps in the disk cache, keyed on (settings, image);
    ``computed`` is the value to store on a miss and is not part of the key."""
    return computed


class MapCache:
    """Per-image maps under one settings key: in this process, then on disk.

    Parameters
    ----------
    memory : joblib.Memory
        The disk cache.
    settings_key : str
        Everything but the image that changes the maps (see
        :func:`settings_digest`).

    Examples
    --------
    >>> import tempfile, joblib, numpy as np
    >>> from sklearn_arb.backbone._cache import MapCache
    >>> cache = MapCache(joblib.Memory(tempfile.mkdtemp(), verbose=0), "settings")
    >>> cache.get(["image"])
    [None]
    >>> cache.put("image", np.ones(2))
    array([1., 1.])
    >>> cache.get(["image"])
    [array([1., 1.])]
    """

    def __init__(self, memory: joblib.Memory, settings_key: str) -> None:
        self.settings_key = settings_key
        self._memory = memory
        self._disk_function = None  # made on first use: a hit in memory needs none
        config = get_config()
        self._in_process = config["cache_enabled"] and config["map_cache_bytes"] > 0
        if self._in_process:
            _IMAGE_MAPS.resize(_IMAGE_MAPS.max_items, config["map_cache_bytes"])

    def get(self, image_keys: Iterable[str]) -> list[np.ndarray | None]:
        """The stored maps of each image (read-only), or None where there are none."""
        rows = []
        for image_key in image_keys:
            key = (self.settings_key, image_key)
            row = _IMAGE_MAPS.get(key) if self._in_process else None
            if row is None and self._on_disk().check_call_in_cache(*key, None):
                row = self._remember(key, self._on_disk()(*key, None))
            rows.append(row)
        return rows

    def put(self, image_key: str, row: np.ndarray) -> np.ndarray:
        """Store one image's maps on disk and in this process; returns them."""
        key = (self.settings_key, image_key)
        return self._remember(key, self._on_disk()(*key, row))

    def maps(
        self,
        image_keys: list[str],
        compute: Callable[[np.ndarray], Iterable[tuple[slice, np.ndarray]]],
    ) -> np.ndarray:
        """Every image's maps, stacked in a new array: the stored ones, and for
        the others ``compute(missing)``, which yields ``(chunk, maps of
        missing[chunk])``; each chunk is stored as it comes, so an interrupted
        call resumes where it stopped."""
        rows = self.get(image_keys)
        missing = np.array([i for i, row in enumerate(rows) if row is None], int)
        if missing.size:
            for chunk, chunk_maps in compute(missing):
                for i, row in zip(missing[chunk], chunk_maps, strict=True):
                    rows[i] = self.put(image_keys[i], row)
        return np.stack(rows)

    def _on_disk(self) -> Any:
        if self._disk_function is None:
            self._disk_function = self._memory.cache(
                _cached_image_maps, ignore=["computed"]
            )
        return self._disk_function

    def _remember(self, key: tuple[str, str], row: np.ndarray) -> np.ndarray:
        row = np.array(row)  # owns its memory, so eviction frees it
        row.setflags(write=False)
        if self._in_process:
            _IMAGE_MAPS.put(key, row)
        return row

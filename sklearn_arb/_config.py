"""Global settings of sklearn-arb, in the style of ``sklearn.set_config``.

The settings bound the in-process caches that the clones of an extractor share
when ``memory`` is set (see :class:`~sklearn_arb.AttentionExtractor`). Those
caches are shared by every thread of the process, so their settings are too
(unlike scikit-learn's thread-local ones).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from typing import Any

__all__ = ["config_context", "get_config", "set_config"]

_DEFAULTS = {
    "cache_enabled": True,
    "model_cache_size": 4,
    "map_cache_bytes": 512 << 20,
}
_config = dict(_DEFAULTS)
_lock = threading.Lock()


def get_config() -> dict[str, Any]:
    """The current settings (a copy), as :func:`set_config` names them.

    Returns
    -------
    config : dict
        ``cache_enabled``, ``model_cache_size`` and ``map_cache_bytes``.

    Examples
    --------
    >>> from sklearn_arb import get_config
    >>> get_config()["model_cache_size"]
    4
    """
    with _lock:
        return dict(_config)


def _check(name: str, value: Any) -> None:
    if name == "cache_enabled":
        if not isinstance(value, bool):
            raise ValueError(f"cache_enabled={value!r} must be True or False.")
    elif not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{name}={value!r} must be an int >= 0 (0 keeps nothing in memory)."
        )


def set_config(
    cache_enabled: bool | None = None,
    model_cache_size: int | None = None,
    map_cache_bytes: int | None = None,
) -> None:
    """Set the in-process caches' switch and sizes; None leaves a setting as is.

    With ``memory`` set, an extractor keeps the models it loaded from named
    weights and the maps it computed in this process, so the clones a
    ``GridSearchCV`` fits reuse them without a model load or a disk read. These
    settings bound those caches (least recently used first out); ``memory``'s
    disk cache is not affected. Smaller bounds take effect at the next use of a
    cache; :func:`clear_caches` empties them now.

    Parameters
    ----------
    cache_enabled : bool, default=None
        Whether models and maps are kept in this process (default True).
    model_cache_size : int, default=None
        Most loaded models kept (default 4).
    map_cache_bytes : int, default=None
        Most bytes of maps kept (default 512 MiB).

    See Also
    --------
    config_context : The same settings for a block of code.
    get_config : The current settings.

    Examples
    --------
    >>> from sklearn_arb import get_config, set_config
    >>> set_config(map_cache_bytes=64 << 20)
    >>> get_config()["map_cache_bytes"] == 64 << 20
    True
    >>> set_config(map_cache_bytes=512 << 20)
    """
    changes = {
        name: value
        for name, value in (
            ("cache_enabled", cache_enabled),
            ("model_cache_size", model_cache_size),
            ("map_cache_bytes", map_cache_bytes),
        )
        if value is not None
    }
    for name, value in changes.items():
        _check(name, value)
    with _lock:
        _config.update(changes)


@contextmanager
def config_context(
    *,
    cache_enabled: bool | None = None,
    model_cache_size: int | None = None,
    map_cache_bytes: int | None = None,
) -> Iterator[None]:
    """Settings of :func:`set_config` for the ``with`` block, restored after it.

    Parameters
    ----------
    cache_enabled, model_cache_size, map_cache_bytes
        As in :func:`set_config`; None leaves a setting as is.

    Examples
    --------
    >>> from sklearn_arb import config_context, get_config
    >>> with config_context(cache_enabled=False):
    ...     get_config()["cache_enabled"]
    False
    >>> get_config()["cache_enabled"]
    True
    """
    previous = get_config()
    set_config(
        cache_enabled=cache_enabled,
        model_cache_size=model_cache_size,
        map_cache_bytes=map_cache_bytes,
    )
    try:
        yield
    finally:
        set_config(**previous)

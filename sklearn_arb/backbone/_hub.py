"""Reaching the Hugging Face hub, or knowing at once that it cannot be reached.

Without a network the hub client retries for about a minute before it fails.
A TCP probe answers in milliseconds; when the hub cannot be reached, weights
are read from the local hub cache alone (as with ``HF_HUB_OFFLINE=1``), so
weights downloaded before still load and missing ones fail at once. The command
line and the Python API share this probe.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

__all__ = ["hub_declared_offline", "hub_reachable", "local_hub_only"]


def hub_declared_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks the hub client for its local cache only.

    Examples
    --------
    >>> import os
    >>> from sklearn_arb.backbone._hub import hub_declared_offline
    >>> hub_declared_offline() == (os.environ.get("HF_HUB_OFFLINE") == "1")
    True
    """
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (or ``HF_ENDPOINT``) answers a TCP connection.

    Examples
    --------
    >>> from sklearn_arb.backbone._hub import hub_reachable
    >>> isinstance(hub_reachable(timeout=0.5), bool)
    True
    """
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def local_hub_only() -> Iterator[None]:
    """Downloads in the block read the local hub cache only, unless the hub can
    be reached and is not declared offline (``HF_HUB_OFFLINE``, which the hub
    client reads once, at its import: set after that, it is applied here).

    Examples
    --------
    >>> from sklearn_arb.backbone._hub import local_hub_only
    >>> with local_hub_only():
    ...     pass
    """
    if not hub_declared_offline() and hub_reachable():
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous

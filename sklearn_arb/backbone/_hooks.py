"""Module hooks that act in the thread that registered them only.

The extractor's CPU streams run one model in several threads at once; a hook
registered on a shared block is called by every thread's forward pass, so a
hook that records or replaces a tensor must ignore the passes of other threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["this_thread_only"]


def this_thread_only(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook``, called only from the thread that wraps it (elsewhere: None,
    which leaves the module's inputs or output as they are).

    Examples
    --------
    >>> import threading
    >>> from sklearn_arb.backbone._hooks import this_thread_only
    >>> calls = []
    >>> hook = this_thread_only(calls.append)
    >>> hook(1)
    >>> thread = threading.Thread(target=hook, args=(2,))
    >>> thread.start(); thread.join()
    >>> calls
    [1]
    """
    owner = threading.get_ident()

    def guarded(*args: Any) -> Any:
        if threading.get_ident() == owner:
            return hook(*args)
        return None

    return guarded

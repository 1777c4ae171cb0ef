"""Why a weights file could not be read, in one line.

``torch.load`` and safetensors explain a refused or damaged file over several
lines (a pickle that ``weights_only=True`` refuses comes with a page of
advice); the errors of the extractor name the file and the fix on one line.
"""

from __future__ import annotations

import pickle

__all__ = ["unreadable_reason"]


def unreadable_reason(exc: BaseException) -> str:
    """One line saying why a weights file could not be read.

    Examples
    --------
    >>> import pickle
    >>> from sklearn_arb.backbone._unreadable import unreadable_reason
    >>> unreadable_reason(EOFError("Ran out of input\\nmore"))
    'EOFError: Ran out of input'
    >>> unreadable_reason(pickle.UnpicklingError("Weights only load failed.\\n..."))
    ... # doctest: +ELLIPSIS
    'it holds pickled Python objects besides tensors, ...'
    """
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "it holds pickled Python objects besides tensors, which could run code "
            "when loaded: refused by torch.load(weights_only=True)"
        )
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__

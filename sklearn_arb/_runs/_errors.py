"""What a run reports on one line: a bad setting or input, and how to fix it."""

from __future__ import annotations


class RunError(ValueError):
    """A bad setting or input: one line naming the problem and the fix (the
    command reports it and exits with status 2)."""


def first_line(exc: BaseException) -> str:
    """An exception's message, one line.

    Examples
    --------
    >>> from sklearn_arb._runs import first_line
    >>> first_line(ValueError("bad value\\nmore detail"))
    'bad value'
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

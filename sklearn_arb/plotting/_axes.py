"""Axes and array helpers shared by the plotting functions."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes


def get_axes(ax: Axes | None, figsize: tuple[float, float] = (4.0, 3.5)) -> Axes:
    """Return ``ax``, or the axes of a new figure when ``ax`` is None."""
    if ax is None:
        # pyplot only here, so importing the package never picks a backend.
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        return ax
    if not isinstance(ax, Axes):
        raise TypeError(
            f"ax must be a matplotlib Axes or None, got {type(ax).__name__}; "
            "pass e.g. `plt.subplots()[1]`"
        )
    return ax


def finite_values(values: object, name: str) -> np.ndarray:
    """Flatten ``values`` to a float array, rejecting empty or non-finite input."""
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or inf; drop or replace those values before plotting"
        )
    return array


def finite_2d(values: object, name: str, vector_axis: int, shapes: str) -> np.ndarray:
    """``values`` as a finite 2-D float array; a 1-D input gains a new axis at
    ``vector_axis`` (0: one row, 1: one column). ``shapes`` names the accepted
    shapes in the error message."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = np.expand_dims(array, vector_axis)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape {shapes}, got {array.shape}")
    return finite_values(array, name).reshape(array.shape)

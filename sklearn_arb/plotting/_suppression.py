"""Per-class suppression factors D as grouped bars with error bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from ._axes import finite_2d, get_axes


def _as_columns(values: ArrayLike, name: str) -> np.ndarray:
    """(n_classes,) or (n_classes, n_methods) -> finite (n_classes, n_methods)."""
    return finite_2d(values, name, 1, "(n_classes,) or (n_classes, n_methods)")


def plot_suppression_factors(
    factors: ArrayLike,
    errors: ArrayLike | None = None,
    *,
    class_names: Sequence[str] | None = None,
    method_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Bunch:
    """Bar chart of the suppression factor D per class, one bar per method.

    D = sum of the mean ROI percentiles after regularization over the sum
    before (1: no effect, 0: the noise fully removed), as in the paper's Fig. 4.

    Parameters
    ----------
    factors : array-like of shape (n_classes,) or (n_classes, n_methods)
        Suppression factor of each class (rows) and method (columns).
    errors : array-like of the same shape, default=None
        Their standard errors, drawn as error bars.
    class_names : sequence of str, default=None
        Tick labels of the classes; ``0, 1, ...`` when None.
    method_names : sequence of str, default=None
        Legend labels of the methods. When None, several methods are labelled
        ``method 0, method 1, ...`` and a single one gets no legend.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.

    Returns
    -------
    result : Bunch
        ``ax`` and ``bars`` (one ``BarContainer`` per method, whose
        ``errorbar`` holds the error bars).

    Examples
    --------
    >>> from sklearn_arb.plotting import plot_suppression_factors
    >>> result = plot_suppression_factors(
    ...     [[0.1, 0.2], [0.3, 0.15]], [[0.01, 0.02], [0.03, 0.01]],
    ...     class_names=["tench", "church"], method_names=["p", "lfdr"])
    >>> [float(bar.get_height()) for bar in result.bars[1]]
    [0.2, 0.15]
    >>> plot_suppression_factors([0.4, 0.7]).ax.get_legend() is None
    True
    """
    heights = _as_columns(factors, "factors")
    n_classes, n_methods = heights.shape
    if errors is not None:
        errors = _as_columns(errors, "errors")
        if errors.shape != heights.shape:
            raise ValueError(
                f"errors has shape {errors.shape} but factors has {heights.shape}; "
                "pass one error per factor"
            )
        if np.any(errors < 0):
            raise ValueError("errors must be non-negative standard errors")
    class_names = list(range(n_classes)) if class_names is None else list(class_names)
    # A legend tells methods apart: needed for several, or to name a single one.
    show_legend = n_methods > 1 or method_names is not None
    method_names = (
        [f"method {j}" for j in range(n_methods)]
        if method_names is None
        else list(method_names)
    )
    if len(class_names) != n_classes or len(method_names) != n_methods:
        raise ValueError(
            f"factors has {n_classes} classes x {n_methods} methods but "
            f"{len(class_names)} class_names and {len(method_names)} method_names "
            "were given"
        )
    ax = get_axes(ax, figsize=(max(4.0, 0.9 * n_classes + 1.5), 3.5))
    width = 0.8 / n_methods
    positions = np.arange(n_classes)
    bars = [
        ax.bar(
            positions + (j - (n_methods - 1) / 2) * width,
            heights[:, j],
            width,
            yerr=None if errors is None else errors[:, j],
            capsize=3,
            label=method_names[j],
        )
        for j in range(n_methods)
    ]
    ax.set_xticks(
        positions, [str(name) for name in class_names], rotation=30, ha="right"
    )
    ax.set_ylabel("suppression factor D")
    ax.set_ylim(bottom=0.0)
    if show_legend:
        ax.legend(frameon=False, title="method")
    return Bunch(ax=ax, bars=bars)

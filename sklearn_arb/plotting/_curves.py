"""Sensitivity/specificity curves over a sweep of thresholds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from ._axes import finite_2d, finite_values, get_axes


def _as_curves(values: ArrayLike, name: str) -> np.ndarray:
    """(n_thresholds,) or (n_curves, n_thresholds) -> finite 2-D array."""
    return finite_2d(values, name, 0, "(n_thresholds,) or (n_curves, n_thresholds)")


def plot_sensitivity_specificity(
    sensitivity: ArrayLike,
    specificity: ArrayLike,
    *,
    labels: Sequence[str] | None = None,
    points: tuple[ArrayLike, ArrayLike] | None = None,
    show_median: bool = True,
    ax: Axes | None = None,
) -> Bunch:
    """Sensitivity/specificity curves of images over a sweep of thresholds.

    One curve per image (the paper's Fig. 5), its pointwise median in black,
    and the dashed line ``specificity = 1 - sensitivity`` of a regularization
    that shrinks every score equally: a useful regularization lies above it.

    Parameters
    ----------
    sensitivity, specificity : array-like of shape (n_curves, n_thresholds)
        One row per image, one column per threshold (a 1-D array is one curve).
    labels : sequence of str of length n_curves, default=None
        Group of each curve (e.g. its class): curves of a group share a
        colour and one legend entry.
    points : tuple of two array-likes of shape (n_curves,), default=None
        ``(sensitivity, specificity)`` of one chosen threshold per image,
        drawn as dots.
    show_median : bool, default=True
        Draw the pointwise median of the curves.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.

    Returns
    -------
    result : Bunch
        ``ax``, ``curves`` (list of ``Line2D``), ``median`` (``Line2D`` or
        None), ``chance`` (the dashed ``Line2D``) and ``points``
        (``PathCollection`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_sensitivity_specificity
    >>> sensitivity = np.array([[0.2, 0.6, 0.9], [0.1, 0.5, 0.8]])
    >>> specificity = np.array([[0.99, 0.9, 0.6], [0.98, 0.85, 0.5]])
    >>> result = plot_sensitivity_specificity(sensitivity, specificity)
    >>> result.median.get_ydata().tolist()
    [0.985, 0.875, 0.55]
    """
    sens = _as_curves(sensitivity, "sensitivity")
    spec = _as_curves(specificity, "specificity")
    if sens.shape != spec.shape:
        raise ValueError(
            f"sensitivity {sens.shape} and specificity {spec.shape} must have the "
            "same shape: one value of each per image and threshold"
        )
    n_curves = sens.shape[0]
    if labels is not None and len(labels) != n_curves:
        raise ValueError(f"labels has {len(labels)} entries for {n_curves} curves")
    ax = get_axes(ax, figsize=(4.5, 4.2))

    groups = list(dict.fromkeys(labels)) if labels is not None else []
    colors = {group: f"C{k % 10}" for k, group in enumerate(groups)}
    curves = []
    for i in range(n_curves):
        group = labels[i] if labels is not None else None
        first_of_group = group is not None and labels.index(group) == i
        (line,) = ax.plot(
            sens[i],
            spec[i],
            color=colors.get(group, "tab:blue"),
            alpha=0.5,
            linewidth=1.0,
            label=str(group) if first_of_group else None,
        )
        curves.append(line)
    median = None
    if show_median:
        (median,) = ax.plot(
            np.median(sens, axis=0),
            np.median(spec, axis=0),
            color="black",
            linewidth=2.0,
            label="median",
        )
    (chance,) = ax.plot(
        [0.0, 1.0],
        [1.0, 0.0],
        color="tab:blue",
        linestyle="--",
        linewidth=1.0,
        label="equal shrinkage",
    )
    scatter = None
    if points is not None:
        point_sens = finite_values(points[0], "points[0]")
        point_spec = finite_values(points[1], "points[1]")
        if point_sens.size != n_curves or point_spec.size != n_curves:
            raise ValueError(
                f"points must hold one (sensitivity, specificity) pair per curve "
                f"({n_curves}), got {point_sens.size} and {point_spec.size}"
            )
        point_colors = [
            colors.get(labels[i] if labels is not None else None, "tab:blue")
            for i in range(n_curves)
        ]
        scatter = ax.scatter(
            point_sens, point_spec, c=point_colors, edgecolors="black", zorder=3
        )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("sensitivity (share of ROI attention removed)")
    ax.set_ylabel("specificity (share of other attention kept)")
    ax.legend(frameon=False, fontsize="small", loc="best")
    return Bunch(ax=ax, curves=curves, median=median, chance=chance, points=scatter)

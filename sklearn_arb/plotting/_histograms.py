"""Histograms of the statistics behind regularization: z, p-values, lfdr."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike
from sklearn.utils import Bunch

from ._axes import finite_values, get_axes

OBSERVED_COLOR = "tab:orange"
NULL_COLOR = "tab:gray"
THRESHOLD_COLOR = "tab:red"


def _threshold_line(ax: Axes, value: float | None, symbol: str) -> Line2D | None:
    """Dashed vertical line labelled ``symbol = value``, or None without a value."""
    if value is None:
        return None
    return ax.axvline(
        value, color=THRESHOLD_COLOR, linestyle="--", label=f"{symbol} = {value:g}"
    )


def plot_z_histogram(
    z: ArrayLike,
    null_z: ArrayLike,
    *,
    bins: int = 40,
    z_threshold: float | None = None,
    ax: Axes | None = None,
) -> Bunch:
    """Histogram of the observed z statistics against the bootstrap (null) ones.

    Both are drawn as densities over the same bins, so B bootstrap maps and one
    observed map compare directly. Observed scores far to the right of the
    null are the ones regularization keeps.

    Parameters
    ----------
    z : array-like
        Observed z statistics (any shape; flattened), e.g. ``statistics.z[i]``.
    null_z : array-like
        Bootstrap z statistics, e.g. ``statistics.null_z[i]``.
    bins : int, default=40
        Number of equal bins spanning both samples.
    z_threshold : float, default=None
        Draw the z-step threshold as a dashed line.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.

    Returns
    -------
    result : Bunch
        ``ax``, ``observed`` and ``null`` (``BarContainer``), ``bin_edges``
        and ``threshold`` (``Line2D`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_z_histogram
    >>> rng = np.random.default_rng(0)
    >>> result = plot_z_histogram(rng.normal(1, 1, 196), rng.normal(0, 1, 196))
    >>> len(result.observed), len(result.null)
    (40, 40)
    """
    observed = finite_values(z, "z")
    null = finite_values(null_z, "null_z")
    ax = get_axes(ax)
    edges = np.histogram_bin_edges(np.concatenate([observed, null]), bins=bins)
    _, _, null_bars = ax.hist(
        null,
        bins=edges,
        density=True,
        color=NULL_COLOR,
        alpha=0.6,
        label=f"bootstrap ({null.size})",
    )
    _, _, observed_bars = ax.hist(
        observed,
        bins=edges,
        density=True,
        color=OBSERVED_COLOR,
        alpha=0.6,
        label=f"observed ({observed.size})",
    )
    line = _threshold_line(ax, z_threshold, "z threshold")
    ax.set_xlabel("z statistic (log attention, standardised by the null)")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return Bunch(
        ax=ax, observed=observed_bars, null=null_bars, bin_edges=edges, threshold=line
    )


def _unit_histogram(
    values: ArrayLike,
    name: str,
    xlabel: str,
    threshold: float | None,
    symbol: str,
    bins: int,
    ax: Axes | None,
) -> Bunch:
    """Histogram on [0, 1] (p-values, lfdr) with an optional threshold line."""
    array = finite_values(values, name)
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{array.min():g}, "
            f"{array.max():g}]; pass the statistics the regularizer computed"
        )
    ax = get_axes(ax)
    edges = np.linspace(0.0, 1.0, bins + 1)
    _, _, bars = ax.hist(array, bins=edges, color=OBSERVED_COLOR, alpha=0.8)
    line = _threshold_line(ax, threshold, symbol)
    if line is not None:
        ax.legend(frameon=False)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tokens")
    return Bunch(ax=ax, bars=bars, bin_edges=edges, threshold=line)


def plot_pvalue_histogram(
    pvalues: ArrayLike,
    *,
    alpha: float | None = None,
    bins: int = 20,
    ax: Axes | None = None,
) -> Bunch:
    """Histogram of the p-values of the observed scores on [0, 1].

    Under the null the p-values are uniform; a peak near 0 holds the
    significant scores.

    Parameters
    ----------
    pvalues : array-like
        p-values in [0, 1] (any shape; flattened).
    alpha : float, default=None
        Draw the p threshold as a dashed line.
    bins : int, default=20
        Number of equal bins on [0, 1].
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.

    Returns
    -------
    result : Bunch
        ``ax``, ``bars`` (``BarContainer``), ``bin_edges`` and ``threshold``
        (``Line2D`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_pvalue_histogram
    >>> result = plot_pvalue_histogram(np.linspace(0, 1, 50), alpha=0.05)
    >>> float(result.threshold.get_xdata()[0])
    0.05
    """
    return _unit_histogram(
        pvalues, "pvalues", "p-value", alpha, "\N{GREEK SMALL LETTER ALPHA}", bins, ax
    )


def plot_lfdr_histogram(
    lfdr: ArrayLike,
    *,
    gamma: float | None = None,
    bins: int = 20,
    ax: Axes | None = None,
) -> Bunch:
    """Histogram of the local false discovery rates of the observed scores.

    Parameters
    ----------
    lfdr : array-like
        Local false discovery rates in [0, 1] (any shape; flattened).
    gamma : float, default=None
        Draw the lfdr threshold as a dashed line.
    bins : int, default=20
        Number of equal bins on [0, 1].
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.

    Returns
    -------
    result : Bunch
        ``ax``, ``bars`` (``BarContainer``), ``bin_edges`` and ``threshold``
        (``Line2D`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_lfdr_histogram
    >>> result = plot_lfdr_histogram(np.linspace(0, 1, 50), bins=10)
    >>> [int(bar.get_height()) for bar in result.bars][:3]
    [5, 5, 5]
    """
    return _unit_histogram(
        lfdr,
        "lfdr",
        "local false discovery rate",
        gamma,
        "\N{GREEK SMALL LETTER GAMMA}",
        bins,
        ax,
    )


def plot_statistics(
    statistics: Mapping[str, ArrayLike],
    *,
    alpha: float | None = None,
    gamma: float | None = None,
    z_threshold: float | None = None,
    axes: np.ndarray | list[Axes] | None = None,
) -> Bunch:
    """Draw the z, p-value and lfdr histograms of one image side by side.

    Parameters
    ----------
    statistics : mapping
        Holds ``z``, ``null_z``, ``pvalues`` and ``lfdr`` for the tokens to
        draw, e.g. one image's row of each field of
        ``BootstrapAttentionRegularizer.compute_statistics``.
    alpha, gamma, z_threshold : float, default=None
        Thresholds to draw as dashed lines.
    axes : sequence of 3 matplotlib Axes, default=None
        Where to draw; a new figure with one row of three axes when None.

    Returns
    -------
    result : Bunch
        ``figure`` and the Bunches of :func:`plot_z_histogram` (``z``),
        :func:`plot_pvalue_histogram` (``pvalues``) and
        :func:`plot_lfdr_histogram` (``lfdr``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.plotting import plot_statistics
    >>> rng = np.random.default_rng(0)
    >>> stats = {"z": rng.normal(size=49), "null_z": rng.normal(size=49),
    ...          "pvalues": rng.random(49), "lfdr": rng.random(49)}
    >>> result = plot_statistics(stats, alpha=0.05)
    >>> sorted(result)
    ['figure', 'lfdr', 'pvalues', 'z']
    """
    required = ("z", "null_z", "pvalues", "lfdr")
    missing = [key for key in required if key not in statistics]
    if missing:
        raise KeyError(
            f"statistics lacks {missing}; pass the Bunch returned by "
            "BootstrapAttentionRegularizer.compute_statistics (one image's rows)"
        )
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 3, figsize=(12.0, 3.4), layout="constrained")
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != 3:
        raise ValueError(f"axes must hold 3 Axes (z, p, lfdr), got {axes.size}")
    return Bunch(
        figure=axes[0].figure,
        z=plot_z_histogram(
            statistics["z"], statistics["null_z"], z_threshold=z_threshold, ax=axes[0]
        ),
        pvalues=plot_pvalue_histogram(statistics["pvalues"], alpha=alpha, ax=axes[1]),
        lfdr=plot_lfdr_histogram(statistics["lfdr"], gamma=gamma, ax=axes[2]),
    )

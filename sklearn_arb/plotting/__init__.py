"""Plots of attention maps, their statistics and the simulation study.

Every ``plot_*`` function draws on a given matplotlib ``ax`` (a new figure when
None) and returns the artists it drew in a :class:`sklearn.utils.Bunch`;
:func:`overlay_map` returns the blended image as an RGB array, without a figure.
"""

from ._curves import plot_sensitivity_specificity
from ._histograms import (
    plot_lfdr_histogram,
    plot_pvalue_histogram,
    plot_statistics,
    plot_z_histogram,
)
from ._overlay import overlay_map, plot_attention_overlay, plot_attention_panel
from ._suppression import plot_suppression_factors

__all__ = [
    "overlay_map",
    "plot_attention_overlay",
    "plot_attention_panel",
    "plot_lfdr_histogram",
    "plot_pvalue_histogram",
    "plot_sensitivity_specificity",
    "plot_statistics",
    "plot_suppression_factors",
    "plot_z_histogram",
]

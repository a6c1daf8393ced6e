"""Analysis: rank correlation, Pareto fronts, search curves and their plots."""

from tune_spacenas.analysis.curves import best_so_far, plot_curves, save_figure
from tune_spacenas.analysis.pareto import pareto_front
from tune_spacenas.analysis.ranking import kendall_tau, rank_mean, top_half_tau

__all__ = ["best_so_far", "kendall_tau", "pareto_front", "plot_curves", "rank_mean", "save_figure", "top_half_tau"]

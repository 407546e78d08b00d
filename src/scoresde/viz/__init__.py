"""Plots and animations; matplotlib is imported lazily inside each function."""

from scoresde.viz.plots import scatter_compare

__all__ = ["scatter_compare"]

"""Plots and animations; matplotlib is imported lazily inside each function.

``import scoresde`` does not import this package's heavy dependencies: matplotlib is loaded
on the first call of a plotting function, Pillow on the first image or GIF written.
"""

from scoresde.viz.animate import animate_trajectories, animate_trajectory
from scoresde.viz.plots import data_limits, density_compare, image_grid, loss_curve, scatter_compare

__all__ = [
    "animate_trajectories",
    "animate_trajectory",
    "data_limits",
    "density_compare",
    "image_grid",
    "loss_curve",
    "scatter_compare",
]

"""Samplers of the reverse SDE and probability-flow ODE, their grids and the ``sample`` API."""

from scoresde.sampling.api import sample
from scoresde.sampling.dpm_solver_v3 import EMS, compute_ems
from scoresde.sampling.grid_opt import (
    OptimizedGrid,
    cache_grid,
    clear_grid_cache,
    optimize_grid,
    optimized_grid,
)
from scoresde.sampling.grids import GRIDS, time_grid
from scoresde.sampling.noise import GeneratorNoise, NoiseSource, PerSampleNoise
from scoresde.sampling.registry import SAMPLERS, get_sampler
from scoresde.sampling.setup import SamplingRun, SamplingStart, start_sampling
from scoresde.sampling.types import Sampler, SampleResult

__all__ = [
    "EMS",
    "GRIDS",
    "SAMPLERS",
    "GeneratorNoise",
    "NoiseSource",
    "OptimizedGrid",
    "PerSampleNoise",
    "SampleResult",
    "Sampler",
    "SamplingRun",
    "SamplingStart",
    "cache_grid",
    "clear_grid_cache",
    "compute_ems",
    "get_sampler",
    "optimize_grid",
    "optimized_grid",
    "sample",
    "start_sampling",
    "time_grid",
]

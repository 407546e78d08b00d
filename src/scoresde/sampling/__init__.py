"""Samplers of the reverse SDE and probability-flow ODE, their grids and the ``sample`` API.

Layers, bottom up: the samplers (one function each) and :data:`SAMPLERS`; the run
specification :class:`SampleSpec` and its setup; :func:`sample`; the tuners that call it
(:class:`GridOptimizer` / :func:`optimize_grid`, :func:`compute_ems`,
:func:`analytic_first_step`).
"""

from scoresde._core.defaults import DEFAULT_SAMPLING, SamplingDefaults
from scoresde.sampling.api import sample
from scoresde.sampling.bespoke import BespokeSolver
from scoresde.sampling.bespoke_fit import BespokeFit, bespoke_from_base, fit_bespoke
from scoresde.sampling.dpm_solver_v3 import EMS
from scoresde.sampling.ems import compute_ems
from scoresde.sampling.first_step import AnalyticFirstStep, analytic_first_step
from scoresde.sampling.grid_opt import GridOptimizer, OptimizedGrid, optimize_grid
from scoresde.sampling.grids import GRIDS, time_grid
from scoresde.sampling.noise import GeneratorNoise, NoiseSource, PerSampleNoise
from scoresde.sampling.registry import ALIASES, SAMPLERS, get_sampler
from scoresde.sampling.setup import SamplingRun, SamplingStart, start_sampling
from scoresde.sampling.spec import GridTuner, SampleSpec
from scoresde.sampling.types import Sampler, SampleResult

__all__ = [
    "ALIASES",
    "AnalyticFirstStep",
    "BespokeFit",
    "BespokeSolver",
    "DEFAULT_SAMPLING",
    "EMS",
    "GRIDS",
    "SAMPLERS",
    "GeneratorNoise",
    "GridOptimizer",
    "GridTuner",
    "NoiseSource",
    "OptimizedGrid",
    "PerSampleNoise",
    "SampleResult",
    "SampleSpec",
    "Sampler",
    "SamplingDefaults",
    "SamplingRun",
    "SamplingStart",
    "analytic_first_step",
    "bespoke_from_base",
    "compute_ems",
    "fit_bespoke",
    "get_sampler",
    "optimize_grid",
    "sample",
    "start_sampling",
    "time_grid",
]

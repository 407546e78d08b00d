"""The names the CLI's option groups offer, without importing torch (fast ``--help``).

``scoresde --help`` and ``scoresde sample --help`` list the samplers, grids and modes of their
options; importing the modules that define them would import torch (over a second).  These
are copies of those names; ``tests/cli/test_startup.py`` checks each against its source, so
a sampler added to :data:`scoresde.SAMPLERS` without a line here fails the tests.
"""

from __future__ import annotations

__all__ = [
    "ALIASES",
    "CLIP_MODES",
    "COMPILE_MODES",
    "CONSISTENCY_DISTANCES",
    "CONSISTENCY_WEIGHTINGS",
    "DISTILL_METHODS",
    "GRIDS",
    "LR_SCHEDULES",
    "NORMS",
    "PROGRESSIVE_WEIGHTINGS",
    "SAMPLERS_REQUIRED",
    "SAMPLE_FORMATS",
    "WEIGHTS",
]

SAMPLERS_REQUIRED: dict[str, tuple[str, ...]] = {
    "euler_maruyama": (),
    "euler": (),
    "heun": (),
    "ddim": (),
    "dpm_solver_2s": (),
    "dpm_solver_3s": (),
    "dpm_solver_pp_2m": (),
    "dpm_solver_pp_3m": (),
    "dpm_solver_v3": ("ems",),
    "unipc": (),
    "unipc_bh1": (),
    "deis": (),
    "ipndm": (),
    "dopri5": (),
    "bespoke": ("solver",),
    "consistency": (),
    "reverse_diffusion": (),
    "ancestral": (),
    "pc": (),
    "langevin": (),
    "ald": (),
    "heun_sde": (),
    "dpm_solver_pp_2m_sde": (),
    "dps": ("operator", "y_obs"),
}
"""The keys of :data:`scoresde.SAMPLERS`, in order, with each sampler's ``required`` options."""

ALIASES: dict[str, str] = {
    "dpm_solver_2": "dpm_solver_2s",
    "dpm_solver_3": "dpm_solver_3s",
    "dpm_solver++_2m": "dpm_solver_pp_2m",
    "dpm_solver++_3m": "dpm_solver_pp_3m",
    "dpm_solver++_2m_sde": "dpm_solver_pp_2m_sde",
    "edm_stochastic": "heun_sde",
}
""":data:`scoresde.sampling.ALIASES`: the sampler keys of earlier versions, still accepted."""

GRIDS: tuple[str, ...] = ("uniform", "logsnr", "edm", "quadratic")
""":data:`scoresde.sampling.grids.GRIDS`."""

CLIP_MODES: tuple[str, ...] = ("clip", "dynamic")
""":data:`scoresde.models.clipping.CLIP_MODES`."""

NORMS: tuple[str, ...] = ("independent", "per_sample", "batch")
""":data:`scoresde.flow.integrators.NORMS`."""

SAMPLE_FORMATS: tuple[str, ...] = ("npz", "png")
""":data:`scoresde.io.samples.SAMPLE_FORMATS`."""

WEIGHTS: tuple[str, ...] = ("ema", "raw")
""":data:`scoresde.io.sources.WEIGHTS`."""

COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
""":data:`scoresde.models.compile.COMPILE_MODES`."""

EXECUTION_MODES: tuple[str, ...] = ("off", "on", "freeze")
""":data:`scoresde.models.execution.EXECUTION_MODES`."""

CONSISTENCY_DISTANCES: tuple[str, ...] = ("l2", "pseudo_huber")
""":data:`scoresde.distill.consistency.DISTANCES`."""

CONSISTENCY_WEIGHTINGS: tuple[str, ...] = ("uniform", "inverse_step")
""":data:`scoresde.distill.consistency.WEIGHTINGS`."""

PROGRESSIVE_WEIGHTINGS: tuple[str, ...] = ("truncated_snr", "uniform")
""":data:`scoresde.distill.progressive.PROGRESSIVE_WEIGHTINGS`."""

DISTILL_METHODS: tuple[str, ...] = ("consistency", "progressive")
""":data:`scoresde.distill.run.DISTILL_METHODS`."""

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
""":data:`scoresde.train.config.SCHEDULES`."""

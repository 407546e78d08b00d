"""``SAMPLERS``: the one explicit dict from method name to sampler.

A new sampler is a new function in its module plus one line here; nothing registers itself
as an import side effect.
"""

from __future__ import annotations

from scoresde.sampling.ode import euler
from scoresde.sampling.pc import ald, langevin, pc
from scoresde.sampling.predictors import ancestral, euler_maruyama, reverse_diffusion
from scoresde.sampling.stochastic import dpm_solver_pp_2m_sde, edm_stochastic
from scoresde.sampling.types import Sampler

SAMPLERS: dict[str, Sampler] = {
    "euler_maruyama": Sampler(
        euler_maruyama,
        order=1,
        stochastic=True,
        description="Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6)",
    ),
    "euler": Sampler(
        euler,
        order=1,
        stochastic=False,
        description="Euler on the probability-flow ODE (Song et al. 2021, Eq. 13)",
    ),
    "reverse_diffusion": Sampler(
        reverse_diffusion,
        order=1,
        stochastic=True,
        description="reverse-diffusion predictor (Song et al. 2021, App. E, Eq. 46)",
    ),
    "ancestral": Sampler(
        ancestral,
        order=1,
        stochastic=True,
        description="ancestral sampling, DDPM / SMLD (Song et al. 2021, App. F; Ho et al. 2020, Alg. 2)",
    ),
    "pc": Sampler(
        pc,
        order=1,
        stochastic=True,
        description="predictor-corrector sampling (Song et al. 2021, Alg. 1-3)",
    ),
    "langevin": Sampler(
        langevin,
        order=0,
        stochastic=True,
        description="corrector-only Langevin sampling with snr step size (Song et al. 2021, Table 1 'C'; "
        "order 0: accuracy set by snr and n_corrector, not by a discretisation order)",
    ),
    "ald": Sampler(
        ald,
        order=0,
        stochastic=True,
        description="annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; order 0 as for 'langevin')",
    ),
    "edm_stochastic": Sampler(
        edm_stochastic,
        order=1,
        stochastic=True,
        description="EDM stochastic sampler with churn and Heun steps (Karras et al. 2022, Alg. 2)",
    ),
    "dpm_solver++_2m_sde": Sampler(
        dpm_solver_pp_2m_sde,
        order=1,
        stochastic=True,
        description="SDE-DPM-Solver++(2M), multistep exponential integrator (Lu et al. 2022b)",
    ),
}

__all__ = ["SAMPLERS", "get_sampler"]


def get_sampler(method: str) -> Sampler:
    """Look up ``method`` in :data:`SAMPLERS`, with an error that lists the choices."""
    try:
        return SAMPLERS[method]
    except KeyError:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {sorted(SAMPLERS)}") from None

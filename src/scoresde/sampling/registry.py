"""``SAMPLERS``: the one explicit dict from method name to sampler.

A new sampler is a new function in its module plus one line here; nothing registers itself
as an import side effect.

Keys are the sampler functions' names: ``<family>_<order><s|m>`` for the DPM-Solver family
(``s`` singlestep, ``m`` multistep; ``pp`` for DPM-Solver++), and ``_sde`` for the stochastic
form of an ODE solver (``heun_sde`` is EDM's stochastic sampler, Karras et al. 2022, Alg. 2:
Heun with churn).  The keys used before that naming stay accepted (:data:`ALIASES`).
"""

from __future__ import annotations

from scoresde.sampling.adaptive import dopri5
from scoresde.sampling.bespoke import bespoke
from scoresde.sampling.consistency import consistency
from scoresde.sampling.deis import deis, ipndm
from scoresde.sampling.dpm_solver import dpm_solver_2s, dpm_solver_3s, dpm_solver_pp_2m, dpm_solver_pp_3m
from scoresde.sampling.dpm_solver_v3 import dpm_solver_v3
from scoresde.sampling.dps import dps
from scoresde.sampling.ode import ddim, euler, heun
from scoresde.sampling.pc import ald, langevin, pc
from scoresde.sampling.predictors import ancestral, euler_maruyama, reverse_diffusion
from scoresde.sampling.stochastic import dpm_solver_pp_2m_sde, heun_sde
from scoresde.sampling.types import Sampler
from scoresde.sampling.unipc import unipc, unipc_bh1


class SamplerTable(dict[str, Sampler]):
    """The dict of :data:`SAMPLERS`: iterates over the current keys only, and looks up the old
    keys of :data:`ALIASES` too (``SAMPLERS["dpm_solver++_2m"] is SAMPLERS["dpm_solver_pp_2m"]``,
    ``"dpm_solver++_2m" in SAMPLERS``)."""

    def __missing__(self, key: str) -> Sampler:
        if isinstance(key, str) and key in ALIASES:
            return self[ALIASES[key]]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and key in ALIASES)


ALIASES: dict[str, str] = {
    "dpm_solver_2": "dpm_solver_2s",
    "dpm_solver_3": "dpm_solver_3s",
    "dpm_solver++_2m": "dpm_solver_pp_2m",
    "dpm_solver++_3m": "dpm_solver_pp_3m",
    "dpm_solver++_2m_sde": "dpm_solver_pp_2m_sde",
    "edm_stochastic": "heun_sde",
}
"""Old sampler keys, still accepted everywhere a method name is: old key -> key of :data:`SAMPLERS`."""

SAMPLERS: SamplerTable = SamplerTable(
    {
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
        "heun": Sampler(
            heun,
            order=2,
            stochastic=False,
            description="Heun in (x/s, sigma/s), 2 NFE/step (Karras et al. 2022, Alg. 1)",
        ),
        "ddim": Sampler(
            ddim,
            order=1,
            stochastic=False,
            description="deterministic DDIM, first-order exponential integrator (Song et al. 2021b)",
        ),
        "dpm_solver_2s": Sampler(
            dpm_solver_2s,
            order=2,
            stochastic=False,
            description="singlestep DPM-Solver-2, r1=1/2, 2 NFE/step (Lu et al. 2022, Alg. 1)",
        ),
        "dpm_solver_3s": Sampler(
            dpm_solver_3s,
            order=3,
            stochastic=False,
            description="singlestep DPM-Solver-3, r1=1/3, r2=2/3, 3 NFE/step (Lu et al. 2022, Alg. 2)",
        ),
        "dpm_solver_pp_2m": Sampler(
            dpm_solver_pp_2m,
            order=2,
            stochastic=False,
            description="multistep DPM-Solver++(2M), data prediction (Lu et al. 2022b, Alg. 2)",
        ),
        "dpm_solver_pp_3m": Sampler(
            dpm_solver_pp_3m,
            order=3,
            stochastic=False,
            description="multistep DPM-Solver++(3M), data prediction (Lu et al. 2022b)",
        ),
        "dpm_solver_v3": Sampler(
            dpm_solver_v3,
            order=3,
            stochastic=False,
            description="multistep DPM-Solver-v3 with empirical model statistics ems= from compute_ems, "
            "predictor + corrector (Zheng et al. 2023, Alg. 1-2)",
            required=("ems",),
        ),
        "unipc": Sampler(
            unipc,
            order=3,
            stochastic=False,
            description="UniPC, UniP-2 + UniC, B(h)=bh2, data prediction (Zhao et al. 2023)",
        ),
        "unipc_bh1": Sampler(
            unipc_bh1,
            order=3,
            stochastic=False,
            description="UniPC, UniP-2 + UniC, B(h)=bh1 (B(h) = h), data prediction (Zhao et al. 2023)",
        ),
        "deis": Sampler(
            deis,
            order=3,
            stochastic=False,
            description="DEIS-tAB3, eps extrapolated in t, exponential integrator "
            "(Zhang & Chen 2023, Eq. 14-15)",
        ),
        "ipndm": Sampler(
            ipndm,
            order=2,
            stochastic=False,
            description="iPNDM, fixed 4-step Adams-Bashforth weights in sigma_hat "
            "(Zhang & Chen 2023, App. B; "
            "order 2 on grids of unequal steps)",
        ),
        "dopri5": Sampler(
            dopri5,
            order=5,
            stochastic=False,
            description="adaptive Dormand-Prince 5(4) via torchdiffeq (Song et al. 2021, Sec. 4.3)",
            uses_grid=False,
        ),
        "bespoke": Sampler(
            bespoke,
            order=0,
            stochastic=False,
            description="bespoke non-stationary multistep solver with learned times and coefficients "
            "solver= from fit_bespoke, 1 NFE per step (Shaul et al. 2024, Eq. 9-11; order 0: accuracy "
            "set by its training on the model, not by a discretisation order)",
            required=("solver",),
            uses_grid=False,
        ),
        "consistency": Sampler(
            consistency,
            order=0,
            stochastic=True,
            description="multistep consistency sampling of a consistency model, 1 NFE per step "
            "(Song et al. 2023, Alg. 1; order 0: accuracy set by the distilled model, not by a "
            "discretisation order)",
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
        "heun_sde": Sampler(
            heun_sde,
            order=1,
            stochastic=True,
            description="EDM stochastic sampler with churn and Heun steps (Karras et al. 2022, Alg. 2)",
        ),
        "dpm_solver_pp_2m_sde": Sampler(
            dpm_solver_pp_2m_sde,
            order=1,
            stochastic=True,
            description="SDE-DPM-Solver++(2M), multistep exponential integrator (Lu et al. 2022b)",
        ),
        "dps": Sampler(
            dps,
            order=1,
            stochastic=True,
            description="diffusion posterior sampling given y_obs = A x, ancestral steps with normalised "
            "residual-gradient corrections (Chung et al. 2023, Alg. 1; order 1 as ancestral at zeta = 0, "
            "with zeta > 0 a biased posterior approximation)",
            required=("operator", "y_obs"),
        ),
    }
)

__all__ = ["ALIASES", "SAMPLERS", "SamplerTable", "canonical_method", "get_sampler"]


def canonical_method(method: str) -> str:
    """The :data:`SAMPLERS` key of ``method`` (a key, or an old key of :data:`ALIASES`)."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    name = ALIASES.get(method, method)
    if not dict.__contains__(SAMPLERS, name):
        raise ValueError(f"unknown sampling method {method!r}; choose one of {sorted(SAMPLERS)}")
    return name


def get_sampler(method: str) -> Sampler:
    """Look up ``method`` (a key of :data:`SAMPLERS` or an old key of :data:`ALIASES`), with an
    error that lists the choices."""
    return SAMPLERS[canonical_method(method)]

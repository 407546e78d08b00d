"""The probability-flow ODE (Song et al. 2021, Eq. 13) as a map: integrators, likelihood, latents.

Modules:
    tableau: Butcher tableaux of embedded Runge-Kutta pairs (``DOPRI5``).
    controller: the per-sample PI step-size controller (Hairer's DOPRI5 constants).
    norm: error norms (per-sample RMS; the worst sample, for torchdiffeq).
    pf_ode: clocks (time re-parameterisations) and the per-sample integration loop.
    integrators: the integrator objects ``AdaptiveIntegrator`` (shared steps), ``FixedStepIntegrator``
        and ``PerSample`` (per-sample steps), and ``make_integrator`` for the command line's flags.
    shared_step: the library's own shared-step embedded Runge-Kutta loop (``AdaptiveIntegrator``).
    planner: the precision planner of ``target_se`` (``PrecisionTarget`` -> ``LikelihoodPlan``).
    batched: the likelihood of a data set in sharded batches (``log_likelihood_batches``).
    dequantization: discrete data as integer levels, uniform dequantization and bits/dim
        (the library's one convention, ``Quantization``).
    likelihood: ``log_likelihood`` by the instantaneous change of variables (App. D.2).
    bound: ``dsm_nll_bound``, the reverse SDE's likelihood bound (Song et al. 2021c, Thm. 3).
    latent: ``encode`` / ``decode`` / ``slerp`` / ``temperature`` (App. D.4-D.5).
"""

from scoresde.flow import dequantization, latent, likelihood, pf_ode
from scoresde.flow.controller import PIController
from scoresde.flow.integrators import (
    AdaptiveIntegrator,
    FixedStepIntegrator,
    Integrator,
    PerSample,
    Torchdiffeq,
    make_integrator,
)
from scoresde.flow.tableau import BOSH3, DOPRI5, ButcherTableau

__all__ = [
    "BOSH3",
    "DOPRI5",
    "AdaptiveIntegrator",
    "FixedStepIntegrator",
    "ButcherTableau",
    "Integrator",
    "PIController",
    "PerSample",
    "Torchdiffeq",
    "dequantization",
    "latent",
    "likelihood",
    "make_integrator",
    "pf_ode",
]

"""The probability-flow ODE (Song et al. 2021, Eq. 13) as a map: integrators, likelihood, latents.

Modules:
    tableau: Butcher tableaux of embedded Runge-Kutta pairs (``DOPRI5``).
    controller: the per-sample PI step-size controller (Hairer's DOPRI5 constants).
    norm: error norms (per-sample RMS; the worst sample, for torchdiffeq).
    pf_ode: clocks (time re-parameterisations) and the per-sample integration loop.
    integrators: the integrator objects ``Torchdiffeq`` (the one route to torchdiffeq) and
        ``PerSample`` (tableau + controller + norm), and ``make_integrator`` for the old flags.
    dequantization: discrete data as integer levels, uniform dequantization and bits/dim
        (the library's one convention, ``Quantization``).
    likelihood: ``log_likelihood`` by the instantaneous change of variables (App. D.2).
    bound: ``dsm_nll_bound``, the reverse SDE's likelihood bound (Song et al. 2021c, Thm. 3).
    latent: ``encode`` / ``decode`` / ``slerp`` / ``temperature`` (App. D.4-D.5).
"""

from scoresde.flow import dequantization, latent, likelihood, pf_ode
from scoresde.flow.controller import PIController
from scoresde.flow.integrators import Integrator, PerSample, Torchdiffeq, make_integrator
from scoresde.flow.tableau import DOPRI5, ButcherTableau

__all__ = [
    "DOPRI5",
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

"""The probability-flow ODE (Song et al. 2021, Eq. 13) as a map: integrators, likelihood, latents.

Modules:
    pf_ode: clocks (time re-parameterisations) and the torchdiffeq / per-sample integrators.
    dequantization: discrete data as integer levels, uniform dequantization and bits/dim.
    likelihood: ``log_likelihood`` by the instantaneous change of variables (App. D.2).
    latent: ``encode`` / ``decode`` / ``slerp`` / ``temperature`` (App. D.4-D.5).

The old top-level paths (``scoresde.pf_ode``, ``scoresde.likelihood``, ``scoresde.latent``,
``scoresde.dequantization``) are aliases of these modules.
"""

import sys as _sys

from scoresde.flow import pf_ode

_sys.modules["scoresde.pf_ode"] = pf_ode

from scoresde.flow import dequantization  # noqa: E402

_sys.modules["scoresde.dequantization"] = dequantization

from scoresde.flow import likelihood  # noqa: E402

_sys.modules["scoresde.likelihood"] = likelihood

from scoresde.flow import latent  # noqa: E402

_sys.modules["scoresde.latent"] = latent

__all__ = ["dequantization", "latent", "likelihood", "pf_ode"]

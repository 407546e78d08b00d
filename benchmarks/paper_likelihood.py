"""The paper's likelihood loop, shared by the likelihood benchmarks.

score_sde_pytorch's ``likelihood.py`` (Song et al. 2021, App. D.2) integrates the augmented
probability-flow ODE ``(x, delta)`` with scipy's ``solve_ivp`` RK45 on the flattened state, with a
torch -> numpy round trip at every evaluation and the Hutchinson divergence of one probe.  Here
the drift and the Hutchinson term come from one forward pass and one vector-Jacobian product (the
paper's code runs the network twice per evaluation, once for the drift and once inside the
divergence; this is the faster variant, so ratios against it are conservative).

Used by ``benchmarks/likelihood_speed.py`` (per-evaluation cost) and
``benchmarks/likelihood_target_se.py`` (bits/dim at a target standard error).
"""

from __future__ import annotations

import numpy as np
import torch


def paper_solve(
    model, sde, x: torch.Tensor, probe: torch.Tensor, tol: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """scipy RK45 at ``rtol = atol = tol`` from ``sde.eps`` to ``sde.T`` on ``x: (B, *D)``.

    Args:
        model: a score model (its ``velocity`` is the drift).
        probe: one Rademacher (or Gaussian) probe of ``x``'s shape.

    Returns:
        ``(z, delta, nfe)``: the end state ``z`` (``x``'s shape and dtype), the integrated
        divergence ``delta: (B,)`` in float64 (``log p_eps(x) = log p_T(z) + delta``) and scipy's
        number of evaluations.
    """
    from scipy.integrate import solve_ivp

    shape, b = x.shape, x.shape[0]

    def ode_func(t: float, state: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(state[:-b].reshape(shape)).to(device=x.device, dtype=x.dtype)
        tt = torch.full((b,), t, dtype=x.dtype, device=x.device)
        with torch.enable_grad():
            xg = xt.requires_grad_(True)
            v = model.velocity(xg, tt)
            (g,) = torch.autograd.grad((v * probe).sum(), xg)
        div = (g * probe).reshape(b, -1).sum(1)
        out = [v.detach().cpu().numpy().reshape(-1), div.detach().cpu().numpy()]
        return np.concatenate(out).astype(np.float64)

    init = np.concatenate([x.detach().cpu().numpy().reshape(-1), np.zeros(b)]).astype(np.float64)
    sol = solve_ivp(ode_func, (sde.eps, sde.T), init, rtol=tol, atol=tol, method="RK45")
    end = sol.y[:, -1]
    z = torch.from_numpy(end[:-b].reshape(shape)).to(device=x.device, dtype=x.dtype)
    return z, torch.from_numpy(end[-b:]), int(sol.nfev)

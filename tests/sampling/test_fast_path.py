"""Every fixed-step sampler gives the same samples through the fast model path as through the
general one (``scoresde.models.fixed_times``): bit for bit where the step uses the prediction
itself, within float rounding where it folds the conversion into its coefficients."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss

# The samplers whose step folds the parameterisation conversion (FixedTimes.linear): equal to the
# general path within float rounding.  Every other sampler: bit for bit.
FOLDED = {
    "ddim",
    "euler",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_3m",
    "unipc",
    "unipc_bh1",
    "euler_maruyama",
    "reverse_diffusion",
    "ancestral",
    "dpm_solver_pp_2m_sde",
}
# Every grid sampler that runs on a plain score model (``consistency`` needs a consistency model;
# ``dpm_solver_v3`` and ``dps`` need options): a sampler added later is checked without listing it.
METHODS = [
    name
    for name, entry in ss.SAMPLERS.items()
    if entry.uses_grid and not entry.required and name != "consistency"
]
# Relative to the largest output entry: a few float32 ulps after 12 steps; float64 likewise.
RTOL = {torch.float32: 3e-6, torch.float64: 1e-13}


def _sample(method: str, sde: ss.SDE, prediction: str, dtype: torch.dtype, general: bool) -> torch.Tensor:
    torch.manual_seed(0)
    net = ss.MLP(3, hidden=32, depth=2).to(dtype)
    model = ss.ScoreModel(net, sde, prediction=prediction)
    if general:
        model.register_forward_pre_hook(lambda m, args: None)  # any hook: the general path
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=dtype) * sde.prior_std()
    g = torch.Generator().manual_seed(2)
    return ss.sample(model, sde, method=method, steps=12, x_T=x_T, generator=g).x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_the_general_path(method: str, dtype: torch.dtype) -> None:
    for sde, prediction in ((ss.VPSDE(), "eps"), (ss.SubVPSDE(), "v"), (ss.VESDE(), "x0")):
        fast = _sample(method, sde, prediction, dtype, general=False)
        general = _sample(method, sde, prediction, dtype, general=True)
        if method in FOLDED:
            scale = general.abs().max().item()
            torch.testing.assert_close(fast, general, rtol=0, atol=RTOL[dtype] * scale)
        else:
            assert torch.equal(fast, general), (method, type(sde).__name__, prediction)

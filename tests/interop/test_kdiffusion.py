"""The denoiser of a diffusers model agrees with k-diffusion's ``DiscreteEpsDDPMDenoiser``.

k-diffusion (Crowson) wraps a discrete eps-model as ``D(y, sigma) = y - sigma eps(y / sqrt(1 + sigma^2),
t(sigma))`` in the variables ``y = x / s``, ``sigma = sigma_hat``, with ``t(sigma)`` the table index
of ``sigma`` (interpolated linearly in ``log sigma``, or the nearest with ``quantize``).  At the
table's own sigmas (the levels k-diffusion's ``get_sigmas`` yields) scoresde's denoiser at the time
with that ``sigma_hat`` is the same function.  The first test checks that formula (always runs);
the second runs k-diffusion's own class when it is installed (loaded by path, as the benchmarks
do: its package ``__init__`` imports torchvision, which cannot be imported here).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from scoresde.interop.diffusers import from_diffusers
from tests.interop.conftest import diffusers

LEVELS = torch.tensor([0, 1, 17, 250, 999, 640])


def _setup(unet):
    sched = diffusers.DDPMScheduler()
    model, sde = from_diffusers(unet, sched)
    abar = sched.alphas_cumprod
    sigmas = ((1 - abar) / abar) ** 0.5  # k-diffusion's DiscreteSchedule.sigmas (float32)
    x = torch.randn(len(LEVELS), 1, 8, 8, generator=torch.Generator().manual_seed(11))
    y = x * (1 + sigmas[LEVELS, None, None, None] ** 2) ** 0.5  # k-diffusion's y = x / s, N(0, 1 + sigma^2)
    return model, sde, sigmas, y


def _scoresde_denoiser(model, sde, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    t = sde.t_of_lambda(-torch.log(sigma.double())).float()
    s = sde.marginal(t)[0].reshape(-1, 1, 1, 1)
    return model.denoise(y * s, t)


@torch.no_grad()
def test_denoiser_is_k_diffusions_formula(unet) -> None:
    model, sde, sigmas, y = _setup(unet)
    sigma = sigmas[LEVELS]
    c_in = (1 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
    want = y - sigma.reshape(-1, 1, 1, 1) * unet(y * c_in, LEVELS).sample
    got = _scoresde_denoiser(model, sde, y, sigma)
    assert float((got - want).abs().max() / want.abs().max()) <= 2e-5


def _load_external():
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    pkg = types.ModuleType("_kdx")
    pkg.__path__ = [str(root)]
    utils = types.ModuleType("_kdx.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sampling = types.ModuleType("_kdx.sampling")
    sampling.append_zero = lambda x: torch.cat([x, x.new_zeros([1])])
    sys.modules.update({"_kdx": pkg, "_kdx.utils": utils, "_kdx.sampling": sampling})
    mspec = importlib.util.spec_from_file_location("_kdx.external", root / "external.py")
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


@torch.no_grad()
def test_denoiser_matches_k_diffusion_discrete_eps_ddpm_denoiser(unet) -> None:
    external = _load_external()
    if external is None:
        pytest.skip(
            "k-diffusion is not installed (pip install --no-deps k-diffusion); the formula test covers it"
        )
    model, sde, sigmas, y = _setup(unet)
    sched = diffusers.DDPMScheduler()
    for quantize in (False, True):
        kd = external.DiscreteEpsDDPMDenoiser(lambda x, t: unet(x, t).sample, sched.alphas_cumprod, quantize)
        want = kd(y, sigmas[LEVELS])
        got = _scoresde_denoiser(model, sde, y, sigmas[LEVELS])
        assert float((got - want).abs().max() / want.abs().max()) <= 2e-5

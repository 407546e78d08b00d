"""Scheduler settings that change diffusers' loop: clipping, thresholding, zero terminal SNR, spacings.

Same tiny random-weight ``UNet2DModel`` as ``test_diffusers.py``, same ``x_T``; bounds are
multiples of the largest entry of diffusers' output (``rel_err``), as there.
"""

from __future__ import annotations

import copy

import pytest
import torch

import scoresde as ss
from scoresde.interop.diffusers import from_diffusers, scheduler_grid, scheduler_sampling, sde_from_scheduler
from tests.interop.conftest import diffusers
from tests.interop.test_diffusers import BOUND, diffusers_loop, rel_err, x_T


def _ddim_both_ways(unet, sched, x: torch.Tensor) -> tuple[float, float, float]:
    """``(ours - diffusers in float64, ours - diffusers64 in float32, diffusers32 - diffusers64)``.

    With clipping, ``x0`` of a random-weight eps-model reaches hundreds while the output stays in
    [-1, 1], so float32 rounding of the intermediates is far above float32 rounding of the output:
    diffusers' own float32 loop is 8e-5 of the output scale away from its float64 loop here.  The
    algorithms are compared in float64; in float32 scoresde must be no further from the float64
    loop than twice diffusers' own float32 loop is (plus BOUND): both are float32 rounding,
    amplified alike by the clip, and the order of the operations differs (scoresde forms
    ``x0 = (1/s) (x - sigma eps)`` with float64 coefficients; seen: 1.2e-4 against diffusers'
    8.3e-5 on the epsilon model, while the float64 runs agree to 7.6e-7).
    """
    unet64 = copy.deepcopy(unet).double()
    out = []
    for net, xs in ((unet64, x.double()), (unet, x)):
        loaded, sde = from_diffusers(net, sched)
        model, grid = scheduler_sampling(loaded, sched, sde)
        out.append(ss.sample(model, sde, x_T=xs, method="ddim", grid=grid, denoise=False).x)
    # DDIMPipeline's loop: eta 0, use_clipped_model_output None.
    ref64 = diffusers_loop(unet64, sched, x.double(), eta=0.0, use_clipped_model_output=None)
    ref32 = diffusers_loop(unet, sched, x, eta=0.0, use_clipped_model_output=None)
    assert float(ref64.abs().max()) <= 1.0  # the last step lands on the clipped x0
    return rel_err(out[0], ref64), rel_err(out[1].double(), ref64), rel_err(ref32.double(), ref64)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_ddim_saved_with_defaults_samples_like_its_pipeline(unet, prediction: str) -> None:
    """DDIMScheduler() clips x0 to [-1, 1] by default and keeps the unclipped eps (its pipeline's loop)."""
    sched = diffusers.DDIMScheduler(prediction_type=prediction)
    assert sched.config.clip_sample and not sched.config.thresholding
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(10)
    with pytest.raises(ValueError, match=r"clip_sample=True \(DDIMScheduler's default\).*scheduler_sampling"):
        scheduler_grid(sched, sde)
    x = x_T()
    err64, err32, theirs32 = _ddim_both_ways(unet, sched, x)
    assert err64 <= BOUND and err32 <= 2 * theirs32 + BOUND
    model, grid = scheduler_sampling(loaded, sched, sde)
    res = ss.sample(model, sde, x_T=x, method="ddim", grid=grid, denoise=False)
    assert res.nfe == 10
    unclipped = ss.sample(loaded, sde, x_T=x, method="ddim", grid=grid, denoise=False).x
    assert rel_err(unclipped, res.x) > 1e-2  # the clipping matters here
    with pytest.raises(ValueError, match="off that grid"):
        ss.sample(model, sde, x_T=x, method="ddim", steps=4, denoise=False)


def test_ddim_thresholding_matches(unet) -> None:
    sched = diffusers.DDIMScheduler(
        thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0, timestep_spacing="trailing"
    )
    sched.set_timesteps(10)
    err64, err32, theirs32 = _ddim_both_ways(unet, sched, x_T(3))
    assert err64 <= BOUND and err32 <= 2 * theirs32 + BOUND


def test_ddpm_clip_sample_matches_ancestral(unet) -> None:
    sched = diffusers.DDPMScheduler(variance_type="fixed_small")  # clip_sample=True is its default too
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(10)
    x = x_T(4)
    g = torch.Generator().manual_seed(5)
    ref = diffusers_loop(unet, sched, x, generator=g)
    model, grid = scheduler_sampling(loaded, sched, sde)
    # The same noise draws: diffusers draws one randn per step with the generator, as scoresde's seed does.
    res = ss.sample(
        model,
        sde,
        x_T=x,
        method="ancestral",
        grid=grid,
        generator=torch.Generator().manual_seed(5),
        denoise=False,
    )
    assert rel_err(res.x, ref) <= BOUND


def test_dpm_solver_pp_thresholding_matches(unet) -> None:
    sched = diffusers.DPMSolverMultistepScheduler(
        thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=2.0
    )
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(8)
    x = x_T(6)
    ref = diffusers_loop(unet, sched, x)
    model, grid = scheduler_sampling(loaded, sched, sde)
    res = ss.sample(model, sde, x_T=x, method="dpm_solver++_2m", grid=grid, denoise=False)
    assert rel_err(res.x, ref) <= BOUND


def test_other_schedulers_with_clipping_are_refused(unet) -> None:
    sched = diffusers.DPMSolverMultistepScheduler(
        thresholding=True, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"
    )
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(4)
    with pytest.raises(ValueError, match=r"thresholding=True is not reproduced.*ClipDenoised"):
        scheduler_sampling(loaded, sched, sde)


@pytest.mark.parametrize("clip_sample", [False, True])
def test_zero_terminal_snr_ddim_trailing(unet, clip_sample: bool) -> None:
    """rescale_betas_zero_snr=True: alphas_cumprod[-1] = 0 exactly (DDIM has no floor); v-prediction."""
    sched = diffusers.DDIMScheduler(
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
        clip_sample=clip_sample,
    )
    loaded, sde = from_diffusers(unet, sched)
    assert float(sde.alphas_cumprod[-1]) == 0.0
    s, sigma = sde.marginal(torch.tensor([1.0], dtype=torch.float64))
    assert float(s) == 0.0 and float(sigma) == 1.0
    sched.set_timesteps(10)
    assert int(sched.timesteps[0]) == 999
    x = x_T(7)
    ref = diffusers_loop(unet, sched, x, eta=0.0)
    model, grid = scheduler_sampling(loaded, sched, sde)
    res = ss.sample(model, sde, x_T=x, method="ddim", grid=grid, denoise=False)
    assert rel_err(res.x, ref) <= BOUND


def test_zero_terminal_snr_dpm_solver_takes_diffusers_floor(unet) -> None:
    """DPM-Solver floors the last alphas_cumprod at 2**-24 in its own table, which is what is read."""
    kw = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    sched = diffusers.DPMSolverMultistepScheduler(
        rescale_betas_zero_snr=True, prediction_type="v_prediction", **kw
    )
    loaded, sde = from_diffusers(unet, sched)
    assert float(sde.alphas_cumprod[-1]) == 2.0**-24
    sched.set_timesteps(8)
    x = x_T(8)
    ref = diffusers_loop(unet, sched, x)
    res = ss.sample(
        loaded, sde, x_T=x, method="dpm_solver++_2m", grid=scheduler_grid(sched, sde), denoise=False
    )
    assert rel_err(res.x, ref) <= BOUND
    # With DDPM's linear betas the floor lies above the entry before it: refused, naming the way out.
    linear = diffusers.DPMSolverMultistepScheduler(rescale_betas_zero_snr=True)
    with pytest.raises(
        ValueError, match=r"rescale_betas_zero_snr=True floors .* 2\*\*-24.*DDIMScheduler config"
    ):
        sde_from_scheduler(linear)


@pytest.mark.parametrize("flag", ["use_karras_sigmas", "use_lu_lambdas"])
def test_sigma_spacings_are_refused_by_name(unet, flag: str) -> None:
    sched = diffusers.DPMSolverMultistepScheduler(**{flag: True})
    _, sde = from_diffusers(unet, sched)
    sched.set_timesteps(10)
    with pytest.raises(ValueError, match=rf"{flag}=True.*Set {flag}=False.*grid='karras'"):
        scheduler_grid(sched, sde)


@pytest.mark.parametrize(
    ("prediction", "steps", "alpha_one"),
    [("epsilon", 7, True), ("v_prediction", 10, False), ("sample", 50, True)],
)
def test_ddim_linspace_matches_diffusers_loop(unet, prediction: str, steps: int, alpha_one: bool) -> None:
    """``linspace`` DDIM steps from each timestep to ``t - N // n``, then treats the result as a sample at
    the next timestep: ``scheduler_grid`` refuses it, ``scheduler_sampling`` reproduces it."""
    sched = diffusers.DDIMScheduler(
        prediction_type=prediction, clip_sample=False, timestep_spacing="linspace", set_alpha_to_one=alpha_one
    )
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(steps)
    with pytest.raises(
        ValueError, match=r"timestep_spacing='linspace'.*scheduler_sampling.*'leading' or 'trailing'"
    ):
        scheduler_grid(sched, sde)
    x = x_T(4)
    ref = diffusers_loop(unet, sched, x, eta=0.0)
    model, grid = scheduler_sampling(loaded, sched, sde)
    assert torch.equal(sde.timestep(grid[:steps]).round().long(), sched.timesteps)
    res = ss.sample(model, sde, x_T=x, method="ddim", grid=grid, denoise=False)
    assert res.nfe == (steps if alpha_one else steps - 1)  # timestep 0 to alpha_bar_0 moves nothing
    assert rel_err(res.x, ref) <= BOUND
    # Not the same as scoresde's own ddim on those timesteps (the steps land elsewhere).
    plain = ss.sample(loaded, sde, x_T=x, method="ddim", grid=grid, denoise=False).x
    assert rel_err(plain, ref) > 1e-3


def test_ddim_linspace_with_clipping_matches(unet) -> None:
    """``linspace`` with DDIMScheduler's default ``clip_sample=True`` (compared as the clipped tests)."""
    sched = diffusers.DDIMScheduler(timestep_spacing="linspace")
    sched.set_timesteps(10)
    err64, err32, theirs32 = _ddim_both_ways(unet, sched, x_T(5))
    assert err64 <= BOUND and err32 <= 2 * theirs32 + BOUND


@pytest.mark.parametrize("name", ["DDPMScheduler", "DPMSolverMultistepScheduler"])
def test_linspace_spacing_where_the_loop_steps_to_the_next_timestep(unet, name: str) -> None:
    kw = {"variance_type": "fixed_small", "clip_sample": False} if name == "DDPMScheduler" else {}
    sched = getattr(diffusers, name)(timestep_spacing="linspace", **kw)
    loaded, sde = from_diffusers(unet, sched)
    sched.set_timesteps(7)
    x = x_T(9)
    ref = diffusers_loop(unet, sched, x, generator=torch.Generator().manual_seed(3))
    method = "ancestral" if name == "DDPMScheduler" else "dpm_solver++_2m"
    res = ss.sample(
        loaded,
        sde,
        x_T=x,
        method=method,
        grid=scheduler_grid(sched, sde),
        generator=torch.Generator().manual_seed(3),
        denoise=False,
    )
    assert rel_err(res.x, ref) <= BOUND

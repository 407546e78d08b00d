"""scoresde's samplers on diffusers models against diffusers' own scheduler loops.

Same tiny randomly initialised ``UNet2DModel`` (seeded, no download), same ``x_T``, same
timesteps, same noise draws.  Agreement is to float32 rounding: the largest difference is at
most ``BOUND = 2e-5`` times the largest entry of diffusers' output (measured 3e-7 to 3e-6; the
two sides compute the same updates in a different order, in float32, over up to 50 steps).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.interop.diffusers import (
    SUPPORTED_SCHEDULERS,
    from_diffusers,
    load_diffusers,
    scheduler_grid,
    sde_from_scheduler,
)
from tests.interop.conftest import diffusers, tiny_unet

BOUND = 2e-5
PREDICTIONS = ["epsilon", "v_prediction", "sample"]
SHAPE = (2, 1, 8, 8)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


@torch.no_grad()
def diffusers_loop(unet, scheduler, x: torch.Tensor, generator=None, y=None, **step_kw) -> torch.Tensor:
    """The loop of diffusers' DDPM/DDIM/DPM-Solver pipelines, without clipping or rescaling."""
    for t in scheduler.timesteps:
        out = unet(x, t, class_labels=y).sample
        x = scheduler.step(out, t, x, generator=generator, **step_kw).prev_sample
    return x


def x_T(seed: int = 1) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_matches_ddim_scheduler(unet, prediction: str, steps: int) -> None:
    sched = diffusers.DDIMScheduler(
        prediction_type=prediction, clip_sample=False, timestep_spacing="trailing"
    )
    model, sde = from_diffusers(unet, sched)
    sched.set_timesteps(steps)
    x = x_T()
    ref = diffusers_loop(unet, sched, x, eta=0.0)
    grid = scheduler_grid(sched, sde)
    assert torch.equal(sde.timestep(grid[:-1]).round().long(), sched.timesteps) and float(grid[-1]) == 0.0
    res = ss.sample(model, sde, x_T=x, method="ddim", grid=grid, denoise=False)
    assert res.nfe == steps
    assert rel_err(res.x, ref) <= BOUND


def test_ddim_leading_spacing_without_alpha_one(unet) -> None:
    """``leading`` timesteps 900, ..., 0 and ``set_alpha_to_one=False``: the last step moves nothing."""
    sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    model, sde = from_diffusers(unet, sched)
    sched.set_timesteps(10)
    x = x_T(2)
    ref = diffusers_loop(unet, sched, x, eta=0.0)
    grid = scheduler_grid(sched, sde)
    assert len(grid) == 10 and float(grid[-1]) == pytest.approx(1 / 1000)
    res = ss.sample(model, sde, x_T=x, method="ddim", grid=grid, denoise=False)
    assert rel_err(res.x, ref) <= BOUND


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_dpm_solver_pp_2m_matches_multistep_scheduler(unet, prediction: str) -> None:
    sched = diffusers.DPMSolverMultistepScheduler(
        prediction_type=prediction, algorithm_type="dpmsolver++", solver_order=2
    )
    model, sde = from_diffusers(unet, sched)
    sched.set_timesteps(10)
    x = x_T(3)
    ref = diffusers_loop(unet, sched, x)
    res = ss.sample(
        model, sde, x_T=x, method="dpm_solver++_2m", grid=scheduler_grid(sched, sde), denoise=False
    )
    assert res.nfe == 10
    assert rel_err(res.x, ref) <= BOUND


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ancestral_matches_ddpm_scheduler_with_same_noise(unet, prediction: str) -> None:
    """DDPM's ``fixed_small`` variance is the posterior variance of scoresde's ``ancestral``; both draw
    ``x_T`` and then one normal per step from the same generator."""
    sched = diffusers.DDPMScheduler(
        prediction_type=prediction, clip_sample=False, variance_type="fixed_small"
    )
    model, sde = from_diffusers(unet, sched)
    sched.set_timesteps(20)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(SHAPE, generator=g)
    ref = diffusers_loop(unet, sched, x, generator=g)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(SHAPE, generator=g)
    res = ss.sample(
        model, sde, x_T=x, method="ancestral", grid=scheduler_grid(sched, sde), generator=g, denoise=False
    )
    assert rel_err(res.x, ref) <= BOUND
    # The noise mattered: another seed gives another sample.
    other = ss.sample(
        model, sde, x_T=x, method="ancestral", grid=scheduler_grid(sched, sde), seed=9, denoise=False
    )
    assert rel_err(other.x, ref) > 1e-2


def test_ve_pc_matches_score_sde_ve_scheduler_with_same_noise() -> None:
    """The paper's PC sampler (reverse diffusion + Langevin, Song et al. 2021, Alg. 2) against diffusers'
    ``ScoreSdeVeScheduler`` loop (``ScoreSdeVePipeline``: at each time a corrector step, then a predictor
    step; the last predictor step's mean is Tweedie's denoiser at ``sigma_min``).

    scoresde runs predictor-then-corrector, so it starts from diffusers' state after its first
    corrector step and finishes with ``denoise=True``; with ``sampling_eps = 0`` the times
    ``linspace(1, 0, N)`` sit exactly on the scheduler's discrete sigmas.
    """
    unet = tiny_unet(fourier=True)
    n = 10
    sched = diffusers.ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0, sampling_eps=0.0, snr=0.15)
    model, sde = from_diffusers(unet, sched)
    assert (model.prediction, model.time_input, sde.config()["kernel"]) == ("score", "sigma", "geometric")
    sched.set_timesteps(n)
    sched.set_sigmas(n)
    idx = (sched.timesteps * (n - 1)).long()
    assert torch.equal(idx, torch.arange(n - 1, -1, -1))  # the scheduler's own indexing is exact here
    g = torch.Generator().manual_seed(5)
    x = torch.randn(SHAPE, generator=g) * sched.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            sigma_t = sched.sigmas[i] * torch.ones(SHAPE[0])
            x = sched.step_correct(unet(x, sigma_t).sample, x, generator=g).prev_sample
            if i == 0:
                x_start, state = x.clone(), g.get_state()
            out = sched.step_pred(unet(x, sigma_t).sample, t, x, generator=g)
            x, ref = out.prev_sample, out.prev_sample_mean
    g = torch.Generator()
    g.set_state(state)
    res = ss.sample(
        model,
        sde,
        x_T=x_start,
        method="pc",
        grid=scheduler_grid(sched, sde),
        generator=g,
        predictor="reverse_diffusion",
        corrector="langevin",
        n_corrector=1,
        snr=0.15,
        denoise=True,
    )
    assert res.nfe == 2 * (n - 1) + 1
    assert rel_err(res.x, ref) <= BOUND


def test_class_conditional_unet_passes_labels() -> None:
    unet = tiny_unet(num_class_embeds=3)
    sched = diffusers.DDIMScheduler(clip_sample=False, timestep_spacing="trailing")
    converted = from_diffusers(unet, sched)
    model, sde = converted
    assert converted.num_classes == 3
    sched.set_timesteps(10)
    x = x_T(6)
    y = torch.tensor([0, 2])
    ref = diffusers_loop(unet, sched, x, y=y, eta=0.0)
    res = ss.sample(model, sde, x_T=x, y=y, method="ddim", grid=scheduler_grid(sched, sde), denoise=False)
    assert rel_err(res.x, ref) <= BOUND
    other = ss.sample(model, sde, x_T=x, y=torch.tensor([1, 1]), method="ddim", steps=10, denoise=False)
    assert rel_err(other.x, ref) > 1e-3


def test_tabulated_sde_is_the_schedulers_table(unet) -> None:
    for schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        sched = diffusers.DDPMScheduler(beta_schedule=schedule)
        sde = sde_from_scheduler(sched)
        t = sde.time_of_timestep(torch.arange(1000))
        s, sigma = sde.marginal(t)
        torch.testing.assert_close(s**2, sched.alphas_cumprod.double(), rtol=1e-12, atol=0)
        torch.testing.assert_close(s**2 + sigma**2, torch.ones_like(s))
        # Our own construction of the named schedule agrees to float32 rounding.
        ours = ss.DiscreteVPSDE.from_schedule(schedule)
        torch.testing.assert_close(ours.alphas_cumprod, sched.alphas_cumprod.double(), rtol=2e-5, atol=0)


def test_unet_input_is_integer_timestep_and_output_unwrapped(unet) -> None:
    """Between the table's times the network sees the interpolated timestep; at them, the integer."""
    sched = diffusers.DDPMScheduler()
    model, sde = from_diffusers(unet, sched)
    x = x_T(7)
    t = torch.tensor([0.9, 0.9], dtype=torch.float32)  # timestep 899, stored in float32
    with torch.no_grad():
        direct = unet(x, torch.tensor([899, 899])).sample
        # Bit equality: the same network on the same input, run twice on this machine; the wrapper
        # must pass its output through untouched.
        torch.testing.assert_close(model.eps(x, t), direct, rtol=0, atol=0)
        nearest = ss.ScoreModel(
            unet, sde, scale_input=False, time_input="timestep_nearest"
        )  # .sample unwrapped
        torch.testing.assert_close(nearest.eps(x, torch.full((2,), 0.90031)), direct, rtol=0, atol=0)
        between = model.eps(x, torch.full((2,), 0.9005))
        assert rel_err(between, direct) > 1e-6


def test_save_pretrained_folders_load_offline(unet, tmp_path) -> None:
    sched = diffusers.DDPMScheduler(prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path / "pipe")
    unet.save_pretrained(tmp_path / "unet")
    sched.save_pretrained(tmp_path / "unet")  # scheduler_config.json beside the model's config.json
    x = x_T(8)
    t = torch.full((2,), 0.5)
    want = from_diffusers(unet, sched).model.eps(x, t)
    for folder in ("pipe", "unet"):
        model, sde = load_diffusers(tmp_path / folder)
        assert model.prediction == "v" and isinstance(sde, ss.DiscreteVPSDE) and not model.training
        torch.testing.assert_close(model.eps(x, t), want)


def test_bad_folders_and_schedulers(unet, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such diffusers folder"):
        load_diffusers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="not a diffusers model folder"):
        load_diffusers(tmp_path / "empty")
    unet.save_pretrained(tmp_path / "noschedule")
    with pytest.raises(ValueError, match=r"without scheduler_config\.json"):
        load_diffusers(tmp_path / "noschedule")
    with pytest.raises(
        ValueError, match=r"unsupported scheduler 'LCMScheduler'; supported: \[.*DDIMScheduler"
    ):
        load_diffusers(tmp_path / "noschedule", scheduler={"_class_name": "LCMScheduler"})
    with pytest.raises(ValueError, match="unsupported scheduler 'FlowMatchEulerDiscreteScheduler'"):
        from_diffusers(unet, diffusers.FlowMatchEulerDiscreteScheduler())
    assert "ScoreSdeVeScheduler" in SUPPORTED_SCHEDULERS
    with pytest.raises(ValueError, match="unsupported prediction_type 'flow_prediction'"):
        from_diffusers(unet, {"_class_name": "DDPMScheduler", "prediction_type": "flow_prediction"})
    # Zero terminal SNR is supported now (test_diffusers_schedulers.py); a floored table that is
    # not decreasing (DPM-Solver with DDPM's linear betas) is refused, naming the setting.
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True floors"):
        from_diffusers(unet, diffusers.DPMSolverMultistepScheduler(rescale_betas_zero_snr=True))
    cfg = tmp_path / "other"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    (cfg / "scheduler_config.json").write_text('{"_class_name": "DDPMScheduler"}')
    with pytest.raises(ValueError, match="'AutoencoderKL', but only UNet2DModel"):
        load_diffusers(cfg)


def test_scheduler_grid_needs_a_timestep_table() -> None:
    """A VP scheduler's grid maps its timesteps through the SDE's table (``SDE.num_timesteps``)."""
    sched = diffusers.DDIMScheduler(clip_sample=False, timestep_spacing="trailing")
    sched.set_timesteps(5)
    assert ss.VPSDE().num_timesteps is None
    with pytest.raises(TypeError, match="needs a discrete-time SDE with the scheduler's timestep table"):
        scheduler_grid(sched, ss.VPSDE())
    table = ss.DiscreteVPSDE.from_schedule("linear", 1000)
    assert table.num_timesteps == 1000
    expected = (torch.as_tensor(sched.timesteps).double() + 1) / 1000  # t_n = (n + 1) / N
    torch.testing.assert_close(scheduler_grid(sched, table)[:5], expected)

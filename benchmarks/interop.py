"""scoresde on diffusers models against diffusers' own scheduler loops (results: docs/bench_interop.md).

On small randomly initialised ``UNet2DModel``s (seeded; no download), per model type (epsilon,
v_prediction, sample, VE NCSN++-style): time per sample and the largest difference between
scoresde's solver and diffusers' loop from the same ``x_T`` with the same noise; the bits/dim of
a diffusers model by ``ss.log_likelihood``; and the 10-NFE error of scoresde's and diffusers'
solvers against a 1000-step DDIM reference on the same model.

    PYTHONPATH=src python benchmarks/interop.py            # about 2 minutes on 1 CPU thread
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import diffusers
import torch

import scoresde as ss
from scoresde.interop.diffusers import from_diffusers, scheduler_grid

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (8, 1, 16, 16)


def tiny_unet(fourier: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        time_embedding_type="fourier" if fourier else "positional",
    ).eval()


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


def rel_rms(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


@torch.no_grad()
def diffusers_loop(unet, sched, x, generator=None, **kw):
    if generator is not None:
        kw = {**kw, "generator": generator}
    for t in sched.timesteps:
        x = sched.step(unet(x, t).sample, t, x, **kw).prev_sample
    return x


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def agreement_rows(unet, ve_unet) -> list[tuple]:
    rows = []
    n = SHAPE[0]
    for pred in ("epsilon", "v_prediction", "sample"):
        cases = [
            (
                "ddim",
                10,
                diffusers.DDIMScheduler(prediction_type=pred, clip_sample=False, timestep_spacing="trailing"),
            ),
            ("dpm_solver++_2m", 10, diffusers.DPMSolverMultistepScheduler(prediction_type=pred)),
            ("ancestral", 20, diffusers.DDPMScheduler(prediction_type=pred, clip_sample=False)),
        ]
        for method, steps, sched in cases:
            model, sde = from_diffusers(unet, sched)
            sched.set_timesteps(steps)
            g = torch.Generator().manual_seed(1)
            x = torch.randn(SHAPE, generator=g)
            kw = {"eta": 0.0} if method == "ddim" else {}
            ref, t_d = timed(lambda: diffusers_loop(unet, sched, x, generator=g, **kw))  # noqa: B023
            g = torch.Generator().manual_seed(1)
            x = torch.randn(SHAPE, generator=g)
            grid = scheduler_grid(sched, sde)
            res, t_s = timed(
                lambda: ss.sample(model, sde, x_T=x, method=method, grid=grid, generator=g, denoise=False)  # noqa: B023
            )
            rows.append(
                (pred, f"{method} / {type(sched).__name__}", steps, rel(res.x, ref), t_s / n, t_d / n)
            )
    # VE: the paper's PC sampler against ScoreSdeVePipeline's loop (corrector first; see docs/interop.md).
    steps = 10
    sched = diffusers.ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0, sampling_eps=0.0)
    model, sde = from_diffusers(ve_unet, sched)
    sched.set_timesteps(steps)
    sched.set_sigmas(steps)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(SHAPE, generator=g) * sched.init_noise_sigma
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            sigma_t = sched.sigmas[i] * torch.ones(n)
            x = sched.step_correct(ve_unet(x, sigma_t).sample, x, generator=g).prev_sample
            if i == 0:
                x_start, state = x.clone(), g.get_state()
            out = sched.step_pred(ve_unet(x, sigma_t).sample, t, x, generator=g)
            x, ref = out.prev_sample, out.prev_sample_mean
    t_d = time.perf_counter() - t0
    g = torch.Generator()
    g.set_state(state)
    res, t_s = timed(
        lambda: ss.sample(
            model,
            sde,
            x_T=x_start,
            method="pc",
            grid=scheduler_grid(sched, sde),
            generator=g,
            snr=sched.config.snr,
        )
    )
    rows.append(("VE (score)", "pc / ScoreSdeVeScheduler", steps, rel(res.x, ref), t_s / n, t_d / n))
    return rows


def ten_step_rows(unet) -> tuple[list[tuple], float]:
    """10-NFE solutions against a 1000-step DDIM (diffusers, trailing) reference, epsilon model."""
    base = diffusers.DDIMScheduler(clip_sample=False, timestep_spacing="trailing")
    model, sde = from_diffusers(unet, base)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    base.set_timesteps(1000)
    ref, t_ref = timed(lambda: diffusers_loop(unet, base, x, eta=0.0))
    rows = []
    config = base.config
    for label, cls, extra in [
        (
            "DDIMScheduler (trailing)",
            diffusers.DDIMScheduler,
            {"clip_sample": False, "timestep_spacing": "trailing"},
        ),
        ("DPMSolverMultistepScheduler order 2", diffusers.DPMSolverMultistepScheduler, {"solver_order": 2}),
        ("DPMSolverMultistepScheduler order 3", diffusers.DPMSolverMultistepScheduler, {"solver_order": 3}),
        ("UniPCMultistepScheduler", diffusers.UniPCMultistepScheduler, {}),
    ]:
        sched = cls.from_config(config, **extra)
        sched.set_timesteps(10)
        kw = {"eta": 0.0} if cls is diffusers.DDIMScheduler else {}
        rows.append(("diffusers", label, 10, rel_rms(diffusers_loop(unet, sched, x, **kw), ref)))
    trailing = diffusers.DDIMScheduler.from_config(config, timestep_spacing="trailing")
    trailing.set_timesteps(10)
    grid = scheduler_grid(trailing, sde)
    for method in ("ddim", "dpm_solver++_2m", "dpm_solver++_3m", "unipc"):
        res = ss.sample(model, sde, x_T=x, method=method, grid=grid, denoise=False)
        rows.append(("scoresde", f"{method}, trailing timesteps + t=0", res.nfe, rel_rms(res.x, ref)))
        res = ss.sample(model, sde, x_T=x, method=method, steps=9, grid="logsnr", denoise=True)
        rows.append(("scoresde", f"{method}, 9 logsnr steps + denoise", res.nfe, rel_rms(res.x, ref)))
    return rows, t_ref


def bpd_row(unet) -> tuple:
    sched = diffusers.DDPMScheduler()
    model, sde = from_diffusers(unet, sched)
    images = ss.sample(model, sde, shape=(2, *SHAPE[1:]), method="dpm_solver++_2m", steps=20, seed=0).x
    bins = ((images.clamp(-1, 1) + 1) * 127.5).round().long()
    ll, secs = timed(
        lambda: ss.log_likelihood(
            model,
            sde,
            bins,
            quantization=ss.Quantization(256),
            divergence="hutchinson",
            generator=torch.Generator().manual_seed(4),
            integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3),
            options=ss.LikelihoodOptions(time_variable="log_sigma"),
        )
    )
    return ll.bpd_mean, ll.bpd_se, ll.nfe, secs / 2


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_interop.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    unet, ve_unet = tiny_unet(), tiny_unet(fourier=True)
    t0 = time.perf_counter()
    agree = agreement_rows(unet, ve_unet)
    ten, t_ref = ten_step_rows(unet)
    bpd = bpd_row(unet)
    total = time.perf_counter() - t0
    lines = [
        "# scoresde on diffusers models (benchmarks/interop.py)",
        "",
        f"`PYTHONPATH=src python benchmarks/interop.py`: diffusers {diffusers.__version__}, torch "
        f"{torch.__version__}, {platform.processor() or platform.machine()}, 1 CPU thread, "
        f"{total:.0f} s in all.",
        f"Models: randomly initialised `UNet2DModel`s (seed 0; 1 x 16 x 16, channels (16, 32), attention at "
        f"8 x 8; Fourier time embedding for VE), batch {SHAPE[0]}. Untrained networks: the figures compare "
        "the solvers, not the models.",
        "",
        "## Agreement with diffusers' scheduler loops (same model, x_T, timesteps and noise)",
        "",
        "| model | scoresde method / diffusers scheduler | steps | max abs diff / max abs output "
        "| scoresde s/sample | diffusers s/sample |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {p} | {m} | {n} | {e:.1e} | {a:.4f} | {b:.4f} |" for p, m, n, e, a, b in agree]
    lines += [
        "",
        "## 10 NFE against a 1000-step reference (epsilon model)",
        "",
        f"Reference: diffusers `DDIMScheduler`, 1000 trailing steps to alpha = 1 ({t_ref:.0f} s). Error: RMS "
        "difference / RMS of the reference.",
        "",
        "| library | solver | NFE | relative RMS error |",
        "|---|---|---|---|",
    ]
    lines += [f"| {lib} | {label} | {n} | {e:.2e} |" for lib, label, n, e in ten]
    libs = ("scoresde", "diffusers")
    best = {lib: min((e, label) for lb, label, _, e in ten if lb == lib) for lib in libs}
    lines += [
        "",
        f"Best at 10 NFE: scoresde {best['scoresde'][1]} ({best['scoresde'][0]:.2e}); diffusers "
        f"{best['diffusers'][1]} ({best['diffusers'][0]:.2e}).",
        "",
        "## Bits/dim by the probability-flow ODE",
        "",
        f"`ss.log_likelihood` (Hutchinson, log-sigma clock, rtol = atol = 1e-3) of 2 images sampled from the "
        f"epsilon model (DDPM table, eps = 1/N), as 8-bit bins: {bpd[0]:.3f} +- {bpd[1]:.3f} bits/dim, "
        f"{bpd[2]} NFE, {bpd[3]:.1f} s per image.",
        "",
        "(The bits/dim of an untrained network is far above the 8 bits of a uniform model: the figure shows",
        "that the likelihood runs on a diffusers model and what it costs, not a model quality.)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()

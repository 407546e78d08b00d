"""Speed of scoresde against what a user would run instead, side by side, ratios first.

Sections (``--sections``, default all):

- ``train``: one training step (forward, backward, AdamW, EMA) of scoresde's ``UNet`` vs
  diffusers' ``UNet2DModel`` at equal parameter count (within 1%), at 28x28x1 and 32x32x3,
  batch 64, eager and ``torch.compile``d; also a bare loop vs scoresde's ``fit`` loop.
- ``sample``: wall time per image at equal NFE on one ``UNet2DModel``: ``ss.sample`` through the
  interop adapter (DDIM, DPM-Solver++ 2M) vs diffusers' scheduler loop vs k-diffusion's sampler
  loop (when installed), and the sampler's per-step overhead against one forward.
- ``likelihood``: ``ss.log_likelihood`` (public API; the likelihood solver is tuned elsewhere)
  vs the paper's scipy RK45 loop on one MLP at the same tolerance: time per evaluation.
- ``overhead``: the per-step cost of every fixed-step sampler on a network that costs nothing,
  against one forward of an MLP 3x256 at the shapes of a small-model run (64-D points, batch 256;
  2-D points, batch 64): CPU time of the sampling thread (``time.thread_time``, which a shared
  core does not inflate), median of rounds; with ``--baseline-src DIR`` the same measurement of
  another source tree (e.g. ``git archive main src | tar -x -C /tmp/base``) runs in alternating
  subprocesses beside it.
- ``startup``: ``scoresde --help`` / ``scoresde sample --help`` vs ``python -c "import torch"``.
- ``threads``: ``train``, ``sample`` and ``likelihood`` workloads with one other single-threaded
  job beside (``taskset -c 1`` busy loop) vs the idle machine, for thread count / OpenMP wait
  policy choices (subprocesses, since OpenMP reads its policy at ``import torch``).

Each timed case is measured in alternating rounds in one process (median of ``--repeats``);
ratios are what to read: the machine may be shared.  ``--quick`` is a short validation run.
``--device cuda`` runs the GPU cases (bf16 autocast, compile, CUDA graphs for fixed-step
samplers); see benchmarks/gpu_check.sh.

Run: ``PYTHONPATH=src taskset -c 0 python benchmarks/speed.py --threads 1 --out docs/bench_speed.md``
(the ``threads`` section pins its own processes to cores 0-1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# SPEED_SRC: another source tree (the overhead section's baseline runs there, in a subprocess).
sys.path.insert(0, os.environ.get("SPEED_SRC", str(ROOT / "src")))


# --------------------------------------------------------------------------------------------- #
# Timing helpers.
# --------------------------------------------------------------------------------------------- #
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Wall seconds of one call (synchronised on CUDA)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def side_by_side(
    cases: dict[str, Callable[[], object]], repeats: int, device: str = "cpu"
) -> dict[str, float]:
    """Median wall seconds per call of each case, measured in alternating rounds (after one
    warm-up call each), so that a change of machine load hits every case alike."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            times[k].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def side_by_side_cpu(
    cases: dict[str, Callable[[], object]], repeats: int, device: str = "cpu"
) -> tuple[dict[str, float], dict[str, float]]:
    """As :func:`side_by_side`, returning the medians of wall seconds and of the process's CPU
    seconds (``time.process_time``) per call.  On a CPU shared with other jobs, a one-thread case
    is descheduled for much of its wall time; its CPU time is what the shared core does not
    inflate (cache contention aside), so CPU-time ratios are the steadier reading there."""
    for fn in cases.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            c0 = time.process_time()
            wall[k].append(timed(fn, device))
            cpu[k].append(time.process_time() - c0)
    return (
        {k: statistics.median(v) for k, v in wall.items()},
        {k: statistics.median(v) for k, v in cpu.items()},
    )


def load_text() -> str:
    """The machine's load, for the report."""
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"
    except OSError:
        return "load unknown"


# --------------------------------------------------------------------------------------------- #
# Threads under load (subprocess workers).
# --------------------------------------------------------------------------------------------- #
def _recipe_unet(conditional: bool = True):
    """The README 28x28 recipe's network (TrainConfig defaults at 28x28: base 16, mults 1 2 2,
    one residual block, attention at 7x7, 10 classes)."""
    from scoresde.nets.unet import UNet

    return UNet(
        in_channels=1,
        image_size=28,
        base_channels=16,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(7,),
        dropout=0.0,
        num_classes=10 if conditional else None,
    )


def worker(kind: str, seconds: float) -> dict[str, float]:
    """Run one workload for about ``seconds`` after a warm-up; returns its rate (in a subprocess
    whose environment and ``--threads`` the parent chose)."""
    import torch

    import scoresde as ss

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    sde = ss.VPSDE()
    if kind == "train":
        model = ss.ScoreModel(_recipe_unet(), sde)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
        ema = ss.EMA(model)
        x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)

        def step() -> None:
            loss = ss.dsm_loss(model, x, y=y, generator=g).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model)

    elif kind == "sample":
        model = ss.ScoreModel(_recipe_unet(), sde).eval()
        y = torch.arange(16) % 10

        def step() -> None:
            ss.sample(model, sde, shape=(16, 1, 28, 28), method="euler_maruyama", steps=2, y=y, generator=g)

    elif kind == "likelihood":
        model = ss.ScoreModel(ss.MLP(64, hidden=256, depth=3), sde).eval()
        x = torch.randn(64, 64, generator=g)

        def step() -> None:
            ss.log_likelihood(
                model,
                sde,
                x,
                divergence="hutchinson",
                generator=g,
                integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3),
            )

    else:
        raise ValueError(kind)
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        step()
        n += 1
    return {"rate": n / (time.perf_counter() - t0), "threads": torch.get_num_threads()}


THREAD_CONFIGS = {
    "2 threads, OpenMP default (spin)": ({}, "2"),
    "2 threads, passive": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}, "2"),
    "1 thread": ({}, "1"),
    "new default: auto threads, passive": (
        {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"},
        "auto",
    ),
}
"""Thread choices compared: (environment, thread count; ``auto``: ``settings.runtime.auto_threads``)."""


def _run_worker(
    kind: str, env_extra: dict[str, str], threads: str, seconds: float, nice: int
) -> dict[str, float]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    }
    env.pop("OMP_NUM_THREADS", None)
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT / "src")
    cmd = ["taskset", "-c", "0,1", sys.executable, __file__, "--worker", kind, "--seconds", str(seconds)]
    cmd += ["--worker-threads", threads]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def threads_section(quick: bool, nice: int) -> str:
    """Each workload with each thread choice, idle and beside one busy single-threaded job."""
    seconds = 3.0 if quick else 8.0
    kinds = ("train", "sample", "likelihood")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    loads: dict[str, str] = {}
    for state in ("idle", "busy"):
        busy = None
        if state == "busy":
            cmd = ["taskset", "-c", "1", sys.executable, "-c", "while 1: pass"]
            busy = subprocess.Popen(["nice", "-n", str(nice), *cmd] if nice else cmd)
            time.sleep(1.0)
        try:
            loads[state] = load_text()
            for kind in kinds:
                for name, (env, threads) in THREAD_CONFIGS.items():
                    rows[(state, kind, name)] = _run_worker(kind, env, threads, seconds, nice)  # type: ignore[index]
                    print(state, kind, name, rows[(state, kind, name)], file=sys.stderr, flush=True)  # type: ignore[index]
        finally:
            if busy is not None:
                busy.terminate()
                busy.wait()
    units = {
        "train": "steps/s (batch 32)",
        "sample": "calls/s (16 images, 2 steps)",
        "likelihood": "solves/s",
    }
    lines = [
        "## Threads under load",
        "",
        "Each workload runs in its own process pinned to cores 0-1 (`taskset -c 0,1`), on "
        "the idle machine and "
        "beside one single-threaded busy loop pinned to core 1 (`taskset -c 1 python -c 'while 1: pass'`)"
        + (
            f"; every process at `nice -n {nice}`, which keeps the other users of this "
            "shared machine mostly out"
            if nice
            else ""
        )
        + f". Load when idle: {loads.get('idle')}; busy: {loads.get('busy')}. Workloads: "
        "`train` = the README "
        "28x28 recipe's UNet (conditional, batch 32: DSM loss, backward, AdamW, EMA), "
        "`sample` = the same UNet, "
        "16 images, Euler-Maruyama 2 steps, `likelihood` = `ss.log_likelihood` of 64 "
        "points under an MLP 3x256 "
        "on 64-D (Hutchinson, tolerance 1e-3).",
        "",
        "| workload | threads | idle | beside 1 busy job | busy / idle |",
        "|---|---|---|---|---|",
    ]
    for kind in kinds:
        for name in THREAD_CONFIGS:
            idle, busy_r = rows[("idle", kind, name)], rows[("busy", kind, name)]  # type: ignore[index]
            lines.append(
                f"| {kind} ({units[kind]}) | {name} (used {int(idle['threads'])} / "
                f"{int(busy_r['threads'])}) | "
                f"{idle['rate']:.3g} | {busy_r['rate']:.3g} | {busy_r['rate'] / idle['rate']:.2f} |"
            )
    ref = {k: rows[("idle", k, "2 threads, OpenMP default (spin)")]["rate"] for k in kinds}  # type: ignore[index]
    lines += [
        "",
        "Beside the busy job, against the old default on the idle machine (2 threads, spinning): "
        + ", ".join(
            f"{k} {rows[('busy', k, 'new default: auto threads, passive')]['rate'] / ref[k]:.2f}x"  # type: ignore[index]
            for k in kinds
        )
        + " with the new default (target >= 0.5x), "
        + ", ".join(
            f"{k} {rows[('busy', k, '2 threads, OpenMP default (spin)')]['rate'] / ref[k]:.2f}x"
            for k in kinds
        )  # type: ignore[index]
        + " with the old one.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- #
# (a) Training step: scoresde UNet vs diffusers UNet2DModel at equal parameter count.
# --------------------------------------------------------------------------------------------- #
SIZES = {"28x28x1": (1, 28, 7), "32x32x3": (3, 32, 8)}
"""Image sizes: (channels, side, attention resolution)."""


def scoresde_unet(channels: int, side: int, attn: int):
    """scoresde's UNet: base 32, mults 1 2 2, one residual block, attention at the lowest level."""
    from scoresde.nets.unet import UNet

    return UNet(
        channels,
        side,
        base_channels=32,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(attn,),
        dropout=0.0,
    )


def diffusers_unet(channels: int, side: int):
    """diffusers' UNet2DModel with the same parameter count (the same layout: 32 64 64 channels,
    one layer per block, attention in the lowest level, 8 groups)."""
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _scoresde_step(
    channels: int,
    side: int,
    attn: int,
    batch: int,
    device: str,
    compile_net: bool,
    bf16: bool = False,
    fused: bool = True,
):
    """Our training step; ``fused``: the trainer's AdamW (fused), else torch's default (``ss.fit``'s)."""
    import torch

    import scoresde as ss
    from scoresde.models.compile import compile_model
    from scoresde.train.optim import adamw

    torch.manual_seed(0)
    g = torch.Generator(device).manual_seed(0)
    model = ss.ScoreModel(scoresde_unet(channels, side, attn), ss.VPSDE(), prediction="eps").to(device)
    if compile_net:
        compile_model(model)
    params = model.parameters()
    opt = adamw(params, lr=1e-4, device=device) if fused else torch.optim.AdamW(params, lr=1e-4)
    ema = ss.EMA(model, decay=0.999)
    x = torch.randn(batch, channels, side, side, device=device, generator=g)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = ss.dsm_loss(model, x, generator=g).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)

    return step, _count(model.net)


def _diffusers_step(channels: int, side: int, batch: int, device: str, compile_net: bool, bf16: bool = False):
    """The inner loop of diffusers' train_unconditional example: add_noise, eps MSE, AdamW,
    cosine LR scheduler, EMAModel.step."""
    import diffusers
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    g = torch.Generator(device).manual_seed(0)
    unet = diffusers_unet(channels, side).to(device)
    if compile_net:
        unet.compile()
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    lr = get_scheduler("cosine", optimizer=opt, num_warmup_steps=0, num_training_steps=10**6)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True)
    x = torch.randn(batch, channels, side, side, device=device, generator=g)

    def step() -> None:
        noise = torch.randn(x.shape, device=device, generator=g)
        t = torch.randint(0, 1000, (x.shape[0],), device=device, generator=g)
        noisy = sched.add_noise(x, noise, t)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(unet(noisy, t).sample.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr.step()
        ema.step(unet.parameters())

    return step, _count(unet)


def train_section(quick: bool, repeats: int, device: str, compile_nets: bool = True) -> str:
    batch = 8 if quick else 64
    lines = [
        "## (a) Training step: scoresde `UNet` vs diffusers `UNet2DModel`",
        "",
        f"Batch {batch}; one step = forward, backward, AdamW, EMA (scoresde: `ScoreModel` + `dsm_loss` + "
        "the trainer's AdamW (`scoresde.train.optim.adamw`: fused) + `ss.EMA`; diffusers: its "
        "`train_unconditional` inner loop: `add_noise`, eps MSE, AdamW, cosine LR "
        "schedule, `EMAModel.step`). Same layout and parameter count on both sides. Compiled: "
        "`scoresde.models.compile.compile_model` / `UNet2DModel.compile()` (inductor, default mode; compile "
        "time excluded, reported apart). Wall: images per wall second; CPU: images per CPU second of "
        "the process (steadier on a shared machine; equal to wall on an idle one at one thread).",
        "",
        "| size | params (ours / diffusers) | mode | ours img/s (wall) | diffusers img/s (wall) "
        "| ours / diffusers (wall) | ours / diffusers (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    cuda = device.startswith("cuda")
    for size, (ch, side, attn) in SIZES.items():
        modes = [(False, False), (True, False)] if compile_nets else [(False, False)]
        if cuda:  # bf16 autocast, eager and compiled
            modes += [(False, True)] + ([(True, True)] if compile_nets else [])
        for compiled, bf16 in modes:
            t0 = time.perf_counter()
            ours, n_ours = _scoresde_step(ch, side, attn, batch, device, compiled, bf16)
            theirs, n_theirs = _diffusers_step(ch, side, batch, device, compiled, bf16)
            if compiled:  # compile both outside the timing
                ours()
                theirs()
            setup = time.perf_counter() - t0
            t, c = side_by_side_cpu({"ours": ours, "theirs": theirs}, repeats, device)
            mode = f"compiled (compile + setup {setup:.0f} s)" if compiled else "eager"
            mode += ", bf16 autocast" if bf16 else ""
            lines.append(
                f"| {size} | {n_ours:,} / {n_theirs:,} | {mode} | {batch / t['ours']:.1f} | "
                f"{batch / t['theirs']:.1f} | **{t['theirs'] / t['ours']:.2f}x** | "
                f"**{c['theirs'] / c['ours']:.2f}x** |"
            )
    lines += ["", *fit_overhead_lines(quick, repeats, device), ""]
    return "\n".join(lines)


def fit_overhead_lines(quick: bool, repeats: int, device: str) -> list[str]:
    """``ss.fit`` (scoresde's training loop, with its EMA and data draw) against the bare loop."""
    import torch

    import scoresde as ss

    batch, steps = (8, 3) if quick else (64, 5)
    ch, side, attn = SIZES["28x28x1"]
    data = torch.randn(512, ch, side, side, generator=torch.Generator().manual_seed(1))

    def draw(n: int, g):
        return data[torch.randint(0, data.shape[0], (n,), generator=g)]

    def fit() -> None:
        torch.manual_seed(0)
        model = ss.ScoreModel(scoresde_unet(ch, side, attn), ss.VPSDE(), prediction="eps")
        ss.fit(
            model,
            draw,
            steps=steps,
            batch_size=batch,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )

    bare_step, _ = _scoresde_step(ch, side, attn, batch, device, False, fused=False)  # fit's AdamW

    def bare() -> None:
        _scoresde_step(ch, side, attn, batch, device, False, fused=False)  # same set-up cost as fit's
        for _ in range(steps):
            bare_step()

    t = side_by_side({"fit": fit, "bare": bare}, repeats, device)
    return [
        "`ss.fit` vs a bare loop over the same network, loss, AdamW and EMA (28x28x1, "
        f"batch {batch}, {steps} "
        f"steps incl. set-up): {t['fit'] / t['bare']:.3f}x the bare loop's time (target <= 1.05; the "
        "`scoresde train` trainer is measured by the train helper's benchmark)."
    ]


# --------------------------------------------------------------------------------------------- #
# (b) Sampling at equal NFE on one UNet2DModel.
# --------------------------------------------------------------------------------------------- #
def _kd_denoiser(unet, alphas_cumprod):
    """k-diffusion's view of a discrete eps-prediction VP network (its DiscreteEpsDDPMDenoiser):
    ``D(x, sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))``, ``t`` interpolated in log sigma."""
    import torch

    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    log_sigmas = sigmas.log()

    def t_of(sigma):
        ls = sigma.log().clamp(log_sigmas[0], log_sigmas[-1])
        idx = torch.searchsorted(log_sigmas, ls).clamp(1, len(log_sigmas) - 1)
        lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
        w = (ls - lo) / (hi - lo)
        return (idx - 1).to(sigma.dtype) + w

    def denoise(x, sigma):
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        eps = unet(x / (1 + s**2).sqrt(), t_of(sigma).expand(x.shape[0])).sample
        return x - s * eps

    return denoise, sigmas


def sample_section(quick: bool, repeats: int, device: str, compile_nets: bool = True) -> str:
    import diffusers
    import torch

    import scoresde as ss
    from scoresde.interop.diffusers import from_diffusers

    steps = 10
    batch = 8 if quick else 32
    ch, side, _ = SIZES["28x28x1"]
    torch.manual_seed(0)
    unet = diffusers_unet(ch, side).to(device).eval()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, clip_sample=False)  # unclipped on both sides
    dpm = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, algorithm_type="dpmsolver++", solver_order=2
    )
    wrapped = from_diffusers(unet, ddim)
    model, sde = wrapped.model, wrapped.sde
    x_T = torch.randn(batch, ch, side, side, generator=torch.Generator().manual_seed(0)).to(device)

    def pipeline(scheduler):
        """The loop of diffusers' DDIMPipeline / DPMSolver pipelines (no progress bar, no image
        post-processing): set_timesteps, then unet + scheduler.step per step."""

        def run():
            with torch.no_grad():
                scheduler.set_timesteps(steps)
                x = x_T * scheduler.init_noise_sigma
                for t in scheduler.timesteps:
                    eps = unet(scheduler.scale_model_input(x, t), t).sample
                    x = scheduler.step(eps, t, x).prev_sample
            return x

        return run

    def ours(method: str, grid, m=model):
        def run():
            with torch.inference_mode():
                return ss.sample(
                    m,
                    sde,
                    shape=x_T.shape,
                    method=method,
                    steps=steps,
                    grid=grid,
                    x_T=x_T,
                    denoise=False,
                    generator=torch.Generator(device).manual_seed(0),
                ).x

        return run

    from scoresde.interop.diffusers import scheduler_grid

    ddim.set_timesteps(steps)
    grid_ddim = scheduler_grid(ddim, sde)
    import copy

    from scoresde.models.execution import prepare_model

    # scoresde's inference execution modes (`--channels-last`, `--compile freeze`): cheap to set
    # up (a trace of about a second per batch shape), so timed beside the eager runs; the first
    # call (trace, freeze, check) is the setup, reported apart.
    modes = {
        "scoresde ddim, --channels-last": ("off", True),
        "scoresde ddim, --compile freeze": ("freeze", False),
        "scoresde ddim, --compile freeze --channels-last": ("freeze", True),
    }
    setup: dict[str, float] = {}
    mode_cases: dict[str, Callable[[], object]] = {}
    for label, (how, cl) in modes.items():
        m = prepare_model(copy.deepcopy(model), how, channels_last=cl)
        mode_cases[label] = ours("ddim", grid_ddim, m)
        t0 = time.perf_counter()
        mode_cases[label]()
        setup[label] = time.perf_counter() - t0
    cases: dict[str, Callable[[], object]] = {
        "diffusers DDIM loop": pipeline(ddim),
        "scoresde ddim": ours("ddim", grid_ddim),
        **mode_cases,
        "diffusers DPM-Solver++ 2M loop": pipeline(dpm),
        "scoresde dpm_solver++_2m": ours("dpm_solver++_2m", grid_ddim),
    }
    kd_note = ""
    try:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from samplers import load_k_sampling

        K = load_k_sampling()
        denoise, kd_sigmas = _kd_denoiser(unet, ddim.alphas_cumprod.to(device))
        sig = K.get_sigmas_karras(steps, float(kd_sigmas[0]), float(kd_sigmas[-1]), device=device)

        def kdiff():
            with torch.no_grad():
                return K.sample_dpmpp_2m(denoise, x_T * sig[0], sig, disable=True)

        cases["k-diffusion sample_dpmpp_2m"] = kdiff
    except ImportError as err:
        kd_note = f" k-diffusion: not run ({err})."
    t = side_by_side(cases, repeats, device)

    # The sampler's own cost per step: the same sampler on a network that costs nothing (a zero
    # output through the same ScoreModel wrapper), against one forward of the real network.
    tt = torch.full((batch,), 500, device=device)
    with torch.inference_mode():
        fwd = side_by_side({"f": lambda: unet(x_T, tt)}, repeats, device)["f"]
    overhead = _sampler_overhead(sde, x_T, steps, grid_ddim, repeats, device)
    rows = [
        "## (b) Sampling at equal NFE on one `UNet2DModel`",
        "",
        f"28x28x1 `UNet2DModel` ({_count(unet):,} parameters, random weights), batch {batch}, {steps} steps "
        f"= {steps} network evaluations on every side (scoresde through `scoresde.interop.diffusers."
        f"from_diffusers`, on the scheduler's own time grid, `denoise=False`).{kd_note}",
        "",
        "| sampler | ms per image | vs diffusers' loop of the same order |",
        "|---|---|---|",
    ]
    base = {"ddim": t["diffusers DDIM loop"], "2m": t["diffusers DPM-Solver++ 2M loop"]}
    for name, sec in t.items():
        ref = base["ddim"] if "ddim" in name.lower() else base["2m"]
        rows.append(f"| {name} | {sec / batch * 1e3:.2f} | **{sec / ref:.2f}x** |")
    rows += [
        "",
        "Setup of the execution modes (first run minus a later one: "
        + ", ".join(f"{k.split(', ')[1]} {max(v - t[k], 0.0):.1f} s" for k, v in setup.items())
        + "; the trace is checked against the eager network on three more inputs). Target <= 0.67x.",
    ]
    rows += [
        "",
        "Sampler overhead per step (the sampler run on a zero-cost network through the same wrapper, so "
        "everything but the network's forward), against one forward (target < 2%):",
        "",
        "| method | overhead per step | vs this UNet's forward at batch "
        f"{batch} ({fwd * 1e3:.1f} ms) | vs an MLP 3x256 forward, 64-D, batch 256 |",
        "|---|---|---|---|",
    ]
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 64),
    ).to(device)
    xm = torch.randn(256, 64, device=device)
    with torch.inference_mode():
        fwd_mlp = side_by_side({"f": lambda: mlp(xm)}, repeats, device)["f"]
    for method, per_step in overhead.items():
        rows.append(
            f"| {method} | {per_step * 1e3:.3f} ms | {100 * per_step / fwd:.2f}% | "
            f"{100 * per_step / fwd_mlp:.1f}% ({fwd_mlp * 1e3:.2f} ms) |"
        )
    rows.append("")
    if compile_nets:
        rows += _sample_compiled_lines(quick, repeats, device, model, sde, x_T, steps, grid_ddim, t, fwd)
    return "\n".join(rows)


def _sampler_overhead(sde, x_T, steps: int, grid, repeats: int, device: str) -> dict[str, float]:
    """Seconds per step of ``ss.sample`` with a network that returns zeros (wrapper and sampler only)."""
    import torch

    import scoresde as ss

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    model = ss.ScoreModel(Zero(), sde, prediction="eps")
    out = {}
    for method in ("ddim", "dpm_solver++_2m", "euler_maruyama"):

        def run(method=method):
            with torch.inference_mode():
                return ss.sample(
                    model,
                    sde,
                    shape=x_T.shape,
                    method=method,
                    steps=steps,
                    grid=grid,
                    x_T=x_T,
                    denoise=False,
                    generator=torch.Generator(device).manual_seed(0),
                ).x

        out[method] = side_by_side({"r": run}, repeats, device)["r"] / steps
    return out


def _sample_compiled_lines(quick, repeats, device, model, sde, x_T, steps, grid, t_eager, fwd) -> list[str]:
    """scoresde with its recommended inference settings: the network compiled (and channels_last)."""
    import copy

    import torch

    import scoresde as ss
    from scoresde.models.compile import CompilerUnavailableError, compile_model

    out = []
    variants = [("compiled", False, "default"), ("compiled + channels_last", True, "default")]
    if device.startswith("cuda"):  # CUDA graphs for a fixed-step sampler
        variants.append(("compiled, mode=reduce-overhead (CUDA graphs)", False, "reduce-overhead"))
    for label, channels_last, mode in variants:
        m = copy.deepcopy(model)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        try:
            t0 = time.perf_counter()
            compile_model(m, mode=mode)
            x = x_T.contiguous(memory_format=torch.channels_last) if channels_last else x_T

            def run(m=m, x=x):
                with torch.inference_mode():
                    return ss.sample(
                        m, sde, shape=x.shape, method="ddim", steps=steps, grid=grid, x_T=x, denoise=False
                    ).x

            run()
            setup = time.perf_counter() - t0
            sec = side_by_side({"c": run}, repeats, device)["c"]
        except CompilerUnavailableError as err:
            out.append(f"- {label}: not run ({err})")
            continue
        ratio = sec / t_eager["diffusers DDIM loop"]
        out.append(
            f"- scoresde ddim, network {label}: {sec / x_T.shape[0] * 1e3:.2f} ms per "
            f"image, **{ratio:.2f}x** "
            f"diffusers' eager DDIM loop (target <= 0.67x); compile {setup:.0f} s, paid back after "
            f"{setup / max(t_eager['diffusers DDIM loop'] - sec, 1e-9):.0f} such batches"
            + (" (never: not faster)" if sec >= t_eager["diffusers DDIM loop"] else "")
        )
        torch._dynamo.reset()
    return [*out, ""]


# --------------------------------------------------------------------------------------------- #
# (c) Likelihood through the public API (the solver is tuned in flow/; rerun this section).
# --------------------------------------------------------------------------------------------- #
def likelihood_section(quick: bool, repeats: int, device: str) -> str:
    import torch

    import scoresde as ss

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from paper_likelihood import paper_solve

    torch.manual_seed(0)
    n, d = (64, 64) if quick else (256, 64)
    tol = 1e-5
    sde = ss.VPSDE()
    model = ss.ScoreModel(ss.MLP(d, hidden=256, depth=3), sde).to(device).eval()
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)
    probe = (
        (torch.randint(0, 2, (n, d), generator=torch.Generator().manual_seed(1)) * 2 - 1).float().to(device)
    )

    def ours():
        return ss.log_likelihood(
            model,
            sde,
            x,
            divergence=ss.Hutchinson(probes=probe[None]),
            integrator=ss.AdaptiveIntegrator(rtol=tol, atol=tol, norm="batch"),
        )

    def paper():
        """The paper's likelihood loop (score_sde_pytorch likelihood.py): scipy RK45 on the
        flattened state, Hutchinson divergence by one VJP per evaluation, over ``[sde.eps, T]``
        as ours (``benchmarks/paper_likelihood.py``)."""
        return paper_solve(model, sde, x, probe, tol)[2]

    t = side_by_side({"ours": ours, "paper": paper}, max(1, repeats // 2), device)
    nfe_ours = ours().nfe
    nfe_ours = int(nfe_ours if isinstance(nfe_ours, int) else torch.as_tensor(nfe_ours).float().mean())
    nfe_paper = paper()
    per_ours, per_paper = t["ours"] / nfe_ours, t["paper"] / nfe_paper
    return "\n".join(
        [
            "## (c) Likelihood (public `ss.log_likelihood`; rerun after the likelihood work lands)",
            "",
            f"MLP 3x256 on {d}-D, random weights, {n} points, one Rademacher probe, rtol = atol = {tol:g}, "
            "`norm='batch'`, against the paper's scipy RK45 loop with the same probe.",
            "",
            "| | wall s | NFE | ms per evaluation |",
            "|---|---|---|---|",
            f"| scoresde `log_likelihood` | {t['ours']:.3f} | {nfe_ours} | {per_ours * 1e3:.2f} |",
            f"| paper loop (scipy RK45) | {t['paper']:.3f} | {nfe_paper} | {per_paper * 1e3:.2f} |",
            "",
            f"Per evaluation: **{per_ours / per_paper:.2f}x** the paper loop's (target <= 1.0); wall time "
            f"**{t['ours'] / t['paper']:.2f}x**.",
            "",
        ]
    )


# --------------------------------------------------------------------------------------------- #
# (d) Start-up.
# --------------------------------------------------------------------------------------------- #
def startup_section(quick: bool, repeats: int, device: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cases = {
        "scoresde --help": [sys.executable, "-m", "scoresde", "--help"],
        "scoresde sample --help": [sys.executable, "-m", "scoresde", "sample", "--help"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }
    fns = {
        k: (lambda c=c: subprocess.run(c, env=env, capture_output=True, check=True)) for k, c in cases.items()
    }
    t = side_by_side(fns, max(repeats, 5))
    rows = [
        "## (d) Start-up",
        "",
        "Wall time of a fresh process (median, alternating rounds); `--help` imports no torch "
        "(`tests/cli/test_startup.py`).",
        "",
        "| command | wall s | vs import torch |",
        "|---|---|---|",
    ]
    ref = t['python -c "import torch"']
    rows += [f"| `{k}` | {v:.3f} | {v / ref:.2f}x |" for k, v in t.items()]
    return "\n".join([*rows, ""])


# --------------------------------------------------------------------------------------------- #
# Sampler per-step overhead on small networks.
# --------------------------------------------------------------------------------------------- #
OVERHEAD_METHODS = (
    "euler_maruyama",
    "euler",
    "heun",
    "ddim",
    "dpm_solver_2s",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_3m",
    "unipc",
    "deis",
    "ipndm",
    "reverse_diffusion",
    "ancestral",
    "dpm_solver_pp_2m_sde",
    "heun_sde",
)
OVERHEAD_SHAPES = ((64, 256), (2, 64))  # (D, batch)


def overhead_worker(steps: int, rounds: int) -> dict[str, float]:
    """CPU seconds of the sampling thread per model evaluation of each sampler on a zero network
    (``"<method> <D>x<B>"``), and of one MLP 3x256 forward (``"forward <D>x<B>"``); min of rounds."""
    import torch

    import scoresde as ss

    class Zero(torch.nn.Module):
        """Returns zeros; one (unused) parameter, as every real network has one."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            return torch.zeros_like(x)

    def cpu(fn: Callable[[], object], reps: int = 1) -> float:
        t0 = time.thread_time()
        for _ in range(reps):
            fn()
        return (time.thread_time() - t0) / reps

    sde = ss.VPSDE()
    model = ss.ScoreModel(Zero(), sde, prediction="eps")
    out: dict[str, float] = {}
    for d, b in OVERHEAD_SHAPES:
        net = ss.MLP(d, hidden=256, depth=3).eval()
        x_T = torch.randn(b, d, generator=torch.Generator().manual_seed(0))
        tt = torch.full((b,), 0.5)
        with torch.inference_mode():
            out[f"forward {d}x{b}"] = min(
                cpu(lambda net=net, x=x_T, tt=tt: net(x, tt), 50) for _ in range(rounds)
            )
        gen = torch.Generator().manual_seed(0)
        out[f"randn {d}x{b}"] = min(  # the one noise draw of a stochastic step, for reference
            cpu(lambda x=x_T, g=gen: torch.randn(x.shape, generator=g, dtype=x.dtype), 200)
            for _ in range(rounds)
        )
        for method in OVERHEAD_METHODS:

            def run(method=method, x_T=x_T):
                g = torch.Generator().manual_seed(0)
                return ss.sample(model, sde, method=method, steps=steps, x_T=x_T, denoise=False, generator=g)

            nfe = run().nfe
            out[f"{method} {d}x{b}"] = min(cpu(run) for _ in range(rounds)) / nfe
    return out


def overhead_section(quick: bool, repeats: int, device: str, baseline: str = "") -> str:
    """Per-step overhead of the samplers, in subprocesses (this tree, and ``baseline``'s)."""
    steps, rounds = (50, 3) if quick else (100, 5)
    trees = {"this tree": str(ROOT / "src")}
    if baseline:
        trees = {"baseline": baseline, **trees}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for _ in range(max(1, repeats // 2)):  # alternating processes: load changes hit both alike
        for name, src in trees.items():
            env = {**os.environ, "SPEED_SRC": src, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
            res = subprocess.run(
                [sys.executable, __file__, "--worker", f"overhead:{steps}:{rounds}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    best = {name: {k: min(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    now = best["this tree"]
    head = ["method"]
    for d, b in OVERHEAD_SHAPES:
        fwd = now[f"forward {d}x{b}"] * 1e6
        if baseline:
            head += [f"{d}-D, batch {b}: baseline us (% of fwd)"]
        head += [f"{d}-D, batch {b}: us per NFE (% of a {fwd:.0f} us MLP forward)"]
    rows = [
        "## Sampler per-step overhead on small networks",
        "",
        f"Each sampler on a network that returns zeros (`ScoreModel(Zero(), VPSDE(), 'eps')`, {steps} steps, "
        "`denoise=False`): everything a step costs but the network, per model evaluation, against one "
        "forward of an MLP 3x256 at the same shape (the target: < 2%). CPU time of the sampling thread "
        f"(`time.thread_time`), min of {rounds} runs in each of {max(1, repeats // 2)} alternating processes"
        + (f"; baseline: the source tree `{baseline}`" if baseline else "")
        + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for method in (*OVERHEAD_METHODS, "randn"):
        cells = [
            method if method != "randn" else "(one `torch.randn` of the batch: a stochastic step's draw)"
        ]
        for d, b in OVERHEAD_SHAPES:
            key, fwd = f"{method} {d}x{b}", now[f"forward {d}x{b}"]
            if key not in now or (baseline and key not in best["baseline"]):
                cells += ["-"] * (2 if baseline else 1)
                continue
            if baseline:
                old = best["baseline"]
                base_fwd = old[f"forward {d}x{b}"]
                cells.append(f"{old[key] * 1e6:.0f} ({100 * old[key] / base_fwd:.0f}%)")
            cells.append(f"**{now[key] * 1e6:.0f}** ({100 * now[key] / fwd:.1f}%)")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([*rows, ""])


# --------------------------------------------------------------------------------------------- #
# Main.
# --------------------------------------------------------------------------------------------- #
SECTIONS = ("startup", "train", "sample", "overhead", "likelihood", "threads")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    p.add_argument("--quick", action="store_true", help="a short validation run")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the in-process sections")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=0, help="timing rounds (0: 3 quick, 7 full)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also the compiled cases (default: yes, except with --quick)",
    )
    p.add_argument("--nice", type=int, default=0, help="threads section: niceness of its processes")
    p.add_argument("--out", default="", help="markdown file to write (default: print)")
    p.add_argument(
        "--baseline-src", default="", help="overhead section: another tree's src/ to measure beside this one"
    )
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", default="1", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker.startswith("overhead:"):
        import torch

        torch.set_num_threads(1)
        _, steps, rounds = args.worker.split(":")
        print(json.dumps(overhead_worker(int(steps), int(rounds))))
        return 0
    if args.worker:
        import torch

        if args.worker_threads == "auto":
            from scoresde.settings.runtime import auto_threads

            torch.set_num_threads(auto_threads())
        else:
            torch.set_num_threads(int(args.worker_threads))
        print(json.dumps(worker(args.worker, args.seconds)))
        return 0

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}")
    repeats = args.repeats or (3 if args.quick else 7)
    import torch

    torch.set_num_threads(args.threads)
    cmdline = " ".join(sys.argv[1:] if argv is None else argv)
    head = [
        "# Speed: scoresde side by side with diffusers, k-diffusion and the paper's code",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/speed.py {cmdline}` "
        f"on {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
        f"device {args.device}, "
        f"median of {repeats} alternating rounds. Machine at the start: {load_text()} (shared with other "
        "jobs: read the ratios, measured side by side in one process).",
        "",
    ]
    body: list[str] = []
    for section in sections:
        t0 = time.perf_counter()
        compile_on = (not args.quick) if args.compile is None else args.compile
        if section == "threads":
            body.append(threads_section(args.quick, args.nice))
        elif section == "overhead":
            body.append(overhead_section(args.quick, repeats, args.device, args.baseline_src))
        elif section in ("train", "sample"):
            fn = globals()[f"{section}_section"]
            body.append(fn(args.quick, repeats, args.device, compile_on))
        else:
            fn = globals()[f"{section}_section"]
            body.append(fn(args.quick, repeats, args.device))
        print(f"[{section}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
        if args.out:  # what is measured so far survives a time limit
            Path(args.out).write_text("\n".join(head + body))
    text = "\n".join(head + body)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

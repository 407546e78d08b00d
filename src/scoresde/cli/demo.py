"""Train score models on Neal's funnel and compare samplers, on the CPU in a few minutes.

The demo trains one MLP score model under the VP SDE and one under the VE SDE on the 2-D
funnel (v ~ N(0, scale^2), x | v ~ N(0, e^v)), then samples with every sampler in
SAMPLER_TABLE: Langevin dynamics on the funnel's exact score, the reverse SDE and the
probability-flow ODE of each model, DDPM ancestral sampling and 10-step DPM-Solver++(2M); and it
draws the VP model's PF-ODE likelihood on a grid beside the true density. It writes into one
folder: the samples beside the data (samples.png), trajectory animations (trajectories_*.gif),
the training losses (loss.png), the density map (density.png), the metrics table (metrics.md,
metrics.json) and the settings (config.toml).

Example:
    scoresde demo              # about 1.5 minutes on one CPU core
    scoresde demo --quick      # a smoke run of a few seconds
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.models.parameterization import PREDICTIONS
from scoresde.settings import Option

_OPTIONS = [
    Option("steps", 2000, "training steps per model", minimum=1),
    Option("batch_size", 512, "training batch size", minimum=2),
    Option("lr", 2e-3, "learning rate (AdamW, cosine decay)", minimum=0.0),
    Option("hidden", 128, "width of the MLP", minimum=1),
    Option("depth", 3, "hidden layers of the MLP", minimum=1),
    Option(
        "vp_prediction",
        "v",
        "what the VP model's network predicts (v fits the funnel best, docs/gallery.md)",
        choices=PREDICTIONS,
    ),
    Option(
        "ve_prediction",
        "eps",
        "what the VE model's network predicts (eps fits the funnel best, docs/gallery.md)",
        choices=PREDICTIONS,
    ),
    Option("funnel_scale", 1.5, "standard deviation of the funnel's log-variance coordinate v", minimum=0.1),
    Option("ve_sigma_max", 20.0, "sigma_max of the VE SDE (about the largest distance between data points)"),
    Option("samples", 4000, "samples per sampler", minimum=2),
    Option("sample_steps", 500, "steps of the reverse-SDE and PF-ODE samplers", minimum=1),
    Option("langevin_steps", 2000, "steps of Langevin dynamics on the exact score", minimum=1),
    Option("langevin_step_size", 0.01, "step size of Langevin dynamics", minimum=0.0),
    Option("frames", 40, "frames per trajectory animation", minimum=2),
    Option("likelihood_resolution", 40, "grid points per axis of the likelihood map", minimum=2),
    Option("quick", False, "a fast smoke run (few steps and samples); explicit settings still win"),
    *runtime_options(
        device="cpu",
        threads=1,
        progress=True,
        seed_help="seed of every random draw (data, training, sampling)",
        threads_help="CPU threads of torch (0: torch's default); small 2-D models run fastest on one",
    ),
]

QUICK = {
    "steps": 60,
    "batch_size": 256,
    "hidden": 32,
    "samples": 300,
    "sample_steps": 20,
    "langevin_steps": 100,
    "frames": 6,
    "likelihood_resolution": 12,
}
"""Defaults replaced by ``--quick`` (settings given explicitly still win)."""


@dataclass(frozen=True)
class SamplerSpec:
    """One row of the comparison.

    Attributes:
        label: the name shown in plots and tables.
        model: ``"vp"`` or ``"ve"`` (the trained network of that SDE) or ``"exact"`` (the
            funnel's exact score of ``p_0``, for Langevin dynamics).
        method: a key of :data:`scoresde.SAMPLERS`, or ``"langevin_dynamics"``.
        steps: number of steps (``None``: the ``sample_steps`` setting).
        grid: the time grid of :func:`scoresde.sample`.
        options: extra keyword options of the sampler.
    """

    label: str
    model: str
    method: str
    steps: int | None = None
    grid: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)


SAMPLER_TABLE: list[SamplerSpec] = [
    SamplerSpec("Langevin (exact score)", "exact", "langevin_dynamics"),
    SamplerSpec("VP reverse SDE", "vp", "euler_maruyama"),
    SamplerSpec("VP PF-ODE", "vp", "euler"),
    SamplerSpec("DDPM ancestral", "vp", "ancestral"),
    SamplerSpec("VE reverse SDE", "ve", "euler_maruyama"),
    SamplerSpec("VE PF-ODE", "ve", "euler"),
    SamplerSpec("DPM-Solver++ (10 steps)", "vp", "dpm_solver++_2m", steps=10, grid="logsnr"),
]
"""What the demo runs.  A row whose method is not in :data:`scoresde.SAMPLERS` (yet) is
skipped and reported as unavailable, never replaced by another method."""


def _train(cfg: dict[str, Any], name: str, funnel, generator: torch.Generator):
    from scoresde.models.wrapper import ScoreModel
    from scoresde.nets.mlp import MLP
    from scoresde.sde import VESDE, VPSDE
    from scoresde.train.loop import fit

    sde = VPSDE() if name == "vp" else VESDE(sigma_min=0.01, sigma_max=cfg["ve_sigma_max"])
    sigma_data = float(funnel.sample(20_000, torch.Generator().manual_seed(cfg["seed"] + 7)).std())
    net = MLP(2, hidden=cfg["hidden"], depth=cfg["depth"])
    model = ScoreModel(net, sde, prediction=cfg[f"{name}_prediction"], sigma_data=sigma_data)
    print(
        f"training the {name.upper()} model ({cfg['steps']} steps, {sde!r}, {model.prediction}-prediction)",
        flush=True,
    )
    fitted = fit(
        model,
        lambda n, g: funnel.sample(n, g).float(),
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        generator=generator,
        progress=cfg["progress"],
    )
    return sde, fitted


def _quality(x: Tensor, reference: Tensor, seed: int) -> dict[str, float]:
    """Sample quality against held-out exact samples: sliced W2, MMD^2 (RBF), std of v."""
    from scoresde.metrics import mmd_rbf, sliced_wasserstein

    x = x.double()
    finite = bool(torch.isfinite(x).all())
    if not finite:
        return {"sliced_w2": float("nan"), "mmd2": float("nan"), "v_std": float("nan"), "finite": False}
    m = min(1500, x.shape[0], reference.shape[0])
    return {
        "sliced_w2": sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(seed)),
        "mmd2": mmd_rbf(x[:m], reference[:m]),
        "v_std": float(x[:, 0].std()),
        "finite": True,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _metrics_markdown(rows: list[dict[str, Any]], floor: dict[str, float], cfg: dict[str, Any]) -> str:
    lines = [
        "# scoresde demo: samplers on Neal's funnel",
        "",
        f"Funnel scale {cfg['funnel_scale']}, {cfg['samples']} samples per sampler, seed {cfg['seed']}; "
        f"quality against {cfg['samples']} held-out exact samples (lower is better; the last row is "
        "exact samples against exact samples, the noise floor). v_std: the true value is the funnel scale.",
        "",
        "| sampler | method | steps | NFE | sliced W2 | MMD^2 | v_std | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | `{r['method']}` | {r['steps']} | {r['nfe']} | {_fmt(r['sliced_w2'])} | "
            f"{_fmt(r['mmd2'])} | {_fmt(r['v_std'])} | {r['seconds']:.2f} |"
        )
    lines.append(
        f"| exact samples (floor) | | | | {_fmt(floor['sliced_w2'])} | {_fmt(floor['mmd2'])} | "
        f"{_fmt(floor['v_std'])} | |"
    )
    return "\n".join(lines) + "\n"


def run(ctx: Context) -> int:
    from scoresde.flow.likelihood import log_likelihood
    from scoresde.models.funnel import Funnel
    from scoresde.sampling.api import sample
    from scoresde.sampling.langevin import langevin_dynamics
    from scoresde.sampling.registry import SAMPLERS
    from scoresde.viz import animate_trajectories, data_limits, density_compare, loss_curve, scatter_compare

    cfg = ctx.cfg
    if ctx.device.type != "cpu":
        raise ValueError(
            f"the demo trains tiny 2-D models on the CPU; run it with --device cpu, not {ctx.device}"
        )

    start = time.perf_counter()
    out = ctx.out_dir()
    seed = cfg["seed"]
    funnel = Funnel(dim=2, scale=cfg["funnel_scale"])
    held_out = funnel.sample(cfg["samples"], torch.Generator().manual_seed(seed + 1))
    floor = _quality(funnel.sample(cfg["samples"], torch.Generator().manual_seed(seed + 2)), held_out, seed)
    limits = data_limits(held_out, quantile=0.01, pad=0.1)
    stride = max(1, cfg["sample_steps"] // cfg["frames"])

    # 1. Train one model per SDE.
    torch.manual_seed(seed)
    needed = list(dict.fromkeys(s.model for s in SAMPLER_TABLE if s.model != "exact"))
    trained = {
        name: _train(cfg, name, funnel, torch.Generator().manual_seed(seed + 10 + i))
        for i, name in enumerate(needed)
    }
    loss_png = loss_curve(
        {f"{name.upper()} SDE": fitted.losses for name, (_, fitted) in trained.items()},
        out / "loss.png",
        smooth=max(1, cfg["steps"] // 40),
        title="denoising score matching loss",
    )

    # 2. Sample with every available sampler of the table.
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    samples: dict[str, Tensor] = {}
    trajectories: dict[str, dict[str, Tensor]] = {}
    times: dict[str, Tensor] = {}
    for spec in SAMPLER_TABLE:
        if spec.model != "exact" and spec.method not in SAMPLERS:
            skipped.append(f"{spec.label} (`{spec.method}` is not in scoresde.SAMPLERS in this version)")
            continue
        t0 = time.perf_counter()
        if spec.model == "exact":
            steps = cfg["langevin_steps"]
            x_init = torch.randn(
                cfg["samples"], 2, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64
            )
            lres = langevin_dynamics(
                funnel.score,
                x_init,
                cfg["langevin_step_size"],
                steps,
                generator=torch.Generator().manual_seed(seed + 4),
                record_stride=max(1, steps // cfg["frames"]),
            )
            x, traj, nfe = lres.x, lres.trajectory, lres.nfe
            traj_t = torch.linspace(0, steps * cfg["langevin_step_size"], traj.shape[0])
        else:
            sde, fitted = trained[spec.model]
            steps = spec.steps or cfg["sample_steps"]
            res = sample(
                fitted.ema_model,
                sde,
                shape=(cfg["samples"], 2),
                method=spec.method,
                steps=steps,
                grid=spec.grid,
                seed=seed,
                record=True,
                record_stride=max(1, steps // cfg["frames"]) if spec.steps else stride,
                progress=cfg["progress"],
                **spec.options,
            )
            x, nfe, traj, traj_t = res.x, res.nfe, res.trajectory, res.trajectory_times
        seconds = time.perf_counter() - t0
        samples[spec.label] = x.detach()
        trajectories.setdefault(spec.model, {})[spec.label] = traj
        times[spec.label] = traj_t
        q = _quality(x, held_out, seed)
        rows.append(
            {
                "label": spec.label,
                "method": spec.method,
                "model": spec.model,
                "steps": steps,
                "nfe": nfe,
                "seconds": seconds,
                **q,
            }
        )

    # 3. Figures.
    samples_png = scatter_compare(
        held_out,
        samples,
        out / "samples.png",
        limits=limits,
        title=f"Neal's funnel (scale {cfg['funnel_scale']}): exact samples and each sampler",
    )
    gifs = []
    for group, trajs in trajectories.items():
        gifs.append(
            animate_trajectories(
                trajs,
                out / f"trajectories_{'langevin' if group == 'exact' else group}.gif",
                limits,
                times={k: times[k] for k in trajs},
                data=held_out,
                frames=cfg["frames"],
            )
        )
    # Likelihood map: the VP model's PF-ODE likelihood (Song et al. 2021, App. D) beside the truth.
    vp_sde, vp_fit = trained["vp"]
    lik_t0 = time.perf_counter()
    log_densities: dict[str, Callable[[Tensor], Tensor]] = {
        "true log density": lambda z: funnel.log_prob(z.double()),
        "VP model, PF-ODE likelihood": lambda z: log_likelihood(
            vp_fit.ema_model, vp_sde, z.float(), rtol=1e-4, atol=1e-5
        ).logp.double(),
    }
    density_png, grids = density_compare(
        log_densities,
        out / "density.png",
        limits,
        resolution=cfg["likelihood_resolution"],
        title="log-density on a grid",
    )
    likelihood_seconds = time.perf_counter() - lik_t0
    likelihood_note = (
        f"PF-ODE likelihood of the VP model (dopri5, rtol 1e-4, atol 1e-5, exact divergence) on a "
        f"{cfg['likelihood_resolution']}x{cfg['likelihood_resolution']} grid beside the true density "
        f"({likelihood_seconds:.1f}s)"
    )

    # 4. Metrics.
    total = time.perf_counter() - start
    metrics = {
        "config": cfg,
        "samplers": rows,
        "exact_floor": floor,
        "skipped": skipped,
        "likelihood": likelihood_note,
        "train_seconds": {name: round(fitted.seconds, 2) for name, (_, fitted) in trained.items()},
        "final_loss": {name: sum(f.losses[-100:]) / len(f.losses[-100:]) for name, (_, f) in trained.items()},
        "total_seconds": round(total, 2),
    }
    true_g, model_g = (g for g in grids.values())
    mask = true_g > true_g.max() - 12
    metrics["likelihood_map_mean_abs_error"] = float((true_g - model_g)[mask].abs().mean())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    md = out / "metrics.md"
    md.write_text(_metrics_markdown(rows, floor, cfg))

    # 5. Summary.
    print()
    print(_metrics_markdown(rows, floor, cfg).split("\n\n", 2)[2].rstrip())
    for s in skipped:
        print(f"skipped: {s}")
    print(f"likelihood: {likelihood_note}")
    print(f"\ntrained in {sum(f.seconds for _, f in trained.values()):.1f}s; demo finished in {total:.1f}s")
    print(f"outputs in {out.resolve()}:")
    files = [samples_png, *gifs, density_png, loss_png, md, out / "metrics.json", out / "config.toml"]
    descriptions = {
        samples_png: "samples of each sampler beside the data",
        density_png: "log-density map",
        loss_png: "training loss curves",
        md: "metrics table",
        out / "metrics.json": "all numbers, machine-readable",
        out / "config.toml": "the settings (repeat with --config)",
    }
    for f in files:
        print(f"  {f.name:<26} {descriptions.get(f, 'sampling trajectories (animation)')}")
    return 0


COMMAND = Command(
    name="demo",
    help="train score models on the 2-D funnel and compare samplers (a few minutes on a CPU)",
    doc=__doc__,
    options=_OPTIONS,
    body=run,
    base=lambda cfg: QUICK if cfg["quick"] else None,
)
OPTIONS = COMMAND.all_options
add_arguments = COMMAND.add_arguments

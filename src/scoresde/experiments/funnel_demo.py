"""Samplers compared on Neal's funnel: two small score models trained on the CPU in minutes.

One MLP score model is trained under the VP SDE and one under the VE SDE on the 2-D funnel
(``v ~ N(0, scale^2)``, ``x | v ~ N(0, e^v)``); then every sampler of :data:`SAMPLER_TABLE`
draws from them: Langevin dynamics on the funnel's exact score (Song & Ermon 2019), the reverse
SDE (Song et al. 2021, Eq. 6) and the probability-flow ODE (Eq. 13) of each model, DDPM
ancestral sampling (Ho et al. 2020) and 10-step DPM-Solver++(2M) (Lu et al. 2022b).  Each is
scored against held-out exact samples (sliced W2, MMD^2, the std of ``v``) beside the noise
floor of exact samples against exact samples, and the VP model's PF-ODE likelihood (App. D) is
drawn on a grid beside the true density.  :func:`run_funnel_demo` writes the figures, the
animations and the metrics into one folder; ``scoresde demo`` is its command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde.models.parameterization import PREDICTIONS

__all__ = [
    "QUICK",
    "SAMPLER_TABLE",
    "FunnelDemoConfig",
    "FunnelDemoResult",
    "SamplerSpec",
    "metrics_markdown",
    "quality",
    "run_funnel_demo",
    "train_funnel_model",
]


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class FunnelDemoConfig:
    """The demo's settings (``scoresde demo`` has one flag per field)."""

    steps: int = _f(2000, "training steps per model", minimum=1)
    batch_size: int = _f(512, "training batch size", minimum=2)
    lr: float = _f(2e-3, "learning rate (AdamW, cosine decay)", minimum=0.0)
    hidden: int = _f(128, "width of the MLP", minimum=1)
    depth: int = _f(3, "hidden layers of the MLP", minimum=1)
    vp_prediction: str = _f(
        "v",
        "what the VP model's network predicts (v fits the funnel best, docs/gallery.md)",
        choices=PREDICTIONS,
    )
    ve_prediction: str = _f(
        "eps",
        "what the VE model's network predicts (eps fits the funnel best, docs/gallery.md)",
        choices=PREDICTIONS,
    )
    funnel_scale: float = _f(1.5, "standard deviation of the funnel's log-variance coordinate v", minimum=0.1)
    ve_sigma_max: float = _f(20.0, "sigma_max of the VE SDE (about the largest distance between data points)")
    samples: int = _f(4000, "samples per sampler", minimum=2)
    sample_steps: int = _f(500, "steps of the reverse-SDE and PF-ODE samplers", minimum=1)
    langevin_steps: int = _f(2000, "steps of Langevin dynamics on the exact score", minimum=1)
    langevin_step_size: float = _f(0.01, "step size of Langevin dynamics", minimum=0.0)
    frames: int = _f(40, "frames per trajectory animation", minimum=2)
    likelihood_resolution: int = _f(40, "grid points per axis of the likelihood map", minimum=2)
    seed: int = _f(0, "seed of every random draw (data, training, sampling)")
    progress: bool = _f(True, "show progress bars")


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
"""A fast smoke run: the settings that replace the defaults (``scoresde demo --quick``)."""


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
    SamplerSpec("DPM-Solver++ (10 steps)", "vp", "dpm_solver_pp_2m", steps=10, grid="logsnr"),
]
"""What the demo runs, in this order."""


@dataclass
class FunnelDemoResult:
    """What :func:`run_funnel_demo` made.

    Attributes:
        rows: one dict per sampler (label, method, model, steps, nfe, seconds and quality).
        floor: the quality of exact samples against the held-out exact samples.
        metrics: everything written to ``metrics.json``.
        files: ``path -> description`` of every file written, in order.
        likelihood_note: how the likelihood map was computed.
        train_seconds: training time of all models.
        total_seconds: the whole run.
    """

    rows: list[dict[str, Any]]
    floor: dict[str, float]
    metrics: dict[str, Any]
    files: dict[Path, str]
    likelihood_note: str
    train_seconds: float
    total_seconds: float


def train_funnel_model(
    config: FunnelDemoConfig, name: str, funnel: Any, generator: torch.Generator, log: Callable[[str], None]
) -> tuple[Any, Any]:
    """Train the ``vp`` or ``ve`` MLP score model on ``funnel``; returns ``(sde, FitResult)``."""
    from scoresde.models.wrapper import ScoreModel
    from scoresde.nets.mlp import MLP
    from scoresde.sde import VESDE, VPSDE
    from scoresde.train.loop import fit

    c = config
    sde = VPSDE() if name == "vp" else VESDE(sigma_min=0.01, sigma_max=c.ve_sigma_max)
    sigma_data = float(funnel.sample(20_000, torch.Generator().manual_seed(c.seed + 7)).std())
    net = MLP(2, hidden=c.hidden, depth=c.depth)
    model = ScoreModel(net, sde, prediction=getattr(c, f"{name}_prediction"), sigma_data=sigma_data)
    log(f"training the {name.upper()} model ({c.steps} steps, {sde!r}, {model.prediction}-prediction)")
    fitted = fit(
        model,
        lambda n, g: funnel.sample(n, g).float(),
        steps=c.steps,
        batch_size=c.batch_size,
        lr=c.lr,
        generator=generator,
        progress=c.progress,
    )
    return sde, fitted


def quality(x: Tensor, reference: Tensor, seed: int) -> dict[str, float]:
    """Sample quality against held-out exact samples: sliced W2, MMD^2 (RBF), std of v."""
    from scoresde.evaluation.metrics import mmd_rbf, sliced_wasserstein

    x = x.double()
    if not bool(torch.isfinite(x).all()):
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


def metrics_markdown(rows: list[dict[str, Any]], floor: dict[str, float], config: FunnelDemoConfig) -> str:
    """The comparison as a markdown table (the last row: the exact-samples floor)."""
    c = config
    lines = [
        "# scoresde demo: samplers on Neal's funnel",
        "",
        f"Funnel scale {c.funnel_scale}, {c.samples} samples per sampler, seed {c.seed}; "
        f"quality against {c.samples} held-out exact samples (lower is better; the last row is "
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


def _run_sampler(spec: SamplerSpec, c: FunnelDemoConfig, funnel: Any, trained: dict[str, Any]) -> tuple:
    """``(x, trajectory, trajectory times, nfe, steps)`` of one row of the table."""
    from scoresde.sampling.api import sample
    from scoresde.sampling.langevin import langevin_dynamics

    if spec.model == "exact":
        steps = c.langevin_steps
        x_init = torch.randn(
            c.samples, 2, generator=torch.Generator().manual_seed(c.seed + 3), dtype=torch.float64
        )
        res = langevin_dynamics(
            funnel.score,
            x_init,
            c.langevin_step_size,
            steps,
            generator=torch.Generator().manual_seed(c.seed + 4),
            record_stride=max(1, steps // c.frames),
        )
        assert res.trajectory is not None  # record_stride given
        times = torch.linspace(0, steps * c.langevin_step_size, res.trajectory.shape[0])
        return res.x, res.trajectory, times, res.nfe, steps
    sde, fitted = trained[spec.model]
    steps = spec.steps or c.sample_steps
    out = sample(
        fitted.ema_model,
        sde,
        shape=(c.samples, 2),
        method=spec.method,
        steps=steps,
        grid=spec.grid,
        seed=c.seed,
        record=True,
        record_stride=max(1, steps // c.frames),
        progress=c.progress,
        **spec.options,
    )
    return out.x, out.trajectory, out.trajectory_times, out.nfe, steps


def run_funnel_demo(
    config: FunnelDemoConfig,
    out: Path,
    settings: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> FunnelDemoResult:
    """Train the two models, run every sampler of :data:`SAMPLER_TABLE` and write into ``out``.

    Writes ``samples.png`` (each sampler beside the data), ``trajectories_{langevin,vp,ve}.gif``,
    ``density.png`` (the VP model's PF-ODE log-likelihood beside the true log-density),
    ``loss.png``, ``metrics.md`` and ``metrics.json`` (which records ``settings``, default the
    config's fields).  Draws come from generators seeded by ``config.seed``; the networks'
    initial weights from torch's global generator, seeded with it too.
    """
    from scoresde.flow.integrators import AdaptiveIntegrator
    from scoresde.flow.likelihood import log_likelihood
    from scoresde.models.funnel import Funnel
    from scoresde.viz import animate_trajectories, data_limits, density_compare, loss_curve, scatter_compare

    c = config
    start = time.perf_counter()
    seed = c.seed
    funnel = Funnel(dim=2, scale=c.funnel_scale)
    held_out = funnel.sample(c.samples, torch.Generator().manual_seed(seed + 1))
    floor = quality(funnel.sample(c.samples, torch.Generator().manual_seed(seed + 2)), held_out, seed)
    limits = data_limits(held_out, quantile=0.01, pad=0.1)

    # 1. Train one model per SDE.
    torch.manual_seed(seed)
    needed = list(dict.fromkeys(s.model for s in SAMPLER_TABLE if s.model != "exact"))
    trained = {
        name: train_funnel_model(c, name, funnel, torch.Generator().manual_seed(seed + 10 + i), log)
        for i, name in enumerate(needed)
    }
    loss_png = loss_curve(
        {f"{name.upper()} SDE": fitted.losses for name, (_, fitted) in trained.items()},
        out / "loss.png",
        smooth=max(1, c.steps // 40),
        title="denoising score matching loss",
    )

    # 2. Sample with every sampler of the table.
    rows: list[dict[str, Any]] = []
    samples: dict[str, Tensor] = {}
    trajectories: dict[str, dict[str, Tensor]] = {}
    times: dict[str, Tensor] = {}
    for spec in SAMPLER_TABLE:
        t0 = time.perf_counter()
        x, traj, traj_t, nfe, steps = _run_sampler(spec, c, funnel, trained)
        seconds = time.perf_counter() - t0
        samples[spec.label] = x.detach()
        trajectories.setdefault(spec.model, {})[spec.label] = traj
        times[spec.label] = traj_t
        row = {"label": spec.label, "method": spec.method, "model": spec.model, "steps": steps, "nfe": nfe}
        rows.append({**row, "seconds": seconds, **quality(x, held_out, seed)})

    # 3. Figures.
    samples_png = scatter_compare(
        held_out,
        samples,
        out / "samples.png",
        limits=limits,
        title=f"Neal's funnel (scale {c.funnel_scale}): exact samples and each sampler",
    )
    gifs = [
        animate_trajectories(
            trajs,
            out / f"trajectories_{'langevin' if group == 'exact' else group}.gif",
            limits,
            times={k: times[k] for k in trajs},
            data=held_out,
            frames=c.frames,
        )
        for group, trajs in trajectories.items()
    ]
    # Likelihood map: the VP model's PF-ODE likelihood (Song et al. 2021, App. D) beside the truth.
    vp_sde, vp_fit = trained["vp"]
    lik_t0 = time.perf_counter()
    log_densities: dict[str, Callable[[Tensor], Tensor]] = {
        "true log density": lambda z: funnel.log_prob(z.double()),
        "VP model, PF-ODE likelihood": lambda z: log_likelihood(
            vp_fit.ema_model,
            vp_sde,
            z.float(),
            integrator=AdaptiveIntegrator(rtol=1e-4, atol=1e-5),
        ).logp.double(),
    }
    density_png, grids = density_compare(
        log_densities,
        out / "density.png",
        limits,
        resolution=c.likelihood_resolution,
        title="log-density on a grid",
    )
    res = c.likelihood_resolution
    note = (
        f"PF-ODE likelihood of the VP model (dopri5, rtol 1e-4, atol 1e-5, exact divergence) on a "
        f"{res}x{res} grid beside the true density ({time.perf_counter() - lik_t0:.1f}s)"
    )

    # 4. Metrics.
    total = time.perf_counter() - start
    metrics = {
        "config": dict(settings) if settings is not None else dataclasses.asdict(c),
        "samplers": rows,
        "exact_floor": floor,
        "likelihood": note,
        "train_seconds": {name: round(fitted.seconds, 2) for name, (_, fitted) in trained.items()},
        "final_loss": {name: sum(f.losses[-100:]) / len(f.losses[-100:]) for name, (_, f) in trained.items()},
        "total_seconds": round(total, 2),
    }
    true_g, model_g = grids.values()
    mask = true_g > true_g.max() - 12
    metrics["likelihood_map_mean_abs_error"] = float((true_g - model_g)[mask].abs().mean())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    md = out / "metrics.md"
    md.write_text(metrics_markdown(rows, floor, c))
    files = {
        samples_png: "samples of each sampler beside the data",
        **{gif: "sampling trajectories (animation)" for gif in gifs},
        density_png: "log-density map",
        loss_png: "training loss curves",
        md: "metrics table",
        out / "metrics.json": "all numbers, machine-readable",
    }
    train_seconds = sum(f.seconds for _, f in trained.values())
    return FunnelDemoResult(rows, floor, metrics, files, note, train_seconds, total)

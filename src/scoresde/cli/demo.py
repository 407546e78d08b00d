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
    scoresde demo              # a few minutes on one CPU core (timed in docs/cli.md)
    scoresde demo --quick      # a smoke run of a few seconds
"""

from __future__ import annotations

import dataclasses

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.experiments.funnel_demo import QUICK, FunnelDemoConfig
from scoresde.settings import Option, dataclass_options

_RUNTIME = ("seed", "progress")


def run(ctx: Context) -> int:
    from scoresde.experiments.funnel_demo import metrics_markdown, run_funnel_demo

    cfg = ctx.cfg
    if ctx.device.type != "cpu":
        raise ValueError(
            f"the demo trains tiny 2-D models on the CPU; run it with --device cpu, not {ctx.device}"
        )
    config = FunnelDemoConfig(**{f.name: cfg[f.name] for f in dataclasses.fields(FunnelDemoConfig)})
    if not config.lr > 0:  # checked before the output folder exists
        raise ValueError(
            f"--lr: the learning rate must be a finite number > 0 (0 trains nothing), got {config.lr}"
        )
    out = ctx.out_dir()
    res = run_funnel_demo(config, out, settings=cfg, log=lambda text: print(text, flush=True))
    print()
    print(metrics_markdown(res.rows, res.floor, config).split("\n\n", 2)[2].rstrip())
    print(f"likelihood: {res.likelihood_note}")
    print(f"\ntrained in {res.train_seconds:.1f}s; demo finished in {res.total_seconds:.1f}s")
    print(f"outputs in {out.resolve()}:")
    files = {**res.files, out / "config.toml": "the settings (repeat with --config)"}
    for f, description in files.items():
        print(f"  {f.name:<26} {description}")
    return 0


COMMAND = Command(
    name="demo",
    help="train score models on the 2-D funnel and compare samplers (a few minutes on a CPU)",
    doc=__doc__,
    options=[
        *dataclass_options(FunnelDemoConfig, exclude=_RUNTIME),
        Option("quick", False, "a fast smoke run (few steps and samples); explicit settings still win"),
        *runtime_options(
            device="cpu",
            threads=1,
            progress=True,
            seed_help="seed of every random draw (data, training, sampling)",
            threads_help="CPU threads of torch (0: auto, the free cores); small 2-D models run fastest on 1",
        ),
    ],
    body=run,
    base=lambda cfg: QUICK if cfg["quick"] else None,
)
OPTIONS = COMMAND.all_options
add_arguments = COMMAND.add_arguments

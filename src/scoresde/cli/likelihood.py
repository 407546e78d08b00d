"""Log-likelihood of data under a trained model, by the probability-flow ODE (Song et al. 2021, App. D.2).

Per data point: log p(x) in nats (the ODE integrated from eps to T with an adaptive solver and
the exact or Hutchinson divergence; with --target-se, rk4 on equal log-SNR steps whose number
the planner chooses).  For discrete data (the digits' 17 levels, 8-bit images)
the points are the integer levels, uniformly dequantized (scoresde.Quantization), and the result
is also given in bits/dim, a lower bound on log P of the discrete data.  Writes
likelihood.json (mean +- standard error and settings) and likelihood.npz (per sample).

Example:
    scoresde likelihood --checkpoint runs/digits --data digits --num 200
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from scoresde.cli._io import load_data, load_model, mean_se
from scoresde.cli._json import write_json
from scoresde.cli.command import (
    Command,
    Context,
    checkpoint_options,
    data_options,
    ode_options,
    runtime_options,
)
from scoresde.settings import Option


def count_note(asked: int, used: int, what: str) -> str | None:
    """The note when fewer items than ``--num`` exist (``None`` when all were there)."""
    if used >= asked:
        return None
    return f"--num {asked} asked, but {what} holds only {used}: {used} used"


def run(ctx: Context) -> int:
    from dataclasses import asdict

    from scoresde.flow.batched import log_likelihood_batches
    from scoresde.flow.dequantization import Quantization
    from scoresde.flow.divergence import Hutchinson
    from scoresde.flow.integrators import make_integrator
    from scoresde.flow.likelihood import LikelihoodOptions
    from scoresde.parallel import init_distributed

    cfg, device = ctx.cfg, ctx.device
    if cfg["accept_miss"] and cfg["target_se"] is None:
        raise ValueError("--accept-miss accepts a missed --target-se; it does nothing without --target-se")
    if cfg["target_se_method"] != "rk4" and cfg["target_se"] is None:
        raise ValueError(
            "--target-se-method picks the solver the --target-se planner plans; without --target-se "
            "use --rtol/--atol/--norm (dopri5)"
        )
    # With --target-se the planner picks the steps of rk4 on the log-SNR clock (the library's
    # default there, a third of the adaptive plan's time) unless --target-se-method dopri5.
    integrator = (
        None
        if cfg["target_se"] is not None and cfg["target_se_method"] == "rk4"
        else make_integrator("dopri5", rtol=cfg["rtol"], atol=cfg["atol"], norm=cfg["norm"])
    )
    loaded = load_model(ctx)
    data = load_data(cfg["data"], loaded, cfg["num"], cfg["seed"])
    lo, hi = loaded.info.data_range  # the model's data space ([-1, 1] unless it says otherwise)
    quant = None if data.levels is None else Quantization(data.levels, lo, hi)
    points = data.x.float() if quant is None else quant.levels_of(data.x.float())
    num_classes = loaded.info.num_classes
    labels = None
    if num_classes is not None:
        if cfg["unconditional"]:
            labels = torch.full((points.shape[0],), num_classes, dtype=torch.long)  # the null token
        elif data.y is None:
            raise ValueError(
                f"the model is class-conditional but {data.name} has no labels; pass --unconditional "
                "(if it was trained with label dropout) or labelled data"
            )
        else:
            labels = data.y
    info = init_distributed(str(device))
    notes = []
    note = count_note(cfg["num"], points.shape[0], f"the held-out split of {data.name}")
    if note is not None:
        notes.append(note)
        if info.is_main:
            print(f"warning: {note}", file=sys.stderr)
    t0 = time.perf_counter()
    res = log_likelihood_batches(
        loaded.model,
        loaded.sde,
        points.to(device),
        y=None if labels is None else labels.to(device),
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
        integrator=integrator,
        divergence=cfg["divergence"] if cfg["divergence"] != "hutchinson" else Hutchinson(cfg["probes"]),
        quantization=quant,
        options=LikelihoodOptions(draws=cfg["draws"]),
        target_se=cfg["target_se"],
        info=info,
        progress=cfg["progress"],
    )
    if res is None:  # not rank 0: rank 0 writes the result
        return 0
    logp, seconds = res.logp, time.perf_counter() - t0
    out = ctx.out_dir()
    m, se = mean_se(logp)
    summary = {
        "checkpoint": str(loaded.path),
        "data": data.name,
        "num": int(logp.numel()),
        "num_asked": cfg["num"],
        "notes": notes,
        "dims": int(np.prod(loaded.shape)),
        "logp_mean_nats": m,
        "logp_se_nats": se,
        "conditional_on": None
        if labels is None
        else ("null label" if cfg["unconditional"] else "true labels"),
        "nfe": res.nfe,
        "seconds": round(seconds, 2),
        "settings": {k: v for k, v in cfg.items() if k not in ("out", "name")},
    }
    status = 0
    if res.plan is not None:
        miss = res.target_miss()  # the promise, checked after the run
        summary.update(
            target_se=cfg["target_se"],
            mc_se=res.mc_se,
            solver_error=res.solver_error,
            se_units=res.plan.units,
            target_met=miss is None,
            plan=asdict(res.plan),
        )
        print(
            f"target s.e. {cfg['target_se']:g} {res.plan.units}: Monte-Carlo s.e. {res.mc_se:.4g}, "
            f"solver error <= {res.solver_error:.3g}"
        )
        if miss is not None:
            miss = f"--target-se {miss}"
            summary["target_miss"] = miss
            if cfg["accept_miss"]:
                summary["target_miss_accepted"] = True
                print(f"warning: {miss} (accepted by --accept-miss)", file=sys.stderr)
            else:
                print(f"error: {miss}; results written, pass --accept-miss to accept them", file=sys.stderr)
                status = 3
    arrays = {"logp": logp.numpy()}
    if labels is not None:
        print(f"class-conditional model, scored with the {summary['conditional_on']}")
    print(f"log p(x) over {logp.numel()} points of {data.name}: {m:.4f} +- {se:.4f} nats (mean +- s.e.)")
    if res.bpd is not None and res.bpd.numel():
        bm, bse = mean_se(res.bpd)
        summary.update(
            levels=data.levels,
            bpd_mean=bm,
            bpd_se=bse,
            bpd_note="uniform dequantization of the integer levels (a bound on the discrete data's bits/dim)",
        )
        arrays["bpd"] = res.bpd.numpy()
        print(f"bits/dim ({data.levels} levels, uniform dequantization): {bm:.4f} +- {bse:.4f}")
    print(f"{res.nfe} function evaluations in {seconds:.1f}s")
    write_json(out / "likelihood.json", summary)
    np.savez(out / "likelihood.npz", allow_pickle=True, **arrays)  # numpy's default, named for mypy
    print(f"outputs in {out.resolve()}: likelihood.json, likelihood.npz, config.toml")
    return status


COMMAND = Command(
    name="likelihood",
    help="log-likelihood (nats, bits/dim) of data under a checkpoint, by the probability-flow ODE",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        *data_options(num=100),
        Option("batch_size", 100, "points per ODE solve", minimum=1),
        *ode_options(),
        Option(
            "divergence",
            "exact",
            "exact (D Jacobian products), hutchinson, or auto (with --target-se: the cheaper)",
            choices=("exact", "hutchinson", "auto"),
        ),
        Option(
            "target_se",
            None,
            "choose tolerances and probes for this Monte-Carlo standard error of the mean (bits/dim "
            "for discrete data, else nats); --rtol, --atol, --probes are then not used",
            type=float,
            minimum=0.0,
            nullable=True,
        ),
        Option(
            "target_se_method",
            "rk4",
            "with --target-se: rk4 (equal steps of the log-SNR clock, the planner picks how many, "
            "with the multilevel correction of their mean) or "
            "dopri5 (adaptive, the planner picks its tolerance; --norm applies)",
            choices=("rk4", "dopri5"),
        ),
        Option(
            "accept_miss",
            False,
            "with --target-se: exit 0 even when the run misses the target (the JSON still says so)",
        ),
        Option("probes", 1, "Hutchinson probes per evaluation", minimum=1),
        Option("draws", 1, "dequantization draws averaged per point (discrete data)", minimum=1),
        Option(
            "unconditional",
            False,
            "class-conditional models: score log p(x) through the null label (needs training with "
            "label dropout) instead of log p(x | y) with the true labels",
        ),
        *runtime_options(seed_help="seed of the data, dequantization and probes", progress=True),
    ],
    body=run,
)

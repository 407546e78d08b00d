"""Log-likelihood of data under a trained model, by the probability-flow ODE (Song et al. 2021, App. D.2).

Per data point: log p(x) in nats (the ODE integrated from eps to T with an adaptive solver and
the exact or Hutchinson divergence).  For discrete data (the digits' 17 levels, 8-bit images)
the points are the integer levels, uniformly dequantized (scoresde.Quantization), and the result
is also given in bits/dim, a lower bound on log P of the discrete data.  Writes
likelihood.json (mean +- standard error and settings) and likelihood.npz (per sample).

Example:
    scoresde likelihood --checkpoint runs/digits --data digits --num 200
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from scoresde.cli._io import load_data, load_model, mean_se
from scoresde.cli.command import (
    Command,
    Context,
    checkpoint_options,
    data_options,
    ode_options,
    runtime_options,
)
from scoresde.settings import Option


def run(ctx: Context) -> int:
    from scoresde._core.progress import make_progress
    from scoresde.cli._dist import dist_info, gather_to_rank0, my_share
    from scoresde.flow.dequantization import Quantization
    from scoresde.flow.likelihood import log_likelihood

    cfg, device = ctx.cfg, ctx.device
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
    points = points.to(device)
    labels = None if labels is None else labels.to(device)
    # Work in batches of --batch-size, each with its own generator keyed by (seed, batch start):
    # under torchrun every rank solves whole batches of the one-process run (the same points
    # share the same adaptive steps and the same random draws), so the gathered values match.
    info = dist_info(device)
    bs = cfg["batch_size"]
    starts = list(range(0, points.shape[0], bs))
    mine = [starts[k] for k in my_share(len(starts), info)]
    bar = make_progress(
        cfg["progress"] if info.is_main else False,
        sum(min(bs, points.shape[0] - i) for i in mine),
        "likelihood",
        unit="points",
    )
    logps, bpds, nfes = [], [], 0
    target_se, plan, mc_sq, solver_sum = cfg["target_se"], None, 0.0, 0.0
    t0 = time.perf_counter()
    for i in mine:
        key = int(np.random.SeedSequence([cfg["seed"], i]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(key)
        res = log_likelihood(
            loaded.model,
            loaded.sde,
            points[i : i + bs],
            y=None if labels is None else labels[i : i + bs],
            divergence=cfg["divergence"],
            num_probes=cfg["probes"],
            generator=generator,
            rtol=cfg["rtol"],
            atol=cfg["atol"],
            norm=cfg["norm"],
            quantization=quant,
            draws=cfg["draws"],
            target_se=target_se,
            target_points=None if target_se is None else points.shape[0],
            plan=plan,
        )
        if target_se is not None:  # the first batch plans, the others reuse it
            plan, n_here = plan or res.plan, res.logp.shape[0]
            mc_sq += (n_here * res.mc_se) ** 2
            solver_sum += n_here * res.solver_error
        logps.append(res.logp.double().cpu())
        if res.bpd is not None:
            bpds.append(res.bpd.double().cpu())
        nfes += res.nfe
        bar.update(res.logp.shape[0], nfe=nfes)
    bar.close()
    empty = torch.empty(0, dtype=torch.float64)
    logp = gather_to_rank0(torch.cat(logps) if logps else empty, info)
    has_bpd = quant is not None
    bpd_all = gather_to_rank0(torch.cat(bpds) if bpds else empty, info) if has_bpd else None
    nfe_t = torch.tensor([float(nfes)], dtype=torch.float64)
    nfe_all = gather_to_rank0(nfe_t, info)
    precision = gather_to_rank0(torch.tensor([[mc_sq, solver_sum]], dtype=torch.float64), info)
    if logp is None:  # not rank 0: rank 0 writes the result
        return 0
    nfes = int(nfe_all.sum())
    bpds = [bpd_all] if bpd_all is not None and bpd_all.numel() else []
    out = ctx.out_dir()
    seconds = time.perf_counter() - t0
    dims = int(np.prod(loaded.shape))
    m, se = mean_se(logp)
    summary = {
        "checkpoint": str(loaded.path),
        "data": data.name,
        "num": int(logp.numel()),
        "dims": dims,
        "logp_mean_nats": m,
        "logp_se_nats": se,
        "conditional_on": None
        if labels is None
        else ("null label" if cfg["unconditional"] else "true labels"),
        "nfe": nfes,
        "seconds": round(seconds, 2),
        "settings": {k: v for k, v in cfg.items() if k not in ("out", "name")},
    }
    if target_se is not None:
        # Batches are independent: Monte-Carlo variances add; solver errors are bounds that average.
        n_all = int(logp.numel())
        units = "bits/dim" if quant is not None else "nats"
        mc, solver = float(precision[:, 0].sum().sqrt()) / n_all, float(precision[:, 1].sum()) / n_all
        summary.update(target_se=target_se, mc_se=mc, solver_error=solver, se_units=units, plan=plan)
        print(f"target s.e. {target_se:g} {units}: Monte-Carlo s.e. {mc:.4g}, solver error <= {solver:.3g}")
    arrays = {"logp": logp.numpy()}
    if labels is not None:
        print(f"class-conditional model, scored with the {summary['conditional_on']}")
    print(f"log p(x) over {logp.numel()} points of {data.name}: {m:.4f} +- {se:.4f} nats (mean +- s.e.)")
    if bpds:
        bpd = torch.cat(bpds)
        bm, bse = mean_se(bpd)
        summary.update(
            levels=data.levels,
            bpd_mean=bm,
            bpd_se=bse,
            bpd_note="uniform dequantization of the integer levels (a bound on the discrete data's bits/dim)",
        )
        arrays["bpd"] = bpd.numpy()
        print(f"bits/dim ({data.levels} levels, uniform dequantization): {bm:.4f} +- {bse:.4f}")
    print(f"{nfes} function evaluations in {seconds:.1f}s")
    (out / "likelihood.json").write_text(json.dumps(summary, indent=2))
    np.savez(out / "likelihood.npz", **arrays)
    print(f"outputs in {out.resolve()}: likelihood.json, likelihood.npz, config.toml")
    return 0


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

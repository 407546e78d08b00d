"""Benchmark: bits/dim at a requested standard error, ours (``target_se``) against the paper's pipeline.

Side by side in one run, on the same model and the same held-out images:

1. **Digits bits/dim at Monte-Carlo standard error <= --target-se** (default 0.01).  An MLP on
   the flattened 8x8 digits (scikit-learn's bundled set, 17 levels, uniform dequantization),
   trained ``--train-steps`` steps in this script.
   - *paper*: the pipeline of the paper's released code, re-implemented (the scipy route of
     ``benchmarks/likelihood.py``): scipy ``solve_ivp`` RK45 at rtol = atol = 1e-5, one Rademacher
     probe and one dequantization draw per image, a torch -> numpy round trip at every
     evaluation.  Its per-image Monte-Carlo variance is measured from two independent passes
     (the difference of two passes has twice that variance); it reaches the target SE with
     ``R = ceil(var / (N target^2))`` passes, whose time is ``R`` times one pass.
   - *ours*: ``log_likelihood(..., target_se=target, divergence=...)`` (pilot included in the time):
     ``--norms rk4ml`` the default plan (rk4 on the log-SNR clock with the multilevel
     correction), ``rk4`` the same without the correction (``multilevel=False``), a norm name
     the adaptive plan with that error norm.
   The reported SE of ours comes from its own replicates (or its pilot); both means are compared.
2. **Exact divergence for D <= 64**: one evaluation of ``(v, div v)`` for an MLP score network and
   for a Gaussian-mixture oracle: forward mode (``torch.func.jvp`` under ``vmap``, one pass)
   against the reverse-mode loop of ``D`` backward passes and the vectorised backward pass
   (``is_grads_batched``, the library's reverse-mode default).
3. **Hutchinson variance reduction on the digits**: per-probe spread of ``log p`` with and without
   the Gaussian control variate (fitted to the training images).
4. **``--model unet28``**: section 1 on a 28x28 UNet trained by the README's 28x28 recipe
   (``--conditional --label-dropout 0.1``, ``TrainConfig`` defaults, ``--base-channels`` wide,
   ``--unet-steps`` steps) on scikit-learn's digits upsampled to 28x28, trained once into
   ``--cache``; ``--wp-points`` checks the solvers' true error on a few images against a float64
   dopri5 solve (``--skip timing``: that check alone).

The paper's passes and ours run in alternating order (paper, ours, paper[, ours]).  Run (1 thread):

    PYTHONPATH=src python benchmarks/likelihood_target_se.py [--out docs/bench_likelihood_target_se.md]
    PYTHONPATH=src python benchmarks/likelihood_target_se.py --model unet28 --n 128 --norms rk4 \
        --skip wp divergence cv --out /tmp/unet28.md
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import scoresde as ss
from scoresde.data.images import load_digits
from scoresde.flow.dequantization import likelihood_points
from scoresde.flow.divergence import GaussianControlVariate, divergence_exact, jvp_divergence
from scoresde.flow.integrators import make_integrator
from scoresde.flow.likelihood import draw_probes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_likelihood import paper_solve


def paper_pass(model, sde, bins, quant, seed: int) -> tuple[np.ndarray, int]:
    """bits/dim per image: scipy RK45 at 1e-5, one Rademacher probe, one dequantization draw."""
    g = torch.Generator().manual_seed(seed)
    points, offset = likelihood_points(bins, sde, quant, "none", 1, g)
    x = points[0]
    probe = draw_probes(x, 1, "rademacher", g)[0]
    z, delta, nfe = paper_solve(model, sde, x, probe, 1e-5)
    logp = sde.prior_logp(z).double() + delta + offset[0].double()
    return (-logp / (x[0].numel() * math.log(2))).numpy(), nfe


def train_model(steps: int, hidden: int, seed: int = 0):
    data = load_digits(0.2, 0)
    train = data.train.flatten(1).float()
    torch.manual_seed(seed)
    model = ss.ScoreModel(ss.MLP(64, hidden=hidden, depth=3), ss.VPSDE(), prediction="eps")
    t0 = time.perf_counter()
    fit = ss.fit(
        model,
        lambda n, g: train[torch.randint(0, train.shape[0], (n,), generator=g)],
        steps=steps,
        batch_size=256,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    return fit.ema_model.eval(), data, time.perf_counter() - t0


@dataclass
class Case:
    """A model and the held-out images both pipelines score (bins of ``quant``)."""

    title: str
    description: str
    model: torch.nn.Module
    sde: object
    bins: torch.Tensor
    quant: ss.Quantization
    cv_points: torch.Tensor | None  # training points for the Gaussian control variate, or None


def digits_case(args) -> Case:
    """The MLP 3x``hidden`` on the flattened 8x8 digits, trained here."""
    model, data, train_s = train_model(args.train_steps, args.hidden)
    quant = ss.Quantization(17, -1.0, 1.0)
    bins = quant.levels_of(data.test.flatten(1).float()[: args.n]).double().float()
    train_points = quant.dequantize_data(data.train.flatten(1).float(), torch.Generator().manual_seed(0))
    return Case(
        title="Digits",
        description=f"MLP 3x{args.hidden} (eps-prediction, VP SDE) trained {args.train_steps} steps on the "
        f"80% training split ({train_s:.0f} s); {bins.shape[0]} held-out images (8x8, 17 levels, uniform "
        "dequantization).",
        model=model,
        sde=model.sde,
        bins=bins,
        quant=quant,
        cv_points=train_points,
    )


def unet28_case(args) -> Case:
    """A 28x28 UNet trained by the README's 28x28 recipe (``train --data FILE.npz --conditional
    --label-dropout 0.1``, every other option at its ``TrainConfig`` default but the width) on
    scikit-learn's digits upsampled to 28x28 (``benchmarks/first_run_28px.py --data upsampled``),
    for ``--unet-steps`` steps; cached in ``--cache`` (trained once)."""
    from first_run_28px import make_keras_digits
    from scoresde.data.images import load_dataset
    from scoresde.train.trainer import TrainConfig, Trainer

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data_path = cache / "digits28.npz"
    if not data_path.exists():
        make_keras_digits(data_path, seed=0)
    name = f"unet28_c{args.base_channels}_s{args.unet_steps}"
    ckpt = cache / name / "checkpoints" / "last.safetensors"
    train_s = float("nan")
    if not ckpt.exists():
        cfg = TrainConfig(
            data=str(data_path),
            conditional=True,
            label_dropout=0.1,
            base_channels=args.base_channels,
            steps=args.unet_steps,
            out=str(cache),
            name=name,
            progress=False,
            seed=0,
            overwrite=True,
        )
        trainer = Trainer(cfg)
        c0 = time.process_time()
        while trainer.step < args.unet_steps:
            trainer.train_step(trainer.step / args.unet_steps)
        train_s = time.process_time() - c0
        trainer.save(ckpt)
        (cache / name / "train_seconds.txt").write_text(f"{train_s:.1f}\n")
        print(f"unet28: trained {args.unet_steps} steps in {train_s:.0f} s CPU -> {ckpt}", flush=True)
    elif (cache / name / "train_seconds.txt").exists():
        train_s = float((cache / name / "train_seconds.txt").read_text())
    loaded = ss.load_checkpoint(ckpt)
    model = loaded.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    data = load_dataset(data_path)
    quant = ss.Quantization(256, -1.0, 1.0)
    test = data.test[: args.n].float()
    bins = quant.levels_of(test).float()
    c = loaded.config["train"]
    params = sum(p.numel() for p in model.parameters())
    return Case(
        title="28x28 UNet (README recipe)",
        description=f"UNet, base {args.base_channels} channels ({params:,} parameters), the README's 28x28 "
        f"recipe (`--conditional --label-dropout 0.1`; `TrainConfig` defaults: prediction "
        f"{c.get('prediction')}, SDE {c.get('sde')}, weighting {c.get('weighting')}, batch "
        f"{c.get('batch_size')}) trained {args.unet_steps} steps ({train_s:.0f} s CPU, one thread) on "
        "scikit-learn's digits upsampled to 28x28 (`benchmarks/first_run_28px.py`'s `--data upsampled`, "
        f"80/20 split); {bins.shape[0]} held-out images (28x28, 256 levels, uniform dequantization), scored "
        "through the null label as `Trainer.bits_per_dim` does for label-dropout models.",
        model=model,
        sde=model.sde,
        bins=bins,
        quant=quant,
        cv_points=None,
    )


def target_se_section(case: Case, args, lines: list[str], number: int) -> None:
    """Ours (``target_se``) against the paper's pipeline on ``case``, timed in alternating rounds."""
    model, sde, bins, quant = case.model, case.sde, case.bins, case.quant
    n, target = bins.shape[0], args.target_se
    print(f"{case.title}: {n} held-out images", flush=True)
    if "timing" in args.skip:  # the solver check alone, at the --wp-steps step counts
        lines += [f"## {number}. {case.title}: the solvers' true error", "", case.description, ""]
        solver_check(model, sde, bins, quant, lines, [], args)
        return
    cv = GaussianControlVariate.fit(case.cv_points) if case.cv_points is not None else None
    labels = {
        "rk4": "auto, rk4 on the log-SNR clock, no correction (multilevel=False)",
        "rk4ml": "auto, rk4 on the log-SNR clock, multilevel correction",
    }
    variants = [(labels.get(norm, f"auto, norm={norm}"), None, norm) for norm in args.norms]
    if "cv" not in args.skip and cv is not None:
        variants.append(("hutchinson + Gaussian control variate", cv, args.norms[0]))

    def ours(c, norm, seed, plan=None):
        # rk4: the library's default with target_se (rk4 on the log_sigma clock, the planner
        # chooses the number of steps); else dopri5 with the norm, the planner its tolerance.
        # rk4: multilevel=False (the plain plan); rk4ml: the multilevel correction (the default).
        return ss.log_likelihood(
            model,
            sde,
            bins,
            quantization=quant,
            target_se=ss.PrecisionTarget(target, pilot_points=args.pilot_points, multilevel=norm == "rk4ml"),
            divergence="auto" if c is None else ss.Hutchinson(control_variate=c),
            integrator=None if norm.startswith("rk4") else make_integrator(norm=norm),
            plan=plan,
            generator=torch.Generator().manual_seed(seed),
        )

    def run_ours(div, c, norm, seed):
        t0, c0 = time.perf_counter(), time.process_time()
        res = ours(c, norm, seed)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"  ours ({div}, seed {seed}): {sec:.2f}s wall, {cpu:.2f}s CPU, plan {res.plan}, "
            f"mc_se {res.mc_se:.4f}, bpd {res.bpd_mean:.4f}",
            flush=True,
        )
        return res, sec, cpu

    # Alternating rounds (paper, ours, paper, ours) so that a change in the machine's load between
    # them hits both sides alike: round r runs the paper's pass with noise seed r + 1 and every
    # variant of ours with seed r + 3.  The paper's two passes give its per-image variance.
    passes_out, ours_out = [], [[] for _ in variants]
    for r in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        bpd_r, nfe_r = paper_pass(model, sde, bins, quant, seed=r + 1)
        passes_out.append((bpd_r, nfe_r, time.perf_counter() - t0, time.process_time() - c0))
        print(
            f"  paper pass {r + 1}: {passes_out[-1][2]:.2f}s wall, {passes_out[-1][3]:.2f}s CPU, {nfe_r} NFE"
        )
        if r < args.ours_rounds:
            for i, (div, c, norm) in enumerate(variants):
                ours_out[i].append(run_ours(div, c, norm, seed=r + 3))
    (bpd1, nfe1, w1, c1), (bpd2, nfe2, w2, c2) = passes_out
    one_pass, one_pass_cpu = (w1 + w2) / 2, (c1 + c2) / 2
    var_rep = float(np.var(bpd1 - bpd2, ddof=1)) / 2  # per-image variance of one pass (bits/dim^2)
    mc_one = math.sqrt(var_rep / n)
    passes = max(1, math.ceil(var_rep / (n * target**2)))
    paper_mean = float(np.mean((bpd1 + bpd2) / 2))
    paper_total_se = float(np.std(bpd1, ddof=1)) / math.sqrt(n)
    print(f"  paper: one pass {one_pass:.2f}s, {nfe1} NFE, MC s.e. {mc_one:.4f}, passes needed {passes}")

    # Each variant's solve alone (its round-1 plan reused, no pilot: what a later batch of the
    # same data costs), so that its time splits into pilot and solve; the first variant's gives
    # the per-evaluation cost against the paper's pass, both per batched evaluation of all n images.
    solos = []
    for (_, c, norm), runs in zip(variants, ours_out, strict=True):
        c0 = time.process_time()
        solo = ours(c, norm, 5, plan=runs[0][0].plan)
        solos.append((solo, time.process_time() - c0))
        print(
            f"  solve alone ({norm}): {solos[-1][1]:.2f}s CPU, {solo.nfe} NFE, bpd {solo.bpd_mean:.4f}",
            flush=True,
        )
    first = ours_out[0][0][0]
    solo, solo_cpu = solos[0]
    per_eval_ours, per_eval_paper = solo_cpu / solo.nfe, one_pass_cpu / ((nfe1 + nfe2) / 2)

    paper_time, paper_cpu = passes * one_pass, passes * one_pass_cpu
    lines += [
        f"## {number}. {case.title}: bits/dim at Monte-Carlo standard error <= {target:g}",
        "",
        f"{case.description}  The "
        "paper's pipeline: scipy RK45 at rtol = atol = 1e-5, one Rademacher probe and one dequantization "
        "draw per image, numpy round trip.  Its per-image Monte-Carlo variance is measured from two "
        f"independent passes: s.e. of the mean after one pass {mc_one:.4f} bits/dim, so it needs "
        f"{passes} pass(es) for {target:g}.  Timed in alternating rounds (paper pass, ours, paper "
        f"pass{', ours' if args.ours_rounds == 2 else ''}, with fresh noise each): the paper's time is the "
        "mean of its two passes times the passes needed, ours the mean of its "
        f"{'two runs' if args.ours_rounds == 2 else 'run'}, pilot included.  CPU time "
        "(`time.process_time`, one thread) is the comparison that survives a shared machine; wall "
        "time is given too.",
        "",
        "| pipeline | bits/dim | MC s.e. | solver error (est.) | s.e. across images | NFE | CPU (s) "
        "| ours / paper (CPU) | wall (s) | ours / paper (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| paper (RK45 1e-5, 1 probe, {passes} pass(es)) | {paper_mean:.4f} | "
        f"{mc_one / math.sqrt(passes):.4f} | (tol 1e-5) | {paper_total_se:.4f} | {nfe1 * passes} "
        f"({nfe1}, {nfe2}) | {paper_cpu:.2f} ({c1:.1f}, {c2:.1f}) | 1 | {paper_time:.2f} | 1 |",
    ]
    rows = []
    unit = 1.0 / (bins[0].numel() * math.log(2))
    for (div, _, _), runs in zip(variants, ours_out, strict=True):
        res = runs[0][0]
        cpu = sum(r[2] for r in runs) / len(runs)
        sec = sum(r[1] for r in runs) / len(runs)
        rows.append((div, res, sec, cpu))
        p = res.plan
        how = f"{p.divergence}" + (f", {p.num_probes} probes" if p.divergence == "hutchinson" else "")
        level = f"tol {p.rtol:.2g}" if p.steps is None else f"{p.steps} steps"
        if p.fine_steps is not None:
            level += (
                f" + correction from {p.fine_steps} steps ({-p.correction * unit:+.1e} bits/dim, "
                f"s.e. {res.correction_se:.1e})"
            )
        bpds = ", ".join(f"{r[0].bpd_mean:.4f}" for r in runs)
        lines.append(
            f"| ours target_se={target:g}, {div} -> {level}, {how}, {p.draws} draw(s) "
            f"| {bpds} | {res.mc_se:.4f} | {res.solver_error:.2g} | {res.bpd_se:.4f} | {res.nfe} "
            f"(pilot {p.pilot_nfe}) | {cpu:.2f} ({', '.join(f'{r[2]:.1f}' for r in runs)}) "
            f"| **{cpu / paper_cpu:.2f}** | {sec:.2f} | {sec / paper_time:.2f} |"
        )
    best = min(rows, key=lambda r: r[3])
    best_runs = ours_out[rows.index(best)]
    ours_mean = sum(r[0].bpd_mean for r in best_runs) / len(best_runs)
    diff = abs(ours_mean - paper_mean)
    comb = math.sqrt(best[1].mc_se ** 2 / len(best_runs) + (mc_one / math.sqrt(2)) ** 2)
    lines += [
        "",
        f"Agreement: |ours - paper| = {diff:.4f} bits/dim against a combined Monte-Carlo s.e. of {comb:.4f} "
        f"(each side's mean over its two rounds).  The s.e. across images is the spread of the "
        "images themselves (a property of the test set, the same for both pipelines); the target is on "
        "the error the computation adds.",
        "",
        f"Per evaluation (one batched call on all {n} images, CPU): ours {1e3 * per_eval_ours:.1f} ms "
        f"({variants[0][0]}, the solve alone with round 1's plan, {solo.nfe} evaluations, "
        f"{max(1, first.plan.num_probes)} probe(s)), the paper's loop {1e3 * per_eval_paper:.1f} ms: "
        f"**{per_eval_ours / per_eval_paper:.2f}x**.  NFE per image: ours {solo.nfe} in the solve "
        f"(+ {first.plan.pilot_nfe} pilot evaluations on {first.plan.pilot_points} points), the paper "
        f"{nfe1} per pass.",
        "",
        "Where ours' time goes (CPU s): the solve alone is a second solve with the plan reused "
        "(no pilot, fresh noise: what a later batch of the same data costs); the pilot is the run's "
        "time minus it.",
        "",
        "| ours | run (pilot + solve) | solve alone (plan reused) | pilot (difference) | pilot share "
        "| reused plan / paper (CPU) | bits/dim of the reused-plan solve |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {div} | {cpu:.1f} | {sc:.1f} | {cpu - sc:.1f} | {(cpu - sc) / cpu:.0%} | "
            f"{sc / paper_cpu:.2f} | {so.bpd_mean:.4f} |"
            for (div, _, _, cpu), (so, sc) in zip(rows, solos, strict=True)
        ),
        "",
    ]
    checks = [
        (div, res.plan, norm, res.solver_error)
        for (div, res, _, _), (_, _, norm) in zip(rows, variants, strict=True)
    ]
    if "wp" not in args.skip:
        if args.wp_points:
            solver_check(model, sde, bins, quant, lines, checks, args)
        else:
            work_precision(model, sde, bins, quant, lines, checks)


def work_precision(model, sde, bins, quant, lines: list[str], checks: list) -> None:
    """Solver error of the mean against evaluations, same images and noise (seed 1) for all rows."""

    def ours(method="dopri5", rtol=1e-5, atol=1e-5, norm="per_sample", steps=None, time_variable=None):
        t0 = time.perf_counter()
        r = ss.log_likelihood(
            model,
            sde,
            bins,
            quantization=quant,
            divergence="hutchinson",
            generator=torch.Generator().manual_seed(1),
            integrator=make_integrator(method, rtol=rtol, atol=atol, norm=norm, steps=steps),
            options=ss.LikelihoodOptions(time_variable=time_variable),
        )
        return r.bpd.double(), r.nfe, time.perf_counter() - t0

    ref, ref_nfe, _ = ours(rtol=1e-7, atol=1e-7)
    t0 = time.perf_counter()
    paper, paper_nfe = paper_pass(model, sde, bins, quant, seed=1)  # the same noise as seed 1 above
    rows = [
        (
            "paper: scipy RK45 1e-5 (RMS over the batch)",
            torch.from_numpy(paper),
            paper_nfe,
            time.perf_counter() - t0,
        )
    ]
    for norm in ("per_sample", "batch"):
        for tol in (1e-2, 3e-3, 1e-3, 3e-4):
            bpd, nfe, sec = ours(rtol=tol, atol=tol, norm=norm)
            rows.append((f"ours dopri5 {tol:g}, norm={norm}", bpd, nfe, sec))
    for steps in (16, 32):
        bpd, nfe, sec = ours(method="rk4", steps=steps, time_variable="log_sigma")
        rows.append((f"ours rk4, {steps} equal log-SNR steps", bpd, nfe, sec))
    lines += [
        "### Work-precision on the same images and noise",
        "",
        f"Reference: ours at rtol = atol = 1e-7 ({ref_nfe} evaluations); every row uses the same "
        "dequantization draw and probe per image, so the differences are the solvers' alone (bits/dim).",
        "",
        "| solve | NFE | error of the mean | mean abs error per image | max abs error | wall (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {nfe} | {float((b - ref).mean()):+.1e} | {float((b - ref).abs().mean()):.1e} "
            f"| {float((b - ref).abs().max()):.1e} | {sec:.2f} |"
            for name, b, nfe, sec in rows
        ),
        "",
    ]
    # Each plan's solver error, checked: its tolerance and norm on the same noise as the reference.
    out = []
    for label, plan, norm, est in checks:
        if plan.draws != 1 or plan.num_probes != 1 or "control variate" in label:
            continue  # the check reuses the reference's single draw and plain probe
        if plan.steps is not None:
            bpd, _, _ = ours(method="rk4", steps=plan.steps, time_variable="log_sigma")
            level = f"{plan.steps} steps"
            if plan.fine_steps is not None:  # multilevel: the plan's correction added
                bpd = bpd - plan.correction / (bins[0].numel() * math.log(2))
                level += f" + correction from {plan.fine_steps}"
        else:
            bpd, _, _ = ours(rtol=plan.rtol, atol=plan.atol, norm=norm)
            level = f"{plan.rtol:.2g}"
        out.append((label, level, est, float((bpd - ref).mean()), float((bpd - ref).abs().mean())))
    lines += [
        "### The plans' solver error, checked against the reference",
        "",
        "Each plan's tolerance and norm, solved on the reference's noise: the true solver error of the mean "
        "beside the plan's estimate (a bound on the error of the mean from its pilot points).",
        "",
        "| plan | tol or steps | estimated | true error of the mean | true mean abs error per image |",
        "|---|---|---|---|---|",
        *(f"| {lab} | {tol} | {est:.1e} | {e:+.1e} | {a:.1e} |" for lab, tol, est, e, a in out),
        "",
    ]


def solver_check(model, sde, bins, quant, lines: list[str], checks: list, args) -> None:
    """The plans' true solver error on ``--wp-points`` images (spread over the batch) against a tight
    dopri5 solve in float64 (``--wp-tol``), every solve on the same dequantized points and probe
    (the noise of seed 1), so that the differences are the solvers' alone."""
    import copy

    n = bins.shape[0]
    idx = torch.linspace(0, n - 1, min(n, args.wp_points)).round().long().unique()
    g = torch.Generator().manual_seed(1)
    points, _ = likelihood_points(bins[idx], sde, quant, "none", 1, g)
    x = points[0]
    probe = draw_probes(x, 1, "rademacher", g)
    unit = 1.0 / (x[0].numel() * math.log(2))

    def ours(xs, m, integrator, time_variable):
        c0 = time.process_time()
        r = ss.log_likelihood(
            m,
            m.sde,
            xs,
            divergence=ss.Hutchinson(probes=probe.to(xs.dtype)),
            integrator=integrator,
            options=ss.LikelihoodOptions(time_variable=time_variable),
        )
        return -r.logp.double() * unit, r.nfe, time.process_time() - c0

    model64 = copy.deepcopy(model).double()
    ref, ref_nfe, ref_cpu = ours(
        x.double(), model64, make_integrator("dopri5", rtol=args.wp_tol, atol=args.wp_tol), "t"
    )
    print(f"  reference: float64 dopri5 {args.wp_tol:g}, {ref_nfe} NFE, {ref_cpu:.1f}s CPU", flush=True)
    half, _, _ = ours(
        x.double(), model64, make_integrator("dopri5", rtol=args.wp_tol * 10, atol=args.wp_tol * 10), "t"
    )
    c0 = time.process_time()
    z, delta, paper_nfe = paper_solve(model, sde, x, probe[0], 1e-5)
    paper = -(sde.prior_logp(z).double() + delta) * unit
    rows = [("paper: scipy RK45 1e-5", paper, paper_nfe, time.process_time() - c0)]
    steps = sorted({p.steps for _, p, _, _ in checks if p.steps is not None} | set(args.wp_steps))
    for k in steps:
        bpd, nfe, cpu = ours(x, model, make_integrator("rk4", steps=k), "log_sigma")
        rows.append((f"ours rk4, {k} equal log-SNR steps", bpd, nfe, cpu))
    for lab, p, _, _ in checks:
        if p.fine_steps is not None:  # the multilevel plan: its coarse solve plus its correction
            bpd, nfe, cpu = ours(x, model, make_integrator("rk4", steps=p.steps), "log_sigma")
            rows.append(
                (
                    f"ours {lab}: rk4 {p.steps} steps + the plan's correction",
                    bpd - p.correction * unit,
                    nfe,
                    cpu,
                )
            )
    for _, p, norm, _ in checks:
        if p.steps is None:
            bpd, nfe, cpu = ours(x, model, make_integrator(rtol=p.rtol, atol=p.atol, norm=norm), None)
            rows.append((f"ours dopri5 {p.rtol:.2g}, norm={norm}", bpd, nfe, cpu))
    m = idx.numel()

    def err(b):
        d = (b - ref).double()
        return float(d.mean()), float(d.std() / math.sqrt(m)), float(d.abs().mean())

    lines += [
        f"### The solvers' true error on {m} images, against a float64 dopri5 solve at {args.wp_tol:g}",
        "",
        f"Reference: float64 dopri5 at rtol = atol = {args.wp_tol:g} on the `t` clock ({ref_nfe} "
        f"evaluations, {ref_cpu:.0f} s CPU); the same at {10 * args.wp_tol:g} differs from it by "
        f"{float((half - ref).mean()):+.1e} bits/dim in the mean ({float((half - ref).abs().max()):.1e} "
        "at most), the reference's own error is below that.  Every row solves the same dequantized points "
        "with the same probe (float32), so the differences are the solvers' alone (bits/dim; "
        "'s.e.' is the error of the mean's spread over these images).",
        "",
        "| solve | NFE | error of the mean | its s.e. | mean abs error per image | CPU (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {nfe} | {err(b)[0]:+.1e} | {err(b)[1]:.1e} | {err(b)[2]:.1e} | {cpu:.1f} |"
            for name, b, nfe, cpu in rows
        ),
        "",
    ]
    if checks:
        lines += [
            "The plans' own estimates (bound on the solver's error of the mean, from their pilots): "
            + "; ".join(
                f"{lab}: {est:.1e} at {p.steps} steps"
                if p.steps is not None
                else f"{lab}: {est:.1e} at {p.rtol:.2g}"
                for lab, p, _, est in checks
            )
            + f" (budget {checks[0][1].solver_budget:.1e}).",
            "",
        ]
    for name, b, nfe, _ in rows:
        print(f"  {name}: NFE {nfe}, error of the mean {err(b)[0]:+.2e} +- {err(b)[1]:.1e}")


def _time(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def divergence_section(args, lines: list[str]) -> None:
    sde = ss.VPSDE()
    rows = []
    for kind in ("MLP 3x256", "mixture oracle"):
        for d in args.dims:
            if kind == "MLP 3x256":
                torch.manual_seed(0)
                model = ss.ScoreModel(ss.MLP(d, hidden=256, depth=3), sde, prediction="eps").eval()
                x = torch.randn(args.batch, d)
            else:
                gmm = ss.GaussianMixture.random(
                    d, 3, eig_min=1e-2, generator=torch.Generator().manual_seed(0)
                )
                model = ss.AnalyticScore(gmm, sde)
                x = gmm.sample(args.batch, generator=torch.Generator().manual_seed(1))
            tt = torch.full((args.batch,), 0.3, dtype=x.dtype)

            def f(z, model=model, tt=tt):
                return model.velocity(z, tt)

            def batched(x=x, f=f):
                with torch.enable_grad():
                    xg = x.clone().requires_grad_(True)
                    return divergence_exact(f(xg), xg)

            def loop(x=x, f=f, d=d):
                with torch.enable_grad():
                    xg = x.clone().requires_grad_(True)
                    v = f(xg).reshape(x.shape[0], -1)
                    div = torch.zeros(x.shape[0], dtype=x.dtype)
                    for i in range(d):
                        (g,) = torch.autograd.grad(v[:, i].sum(), xg, retain_graph=True)
                        div = div + g[:, i]
                    return div

            def forward(x=x, f=f):
                return jvp_divergence(f, x)[1]

            err = float((forward() - batched()).abs().max())
            t_loop, t_batched, t_fwd = (_time(fn, args.repeats) for fn in (loop, batched, forward))
            rows.append((kind, d, t_loop, t_batched, t_fwd, err))
            print(
                f"  {kind} D={d}: loop {t_loop:.4f} batched {t_batched:.4f} forward {t_fwd:.4f} err {err:.1e}"
            )
    lines += [
        f"## 2. Exact divergence: one evaluation of (v, div v), batch {args.batch}",
        "",
        f"Best of {args.repeats} after a warm-up.  Ratios above 1 mean forward mode is faster.",
        "",
        "| model | D | backward loop (s) | vectorised backward (s) | forward jvp/vmap (s) | loop / forward "
        "| vectorised / forward | max abs difference |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {k} | {d} | {a:.4f} | {b:.4f} | {c:.4f} | {a / c:.2f} | {b / c:.2f} | {e:.1e} |"
            for k, d, a, b, c, e in rows
        ),
        "",
    ]


def control_variate_section(args, lines: list[str]) -> None:
    model, data, _ = train_model(args.train_steps, args.hidden)
    sde = model.sde
    quant = ss.Quantization(17, -1.0, 1.0)
    bins = quant.levels_of(data.test.flatten(1).float()[:64]).float()
    train_points = quant.dequantize_data(data.train.flatten(1).float(), torch.Generator().manual_seed(0))
    cv = GaussianControlVariate.fit(train_points)
    out = []
    for name, c in (("plain Rademacher", None), ("Gaussian control variate", cv)):
        t0 = time.perf_counter()
        r = ss.log_likelihood(
            model,
            sde,
            bins,
            quantization=quant,
            generator=torch.Generator().manual_seed(5),
            integrator=ss.AdaptiveIntegrator(rtol=1e-2, atol=1e-2),
            divergence=ss.Hutchinson(num_probes=8, control_variate=c),
        )
        sec = time.perf_counter() - t0
        var = float(r.logp_probes[0].double().var(0).mean()) / (64 * math.log(2)) ** 2
        out.append((name, var, r.bpd_mean, sec))
        print(f"  {name}: per-probe variance {var:.3e} bpd^2, {sec:.2f}s")
    lines += [
        "## 3. Hutchinson variance reduction (digits, 64 held-out images, 8 probes, tol 1e-2)",
        "",
        "| estimator | per-probe variance of bits/dim | bits/dim | wall (s) |",
        "|---|---|---|---|",
        *(f"| {n} | {v:.3e} | {m:.4f} | {s:.2f} |" for n, v, m, s in out),
        "",
        f"Variance ratio (control variate / plain): {out[1][1] / out[0][1]:.3f}.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=360, help="held-out digits")
    ap.add_argument("--target-se", type=float, default=0.01)
    ap.add_argument("--train-steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument(
        "--norms",
        nargs="+",
        default=["per_sample", "batch", "rk4ml", "rk4"],
        help="adaptive norms, or rk4 (fixed steps), or rk4ml (rk4 with the multilevel correction)",
    )
    ap.add_argument(
        "--model",
        default="mlp",
        choices=["mlp", "unet28"],
        help="mlp: the digits MLP (section 1); unet28: a 28x28 UNet by the README recipe (section 4)",
    )
    ap.add_argument(
        "--cache", default="/tmp/likelihood_target_se_cache", help="unet28: data and trained model"
    )
    ap.add_argument("--base-channels", type=int, default=16, help="unet28: UNet width")
    ap.add_argument("--unet-steps", type=int, default=1000, help="unet28: training steps")
    ap.add_argument(
        "--wp-points",
        type=int,
        default=0,
        help="check the solvers' true error on this many images against a float64 dopri5 solve "
        "(0: the work-precision table on all images)",
    )
    ap.add_argument("--pilot-points", type=int, default=32, help="target_se: the pilot's points")
    ap.add_argument("--wp-tol", type=float, default=1e-7, help="tolerance of the float64 reference")
    ap.add_argument("--wp-steps", type=int, nargs="*", default=[16, 32], help="rk4 step counts also checked")
    ap.add_argument(
        "--ours-rounds", type=int, default=2, choices=[1, 2], help="rounds in which ours runs (1: the first)"
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8, 16, 32, 64])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=[], choices=["digits", "timing", "divergence", "cv", "wp"])
    ap.add_argument("--out", default="docs/bench_likelihood_target_se.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "# Likelihood at a target standard error (`benchmarks/likelihood_target_se.py`), CPU",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/likelihood_target_se.py {' '.join(sys.argv[1:])}`  ",
        f"torch {torch.__version__}, {args.threads} CPU thread, on a core shared with other jobs (load "
        f"average {os.getloadavg()[0]:.1f} at the start, {os.cpu_count()} cores): wall times are noisy; "
        "compare only within one table (rows of a table ran side by side).",
        "",
    ]
    if "digits" not in args.skip:
        if args.model == "mlp":
            target_se_section(digits_case(args), args, lines, 1)
        else:
            target_se_section(unet28_case(args), args, lines, 4)
    if "divergence" not in args.skip:
        divergence_section(args, lines)
    if "cv" not in args.skip:
        control_variate_section(args, lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

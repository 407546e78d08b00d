"""Few-step PF-ODE samplers on a LEARNED model: pathwise error and sample quality at equal NFE.

The oracle benchmark (``benchmarks/samplers.py``) measures the solvers against exact scores; here
the model is a network: the class-conditional 8x8-digits model of the README recipe (VP SDE,
v prediction, ``TrainConfig`` defaults, ``--conditional --label-dropout 0.1``), trained by
``benchmarks/distill_digits.py``'s :func:`train_teacher` for ``--train-minutes`` of process CPU
time and cached in ``--work`` (a rerun with the same folder skips the training).

(a) Pathwise error.  Every sampler starts from the same ``x_T ~ N(0, I)`` (labels cycling over
the ten classes) at ``t = T`` and stops at ``t_end = 1e-3`` without a final denoising step; its
output is compared with a tight solve of the *same network's* probability-flow ODE from the same
``x_T`` (dopri5, ``--ref-tol``), as the RMS error per pixel over all draws and as the median over
draws of each path's RMS error (robust to the few paths that a small error sends to another digit).
No exact score is needed: the metric isolates the solver's error from the network's.  Peers are
driven by the network through their own interfaces, as ``benchmarks/samplers.py`` drives them by
the oracle: diffusers' multistep schedulers and DDIM through ``samplers.diffusers_configs`` (every
spacing, order and sigma option there) with the VP table ``trained_betas`` whose timestep ``tau``
is time ``(tau + 1) / 1000``;
``EulerDiscreteScheduler`` / ``HeunDiscreteScheduler`` (default and Karras sigmas) in their own
``x / s`` variables through ``scale_model_input``; k-diffusion through ``samplers.run_kdiffusion``.
``HeunDiscreteScheduler`` has no ``final_sigmas_type`` and ends at sigma 0, so its output is
compared with the reference's denoised prediction ``D(x_ref, t_end)`` (its last step from
``t_end`` to 0 is that prediction).  Each family's best option per NFE budget is reported.

(b) Sample quality.  The best configuration of ours and the best diffusers configuration at each
of NFE 10 and 20 (by the pathwise error of (a)) sample ``--samples`` class-conditional images
from each of ``--seeds`` seeds; outputs clamped to [-1, 1] are scored as
``benchmarks/distill_digits.py`` scores them, by the library's reference classifier (trained on
the training split only): class accuracy and the Frechet distance of its features to the
held-out split, mean and standard deviation over the seeds.

Usage (the default run: 11 minutes of wall time on one shared core, 4 of them training; a smoke test with
``--train-minutes 0.2 --n-path 16 --samples 50 --seeds 2 --work /tmp/sl_smoke``)::

    PYTHONPATH=src python benchmarks/samplers_learned.py
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

import scoresde as ss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import samplers as oracle_bench
from distill_digits import train_teacher
from scoresde.data.images import load_dataset
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.io.checkpoint import load_checkpoint
from scoresde.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NFES = (5, 10, 20)
QUALITY_NFES = (10, 20)
T_END = 1e-3
N_TRAIN = 1000
# Our PF-ODE solvers: (method, evaluations per step, options); each runs on every grid.
OURS: list[tuple[str, int, str, dict]] = [
    ("dpm_solver++_2m", 1, "", {}),
    ("dpm_solver++_3m", 1, "", {}),
    ("unipc", 1, "", {}),
    ("unipc", 1, ", order 3", {"order": 3}),
    ("deis", 1, "", {}),
    ("ipndm", 1, "", {}),
    ("ddim", 1, "", {}),
    ("heun", 2, "", {}),
]
GRIDS = ss.GRIDS


def rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return oracle_bench.rms(x, ref)


def median_path(x: torch.Tensor, ref: torch.Tensor) -> float:
    """The median over draws of each path's RMS error: robust to the few paths that switch digit."""
    return float((x.double() - ref.double()).pow(2).flatten(1).mean(1).median().sqrt())


def errors(x: torch.Tensor, ref: torch.Tensor, nfe: int) -> tuple[float, int, float]:
    """``(RMS error, nfe, median path error)``: the oracle benchmark's entry layout."""
    return rms(x, ref), nfe, median_path(x, ref)


# ---------------------------------------------------------------------------------------------- #
# The model.
# ---------------------------------------------------------------------------------------------- #
def teacher_config(work: Path, seed: int) -> TrainConfig:
    """The configuration :func:`distill_digits.train_teacher` trains (to find its data split)."""
    return TrainConfig(
        data="digits", conditional=True, label_dropout=0.1, out=str(work), name="teacher", seed=seed
    )


def learned_model(work: Path, minutes: float, seed: int) -> tuple[ss.ScoreFunction, object, str]:
    """The cached model of ``work/teacher`` (trained now when absent), its data split and a note."""
    ckpt = work / "teacher" / "checkpoints" / "last.safetensors"
    if ckpt.is_file():
        steps = load_checkpoint(ckpt).config.get("step")
        note = f"cached checkpoint of {steps} steps in `{work}` (trained by an earlier run)"
    else:
        trainer, spent = train_teacher(work, minutes, seed)
        note = f"trained now: {trainer.step} steps in {spent / 60:.1f} CPU-minutes"
    model = load_checkpoint(work / "teacher").model.eval()
    cfg = teacher_config(work, seed)
    data = load_dataset(cfg.data, cfg.test_fraction, cfg.seed, cfg.image_size)
    return model, data, note


# ---------------------------------------------------------------------------------------------- #
# diffusers, driven by the network.
# ---------------------------------------------------------------------------------------------- #
def vp_betas(sde: ss.VPSDE) -> object:
    """``alphas_cumprod[i] = exp(-B((i + 1) / 1000))``: the VP marginal at ``t = (i + 1) / 1000``."""
    k = torch.arange(N_TRAIN + 1, dtype=torch.float64) / N_TRAIN
    big_b = sde.int_beta(k)
    return (-torch.expm1(-(big_b[1:] - big_b[:-1]))).numpy()


def diffusers_configs() -> list[tuple[str, str, Callable, dict, int]]:
    """``(family, option, scheduler class, kwargs, evaluations per step)``: the oracle benchmark's
    multistep / DDIM options plus Euler and Heun (default and Karras sigmas)."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    out = [(fam, opt, cls, kw, 1) for fam, opt, cls, kw in oracle_bench.diffusers_configs()]
    for spacing in ("linspace", "trailing"):
        for sig, kw in (("default", {}), ("karras", {"use_karras_sigmas": True})):
            base = {"timestep_spacing": spacing, **kw}
            out.append(
                (
                    "diffusers EulerDiscrete",
                    f"{spacing} {sig}",
                    EulerDiscreteScheduler,
                    {**base, "final_sigmas_type": "sigma_min"},
                    1,
                )
            )
            out.append(
                ("diffusers HeunDiscrete (to sigma 0)", f"{spacing} {sig}", HeunDiscreteScheduler, base, 2)
            )
    return out


def run_scheduler(
    cls: Callable, kw: dict, budget: int, per_step: int, eps: Callable, x_T: torch.Tensor, betas: object
) -> tuple[torch.Tensor, int]:
    """One diffusers sampling loop at an NFE budget; returns ``(x, nfe)`` in the VP variable.

    Sigma-space schedulers (``init_noise_sigma > 1``) hold ``y = x / s``: the network sees
    ``scale_model_input(y) = x``; the output is mapped back by the last sigma.
    """
    steps = budget if per_step == 1 else (budget + 1) // 2  # Heun: 2 steps - 1 evaluations
    sched = cls(num_train_timesteps=N_TRAIN, trained_betas=betas, **kw)
    sched.set_timesteps(steps)
    sigma_space = float(sched.init_noise_sigma) > 1.0
    x = x_T * sched.init_noise_sigma if sigma_space else x_T.clone()
    nfe = 0
    for tau in sched.timesteps:
        inp = sched.scale_model_input(x, tau) if sigma_space else x
        e = eps(inp, (float(tau) + 1.0) / N_TRAIN)
        nfe += 1
        x = sched.step(e, tau, x).prev_sample
    if sigma_space:
        x = x / math.sqrt(float(sched.sigmas[-1]) ** 2 + 1.0)
    return x, nfe


def run_diffusers(
    sde: ss.VPSDE, eps: Callable, x_T: torch.Tensor, ref: torch.Tensor, ref_x0: torch.Tensor
) -> dict:
    """``{(family, option): {budget: (error, nfe)}}`` for every diffusers configuration."""
    betas = vp_betas(sde)
    out: dict = {}
    for family, label, cls, kw, per_step in diffusers_configs():
        target = ref_x0 if "sigma 0" in family else ref
        row = {}
        for budget in NFES:
            try:
                x, nfe = run_scheduler(cls, kw, budget, per_step, eps, x_T, betas)
                row[budget] = errors(x, target, nfe)
            except Exception as e:  # a configuration the scheduler refuses
                row[budget] = (math.nan, f"error: {type(e).__name__}")
        out[(family, label)] = row
    return out


# ---------------------------------------------------------------------------------------------- #
# Ours.
# ---------------------------------------------------------------------------------------------- #
def run_ours(model: ss.ScoreFunction, x_T: torch.Tensor, y: torch.Tensor, ref: torch.Tensor) -> dict:
    out: dict = {}
    for name, per_step, suffix, opts in OURS:
        for grid in GRIDS:
            row = {}
            for budget in NFES:
                res = ss.sample(
                    model, x_T=x_T, y=y, method=name, steps=budget // per_step, grid=grid,
                    t_end=T_END, denoise=False, **opts,
                )  # fmt: skip
                row[budget] = errors(res.x, ref, res.nfe)
            out[(name, grid + suffix)] = row
    return out


# ---------------------------------------------------------------------------------------------- #
# Sample quality.
# ---------------------------------------------------------------------------------------------- #
def quality(draw: Callable[[torch.Tensor], torch.Tensor], args, clf, data) -> dict[str, float]:
    """Accuracy and Frechet distance over ``args.seeds`` sample sets: means and standard deviations."""
    y = torch.arange(args.samples) % 10
    acc, fd = [], []
    for k in range(args.seeds):
        x_T = torch.randn(args.samples, 1, 8, 8, generator=torch.Generator().manual_seed(1000 + k))
        x = draw(x_T, y).clamp(-1, 1).float()
        rep = classifier_report(clf, x, data.test, y)
        acc.append(rep["accuracy"])
        fd.append(rep["frechet"])
    a, f = torch.tensor(acc), torch.tensor(fd)
    sd = (lambda v: float(v.std())) if args.seeds > 1 else (lambda v: 0.0)
    return {"acc": float(a.mean()), "acc_sd": sd(a), "fd": float(f.mean()), "fd_sd": sd(f)}


def best_at(fam: dict, budget: int) -> tuple[float, int, str, str]:
    """``(error, nfe, option, family)`` of the least error at ``budget``."""
    return min((v[budget] + (k,) for k, v in fam.items() if budget in v), key=lambda e: e[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--train-minutes", type=float, default=4.0, help="CPU-minutes of training (when not cached)"
    )
    p.add_argument("--work", default=str(ROOT / "runs" / "samplers_learned"), help="cache of the model")
    p.add_argument("--n-path", type=int, default=100, help="x_T draws for the pathwise error")
    p.add_argument("--ref-tol", type=float, default=1e-6, help="dopri5 rtol = atol of the reference")
    p.add_argument("--samples", type=int, default=500, help="images per seed for sample quality")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-kdiffusion", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_samplers_learned.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    t_start = time.time()
    work = Path(args.work)
    model, data, train_note = learned_model(work, args.train_minutes, args.seed)
    sde = model.sde
    print(f"model: {train_note}", flush=True)

    clf = reference_classifier(data.train, data.train_labels, seed=args.seed, cache_dir=work / "cache")
    real = classifier_report(clf, data.test, data.test, data.test_labels, floor_images=data.train)
    with torch.no_grad():
        # (a) pathwise error.
        g = torch.Generator().manual_seed(1)
        x_T = torch.randn(args.n_path, 1, 8, 8, generator=g)
        y = torch.arange(args.n_path) % 10
        t0 = time.time()
        ref_res = ss.sample(
            model, x_T=x_T, y=y, method="dopri5", steps=1, t_end=T_END, denoise=False,
            rtol=args.ref_tol, atol=args.ref_tol,
        )  # fmt: skip
        ref = ref_res.x
        ref_x0 = model.denoise(ref, torch.full((args.n_path,), T_END), y)
        check = ss.sample(model, x_T=x_T, y=y, method="dpm_solver_3", steps=100, grid="logsnr", t_end=T_END,
                          denoise=False).x  # fmt: skip
        floor = rms(check, ref)
        t_ref = time.time() - t0
        print(f"reference: dopri5 NFE {ref_res.nfe}; DPM-Solver-3 (300 NFE) vs it {floor:.1e} ({t_ref:.0f}s)")

        def eps(x: torch.Tensor, t: float) -> torch.Tensor:
            return model.eps(x, torch.full((x.shape[0],), t), y[: x.shape[0]])

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model.denoise(x, t.expand(x.shape[0]) if t.ndim == 0 else t, y[: x.shape[0]])

        t0 = time.time()
        ours = run_ours(model, x_T, y, ref)
        print(f"ours: {time.time() - t0:.0f}s", flush=True)
        t0 = time.time()
        peers = run_diffusers(sde, eps, x_T, ref, ref_x0)
        print(f"diffusers: {time.time() - t0:.0f}s", flush=True)
        if not args.no_kdiffusion:
            oracle_bench.NFES = NFES
            oracle_bench.sw2 = lambda x: median_path(x, ref)
            oracle_bench.T_END = T_END
            try:
                kd = oracle_bench.run_kdiffusion(sde, types.SimpleNamespace(denoise=denoise), x_T, ref)
                peers.update(kd)
            except ImportError as e:
                peers[(f"k-diffusion (not installed: {e})", "-")] = {}
        fam_ours = {f"scoresde {k}": v for k, v in oracle_bench.best_per_family(ours).items()}
        fam_peers = oracle_bench.best_per_family(peers)
        fam_diff = {k: v for k, v in fam_peers.items() if k.startswith("diffusers")}
        med_ours = {f"scoresde {k}": v for k, v in oracle_bench.best_per_family(ours, by=2).items()}
        med_peers = oracle_bench.best_per_family(peers, by=2)

        # (b) sample quality of the best of each side at NFE 10 and 20.
        configs = {(c[0], c[1]): c for c in diffusers_configs()}
        ours_opts = {(f"scoresde {n}", g_ + s): (n, ps, g_, o) for n, ps, s, o in OURS for g_ in GRIDS}
        qrows = []
        betas = vp_betas(sde)
        t0 = time.time()
        for budget in QUALITY_NFES:
            _, nfe_o, opt_o, fam_o = best_at(fam_ours, budget)
            name, per_step, grid, opts = ours_opts[(fam_o, opt_o)]

            def draw_ours(xt, yy, name=name, per_step=per_step, grid=grid, opts=opts, budget=budget):
                return ss.sample(model, x_T=xt, y=yy, method=name, steps=budget // per_step, grid=grid,
                                 t_end=T_END, denoise=False, **opts).x  # fmt: skip

            qrows.append(("ours", f"{fam_o} [{opt_o}]", nfe_o, quality(draw_ours, args, clf, data)))
            print(qrows[-1], flush=True)
            _, nfe_p, opt_p, fam_p = best_at(fam_diff, budget)
            _, _, cls, kw, per = configs[(fam_p, opt_p)]

            def draw_peer(xt, yy, cls=cls, kw=kw, per=per, budget=budget):
                def e(x, t):
                    return model.eps(x, torch.full((x.shape[0],), t), yy)

                return run_scheduler(cls, kw, budget, per, e, xt, betas)[0]

            qrows.append(("best diffusers", f"{fam_p} [{opt_p}]", nfe_p, quality(draw_peer, args, clf, data)))
            print(qrows[-1], flush=True)
        t_quality = time.time() - t0
    load1 = os.getloadavg()

    cmd = " ".join(["PYTHONPATH=src python benchmarks/samplers_learned.py", *sys.argv[1:]])
    summary = []
    for budget in NFES:
        bo, bp = best_at(fam_ours, budget), best_at(fam_peers, budget)
        mo, mp = best_at(med_ours, budget), best_at(med_peers, budget)
        summary.append(
            f"| {budget} | {bo[0]:.2e} ({bo[3]} [{bo[2]}]) | {bp[0]:.2e} ({bp[3]} [{bp[2]}]) "
            f"| {bo[0] / bp[0]:.2f} | {mo[0]:.2e} ({mo[3]} [{mo[2]}]) | {mp[0]:.2e} ({mp[3]} [{mp[2]}]) "
            f"| {mo[0] / mp[0]:.2f} |"
        )
    lines = [
        "# Few-step samplers on a learned model (8x8 digits)",
        "",
        f"Generated by `{cmd}` (one thread). Model: the README recipe on the bundled digits (VP, v "
        f"prediction, 16-channel UNet, class-conditional, label dropout 0.1; EMA weights), {train_note}. "
        "See the module docstring for how peers are driven.",
        "",
        f"Machine: a shared 2-core x86_64 box; this ran pinned to one core; other jobs ran on both cores "
        f"(load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end); total wall time "
        f"{time.time() - t_start:.0f} s. Peers: diffusers and k-diffusion as in "
        "[bench_samplers.md](bench_samplers.md).",
        "",
        "## (a) Pathwise error against a tight solve of the same network",
        "",
        f"{args.n_path} draws of `x_T` (labels cycling over the classes), RMS error per pixel at `t_end = "
        f"{T_END:g}` (no final denoising) against dopri5 at rtol = atol = {args.ref_tol:g} ({ref_res.nfe} "
        f"NFE); its distance to DPM-Solver-3 with 100 log-SNR steps (300 NFE) is {floor:.1e}, the floor "
        "of the RMS column. *median path*: the median over draws of each path's RMS error (robust to the "
        "few paths that switch digit); each column picks the best option for its own statistic. Each "
        "cell: the best option of that family at that NFE budget [grid / option]; "
        "`(n)`: the NFE actually used when lower.",
        "",
        "| NFE | our best (RMS) | best peer (RMS) | ours / peer (RMS) | our best (median path) | best "
        "peer (median path) | ours / peer (median path) |",
        "|---|---|---|---|---|---|---|",
        *summary,
        "",
    ]
    oracle_bench.NFES = NFES
    oracle_bench.table({**fam_ours, **fam_peers}, lines)
    lines += [
        "",
        "## (b) Sample quality of the best of each side",
        "",
        f"The best configuration (by (a)) of ours and of diffusers at each NFE; {args.samples} class-"
        f"conditional samples x {args.seeds} seeds (outputs at `t_end` clamped to [-1, 1]; no clipping "
        f"of the predicted x0 on either side), scored by the reference classifier (held-out accuracy "
        f"{real['accuracy']:.3f}; Frechet floor, training split vs held-out, {real['frechet_floor']:.2f}). "
        f"Cells: mean ± standard deviation over the seeds. Scoring took {t_quality:.0f} s.",
        "",
        "| side | sampler [option] | NFE | class accuracy | Frechet distance |",
        "|---|---|---|---|---|",
    ]
    for who, how, nfe, r in qrows:
        lines.append(
            f"| {who} | {how} | {nfe} | {r['acc']:.3f} ± {r['acc_sd']:.3f} "
            f"| {r['fd']:.2f} ± {r['fd_sd']:.2f} |"
        )
    lines += ["", "<details><summary>every option (pathwise error: RMS / median path)</summary>", ""]
    lines += [
        "| sampler | option | " + " | ".join(f"NFE {n}" for n in NFES) + " |",
        "|---" * (len(NFES) + 2) + "|",
    ]
    for res in (ours, peers):
        for (family, option), row in res.items():
            cells = [
                "-"
                if n not in row
                else row[n][1]
                if not isinstance(row[n][1], int)
                else f"{row[n][0]:.2e} / {row[n][2]:.2e}" + ("" if row[n][1] == n else f" ({row[n][1]})")
                for n in NFES
            ]
            lines.append(f"| {family} | {option} | " + " | ".join(cells) + " |")
    lines += ["", "</details>", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

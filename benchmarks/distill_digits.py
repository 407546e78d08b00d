"""Consistency distillation on the bundled 8x8 digits: the student's few-step samples against the
teacher's at equal network evaluations (NFE).

The teacher is the README's train recipe on the bundled scikit-learn digits (``TrainConfig``
defaults: VP SDE, v prediction, 16-channel UNet, batch 32; ``--conditional --label-dropout 0.1``),
trained for ``--teacher-minutes`` of process CPU time.  The student is distilled from it by
:class:`scoresde.distill.run.Distiller` (the machinery of ``scoresde distill``: consistency
distillation, Song et al. 2023, Alg. 2, with Heun teacher steps on an EDM grid of ``--num-scales``
steps) for ``--distill-minutes`` of process CPU time.

Both are scored as ``benchmarks/first_run_28px.py`` scores models: class-conditional samples
(labels cycling over the 10 classes, predicted x0 clipped to [-1, 1] as ``scoresde sample``'s
``--clip-denoised auto``) are classified by the library's reference classifier (trained on the
training split only): ``accuracy`` is the fraction recognised as the class asked for, ``frechet``
the Frechet distance in its features to the held-out split (``floor``: the training split's
distance).  Each cell is the mean and the standard deviation over ``--seeds`` independent sample
sets of ``--samples`` images (the Monte-Carlo spread).  The teacher samples with DPM-Solver++(2M)
on the log-SNR grid (its best few-step ODE solver here) and, as the quality reference, at NFE 20
and with the default sampler (Euler-Maruyama, 100 steps); the student with multistep consistency
sampling (``method="consistency"``, 1 NFE per step).

``--method progressive`` (or ``both``) adds progressive distillation (Salimans & Ho 2022, Alg. 2):
the teacher's ``--pd-start`` DDIM steps on the ``--pd-grid`` grid halved down to 2, each round for
an equal share of ``--distill-minutes``, with each training image's class label passed to teacher
and student; the student samples with DDIM on the distilled 2-step grid.  ``--work DIR`` keeps the
teacher (and reuses one already there); ``--data FILE.npz`` runs on a keras-layout set such as the
28x28 digits of ``benchmarks/first_run_28px.py``; ``--teacher-rows target`` scores the teacher at
NFE 2 and 20 only.

Usage (the measurement; a smoke test with ``--teacher-minutes 0.2 --distill-minutes 0.2``)::

    PYTHONPATH=src python benchmarks/distill_digits.py --teacher-minutes 8 --distill-minutes 12
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import scoresde as ss
from scoresde.distill.progressive import progressive_loss
from scoresde.distill.run import DistillConfig, Distiller
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.models.base import ScoreFunction
from scoresde.models.clipping import ClipDenoised
from scoresde.sampling.grids import time_grid
from scoresde.train.ema import EMA
from scoresde.train.optim import adamw, gradient_norm
from scoresde.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def train_teacher(work: Path, minutes: float, seed: int, data: str = "digits") -> tuple[Trainer, float]:
    """The README recipe on ``data`` for ``minutes`` of CPU time, in ``work/teacher``; a teacher
    already there (``work/teacher_seconds.txt``: its step and CPU seconds) is loaded instead."""
    cfg = TrainConfig(
        data=data,
        conditional=True,
        label_dropout=0.1,
        steps=10**9,
        out=str(work),
        name="teacher",
        progress=False,
        seed=seed,
    )
    cached = work / "teacher_seconds.txt"
    if cached.exists():
        trainer = Trainer(cfg)
        trainer.resume(trainer.folder.last)
        return trainer, float(cached.read_text().split()[-1])
    trainer, seconds = train_minutes(cfg, minutes)
    cached.write_text(f"{trainer.step} {seconds}\n")
    return trainer, seconds


def train_minutes(cfg: TrainConfig, minutes: float) -> tuple[Trainer, float]:
    """Train ``cfg`` for ``minutes`` of process CPU time (the learning rate decays over it)."""
    trainer = Trainer(cfg)
    t0, budget = time.process_time(), 60.0 * minutes
    with trainer.folder.lock():
        trainer.folder.prepare(resuming=False, overwrite=True)
        while (spent := (time.process_time() - t0) / budget) < 1.0:
            trainer.train_step(spent)
        trainer.save()
    return trainer, time.process_time() - t0


def distil(work: Path, args: argparse.Namespace) -> tuple[Distiller, float]:
    cfg = DistillConfig(
        teacher=str(work / "teacher"),
        steps=10**9,
        batch_size=args.batch_size,
        lr=args.lr,
        num_scales=args.num_scales,
        ema_decay=args.ema_decay,
        distance=args.distance,
        weighting=args.weighting,
        seed=args.seed,
        out=str(work),
        name="student",
    )
    d = Distiller(cfg)
    t0, budget = time.process_time(), 60.0 * args.distill_minutes
    while time.process_time() - t0 < budget:
        d.train_step()
    return d, time.process_time() - t0


@dataclass
class ProgressiveRun:
    """A progressive distillation: the last student, its DDIM grid, and per round the teacher's
    steps, the optimiser steps and their CPU seconds."""

    model: ScoreFunction
    grid: Tensor
    rounds: list[tuple[int, int, float]]
    seconds: float


def progressive(teacher: ScoreFunction, data, args: argparse.Namespace) -> ProgressiveRun:
    """Progressive distillation (Salimans & Ho 2022, Alg. 2) of the conditional ``teacher`` from
    ``--pd-start`` DDIM steps on the ``--pd-grid`` grid down to 2, each halving for an equal share
    of ``--distill-minutes`` of CPU time; the class label of each training image is passed to
    teacher and student (:func:`scoresde.distill.progressive_loss` with ``y``).  Each round's
    student starts from its teacher (the previous round's EMA weights); AdamW at ``--lr``, decayed
    linearly to 0 over the round's budget as in the paper; EMA ``--ema-decay``."""
    ts = time_grid(teacher.sde, args.pd_start, args.pd_grid)
    n_rounds = int(math.log2(args.pd_start // 2))
    budget = 60.0 * args.distill_minutes / n_rounds
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    current, rounds, total = teacher, [], 0.0
    x_data, y_data = data.train, data.train_labels
    for k in range(n_rounds):
        grid = ts[:: 2**k]
        pupil = copy.deepcopy(current)
        for p in pupil.parameters():
            p.requires_grad_(True)
        ema = EMA(pupil, args.ema_decay)
        opt = adamw(pupil.parameters(), args.lr)
        pupil.train()
        t0, n = time.process_time(), 0
        while (spent := (time.process_time() - t0) / budget) < 1.0:
            for group in opt.param_groups:
                group["lr"] = args.lr * (1.0 - spent)
            idx = torch.randint(0, x_data.shape[0], (args.batch_size,), generator=g)
            loss = progressive_loss(pupil, current, x_data[idx], grid, y=y_data[idx], generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gradient_norm(pupil.parameters(), 1.0)
            opt.step()
            ema.update(pupil)
            n += 1
        seconds = time.process_time() - t0
        total += seconds
        rounds.append((grid.numel() - 1, n, seconds))
        sys.stdout.flush()
        steps = grid.numel() - 1
        print(
            f"progressive round {k + 1}: {steps} -> {steps // 2} DDIM steps, {n} steps in {seconds:.0f} CPU-s"
        )
        current = ema.module.eval()
        for p in current.parameters():
            p.requires_grad_(False)
    return ProgressiveRun(current, ts[:: 2**n_rounds], rounds, total)


def score(model, method: str, steps: int, grid, denoise: bool, args, clf, data) -> dict[str, float]:
    """Accuracy and Frechet distance over ``args.seeds`` sample sets: means and standard deviations."""
    clipped = ClipDenoised(model, mode="clip")
    y = torch.arange(args.samples) % 10
    acc, fd, nfe = [], [], 0
    for k in range(args.seeds):
        out = ss.sample(
            clipped,
            shape=(args.samples, *data.shape),
            method=method,
            steps=steps,
            grid=grid,
            denoise=denoise,
            seed=1000 + k,
            y=y,
        )
        rep = classifier_report(clf, out.x.float(), data.test, y)
        acc.append(rep["accuracy"])
        fd.append(rep["frechet"])
        nfe = out.nfe
    a, f = torch.tensor(acc), torch.tensor(fd)
    sd = (lambda v: float(v.std())) if args.seeds > 1 else (lambda v: 0.0)
    return {"nfe": nfe, "acc": float(a.mean()), "acc_sd": sd(a), "fd": float(f.mean()), "fd_sd": sd(f)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=("consistency", "progressive", "both"), default="consistency")
    p.add_argument("--data", default="digits", help="digits, or a keras-layout .npz (28x28 digits)")
    p.add_argument("--work", default="", help="a folder that keeps (and reuses) the teacher")
    p.add_argument("--teacher-minutes", type=float, default=8.0)
    p.add_argument("--distill-minutes", type=float, default=12.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--num-scales", type=int, default=18)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--distance", default="l2")
    p.add_argument("--weighting", default="uniform")
    p.add_argument("--pd-start", type=int, default=16, help="progressive: the teacher's DDIM steps")
    p.add_argument("--pd-grid", default="logsnr", help="progressive: the DDIM grid")
    p.add_argument("--teacher-rows", choices=("all", "target"), default="all")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_distill_digits.md"))
    args = p.parse_args()
    if args.pd_start < 4 or args.pd_start & (args.pd_start - 1):
        p.error("--pd-start must be a power of two >= 4")
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="distill_digits_"))
    work.mkdir(parents=True, exist_ok=True)
    teacher, t_teacher = train_teacher(work, args.teacher_minutes, args.seed, args.data)
    data = teacher.data  # the teacher's split: the classifier and the student see its training part only
    clf = reference_classifier(data.train, data.train_labels, seed=args.seed, cache_dir=work / "cache")
    real = classifier_report(clf, data.test, data.test, data.test_labels, floor_images=data.train)
    print(f"reference classifier held-out accuracy {real['accuracy']:.3f}, floor {real['frechet_floor']:.2f}")
    print(f"teacher: {teacher.step} steps in {t_teacher:.0f} CPU-s", flush=True)
    tm = teacher.ema.module.eval()
    rows: list[tuple[str, str, dict[str, float]]] = []
    students: list[str] = []

    def add(who: str, how: str, *a) -> None:
        with torch.no_grad():
            rows.append((who, how, score(*a, args, clf, data)))
        print(rows[-1], flush=True)

    t_eval = 0.0
    if args.method in ("consistency", "both"):
        student, t_student = distil(work, args)
        print(f"consistency student: {student.step} steps in {t_student:.0f} CPU-s", flush=True)
        students.append(
            f"consistency distillation of its EMA weights (Heun teacher steps, N = {args.num_scales}, "
            f"{args.distance} distance, {args.weighting} weighting), {student.step} steps of batch "
            f"{args.batch_size} in {t_student / 60:.1f} CPU-minutes"
        )
        sm = student.model.eval()
        t0 = time.perf_counter()
        for n in (1, 2, 4):
            add("consistency", f"consistency, {n} step(s)", sm, "consistency", n, "edm", False)
        t_eval += time.perf_counter() - t0
    if args.method in ("progressive", "both"):
        run = progressive(tm, data, args)
        done = ", ".join(f"{a} -> {a // 2}: {n} steps" for a, n, _ in run.rounds)
        students.append(
            f"progressive distillation with the labels passed through ({args.pd_start} DDIM steps on the "
            f"{args.pd_grid} grid halved {len(run.rounds)} times; {done}; batch {args.batch_size}) in "
            f"{run.seconds / 60:.1f} CPU-minutes"
        )
        t0 = time.perf_counter()
        add(
            "progressive", f"ddim on the distilled {args.pd_grid} grid", run.model, "ddim", 2, run.grid, False
        )
        t_eval += time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.method in ("progressive", "both"):
        for n in (args.pd_start,):
            add("teacher", f"ddim, {args.pd_grid}, {n} step(s)", tm, "ddim", n, args.pd_grid, False)
    for n in (1, 2, 4, 8, 20) if args.teacher_rows == "all" else (2, 20):
        add("teacher", f"dpm_solver_pp_2m, logsnr, {n} step(s)", tm, "dpm_solver_pp_2m", n, "logsnr", False)
    if args.teacher_rows == "all":
        add(
            "teacher",
            "euler_maruyama, 100 steps + denoise (default)",
            tm,
            "euler_maruyama",
            100,
            "uniform",
            True,
        )
    t_eval += time.perf_counter() - t0
    load1 = os.getloadavg()

    command = " ".join(["PYTHONPATH=src python benchmarks/distill_digits.py", *sys.argv[1:]])
    size = "x".join(str(v) for v in data.shape[1:])
    lines = [
        f"# Distillation on the {size} digits (CPU)",
        "",
        f"Command: `{command}` (lr {args.lr:g}, EMA {args.ema_decay:g}, {args.samples} samples x "
        f"{args.seeds} seeds).",
        "",
        f"Teacher: `scoresde train` recipe on {args.data} (v prediction, VP, conditional, label "
        f"dropout 0.1), {teacher.step} steps in {t_teacher / 60:.1f} CPU-minutes. Student(s): "
        + "; ".join(students)
        + f" (one thread each; torch {torch.__version__}, {platform.machine()}).",
        "",
        f"Reference classifier: held-out accuracy {real['accuracy']:.3f}; Frechet floor (training split "
        f"vs held-out) {real['frechet_floor']:.2f}. Cells: mean ± standard deviation over {args.seeds} "
        "sample sets.",
        "",
        "| model | sampler | NFE | class accuracy | Frechet distance |",
        "|---|---|---|---|---|",
    ]
    for who, how, r in rows:
        lines.append(
            f"| {who} | {how} | {r['nfe']} | {r['acc']:.3f} ± {r['acc_sd']:.3f} "
            f"| {r['fd']:.2f} ± {r['fd_sd']:.2f} |"
        )
    lines += [
        "",
        f"Machine: a shared 2-core x86_64 box (other jobs ran beside this one; load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end); the budgets are process CPU time, so "
        f"the step counts do not depend on the load, the wall time does. Scoring took {t_eval:.0f} s of "
        "wall time.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

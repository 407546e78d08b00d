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

Usage (the measurement; a smoke test with ``--teacher-minutes 0.2 --distill-minutes 0.2``)::

    PYTHONPATH=src python benchmarks/distill_digits.py --teacher-minutes 8 --distill-minutes 12
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import scoresde as ss
from scoresde.distill.run import DistillConfig, Distiller
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.models.clipping import ClipDenoised
from scoresde.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def train_teacher(work: Path, minutes: float, seed: int) -> tuple[Trainer, float]:
    cfg = TrainConfig(
        data="digits",
        conditional=True,
        label_dropout=0.1,
        steps=10**9,
        out=str(work),
        name="teacher",
        progress=False,
        seed=seed,
    )
    return train_minutes(cfg, minutes)


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
        seed=args.seed,
        out=str(work),
        name="student",
    )
    d = Distiller(cfg)
    t0, budget = time.process_time(), 60.0 * args.distill_minutes
    while time.process_time() - t0 < budget:
        d.train_step()
    return d, time.process_time() - t0


def score(model, method: str, steps: int, grid: str, denoise: bool, args, clf, data) -> dict[str, float]:
    """Accuracy and Frechet distance over ``args.seeds`` sample sets: means and standard deviations."""
    clipped = ClipDenoised(model, mode="clip")
    y = torch.arange(args.samples) % 10
    acc, fd, nfe = [], [], 0
    for k in range(args.seeds):
        out = ss.sample(
            clipped,
            shape=(args.samples, 1, 8, 8),
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
    p.add_argument("--teacher-minutes", type=float, default=8.0)
    p.add_argument("--distill-minutes", type=float, default=12.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--num-scales", type=int, default=18)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--distance", default="l2")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_distill_digits.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="distill_digits_"))
    teacher, t_teacher = train_teacher(work, args.teacher_minutes, args.seed)
    data = teacher.data  # the teacher's split: the classifier and the student see its training part only
    clf = reference_classifier(data.train, data.train_labels, seed=args.seed, cache_dir=work / "cache")
    real = classifier_report(clf, data.test, data.test, data.test_labels, floor_images=data.train)
    print(f"reference classifier held-out accuracy {real['accuracy']:.3f}, floor {real['frechet_floor']:.2f}")
    print(f"teacher: {teacher.step} steps in {t_teacher:.0f} CPU-s", flush=True)
    student, t_student = distil(work, args)
    print(f"student: {student.step} steps in {t_student:.0f} CPU-s", flush=True)
    tm, sm = teacher.ema.module.eval(), student.model.eval()

    rows: list[tuple[str, str, dict[str, float]]] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for n in (1, 2, 4):
            rows.append(
                (
                    "student",
                    f"consistency, {n} step(s)",
                    score(sm, "consistency", n, "edm", False, args, clf, data),
                )
            )
            print(rows[-1], flush=True)
        for n in (1, 2, 4, 8, 20):
            rows.append(
                (
                    "teacher",
                    f"dpm_solver_pp_2m, logsnr, {n} step(s)",
                    score(tm, "dpm_solver_pp_2m", n, "logsnr", False, args, clf, data),
                )
            )
            print(rows[-1], flush=True)
        rows.append(
            (
                "teacher",
                "euler_maruyama, 100 steps + denoise (default)",
                score(tm, "euler_maruyama", 100, "uniform", True, args, clf, data),
            )
        )
        print(rows[-1], flush=True)
    t_eval = time.perf_counter() - t0
    load1 = os.getloadavg()

    lines = [
        "# Consistency distillation on the 8x8 digits (CPU)",
        "",
        "Command: `PYTHONPATH=src python benchmarks/distill_digits.py "
        f"--teacher-minutes {args.teacher_minutes:g} --distill-minutes {args.distill_minutes:g}`"
        f" (batch {args.batch_size}, lr {args.lr:g}, N = {args.num_scales} scales, EMA {args.ema_decay:g}, "
        f"{args.distance} distance, {args.samples} samples x {args.seeds} seeds).",
        "",
        f"Teacher: `scoresde train` recipe on the bundled digits (v prediction, VP, conditional, label "
        f"dropout 0.1), {teacher.step} steps in {t_teacher / 60:.1f} CPU-minutes. Student: consistency "
        f"distillation of its EMA weights (Heun teacher steps), {student.step} steps of batch "
        f"{args.batch_size} in {t_student / 60:.1f} CPU-minutes (one thread each; torch {torch.__version__}, "
        f"{platform.machine()}).",
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

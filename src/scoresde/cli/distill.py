"""Distil a trained checkpoint into a 1-4 step generator: a consistency model (``--method
consistency``, the default; Song et al. 2023) or a few-step DDIM student (``--method progressive``;
Salimans & Ho 2022).

Consistency distillation: the teacher is a checkpoint of ``scoresde train`` (``--checkpoint
RUN``); the student starts as a copy of the teacher's denoiser inside the consistency parameterisation
(:class:`scoresde.distill.ConsistencyModel`) and learns to jump along the teacher's
probability-flow ODE, whose steps a fixed-step ODE solver of the library takes (``--solver``, Heun
by default).  The run goes to ``--out``, else ``runs/<--name>``, else ``runs/distill-<timestamp>``:
``checkpoints/`` (safetensors, every ``--save-every`` steps and at the end, ``last.safetensors``),
``metrics.jsonl`` and ``config.json``.  ``--resume`` (a run folder or checkpoint; bare: the run
folder of ``--name`` / ``--out``) continues a run exactly to ``--steps``; ``--overwrite`` replaces
an earlier run in the folder.  Sample the student with ``scoresde sample --checkpoint RUN
--method consistency --steps 1..4 --no-denoise``.

Progressive distillation: the teacher's ``--teacher-steps`` DDIM steps on the ``--grid`` grid
(log-SNR) are halved ``--rounds`` times (default 3 rounds of 16 -> 8 -> 4 -> 2 steps), ``--steps``
optimiser steps per round; each round's student starts as its teacher, the round's EMA student
becomes the next teacher; the learning rate decays linearly to 0 in each round and the loss is
weighted by ``max(SNR, 1)`` (the paper's defaults); a class-conditional teacher gets each image's
label.  A resumed run continues bit for bit, also mid-round, and more ``--rounds`` continue the
halving.  ``scoresde sample --checkpoint RUN`` samples the student with DDIM on exactly its
distilled grid (``--method ddim --steps N``, N its step count; anything else is refused).

``--minutes M`` is a wall-clock budget, as ``scoresde train``'s: the run stops at whichever of
``--steps`` or M minutes comes first (saved), and a decaying ``--schedule`` decays over the
budget's spent fraction when that ends first.  Consistency: M minutes of this call (a resume gets M
more).  Progressive: M minutes for the whole run, a resume included, split equally over the rounds
still to run (time a round leaves by ending at ``--steps`` goes to the later ones); each round ends
at whichever of ``--steps`` or its share comes first, its learning rate decaying over the share,
takes at least one step (its student is valid for its grid) and is saved at its end; the next
round starts from its EMA student.  The checkpoints record the round's first step and the seconds
spent, so ``--resume`` continues the right round with the rest of its share (raise ``--minutes`` to
give a resumed run, e.g. one with more ``--rounds``, more time); since time places the stops, a
budgeted run does not resume bit for bit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.cli.names import (
    CONSISTENCY_DISTANCES,
    CONSISTENCY_WEIGHTINGS,
    DISTILL_METHODS,
    GRIDS,
    LR_SCHEDULES,
    PROGRESSIVE_WEIGHTINGS,
)
from scoresde.settings import Option

# The CLI's keys of the DistillConfig fields that are named differently there.
_RENAMED = {"checkpoint": "teacher", "raw": "raw_teacher"}
_SKIP = ("out", "name", "overwrite", "resume", "device", "threads", "progress")


def _run_folder(cfg: dict[str, Any]) -> Path:
    """``--out``, else ``runs/<--name>``, else the run folder of ``--resume PATH``, else
    ``runs/distill-<timestamp>``."""
    from scoresde.cli.config import out_path

    path, named = out_path(cfg, "distill")
    resume = cfg.get("resume") or ""
    if not named and resume and resume != "auto":
        from scoresde.io.run_folder import RunFolder

        return RunFolder.of_checkpoint(RunFolder.resolve(resume)).root
    return path


def _resume_path(cfg: dict[str, Any]) -> Path | None:
    from scoresde.io.run_folder import RunFolder

    resume = cfg.get("resume") or ""
    if not resume:
        return None
    if resume == "auto":
        if not (cfg.get("out") or cfg.get("name")):
            from scoresde.settings import ConfigError

            raise ConfigError(
                "a bare --resume continues the run of --name or --out; give one, or --resume RUN"
            )
        return RunFolder(_run_folder(cfg)).last
    return RunFolder.resolve(resume)


def _resumed_settings(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The settings of the checkpoint being resumed: the layer under everything given."""
    path = _resume_path(cfg)
    if path is None:
        return None
    from scoresde.io.checkpoint import read_checkpoint_metadata, resume_checkpoint

    path, _ = resume_checkpoint(path)
    saved = read_checkpoint_metadata(path).get("train", {})
    keys = {o.key for o in COMMAND.all_options} - set(_SKIP)
    inverse = {v: k for k, v in _RENAMED.items()}
    return {inverse.get(k, k): v for k, v in saved.items() if inverse.get(k, k) in keys}


def distill_config(cfg: dict[str, Any]):  # -> DistillConfig (imports torch)
    """The :class:`~scoresde.distill.run.DistillConfig` of resolved settings."""
    import dataclasses

    from scoresde.distill.run import DistillConfig

    folder = _run_folder(cfg)
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    values = {_RENAMED.get(k, k): v for k, v in cfg.items() if _RENAMED.get(k, k) in names and k not in _SKIP}
    return DistillConfig(
        **values,
        out=str(folder.parent),
        name=folder.name,
        overwrite=cfg["overwrite"],
        progress=cfg["progress"],
    )


def run(ctx: Context) -> int:
    from scoresde.distill.make import make_distiller

    config = distill_config(ctx.cfg)
    resume = _resume_path(ctx.cfg)
    distiller = make_distiller(config, ctx.device)
    if resume is not None:
        step = distiller.resume(resume)
        print(f"resumed {resume} at step {step}")
    n_params = sum(p.numel() for p in distiller.student.parameters())
    data = f"{tuple(distiller.x_data.shape)} {config.data} data"
    if config.method == "progressive":
        last = config.teacher_steps // 2**config.rounds
        what = (
            f"a {last}-step DDIM student on {data}: {config.teacher_steps} teacher DDIM steps on the "
            f"{config.grid} grid halved {config.rounds} time(s), {config.steps} steps per round"
        )
        if config.minutes is not None:
            what += f" or {config.minutes:g} minutes in all, split over the rounds"
        how = "(DDIM on the distilled grid)"
    else:
        what = (
            f"a consistency model on {data}: {config.steps} steps, {config.num_scales} scales, "
            f"{config.solver} teacher steps"
        )
        if config.minutes is not None:
            what += f" or {config.minutes:g} minutes"
        how = "--method consistency --steps 2 --no-denoise"
    print(
        f"distilling {distiller.teacher_info.path} ({n_params:,} parameters) into {what}, "
        f"batch {config.batch_size}, device {ctx.device}",
        flush=True,
    )
    result = distiller.fit()
    loss = f"; last loss {result.losses[-1]:.4g}" if result.losses else ""
    print(f"step {result.step}: {result.seconds:.1f}s of distillation{loss}")
    print(f"checkpoint {result.checkpoint}")
    print(
        f"outputs in {result.run_dir.resolve()}; sample with: "
        f"scoresde sample --checkpoint {result.run_dir} {how}"
    )
    sys.stdout.flush()
    return 0


COMMAND = Command(
    name="distill",
    help="distil a checkpoint into a consistency model or a progressive DDIM student (1-4 steps); resumable",
    doc=__doc__,
    options=[
        Option(
            "checkpoint",
            "",
            "the teacher: a checkpoint or run folder of `scoresde train`",
            type=str,
            metavar="PATH",
        ),
        Option(
            "method",
            "consistency",
            "consistency (Song et al. 2023) or progressive (Salimans & Ho 2022: halve DDIM steps)",
            choices=DISTILL_METHODS,
        ),
        Option("raw", False, "use the teacher's raw weights instead of its EMA weights"),
        Option(
            "data",
            "digits",
            "the data the student sees, in the teacher's space (its training split): digits, a .npy/.npz "
            "file, an image folder, a toy set name",
        ),
        Option(
            "steps",
            2000,
            "optimiser steps (consistency: the total, a resumed run continues to it; progressive: per round)",
            minimum=1,
        ),
        Option(
            "minutes",
            None,
            "wall-clock budget in minutes: stop at whichever of --steps or --minutes comes first, a "
            "decaying --schedule decaying over the budget then (consistency: this call's, as train's; "
            "progressive: the whole run's, split equally over the rounds still to run, each ending at "
            "--steps or its share). A budgeted run does not resume bit for bit",
            type=float,
            nullable=True,
        ),
        Option("batch_size", 64, "images per step", minimum=1),
        Option("lr", 1e-4, "AdamW learning rate", minimum=0.0),
        Option("warmup", 0, "learning-rate warm-up steps", minimum=0),
        Option(
            "schedule",
            None,
            "learning-rate schedule after the warm-up (default: consistency constant, progressive "
            "linear within each round)",
            type=str,
            nullable=True,
            choices=LR_SCHEDULES,
        ),
        Option(
            "final_lr",
            None,
            "last rate of the cosine / linear decays, as a fraction of --lr (default: consistency 0.1, "
            "progressive 0)",
            type=float,
            nullable=True,
            minimum=0.0,
        ),
        Option("weight_decay", 0.0, "AdamW weight decay", minimum=0.0),
        Option("grad_clip", 1.0, "gradient-norm clip", minimum=0.0, nullable=True),
        Option("num_scales", 18, "N: steps of the EDM grid whose adjacent times are paired", minimum=1),
        Option(
            "solver",
            "heun",
            "the teacher's ODE step: a fixed-step deterministic sampler (heun, euler, ddim, ...)",
        ),
        Option("distance", "l2", "consistency distance", choices=CONSISTENCY_DISTANCES),
        Option(
            "weighting",
            None,
            "loss weighting: consistency uniform (default) or inverse_step (1 / (sigma_n - sigma_n+1)); "
            "progressive truncated_snr (default: max(SNR, 1)) or uniform",
            type=str,
            nullable=True,
            choices=tuple(dict.fromkeys((*CONSISTENCY_WEIGHTINGS, *PROGRESSIVE_WEIGHTINGS))),
        ),
        Option("groups", 4, "groups of the batch, each with its own grid index n", minimum=1),
        Option("rounds", 3, "progressive: halvings of the teacher's DDIM steps", minimum=1),
        Option(
            "teacher_steps",
            None,
            "progressive: the first teacher's DDIM steps, divisible by 2**rounds (default 2 * 2**rounds: "
            "the last student takes 2)",
            type=int,
            nullable=True,
            minimum=2,
        ),
        Option("grid", "logsnr", "progressive: the first teacher's DDIM grid", choices=GRIDS),
        Option(
            "ema_decay", 0.999, "decay of the student's weight average (the weights sampled)", minimum=0.0
        ),
        Option("save_every", 500, "checkpoint interval (steps)", minimum=1),
        Option("log_every", 50, "metrics.jsonl interval (steps)", minimum=1),
        Option(
            "resume",
            "",
            "continue from a checkpoint file or run folder (bare --resume: the run folder of --name / --out)",
            type=str,
            const="auto",
            metavar="PATH",
        ),
        *runtime_options(),
    ],
    body=run,
    base=_resumed_settings,
)
add_arguments = COMMAND.add_arguments

"""Fit a bespoke few-step solver for a trained model (Shaul et al. 2024, "Bespoke Non-Stationary
Solvers for Fast Sampling of Diffusion and Flow Models"), for ``scoresde sample --solver``.

A bespoke non-stationary solver takes ``--steps`` network evaluations, each step a linear
combination of the start ``x_T`` and of all the data predictions so far, with its own times
(:class:`scoresde.sampling.bespoke.BespokeSolver`).  It starts as the ``--base`` solver on the
``--grid`` grid (``unipc`` on the log-SNR grid by default: every deterministic fixed-step solver
with one network evaluation per step is one such solver) and its coefficients and times are
trained by Adam (``--iterations``, ``--lr``) to minimise the endpoint error against a tight
dopri5 solve of the model's probability-flow ODE from ``--pilot`` prior draws
(:func:`scoresde.sampling.bespoke_fit.fit_bespoke`); the iterate of least error is kept, so it
is never worse than its start on those draws.  With ``--holdout N`` the iterate of least error
on ``N`` separate validation draws is kept instead (a small pilot overfits: choosing on the
training error rewards it), ``--batch`` trains on random minibatches of the pilot (more draws at
the same cost per step) and ``--loss draw_rms`` weighs each draw by its own RMS error.  Every
draw comes from ``--seed`` (the prior draws, and for a class-conditional model the training
labels, uniform over the classes, or all ``--class``; the validation draws and labels from
``--seed + 1``).  The model is the one ``scoresde sample`` runs (``--checkpoint`` or ``--model``,
with ``--guidance`` and ``--clip-denoised``, default auto as ``sample``'s), so fit with the
settings you will sample with.

Writes ``solver.json`` (the solver; ``scoresde sample --solver PATH`` and ``scoresde eval
--solver PATH`` run it, as does ``BespokeSolver.from_json`` in Python) and ``fit.json`` (the
settings, the model, the training error at the start and at the end and along the way, the
network evaluations and the seconds spent) into ``--out``, else ``runs/<--name>``, else
``<run>/solver`` beside the checkpoint's run folder.

Example:
    scoresde fit-solver --checkpoint runs/digits --steps 10 --pilot 64 --iterations 100
    scoresde sample --checkpoint runs/digits --solver runs/digits/solver/solver.json
"""

from __future__ import annotations

from typing import Any

from scoresde.cli.command import Command, Context, checkpoint_options, clip_options, runtime_options
from scoresde.cli.names import ALIASES, GRIDS, SAMPLERS_REQUIRED
from scoresde.settings import Option

_BASES = "ddim, euler, dpm_solver_pp_2m, dpm_solver_pp_3m, unipc, unipc_bh1, deis, ipndm"


def _source_flag(cfg: dict[str, Any]) -> str:
    """The model flags of ``scoresde sample`` that load the same model."""
    if cfg.get("model"):
        flags = f"--model {cfg['model']}"
        flags += f" --model-config {cfg['model_config']}" if cfg.get("model_config") else ""
        flags += f" --weights {cfg['weights']}" if cfg.get("weights", "ema") != "ema" else ""
    else:
        flags = f"--checkpoint {cfg['checkpoint']}"
    return flags + (" --raw" if cfg.get("raw") else "")


def run(ctx: Context) -> int:
    # The heavy imports (torch) happen here, when the command runs, not for --help.
    import json

    import torch

    from scoresde.cli._bespoke import FITTED_FOR, SOLVER_FILE
    from scoresde.cli._io import check_class, default_out, load_model
    from scoresde.cli._json import write_json
    from scoresde.guidance.select import guided_model
    from scoresde.models.consistency import ConsistencyModel
    from scoresde.sampling.bespoke_fit import fit_bespoke
    from scoresde.sampling.clip import clip_denoised

    cfg, device = ctx.cfg, ctx.device
    loaded = load_model(ctx, digest=True)
    if isinstance(loaded.model, ConsistencyModel):
        raise ValueError(
            f"{loaded.path} is a consistency model (a student of `scoresde distill`): it has no "
            "probability-flow ODE to fit a solver to; give the checkpoint it was distilled from"
        )
    if loaded.distilled_grid is not None:
        raise ValueError(
            f"{loaded.path} is a progressive-distillation student, valid only with DDIM on its own "
            f"{loaded.distilled_grid.steps}-step grid; fit the solver to its teacher instead"
        )
    info = loaded.info
    # The model `scoresde sample` runs with the same --guidance and --clip-denoised.
    model, classes = guided_model(loaded.model, info, cfg["guidance"], device=device)
    model = clip_denoised(model, cfg["clip_denoised"], info.data_range, info.image_shape is not None)
    label = cfg["class"]
    check_class(label, classes, "a class-conditional model")

    # Every draw from --seed: the training labels first, then the prior draws (fit_bespoke).
    generator = torch.Generator().manual_seed(cfg["seed"])
    y = None
    if classes:
        if label is None:
            y = torch.randint(0, classes, (cfg["pilot"],), generator=generator)
        else:
            y = torch.full((cfg["pilot"],), label, dtype=torch.long)
    # The validation draws (--holdout) and their labels come from --seed + 1, so the training
    # draws are the same with or without them.
    holdout = cfg["holdout"]
    val_generator = torch.Generator().manual_seed(cfg["seed"] + 1)
    y_val = None
    if classes and holdout > 0:
        if label is None:
            y_val = torch.randint(0, classes, (holdout,), generator=val_generator)
        else:
            y_val = torch.full((holdout,), label, dtype=torch.long)
    fit = fit_bespoke(
        model,
        model.sde,
        cfg["steps"],
        loaded.shape,
        base=cfg["base"],
        grid=cfg["grid"],
        pilot=cfg["pilot"],
        iterations=cfg["iterations"],
        lr=cfg["lr"],
        learn_times=cfg["learn_times"],
        y=y,
        generator=generator,
        reference_tol=cfg["reference_tol"],
        device=device,
        holdout=holdout,
        holdout_y=y_val,
        holdout_generator=val_generator if holdout > 0 else None,
        batch=cfg["batch"],
        loss=cfg["loss"],
    )
    solver = fit.solver
    out = ctx.out_dir(default_out(loaded.path, "solver"))
    solver_path = out / SOLVER_FILE
    # What the solver was fitted to, so that `sample --solver` can say when it runs on another.
    fitted_for = {
        "weights_sha256": loaded.digest,
        "model": str(loaded.path),
        "step": loaded.step,
        "guidance": cfg["guidance"],
        "clip_denoised": cfg["clip_denoised"],
        "class": label,
    }
    solver_path.write_text(json.dumps({**solver.to_json(), FITTED_FOR: fitted_for}, indent=2) + "\n")
    sample_with = f"scoresde sample {_source_flag(cfg)} --solver {solver_path}"
    if cfg["guidance"] is not None:
        sample_with += f" --guidance {cfg['guidance']:g}"
    if cfg["clip_denoised"] != "auto":
        sample_with += f" --clip-denoised {cfg['clip_denoised']}"
    report = {
        "model": str(loaded.path),
        "step": loaded.step,
        "steps": solver.steps,
        "base": solver.base,
        "grid": solver.grid,
        "pilot": cfg["pilot"],
        "iterations": cfg["iterations"],
        "lr": cfg["lr"],
        "learn_times": cfg["learn_times"],
        "reference_tol": cfg["reference_tol"],
        "holdout": holdout,
        "batch": cfg["batch"],
        "loss": cfg["loss"],
        "seed": cfg["seed"],
        "clip_denoised": cfg["clip_denoised"],
        "guidance": cfg["guidance"],
        "labels": None if y is None else ("uniform" if label is None else label),
        "pilot_error_start": fit.pilot_error_start,
        "pilot_error": fit.pilot_error,
        "error_ratio": fit.pilot_error / fit.pilot_error_start if fit.pilot_error_start > 0 else None,
        "validation_error_start": fit.val_error_start if holdout > 0 else None,
        "validation_error": fit.val_error if holdout > 0 else None,
        "best_iteration": fit.best_iteration,
        "pilot_nfe": fit.pilot_nfe,
        "seconds": round(fit.seconds, 3),
        "device": str(device),
        "times": [float(t) for t in solver.times.tolist()],
        "base_times": [float(t) for t in fit.start.times.tolist()],
        "history": fit.history,
        "solver": str(solver_path),
        "sample_with": sample_with,
    }
    write_json(out / "fit.json", report)
    print(
        f"fitted a {solver.steps}-step bespoke solver for {loaded.path} (step {loaded.step}) from "
        f"{solver.base} on the {solver.grid} grid: RMS endpoint error {fit.pilot_error:.4g} vs "
        f"{fit.pilot_error_start:.4g} at the start on {cfg['pilot']} draws, {cfg['iterations']} iterations, "
        f"{fit.pilot_nfe} batched network evaluations, {fit.seconds:.1f}s"
    )
    if holdout > 0:
        print(
            f"validation RMS endpoint error {fit.val_error:.4g} vs {fit.val_error_start:.4g} at the start "
            f"on {holdout} held-out draws (iterate {fit.best_iteration} kept)"
        )
    print(f"wrote {solver_path}")
    print(f"wrote {out / 'fit.json'}")
    print(f"sample with: {sample_with}")
    return 0


COMMAND = Command(
    name="fit-solver",
    help="fit a bespoke few-step solver (Shaul et al. 2024) to a checkpoint, for `sample --solver`",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        Option("steps", 10, "steps of the solver (its network evaluations per sample)", minimum=1),
        Option(
            "base",
            "unipc",
            "the solver it starts at: a deterministic sampler with one network evaluation per step at "
            f"its grid's times ({_BASES})",
            choices=tuple(k for k, required in SAMPLERS_REQUIRED.items() if not required)
            + tuple(a for a, k in ALIASES.items() if not SAMPLERS_REQUIRED[k]),
            what="sampler",
            metavar="METHOD",
        ),
        Option("grid", "logsnr", "the base's time grid (the start of the fitted times)", choices=GRIDS),
        Option(
            "pilot",
            256,
            "training draws of the prior (each Adam step solves all of them, or --batch of them)",
            minimum=1,
        ),
        Option("iterations", 200, "Adam steps (0: the base solver itself)", minimum=0),
        Option(
            "holdout",
            0,
            "validation draws of the prior (from --seed + 1, with their own reference solve): keep the "
            "iterate of least validation error instead of least training error (0: none)",
            minimum=0,
        ),
        Option(
            "batch",
            None,
            "training draws per Adam step, chosen at random from the --pilot draws (default: all)",
            type=int,
            minimum=1,
        ),
        Option(
            "loss",
            "mse",
            "training objective: mse (mean squared endpoint error) or draw_rms (mean of each draw's RMS "
            "error: a draw with a large error weighs less)",
            choices=("mse", "draw_rms"),
        ),
        Option(
            "lr", 5e-3, "Adam's learning rate (a relative change of the scaled coefficients)", minimum=0.0
        ),
        Option("learn_times", True, "train the times too (else the coefficients only)"),
        Option(
            "reference_tol",
            1e-6,
            "rtol = atol of the dopri5 solve that gives the training targets",
            minimum=0.0,
        ),
        Option(
            "class",
            None,
            "class-conditional models: train on this label (default: labels drawn uniformly from --seed)",
            type=int,
        ),
        Option(
            "guidance",
            None,
            "fit for classifier-free guidance with this weight w (sample with the same --guidance; "
            "a conditional model trained with label dropout)",
            type=float,
        ),
        *clip_options("auto"),
        *runtime_options(seed_help="seed of the training draws (and labels)"),
    ],
    body=run,
)

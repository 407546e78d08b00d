"""Draw samples from a trained checkpoint and write a PNG grid and an .npz array.

Plain, class-conditional (``--class``), classifier-free guided (``--guidance W``: Ho &
Salimans 2022, needs a conditional model trained with label dropout) or classifier-guided
(``--classifier PATH --classifier-scale S``: Song et al. 2021, Sec. 5, with a noise-conditional
classifier from ``scoresde train-classifier``) samples.  ``--solver PATH`` samples with a bespoke
solver fitted for the model by ``scoresde fit-solver`` (Shaul et al. 2024: ``--method bespoke``,
the solver's steps and times).

The .npz holds ``x`` (float32 samples in the model's space, ``(N, C, H, W)`` for images,
``[-1, 1]`` data range), ``images`` (uint8 ``(N, H, W, C)``) and ``y`` (labels, for
class-conditional samples); ``--format png`` writes a folder of numbered PNGs instead (for
external FID tools).  Sample ``i`` depends on ``--seed`` and ``i`` only, whatever
``--batch-size``; under ``torchrun --nproc_per_node=N -m scoresde sample ...`` each process
draws its block of the indices and rank 0 writes the one result, identical to one process
(give the number as ``-n N`` there: torchrun reads ``--num`` as its own
``--numa-binding``).  Outputs go to ``--out``, else ``runs/<--name>``, else ``<run>/samples``
beside the checkpoint's run folder.
"""

from __future__ import annotations

from scoresde._core.defaults import DEFAULT_SAMPLING
from scoresde.cli.command import (
    Command,
    Context,
    checkpoint_options,
    clip_options,
    runtime_options,
    sampler_options,
    sampling_defaults,
)
from scoresde.cli.names import SAMPLE_FORMATS
from scoresde.settings import Option


def run(ctx: Context) -> int:
    # The heavy imports (torch) happen here, when the command runs, not for --help.
    from scoresde.cli._bespoke import describe, sampling_plan
    from scoresde.cli._io import check_class, default_out, load_model
    from scoresde.data.heldout import cycle_labels
    from scoresde.guidance.select import guided_model
    from scoresde.io.samples import write_samples
    from scoresde.parallel import init_distributed
    from scoresde.parallel.sharding import sample_sharded
    from scoresde.sampling.api import sample
    from scoresde.sampling.clip import clip_denoised
    from scoresde.sampling.grid_opt import GridOptimizer

    cfg, device = ctx.cfg, ctx.device
    loaded = load_model(ctx, digest=bool(cfg.get("solver")))
    model, classes = guided_model(
        loaded.model, loaded.info, cfg["guidance"], cfg["classifier"], cfg["classifier_scale"], device
    )
    info = loaded.info
    model = clip_denoised(model, cfg["clip_denoised"], info.data_range, info.image_shape is not None)
    label = cfg["class"]
    check_class(label, classes, "a class-conditional model or a classifier")
    labels = None if not classes else cycle_labels(cfg["num"], classes, label)
    shape = loaded.shape
    # A progressive student's own DDIM times, a name, or for --grid optimized a GridOptimizer;
    # with --solver, the bespoke solver (checked against the model) and the run's ends.
    grid, options = sampling_plan(cfg, loaded, model.sde, device)

    # Sample i depends on (seed, i) only: any --batch-size and any number of torchrun processes
    # give the same samples (each rank draws its block of the indices, rank 0 gathers them).
    drawn = sample_sharded(
        sample,
        model,
        shape,
        cfg["num"],
        cfg["seed"],
        init_distributed(str(device)),
        batch_size=cfg["batch_size"],
        labels=labels,
        progress=cfg["progress"],
        method=cfg["method"],
        steps=cfg["steps"],
        grid=grid,
        denoise=cfg["denoise"],
        device=device,
        **options,
    )
    x, nfe = drawn.x, drawn.nfe
    if x is None:  # not rank 0: rank 0 writes the result
        return 0
    out = ctx.out_dir(default_out(loaded.path, "samples"))
    tag = f"{cfg['method']}_{cfg['steps']}_seed{cfg['seed']}"
    tag += f"_class{label}" if label is not None else ""
    tag += f"_cfg{cfg['guidance']:g}" if cfg["guidance"] is not None else ""
    tag += f"_clf{cfg['classifier_scale']:g}" if cfg["classifier"] else ""
    nrow = classes if labels is not None and label is None and cfg["num"] >= classes else None
    written = write_samples(x, loaded.info, out, tag, labels, cfg["format"], nrow)
    print(
        f"sampled {cfg['num']} from {loaded.path} (step {loaded.step}) with {cfg['method']}, "
        f"{cfg['steps']} steps ({nfe} network evaluations per sample)"
    )
    if "solver" in options:
        print(describe(options["solver"], cfg["solver"]))
    optimized = grid.last if isinstance(grid, GridOptimizer) else None
    if optimized is not None:
        print(
            f"optimized grid (from {optimized.start}, pilot {optimized.pilot}, seed {optimized.seed}): "
            f"pilot RMS error {optimized.pilot_error:.4g} vs {optimized.pilot_error_start:.4g} "
            f"({optimized.pilot_nfe} pilot network evaluations)"
        )
    for path in written:
        print(f"wrote {path}")
    return 0


COMMAND = Command(
    name="sample",
    help="sample a trained checkpoint (optionally guided): PNG grid and .npz array or PNG folder",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        *sampler_options(
            method=DEFAULT_SAMPLING.method,
            steps=DEFAULT_SAMPLING.steps,
            grid=DEFAULT_SAMPLING.grid,
            optimized=True,
            solver=True,
        ),
        *clip_options("auto"),
        Option("num", 64, "number of samples", minimum=1, short="-n"),
        Option("batch_size", 256, "samples per sampler batch", minimum=1),
        Option(
            "format",
            "npz",
            "npz (one array file) or png (a folder of numbered PNGs 000000.png, ... for external FID tools)",
            choices=SAMPLE_FORMATS,
        ),
        Option("class", None, "class label (default: cycle over the classes)", type=int),
        Option(
            "guidance",
            None,
            "classifier-free guidance weight w (Ho & Salimans 2022; 0 = conditional)",
            type=float,
        ),
        Option(
            "classifier",
            "",
            "noise-conditional classifier from `scoresde train-classifier` (file or folder)",
            type=str,
        ),
        Option("classifier_scale", 1.0, "classifier-guidance scale (1 = Bayes' rule)", minimum=0.0),
        *runtime_options(seed_help="seed (each sample depends on it and its index only)"),
    ],
    body=run,
    base=sampling_defaults,
)

"""Export a checkpoint as a diffusers pipeline folder (``DDIMPipeline.from_pretrained`` loads it).

Writes ``unet/`` (the ``UNet2DModel``, safetensors), ``scheduler/`` (a ``DDIMScheduler`` with the
model's noise table and prediction type) and ``model_index.json``, plus ``scoresde_export.json``
(where it came from), to ``--out`` (default ``<run>/diffusers``).  The EMA weights are exported
unless ``--raw``.  Only models whose network is a ``UNet2DModel`` map exactly (``scoresde train
--net diffusers-unet --sigma-data 1`` on a VP SDE, or a model loaded from diffusers); anything
else is refused with the reason (:mod:`scoresde.interop.export_diffusers`).

Example::

    scoresde train --net diffusers-unet --sigma-data 1 --data digits --name du
    scoresde export --checkpoint runs/du --out runs/du-diffusers
"""

from __future__ import annotations

from scoresde.cli._io import load_model
from scoresde.cli.command import Command, Context, checkpoint_options
from scoresde.settings import Option


def run(ctx: Context) -> int:
    from scoresde.cli._io import default_out
    from scoresde.interop.export_diffusers import export_diffusers

    loaded = load_model(ctx)
    out = ctx.out_dir(default_out(loaded.path, "diffusers"), save=False)
    # The backbone has applied the outputs rule to the folder (an earlier export is refused, or
    # removed with --overwrite) and claimed it, so its own record may already stand there.
    result = export_diffusers(loaded.model, out, overwrite=True, source=str(loaded.path))
    print(
        f"exported {loaded.path} (step {loaded.step}) as a diffusers DDIMPipeline: "
        f"{result.num_train_timesteps} timesteps, prediction_type {result.prediction_type}, "
        f"alphas_cumprod within {result.table_error:.2g} (relative) of the model's table"
    )
    if result.num_classes is not None:
        print(
            f"the model is class-conditional ({result.num_classes} classes, label {result.num_classes} = "
            "no label): DDIMPipeline passes no labels; run the scheduler loop with "
            "unet(x, t, class_labels=y)"
        )
    print(f"wrote {result.path}")
    return 0


COMMAND = Command(
    name="export",
    help="export a checkpoint as a diffusers pipeline folder (UNet2DModel + DDIMScheduler)",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        Option("overwrite", False, "replace a non-empty output folder"),
    ],
    body=run,
)

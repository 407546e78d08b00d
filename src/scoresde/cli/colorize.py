"""Colorize grayscale images with a 3-channel score model (Song et al. 2021, App. I.3).

Takes ``--num`` held-out images of ``--data``, turns them gray (the mean over channels; a
1-channel data set is taken as gray already) and colours each ``--samples`` times by
projection conditioning (:func:`scoresde.guidance.colorize`): after every sampler step the
channel mean of ``x_t`` is replaced by a fresh draw of the noised gray image, so the result's
channel mean is exactly the gray input.  Needs a model of 3-channel images, e.g.
``scoresde train --data digits-color`` (digits tinted by random colours).  Writes
``colorize.png`` (rows: original, gray, then one row per sample), ``colorize.npz``
(``original``, ``gray``, ``samples (K, N, 3, H, W)``) and ``metrics.json``.  ``--smc`` samples
by twisted sequential Monte Carlo instead, with ``--particles K`` per image (Wu et al. 2023,
:func:`scoresde.guidance.smc_sample`; ``--smc-proposal mcgdiff``: the gradient-free MCGdiff
filter of Cardoso et al. 2023; ``--grid`` defaults to ``logsnr``; the effective sample sizes
go to ``metrics.json``), or ``--dps`` by diffusion posterior sampling (Chung et al. 2023, as in
``scoresde inpaint``);
``--clip-denoised`` keeps the predicted x0 in the data range.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from scoresde.cli._inverse import describe, inverse_options, sample_inverse
from scoresde.cli.command import (
    Command,
    Context,
    checkpoint_options,
    clip_options,
    runtime_options,
    sampler_options,
    smc_grid_default,
)
from scoresde.settings import Option

if TYPE_CHECKING:  # annotations only: the command imports its work lazily
    pass


def run(ctx: Context) -> int:
    import numpy as np

    from scoresde.cli._io import default_out, load_model
    from scoresde.data.heldout import held_out_images, model_image_size, model_labels
    from scoresde.data.model_range import from_model_range, to_model_range
    from scoresde.evaluation.restoration import colorization_errors, smc_diagnostics
    from scoresde.guidance.operators import Colorization
    from scoresde.sampling.clip import clip_denoised
    from scoresde.viz.pictures import save_rows

    cfg, device = ctx.cfg, ctx.device
    loaded = load_model(ctx)
    info = loaded.info
    model = clip_denoised(loaded.model, cfg["clip_denoised"], info.data_range, info.image_shape is not None)
    in_shape = info.item_shape
    if len(in_shape) != 3 or in_shape[0] != 3:
        raise ValueError(
            f"colorize needs a model of 3-channel images (C, H, W) = (3, H, W); this checkpoint's model "
            f"takes {in_shape}. Train one on colour data, e.g. `scoresde train --data digits-color`"
        )
    images, labels = held_out_images(cfg["data"], cfg["num"], cfg["seed"], model_image_size(info))
    if images.shape[1] not in (1, 3) or tuple(images.shape[2:]) != in_shape[1:]:
        raise ValueError(
            f"{cfg['data']} images have shape {tuple(images.shape[1:])}"
            f"; the model colours {in_shape[1:]} images"
        )
    gray = images.mean(dim=1, keepdim=True)
    y = model_labels(info, labels)
    k, n = cfg["samples"], cfg["num"]
    gray_in = to_model_range(gray.repeat(k, 1, 1, 1), info).to(device)
    yb = None if y is None else y.repeat(k).to(device)
    # The observation is the channel mean: y_obs = A x of A = Colorization((3, H, W)).
    op = Colorization(in_shape)
    mode, res = sample_inverse(ctx, model, op, gray_in, (gray_in.shape[0], *in_shape), yb)
    out_x = from_model_range(res.x.float().cpu().reshape(k, n, *in_shape), info)  # back to [-1, 1]
    metrics = {
        "mode": mode,
        "images": n,
        "samples_per_image": k,
        "nfe": res.nfe,
        "steps": cfg["steps"],
        "grid": cfg["grid"],
        **colorization_errors(out_x, images, gray),
    }
    if mode == "smc":
        metrics["smc"] = smc_diagnostics(res)
    method = (
        f"SMC, {cfg['particles']} particles, {cfg['smc_proposal']}" if mode == "smc" else describe(cfg, mode)
    )
    out = ctx.out_dir(default_out(loaded.path, "colorize"))
    png = save_rows([images, gray, *out_x], out / "colorize.png")
    np.savez(out / "colorize.npz", original=images.numpy(), gray=gray.numpy(), samples=out_x.numpy())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"colorized {n} held-out {cfg['data']} images x {k} "
        f"({method}, {cfg['steps']} steps, "
        f"{res.nfe} network evaluations); largest gray-value error {metrics['max_abs_gray_error']:.2g}"
    )
    print(f"wrote {png}, {out / 'colorize.npz'} and {out / 'metrics.json'}")
    return 0


COMMAND = Command(
    name="colorize",
    help="colorize held-out grayscale images with a 3-channel score model: PNG figure and .npz",
    doc=__doc__,
    options=[
        *checkpoint_options("a 3-channel .safetensors checkpoint or a run folder (required)"),
        Option(
            "data", "digits-color", "held-out images: digits-color, digits (gray), a .npz file or a folder"
        ),
        Option("num", 8, "number of held-out images", minimum=1, short="-n"),
        Option("samples", 3, "colorizations per image", minimum=1),
        *sampler_options(method="euler_maruyama", steps=200, grid="uniform"),
        *inverse_options(),
        *clip_options(),
        *runtime_options(seed_help="seed of the sampler noise; also the held-out split's"),
    ],
    body=run,
    base=smc_grid_default,
)

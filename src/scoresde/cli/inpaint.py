"""Inpaint held-out images with a trained score model (Song et al. 2021, App. I.2).

Takes ``--num`` held-out images of ``--data``, hides the region named by ``--mask`` and fills
it ``--samples`` times by projection conditioning (:func:`scoresde.guidance.inpaint`: after
every sampler step the known pixels are replaced by a fresh draw of their noised values), or
with ``--dps`` by diffusion posterior sampling as Chung et al. 2023 run it (Algorithm 1:
ancestral steps, each followed by a step of length ``--dps-zeta`` against the gradient of the
known pixels' residual through the denoiser; :func:`scoresde.guidance.dps_sample`; ``--method``
does not apply, and ``--steps 1000`` is the paper's setting), or with ``--smc`` by twisted
sequential Monte Carlo with ``--particles K`` per image (Wu et al. 2023;
:func:`scoresde.guidance.smc_sample`: asymptotically exact in ``K``, noise-free on the known
pixels; ``--smc-proposal mcgdiff``: the gradient-free MCGdiff filter of Cardoso et al. 2023;
``--method`` does not apply, ``--grid`` defaults to ``logsnr``; the effective sample sizes go to
``metrics.json``).  ``--clip-denoised`` keeps the predicted x0 in the data range.  Writes
``inpaint.png``
(rows: original, masked with the hidden part gray, then one row per sample), ``inpaint.npz``
(``original``, ``mask``, ``samples (K, N, C, H, W)``) and ``metrics.json`` (mean squared
error on the hidden pixels, of each sample and of the mean of the samples; the baseline fills
them with the mean training image).

Masks (true = known): ``center`` hides the central square of half the side, ``left`` /
``right`` / ``top`` / ``bottom`` hide that half, ``random`` hides each pixel with probability
``--mask-fraction``; ``FILE.npy`` is a 0/1 or boolean ``(H, W)`` or ``(C, H, W)`` array.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import torch

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
from scoresde.guidance.masks import MASKS, make_mask
from scoresde.settings import Option

if TYPE_CHECKING:  # annotations only: the command imports its work lazily
    pass


def run(ctx: Context) -> int:
    import numpy as np

    from scoresde.cli._io import default_out, load_model
    from scoresde.data.heldout import check_images_fit, held_out_images, model_image_size, model_labels
    from scoresde.data.images import load_dataset
    from scoresde.data.model_range import from_model_range, to_model_range
    from scoresde.evaluation.restoration import inpainting_errors, smc_diagnostics
    from scoresde.guidance.operators import Inpainting
    from scoresde.sampling.clip import clip_denoised
    from scoresde.viz.pictures import save_rows

    cfg, device = ctx.cfg, ctx.device
    loaded = load_model(ctx)
    info = loaded.info
    model = clip_denoised(loaded.model, cfg["clip_denoised"], info.data_range, info.image_shape is not None)
    images, labels = held_out_images(cfg["data"], cfg["num"], cfg["seed"], model_image_size(info))
    check_images_fit(images, info, cfg["data"])
    c, h, w = images.shape[1:]
    shape = (c, h, w)
    mask = make_mask(cfg["mask"], shape, cfg["mask_fraction"], cfg["seed"]).expand(shape)
    y = model_labels(info, labels)
    k, n = cfg["samples"], cfg["num"]
    in_shape = info.item_shape  # an MLP model sees the images flattened
    batch = to_model_range(images.repeat(k, 1, 1, 1), info).reshape(k * n, *in_shape).to(device)
    yb = None if y is None else y.repeat(k).to(device)
    # The posterior samplers see the known pixels as the observation y_obs = A x of A = Inpainting(m).
    op = Inpainting(mask.reshape(in_shape))
    mode, res = sample_inverse(ctx, model, op, op.forward(batch), tuple(batch.shape), yb)
    out_x = from_model_range(res.x.float().cpu().reshape(k, n, *shape), info)  # back to [-1, 1]
    if not bool(torch.isfinite(out_x).all()):
        raise ValueError(
            "the samples are not finite; check the checkpoint (NaN weights?) or use more --steps"
        )
    mean_image = load_dataset(cfg["data"], seed=cfg["seed"], image_size=model_image_size(info)).train.mean(0)
    errors = inpainting_errors(out_x, images, mask, mean_image)

    out = ctx.out_dir(default_out(loaded.path, "inpaint"))
    masked = torch.where(mask, images, torch.zeros_like(images))
    png = save_rows([images, masked, *out_x], out / "inpaint.png")
    np.savez(out / "inpaint.npz", original=images.numpy(), mask=mask.numpy(), samples=out_x.numpy())
    metrics = {
        "mode": mode,
        "mask": cfg["mask"],
        **errors,
        "nfe": res.nfe,
        "steps": cfg["steps"],
        "grid": cfg["grid"],
        "images": n,
        "samples_per_image": k,
    }
    if mode == "smc":
        metrics["smc"] = smc_diagnostics(res)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"inpainted {n} held-out {cfg['data']} images x {k} with {metrics['mode']} ({describe(cfg, mode)}, "
        f"{cfg['steps']} steps, {res.nfe} network evaluations): MSE on the hidden pixels "
        f"{errors['mse_hidden']:.4f} (of the mean of the {k} samples "
        f"{errors['mse_hidden_of_sample_mean']:.4f}; "
        f"mean-image baseline {errors['mse_hidden_mean_image_baseline']:.4f}); "
        f"largest change of a known pixel {errors['max_abs_error_known']:.2g}"
    )
    print(f"wrote {png}, {out / 'inpaint.npz'} and {out / 'metrics.json'}")
    return 0


COMMAND = Command(
    name="inpaint",
    help="inpaint held-out images with a score model (projection, DPS or SMC): PNG figure and .npz",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        Option(
            "mask", "center", f"region to hide: {', '.join(MASKS)} or a FILE.npy (true = known)", type=str
        ),
        Option("mask_fraction", 0.5, "fraction of pixels hidden by --mask random", minimum=0.0),
        Option("data", "digits", "held-out images: digits, digits-color, a .npz file or a folder"),
        Option("num", 8, "number of held-out images", minimum=1, short="-n"),
        Option("samples", 3, "inpaintings per image", minimum=1),
        *sampler_options(method="euler_maruyama", steps=200, grid="uniform"),
        *inverse_options(),
        *clip_options(),
        *runtime_options(
            seed_help="seed of the random mask and the sampler noise; also the held-out split's"
        ),
    ],
    body=run,
    base=smc_grid_default,
)

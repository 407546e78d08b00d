"""Colorize grayscale images with a 3-channel score model (Song et al. 2021, App. I.3).

Takes ``--num`` held-out images of ``--data``, turns them gray (the mean over channels; a
1-channel data set is taken as gray already) and colours each ``--samples`` times by
projection conditioning (:func:`scoresde.guidance.colorize`): after every sampler step the
channel mean of ``x_t`` is replaced by a fresh draw of the noised gray image, so the result's
channel mean is exactly the gray input.  Needs a model of 3-channel images, e.g.
``scoresde train --data digits-color`` (digits tinted by random colours).  Writes
``colorize.png`` (rows: original, gray, then one row per sample), ``colorize.npz``
(``original``, ``gray``, ``samples (K, N, 3, H, W)``) and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scoresde.cli.config import Option, add_options, resolve, run_dir, run_with_threads

HELP = "colorize held-out grayscale images with a 3-channel score model: PNG figure and .npz"

OPTIONS = [
    Option("checkpoint", "", "a 3-channel .safetensors checkpoint or a run folder (required)", type=str),
    Option("data", "digits-color", "held-out images: digits-color, digits (gray), a .npz file or a folder"),
    Option("num", 8, "number of held-out images", minimum=1),
    Option("samples", 3, "colorizations per image", minimum=1),
    Option("method", "euler_maruyama", "sampler, a key of scoresde.SAMPLERS"),
    Option("steps", 200, "sampler steps", minimum=1),
    Option("grid", "uniform", "time grid", choices=("uniform", "logsnr", "edm", "quadratic")),
    Option("seed", 0, "seed of the sampler noise; also the held-out split's"),
    Option("raw", False, "use the raw weights instead of the EMA weights"),
    Option("device", "auto", "auto, cpu or cuda"),
    Option("threads", 0, "CPU threads of torch (0: torch's default)", minimum=0),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args, OPTIONS, "colorize")
    return run_with_threads(cfg, _run)


def _run(cfg: dict[str, Any]) -> int:
    import numpy as np

    from scoresde.cli._checkpoints import default_out, held_out_images, item_shape, model_labels, save_rows
    from scoresde.guidance import colorize
    from scoresde.io.checkpoint import load_checkpoint
    from scoresde.sampling.registry import SAMPLERS
    from scoresde.train.distributed import resolve_device

    if not cfg["checkpoint"]:
        raise ValueError("give the model: --checkpoint FILE.safetensors or a run folder")
    if cfg["method"] not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg['method']!r}; choose one of {sorted(SAMPLERS)}")
    device = resolve_device(cfg["device"])
    ckpt = load_checkpoint(cfg["checkpoint"], ema=not cfg["raw"], device=device)
    meta, model = ckpt.config, ckpt.model
    in_shape = item_shape(meta)
    if len(in_shape) != 3 or in_shape[0] != 3:
        raise ValueError(
            f"colorize needs a model of 3-channel images (C, H, W) = (3, H, W); this checkpoint's model "
            f"takes {in_shape}. Train one on colour data, e.g. `scoresde train --data digits-color`"
        )
    images, labels = held_out_images(cfg["data"], cfg["num"], cfg["seed"])
    if images.shape[1] not in (1, 3) or tuple(images.shape[2:]) != in_shape[1:]:
        raise ValueError(
            f"{cfg['data']} images have shape {tuple(images.shape[1:])}"
            f"; the model colours {in_shape[1:]} images"
        )
    gray = images.mean(dim=1, keepdim=True)
    y = model_labels(meta, labels)
    k, n = cfg["samples"], cfg["num"]
    res = colorize(
        model,
        gray.repeat(k, 1, 1, 1).to(device),
        channels=3,
        method=cfg["method"],
        steps=cfg["steps"],
        grid=cfg["grid"],
        seed=cfg["seed"],
        y=None if y is None else y.repeat(k).to(device),
        device=device,
    )
    out_x = res.x.float().cpu().reshape(k, n, *in_shape)
    gray_err = float((out_x.mean(dim=2, keepdim=True) - gray).abs().max())
    in_range = float(((out_x >= -1.0 - 0.05) & (out_x <= 1.0 + 0.05)).float().mean())
    metrics = {
        "images": n,
        "samples_per_image": k,
        "nfe": res.nfe,
        "max_abs_gray_error": gray_err,
        "fraction_in_range": in_range,
    }
    if images.shape[1] == 3:
        metrics["mse_to_original"] = float(((out_x - images) ** 2).mean())
        metrics["mse_gray_baseline"] = float(((gray.expand_as(images) - images) ** 2).mean())
    if not cfg["out"] and not cfg["name"]:
        cfg = {**cfg, "out": str(default_out(ckpt.path, "colorize"))}
    out = run_dir(cfg, "colorize")
    png = save_rows([images, gray, *out_x], out / "colorize.png")
    np.savez(out / "colorize.npz", original=images.numpy(), gray=gray.numpy(), samples=out_x.numpy())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"colorized {n} held-out {cfg['data']} images x {k} ({cfg['method']}, {cfg['steps']} steps, "
        f"{res.nfe} network evaluations); largest gray-value error {gray_err:.2g}"
    )
    print(f"wrote {png}, {out / 'colorize.npz'} and {out / 'metrics.json'}")
    return 0

"""Draw samples from a trained checkpoint and write a PNG grid and an .npz array.

The .npz holds ``x`` (float32 samples in the model's space, ``(N, C, H, W)`` for images,
``[-1, 1]`` data range), ``images`` (uint8 ``(N, H, W, C)``) and ``y`` (labels, for
class-conditional samples).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HELP = "sample a trained checkpoint: PNG grid and .npz array"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint or a run folder")
    p.add_argument("--num", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--method", default="euler", help="sampler, a key of scoresde.SAMPLERS (default: euler)")
    p.add_argument("--steps", type=int, default=100, help="sampler steps (default: 100)")
    p.add_argument("--grid", default="uniform", help="time grid: uniform, logsnr, edm, quadratic")
    p.add_argument(
        "--class",
        dest="label",
        type=int,
        default=None,
        help="class label for a class-conditional model (default: cycle over the classes)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (each sample depends on it and its index only)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per model call batch")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--no-denoise", action="store_true", help="skip the final Tweedie denoising step")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default: <run>/samples)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from scoresde.data.images import save_image_grid, to_uint8
    from scoresde.sampling.api import sample
    from scoresde.sampling.registry import SAMPLERS
    from scoresde.train.checkpoint import load_checkpoint
    from scoresde.train.distributed import resolve_device

    if args.method not in SAMPLERS:
        raise ValueError(f"unknown sampler {args.method!r}; choose one of {sorted(SAMPLERS)}")
    if args.num < 1 or args.steps < 1 or args.batch_size < 1:
        raise ValueError("--num, --steps and --batch-size must be positive")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, ema=not args.raw, device=device)
    model, meta = ckpt.model, ckpt.config
    net_cfg = meta["net"]
    num_classes = net_cfg.get("num_classes")
    data_shape = tuple(meta.get("data", {}).get("shape") or ())
    if net_cfg["name"] == "unet":
        item_shape = (net_cfg["in_channels"], net_cfg["image_size"], net_cfg["image_size"])
    else:
        item_shape = (net_cfg["dim"],)

    labels = None
    if args.label is not None:
        if not num_classes:
            raise ValueError("--class needs a class-conditional checkpoint; this model is unconditional")
        if not (0 <= args.label < num_classes):
            raise ValueError(f"--class must lie in [0, {num_classes - 1}], got {args.label}")
        labels = torch.full((args.num,), args.label, dtype=torch.long)
    elif num_classes:
        labels = torch.arange(args.num) % num_classes

    chunks = []
    for start in range(0, args.num, args.batch_size):
        n = min(args.batch_size, args.num - start)
        y = None if labels is None else labels[start : start + n].to(device)
        # Per-sample noise keyed by (seed + start, index in the chunk): reproducible for a given --batch-size.
        res = sample(
            model,
            shape=(n, *item_shape),
            method=args.method,
            steps=args.steps,
            grid=args.grid,
            denoise=not args.no_denoise,
            seed=args.seed + start,
            y=y,
            device=device,
            progress=args.progress,
        )
        chunks.append(res.x.float().cpu())
    x = torch.cat(chunks)
    run_dir = ckpt.path.parent.parent if ckpt.path.parent.name == "checkpoints" else ckpt.path.parent
    out = Path(args.out) if args.out else run_dir / "samples"
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.method}_{args.steps}_seed{args.seed}" + (
        f"_class{args.label}" if args.label is not None else ""
    )
    arrays = {"x": x.numpy()}
    if labels is not None:
        arrays["y"] = labels.numpy()
    images = x
    if len(item_shape) == 1 and len(data_shape) == 3 and math.prod(data_shape) == item_shape[0]:
        images = x.reshape(-1, *data_shape)
    written = []
    if images.ndim == 4 and images.shape[1] in (1, 3):
        arrays["images"] = to_uint8(images).permute(0, 2, 3, 1).numpy()
        scale = max(1, 256 // images.shape[-1])
        written.append(save_image_grid(images, out / f"samples_{tag}.png", scale=min(scale, 8)))
    np.savez(out / f"samples_{tag}.npz", **arrays)
    written.append(out / f"samples_{tag}.npz")
    print(f"sampled {args.num} from {ckpt.path} (step {ckpt.step}) with {args.method}, {args.steps} steps")
    for path in written:
        print(f"wrote {path}")
    return 0

"""Sample quality of a checkpoint against held-out data.

Draws --num samples with a sampler of scoresde.SAMPLERS (by default the one `scoresde sample` uses,
scoresde.sampling.DEFAULT_SAMPLING, so the score is that of the samples users draw; for a student
of `scoresde distill --method progressive`, DDIM on its distilled grid, as `scoresde sample`; with
--solver PATH, a bespoke solver of `scoresde fit-solver`) and compares
them with --num held-out
points: sliced Wasserstein-2, MMD^2 (RBF kernel, median bandwidth) and energy distance, in the
data space (pixels for images).  For the bundled digits it also trains the reference classifier
of scoresde.evaluation.digits on the training split; for any other labelled image data (an image folder with
class subfolders, arrays with labels) it trains scoresde.evaluation.reference_classifier once on
the training split and caches it (--classifier-cache); either way it reports the Frechet
distance of the classifier's features and, for class-conditional models, the accuracy of
samples drawn with each label.  With --fid-weights (a local FID Inception weights file) it adds
FID, KID and Inception Score.  Under torchrun each process draws its block of the samples
(per-sample seeds) and rank 0 scores them.  Every number comes
with its floor: the same measure between held-out data and an equal number of other data points
(training images, or fresh draws of a toy set), which is what a perfect model would score.
Writes eval.json, eval.md and samples.png.

Example:
    scoresde eval --checkpoint runs/digits --data digits --num 500
"""

from __future__ import annotations

import json
import time

import torch
from torch import Tensor

from scoresde._core.defaults import DEFAULT_SAMPLING
from scoresde.cli._bespoke import sampling_plan
from scoresde.cli._io import load_data, load_model
from scoresde.cli.command import (
    Command,
    Context,
    checkpoint_options,
    clip_options,
    data_options,
    runtime_options,
    sampler_options,
    sampling_defaults,
)
from scoresde.io.loaded import LoadedModel
from scoresde.settings import Option


def _as_images(x: Tensor, loaded: LoadedModel) -> Tensor:
    image_shape = loaded.info.image_shape
    assert image_shape is not None  # called for image models only
    return x.reshape(-1, *image_shape).clamp(-1, 1)


def run(ctx: Context) -> int:
    from scoresde.evaluation.report import (
        digits_metrics,
        distances,
        inception_report,
        reference_metrics,
        report_markdown,
    )
    from scoresde.parallel import init_distributed
    from scoresde.parallel.sharding import sample_sharded
    from scoresde.sampling.api import sample
    from scoresde.sampling.clip import clip_denoised
    from scoresde.viz.pictures import save_picture

    cfg = ctx.cfg
    loaded = load_model(ctx, digest=bool(cfg.get("solver")))
    info = loaded.info
    model = clip_denoised(loaded.model, cfg["clip_denoised"], info.data_range, info.image_shape is not None)
    grid, options = sampling_plan(cfg, loaded, model.sde, ctx.device)
    held = load_data(cfg["data"], loaded, cfg["num"], cfg["seed"] + 1, split="test")
    other = load_data(cfg["data"], loaded, held.x.shape[0], cfg["seed"] + 2, split="train")
    n = min(held.x.shape[0], other.x.shape[0])
    if n < cfg["num"]:
        print(f"note: {held.name} has {n} held-out points; comparing {n} samples with them")
    num_classes = loaded.info.num_classes
    y = None if num_classes is None else torch.arange(n) % num_classes
    t0 = time.perf_counter()
    # Sample i depends on (seed, i) only: under torchrun each rank draws its block, rank 0 scores.
    drawn = sample_sharded(
        sample,
        model,
        loaded.shape,
        n,
        cfg["seed"],
        init_distributed(str(ctx.device)),
        batch_size=cfg["batch_size"],
        labels=y,
        progress=cfg["progress"],
        method=cfg["method"],
        steps=cfg["steps"],
        grid=grid,
        denoise=cfg["denoise"],
        device=ctx.device,
        **options,
    )
    x, nfe = drawn.x, drawn.nfe
    if x is None:  # not rank 0: rank 0 writes the result
        return 0
    out = ctx.out_dir()
    seconds = time.perf_counter() - t0
    finite = bool(torch.isfinite(x).all())
    metrics: dict = {
        "checkpoint": str(loaded.path),
        "data": held.name,
        "num": n,
        "sampler": {
            "method": cfg["method"],
            "steps": cfg["steps"],
            "grid": "solver" if "solver" in options else grid if isinstance(grid, str) else cfg["grid"],
            "nfe": nfe,
            **({"solver": str(cfg["solver"])} if "solver" in options else {}),
        },
        "sample_seconds": round(seconds, 2),
        "finite": finite,
    }
    if not finite:
        raise ValueError(f"the {cfg['method']} samples contain NaN/inf; try more --steps or another --method")
    metrics["samples_vs_heldout"] = distances(x, held.x[:n], cfg["seed"])
    metrics["floor"] = distances(other.x[:n], held.x[:n], cfg["seed"])
    floor_name = "training images" if held.levels is not None or loaded.info.image_shape else "fresh draws"
    if held.name == "digits":
        split = (loaded.info.test_fraction, loaded.info.data_seed)
        metrics.update(digits_metrics(x, y, n, *split, cfg["classifier_epochs"], cfg["seed"]))
    elif held.y is not None and loaded.info.image_shape:
        train = load_data(cfg["data"], loaded, 10**9, cfg["seed"], split="train")
        if train.y is not None:
            metrics.update(
                reference_metrics(
                    _as_images(x, loaded),
                    _as_images(held.x[:n], loaded),
                    held.y[:n],
                    _as_images(train.x, loaded),
                    train.y,
                    labels=y,
                    num_classes=loaded.info.num_classes,
                    epochs=cfg["classifier_epochs"],
                    seed=cfg["seed"],
                    cache_dir=cfg["classifier_cache"] or None,
                )
            )
    if cfg["fid_weights"]:
        if not loaded.info.image_shape:
            raise ValueError("--fid-weights needs an image model; this one makes vectors")
        imgs, held_imgs = _as_images(x, loaded), _as_images(held.x[:n], loaded)
        metrics.update(inception_report(cfg["fid_weights"], imgs, held_imgs, cfg["seed"], ctx.device))
    (out / "eval.json").write_text(json.dumps(metrics, indent=2))
    save_picture(x[:64] if loaded.info.image_shape else x, loaded.info, out / "samples.png", title="samples")
    table = report_markdown(
        metrics,
        f"scoresde eval: {loaded.path}",
        f"{n} samples ({cfg['method']}, {cfg['steps']} steps, {nfe} NFE, {seconds:.1f}s) vs {n} held-out "
        f"points of {held.name}; floor: {floor_name} vs the same held-out points.",
    )
    (out / "eval.md").write_text(table)
    print(table.split("\n\n", 1)[1].rstrip())
    print(f"outputs in {out.resolve()}: eval.json, eval.md, samples.png, config.toml")
    return 0


COMMAND = Command(
    name="eval",
    help="sample quality of a checkpoint vs held-out data (sliced W2, MMD, energy; labelled images: "
    "Frechet, accuracy; --fid-weights: FID, KID, IS)",
    doc=__doc__,
    options=[
        *checkpoint_options(),
        *data_options(num=500, num_help="samples drawn, and held-out points compared with", minimum=2),
        # The sampler users sample with by default (scoresde sample's), so eval scores it.
        *sampler_options(
            method=DEFAULT_SAMPLING.method,
            steps=DEFAULT_SAMPLING.steps,
            grid=DEFAULT_SAMPLING.grid,
            optimized=True,
            solver=True,
        ),
        *clip_options("auto"),
        Option("batch_size", 256, "samples per sampler batch", minimum=1),
        Option(
            "classifier_epochs", 15, "epochs of the reference classifier (labelled image data)", minimum=1
        ),
        Option(
            "classifier_cache",
            "",
            "folder caching the reference classifier of labelled image data (default: the library's cache)",
            type=str,
            metavar="DIR",
        ),
        Option(
            "fid_weights",
            "",
            "local FID Inception weights (pt_inception-2015-12-05-6726825d.pth): adds FID, KID and IS",
            type=str,
            metavar="PATH",
        ),
        *runtime_options(),
    ],
    body=run,
    base=sampling_defaults,
)

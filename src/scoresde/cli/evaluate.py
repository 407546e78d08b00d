"""Sample quality of a checkpoint against held-out data.

Draws --num samples with a sampler of scoresde.SAMPLERS and compares them with --num held-out
points: sliced Wasserstein-2, MMD^2 (RBF kernel, median bandwidth) and energy distance, in the
data space (pixels for images).  For the bundled digits it also trains the reference classifier
of scoresde.eval on the training split and reports the Frechet distance of its features and,
for class-conditional models, the accuracy of samples drawn with each label.  Every number comes
with its floor: the same measure between held-out data and an equal number of other data points
(training images, or fresh draws of a toy set), which is what a perfect model would score.
Writes eval.json, eval.md and samples.png.

Example:
    scoresde eval --checkpoint runs/digits --data digits --num 500
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor

from scoresde.cli._io import image_shape, load_data, load_model, save_picture
from scoresde.cli.config import Option, add_options, resolve, run_dir

HELP = "sample quality of a checkpoint vs held-out data (sliced W2, MMD, energy; digits: Frechet, accuracy)"

OPTIONS = [
    Option("checkpoint", "", "a run folder of `scoresde train` or a .safetensors checkpoint", type=str),
    Option("data", "digits", "digits, a toy set name, or a .npy/.npz file (held-out split of images)"),
    Option("num", 500, "samples drawn, and held-out points compared with", minimum=2),
    Option("method", "dpm_solver++_2m", "sampler (a key of scoresde.SAMPLERS)"),
    Option("steps", 50, "sampler steps", minimum=1),
    Option("grid", "logsnr", "time grid", choices=("uniform", "logsnr", "edm", "quadratic")),
    Option("classifier_epochs", 15, "epochs of the digits reference classifier", minimum=1),
    Option("seed", 0, "seed of every random draw"),
    Option("threads", 0, "CPU threads of torch (0: torch's default)", minimum=0),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def _distances(a: Tensor, b: Tensor, seed: int) -> dict[str, float]:
    import scoresde as ss

    a, b = a.flatten(1).double(), b.flatten(1).double()
    return {
        "sliced_w2": ss.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed)),
        "mmd2": ss.mmd_rbf(a, b),
        "energy": ss.energy_distance(a, b),
    }


def run(args: argparse.Namespace) -> int:
    import scoresde as ss

    cfg = resolve(args, OPTIONS, "eval")
    if cfg["method"] not in ss.SAMPLERS:
        raise ValueError(f"method: unknown sampler {cfg['method']!r}; choose one of {sorted(ss.SAMPLERS)}")
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    loaded = load_model(cfg["checkpoint"])
    held = load_data(cfg["data"], loaded, cfg["num"], cfg["seed"] + 1, split="test")
    other = load_data(cfg["data"], loaded, held.x.shape[0], cfg["seed"] + 2, split="train")
    n = min(held.x.shape[0], other.x.shape[0])
    if n < cfg["num"]:
        print(f"note: {held.name} has {n} held-out points; comparing {n} samples with them")
    out = run_dir(cfg, "eval")
    num_classes = getattr(loaded.model.net, "num_classes", None)
    y = None if num_classes is None else torch.arange(n) % num_classes
    t0 = time.perf_counter()
    res = ss.sample(
        loaded.model,
        loaded.sde,
        shape=(n, *loaded.shape),
        method=cfg["method"],
        steps=cfg["steps"],
        grid=cfg["grid"],
        seed=cfg["seed"],
        y=y,
    )
    seconds = time.perf_counter() - t0
    x = res.x.detach().float()
    finite = bool(torch.isfinite(x).all())
    metrics: dict = {
        "checkpoint": str(loaded.path),
        "data": held.name,
        "num": n,
        "sampler": {"method": cfg["method"], "steps": cfg["steps"], "grid": cfg["grid"], "nfe": res.nfe},
        "sample_seconds": round(seconds, 2),
        "finite": finite,
    }
    if not finite:
        raise ValueError(f"the {cfg['method']} samples contain NaN/inf; try more --steps or another --method")
    metrics["samples_vs_heldout"] = _distances(x, held.x[:n], cfg["seed"])
    metrics["floor"] = _distances(other.x[:n], held.x[:n], cfg["seed"])
    floor_name = "training images" if held.levels is not None or image_shape(loaded) else "fresh draws"
    if held.name == "digits":
        from scoresde.data.images import load_digits
        from scoresde.eval import classifier_accuracy, frechet_distance, train_digits_classifier

        train_cfg = loaded.config.get("train", {})
        split = load_digits(float(train_cfg.get("test_fraction", 0.1)), int(train_cfg.get("seed", 0)))
        clf = train_digits_classifier(split.train, split.train_labels, cfg["classifier_epochs"], cfg["seed"])
        imgs = x.reshape(-1, 1, 8, 8).clamp(-1, 1)
        test_imgs = split.test[:n]
        metrics["classifier_heldout_accuracy"] = classifier_accuracy(clf, split.test, split.test_labels)
        metrics["frechet"] = frechet_distance(clf, imgs, test_imgs)
        metrics["frechet_floor"] = frechet_distance(clf, split.train[: test_imgs.shape[0]], test_imgs)
        with torch.no_grad():
            probs = clf(imgs).softmax(1)
        metrics["mean_confidence"] = float(probs.max(1).values.mean())
        if y is not None:
            metrics["sample_accuracy"] = classifier_accuracy(clf, imgs, y)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2))
    save_picture(x[:64] if image_shape(loaded) else x, loaded, out / "samples.png", title="samples")
    lines = [
        f"# scoresde eval: {loaded.path}",
        "",
        f"{n} samples ({cfg['method']}, {cfg['steps']} steps, {res.nfe} NFE, {seconds:.1f}s) vs {n} held-out "
        f"points of {held.name}; floor: {floor_name} vs the same held-out points.",
        "",
        "| measure | samples | floor |",
        "|---|---:|---:|",
    ]
    for k, v in metrics["samples_vs_heldout"].items():
        lines.append(f"| {k} | {v:.4g} | {metrics['floor'][k]:.4g} |")
    if "frechet" in metrics:
        lines.append(
            f"| Frechet (digits classifier) | {metrics['frechet']:.4g} | {metrics['frechet_floor']:.4g} |"
        )
        lines.append(f"| classifier confidence | {metrics['mean_confidence']:.4f} | |")
        if "sample_accuracy" in metrics:
            lines.append(f"| accuracy of conditional samples | {metrics['sample_accuracy']:.4f} | |")
        lines.append(f"| classifier accuracy on held-out | | {metrics['classifier_heldout_accuracy']:.4f} |")
    table = "\n".join(lines) + "\n"
    (out / "eval.md").write_text(table)
    print(table.split("\n\n", 1)[1].rstrip())
    print(f"outputs in {out.resolve()}: eval.json, eval.md, samples.png, config.toml")
    return 0

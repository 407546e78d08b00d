"""Train a noise-conditional classifier p_t(y | x_t) (Song et al. 2021, Sec. 5) on labelled
Gaussian-mixture data, where each mixture component is a class, and compare its accuracy at
several noise levels with the exact Bayes classifier of that mixture.  Writes
classifier.safetensors + classifier.json (no pickle) and metrics.json into an output folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

HELP = "train a time-dependent classifier for classifier guidance"

DATASETS = ("ring", "gmm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="ring", choices=DATASETS, help="labelled mixture: ring or random gmm")
    p.add_argument("--classes", type=int, default=8, help="number of classes (mixture components)")
    p.add_argument("--dim", type=int, default=2, help="data dimension for --dataset gmm")
    p.add_argument(
        "--sde", default="vp", choices=["vp", "ve", "subvp", "edm", "straight"], help="forward SDE"
    )
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--hidden", type=int, default=128, help="width of the classifier MLP")
    p.add_argument("--depth", type=int, default=2, help="hidden layers of the classifier MLP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/classifier", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import scoresde as ss
    from scoresde.guidance import (
        AnalyticClassifier,
        NoiseConditionalClassifier,
        classifier_accuracy,
        save_classifier,
        train_classifier,
    )
    from scoresde.nets import TimeClassifier

    if args.classes < 2:
        raise ValueError(f"--classes must be at least 2, got {args.classes}")
    g = torch.Generator().manual_seed(args.seed)
    if args.dataset == "ring":
        gmm = ss.GaussianMixture.ring(args.classes, radius=2.0, std=0.3)
    else:
        gmm = ss.GaussianMixture.random(
            args.dim, args.classes, eig_min=0.01, eig_max=0.1, mean_scale=1.5, generator=g
        )
    sde = ss.make_sde(args.sde)

    def draw(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = gmm.sample(batch, generator=gen, return_labels=True)
        return x.float(), y

    std = float(gmm.sample(10_000, generator=g).std())
    net = TimeClassifier((gmm.dim,), args.classes, hidden=args.hidden, depth=args.depth)
    clf = NoiseConditionalClassifier(net, sde, sigma_data=std)
    fit = train_classifier(
        clf,
        draw,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        generator=g,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    weights, meta = save_classifier(clf, out / "classifier")
    x, y = gmm.sample(4000, generator=torch.Generator().manual_seed(args.seed + 1), return_labels=True)
    bayes = AnalyticClassifier(ss.AnalyticScore(gmm, sde))
    times = [sde.eps, 0.1 * sde.T, 0.3 * sde.T, 0.5 * sde.T, 0.8 * sde.T]
    acc = {}
    for t in times:
        a = classifier_accuracy(clf, sde, x.float(), y, t, torch.Generator().manual_seed(7))
        b = classifier_accuracy(bayes, sde, x, y, t, torch.Generator().manual_seed(7))
        acc[f"{t:.4g}"] = {"classifier": a, "bayes_optimal": b}
    metrics = {
        "dataset": args.dataset,
        "classes": args.classes,
        "sde": repr(sde),
        "train_steps": args.steps,
        "train_seconds": round(fit.seconds, 2),
        "final_loss": sum(fit.losses[-100:]) / min(100, len(fit.losses)),
        "accuracy": acc,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"trained {args.steps} steps in {fit.seconds:.1f}s (final cross-entropy {metrics['final_loss']:.4f})"
    )
    for t, a in acc.items():
        print(f"  t = {t:>7}: accuracy {a['classifier']:.3f}  (Bayes-optimal {a['bayes_optimal']:.3f})")
    print(f"wrote {weights}, {meta} and {out / 'metrics.json'}")
    return 0

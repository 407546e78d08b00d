"""Train a score model on a 2-D toy set on the CPU, sample it with the reverse SDE and the
probability-flow ODE, and write a scatter plot and a metrics JSON into an output folder."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HELP = "train on a 2-D toy set and sample it (about a minute on a CPU)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="two_moons", help="toy data set (default: two_moons)")
    p.add_argument("--sde", default="vp", choices=["vp", "ve", "subvp"], help="forward SDE")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--samples", type=int, default=4000, help="samples per sampler")
    p.add_argument("--sample-steps", type=int, default=500, help="steps of each sampler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import scoresde as ss
    from scoresde.viz.plots import scatter_compare

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    train = ss.toy_data(args.dataset, 50_000, generator=g)
    held_out = ss.toy_data(args.dataset, args.samples, generator=torch.Generator().manual_seed(args.seed + 1))
    sde = ss.make_sde(args.sde)
    std = float(train.std())
    model = ss.ScoreModel(ss.MLP(2, hidden=256, depth=3), sde, prediction="eps", sigma_data=std)
    fitted = ss.fit(
        model, train, steps=args.steps, batch_size=args.batch_size, generator=g, progress=not args.no_progress
    )
    ema = fitted.ema_model
    metrics: dict = {
        "dataset": args.dataset,
        "sde": repr(sde),
        "train_steps": args.steps,
        "train_seconds": round(fitted.seconds, 2),
        "final_loss": sum(fitted.losses[-100:]) / min(100, len(fitted.losses)),
        "samplers": {},
    }
    samples = {}
    sw_gen = torch.Generator().manual_seed(1234)
    for method, label in [("euler_maruyama", "reverse SDE (Euler-Maruyama)"), ("euler", "PF-ODE (Euler)")]:
        t0 = time.perf_counter()
        res = ss.sample(
            ema,
            sde,
            shape=(args.samples, 2),
            method=method,
            steps=args.sample_steps,
            seed=args.seed,
            progress=not args.no_progress,
        )
        secs = time.perf_counter() - t0
        samples[label] = res.x
        metrics["samplers"][method] = {
            "nfe": res.nfe,
            "seconds": round(secs, 3),
            "sliced_wasserstein": ss.sliced_wasserstein(res.x, held_out, generator=sw_gen),
        }
    metrics["reference_sliced_wasserstein"] = ss.sliced_wasserstein(
        ss.toy_data(args.dataset, args.samples, generator=torch.Generator().manual_seed(args.seed + 2)),
        held_out,
        generator=sw_gen,
    )
    png = scatter_compare(held_out, samples, out / "samples.png", title=f"{args.dataset}, {sde.name}")
    metrics["total_seconds"] = round(time.perf_counter() - start, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"trained {args.steps} steps in {fitted.seconds:.1f}s (final loss {metrics['final_loss']:.4f})")
    for method, m in metrics["samplers"].items():
        print(f"  {method:>16}: sliced W2 {m['sliced_wasserstein']:.4f}  NFE {m['nfe']}  {m['seconds']:.2f}s")
    print(f"  {'data vs data':>16}: sliced W2 {metrics['reference_sliced_wasserstein']:.4f} (noise floor)")
    print(f"wrote {png} and {out / 'metrics.json'} ({metrics['total_seconds']:.1f}s in all)")
    print(f"outputs in {out.resolve()}")
    return 0

"""Train a class-conditional digits model on the CPU within a time budget and measure it.

Measures (and writes to ``docs/bench_train_digits.md`` plus a PNG grid):

- training throughput (images/s) with and without bf16 autocast, on the training model;
- the held-out DSM loss of the EMA model;
- held-out bits/dim: the variational upper bound of the reverse SDE (Song et al. 2021c,
  Thm. 3; ``scoresde.flow.bound.dsm_nll_bound``) and, when the likelihood module is installed,
  the probability-flow ODE likelihood through ``scoresde.log_likelihood``;
- sample quality: a small CNN classifier is trained on the digits *training* split; we
  report its held-out accuracy, its accuracy on class-conditional samples (the label asked
  for is the target), and the Frechet distance between samples and held-out digits in its
  penultimate-layer features (with the train-vs-held-out distance as the floor).

Usage (the full measurement, 15 minutes of training on this 2-core CPU)::

    PYTHONPATH=src python benchmarks/train_digits.py --minutes 15

and a smoke test with ``--minutes 1``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import scoresde as ss
from scoresde.data.images import DataSplit, load_digits, save_image_grid
from scoresde.evaluation.digits import classifier_accuracy, frechet_distance, train_digits_classifier
from scoresde.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15.0, help="training time budget (default 15)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for this small net)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--num-res-blocks", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--method", default="euler_maruyama", help="sampler for the quality figures")
    p.add_argument("--sample-steps", type=int, default=500)
    p.add_argument("--per-class", type=int, default=100, help="class-conditional samples per digit")
    p.add_argument("--bpd-images", type=int, default=180, help="held-out images for bits/dim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=str(ROOT / "runs"), help="parent of the run folder")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the table and grid go")
    return p.parse_args()


# ---------------------------------------------------------------------- #
# Measurements.
# ---------------------------------------------------------------------- #
def throughput(config: TrainConfig, data: DataSplit, bf16: bool, steps: int = 15) -> float:
    """Images/s of ``train_step`` (after 3 warm-up steps) for a fresh trainer."""
    cfg = TrainConfig(**{**config.to_dict(), "bf16": bf16, "name": "throughput"})
    trainer = Trainer(cfg, data=data)
    for _ in range(3):
        trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    data = load_digits(test_fraction=0.1, seed=args.seed)
    config = TrainConfig(
        data="digits",
        net="unet",
        base_channels=args.base_channels,
        channel_mults=(1, 2),
        num_res_blocks=args.num_res_blocks,
        attn_resolutions=(4,),
        dropout=0.1,
        conditional=True,
        label_dropout=0.1,
        sde="vp",
        prediction="eps",
        loss="dsm",
        steps=10**7,  # stopped by the time budget
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=200,
        ema_decay=args.ema_decay,
        seed=args.seed,
        device="cpu",
        out=args.run_dir,
        name="bench_digits",
        progress=False,
    )

    print("measuring throughput ...", flush=True)
    tp_fp32 = throughput(config, data, bf16=False)
    tp_bf16 = throughput(config, data, bf16=True)
    print(f"  fp32 {tp_fp32:.0f} images/s, bf16 autocast {tp_bf16:.0f} images/s", flush=True)

    trainer = Trainer(config, data=data)
    n_params = sum(p.numel() for p in trainer.model.net.parameters())
    budget = args.minutes * 60.0
    print(f"training {n_params:,} parameters for {args.minutes} min ...", flush=True)
    t0 = time.perf_counter()
    losses = []
    while time.perf_counter() - t0 < budget:
        loss, _ = trainer.train_step()
        losses.append(loss)
        if trainer.step % 200 == 0:
            recent = sum(losses[-200:]) / len(losses[-200:])
            print(f"  step {trainer.step}: loss {recent:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    train_seconds = time.perf_counter() - t0
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = trainer.save()
    steps = trainer.step
    print(f"trained {steps} steps in {train_seconds:.0f}s; checkpoint {ckpt}", flush=True)

    ema = trainer.ema.module
    held_out = trainer.held_out_loss(ema)

    # Sample quality through a classifier trained on the training split.
    t1 = time.perf_counter()
    clf = train_digits_classifier(data.train, data.train_labels, seed=args.seed)
    clf_acc = classifier_accuracy(clf, data.test, data.test_labels)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    res = ss.sample(ema, shape=(labels.numel(), 1, 8, 8), method=args.method, steps=args.sample_steps,
                    seed=args.seed, y=labels)  # fmt: skip
    samples = res.x.clamp(-1, 1)
    sample_acc = classifier_accuracy(clf, samples, labels)
    fd_samples = frechet_distance(clf, samples, data.test)
    fd_floor = frechet_distance(clf, data.train, data.test)
    sample_seconds = time.perf_counter() - t1
    grid_rows = torch.cat([samples[labels == k][:10] for k in range(10)])
    grid = save_image_grid(grid_rows, docs / "digits_samples.png", nrow=10, scale=4)

    trainer.config.bpd_samples = args.bpd_images
    t2 = time.perf_counter()
    bpd_bound = trainer.bits_per_dim(ema, bound=True)
    bound_seconds = time.perf_counter() - t2
    bpd = None
    bpd_note = "not measured: scoresde.log_likelihood is not available in this build"
    if hasattr(ss, "log_likelihood"):
        try:
            bpd = trainer.bits_per_dim(ema)
            bpd_note = f"PF-ODE likelihood on {args.bpd_images} held-out images, uniform dequantization"
        except Exception as err:  # report, do not hide, a failure of the likelihood module
            bpd_note = f"failed: {err}"

    results = {
        "train_minutes_budget": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "steps": steps,
        "batch_size": args.batch_size,
        "parameters": n_params,
        "final_train_loss_last200": sum(losses[-200:]) / max(1, len(losses[-200:])),
        "held_out_dsm_loss": held_out,
        "bits_per_dim_bound": bpd_bound,
        "bits_per_dim_bound_seconds": round(bound_seconds, 1),
        "bits_per_dim": bpd,
        "bits_per_dim_note": bpd_note,
        "classifier_test_accuracy": clf_acc,
        "sample_accuracy": sample_acc,
        "frechet_distance_samples_vs_test": fd_samples,
        "frechet_distance_train_vs_test": fd_floor,
        "sampler": f"{args.method}, {args.sample_steps} steps, NFE {res.nfe}",
        "sample_seconds": round(sample_seconds, 1),
        "throughput_fp32_images_per_s": tp_fp32,
        "throughput_bf16_images_per_s": tp_bf16,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(results, indent=2))
    (docs / "bench_train_digits.json").write_text(json.dumps(results, indent=2))
    cmd = " ".join(["PYTHONPATH=src python benchmarks/train_digits.py", *sys.argv[1:]])
    bpd_text = "n/a" if bpd is None else f"{bpd:.3f}"
    table = f"""# Training on digits (CPU)

Command: `{cmd}`

Class-conditional U-Net ({n_params:,} parameters; base {args.base_channels} channels, 8x8 and 4x4
levels, attention at 4x4), VP SDE, eps-prediction DSM loss, batch {args.batch_size}, AdamW lr {args.lr},
EMA {args.ema_decay}, label dropout 0.1; trained for {train_seconds / 60:.1f} minutes
({steps} steps) with {args.threads} thread(s) on a shared {results["cpu"]} machine
(torch {torch.__version__}).

| measure | value |
|---|---|
| training throughput, fp32 | {tp_fp32:.0f} images/s |
| training throughput, bf16 autocast | {tp_bf16:.0f} images/s |
| held-out DSM loss (EMA, eps-MSE summed over 64 dims) | {held_out:.3f} |
| held-out bits/dim, upper bound (reverse SDE, Song et al. 2021c Thm. 3) | {bpd_bound:.3f} |
| held-out bits/dim, PF-ODE | {bpd_text} ({bpd_note}) |
| digits classifier accuracy on the held-out split | {clf_acc:.3f} |
| classifier accuracy on class-conditional samples | {sample_acc:.3f} |
| Frechet distance (classifier features), samples vs held-out | {fd_samples:.3f} |
| Frechet distance, training split vs held-out (floor) | {fd_floor:.3f} |

Bits/dim: {args.bpd_images} held-out digits, uniformly dequantized over the 17 intensity levels
(`bpd = -log p(z) / (D ln 2) + log2(17 / 2)`; the uniform distribution scores log2 17 = 4.09),
scored through the model's unconditional (null-label) mode.

Samples: {results["sampler"]}, {args.per_class} per class; grid (one row per digit): `{grid.name}`.

![samples]({grid.name})
"""
    (docs / "bench_train_digits.md").write_text(table)
    print(f"wrote {docs / 'bench_train_digits.md'} and {grid}")


if __name__ == "__main__":
    main()

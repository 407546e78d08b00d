"""Sampler sweep on one first_run_28px.py checkpoint: accuracy, white / noisy tile fractions.

Usage: python sampler_sweep.py WORKDIR CHECKPOINT [n]  (WORKDIR: the benchmark's temp folder,
holding digits28.npz and the reference classifier cache).
"""
import sys, torch
from pathlib import Path
from scoresde.data.images import load_dataset, save_image_grid
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.io.checkpoint import load_checkpoint
from scoresde.models.clipping import ClipDenoised
from scoresde.train import evaluation

torch.set_num_threads(1)
work, ckpt = Path(sys.argv[1]), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
data = load_dataset(work / "digits28.npz")
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir=work / "cache")
flat = data.train.reshape(data.train.shape[0], -1)
white_limit = float((flat > 0.98).double().mean(1).max())
model = load_checkpoint(ckpt).model
print("white limit", round(white_limit, 3), "train white-frac mean", round(float((flat > 0.98).double().mean(1).mean()), 3))
for method, steps, clip in [
    ("euler", 100, None), ("euler_maruyama", 100, None), ("euler_maruyama", 100, "clip"),
    ("euler_maruyama", 300, None), ("reverse_diffusion", 100, "clip"), ("pc", 100, None),
    ("dpm_solver++_2m", 30, None), ("euler", 100, "clip"),
]:
    m = ClipDenoised(model, clip) if clip else model
    x, y = evaluation.sample_grid(m, data.shape, n, method, steps, 0, 10, torch.device("cpu"))
    x = x.float()
    f = x.reshape(n, -1)
    white = ((f > 0.98).double().mean(1) > white_limit).double().mean()
    noisy = ((f.abs() > 1.1).double().mean(1) > 0.05).double().mean()
    r = classifier_report(clf, x, data.test, y, floor_images=data.train)
    print(f"{method} {steps} clip={clip}: acc {r['accuracy']:.3f} frechet {r['frechet']:.2f} white {float(white):.3f} "
          f"noisy {float(noisy):.3f} range [{float(x.min()):.2f}, {float(x.max()):.2f}] "
          f"mean white-frac {float((f > 0.98).double().mean()):.3f}", flush=True)
    save_image_grid(x[:100], work / f"sweep_{method}_{steps}_{clip}.png", nrow=10, scale=2)

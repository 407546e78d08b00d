"""How much of a checkpoint's Frechet distance is background grain (docs/bench_first_run_28px_standin.md).

Usage: python background_check.py DATA.npz CACHE_DIR CHECKPOINT N method:steps ...
Prints the fraction of sample pixels in (-0.95, -0.5) (faint grain; training images beside it),
class accuracy and Frechet distance, then both again with every pixel below 64/255 set to black.
EMA weights, x0 clipped, seed 0, labels cycling over the classes.
"""

import sys

import torch

from scoresde.data.images import load_dataset
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.io.checkpoint import load_checkpoint
from scoresde.models.clipping import ClipDenoised
from scoresde.train import evaluation

torch.set_num_threads(1)
data_path, cache, ckpt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = load_dataset(data_path)
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir=cache)
model = load_checkpoint(ckpt).model


def grain(x: torch.Tensor) -> float:
    return float(((x > -0.95) & (x < -0.5)).float().mean())


print(f"training images: grain {grain(data.train[:2000]):.4f}")
for spec in sys.argv[5:]:
    method, steps = spec.split(":")
    x, y = evaluation.sample_grid(
        ClipDenoised(model), data.shape, n, method, int(steps), 0, 10, torch.device("cpu")
    )
    x = x.float()
    r = classifier_report(clf, x, data.test, y, floor_images=data.train)
    print(f"{spec}: grain {grain(x):.4f} acc {r['accuracy']:.3f} frechet {r['frechet']:.2f}", flush=True)
    q = ((x + 1) * 127.5).round().clamp(0, 255)
    cleaned = torch.where(q < 64, torch.zeros_like(q), q) / 127.5 - 1
    r = classifier_report(clf, cleaned, data.test, y, floor_images=data.train)
    print(f"{spec}, background cleaned: acc {r['accuracy']:.3f} frechet {r['frechet']:.2f}", flush=True)

"""Accuracy and saturation of a first_run_28px.py checkpoint on more samples (smaller standard error).

Usage: python more_samples.py WORKDIR N CHECKPOINT [CHECKPOINT ...]  (defaults of the benchmark:
Euler-Maruyama 100 steps, x0 clipped, seed 0, labels cycling over the classes).
"""
import math, sys, torch
sys.path.insert(0, "benchmarks")
from first_run_28px import rough_fraction, saturated_fraction, tile_limits
from scoresde.data.images import load_dataset
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.io.checkpoint import load_checkpoint
from scoresde.models.clipping import ClipDenoised
from scoresde.train import evaluation

torch.set_num_threads(1)
work, n = sys.argv[1], int(sys.argv[2])
data = load_dataset(work + "/digits28.npz")
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir=work + "/cache")
lim = tile_limits(data.train)
for ckpt in sys.argv[3:]:
    model = load_checkpoint(ckpt).model
    x, y = evaluation.sample_grid(ClipDenoised(model), data.shape, n, "euler_maruyama", 100, 0, 10, torch.device("cpu"))
    x = x.float()
    acc = classifier_report(clf, x, data.test, y)["accuracy"]
    se = math.sqrt(acc * (1 - acc) / n)
    print(f"{ckpt}: n {n} accuracy {acc:.4f} (s.e. {se:.4f}) saturated {saturated_fraction(x, lim):.4f} "
          f"rough {rough_fraction(x, lim):.4f}", flush=True)

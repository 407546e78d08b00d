"""Class accuracy and Frechet distance of one first_run_28px.py checkpoint under several samplers.

Usage: python sampler_check.py DATA.npz CACHE_DIR CHECKPOINT N method:steps[:raw] ...
(EMA weights unless ``:raw``; x0 clipped; seed 0; labels cycling over the classes; the reference
classifier of the benchmark, cached in CACHE_DIR).  Used for the sampler table of
docs/bench_first_run_28px_standin.md.
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
for spec in sys.argv[5:]:
    method, steps, *raw = spec.split(":")
    model = load_checkpoint(ckpt, ema=not raw).model
    x, y = evaluation.sample_grid(
        ClipDenoised(model), data.shape, n, method, int(steps), 0, 10, torch.device("cpu")
    )
    r = classifier_report(clf, x.float(), data.test, y, floor_images=data.train)
    print(
        f"{spec} acc {r['accuracy']:.3f} frechet {r['frechet']:.2f} floor {r['frechet_floor']:.2f}",
        flush=True,
    )

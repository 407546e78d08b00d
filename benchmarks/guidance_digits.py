"""Classifier-free and classifier guidance on a class-conditional digits model: figures and numbers.

Given a digits checkpoint trained with label dropout (``scoresde train --data digits
--conditional --label-dropout 0.1``) and a noise-conditional digits classifier
(``scoresde train-classifier --data digits --checkpoint ...``), this script

- draws ``--per-class`` samples of every digit with classifier-free guidance (Ho & Salimans
  2022) at each weight of ``--cfg-scales`` and writes ``docs/img/guidance_cfg.png`` (one row
  per digit, one block of ``--columns`` columns per weight);
- draws samples from the model's unconditional (null-label) score with classifier guidance
  (Song et al. 2021, Sec. 5) at each scale of ``--classifier-scales`` (0 = unguided) and writes
  ``docs/img/guidance_classifier.png``;
- measures each setting with an *independent* judge, the small CNN of
  ``benchmarks/train_digits.py`` trained on the clean training split (not the guiding
  classifier, which guidance could fool): its accuracy with the requested digit as the target,
  its mean confidence, and the Frechet distance of its features to the held-out digits (the
  training split's distance is the floor).  For classifier guidance the guiding classifier's
  own accuracy (at ``t = eps``) is reported beside it.

The table goes to ``docs/bench_guidance_digits.md`` (and ``.json``).  Usage::

    PYTHONPATH=src python benchmarks/guidance_digits.py --checkpoint runs/bench_digits \\
        --classifier runs/clf_digits
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

import scoresde as ss
from scoresde.data.images import load_digits, save_image_grid
from scoresde.guidance import ClassifierFreeGuidance, ClassifierGuidance, load_classifier
from scoresde.io.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scoresde.evaluation.digits import classifier_accuracy as accuracy  # noqa: E402
from scoresde.evaluation.digits import frechet_distance, train_digits_classifier  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="class-conditional digits checkpoint (label dropout)")
    p.add_argument("--classifier", default="", help="noise-conditional digits classifier (train-classifier)")
    p.add_argument("--cfg-scales", default="0,1,3", help="classifier-free guidance weights w")
    p.add_argument("--classifier-scales", default="0,1,3", help="classifier-guidance scales (0 = unguided)")
    p.add_argument("--method", default="euler_maruyama")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--per-class", type=int, default=50, help="samples per digit and setting (measured)")
    p.add_argument("--columns", type=int, default=4, help="samples per digit and setting in the figures")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", default=str(ROOT / "docs"))
    return p.parse_args()


def figure(blocks: list[Tensor], columns: int, path: Path) -> Path:
    """Rows = digits 0-9; for each setting, ``columns`` samples side by side (a gap between settings)."""
    rows = []
    gap = torch.zeros(blocks[0].shape[2:])  # one gray image between settings
    for k in range(10):
        row = []
        for i, b in enumerate(blocks):
            row.extend(b[k, :columns])
            if i + 1 < len(blocks):
                row.append(gap)
        rows.extend(row)
    return save_image_grid(torch.stack(rows), path, nrow=len(rows) // 10, scale=4)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    docs = Path(args.docs)
    (docs / "img").mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.checkpoint)
    model, meta = ckpt.model, ckpt.config
    if not meta["net"].get("num_classes") or not meta.get("train", {}).get("label_dropout"):
        raise SystemExit("the checkpoint must be class-conditional and trained with label dropout")
    data = load_digits(seed=meta.get("train", {}).get("seed", 0))
    t0 = time.perf_counter()
    judge = train_digits_classifier(data.train, data.train_labels, seed=args.seed)
    judge_acc = accuracy(judge, data.test, data.test_labels)
    fd_floor = frechet_distance(judge, data.train, data.test)
    print(f"judge CNN: held-out accuracy {judge_acc:.3f}; FD train vs held-out {fd_floor:.1f}", flush=True)
    n = args.per_class
    y = torch.arange(10).repeat_interleave(n)
    rows: list[dict] = []

    def measure(kind: str, scale: float, guided, extra=None) -> Tensor:
        start = time.perf_counter()
        res = ss.sample(
            guided, shape=(10 * n, 1, 8, 8), method=args.method, steps=args.steps, seed=args.seed, y=y
        )
        x = res.x.clamp(-1, 1)
        with torch.no_grad():
            conf = float(torch.softmax(judge(x), 1).gather(1, y[:, None]).mean())
        row = {
            "guidance": kind,
            "scale": scale,
            "judge_accuracy": accuracy(judge, x, y),
            "judge_confidence": conf,
            "frechet_distance": frechet_distance(judge, x, data.test),
            "nfe": res.nfe,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if extra is not None:
            row["guiding_classifier_accuracy"] = extra(x)
        rows.append(row)
        print(json.dumps(row), flush=True)
        return x.reshape(10, n, 1, 8, 8)

    cfg_scales = [float(s) for s in args.cfg_scales.split(",")]
    blocks = [measure("classifier-free", w, ClassifierFreeGuidance(model, scale=w)) for w in cfg_scales]
    figure(blocks, args.columns, docs / "img" / "guidance_cfg.png")
    if args.classifier:
        path = Path(args.classifier)
        clf = load_classifier(path / "classifier" if path.is_dir() else path.with_suffix(""))
        eps = torch.full((10 * n,), model.sde.eps)

        def own(x: Tensor) -> float:
            with torch.no_grad():
                return float((clf(x, eps).argmax(1) == y).float().mean())

        blocks = []
        for s in [float(v) for v in args.classifier_scales.split(",")]:
            blocks.append(measure("classifier", s, ClassifierGuidance(model, clf, scale=s), own))
        figure(blocks, args.columns, docs / "img" / "guidance_classifier.png")

    lines = [
        "# Guidance on digits: measured",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/guidance_digits.py {' '.join(sys.argv[1:])}`",
        "",
        f"Model: `{ckpt.path}` (step {ckpt.step}, {meta['net']['name']}, {meta['sde']['name']} SDE, "
        f"label dropout {meta['train'].get('label_dropout')}). Sampler `{args.method}`, {args.steps} steps, "
        f"{n} samples per digit and setting (seed {args.seed}).",
        "",
        f"Judge: a small CNN trained on the clean training split only (held-out accuracy {judge_acc:.3f}); "
        f"accuracy = the judge agrees with the requested digit; confidence = its mean probability of "
        f"that digit; FD = Frechet distance of its features to the held-out digits (training split: "
        f"{fd_floor:.1f}, the floor). Classifier guidance uses the model's unconditional (null-label) "
        "score; scale 0 is unguided, so the requested digit is then a random label.",
        "",
        "| guidance | scale | judge accuracy | judge confidence | FD | guiding clf. accuracy | NFE | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        own_acc = r.get("guiding_classifier_accuracy")
        lines.append(
            f"| {r['guidance']} | {r['scale']:g} | {r['judge_accuracy']:.3f} | {r['judge_confidence']:.3f} | "
            f"{r['frechet_distance']:.1f} | {'' if own_acc is None else f'{own_acc:.3f}'} | {r['nfe']} | "
            f"{r['seconds']} |"
        )
    lines.append("")
    lines.append(f"Total {time.perf_counter() - t0:.0f} s with {args.threads} thread(s) on a shared CPU.")
    (docs / "bench_guidance_digits.md").write_text("\n".join(lines) + "\n")
    (docs / "bench_guidance_digits.json").write_text(
        json.dumps({"judge_accuracy": judge_acc, "fd_floor": fd_floor, "rows": rows}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

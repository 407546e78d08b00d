"""A newcomer's first run on 28x28 digits in keras layout: eps vs v vs EDM-style preconditioning.

The data: no MNIST download is possible here, so the 1,797 bundled scikit-learn 8x8 digits are
*upsampled* to 28x28 (bicubic with antialiasing, rounded to 8 bits) and saved the way such files
usually are, a keras-layout ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``; uint8
``(N, 28, 28)``; the 80 / 20 split of ``load_digits(test_fraction=0.2)``).  Upsampled digits
are smoother than MNIST; say so when quoting the numbers.

Each variant is the README's train recipe (``scoresde train --data FILE.npz --conditional
--label-dropout 0.1``, every other option at its default, i.e. the library's
``TrainConfig``) trained for ``--minutes`` of process CPU time (``--clock wall``: wall time), then
measured with its EMA weights:

- ``accuracy``: a separately trained reference classifier (``scoresde.evaluation``, trained on
  ``x_train`` only) recognises class-conditional samples as the class asked for;
- ``frechet`` / ``floor``: Frechet distance in that classifier's features between samples and
  ``x_test``, and between ``x_train`` and ``x_test`` (what real data attains);
- ``bpd``: held-out bits/dim, the variational bound of the reverse SDE
  (``Trainer.bits_per_dim(bound=True)``; ``--ode-bpd`` adds the probability-flow ODE value);
- ``saturated``: the fraction of sample tiles that are flat white or noise: more white pixels
  (``x > 0.98``) than any training image has, more than 5% of pixels outside ``[-1.1, 1.1]``,
  or 1.5x rougher than the roughest training image (roughness: mean absolute difference of
  neighbouring pixels; noise that clipping the samples to the data range would hide from the
  range test); ``rough``: the (strict) fraction rougher than every training image;
  ``range``: the smallest and largest raw sample values (before any clipping).

Variants: ``eps`` and ``v`` are the VP SDE with those predictions; ``edm`` is EDM's SDE
(``sigma(t) = t``, Karras et al. 2022) with its input scaling ``c_in`` and noise input
``c_noise = log(sigma) / 4`` and the v target, which equals EDM's ``F`` target for
``sigma_data = 1`` (``scoresde.models.parameterization``).

Usage (the measurement: 10 minutes per variant; a smoke test with ``--minutes 0.3``)::

    PYTHONPATH=src python benchmarks/first_run_28px.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scoresde.data.images import (
    DataSplit,
    load_dataset,
    load_digits,
    resize_images,
    save_image_grid,
    to_uint8,
)
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.sampling.registry import canonical_method
from scoresde.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "eps": {"sde": "vp", "prediction": "eps"},
    "v": {"sde": "vp", "prediction": "v"},
    "edm": {"sde": "edm", "prediction": "v", "time_input": "log_sigma"},
}


DATA_TEXT = {
    "upsampled": "Data: scikit-learn's 8x8 digits **upsampled** to 28x28 (bicubic, 8-bit), saved as a "
    "keras-layout `.npz`; smoother than MNIST",
    "standin": "Data: the handwriting stand-in of `benchmarks/handwritten_standin.py` (scikit-learn's "
    "writers re-drawn with sharp pen strokes of random width, elastic and affine warps, MNIST's 20x20 box "
    "centred by mass; train and test from disjoint source digits), keras layout",
}


def make_keras_digits(path: Path, seed: int = 0) -> Path:
    """Write the upsampled 28x28 digits as a keras-layout ``.npz`` (uint8 images, int64 labels)."""
    d = load_digits(test_fraction=0.2, seed=seed)

    def as_uint8(x: torch.Tensor) -> np.ndarray:
        return to_uint8(resize_images(x, 28, levels=256))[:, 0].numpy()

    np.savez(
        path,
        x_train=as_uint8(d.train),
        y_train=d.train_labels.numpy(),
        x_test=as_uint8(d.test),
        y_test=d.test_labels.numpy(),
    )
    return path


def _tile_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per tile of ``(N, 1, H, W)``: white fraction, fraction outside [-1.1, 1.1], roughness
    (mean absolute difference of neighbouring pixels, which clipping cannot hide)."""
    flat = x.reshape(x.shape[0], -1)
    rough = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3)) + (x[..., 1:] - x[..., :-1]).abs().mean(
        (1, 2, 3)
    )
    return (flat > 0.98).double().mean(1), (flat.abs() > 1.1).double().mean(1), rough.double()


def tile_limits(train: torch.Tensor) -> dict[str, float]:
    """The largest white fraction and roughness of any training image."""
    white, _, rough = _tile_stats(train)
    return {"white": float(white.max()), "rough": float(rough.max())}


NOISE_ROUGHNESS = 1.5
"""A noise tile is this many times rougher than the roughest training image (uniform noise in
[-1, 1] is about 4x on the upsampled digits; digits with fat strokes reach 1.06x)."""


def saturated_fraction(x: torch.Tensor, limits: dict[str, float]) -> float:
    """Fraction of tiles ``(N, 1, H, W)`` that are flat white or noise (see the module docstring)."""
    white, outside, rough = _tile_stats(x)
    noise = (outside > 0.05) | (rough > NOISE_ROUGHNESS * limits["rough"])
    return float(((white > limits["white"]) | noise).double().mean())


def rough_fraction(x: torch.Tensor, limits: dict[str, float]) -> float:
    """Fraction of tiles rougher than every training image (a strict test; not noise by itself)."""
    return float((_tile_stats(x)[2] > limits["rough"]).double().mean())


def _samples(
    trainer: Trainer, n: int, w: float = 0.0, method: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-conditional EMA samples, with classifier-free guidance weight ``w`` (Ho & Salimans
    2022) when ``w > 0``, by ``method`` (default: the config's sampler) at the config's steps
    and with its x0 clipping."""
    from scoresde.guidance import ClassifierFreeGuidance
    from scoresde.models.clipping import ClipDenoised
    from scoresde.train import evaluation

    c = trainer.config
    model = ClassifierFreeGuidance(trainer.ema.module, scale=w) if w else trainer.ema.module
    if c.sample_clip != "none":  # as Trainer.sample_images
        model = ClipDenoised(model, mode=c.sample_clip)
    x, y = evaluation.sample_grid(
        model,
        trainer.data.shape,
        n,
        method or c.sample_method,
        c.sample_steps,
        c.seed,
        trainer.data.num_classes,
        trainer.device,
    )
    return x.float().cpu(), y


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs for :class:`TrainConfig` (``--set schedule=cosine --set final_lr=0``):
    the value is read as JSON, else taken as a string; the config checks names and types."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    TrainConfig.from_dict(out)  # unknown names and bad values fail here, before any training
    return out


def run_variant(
    name: str,
    data_path: Path,
    out: Path,
    args: argparse.Namespace,
    limits: dict[str, float],
    clf: torch.nn.Module,
    data: DataSplit,
) -> dict:
    cfg = TrainConfig(
        data=str(data_path),
        conditional=True,
        label_dropout=0.1,
        steps=10**9,
        out=str(out),
        name=name,
        progress=False,
        seed=args.seed,
        **{**VARIANTS[name], **args.overrides},
    )
    trainer = Trainer(cfg)
    # CPU time of this process (one torch thread: the time it computed), so that other jobs on
    # the machine do not shorten the budget; --clock wall counts wall time instead.
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    # The fraction of the budget spent drives a decaying schedule, as `train --minutes` does.
    t0, budget = clock(), 60.0 * args.minutes
    while (spent := (clock() - t0) / budget) < 1.0:
        trainer.train_step(spent)
    seconds = clock() - t0
    print(f"{name}: {trainer.step} steps, checkpoint {trainer.save()}", flush=True)
    x, y = trainer.sample_images(args.samples)
    row = {
        "variant": name,
        "steps": trainer.step,
        "train_s": seconds,
        "raw_min": float(x.min()),
        "raw_max": float(x.max()),
        "saturated": saturated_fraction(x, limits),
        "rough": rough_fraction(x, limits),
    }
    for w in args.guidance:
        xg, yg = _samples(trainer, args.samples, w)
        row[f"accuracy_w{w:g}"] = classifier_report(clf, xg, data.test, yg)["accuracy"]
    for method in args.methods:
        xm, ym = _samples(trainer, args.samples, method=method)
        row[f"accuracy_{method}"] = classifier_report(clf, xm, data.test, ym)["accuracy"]
        row[f"saturated_{method}"] = saturated_fraction(xm, limits)
    row["bpd"] = trainer.bits_per_dim(bound=True)
    if args.ode_bpd:
        row["bpd_ode"] = trainer.bits_per_dim()
    save_image_grid(x[:100], out / f"samples_{name}.png", nrow=10, scale=2)
    if args.grids:
        Path(args.grids).mkdir(parents=True, exist_ok=True)
        save_image_grid(x[:100], Path(args.grids) / f"first_run_28px_{name}.png", nrow=10, scale=2)
    row["x"], row["y"] = x, y
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training time per variant")
    p.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="budget in process CPU time or wall time"
    )
    p.add_argument("--variants", default="eps,v,edm")
    p.add_argument("--samples", type=int, default=200, help="class-conditional samples per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--guidance",
        default="1",
        help="comma-separated classifier-free guidance weights w also scored (accuracy only; '' for none)",
    )
    p.add_argument(
        "--methods", default="", help="comma-separated other samplers also scored (accuracy, saturated tiles)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig option for every variant (repeatable), e.g. --set schedule=cosine",
    )
    p.add_argument("--grids", default="", help="folder for a copy of each variant's sample grid (PNG)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--ode-bpd", action="store_true", help="also the PF-ODE bits/dim (slow)")
    p.add_argument(
        "--data",
        default="upsampled",
        help="upsampled (scikit-learn digits upsampled to 28x28), standin (the harder handwriting "
        "stand-in of benchmarks/handwritten_standin.py) or a keras-layout .npz file",
    )
    p.add_argument("--cache", type=Path, default=None, help="folder caching the reference classifier")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_first_run_28px.md"))
    args = p.parse_args()
    args.guidance = [float(w) for w in args.guidance.split(",") if w.strip()]
    args.methods = [m for m in args.methods.split(",") if m.strip()]
    for method in args.methods:  # before any training, not after it
        try:
            canonical_method(method)
        except ValueError as err:
            raise SystemExit(f"--methods: {err}") from None
    args.overrides = parse_overrides(args.set)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    for v in names:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {sorted(VARIANTS)}")

    work = Path(tempfile.mkdtemp(prefix="first_run_28px_"))
    if args.data == "upsampled":
        data_path = make_keras_digits(work / "digits28.npz", args.seed)
    elif args.data == "standin":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from handwritten_standin import make_standin

        data_path = make_standin(work / "standin28.npz", seed=args.seed)
    else:
        data_path = Path(args.data)
    data = load_dataset(data_path)
    clf = reference_classifier(
        data.train, data.train_labels, epochs=8, seed=args.seed, cache_dir=args.cache or work / "cache"
    )
    real = classifier_report(clf, data.test, data.test, data.test_labels, floor_images=data.train)
    limits = tile_limits(data.train)
    print(f"data: {data_path} {data.info()}; reference classifier held-out accuracy {real['accuracy']:.3f}")

    rows = []
    for name in names:
        row = run_variant(name, data_path, work, args, limits, clf, data)
        row.update(classifier_report(clf, row.pop("x"), data.test, row.pop("y"), floor_images=data.train))
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    _write(args, rows, real, work, data.info())


def _write(args: argparse.Namespace, rows: list[dict], real: dict, work: Path, info: dict) -> None:
    ode = any("bpd_ode" in r for r in rows)
    head = "| variant | train steps | accuracy |"
    head += "".join(f" accuracy, CFG w = {w:g} |" for w in args.guidance)
    head += " Frechet | floor | bpd (bound) |" + (" bpd (ODE) |" if ode else "")
    head += " saturated tiles | rough | raw range |"
    head += "".join(f" accuracy / saturated, {m} |" for m in args.methods)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [
            r["variant"],
            str(r["steps"]),
            f"{r['accuracy']:.3f}",
            *(f"{r[f'accuracy_w{w:g}']:.3f}" for w in args.guidance),
            f"{r['frechet']:.3f}",
            f"{r['frechet_floor']:.3f}",
            f"{r['bpd']:.3f}",
        ]
        if ode:
            cells.append(f"{r.get('bpd_ode', float('nan')):.3f}")
        cells += [f"{r['saturated']:.3f}", f"{r['rough']:.3f}", f"[{r['raw_min']:.2f}, {r['raw_max']:.2f}]"]
        cells += [f"{r[f'accuracy_{m}']:.3f} / {r[f'saturated_{m}']:.3f}" for m in args.methods]
        lines.append("| " + " | ".join(cells) + " |")
    cmd = "PYTHONPATH=src python benchmarks/first_run_28px.py " + " ".join(sys.argv[1:])
    text = [
        "# First run on 28x28 digits in keras layout (`benchmarks/first_run_28px.py`)",
        "",
        f"Command: `{cmd.strip()}` on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"{args.minutes:g} minute(s) of {'process CPU' if args.clock == 'cpu' else 'wall'} time of training "
        f"per variant, {args.samples} class-conditional samples "
        "(labels cycling over the 10 classes), sampler and every other option at the `TrainConfig` defaults"
        + (f" except {args.overrides}" if args.overrides else "")
        + ".",
        "",
        DATA_TEXT.get(args.data, f"Data: `{args.data}`")
        + f" ({info['num_train']} train / {info['num_test']} test).  "
        "The reference classifier is trained on "
        f"`x_train` only; its held-out accuracy is {real['accuracy']:.3f}.  `floor` is the Frechet distance "
        "of `x_train` against `x_test`.  Saturated tiles: flat white (more white pixels than any training "
        "image) or noise (over 5% of pixels outside [-1.1, 1.1], or 1.5x rougher than the roughest training "
        "image; `rough`: the fraction rougher than every training image).  "
        "See the script's docstring for the "
        "variants (`edm`: EDM's SDE, c_in, c_noise and the v target).",
        "",
        *lines,
        "",
        f"Sample grids were written to {work}"
        + (f" and copied to `{args.grids}` (column c holds class c)." if args.grids else "."),
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Inpainting held-out digits: projection (Song et al. 2021, App. I.2) against DPS (Chung et al.
2023, Algorithm 1), through the ``scoresde inpaint`` command, side by side in one run.

For each mask (``center``, ``left``) both methods fill ``--num`` held-out images ``--samples``
times; the table gives the mean squared error on the hidden pixels of one sample and of the mean
of the samples, the mean-training-image baseline, the largest change of a known pixel and the
wall time.  A second table sweeps DPS's step size ``zeta`` on a smaller set.  Writes
``docs/bench_inpaint_digits.md``.  Usage::

    PYTHONPATH=src python benchmarks/inpaint_digits.py --checkpoint runs/bench_digits
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scoresde.cli.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]


def run(checkpoint: str, out: Path, args: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    code = cli(["inpaint", "--checkpoint", checkpoint, "--out", str(out), *args])
    if code != 0:
        raise SystemExit(f"scoresde inpaint {' '.join(args)} failed with code {code}")
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a digits run folder or checkpoint")
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--projection-steps", type=int, default=200)
    p.add_argument("--dps-steps", type=int, default=1000)
    p.add_argument("--zetas", default="0.1,0.2,0.5", help="DPS step sizes of the sweep")
    p.add_argument("--sweep-num", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_inpaint_digits.md"))
    a = p.parse_args()
    common = ["--num", str(a.num), "--samples", str(a.samples), "--threads", str(a.threads)]
    header = (
        "| mask | method | steps | MSE hidden, per sample | MSE hidden, mean of samples | mean image | "
        "largest change of a known pixel | wall (s) |"
    )
    rows = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for mask in ("center", "left"):
            settings = [
                ("projection, reverse SDE", ["--steps", str(a.projection_steps)], a.projection_steps),
                ("DPS, zeta 0.2", ["--steps", str(a.dps_steps), "--dps", "--dps-zeta", "0.2"], a.dps_steps),
            ]
            for name, extra, steps in settings:
                m, sec = run(
                    a.checkpoint, tmp_path / f"{mask}-{len(rows)}", [*common, "--mask", mask, *extra]
                )
                cells = [
                    mask,
                    name,
                    str(steps),
                    f"{m['mse_hidden']:.3f}",
                    f"{m['mse_hidden_of_sample_mean']:.3f}",
                    f"{m['mse_hidden_mean_image_baseline']:.3f}",
                    f"{m['max_abs_error_known']:.2f}",
                    f"{sec:.0f}",
                ]
                rows.append(f"| {' | '.join(cells)} |")
                print(rows[-1], flush=True)
        sweep = ["| zeta | MSE hidden, per sample | largest change of a known pixel |", "|---:|---:|---:|"]
        for zeta in a.zetas.split(","):
            args = [
                "--num",
                str(a.sweep_num),
                "--samples",
                "1",
                "--threads",
                str(a.threads),
                "--mask",
                "center",
            ]
            m, _ = run(
                a.checkpoint,
                tmp_path / f"zeta-{zeta}",
                [*args, "--steps", str(a.dps_steps), "--dps", "--dps-zeta", zeta],
            )
            sweep.append(f"| {zeta} | {m['mse_hidden']:.3f} | {m['max_abs_error_known']:.2f} |")
            print(sweep[-1], flush=True)
    text = [
        "# Inpainting held-out digits: projection vs DPS (`benchmarks/inpaint_digits.py`)",
        "",
        "Command: `PYTHONPATH=src python benchmarks/inpaint_digits.py "
        f"--checkpoint {a.checkpoint} --num {a.num} --samples {a.samples} --threads {a.threads}`.  "
        f"{a.num} held-out digits x {a.samples} samples, data in [-1, 1], CPU; each row is one "
        "`scoresde inpaint` run (seed 0).",
        "",
        *rows,
        "",
        f"DPS step size on the centre mask ({a.sweep_num} images, 1 sample each, {a.dps_steps} steps):",
        "",
        *sweep,
        "",
    ]
    Path(a.out).write_text("\n".join(text))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

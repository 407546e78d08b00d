"""Inpainting held-out digits: projection (Song et al. 2021, App. I.2), DPS (Chung et al.
2023, Algorithm 1) and twisted SMC (Wu et al. 2023, TDS; optionally the gradient-free MCGdiff of
Cardoso et al. 2023), through the ``scoresde inpaint`` command, side by side in one run.

For each mask (``--masks``, default ``center`` and ``left``) every method fills the same
``--num`` held-out images ``--samples`` times (same seed, so the same images and masks); the
table gives the mean squared error on the hidden pixels of one sample and of the mean of the
samples, the mean-training-image baseline, the largest change of a known pixel, the network
evaluations (batched calls, and per sample: times ``K`` for SMC) and the wall time.  SMC
conditions on the known pixels noise-free (``s_y = 0``, what ``scoresde inpaint --smc`` does).
A second table sweeps DPS's step size ``zeta`` on a smaller set (``--sweep-num 0``: skipped).
Writes ``docs/bench_inpaint_digits.md``.  Usage::

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
    p.add_argument("--masks", default="center,left", help="masks (comma-separated)")
    p.add_argument("--projection-steps", type=int, default=200)
    p.add_argument("--dps-steps", type=int, default=1000)
    p.add_argument(
        "--smc-particles", default="8,32", help="TDS particle counts K (comma-separated; '' for none)"
    )
    p.add_argument("--smc-steps", type=int, default=200)
    p.add_argument("--smc-grid", default="logsnr", help="time grid of the SMC runs")
    p.add_argument("--mcgdiff-particles", default="", help="MCGdiff particle counts K (comma-separated)")
    p.add_argument("--smc-clip", default="none", help="--clip-denoised of the TDS runs (none, clip, dynamic)")
    p.add_argument("--no-baselines", action="store_true", help="skip the projection and DPS rows")
    p.add_argument("--zetas", default="0.1,0.2,0.5", help="DPS step sizes of the sweep")
    p.add_argument("--sweep-num", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_inpaint_digits.md"))
    a = p.parse_args()
    common = ["--num", str(a.num), "--samples", str(a.samples), "--threads", str(a.threads)]
    header = (
        "| mask | method | steps | NFE (batched) | network evaluations per sample | MSE hidden, per sample "
        "| MSE hidden, mean of samples | mean image | largest change of a known pixel | final ESS / K "
        "| wall (s) |"
    )
    rows = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    smc = ["--steps", str(a.smc_steps), "--grid", a.smc_grid, "--smc"]
    settings = [
        ("projection, reverse SDE", ["--steps", str(a.projection_steps)], a.projection_steps, 1),
        ("DPS, zeta 0.2", ["--steps", str(a.dps_steps), "--dps", "--dps-zeta", "0.2"], a.dps_steps, 1),
    ]
    if a.no_baselines:
        settings = []
    clip = "" if a.smc_clip == "none" else f", x0 {a.smc_clip}"
    tds = [*smc, "--clip-denoised", a.smc_clip]
    for k in filter(None, a.smc_particles.split(",")):
        settings.append((f"SMC (TDS{clip}), K = {k}", [*tds, "--particles", k], a.smc_steps, int(k)))
    for k in filter(None, a.mcgdiff_particles.split(",")):
        extra = [*smc, "--particles", k, "--smc-proposal", "mcgdiff"]
        settings.insert(
            2 if not a.no_baselines else 0, (f"SMC (MCGdiff), K = {k}", extra, a.smc_steps, int(k))
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for mask in a.masks.split(","):
            for name, extra, steps, k in settings:
                m, sec = run(
                    a.checkpoint, tmp_path / f"{mask}-{len(rows)}", [*common, "--mask", mask, *extra]
                )
                ess = f"{m['smc']['ess_final_mean'] / k:.2f}" if "smc" in m else "-"
                cells = [
                    mask,
                    name,
                    str(steps),
                    str(m["nfe"]),
                    str(m["nfe"] * k),
                    f"{m['mse_hidden']:.3f}",
                    f"{m['mse_hidden_of_sample_mean']:.3f}",
                    f"{m['mse_hidden_mean_image_baseline']:.3f}",
                    f"{m['max_abs_error_known']:.2f}",
                    ess,
                    f"{sec:.0f}",
                ]
                rows.append(f"| {' | '.join(cells)} |")
                print(rows[-1], flush=True)
        sweep = ["| zeta | MSE hidden, per sample | largest change of a known pixel |", "|---:|---:|---:|"]
        for zeta in a.zetas.split(",") if a.sweep_num > 0 else []:
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
    command = (
        "PYTHONPATH=src python benchmarks/inpaint_digits.py "
        f"--checkpoint {a.checkpoint} --num {a.num} --samples {a.samples} --threads {a.threads} "
        f"--masks {a.masks} --smc-particles '{a.smc_particles}' --smc-steps {a.smc_steps} "
        f"--smc-grid {a.smc_grid}"
    )
    if a.mcgdiff_particles:
        command += f" --mcgdiff-particles {a.mcgdiff_particles}"
    if a.smc_clip != "none":
        command += f" --smc-clip {a.smc_clip}"
    if a.no_baselines:
        command += " --no-baselines"
    if a.sweep_num == 0:
        command += " --sweep-num 0"
    text = [
        "# Inpainting held-out digits: projection, DPS and SMC (`benchmarks/inpaint_digits.py`)",
        "",
        f"Command: `{command}`.  "
        f"{a.num} held-out digits x {a.samples} samples, data in [-1, 1], CPU; each row is one "
        "`scoresde inpaint` run (seed 0: the same images, masks and noise seed for every method). "
        "SMC conditions noise-free on the known pixels (`s_y = 0`).",
        "",
        *rows,
        "",
    ]
    if len(sweep) > 2:
        text += [
            f"DPS step size on the centre mask ({a.sweep_num} images, 1 sample each, {a.dps_steps} steps):",
            "",
            *sweep,
            "",
        ]
    Path(a.out).write_text("\n".join(text))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

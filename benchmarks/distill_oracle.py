"""Consistency distillation on exact oracles: a 1- and 2-step student against our best 4-NFE solvers.

Problems (VP SDE, beta 0.1 -> 20): the 2-D ring of 8 Gaussians of ``benchmarks/samplers.py``
and a 16-D random mixture of 8 Gaussians (covariance eigenvalues in [1e-4, 0.25], seed 0).
The teacher is the exact score (``AnalyticScore``), so the student's error is all its own and
the reference flow map is dopri5 at rtol = atol = 1e-7.

- pathwise: RMS over 512 prior draws of ``|student(x_T) - ODE(x_T)|`` for the 1-step student
  and for our 4-NFE ODE solvers (DPM-Solver++(2M), (3M), UniPC, DEIS on the logsnr grid: 3 steps
  and the final denoising step, or 4 steps without it) from the same ``x_T``;
- distributional (2-step sampling re-noises, so it has no pathwise target): sliced
  Wasserstein-1 distance (128 directions) of 4096 samples to 4096 exact samples, beside the
  floor (two independent exact sets).

The student: ``ConsistencyModel`` on an MLP (256 wide, 3 residual layers, x0 prediction,
sigma_data 0.5), consistency distillation with the teacher's Heun step on the edm grid of
N = 18 scales, pseudo-Huber distance, inverse-step weighting, AdamW lr 1e-3 with a cosine decay,
batch 256, EMA 0.999.

Run: ``PYTHONPATH=src taskset -c 0 python benchmarks/distill_oracle.py`` (writes
``docs/bench_distill.md``); ``--steps`` sets the distillation steps, ``--quick`` a short check.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import scoresde as ss
from scoresde.distill import ConsistencyLoss, ConsistencyModel, distill, flow_map
from scoresde.sampling.grids import time_grid

# (method, steps, final denoising step): 4 NFE each.
SOLVERS = tuple(
    (m, k, k == 3) for m in ("dpm_solver++_2m", "dpm_solver++_3m", "unipc", "deis") for k in (3, 4)
)


def problems() -> dict[str, ss.GaussianMixture]:
    g = torch.Generator().manual_seed(0)
    return {
        "ring8 (2-D)": ss.GaussianMixture.ring(8, 2.0, 0.05),
        "mix8 (16-D)": ss.GaussianMixture.random(16, 8, 1e-4, 0.25, generator=g),
    }


def sliced_w1(a: torch.Tensor, b: torch.Tensor, directions: int = 128, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two equal-size samples."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(a.shape[1], directions, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a.double() @ v, dim=0)
    pb, _ = torch.sort(b.double() @ v, dim=0)
    return float((pa - pb).abs().mean())


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).sum(1).mean().sqrt())


def run_problem(name: str, gmm: ss.GaussianMixture, steps: int, n_path: int, n_dist: int) -> list[str]:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm, sde)
    d = gmm.dim
    x_T = sde.prior_sample((n_path, d), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s_end = float(sde.marginal(torch.tensor(sde.eps, dtype=torch.float64))[0])
    ref = flow_map(oracle, x_T, sde.T) * s_end
    exact = gmm.sample(n_dist, generator=torch.Generator().manual_seed(2))
    floor = sliced_w1(exact, gmm.sample(n_dist, generator=torch.Generator().manual_seed(3)))
    x_T_dist = sde.prior_sample((n_dist, d), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rows = []
    for method, k, den in SOLVERS:
        out = ss.sample(oracle, x_T=x_T, method=method, steps=k, grid="logsnr", denoise=den)
        dist = ss.sample(oracle, x_T=x_T_dist, method=method, steps=k, grid="logsnr", denoise=den).x
        label = f"{method} ({k} steps{' + denoise' if den else ''})"
        rows.append((label, out.nfe, rms(out.x, ref), sliced_w1(dist, exact), 0.0))
    torch.manual_seed(0)
    net = ss.MLP(d, hidden=256, depth=3)
    student = ConsistencyModel(ss.ScoreModel(net, sde, prediction="x0", sigma_data=0.5))
    loss = ConsistencyLoss(
        time_grid(sde, 18, "edm"), oracle, distance="pseudo_huber", weighting="inverse_step"
    )

    def data(b: int, g: torch.Generator) -> torch.Tensor:
        return gmm.sample(b, generator=g).float()

    res = distill(oracle, data, student=student, steps=steps, batch_size=256, lr=1e-3, loss=loss)
    cm = res.model.double()
    for k in (1, 2):
        path = ss.sample(cm, x_T=x_T, method="consistency", steps=k, denoise=False, seed=5, grid="edm")
        dist = ss.sample(cm, x_T=x_T_dist, method="consistency", steps=k, denoise=False, seed=6, grid="edm")
        pathwise = rms(path.x, ref) if k == 1 else float("nan")
        rows.append(
            (
                f"consistency student, {k} step{'s' * (k > 1)}",
                k,
                pathwise,
                sliced_w1(dist.x, exact),
                res.seconds,
            )
        )
    best4 = min(r[2] for r in rows[: len(SOLVERS)])
    best4_sw = min(r[3] for r in rows[: len(SOLVERS)])
    lines = [
        f"### {name}",
        "",
        f"Distillation: {steps} steps in {res.seconds:.0f} s. "
        f"Floor of the sliced W1 (two exact sets): {floor:.4f}.",
        "",
        "| sampler | NFE | pathwise RMS | / best 4-NFE | sliced W1 | / best 4-NFE |",
        "|---|---|---|---|---|---|",
    ]
    for label, nfe, p, sw, _ in rows:
        ratio = "" if p != p else f"{p / best4:.2f}"
        lines.append(f"| {label} | {nfe} | {p:.4f} | {ratio} | {sw:.4f} | {sw / best4_sw:.2f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="200 steps, small sets: checks the script runs")
    parser.add_argument("--out", default="docs/bench_distill.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, n_path, n_dist = (200, 64, 512) if args.quick else (args.steps, 512, 4096)
    start = time.perf_counter()
    body = []
    for name, gmm in problems().items():
        body += run_problem(name, gmm, steps, n_path, n_dist)
        print("\n".join(body[-12:]), flush=True)
    head = [
        "# Consistency distillation on exact oracles",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"Machine: {platform.processor() or platform.machine()}, one thread, torch {torch.__version__}; "
        f"total {time.perf_counter() - start:.0f} s. Command: `python benchmarks/distill_oracle.py "
        f"--steps {steps}{' --quick' if args.quick else ''}`.",
        "",
    ]
    Path(args.out).write_text("\n".join(head + body))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

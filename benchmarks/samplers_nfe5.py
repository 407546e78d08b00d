"""What was tried for NFE 5 on the anisotropic problems of ``benchmarks/samplers.py`` (not kept).

Same problems, VP SDE, oracle, ``t_end = 1e-3`` and held-out ``x_T`` (the samplers benchmark's
200 draws, seed 1) as that benchmark; RMS endpoint error per dimension against dopri5
(rtol = atol = 1e-10).  Pilots: 1024 prior draws, seed 12345 (never the held-out draws).

1. Is the error the bulk's or a few outliers'?  Median per-sample error beside the RMS (UniPC-3,
   uniform grid).
2. DPM-Solver-v3 (EMS from 256 pilot trajectories, seed 7) on a grid optimised for it
   (``optimize_grid``, pilot 512, 3 sweeps, 8 evaluations per time), per option.
3. A fitted multistep solver: ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} sum_j c_ij
   D_{i-j}`` over the last three data predictions ``D``, the weights ``c_i`` fitted by least
   squares to the pilot's reference trajectory at the grid times (greedy, step by step), beside
   UniPC on the same named grid.
4. The same solver form (DDIM step plus learned corrections) with its weights *and* interior
   times fitted jointly to the pilot's endpoints by L-BFGS through the oracle (6 outer
   iterations), in the spirit of learned solvers (Shaul et al. 2024, "Bespoke Solvers").

Run: ``PYTHONPATH=src python benchmarks/samplers_nfe5.py`` (writes ``docs/bench_samplers_nfe5.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import scoresde as ss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import T_END, problems

STEPS = 5
HISTORY = 3
PEER = {"aniso6 (32": 1.90e-1, "aniso6 (64": 1.64e-1}  # best peer at NFE 5, docs/bench_samplers.md


def rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).pow(2).mean().sqrt())


def reference_path(oracle: ss.AnalyticScore, x_T: torch.Tensor, ts: torch.Tensor) -> list[torch.Tensor]:
    """The reference solution at every grid time (dopri5 from time to time)."""
    out, x = [x_T.double()], x_T.double()
    for i in range(len(ts) - 1):
        x = ss.sample(
            oracle, x_T=x, method="dopri5", grid=ts[i : i + 2], denoise=False, rtol=1e-9, atol=1e-9
        ).x
        out.append(x)
    return out


def fitted_multistep(
    oracle: ss.AnalyticScore,
    sde: ss.VPSDE,
    x_T: torch.Tensor,
    ts: torch.Tensor,
    coef: list[torch.Tensor] | None = None,
    path: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the least-squares multistep solver; fit its weights when ``path`` is given."""
    a, s = sde.marginal(ts)
    x, hist, fitted = x_T.double(), [], []
    for i in range(len(ts) - 1):
        hist.append(oracle.denoise(x, ts[i].expand(x.shape[0])))
        base = (s[i + 1] / s[i]) * x
        feats = [a[i + 1] * h for h in hist[-HISTORY:]][::-1]
        if path is not None:
            f = torch.stack([v.reshape(-1) for v in feats], 1)
            c = torch.linalg.lstsq(f, (path[i + 1] - base).reshape(-1, 1)).solution[:, 0]
            fitted.append(c)
        else:
            c = coef[i]
        x = base + sum(cj * v for cj, v in zip(c, feats))
    return x, fitted


def learned(
    oracle: ss.AnalyticScore, sde: ss.VPSDE, x_T: torch.Tensor, lam_in: torch.Tensor, ends: torch.Tensor, coef
) -> torch.Tensor:
    """DDIM steps plus learned corrections on the last data predictions, differentiable in all."""
    lam = torch.cat([ends[:1], lam_in, ends[1:]])
    ts = sde.t_of_lambda(lam)
    a, s = sde.marginal(ts)
    x, hist = x_T.double(), []
    for i in range(len(ts) - 1):
        hist.append(oracle.denoise(x, ts[i].expand(x.shape[0])))
        feats = [a[i + 1] * h for h in hist[-HISTORY:]][::-1]
        h = lam[i + 1] - lam[i]
        x = (s[i + 1] / s[i]) * x + a[i + 1] * (1 - torch.exp(-h)) * hist[-1]
        x = x + sum(cj * v for cj, v in zip(coef[i], feats))
    return x


def fit_jointly(
    oracle: ss.AnalyticScore,
    sde: ss.VPSDE,
    x_p: torch.Tensor,
    ref_p: torch.Tensor,
    x_T: torch.Tensor,
    ref: torch.Tensor,
    iterations: int = 6,
) -> tuple[float, list[float]]:
    """Fit :func:`learned`'s weights and interior times to the pilot's endpoints by L-BFGS from
    the uniform grid; returns the final pilot error and the held-out error after each iteration."""
    lam0 = sde.lambda_t(ss.time_grid(sde, STEPS, "uniform", t_end=T_END))
    ends = lam0[[0, -1]]
    lam_in = lam0[1:-1].clone().requires_grad_(True)
    coef = torch.zeros(STEPS, HISTORY, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [coef, lam_in], lr=0.5, max_iter=20, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (learned(oracle, sde, x_p, lam_in, ends, coef) - ref_p).pow(2).mean()
        loss.backward()
        return loss

    held = []
    for _ in range(iterations):
        opt.step(closure)
        with torch.no_grad():
            lo, hi = float(ends[0]) + 1e-3, float(ends[1]) - 1e-3
            lam_in.data = torch.sort(lam_in.data).values.clamp(lo, hi)
            held.append(rms(learned(oracle, sde, x_T, lam_in, ends, coef), ref))
    with torch.no_grad():
        pilot_err = rms(learned(oracle, sde, x_p, lam_in, ends, coef), ref_p)
    return pilot_err, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/bench_samplers_nfe5.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()
    sde = ss.VPSDE()
    rows: list[str] = []
    for pname, (gmm, n) in problems(1000, 200).items():
        key = next((k for k in PEER if pname.startswith(k)), None)
        if key is None:
            continue
        peer = PEER[key]
        oracle = ss.AnalyticScore(gmm, sde)
        x_T = torch.randn(n, gmm.dim, generator=torch.Generator().manual_seed(1))
        ref = ss.sample(
            oracle, x_T=x_T.double(), method="dopri5", steps=1, t_end=T_END, denoise=False,
            rtol=1e-10, atol=1e-10,
        ).x  # fmt: skip
        x_p = torch.randn(1024, gmm.dim, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)

        def row(what: str, err: float, note: str = "", pname: str = pname, peer: float = peer) -> None:
            rows.append(f"| {pname} | {what} | {err:.3e} | {err / peer:.2f} | {note} |")
            print(rows[-1], flush=True)

        # 1. bulk or outliers
        res = ss.sample(
            oracle, x_T=x_T, method="unipc", steps=STEPS, grid="uniform", t_end=T_END, denoise=False, order=3
        )
        per = (res.x.double() - ref).pow(2).mean(1)
        row(
            "UniPC-3 uniform (for scale)",
            rms(res.x, ref),
            f"median per-sample error {float(per.median().sqrt()):.3f}",
        )
        # 2. DPM-Solver-v3 on its optimised grid
        ems = ss.sampling.compute_ems(
            oracle, (gmm.dim,), generator=torch.Generator().manual_seed(7), pilot=256, knots=200, t_end=T_END
        )
        for label, o in (
            ("", {}),
            (", order 2", {"order": 2}),
            (", pseudo corrector", {"corrector_pseudo": True}),
        ):
            og = ss.sampling.optimize_grid(
                oracle, sde, STEPS, "dpm_solver_v3", (gmm.dim,), t_end=T_END, pilot=512, seed=12345, sweeps=3,
                evals=8, options={"ems": ems, **o},
            )  # fmt: skip
            x = ss.sample(
                oracle, x_T=x_T, method="dpm_solver_v3", grid=og.times, denoise=False, ems=ems, **o
            ).x
            row(
                f"dpm_solver_v3{label}, optimised grid",
                rms(x, ref),
                f"pilot {og.pilot_error:.3e} [{og.start}]",
            )
        # 3. least-squares multistep weights on named grids
        for g in ("uniform", "logsnr", "quadratic"):
            ts = ss.time_grid(sde, STEPS, g, t_end=T_END)
            _, coef = fitted_multistep(oracle, sde, x_p, ts, path=reference_path(oracle, x_p, ts))
            x, _ = fitted_multistep(oracle, sde, x_T.double(), ts, coef=coef)
            base = ss.sample(oracle, x_T=x_T, method="unipc", grid=ts, denoise=False).x
            row(f"least-squares multistep, {g}", rms(x, ref), f"UniPC on the same grid {rms(base, ref):.3e}")
        # 4. weights and times jointly by L-BFGS
        ref_p = ss.sample(
            oracle, x_T=x_p, method="dopri5", steps=1, t_end=T_END, denoise=False, rtol=1e-8, atol=1e-8
        ).x
        pilot_err, held = fit_jointly(oracle, sde, x_p, ref_p, x_T.double(), ref)
        row(
            "weights and times by L-BFGS (6 iterations)",
            held[-1],
            f"final pilot error {pilot_err:.3e}; held out after each iteration "
            + ", ".join(f"{v:.3f}" for v in held),
        )
    lines = [
        "# NFE 5 on the anisotropic problems: what was tried (not kept)",
        "",
        "Generated by `PYTHONPATH=src python benchmarks/samplers_nfe5.py` (one CPU thread). See the "
        "module docstring for each row. Error: RMS per dimension on the samplers benchmark's 200 "
        "held-out draws; `/ peer`: divided by the best peer at NFE 5 in "
        "[bench_samplers](bench_samplers.md) (UniPC bh2 of diffusers: 1.90e-1 on 32-D, 1.64e-1 on 64-D).",
        "",
        "| problem | method | error | / peer | note |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Total time: {time.time() - t_start:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

"""Benchmark: per-evaluation cost and NFE of the PF-ODE likelihood, ours against the paper's loop.

The problem of issue 22 (item 4): an MLP 3x256 (random weights, eps-prediction, VP SDE) on 64-D
points, 256 points, one Rademacher probe, rtol = atol = 1e-5, one thread.  Side by side in one
process, interleaved (each round runs every row once; the best round is kept, so a busy machine
inflates all rows alike):

- *paper loop*: the route of score_sde_pytorch's ``likelihood.py``: scipy ``solve_ivp`` RK45 on
  the flattened state ``(x, delta)``, a torch -> numpy round trip at every evaluation, the drift
  and the Hutchinson term from one forward pass and one vector-Jacobian product (the paper's code
  runs the network twice per evaluation, once for the drift and once inside the divergence; this
  loop is the faster variant, so the ratio is conservative).
- *torchdiffeq dopri5*: the route scoresde took before (``torchdiffeq.odeint`` on the tuple state,
  the per-sample norm), through the same field as ours.
- *ours*: ``log_likelihood`` with ``AdaptiveIntegrator`` (the library's own Dormand-Prince loop,
  ``scoresde/flow/shared_step.py``) under the ``batch`` and ``per_sample`` norms, and ``PerSample``.
- *bare evaluation*: one forward pass and one vector-Jacobian product, nothing else: the floor of
  every row's per-evaluation cost.

Per-evaluation cost = wall time of the whole solve / its evaluations (the solver's own work
included).  Run (pin one core):

    taskset -c 0 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/likelihood_speed.py \\
        --out docs/bench_likelihood_speed.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import scoresde as ss
from scoresde.flow.likelihood import draw_probes
from scoresde.flow.norm import per_sample_norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_likelihood import paper_solve


@dataclass(frozen=True)
class TorchdiffeqDopri5:
    """The former route: ``torchdiffeq.odeint`` dopri5 with the per-sample norm (an Integrator)."""

    rtol: float | tuple[float, ...]
    atol: float | tuple[float, ...]

    def solve(self, func, state, u0, u1):
        from torchdiffeq import odeint

        u = torch.tensor([u0, u1], dtype=state[0].dtype)
        rtol = self.rtol if isinstance(self.rtol, tuple) else (self.rtol, 0.0)
        out = odeint(
            func,
            state,
            u,
            method="dopri5",
            rtol=rtol,
            atol=self.atol,
            options={"step_t": u[1:], "norm": per_sample_norm},
        )
        return tuple(o[-1] for o in out)


def paper_loop(model, sde, x: torch.Tensor, probe: torch.Tensor, tol: float) -> int:
    """scipy RK45 on the flattened state with a numpy round trip (score_sde_pytorch's route)."""
    return paper_solve(model, sde, x, probe, tol)[2]


def bare_evaluation(model, x: torch.Tensor, probe: torch.Tensor) -> int:
    """One forward pass and one vector-Jacobian product (the floor of every row)."""
    tt = torch.full((x.shape[0],), 0.5, dtype=x.dtype)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = model.velocity(xg, tt)
        (g,) = torch.autograd.grad(v, xg, probe)
    (g * probe).sum(1)
    return 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(args.dim, hidden=args.hidden, depth=3), ss.VPSDE(), prediction="eps").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sde = model.sde
    x = 0.5 * torch.randn(args.points, args.dim, generator=torch.Generator().manual_seed(1))
    probe = draw_probes(x, 1, "rademacher", torch.Generator().manual_seed(2))  # (1, B, D)
    tol = args.tol

    def ours(integrator) -> Callable[[], int]:
        def run() -> int:
            res = ss.log_likelihood(
                model, sde, x, integrator=integrator, divergence=ss.Hutchinson(probes=probe)
            )
            return res.nfe

        return run

    rows: dict[str, Callable[[], int]] = {
        "bare evaluation (forward + one VJP)": lambda: bare_evaluation(model, x, probe[0]),
        "paper loop: scipy RK45, flattened state, numpy round trip": lambda: paper_loop(
            model, sde, x, probe[0], tol
        ),
        "torchdiffeq dopri5, per_sample norm (the former route)": ours(TorchdiffeqDopri5(tol, tol)),
        "ours: AdaptiveIntegrator dopri5, norm=batch": ours(
            ss.AdaptiveIntegrator(rtol=tol, atol=tol, norm="batch")
        ),
        "ours: AdaptiveIntegrator dopri5, norm=per_sample": ours(ss.AdaptiveIntegrator(rtol=tol, atol=tol)),
        "ours: PerSample dopri5 (per-sample steps)": ours(ss.PerSample(rtol=tol, atol=tol)),
    }
    best: dict[str, float] = {k: math.inf for k in rows}
    nfes: dict[str, int] = {}
    wall: dict[str, float] = {}
    for r in range(args.rounds):
        for name, fn in rows.items():
            reps = 20 if name.startswith("bare") else 1
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps):
                nfe = fn()
            per = (time.process_time() - c0) / (reps * nfe)
            wall[name] = min(wall.get(name, math.inf), (time.perf_counter() - t0) / (reps * nfe))
            nfes[name] = nfe
            best[name] = min(best[name], per)
            print(f"round {r}: {name}: {nfe} NFE, {1e3 * per:.3f} ms CPU/eval", flush=True)
    paper = "paper loop: scipy RK45, flattened state, numpy round trip"
    bare = best["bare evaluation (forward + one VJP)"]
    lines = [
        "# PF-ODE likelihood: per-evaluation cost and NFE, ours against the paper's loop "
        "(`benchmarks/likelihood_speed.py`), CPU",
        "",
        f"Command: `taskset -c 0 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/likelihood_speed.py "
        f"--rounds {args.rounds}`  ",
        f"torch {torch.__version__}, {platform.machine()}, 1 thread pinned to one core.  **The machine was "
        "shared with other jobs** (about 8 other sessions on 2 cores): absolute times are inflated and "
        "noisy.  Times are CPU time of the process (`time.process_time`, one thread: time slices "
        "lost to other jobs do not count), the rows interleaved, best of "
        f"{args.rounds} rounds each; compare ratios.  Wall-clock per evaluation (best round) is "
        "given too.",
        "",
        f"MLP 3x{args.hidden} (random weights, eps-prediction, VP SDE) on {args.dim}-D points, "
        f"{args.points} points, one Rademacher probe, rtol = atol = {tol:g}.",
        "",
        "| solve | NFE | CPU ms / evaluation | / paper loop (per eval) | over a bare evaluation | "
        "CPU s per solve | / paper loop (solve) | wall ms / evaluation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in rows:
        per = best[name]
        if name.startswith("bare"):
            lines.append(
                f"| {name} | 1 | {1e3 * per:.3f} | {per / best[paper]:.2f} | 0 | | | {1e3 * wall[name]:.3f} |"
            )
            continue
        solve = per * nfes[name]
        lines.append(
            f"| {name} | {nfes[name]} | {1e3 * per:.3f} | **{per / best[paper]:.2f}** | "
            f"{100 * (per / bare - 1):+.0f}% | {solve:.2f} | {solve / (best[paper] * nfes[paper]):.2f} | "
            f"{1e3 * wall[name]:.3f} |"
        )
    lines += [
        "",
        "NFE differ at the same nominal tolerance because the error norms differ: scipy takes one RMS "
        "over the whole flattened state (the 64 x 256 entries of x outweigh the 256 log-density "
        "entries, and rtol applies to the accumulated log-density too); ours control the "
        "log-density in absolute nats (atol only) with the maximum over the state's components "
        "(`batch`) or over samples too (`per_sample`).  `target_se` chooses the tolerance from the "
        "error it measures, not from the nominal value (see docs/bench_likelihood_target_se.md).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

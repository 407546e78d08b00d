"""How low can a bespoke solver go on a learned model? Its error on the very draws it is fitted to.

Issue 26 asks for our pathwise error at <= 0.5x the best peer's on learned models, and, where
that is not met, why.  ``benchmarks/samplers_learned.py`` fits bespoke non-stationary solvers
(Shaul et al. 2024, BNS; :func:`scoresde.sampling.fit_bespoke`) on training draws and scores
them on held-out ones.  This script asks the question without generalisation in the way: on
``--draws`` prior draws (seed ``--seed``, labels cycling over the classes), it

1. runs every peer configuration and every solver of ours that ``samplers_learned`` runs, on
   those draws, against a tight dopri5 solve of the same network (``--ref-tol``), and keeps the
   best peer's RMS error per budget;
2. fits a bespoke solver *on those same draws* (full batch, the iterate of least error on them
   kept: no holdout, deliberately over-fitting) from the same candidate starts as
   ``samplers_learned`` (:data:`samplers_learned.BESPOKE_BASES` on every named grid), for
   ``--iterations`` Adam steps at ``--lr``.

The fitted error is then the least this family reached on these draws, with the draws known.  If
it stays above 0.5x the best peer's, no fit that generalises to new draws meets the target on
this model at this budget: the limit is the family (one scalar per step and earlier prediction,
on ``n`` times) and the optimiser, not the data.  The optimiser is local (Adam from the best of
the starts), so the floor is an upper bound on the family's true best, stated as such.

Run (one thread; about 5-10 minutes per model and budget on an 8x8 model)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bespoke_capacity.py --models ve8,vp8 \
        --nfes 10,20 --work /tmp/sl --out /tmp/capacity.md

``--work`` is a ``samplers_learned`` work folder holding the trained models (a model missing
there is trained first, as ``samplers_learned`` does).  Writes a Markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import samplers_learned as sl
import scoresde as ss


def capacity(key: str, args: argparse.Namespace) -> list[dict]:
    """One row per budget: the best peer, our best fixed solver and the over-fitted bespoke error."""
    lm = sl.load_model(key, args.work, args.train_minutes, args.seed_model)
    model, sde = lm.model, lm.model.sde
    shape = tuple(lm.data.train.shape[1:])
    n = args.draws
    # The training draws exactly as fit_bespoke makes them from this generator.
    g = torch.Generator().manual_seed(args.seed)
    x_T = (torch.randn((n, *shape), generator=g, dtype=torch.float64) * sde.prior_std()).float()
    y = sl.cycling(n)
    with torch.no_grad():
        ref = ss.sample(
            model, x_T=x_T, y=y, method="dopri5", steps=1, t_end=sl.T_END, denoise=False,
            rtol=args.ref_tol, atol=args.ref_tol,
        ).x  # fmt: skip
        ref_x0 = model.denoise(ref, torch.full((n,), sl.T_END), y)
        runs = sl.ours_runs(model)
        runs.update(sl.diffusers_runs(lm))
        if not args.no_kdiffusion:
            runs.update(sl.kdiffusion_runs(lm))
        results = sl.sweep(runs, x_T, y, ref, ref_x0, tuple(args.nfes))
    rows = []
    for budget in args.nfes:
        peer = sl.best(results, budget, ours=False)
        ours = sl.best(results, budget, ours=True)
        assert peer is not None and ours is not None
        grids = {gn: ss.time_grid(sde, budget, gn, t_end=sl.T_END) for gn in ss.GRIDS}
        starts = [
            ss.sampling.bespoke_from_base(sde, method, ts, opts, grid=gn)
            for method, opts in sl.BESPOKE_BASES
            for gn, ts in grids.items()
        ]
        t0 = time.time()
        fit = ss.sampling.fit_bespoke(
            model, sde, budget, shape, starts=starts, pilot=n, iterations=args.iterations, lr=args.lr,
            y=y, generator=torch.Generator().manual_seed(args.seed), reference_tol=args.ref_tol,
        )  # fmt: skip
        seconds = time.time() - t0
        # The fitted solver's error recomputed on the draws and the sweep's reference (not the fit's
        # own record): the same draws, a reference of the same tolerance.
        with torch.no_grad():
            x = ss.sample(
                model, x_T=x_T, y=y, method="bespoke", solver=fit.solver, t_end=sl.T_END, denoise=False
            ).x
        floor = sl.rms(x, ref)
        row = {
            "model": key,
            "nfe": budget,
            "peer": peer,
            "ours": ours,
            "start": f"{fit.start.base} [{fit.start.grid}]",
            "fit_start": fit.pilot_error_start,
            "fit": fit.pilot_error,
            "floor": floor,
            "best_iteration": int(min(range(len(fit.history)), key=fit.history.__getitem__))
            if fit.history
            else 0,
            "seconds": seconds,
        }
        print(
            f"[{key}] NFE {budget}: best peer {peer[0]:.3e} ({peer[2][0]} [{peer[2][1]}]), our best fixed "
            f"{ours[0]:.3e} ({ours[2][0]} [{ours[2][1]}]), bespoke over-fitted on these draws "
            f"{fit.pilot_error_start:.3e} -> {floor:.3e} = {floor / peer[0]:.2f} of the peer "
            f"(best iterate {row['best_iteration']} of {args.iterations}), {seconds:.0f} s",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ve8")
    p.add_argument("--nfes", default="10,20")
    p.add_argument("--draws", type=int, default=32, help="prior draws (fitted and scored on)")
    p.add_argument("--seed", type=int, default=13, help="seed of the draws")
    p.add_argument("--seed-model", type=int, default=0, help="seed of a model trained here")
    p.add_argument("--train-minutes", type=float, default=2.0)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--ref-tol", type=float, default=1e-6)
    p.add_argument("--no-kdiffusion", action="store_true")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.nfes = [int(v) for v in args.nfes.split(",")]
    torch.set_num_threads(1)
    load0, t0 = os.getloadavg()[0], time.time()
    rows = [row for key in args.models.split(",") for row in capacity(key, args)]
    lines = [
        f"Bespoke solvers fitted on the draws they are scored on ({args.draws} prior draws of seed "
        f"{args.seed}, labels cycling; {args.iterations} full-batch Adam iterations at lr {args.lr}, the "
        f"iterate of least error on them kept; reference dopri5 at {args.ref_tol:g}); "
        f"`{' '.join(['python', *sys.argv])}`, {time.time() - t0:.0f} s of wall time, load average "
        f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, one thread.",
        "",
        "| model | NFE | best peer (RMS) | our best fixed solver (RMS) | bespoke: start -> over-fitted (RMS) "
        "| over-fitted / best peer |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        peer, ours = r["peer"], r["ours"]
        lines.append(
            f"| {r['model']} | {r['nfe']} | {peer[0]:.3e} ({peer[2][0]} [{peer[2][1]}]) | {ours[0]:.3e} "
            f"({ours[2][0]} [{ours[2][1]}]) | {r['fit_start']:.3e} ({r['start']}) -> {r['floor']:.3e} "
            f"| {r['floor'] / peer[0]:.2f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

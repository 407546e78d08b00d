"""NFE 5 (and 10) on the anisotropic problems, round 3: bespoke non-stationary solvers.

A bespoke non-stationary solver (Shaul et al. 2024, "Bespoke Non-Stationary Solvers for Fast
Sampling of Diffusion and Flow Models", ICML 2024, BNS, Eq. 9-11) is the whole family of
``n``-step linear multistep solvers, ``z_{i+1} = a_i x_T + sum_{j <= i} b_ij D(z_j, t_j)``, with
its times and coefficients trained on prior draws to minimise the endpoint error against a tight
solve of the same probability-flow ODE (BNS, Alg. 2; :func:`scoresde.sampling.fit_bespoke`).
Every fixed-grid solver of ours with one evaluation per step is one point of that family
(:func:`scoresde.sampling.bespoke_from_base`), so the fit starts at the best of several.

Protocol (three disjoint sets of prior draws, none the benchmark's held-out ``x_T``):

1. *Training* draws (``fit_bespoke``'s generator, seed ``TRAIN_SEED``): the reference endpoints
   are ``fit_bespoke``'s own dopri5 solve (rtol = atol = ``FIT_TOL``).  Candidate starts: each
   solver of ``BASES`` on each named grid of :data:`scoresde.GRIDS`, plus grids optimised by
   ``optimize_grid`` for ``OPT_BASES`` (the benchmark's pilot, seed 12345: also not held out);
   ``fit_bespoke`` trains the candidate of least training error (of all of them, or of the
   named grids' only: one of the fit settings).
2. *Validation* draws (``VAL_DRAWS``, seed ``VAL_SEED``, reference dopri5 at rtol = atol =
   1e-10 in float64, as the benchmark's): each fit setting of ``SETTINGS`` (training-set size,
   iterations, learning rate, pool of starts) gives one solver; the setting of least
   validation error is chosen, per variant and overall.  Variants: plain ``n`` steps at ``n``
   NFE, and the analytic first step of Zhou et al. 2024
   (:class:`~scoresde.sampling.AnalyticFirstStep`) with ``n + 1`` steps at ``n`` NFE, whose free
   evaluation at ``T`` the bespoke recursion takes as its ``D_0``.
3. *Held-out* draws: the 2000 ``x_T`` (seed 2026) of the 2000-draw rerun of
   ``benchmarks/samplers.py`` (its ``--dump`` file holds ``x_T``, the dopri5 reference and every
   peer's per-draw squared error).  The problem is rebuilt here exactly as ``samplers.py`` builds
   it (``problems``, same seeds); the script checks that the dump's ``x_T`` is that seed's draw and
   that a fresh dopri5 solve from the first ``CHECK_DRAWS`` of them matches the dump's reference.

Each row: RMS error per dimension on the held-out draws, ours / best peer with a paired bootstrap
s.e. (``samplers.bootstrap_ratio``: the best peer option is re-selected in every resample),
P(ratio <= 0.5) over the resamples, the same against our best option of the rerun at that NFE,
and the one-off cost (batched evaluations at the training-set size, reference solve included,
plus the optimised grids' and the AFS mean's; wall seconds on one thread).

Run (after ``benchmarks/samplers.py --problems aniso6 --n-64 2000 --seed 2026 ... --dump D.pt``):
``PYTHONPATH=src python benchmarks/samplers_nfe5_bespoke.py --dump D.pt [--dump E.pt] --nfes 5,10``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

import scoresde as ss
from scoresde.sampling import AnalyticFirstStep, bespoke_from_base, fit_bespoke

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import T_END, bootstrap_ratio, per_draw, pilot_config, problems

TRAIN_SEED = 31
VAL_SEED = 32
VAL_DRAWS = 4000
CHECK_DRAWS = 4
FIT_TOL = 1e-8
# Candidate starts: (solver, option suffix, options), on every named grid.
BASES = [
    ("unipc", "", {}),
    ("unipc", ", order 3", {"order": 3}),
    ("dpm_solver++_2m", "", {}),
    ("dpm_solver++_3m", "", {}),
    ("deis", "", {}),
    ("deis", ", no lower-order final", {"lower_order_final": False}),
    ("ipndm", ", order 3", {"order": 3}),
]
# ... and on a grid optimised for them (the benchmark's best 5-NFE options).
OPT_BASES = [
    ("unipc", ", order 3", {"order": 3}),
    ("deis", ", no lower-order final", {"lower_order_final": False}),
]
# Fit settings, chosen between on the validation draws.  ``"starts": "named"``: the candidates
# are the named grids' only (by default the optimised grids' too): the start of least training
# error is a greedy choice, and a fit from it can end in a worse local minimum than one from a
# poorer start (32-D, 5 steps: 0.116 from DEIS on its optimised grid, 0.100 from DEIS uniform).
# (With 1024-2048 draws the fit overfits the few draws near mode boundaries that carry much of
# the squared error: training RMS 0.06-0.08 against 0.11-0.12 on the validation draws at 32-D;
# with 8192 the two agree within 2 %.)
SETTINGS: list[dict] = [
    {"pilot": 4096, "iterations": 200, "lr": 1e-2},
    {"pilot": 8192, "iterations": 200, "lr": 2e-2},
    {"pilot": 8192, "iterations": 200, "lr": 1e-2, "starts": "named"},
]


def draws(n: int, dim: int, seed: int) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference(oracle: ss.AnalyticScore, x_T: Tensor) -> Tensor:
    """The benchmark's reference: dopri5, rtol = atol = 1e-10, float64."""
    return ss.sample(
        oracle, x_T=x_T.double(), method="dopri5", steps=1, t_end=T_END, denoise=False, rtol=1e-10, atol=1e-10
    ).x


def run(model: ss.ScoreFunction, solver: ss.sampling.BespokeSolver, x_T: Tensor, nfe: int) -> Tensor:
    res = ss.sample(model, x_T=x_T.float(), method="bespoke", solver=solver, t_end=T_END, denoise=False)
    if res.nfe != nfe:
        raise RuntimeError(f"the bespoke run made {res.nfe} evaluations, not {nfe}")
    return res.x


def starts_for(
    model: ss.ScoreFunction, sde: ss.VPSDE, steps: int, dim: int, cache: dict, key: str
) -> tuple[list, dict]:
    """Candidate starts (``bespoke_from_base``) and the optimised grids' cost."""
    out = []
    for name, _, opts in BASES:
        for grid in ss.GRIDS:
            ts = ss.sampling.time_grid(sde, steps, grid, t_end=T_END)
            out.append(bespoke_from_base(sde, name, ts, opts, grid=grid))
    cost = {"nfe": 0, "seconds": 0.0}
    for name, suffix, opts in OPT_BASES:
        k = (key, steps, name, suffix)
        if k not in cache:
            t0 = time.time()
            og = ss.sampling.optimize_grid(
                model, sde, steps, name, (dim,), t_end=T_END, options=opts, **pilot_config(dim)
            )
            cache[k] = (og.times, og.pilot_nfe, time.time() - t0)
            print(f"  optimised grid {k}: pilot {og.pilot_error:.3e}, {cache[k][2]:.0f} s", flush=True)
        times, nfe, sec = cache[k]
        cost["nfe"] += nfe
        cost["seconds"] += sec
        out.append(bespoke_from_base(sde, name, times, opts, grid=f"optimized{suffix}"))
    return out, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump", action="append", required=True, help="a --dump file of samplers.py")
    parser.add_argument("--nfes", default="5", help="comma-separated NFE budgets (5, 10)")
    parser.add_argument("--out", default=None, help="write the table here (markdown)")
    parser.add_argument("--cache", default=None, help="keep the fits here (.pt) and reuse them")
    parser.add_argument("--problems", default=None, help="comma-separated substrings of problem names")
    parser.add_argument("--settings", default=None, help="comma-separated indices into SETTINGS")
    parser.add_argument("--no-afs", action="store_true", help="skip the AFS variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()
    sde = ss.VPSDE()
    settings = SETTINGS if args.settings is None else [SETTINGS[int(i)] for i in args.settings.split(",")]
    dumped: dict = {}
    for path in args.dump:
        dumped.update(torch.load(path, weights_only=False))
    cache: dict = (
        torch.load(args.cache, weights_only=False) if args.cache and Path(args.cache).exists() else {}
    )
    rows: list[str] = []
    notes: list[str] = []
    for pname, (gmm, n) in problems(1000, 2000).items():
        if pname not in dumped or (args.problems and not any(p in pname for p in args.problems.split(","))):
            continue
        d = dumped[pname]
        dim = gmm.dim
        oracle = ss.AnalyticScore(gmm, sde)
        # The held-out draws and their reference are the benchmark's (same problem, same seed).
        x_T = d["x_T"]
        if not torch.equal(x_T, torch.randn(n, dim, generator=torch.Generator().manual_seed(d["x_T seed"]))):
            raise RuntimeError(f"{pname}: the dump's x_T are not seed {d['x_T seed']}'s draws")
        gap_ref = float((reference(oracle, x_T[:CHECK_DRAWS]) - d["ref"][:CHECK_DRAWS]).abs().max())
        if gap_ref > 1e-7:
            raise RuntimeError(
                f"{pname}: a fresh dopri5 solve differs from the dump's reference by {gap_ref:.1e}"
            )
        x_val = draws(VAL_DRAWS, dim, VAL_SEED)
        for other, what in (
            (x_val, "validation"),
            (draws(max(s["pilot"] for s in settings), dim, TRAIN_SEED), "training"),
        ):
            gap = float(torch.cdist(x_T.double(), other).min())
            if gap < 1e-6:
                raise RuntimeError(f"{pname}: a held-out draw coincides with a {what} draw ({gap:.1e})")
        notes.append(
            f"{pname}: dump reference vs a fresh dopri5 solve on {CHECK_DRAWS} draws: "
            f"max |diff| {gap_ref:.1e}."
        )
        print(notes[-1], flush=True)
        if ("ref_val", pname) not in cache:
            cache[("ref_val", pname)] = reference(oracle, x_val)
        ref_val = cache[("ref_val", pname)]
        t0 = time.time()
        x_p = draws(pilot_config(dim)["pilot"], dim, pilot_config(dim)["seed"])
        mean = oracle.denoise(x_p, torch.full((len(x_p),), sde.T, dtype=torch.float64)).mean(0)
        afs = AnalyticFirstStep(oracle, mean, sde.T)
        afs_seconds = time.time() - t0
        for nfe in (int(v) for v in args.nfes.split(",")):
            peers = torch.stack([r[nfe][1] for r in d["peers"].values() if nfe in r])
            ours_d = {k: r[nfe][1] for k, r in d["ours"].items() if nfe in r}
            best_key = min(ours_d, key=lambda k: float(ours_d[k].mean()))
            ours = torch.stack(list(ours_d.values()))
            variants = [("bespoke", oracle, nfe, "oracle")]
            if not args.no_afs:
                variants.append(("AFS + bespoke", afs, nfe + 1, "afs"))
            fits = []
            for label, model, steps, mkey in variants:
                starts, cost = starts_for(model, sde, steps, dim, cache, f"{pname}/{mkey}")
                for s in settings:
                    k = (pname, label, nfe, tuple(sorted(s.items())))
                    opts = {key: v for key, v in s.items() if key != "starts"}
                    pool = starts[: len(BASES) * len(ss.GRIDS)] if s.get("starts") == "named" else starts
                    if k not in cache:
                        f = fit_bespoke(
                            model,
                            sde,
                            steps,
                            (dim,),
                            starts=pool,
                            generator=torch.Generator().manual_seed(TRAIN_SEED),
                            reference_tol=FIT_TOL,
                            **opts,
                        )
                        e_val = float(per_draw(run(model, f.solver, x_val, nfe), ref_val).mean().sqrt())
                        e_start = float(per_draw(run(model, f.start, x_val, nfe), ref_val).mean().sqrt())
                        e = per_draw(run(model, f.solver, x_T, nfe), d["ref"])
                        cache[k] = {
                            "solver": f.solver.to_json(),
                            "start": f"{f.start.base}{f.start.options or ''} [{f.start.grid}]",
                            "train": (f.pilot_error_start, f.pilot_error),
                            "val": (e_start, e_val),
                            "nfe": f.pilot_nfe,
                            "seconds": f.seconds,
                            "held_out": e,
                            "history": f.history,
                        }
                        if args.cache:
                            torch.save(cache, args.cache)
                    c = cache[k]
                    print(
                        f"[{pname}] NFE {nfe} {label} {s}: start {c['start']}, train {c['train'][0]:.3e} -> "
                        f"{c['train'][1]:.3e}, val {c['val'][0]:.3e} -> {c['val'][1]:.3e}, "
                        f"{c['seconds']:.0f} s",
                        flush=True,
                    )
                    fits.append((label, s, c, cost))
            best_val = min(fits, key=lambda f: f[2]["val"][1])
            for label in dict.fromkeys(f[0] for f in fits):
                chosen = min((f for f in fits if f[0] == label), key=lambda f: f[2]["val"][1])
                for f in fits:
                    if f[0] != label:
                        continue
                    lbl, s, c, cost = f
                    e = c["held_out"]
                    r, se, _, _, frac = bootstrap_ratio(e[None], peers)
                    r2, se2, _, _, _ = bootstrap_ratio(e[None], ours)
                    mark = (
                        ("**chosen**" if f is best_val else "chosen for its variant") if f is chosen else ""
                    )
                    extra = " + AFS mean (1 call at 1024)" if lbl.startswith("AFS") else ""
                    rows.append(
                        f"| {pname} | {nfe} | {lbl}: {s['pilot']} draws, {s['iterations']} it, "
                        f"lr {s['lr']:g}{', named-grid starts' if s.get('starts') == 'named' else ''} "
                        f"| {c['start']} | {c['train'][0]:.3f} -> {c['train'][1]:.3f} | "
                        f"{c['val'][0]:.3f} -> {c['val'][1]:.3f} {mark} | {float(e.mean().sqrt()):.3e} | "
                        f"{r:.2f} +- {se:.2f} | {frac:.2f} | {r2:.2f} +- {se2:.2f} | "
                        f"{c['nfe']} + {cost['nfe']}{extra}; {c['seconds']:.0f} + {cost['seconds']:.0f} s |"
                    )
                    print(rows[-1], flush=True)
            notes.append(
                f"{pname}, NFE {nfe}: best peer {min(float(p.mean().sqrt()) for p in peers):.3e} "
                f"(target <= {0.5 * min(float(p.mean().sqrt()) for p in peers):.3e}); our best in the "
                f"rerun {float(ours_d[best_key].mean().sqrt()):.3e} ({best_key[0]} [{best_key[1]}])."
            )
        print(f"[{pname}] AFS mean: {afs_seconds:.1f} s", flush=True)
    lines = [
        "| problem | NFE | variant: fit setting | start (least training error) | training RMS start -> fit "
        "| validation RMS start -> fit | held-out RMS | / best peer +- s.e. | P(<= 0.5) "
        "| / our best in the rerun +- s.e. | one-off: batched evaluations (fit + optimised grids); seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *[f"- {v}" for v in notes],
        "",
        f"Total time: {time.time() - t_start:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

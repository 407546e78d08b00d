"""Measure conditional samplers against the exact posterior of a Gaussian mixture.

For each problem (a mixture prior, a linear measurement, one observation) the exact posterior is
again a mixture (:func:`scoresde.guidance.condition`).  Each method samples it with the exact
prior score; the samples are assigned to posterior components and their weights, means and
covariances compared with the exact ones (max absolute error).  A reference row draws exact
posterior samples, giving the Monte-Carlo noise floor.

Run: ``PYTHONPATH=src python benchmarks/guidance_posterior.py [--n 4000] [--steps 500]``;
writes ``docs/bench_guidance.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import scoresde as ss
from scoresde.guidance import (
    AnalyticClassifier,
    ClassifierGuidance,
    Colorization,
    DPSGuidance,
    ExactMeasurementLikelihood,
    Inpainting,
    LikelihoodGuidance,
    MatrixOperator,
    class_mixture,
    compare_to_mixture,
    condition,
    conditional_sample,
    dps_sample,
    smc_sample,
)


def mixture_errors(target: ss.GaussianMixture, x: torch.Tensor) -> tuple[float, float, float]:
    e = compare_to_mixture(target, x)
    return e.weights, e.means, e.covs


def law_weight_error(target: ss.GaussianMixture, res) -> tuple[float, float]:
    """Mode-weight error of the law of one SMC run's draw, and its standard error over the runs.

    Each run's weighted particles (assigned to the target's components as in
    :func:`compare_to_mixture`) give the exact mode probabilities of its single draw; their mean
    over the ``n`` runs estimates the law of a draw without the draw's own multinomial noise, so
    this error is the sampler's bias (finite ``K``, twist, steps) up to the standard error.
    """
    b, k = res.log_weights.shape
    flat = res.particles.reshape(b * k, -1).to(target.dtype)
    ones = torch.ones(b * k, dtype=target.dtype)
    lab = target.perturbed_responsibilities(flat, ones, torch.full((b * k,), 1e-3)).argmax(1)
    onehot = torch.nn.functional.one_hot(lab, target.n_components).to(target.dtype).reshape(b, k, -1)
    per_run = (res.log_weights.exp()[..., None] * onehot).sum(1)  # (runs, components)
    err = per_run.mean(0) - target.weights
    j = int(err.abs().argmax())
    return float(err[j].abs()), float(per_run[:, j].std() / b**0.5)


def ambiguous_problem(gmm: ss.GaussianMixture, op, i: int = 0, j: int = 1):
    """Move mode ``j``'s mean so that ``A mu_j = A mu_i``; observe ``y = A mu_i``.

    The observation is then explained by both modes and the posterior weights are decided by
    the covariances: a test of mode weighting, not only of means.
    """
    means = gmm.means.clone()
    diff = (means[i] - means[j]).reshape(1, *op.in_shape)
    means[j] = means[j] + op.project(diff).reshape(-1)
    prior = ss.GaussianMixture(gmm.weights, means, gmm.covs)
    return prior, op, op(means[i].reshape(1, *op.in_shape))


def problems(seed: int = 0, noise_std: float = 0.1):
    """(name, prior, operator, y_obs, noise_std, sample shape) of each test problem."""
    g = torch.Generator().manual_seed(seed)
    out = []
    gmm = ss.GaussianMixture.random(4, 3, eig_min=0.01, eig_max=0.25, generator=g)
    op = MatrixOperator(torch.randn(2, 4, generator=g, dtype=torch.float64))
    out.append(("vector D=4, random A (2x4)", *ambiguous_problem(gmm, op), noise_std, (4,)))
    gmm = ss.GaussianMixture.random(16, 3, eig_min=0.01, eig_max=0.25, generator=g)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :2] = True  # the top half is known
    op = Inpainting(mask)
    out.append(("inpainting 1x4x4 (top half known)", *ambiguous_problem(gmm, op), noise_std, (1, 4, 4)))
    gmm = ss.GaussianMixture.random(12, 3, eig_min=0.01, eig_max=0.25, generator=g)
    op = Colorization((3, 2, 2))
    out.append(("colorization 3x2x2", *ambiguous_problem(gmm, op), noise_std, (3, 2, 2)))
    return out


def smc_problems(seed: int = 0):
    """:func:`problems` plus a 2-D mixture observed through ``x_1 + x_2`` (a bimodal posterior)."""
    gmm = ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.1, 0.04, 0.02])
    op = MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    two_d = ("2-D, A = [1, 1]", gmm, op, torch.tensor([[-0.5]], dtype=torch.float64), 0.05, (2,))
    return [two_d, *problems(seed)]


def smc_rows(
    n: int,
    steps_list: list[int],
    particles_list: list[int],
    seed: int = 0,
    floors: int = 100,
    grids: tuple[str, ...] = ("logsnr",),
    baselines: bool = True,
    smc_options: dict | None = None,
    cells: list[str] | None = None,
    noise: str = "both",
) -> list[dict]:
    """SMC (:func:`scoresde.guidance.smc_sample`) beside the MC floor, DPS (Alg. 1) and
    projection, at each problem's measurement noise and noise-free: mode-weight errors and sliced
    W2 to exact posterior samples.  Floor: the mean of the same statistics over ``floors``
    independent exact sample sets of size ``n``.  TDS runs every (grid, K, steps) triple (the
    work-precision table; the grid is named in the method when there are several); with
    ``baselines``, MCGdiff (first grid), DPS and projection run at the largest K / steps.
    ``smc_options``: further keyword arguments of every TDS run.  ``cells``: run only the
    problems whose name contains one of these strings; ``noise``: ``"both"``, ``"noisy"`` (the
    problem's measurement noise) or ``"free"`` (noise-free)."""
    sde = ss.VPSDE()
    rows = []
    k_max, steps_max = max(particles_list), max(steps_list)
    twist = (smc_options or {}).get("twist_cov")
    tds_name = "SMC (TDS" + ("" if twist is None else f", {twist} twist")
    for name, gmm, op, y_obs, noise_std, dshape in smc_problems(seed):
        oracle = ss.AnalyticScore(gmm, sde)
        if cells and not any(c in name for c in cells):
            continue
        for s_y in {"both": (noise_std, 0.0), "noisy": (noise_std,), "free": (0.0,)}[noise]:
            post = condition(gmm, op, y_obs, s_y)
            ref = post.sample(n, generator=torch.Generator().manual_seed(seed + 1)).reshape(n, -1)

            def sw(x: torch.Tensor, ref: torch.Tensor = ref) -> float:
                return ss.sliced_wasserstein(
                    x.reshape(n, -1).double(), ref, generator=torch.Generator().manual_seed(0)
                )

            gens = [torch.Generator().manual_seed(seed + 10 + j) for j in range(floors)]
            sets = [post.sample(n, generator=g) for g in gens]
            errs = [mixture_errors(post, f) for f in sets]
            floor_err = tuple(sum(e[i] for e in errs) / floors for i in range(3))
            floor_sw = sum(sw(f) for f in sets) / floors
            base = {"problem": name, "target": f"s_y={s_y}", "floor_w": floor_err[0], "floor_sw": floor_sw}
            rows.append(
                dict(base, method=f"exact posterior samples (MC floor, mean of {floors})", k=0, steps=0,
                     nfe=0, err=floor_err, sw=floor_sw, secs=0.0)
            )  # fmt: skip
            common = {"shape": (n, *dshape), "seed": seed, "dtype": torch.float64}
            runs = [
                (
                    tds_name + ("" if len(grids) == 1 else f", {grid} grid") + ")",
                    k,
                    st,
                    smc_sample,
                    {"noise_std": s_y, "particles": k, "grid": grid, **(smc_options or {})},
                )
                for grid in grids
                for k in particles_list
                for st in steps_list
            ]
            if baselines:
                mcg = {"noise_std": s_y, "particles": k_max, "grid": grids[0], "proposal": "mcgdiff"}
                runs.append(("SMC (MCGdiff)", k_max, steps_max, smc_sample, mcg))
            if baselines and s_y > 0:
                dps = f"DPS, Chung et al. Alg. 1 (zeta = {s_y})"
                runs.append((dps, 1, steps_max, dps_sample, {"zeta": s_y}))
            elif baselines:
                proj = {"method": "euler_maruyama"}
                runs.append(("projection (App. I), reverse SDE", 1, steps_max, conditional_sample, proj))
            for method, k, st, fn, kw in runs:
                t0 = time.perf_counter()
                res = fn(oracle, op, y_obs, **common, steps=st, **kw)
                law = law_weight_error(post, res) if hasattr(res, "log_weights") else None
                rows.append(
                    dict(base, method=method, k=k, steps=st, nfe=res.nfe, err=mixture_errors(post, res.x),
                         sw=sw(res.x), secs=time.perf_counter() - t0, law=law)
                )  # fmt: skip
                print({key: v for key, v in rows[-1].items() if key != "err"}, rows[-1]["err"][0], flush=True)
    return rows


def smc_markdown(rows: list[dict], command: str, grids: str = "log-SNR grid") -> list[str]:
    """The SMC tables: every row with its ratios to the floor, then the work-precision summary."""
    lines = [
        "# SMC posterior sampling vs the exact posterior",
        "",
        f"`{command}` (VP SDE, exact prior score, {grids} for SMC, uniform for DPS/projection, "
        "float64, one thread on a core shared with other jobs). Each of the n rows of a method is an "
        "independent SMC run (one draw from its weighted particles). Max absolute errors of mode "
        "weights, means, covariances; sliced W2 to one exact posterior sample set; `w / floor` and "
        "`SW / floor`: ratios to the mean of the same statistics over independent exact sample sets "
        "(the Monte-Carlo floor). NFE: batched calls (each over n x K particles).",
        "",
        "`w (law)`: the mode-weight error of the law of one run's draw (each run's weighted particles "
        "give its draw's mode probabilities; mean over the n runs), +- its standard error: the "
        "sampler's bias without the draw's multinomial noise (exact samples: 0).",
        "",
        "| problem | target | method | K | steps | NFE | weights | means | covs | sliced W2 | w / floor "
        "| SW / floor | w (law) | s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        dw, dm, dc = r["err"]
        cells = [r["problem"], r["target"], r["method"], str(r["k"]), str(r["steps"]), str(r["nfe"])]
        cells += [f"{dw:.4f}", f"{dm:.4f}", f"{dc:.4f}", f"{r['sw']:.4f}"]
        law = r.get("law")
        cells += [f"{dw / r['floor_w']:.2f}", f"{r['sw'] / r['floor_sw']:.2f}"]
        cells += ["-" if law is None else f"{law[0]:.4f} +- {law[1]:.4f}", f"{r['secs']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    # Work-precision summary: the worst ratio over the problems for each method / (K, steps).
    keys = []
    for r in rows:
        key = (r["method"], r["k"], r["steps"])
        if r["k"] and key not in keys:
            keys.append(key)
    lines += [
        "",
        "Work-precision summary: the largest ratio to the floor over all problems, per noise level "
        "(max of mode-weight and sliced-W2 ratios), and the total wall time.",
        "",
        "| method | K | steps | worst ratio, noisy | worst ratio, noise-free | problems within 2x | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        sel = [r for r in rows if (r["method"], r["k"], r["steps"]) == key]

        def ratio(r: dict) -> float:
            return max(r["err"][0] / r["floor_w"], r["sw"] / r["floor_sw"])

        noisy = [ratio(r) for r in sel if r["target"] != "s_y=0.0"]
        free = [ratio(r) for r in sel if r["target"] == "s_y=0.0"]
        within = sum(ratio(r) <= 2 for r in sel)
        cells = [key[0], str(key[1]), str(key[2])]
        cells += [f"{max(noisy):.2f}" if noisy else "-", f"{max(free):.2f}" if free else "-"]
        cells += [f"{within} / {len(sel)}", f"{sum(r['secs'] for r in sel):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def run(n: int, steps: int, seed: int = 0) -> list[dict]:
    sde = ss.VPSDE()
    rows = []
    for name, gmm, op, y_obs, noise_std, dshape in problems(seed):
        oracle = ss.AnalyticScore(gmm, sde)
        post = condition(gmm, op, y_obs, noise_std)
        post0 = condition(gmm, op, y_obs, 0.0)
        print(
            name,
            "posterior weights",
            post.weights.numpy().round(3),
            "noise-free",
            post0.weights.numpy().round(3),
        )
        shape = (n, *dshape)
        ref = post.sample(n, generator=torch.Generator().manual_seed(seed + 1))
        rows.append(
            dict(
                problem=name,
                method="exact posterior samples (MC floor)",
                target=f"s_y={noise_std}",
                nfe=0,
                err=mixture_errors(post, ref),
                secs=0.0,
            )
        )
        exact = LikelihoodGuidance(oracle, ExactMeasurementLikelihood(oracle, op, y_obs, noise_std))
        dps = DPSGuidance(oracle, op, y_obs, noise_std)
        common = dict(shape=shape, steps=steps, seed=seed, dtype=torch.float64)
        runs = [
            ("exact p_t(y|x) guidance, reverse SDE", ss.sample, (exact,), "euler_maruyama", post, noise_std),
            ("exact p_t(y|x) guidance, PF-ODE", ss.sample, (exact,), "euler", post, noise_std),
            ("DPS (Chung et al. 2023), reverse SDE", ss.sample, (dps,), "euler_maruyama", post, noise_std),
            (
                f"DPS, Chung et al. Alg. 1 (zeta = {noise_std})",
                lambda *a, method, zeta=noise_std, **kw: dps_sample(*a, zeta=zeta, **kw),
                (oracle, op, y_obs),
                None,
                post,
                noise_std,
            ),
            (
                "projection (App. I), reverse SDE",
                conditional_sample,
                (oracle, op, y_obs),
                "euler_maruyama",
                post0,
                0,
            ),
            ("projection (App. I), PF-ODE", conditional_sample, (oracle, op, y_obs), "euler", post0, 0),
        ]
        for method, fn, args, sampler, target, s_y in runs:
            t0 = time.perf_counter()
            res = fn(*args, method=sampler, **common)
            err = mixture_errors(target, res.x)
            secs = time.perf_counter() - t0
            rows.append(
                dict(problem=name, method=method, target=f"s_y={s_y}", nfe=res.nfe, err=err, secs=secs)
            )
            print(rows[-1], flush=True)
    # Class-conditional sampling with the exact noise-conditional classifier.
    gmm = ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.1, 0.04, 0.02])
    oracle = ss.AnalyticScore(gmm, sde)
    guided = ClassifierGuidance(oracle, AnalyticClassifier(oracle), scale=1.0)
    for method in ["euler_maruyama", "euler"]:
        for k in range(3):
            t0 = time.perf_counter()
            res = ss.sample(
                guided,
                shape=(n, 2),
                method=method,
                steps=steps,
                seed=seed,
                y=torch.full((n,), k),
                dtype=torch.float64,
            )
            rows.append(
                dict(
                    problem=f"classes = components of a 2-D mixture, class {k}",
                    method=f"exact classifier guidance, {method}",
                    target="p(x|y)",
                    nfe=res.nfe,
                    err=mixture_errors(class_mixture(gmm, k), res.x),
                    secs=time.perf_counter() - t0,
                )
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/bench_guidance.md")
    p.add_argument("--smc", action="store_true", help="only the SMC table (docs/bench_guidance_smc.md)")
    p.add_argument("--smc-particles", default="8,32", help="SMC particle counts K (comma-separated)")
    p.add_argument("--smc-steps", default="50,100,200", help="SMC step counts (comma-separated)")
    p.add_argument("--smc-grids", default="logsnr", help="SMC time grids (comma-separated)")
    p.add_argument(
        "--no-smc-baselines", action="store_true", help="SMC table: TDS rows only (no MCGdiff/DPS/projection)"
    )
    p.add_argument(
        "--smc-threshold", type=float, default=None, help="TDS resample_threshold (default: the library's)"
    )
    p.add_argument("--smc-twist", default=None, help="TDS twist_cov: tweedie / pigdm (default: library's)")
    p.add_argument("--smc-floors", type=int, default=100, help="exact sample sets averaged for the MC floor")
    p.add_argument(
        "--problems", default=None, help="only the problems whose name contains one of these (|-separated)"
    )
    p.add_argument("--smc-noise", default="both", choices=["both", "noisy", "free"], help="SMC noise levels")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.smc:
        steps_list = [int(v) for v in args.smc_steps.split(",")]
        k_list = [int(v) for v in args.smc_particles.split(",")]
        grids = tuple(args.smc_grids.split(","))
        extra = {} if args.smc_threshold is None else {"resample_threshold": args.smc_threshold}
        if args.smc_twist is not None:
            extra["twist_cov"] = args.smc_twist
        cells = None if args.problems is None else args.problems.split("|")
        rows = smc_rows(
            args.n, steps_list, k_list, args.seed, floors=args.smc_floors, grids=grids,
            baselines=not args.no_smc_baselines, smc_options=extra, cells=cells,
            noise=args.smc_noise,
        )  # fmt: skip
        out = "docs/bench_guidance_smc.md" if args.out == "docs/bench_guidance.md" else args.out
        command = (
            f"python benchmarks/guidance_posterior.py --smc --n {args.n} --smc-steps {args.smc_steps} "
            f"--smc-particles {args.smc_particles} --seed {args.seed}"
        )
        if args.smc_grids != "logsnr":
            command += f" --smc-grids {args.smc_grids}"
        if args.no_smc_baselines:
            command += " --no-smc-baselines"
        if args.smc_threshold is not None:
            command += f" --smc-threshold {args.smc_threshold}"
        if args.smc_twist is not None:
            command += f" --smc-twist {args.smc_twist}"
        if args.smc_floors != 100:
            command += f" --smc-floors {args.smc_floors}"
        if args.problems is not None:
            command += f" --problems '{args.problems}'"
        if args.smc_noise != "both":
            command += f" --smc-noise {args.smc_noise}"
        if args.out != "docs/bench_guidance.md":
            command += f" --out {args.out}"
        names = {"logsnr": "log-SNR", "uniform": "uniform", "edm": "EDM", "quadratic": "quadratic"}
        lines = smc_markdown(rows, command, " / ".join(names.get(g, g) for g in grids) + " grid")
        Path(out).write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    rows = run(args.n, args.steps, args.seed)
    lines = [
        "# Conditional samplers vs the exact posterior",
        "",
        f"`python benchmarks/guidance_posterior.py --n {args.n} --steps {args.steps} --seed {args.seed}` "
        "(VP SDE, exact prior score, uniform grid, float64). Max absolute error of the posterior's mode "
        "weights, component means and covariances, estimated from the samples.",
        "",
        "| problem | method | target | NFE | weights | means | covs | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dw, dm, dc = r["err"]
        cells = [r["problem"], r["method"], r["target"], str(r["nfe"])]
        cells += [f"{dw:.4f}", f"{dm:.4f}", f"{dc:.4f}", f"{r['secs']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

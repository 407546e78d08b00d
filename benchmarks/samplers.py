"""Probability-flow ODE samplers: pathwise error at equal NFE against diffusers and k-diffusion.

Two exact problems under the VP SDE (beta 0.1 -> 20, T = 1): a 2-D ring of 8 Gaussians (radius 2,
std 0.05) and a 64-D mixture of 10 full-covariance Gaussians with eigenvalues in [1e-4, 0.25].
Every sampler starts from the same ``x_T ~ N(0, I)`` at ``t = T`` and stops at ``t_end = 1e-3``
(``sde.eps``) without a final denoising step; its output is compared with a high-accuracy solution
of the same probability-flow ODE (dopri5, rtol = atol = 1e-10, float64), as the RMS error per
dimension.  Samplers run in float32 (as peers do); the oracle computes in float64.

Peers are driven by the exact oracle through their own interfaces:

- diffusers (discrete time): ``trained_betas = 1 - exp(-(B(k/1000) - B((k-1)/1000)))`` for
  ``k = 1..1000`` gives ``alphas_cumprod[i] = exp(-B((i+1)/1000))``, the VP marginal at
  ``t = (i+1)/1000`` exactly, so timestep ``tau`` (possibly fractional) is time ``(tau+1)/1000``:
  timestep 999 is ``T`` and timestep 0 is ``t_end``; ``final_sigmas_type="sigma_min"`` (DDIM:
  ``set_alpha_to_one=False``) ends at ``t_end``.  The model is the oracle's epsilon.
- k-diffusion (EDM variables): ``D(y, sigma_hat) = oracle.denoise(s(t) y, t)`` with
  ``t = t(lambda = -log sigma_hat)``; ``y_T = x_T / s(T)``; sigma schedules from ``sigma_hat(T)``
  to ``sigma_hat(t_end)`` with no appended zero; the output is mapped back, ``x = s(t_end) y``.

For each sampler and each of its discretisation options the table reports the best option at each
NFE budget (steps = NFE // evaluations per step; the NFE actually used is shown where it is lower),
for ours and peers alike.  The per-step overhead of our solvers is measured against a 3x256 MLP at
batch 4096.

Run: ``PYTHONPATH=src python benchmarks/samplers.py`` (writes ``docs/bench_samplers.md``);
``--ours a,b`` / ``--problems ring8,mix10`` run a subset (e.g. ``--ours dpm_solver_v3``), ``--out``
writes elsewhere.  DPM-Solver-v3's EMS are computed once per problem (``V3_PILOT``) and reported.
``grid="optimized"`` also runs with the analytic first step (``AFS_OPTIMIZED``: a grid of one
step more at the same NFE).  For many more draws: ``--seed`` (fresh draws), ``--shortlist PAGE``
(only our options near our best on an earlier page; peers always in full), ``--optimized-nfes``,
``--nfes``, ``--dump`` (per-draw errors), ``--reference-from``; the summary gives each ratio a
paired-bootstrap standard error.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

import scoresde as ss
from scoresde._core.tensors import append_dims

NFES = (5, 10, 20)
PAGE_NFES = (5, 10, 20)  # the columns of the page that --shortlist reads
OURS = {
    "euler": 1,
    "ddim": 1,
    "heun": 2,
    "dpm_solver_2": 2,
    "dpm_solver_3": 3,
    "dpm_solver++_2m": 1,
    "dpm_solver++_3m": 1,
    "unipc": 1,
    "unipc_bh1": 1,
    "deis": 1,
    "ipndm": 1,
    "dpm_solver_v3": 1,
}
T_END = 1e-3
CHECK_DRAWS = 500  # draws (the first) on which the reference is checked against DPM-Solver-3 at 1200 NFE
# DPM-Solver-v3: EMS from the oracle itself on a pilot batch (its own seed, not the benchmark's x_T).
V3_PILOT = {"pilot": 256, "knots": 200, "seed": 7}
V3_VARIANTS = [
    (", no corrector", {"corrector": False}),
    (", no lower-order final", {"lower_order_final": False}),
    (", pseudo predictor", {"predictor_pseudo": True}),
    (", pseudo predictor, no lower-order final", {"predictor_pseudo": True, "lower_order_final": False}),
    (", pseudo corrector", {"corrector_pseudo": True}),
    (", order 2", {"order": 2}),
]
V3: dict = {"ems": None, "cost": {}}
# Solvers (and options) that also run on grid="optimized" (scoresde.sampling.optimize_grid).
OPTIMIZED = [
    ("unipc", "", {}),
    ("unipc", ", order 3", {"order": 3}),
    ("deis", ", no lower-order final", {"lower_order_final": False}),
    ("dpm_solver++_2m", "", {}),
]

# The same on a grid of one step more, with the analytic first step (the model's mean data
# prediction at T from the grid pilot's draws: scoresde.sampling.analytic_first_step).
AFS_OPTIMIZED = [
    ("unipc", ", analytic first step", {}),
    ("unipc", ", analytic first step, order 3", {"order": 3}),
]


def pilot_config(dim: int) -> dict:
    """The pilot of ``optimize_grid``: 1024 draws (with 128-256 the grid fits the pilot's few
    mode-boundary samples and generalises badly); fewer sweeps where the model is dearer."""
    if dim <= 2:
        return {"pilot": 1024, "seed": 12345, "sweeps": 3, "evals": 8}
    return {"pilot": 1024, "seed": 12345, "sweeps": 2, "evals": 6}


def disjoint_from_pilots(x_T: torch.Tensor) -> None:
    """Check that no held-out draw is one of the tuning pilots' draws (``optimize_grid``'s and the
    EMS pilot's): those are other seeds' streams, so this only guards against a seed clash."""
    dim = x_T.shape[1]
    cfg = pilot_config(dim)
    pilots = [
        torch.randn(
            cfg["pilot"], dim, generator=torch.Generator().manual_seed(cfg["seed"]), dtype=torch.float64
        ),
        ss.VPSDE().prior_sample(
            (V3_PILOT["pilot"], dim),
            generator=torch.Generator().manual_seed(V3_PILOT["seed"]),
            dtype=torch.float64,
        ),
    ]
    for p in pilots:
        gap = float(torch.cdist(x_T.double(), p.double()).min())
        if gap < 1e-6:
            raise RuntimeError(f"a held-out draw coincides with a pilot draw (distance {gap:.1e})")


SHORT: dict = {}
OPT_NFES: set[int] = set(NFES)  # the budgets at which grid="optimized" runs


def read_shortlist(path: str, within: float) -> dict[str, dict[int, set[tuple[str, str]]]]:
    """Our options within ``within`` x our best at each NFE budget in an earlier page of this
    benchmark (its "every option" tables): ``{problem: {budget: {(solver, option)}}}``.

    Used to rerun on many more draws at a fraction of the cost; peers are always run in full, so
    a shortlist can only make our side of a ratio worse (an option left out that would have been
    our best on the new draws), never the peers'.
    """
    out: dict = {}
    for sec in re.split(r"^## ", Path(path).read_text(), flags=re.M):
        m = re.match(r"(.*), \d+ samples\n", sec)
        if not m or "<details>" not in sec:
            continue
        rows = []
        for line in sec.split("<details>")[1].splitlines():
            c = [v.strip() for v in line.strip().strip("|").split("|")]
            if (
                len(c) != 2 + len(PAGE_NFES)
                or c[0] in ("sampler", "---")
                or c[0].startswith(("diffusers", "k-diff"))
            ):
                continue
            errs = []
            for v in c[2:]:
                try:
                    errs.append(float(v.split("/")[0]))
                except ValueError:
                    errs.append(math.inf)
            rows.append(((c[0], c[1]), errs))
        out[m.group(1)] = {
            n: {k for k, e in rows if e[j] <= within * min(r[1][j] for r in rows)}
            for j, n in enumerate(PAGE_NFES)
        }
    return out


def listed(budget: int, name: str, option: str) -> bool:
    """Whether ``(name, option)`` runs at ``budget``: always without a shortlist or when the
    shortlist's page does not have that option (a new one), else when it is on the shortlist."""
    if not SHORT or not any((name, option) in v for v in SHORT["page"].values()):
        return True
    return (name, option) in SHORT["now"].get(budget, set())


PILOT_NFE: dict = {}
QUICK: set[str] = set()
SW: dict = {"ref": None}


def sw2(x: torch.Tensor) -> float:
    """Sliced W2 to exact samples of ``p_{t_end}`` (fixed projections)."""
    return ss.sliced_wasserstein(
        x.double(), SW["ref"], n_projections=128, generator=torch.Generator().manual_seed(0)
    )


# ---------------------------------------------------------------------------------------------- #
# Problems and the reference.
# ---------------------------------------------------------------------------------------------- #
def anisotropic(
    dim: int, weights: list[float], eig_min: float, eig_max: float, seed: int
) -> ss.GaussianMixture:
    """Unequal weights, random rotations, eigenvalues log-spaced over ``[eig_min, eig_max]``."""
    g = torch.Generator().manual_seed(seed)
    k = len(weights)
    means = torch.randn(k, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
    eig = torch.logspace(math.log10(eig_min), math.log10(eig_max), dim, dtype=torch.float64)
    covs = q @ torch.diag_embed(eig.expand(k, dim)) @ q.transpose(-1, -2)
    return ss.GaussianMixture(torch.tensor(weights, dtype=torch.float64), means, covs)


def problems(n_ring: int, n_64: int) -> dict[str, tuple[ss.GaussianMixture, int]]:
    g = torch.Generator().manual_seed(0)
    unequal = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]
    return {
        "ring8 (2-D)": (ss.GaussianMixture.ring(8, 2.0, 0.05), n_ring),
        "mix10 (64-D)": (ss.GaussianMixture.random(64, 10, 1e-4, 0.25, generator=g), n_64),
        "aniso6 (32-D, eig 3e-4..0.5, unequal w)": (anisotropic(32, unequal, 3e-4, 0.5, 1), n_64),
        "aniso6 (64-D, eig 3e-4..0.5, unequal w)": (anisotropic(64, unequal, 3e-4, 0.5, 2), n_64),
    }


class Counter:
    """Counts model calls made by a peer's sampler."""

    def __init__(self) -> None:
        self.n = 0


def rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).pow(2).mean().sqrt())


def per_draw(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Squared error per draw, averaged over dimensions (the RMS is the root of its mean)."""
    return (x.double() - ref).pow(2).flatten(1).mean(1)


def cell(x: torch.Tensor, ref: torch.Tensor, nfe: int) -> tuple[float, int, float, torch.Tensor]:
    """A table cell: ``(pathwise RMS, NFE, sliced W2, squared error per draw)``."""
    return (rms(x, ref), nfe, sw2(x), per_draw(x, ref))


# ---------------------------------------------------------------------------------------------- #
# Our solvers.
# ---------------------------------------------------------------------------------------------- #
def our_variants() -> list[tuple[str, str, int, int, dict]]:
    """``(solver, option suffix, evaluations per step, extra evaluations, options)``."""
    out = []
    for name, per_step in OURS.items():
        out.append((name, "", per_step, 0, {}))
        if name in ("dpm_solver++_2m", "dpm_solver++_3m", "unipc", "unipc_bh1", "deis"):
            out.append((name, ", no lower-order final", per_step, 0, {"lower_order_final": False}))
    out += [("dpm_solver_v3", suffix, 1, 0, opts) for suffix, opts in V3_VARIANTS]
    out.append(("unipc", ", final corrector", 1, 1, {"final_corrector": True}))
    out.append(("unipc", ", order 3", 1, 0, {"order": 3}))
    out.append(("unipc", ", order 3, no lower-order final", 1, 0, {"order": 3, "lower_order_final": False}))
    out.append(("unipc", ", order 3, final corrector", 1, 1, {"order": 3, "final_corrector": True}))
    if QUICK:
        return [v for v in out if v[0] in QUICK]
    out.append(("unipc_bh1", ", order 3", 1, 0, {"order": 3}))
    out.append(("unipc_bh1", ", final corrector", 1, 1, {"final_corrector": True}))
    out.append(("deis", ", order 2", 1, 0, {"order": 2}))
    out.append(("ipndm", ", order 3", 1, 0, {"order": 3}))
    return out


def run_ours(oracle: ss.AnalyticScore, x_T: torch.Tensor, ref: torch.Tensor) -> dict:
    """``{(solver, option): {nfe_budget: (error, nfe_used)}}``."""
    out: dict = {}
    variants = our_variants()
    if any(v[0] == "dpm_solver_v3" for v in variants):
        t0 = time.time()
        V3["ems"] = ss.sampling.compute_ems(
            oracle,
            tuple(x_T.shape[1:]),
            generator=torch.Generator().manual_seed(V3_PILOT["seed"]),
            pilot=V3_PILOT["pilot"],
            knots=V3_PILOT["knots"],
            t_end=T_END,
            dtype=torch.float64,
        )
        V3["cost"][x_T.shape[1]] = time.time() - t0
    for name, suffix, per_step, extra, opts in variants:
        if name == "dpm_solver_v3":
            opts = {**opts, "ems": V3["ems"]}
        for grid in ss.GRIDS:
            row = {}
            for budget in NFES:
                steps = (budget - extra) // per_step
                if steps < 1 or not listed(budget, name, grid + suffix):
                    continue
                res = ss.sample(
                    oracle, x_T=x_T, method=name, steps=steps, grid=grid, t_end=T_END, denoise=False, **opts
                )
                row[budget] = cell(res.x, ref, res.nfe)
            if row:
                out[(name, grid + suffix)] = row
    sde = oracle.sde
    cfg = pilot_config(x_T.shape[1])
    afs = ss.sampling.analytic_first_step(
        oracle, tuple(x_T.shape[1:]), generator=torch.Generator().manual_seed(cfg["seed"]), pilot=cfg["pilot"]
    )
    for (name, suffix, opts), free_first in [(o, False) for o in OPTIMIZED] + [
        (o, True) for o in AFS_OPTIMIZED
    ]:
        if QUICK and name not in QUICK:
            continue
        row = {}
        model, extra = (afs, 1) if free_first else (oracle, 0)
        for budget in NFES:
            if budget not in OPT_NFES or not listed(budget, name, "optimized" + suffix):
                continue
            t0 = time.time()
            og = ss.sampling.optimize_grid(
                model, sde, budget + extra, name, x_T.shape[1:], t_end=T_END, options=opts, **cfg
            )
            PILOT_NFE[(x_T.shape[1], name + suffix, budget)] = (og.pilot_nfe, og.start, time.time() - t0)
            res = ss.sample(model, x_T=x_T, method=name, grid=og.times, denoise=False, **opts)
            row[budget] = cell(res.x, ref, res.nfe)
        if row:
            out[(name, "optimized" + suffix)] = row
    return out


# ---------------------------------------------------------------------------------------------- #
# diffusers.
# ---------------------------------------------------------------------------------------------- #
def diffusers_configs() -> list[tuple[str, str, Callable, dict]]:
    """``(family, option label, scheduler class, kwargs)``."""
    from diffusers import (
        DDIMScheduler,
        DEISMultistepScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
    )

    configs = []
    for spacing in ("linspace", "trailing"):
        configs.append(
            (
                "diffusers DDIM",
                spacing,
                DDIMScheduler,
                {"timestep_spacing": spacing, "set_alpha_to_one": False, "clip_sample": False},
            )
        )
        for order in (2, 3):
            sig_opts = {
                "default": {},
                "karras": {"use_karras_sigmas": True},
                "exponential": {"use_exponential_sigmas": True},
            }
            for sig, kw in sig_opts.items():
                base = {"timestep_spacing": spacing, "solver_order": order, **kw}
                label = f"o{order} {spacing} {sig}"
                configs.append(
                    (
                        "diffusers DPMSolverMultistep (dpmsolver++)",
                        label,
                        DPMSolverMultistepScheduler,
                        {**base, "final_sigmas_type": "sigma_min"},
                    )
                )
                configs.append(
                    (
                        "diffusers UniPCMultistep (bh2)",
                        label,
                        UniPCMultistepScheduler,
                        {**base, "final_sigmas_type": "sigma_min"},
                    )
                )
                configs.append(("diffusers DEISMultistep", label, DEISMultistepScheduler, base))
            configs.append(
                (
                    "diffusers DPMSolverMultistep (dpmsolver++)",
                    f"o{order} lu_lambdas",
                    DPMSolverMultistepScheduler,
                    {"solver_order": order, "use_lu_lambdas": True, "final_sigmas_type": "sigma_min"},
                )
            )
    return configs


def run_diffusers(sde: ss.VPSDE, oracle: ss.AnalyticScore, x_T: torch.Tensor, ref: torch.Tensor) -> dict:
    n_train = 1000
    k = torch.arange(n_train + 1, dtype=torch.float64) / n_train
    big_b = sde.int_beta(k)
    betas = (-torch.expm1(-(big_b[1:] - big_b[:-1]))).numpy()
    out: dict = {}
    for family, label, cls, kw in diffusers_configs():
        row = {}
        for budget in NFES:
            try:
                sched = cls(num_train_timesteps=n_train, trained_betas=betas, **kw)
                sched.set_timesteps(budget)
                x = x_T.clone()
                nfe = 0
                for tau in sched.timesteps:
                    t = (float(tau) + 1.0) / n_train
                    eps = oracle.eps(x, t)
                    nfe += 1
                    x = sched.step(eps, tau, x).prev_sample
                row[budget] = cell(x, ref, nfe)
            except Exception as e:  # a configuration the scheduler refuses
                row[budget] = (math.nan, f"error: {type(e).__name__}")
        out[(family, label)] = row
    return out


# ---------------------------------------------------------------------------------------------- #
# k-diffusion.
# ---------------------------------------------------------------------------------------------- #
def load_k_sampling():
    """Import ``k_diffusion/sampling.py`` by path (the package ``__init__`` imports torchvision)."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    pkg = types.ModuleType("_kd")
    pkg.__path__ = [str(root)]
    utils = types.ModuleType("_kd.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    sys.modules["_kd"], sys.modules["_kd.utils"] = pkg, utils
    mspec = importlib.util.spec_from_file_location("_kd.sampling", root / "sampling.py")
    mod = importlib.util.module_from_spec(mspec)
    sys.modules["_kd.sampling"] = mod
    mspec.loader.exec_module(mod)
    return mod


def run_kdiffusion(sde: ss.VPSDE, oracle: ss.AnalyticScore, x_T: torch.Tensor, ref: torch.Tensor) -> dict:
    K = load_k_sampling()
    ends = torch.tensor([sde.T, T_END], dtype=torch.float64)
    s_ends, _ = sde.marginal(ends)
    sig_max, sig_min = (float(v) for v in sde.sigma_hat(ends))
    counter = Counter()

    def denoiser(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        counter.n += 1
        t = sde.t_of_lambda(-torch.log(sigma.double()))
        s, _ = sde.marginal(t)
        # y = x / s = x0 + sigma_hat n, so D(y, sigma_hat) = E[x0 | x = s y] at time t.
        return oracle.denoise(y * append_dims(s.to(y.dtype), y.ndim), t.to(y.dtype))

    def schedules(n: int) -> dict[str, torch.Tensor]:
        # n steps from sigma_max to sigma_min: n + 1 sigmas, no appended zero.
        vp = K.get_sigmas_vp(n + 1, beta_d=sde.beta_max - sde.beta_min, beta_min=sde.beta_min, eps_s=T_END)
        return {
            "karras": K.get_sigmas_karras(n + 1, sig_min, sig_max, rho=7.0)[:-1],
            "exponential": K.get_sigmas_exponential(n + 1, sig_min, sig_max)[:-1],
            "vp": vp[:-1],
        }

    def zero_noise(*args):
        return 0.0

    samplers = {
        "euler": (K.sample_euler, 1, {}),
        "heun": (K.sample_heun, 2, {}),
        "dpm_2": (K.sample_dpm_2, 2, {}),
        "lms": (K.sample_lms, 1, {}),
        "dpmpp_2s (eta=0)": (K.sample_dpmpp_2s_ancestral, 2, {"eta": 0.0}),
        "dpmpp_2m": (K.sample_dpmpp_2m, 1, {}),
        "dpmpp_3m_sde (eta=0)": (K.sample_dpmpp_3m_sde, 1, {"eta": 0.0, "noise_sampler": zero_noise}),
    }
    s_T, s_end = float(s_ends[0]), float(s_ends[1])
    out: dict = {}
    for name, (fn, per_step, kw) in samplers.items():
        for sched_name in ("karras", "exponential", "vp"):
            row = {}
            for budget in NFES:
                steps = budget // per_step
                if steps < 1:
                    continue
                sigmas = schedules(steps)[sched_name].to(torch.float32)
                counter.n = 0
                y = fn(denoiser, x_T / s_T, sigmas, disable=True, **kw)
                row[budget] = cell(y * s_end, ref, counter.n)
            out[(f"k-diffusion {name}", sched_name)] = row
    return out


# ---------------------------------------------------------------------------------------------- #
# Per-step overhead against a 3x256 MLP at batch 4096.
# ---------------------------------------------------------------------------------------------- #
class _FreeNet(torch.nn.Module):
    """A network that costs (almost) nothing: isolates the sampler's own per-step work."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def overhead(batch: int = 4096, steps: int = 10, repeats: int = 5) -> dict[str, tuple[float, float, float]]:
    """Per-step overhead of each solver relative to one forward of a 3x256 MLP at ``batch``.

    Returns ``{solver: (direct, isolated, forward_ms)}``: ``direct`` is ``(time(sample with the
    MLP) - NFE time(MLP)) / (NFE time(MLP))`` (min of interleaved repeats; noisy on a loaded
    machine, since it is a small difference of large times); ``isolated`` is
    ``time(sample with a free network) / NFE / time(MLP)``, i.e. everything but the network:
    the solver's arithmetic, the ScoreModel wrapper, the conversions, the NFE counting.
    """
    sde = ss.VPSDE()
    net = ss.MLP(2, hidden=256, depth=3).eval()
    model = ss.ScoreModel(net, sde, prediction="eps")
    free = ss.ScoreModel(_FreeNet(), sde, prediction="eps")
    x_T = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 0.5)
    kw = {"x_T": x_T, "steps": steps, "grid": "logsnr", "denoise": False}
    result = {}
    with torch.no_grad():
        for name in OURS:
            if QUICK and name not in QUICK:
                continue
            kw_m = dict(kw)
            if name == "dpm_solver_v3":
                # EMS on 201 knots over the VP range (the per-step cost does not depend on their values).
                kw_m["ems"] = ss.sampling.EMS.constant(-6.0, 7.0, 1.0, shape=(2,), knots=201)
            nfe = ss.sample(model, method=name, **kw_m).nfe
            fwd, smp = [], []
            for _ in range(repeats):
                fwd.append(_min_time(lambda n=nfe: [net(x_T, t) for _ in range(n)], 1))
                smp.append(_min_time(lambda m=name, k=kw_m: ss.sample(model, method=m, **k), 1))
            t_fwd = min(fwd) / nfe
            direct = (min(smp) - min(fwd)) / min(fwd)
            isolated = (
                _min_time(lambda m=name, k=kw_m: ss.sample(free, method=m, **k), 3 * repeats) / nfe / t_fwd
            )
            result[name] = (direct, isolated, t_fwd * 1e3)
    return result


# ---------------------------------------------------------------------------------------------- #
# Tables.
# ---------------------------------------------------------------------------------------------- #
def best_per_family(results: dict, by: int = 0) -> dict[str, dict[int, tuple[float, int, str]]]:
    """For each family, the option with the least error (``by=0``: pathwise; ``by=2``: sliced W2)
    at each NFE budget, as ``(error, nfe, option)``."""
    fam: dict = {}
    for (family, option), row in results.items():
        for budget, entry in row.items():
            nfe = entry[1]
            if not isinstance(nfe, int) or not math.isfinite(entry[by]):
                continue
            cur = fam.setdefault(family, {}).get(budget)
            if cur is None or entry[by] < cur[0]:
                fam[family][budget] = (entry[by], nfe, option)
    return fam


BOOT = {"resamples": 2000, "seed": 99}


def ratio_bootstrap(ours: dict, peers: dict, budget: int) -> tuple[float, float, float, float, float]:
    """Ours / best peer (pathwise RMS) at ``budget`` with its draw-to-draw uncertainty.

    A paired bootstrap over the draws (Efron & Tibshirani 1993, ch. 6): each resample draws the
    held-out ``x_T`` with replacement, recomputes every option's RMS on it, and takes the best of
    ours over the best peer, so the spread includes the choice of the best option on noisy data.
    Returns ``(ratio, standard error, 2.5 % and 97.5 % percentiles, fraction of resamples <= 0.5)``.
    """

    def stack(results: dict) -> torch.Tensor:
        rows = [
            r[budget][3]
            for r in results.values()
            if budget in r and len(r[budget]) == 4 and math.isfinite(r[budget][0])
        ]
        return torch.stack(rows)  # (options, draws)

    return bootstrap_ratio(stack(ours), stack(peers))


def bootstrap_ratio(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float, float, float]:
    """:func:`ratio_bootstrap` on per-draw squared errors ``a: (options, draws)`` (ours) and
    ``b: (options, draws)`` (peers) of the same draws."""
    n = a.shape[1]
    ratio = math.sqrt(float(a.mean(1).min() / b.mean(1).min()))
    g = torch.Generator().manual_seed(BOOT["seed"])
    idx = torch.randint(n, (BOOT["resamples"], n), generator=g)
    w = torch.zeros(BOOT["resamples"], n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(idx.shape, dtype=torch.float64)
    )
    reps = ((w @ a.T).min(1).values / (w @ b.T).min(1).values).sqrt()
    lo, hi = (float(v) for v in torch.quantile(reps, torch.tensor([0.025, 0.975], dtype=torch.float64)))
    return ratio, float(reps.std()), lo, hi, float((reps <= 0.5).double().mean())


def fmt_cell(entry, budget: int) -> str:
    if entry is None:
        return "-"
    err, nfe, option = entry
    used = "" if nfe == budget else f" ({nfe})"
    return f"{err:.2e}{used} [{option}]"


def table(fam: dict, lines: list[str]) -> None:
    lines.append("| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    lines.append("|---" * (len(NFES) + 1) + "|")
    for family, row in fam.items():
        lines.append(f"| {family} | " + " | ".join(fmt_cell(row.get(n), n) for n in NFES) + " |")


def full_table(results: dict, lines: list[str]) -> None:
    lines.append("| sampler | option | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    lines.append("|---" * (len(NFES) + 2) + "|")
    for (family, option), row in results.items():
        cells = []
        for n in NFES:
            if n not in row:
                cells.append("-")
            elif not isinstance(row[n][1], int):
                cells.append(row[n][1])
            else:
                err, nfe, dist = row[n][:3]
                cells.append(f"{err:.2e} / {dist:.2e}" + ("" if nfe == n else f" ({nfe})"))
        lines.append(f"| {family} | {option} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ring", type=int, default=1000, help="samples on the 2-D ring")
    parser.add_argument("--n-64", type=int, default=200, help="samples on the 64-D mixture")
    parser.add_argument("--out", default="docs/bench_samplers.md")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only a few of our solvers (smoke test)")
    parser.add_argument("--ours", default=None, help="comma-separated subset of our solvers to run")
    parser.add_argument("--problems", default=None, help="comma-separated substrings of problem names")
    parser.add_argument("--seed", type=int, default=1, help="seed of the held-out x_T draws")
    parser.add_argument(
        "--shortlist",
        default=None,
        help="an earlier page of this benchmark: run only our options near our best there",
    )
    parser.add_argument("--dump", default=None, help="save every option's per-draw squared errors here (.pt)")
    parser.add_argument(
        "--optimized-nfes",
        default=None,
        help='comma-separated budgets at which grid="optimized" runs (default all)',
    )
    parser.add_argument("--nfes", default=None, help="comma-separated NFE budgets (default 5,10,20)")
    parser.add_argument(
        "--reference-from",
        default=None,
        help="a --dump file of an earlier run (same seed): reuse its reference",
    )
    parser.add_argument("--within", type=float, default=2.0, help="the shortlist's factor over our best")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        QUICK.update({"unipc", "deis"})
    if args.ours:
        QUICK.update(args.ours.split(","))
    if args.optimized_nfes is not None:
        OPT_NFES.intersection_update(int(v) for v in args.optimized_nfes.split(",") if v)
    if args.nfes:
        global NFES
        NFES = tuple(int(v) for v in args.nfes.split(","))
    earlier = torch.load(args.reference_from, weights_only=False) if args.reference_from else {}
    t_start = time.time()
    sde = ss.VPSDE()
    lines = [
        "# Probability-flow ODE samplers vs diffusers and k-diffusion",
        "",
        f"Generated by `{' '.join(['PYTHONPATH=src python benchmarks/samplers.py', *sys.argv[1:]])}` "
        "(one CPU thread). "
        "RMS pathwise error per dimension at `t_end = 1e-3` (no final denoising step, for every "
        "sampler) against dopri5 at rtol = atol = 1e-10 in float64 from the same `x_T`, VP SDE "
        "(beta 0.1 -> 20). Each cell: the best option (by pathwise error) of that sampler at that NFE "
        "budget [option]; in the full tables `pathwise / sliced W2`; `(n)` = NFE actually used "
        "when the budget is not a multiple of the evaluations per step. See the module docstring "
        "for how peers are driven.",
        "",
    ]
    summary: list[str] = []
    boot_rows: list[str] = []
    import importlib.metadata as md

    versions = {}
    for dist in ("diffusers", "k-diffusion"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "NOT INSTALLED"
    lines.append("Peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    lines.append("")
    header = list(lines)
    v3_rows: list[str] = []
    dumped: dict = {}
    for pname, (gmm, n) in problems(args.n_ring, args.n_64).items():
        if args.problems and not any(p in pname for p in args.problems.split(",")):
            continue
        oracle = ss.AnalyticScore(gmm, sde)
        if args.shortlist:
            SHORT["now"] = read_shortlist(args.shortlist, args.within)[pname]
            SHORT["page"] = read_shortlist(args.shortlist, math.inf)[pname]
        x_T = torch.randn(n, gmm.dim, generator=torch.Generator().manual_seed(args.seed))
        disjoint_from_pilots(x_T)
        s_end, sig_end = (float(v) for v in sde.marginal(torch.tensor(T_END, dtype=torch.float64)))

        def exact_samples(
            seed: int,
            n: int = n,
            gmm: ss.GaussianMixture = gmm,
            s_end: float = s_end,
            sig_end: float = sig_end,
        ) -> torch.Tensor:
            g = torch.Generator().manual_seed(seed)
            x0 = gmm.sample(n, generator=g)
            return s_end * x0 + sig_end * torch.randn(x0.shape, generator=g, dtype=torch.float64)

        SW["ref"] = exact_samples(2)
        sw_floor = sw2(exact_samples(3))
        t0 = time.time()
        if pname in earlier:
            if not torch.equal(earlier[pname]["x_T"], x_T):
                raise ValueError(f"{args.reference_from}: its x_T for {pname} are not this run's")
            ref_res = types.SimpleNamespace(x=earlier[pname]["ref"], nfe="(reused)")
        else:
            ref_res = ss.sample(
                ss.AnalyticScore(gmm, sde),
                x_T=x_T.double(),
                method="dopri5",
                steps=1,
                t_end=T_END,
                denoise=False,
                rtol=1e-10,
                atol=1e-10,
            )
        ref = ref_res.x
        if args.dump:  # the reference first, so that other scripts can use it while this one runs
            dumped[pname] = {"x_T seed": args.seed, "x_T": x_T, "ref": ref}
            torch.save(dumped, args.dump)
        ref_err = math.nan  # checked in the run that made the reused reference
        if pname not in earlier:
            check = ss.sample(
                oracle,
                x_T=x_T[:CHECK_DRAWS].double(),
                method="dpm_solver_3",
                steps=400,
                grid="logsnr",
                t_end=T_END,
                denoise=False,
            ).x
            ref_err = rms(check, ref[:CHECK_DRAWS])
        print(f"[{pname}] reference: dopri5 NFE {ref_res.nfe}, vs DPM-Solver-3 1200 NFE: {ref_err:.1e}")
        ours = run_ours(oracle, x_T, ref)
        peers: dict = {}
        for label, runner in (("diffusers", run_diffusers), ("k-diffusion", run_kdiffusion)):
            try:
                peers.update(runner(sde, oracle, x_T, ref))
            except ImportError as e:
                peers[(f"{label} (not installed: {e})", "-")] = {}
        fam_ours = {f"scoresde {k}": v for k, v in best_per_family(ours).items()}
        fam_peers = best_per_family(peers)
        sw_ours = {f"scoresde {k}": v for k, v in best_per_family(ours, by=2).items()}
        sw_peers = best_per_family(peers, by=2)
        lines += [
            f"## {pname}, {n} samples",
            "",
            f"Reference: dopri5 used {ref_res.nfe} NFE; its distance to DPM-Solver-3 with 400 steps "
            f"(1200 NFE) is {ref_err:.1e} (on the first {min(n, CHECK_DRAWS)} draws), "
            "the floor of this table.",
            "",
        ]
        table({**fam_ours, **fam_peers}, lines)
        lines.append("")
        for budget in NFES:

            def best(fam: dict, budget: int = budget) -> tuple:
                return min((v[budget] + (k,) for k, v in fam.items() if budget in v), key=lambda e: e[0])

            best_o, best_p = best(fam_ours), best(fam_peers)
            r, se, lo, hi, frac = ratio_bootstrap(ours, peers, budget)
            boot_rows.append(
                f"| {pname} | {budget} | {best_o[0]:.3e} ({best_o[3]} [{best_o[2]}]) | {best_p[0]:.3e} "
                f"({best_p[3]} [{best_p[2]}]) | {r:.2f} +- {se:.2f} | {lo:.2f} - {hi:.2f} | {frac:.2f} |"
            )
            sbest_o, sbest_p = best(sw_ours), best(sw_peers)
            summary.append(
                f"| {pname} | {budget} | {best_o[0]:.2e} ({best_o[3]} [{best_o[2]}]) | "
                f"{best_p[0]:.2e} ({best_p[3]} [{best_p[2]}]) | {best_o[0] / best_p[0]:.2f} | "
                f"{sbest_o[0]:.3f} ({sbest_o[3]} [{sbest_o[2]}]) | {sbest_p[0]:.3f} ({sbest_p[3]} "
                f"[{sbest_p[2]}]) | {sw_floor:.3f} | {sbest_o[0] / sbest_p[0]:.2f} |"
            )
        if "scoresde dpm_solver_v3" in fam_ours:
            rest = {k: v for k, v in fam_ours.items() if k != "scoresde dpm_solver_v3"}
            for budget in NFES:
                if budget not in fam_ours["scoresde dpm_solver_v3"]:
                    continue
                v3 = fam_ours["scoresde dpm_solver_v3"][budget]
                none = (math.nan, 0, "-", "not run")
                bo = min(
                    (v[budget] + (k,) for k, v in rest.items() if budget in v),
                    key=lambda e: e[0],
                    default=none,
                )
                bp = min((v[budget] + (k,) for k, v in fam_peers.items() if budget in v), key=lambda e: e[0])
                v3_rows.append(
                    f"| {pname} | {budget} | {v3[0]:.2e} [{v3[2]}] | {bo[0]:.2e} ({bo[3]} [{bo[2]}]) | "
                    f"{bp[0]:.2e} ({bp[3]} [{bp[2]}]) | {v3[0] / bp[0]:.2f} | {bo[0] / bp[0]:.2f} |"
                )
        lines += ["<details><summary>every option</summary>", ""]
        full_table(ours, lines)
        lines.append("")
        full_table(peers, lines)
        lines += ["", "</details>", ""]
        if args.dump:
            dumped[pname] |= {
                "ours": {k: {b: (c[0], c[3]) for b, c in r.items() if len(c) == 4} for k, r in ours.items()},
                "peers": {
                    k: {b: (c[0], c[3]) for b, c in r.items() if len(c) == 4} for k, r in peers.items()
                },
            }
            torch.save(dumped, args.dump)
        print(f"[{pname}] done in {time.time() - t0:.0f}s", flush=True)
    lines[len(header) : len(header)] = [
        "## Summary: our best fixed-step solver vs the best peer",
        "",
        "Pathwise: RMS error to the reference. Distribution: sliced W2 (128 fixed directions) to as "
        "many exact samples of p_{t_end}; *floor*: the sliced W2 between two exact sample sets of "
        "that size (no sampler can be expected to go below it). Each column picks the best option "
        "per family for that metric.",
        "",
        "| problem | NFE | ours, pathwise | best peer, pathwise | ours / peer | ours, SW2 | best peer, "
        "SW2 | SW2 floor | ours / peer (SW2) |",
        "|---|---|---|---|---|---|---|---|---|",
        *summary,
        "",
        "### Uncertainty of the pathwise ratio",
        "",
        f"Paired bootstrap over the held-out draws (x_T seed {args.seed}, as many as each problem's "
        f"section says; {BOOT['resamples']} resamples, seed {BOOT['seed']}), "
        "re-selecting the best option of each side in every resample: ratio +- standard error, the "
        "2.5-97.5 % percentile interval, and the fraction of resamples in which ours / peer <= 0.5.",
        "",
        "| problem | NFE | ours | best peer | ours / peer +- s.e. | 95 % interval | P(<= 0.5) |",
        "|---|---|---|---|---|---|---|",
        *boot_rows,
        "",
    ]
    if v3_rows:
        cost = ", ".join(f"{d}-D {t:.0f} s" for d, t in V3["cost"].items())
        at = len(header) + len(summary) + len(boot_rows) + 14
        lines[at:at] = [
            "## DPM-Solver-v3 vs our other solvers and the best peer",
            "",
            f"`dpm_solver_v3` with EMS computed by `scoresde.sampling.compute_ems` from the oracle on "
            f"{V3_PILOT['pilot']} pilot trajectories (seed {V3_PILOT['seed']}, not the benchmark's x_T), "
            f"{V3_PILOT['knots']} lambda intervals from t = 1 to t_end: {V3_PILOT['knots']} evaluations "
            f"for the trajectories and {V3_PILOT['knots'] + 1} Jacobian-vector products at the pilot batch "
            f"size, once per problem ({cost}), not counted in the NFE. Best option per cell "
            "[grid, option]; the ratios are to the best peer.",
            "",
            "| problem | NFE | dpm_solver_v3 | our best other solver | best peer | v3 / peer | "
            "other / peer |",
            "|---|---|---|---|---|---|---|",
            *v3_rows,
            "",
        ]
    lines += [
        '## Cost of grid="optimized"',
        "",
        "`scoresde.sampling.optimize_grid` per solver, NFE and problem: "
        + "; ".join(
            f"{d}-D: {c['pilot']} prior draws (seed {c['seed']}, not the benchmark's x_T), "
            f"{c['sweeps']} sweeps of golden-section search, {c['evals']} evaluations per time"
            for d, c in ((d, pilot_config(d)) for d in sorted({k[0] for k in PILOT_NFE}))
        )
        + "; a dopri5 reference at rtol = atol = 1e-6. Cells: pilot NFE (batched model calls at "
        "the pilot batch size) [start grid] wall seconds.",
        "",
        "| D | solver | " + " | ".join(f"NFE {n}" for n in NFES) + " |",
        "|---" * (len(NFES) + 2) + "|",
    ]
    for d, name in sorted({k[:2] for k in PILOT_NFE}):
        cells = [
            f"{PILOT_NFE[(d, name, n)][0]} [{PILOT_NFE[(d, name, n)][1]}] {PILOT_NFE[(d, name, n)][2]:.0f} s"
            if (d, name, n) in PILOT_NFE
            else "-"
            for n in NFES
        ]
        lines.append(f"| {d} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    if not args.skip_overhead:
        ov = overhead()
        lines += [
            "## Per-step overhead",
            "",
            "Against one forward of a 3x256 MLP (`ss.MLP(2, 256, 3)`) at batch 4096, 2-D data, 10 "
            "logsnr steps, one thread. *isolated*: `time(ss.sample with a network that returns zeros) "
            "/ NFE / time(MLP forward)`, i.e. all per-evaluation work except the network (solver "
            "arithmetic, ScoreModel wrapper and prediction conversions, NFE counting). *direct*: "
            "`(time(ss.sample with the MLP) - NFE x time(MLP)) / (NFE x time(MLP))`, min of 5 "
            "interleaved repeats; a small difference of large times, so on a loaded machine it "
            "is dominated by timing noise (it can even be negative).",
            "",
            "| solver | isolated overhead / forward | direct overhead / forward | MLP forward (ms) |",
            "|---|---|---|---|",
        ]
        lines += [f"| {k} | {v[1]:.2%} | {v[0]:+.1%} | {v[2]:.2f} |" for k, v in ov.items()]
        lines.append("")
    lines.append(f"Total benchmark time: {time.time() - t_start:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

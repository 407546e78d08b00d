"""Model-adaptive grids (``grid="optimized"``) against the exact Gaussian-mixture oracle."""

from __future__ import annotations

import json

import pytest
import torch

import scoresde as ss
import scoresde.sampling.grid_opt as og_mod
from scoresde.sampling import GridOptimizer, OptimizedGrid, optimize_grid


def _problem():
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.05, 0.02, 0.1])
    return ss.AnalyticScore(gmm, sde), sde


def _rms_to_reference(oracle, sde, ts: torch.Tensor, method: str, seed: int) -> float:
    x_T = torch.randn(400, 2, generator=torch.Generator().manual_seed(seed))
    ends = ts[[0, -1]]
    ref = ss.sample(
        oracle, x_T=x_T.double(), method="dopri5", grid=ends, denoise=False, rtol=1e-9, atol=1e-9
    ).x
    x = ss.sample(oracle, x_T=x_T, method=method, grid=ts, denoise=False).x
    return float((x.double() - ref).pow(2).mean().sqrt())


@pytest.mark.parametrize("method", ["unipc", "dpm_solver++_2m"])
def test_deterministic_and_never_worse_than_start(method: str) -> None:
    oracle, sde = _problem()
    kw = {"t_end": 1e-3, "pilot": 256, "seed": 3}
    a = optimize_grid(oracle, sde, 6, method, (2,), **kw)
    b = optimize_grid(oracle, sde, 6, method, (2,), **kw)
    assert torch.equal(a.times, b.times)
    assert a.pilot_error <= a.pilot_error_start
    assert a.start in ss.GRIDS and len(a.times) == 7 and bool((a.times[1:] < a.times[:-1]).all())
    assert a.pilot_nfe > 6 * (6 - 1) * 2  # at least the golden-section runs were counted
    # On held-out prior draws (another seed) the optimised grid is no worse than its start grid.
    start = ss.time_grid(sde, 6, a.start, t_end=1e-3)
    held_opt = _rms_to_reference(oracle, sde, a.times, method, seed=11)
    held_start = _rms_to_reference(oracle, sde, start, method, seed=11)
    assert held_opt <= held_start, (held_opt, held_start)


def test_sample_optimized_is_cached_and_saved() -> None:
    oracle, sde = _problem()
    tuner = GridOptimizer()  # the cache is this object
    calls = []
    real = og_mod.optimize_grid

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs, pilot=64)

    og_mod.optimize_grid = counting
    try:
        kw = {"shape": (8, 2), "method": "unipc", "steps": 4, "grid": tuner, "t_end": 1e-3}
        r1 = ss.sample(oracle, **kw, generator=torch.Generator().manual_seed(0))
        r2 = ss.sample(oracle, **kw, generator=torch.Generator().manual_seed(1))
        assert len(calls) == 1
        assert torch.equal(r1.times, r2.times)
        assert r1.nfe == 4 + 1  # the pilot's evaluations are not the sample's
        # Different options or steps are different cache entries.
        ss.sample(oracle, **{**kw, "steps": 5}, generator=torch.Generator().manual_seed(0))
        assert len(calls) == 2
        # JSON round trip (what a checkpoint stores) and re-seeding the cache with it.
        stored = tuner.grid(oracle, sde, 4, "unipc", (2,), t_end=1e-3)
        text = json.dumps(stored.to_json())
        loaded = OptimizedGrid.from_json(json.loads(text))
        # Bit equality: JSON writes float64 with repr, which round-trips exactly; no arithmetic.
        torch.testing.assert_close(loaded.times, stored.times, rtol=0, atol=0)
        tuner.clear(oracle)
        tuner.add(oracle, sde, loaded)
        r3 = ss.sample(oracle, **kw, generator=torch.Generator().manual_seed(0))
        assert len(calls) == 2
        torch.testing.assert_close(r3.x, r1.x)
    finally:
        og_mod.optimize_grid = real


def test_bad_arguments() -> None:
    oracle, sde = _problem()
    with pytest.raises(ValueError, match="stochastic"):
        optimize_grid(oracle, sde, 4, "euler_maruyama", (2,))
    with pytest.raises(ValueError, match="pilot"):
        optimize_grid(oracle, sde, 4, "unipc", (2,), pilot=0)
    with pytest.raises(ValueError, match="starts"):
        optimize_grid(oracle, sde, 4, "unipc", (2,), starts=0)
    with pytest.raises(ValueError, match="tol"):
        optimize_grid(oracle, sde, 4, "unipc", (2,), tol=float("nan"))
    with pytest.raises(ValueError, match="needs 5 times"):
        OptimizedGrid.from_json({"times": [1.0, 0.5], "method": "unipc", "steps": 4, "shape": [2]})


def test_more_starts_never_worse_and_sweeps_stop_when_converged() -> None:
    oracle, sde = _problem()
    kw = {"t_end": 1e-3, "pilot": 128, "seed": 5, "evals": 5}
    one = optimize_grid(oracle, sde, 5, "deis", (2,), sweeps=2, **kw)
    two = optimize_grid(oracle, sde, 5, "deis", (2,), sweeps=2, starts=2, **kw)
    assert two.pilot_error <= one.pilot_error
    # Every named grid's pilot error, the best of which both results are at least as good as.
    starts = [
        float(
            (
                ss.sample(
                    oracle,
                    sde,
                    x_T=torch.randn(128, 2, generator=torch.Generator().manual_seed(5)),
                    method="deis",
                    grid=ss.time_grid(sde, 5, g, t_end=1e-3),
                    denoise=False,
                ).x.double()
                - ss.sample(
                    oracle,
                    sde,
                    x_T=torch.randn(128, 2, generator=torch.Generator().manual_seed(5)),
                    method="dopri5",
                    grid=torch.tensor([1.0, 1e-3], dtype=torch.float64),
                    denoise=False,
                    rtol=1e-6,
                    atol=1e-6,
                ).x.double()
            )
            .pow(2)
            .mean()
            .sqrt()
        )
        for g in ss.GRIDS
    ]
    assert two.pilot_error <= min(starts) + 1e-12
    # With tol = inf a second sweep never runs: the cost is that of exactly one sweep.
    capped = optimize_grid(oracle, sde, 5, "deis", (2,), sweeps=50, tol=float("inf"), **kw)
    single = optimize_grid(oracle, sde, 5, "deis", (2,), sweeps=1, **kw)
    assert capped.pilot_nfe == single.pilot_nfe
    assert torch.equal(capped.times, single.times)
    # With tol = 0 sweeps go on while anything improves, and stop at the first sweep that does not.
    long = optimize_grid(oracle, sde, 5, "deis", (2,), sweeps=50, tol=0.0, **kw)
    per_sweep = (5 - 1) * 5 * 5
    assert long.pilot_nfe < single.pilot_nfe + 49 * per_sweep
    assert long.pilot_error <= single.pilot_error

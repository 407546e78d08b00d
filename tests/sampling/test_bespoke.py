"""Bespoke non-stationary solvers (``method="bespoke"``) against the exact Gaussian-mixture oracle."""

from __future__ import annotations

import json

import pytest
import torch

import scoresde as ss
from scoresde.sampling import BespokeSolver, bespoke_from_base, fit_bespoke

T_END = 1e-3


def _gmm2() -> ss.GaussianMixture:
    return ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.05, 0.02, 0.1])


def _gmm16() -> ss.GaussianMixture:
    g = torch.Generator().manual_seed(3)
    means = torch.randn(4, 16, generator=g, dtype=torch.float64)
    scales = torch.logspace(-2, 0, 16, dtype=torch.float64)  # anisotropic: 100x between axes
    covs = torch.stack([torch.diag(scales**2)] * 4)
    return ss.GaussianMixture([0.4, 0.3, 0.2, 0.1], means, covs)


def _held_out(oracle, solver: BespokeSolver, dim: int, seed: int = 11, n: int = 400) -> float:
    """RMS endpoint error on fresh prior draws (another seed than the training draws)."""
    sde = oracle.sde
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, dim, generator=g, dtype=torch.float64) * sde.prior_std()
    ends = solver.times[[0, -1]]
    ref = ss.sample(oracle, x_T=x_T, method="dopri5", grid=ends, denoise=False, rtol=1e-9, atol=1e-9).x
    x = ss.sample(oracle, x_T=x_T, method="bespoke", solver=solver, t_end=T_END, denoise=False).x
    return float((x - ref).pow(2).mean().sqrt())


@pytest.mark.parametrize("sde", [ss.VPSDE(), ss.VESDE(sigma_max=20.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("base", ["ddim", "dpm_solver++_2m", "dpm_solver++_3m", "unipc", "deis", "ipndm"])
def test_at_initialisation_it_is_the_base_solver(sde: ss.SDE, base: str) -> None:
    oracle = ss.AnalyticScore(_gmm2(), sde)
    ts = ss.time_grid(sde, 5, "logsnr", t_end=T_END)
    solver = bespoke_from_base(sde, base, ts, grid="logsnr")
    assert solver.steps == 5 and solver.base == ss.sampling.registry.canonical_method(base)
    x_T = (
        torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * sde.prior_std()
    )
    want = ss.sample(oracle, x_T=x_T, method=base, grid=ts, denoise=False)
    got = ss.sample(oracle, x_T=x_T, method="bespoke", solver=solver, t_end=T_END, denoise=False)
    assert got.nfe == want.nfe == 5
    # The same linear map evaluated in another order: a few float64 ulps of the state's scale
    # per coefficient (DEIS's polynomial weights are the least well conditioned).
    scale = float(want.x.abs().max())
    torch.testing.assert_close(got.x, want.x, rtol=0, atol=1e-11 * scale)


@pytest.mark.parametrize(
    ("gmm", "sde", "dim", "steps"),
    [(_gmm2, ss.VPSDE(), 2, 4), (_gmm16, ss.VESDE(sigma_max=20.0), 16, 5)],
    ids=["2d-vp", "16d-ve"],
)
def test_training_lowers_the_held_out_error(gmm, sde: ss.SDE, dim: int, steps: int) -> None:
    oracle = ss.AnalyticScore(gmm(), sde)
    fit = fit_bespoke(
        oracle, sde, steps, (dim,), base="unipc", grid="logsnr", t_end=T_END, pilot=256, iterations=60,
        lr=0.03, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
    )  # fmt: skip
    assert fit.pilot_error <= fit.pilot_error_start == fit.start_errors[0]
    assert fit.history[0] == pytest.approx(fit.pilot_error_start, rel=1e-9)
    assert fit.pilot_nfe > (60 + 1) * steps and fit.seconds > 0
    assert fit.solver.pilot == 256 and fit.solver.shape == (dim,) and fit.solver.iterations == 60
    times = fit.solver.times
    assert float(times[0]) == sde.T and abs(float(times[-1]) - T_END) < 1e-15
    assert bool((times[1:] < times[:-1]).all())
    start, trained = _held_out(oracle, fit.start, dim), _held_out(oracle, fit.solver, dim)
    assert trained < 0.8 * start, (trained, start)


def test_fit_is_deterministic_for_a_seed() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    kw = {"t_end": T_END, "pilot": 64, "iterations": 8, "dtype": torch.float64}
    a = fit_bespoke(oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(7), **kw).solver
    b = fit_bespoke(oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(7), **kw).solver
    c = fit_bespoke(oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(8), **kw).solver
    assert torch.equal(a.times, b.times) and torch.equal(a.a, b.a) and torch.equal(a.b, b.b)
    assert not torch.equal(a.b, c.b)  # other training draws, another solver
    with torch.no_grad():  # the fit takes its gradients whatever the caller's mode
        d = fit_bespoke(oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(7), **kw).solver
    assert torch.equal(a.b, d.b)


def test_the_start_is_the_candidate_of_least_pilot_error() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    ts = ss.time_grid(sde, 4, "logsnr", t_end=T_END)
    ddim, unipc = bespoke_from_base(sde, "ddim", ts), bespoke_from_base(sde, "unipc", ts)
    fit = fit_bespoke(
        oracle, sde, 4, (2,), starts=[ddim, unipc], pilot=64, iterations=0, dtype=torch.float64,
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    assert fit.start is unipc and fit.start_errors[1] < fit.start_errors[0]
    assert fit.pilot_error == fit.pilot_error_start == fit.start_errors[1]
    assert torch.equal(fit.solver.b, unipc.b) and fit.solver.base == "unipc"
    with pytest.raises(ValueError, match="a start of 4 steps was given for a bespoke solver of 5 steps"):
        fit_bespoke(oracle, sde, 5, (2,), starts=[unipc], pilot=4)


def test_json_round_trip_and_sampling_with_the_stored_solver() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    fit = fit_bespoke(
        oracle, sde, 3, (2,), t_end=T_END, pilot=32, iterations=5, generator=torch.Generator().manual_seed(1)
    )
    text = json.dumps(fit.solver.to_json())
    loaded = BespokeSolver.from_json(json.loads(text))
    # Bit equality: JSON writes float64 with repr, which round-trips exactly; no arithmetic.
    for name in ("times", "a", "b"):
        torch.testing.assert_close(getattr(loaded, name), getattr(fit.solver, name), rtol=0, atol=0)
    assert loaded.to_json() == fit.solver.to_json()
    kw = {"shape": (16, 2), "method": "bespoke", "t_end": T_END, "seed": 3}
    torch.testing.assert_close(
        ss.sample(oracle, solver=loaded, **kw).x, ss.sample(oracle, solver=fit.solver, **kw).x, rtol=0, atol=0
    )


def test_bad_input_gives_named_errors() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    ts = ss.time_grid(sde, 4, "logsnr", t_end=T_END)
    good = bespoke_from_base(sde, "unipc", ts)
    with pytest.raises(ValueError, match="4 steps needs 4 coefficients a"):
        BespokeSolver(times=ts, a=torch.zeros(3), b=good.b)
    with pytest.raises(ValueError, match=r"coefficients b of shape \(4, 4\)"):
        BespokeSolver(times=ts, a=good.a, b=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="lower triangular"):
        BespokeSolver(times=ts, a=good.a, b=torch.ones(4, 4))
    with pytest.raises(ValueError, match="strictly decreasing"):
        BespokeSolver(times=ts.flip(0), a=good.a, b=good.b)
    stored = good.to_json()
    stored["b"][2] = stored["b"][2][:-1]
    with pytest.raises(ValueError, match="row 2 of b"):
        BespokeSolver.from_json(stored)
    with pytest.raises(ValueError, match="unknown sampling method 'rk4'"):
        bespoke_from_base(sde, "rk4", ts)
    with pytest.raises(ValueError, match="stochastic"):
        bespoke_from_base(sde, "euler_maruyama", ts)
    with pytest.raises(ValueError, match="adaptive"):
        bespoke_from_base(sde, "dopri5", ts)
    with pytest.raises(ValueError, match="dpm_solver_v3 has no bespoke form"):
        bespoke_from_base(sde, "dpm_solver_v3", ts)
    with pytest.raises(ValueError, match="one model evaluation per step"):
        bespoke_from_base(sde, "heun", ts)
    with pytest.raises(ValueError, match="unknown sampling method"):
        fit_bespoke(oracle, sde, 4, (2,), base="rk4", pilot=4, iterations=0)
    with pytest.raises(ValueError, match="a grid of 4 steps was given for a bespoke solver of 5 steps"):
        fit_bespoke(oracle, sde, 5, (2,), grid=ts, pilot=4, iterations=0)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        fit_bespoke(oracle, sde, 0, (2,))
    with pytest.raises(ValueError, match="y has 3 labels for a pilot of 4"):
        fit_bespoke(oracle, sde, 4, (2,), pilot=4, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs the option solver="):
        ss.sample(oracle, shape=(2, 2), method="bespoke")
    with pytest.raises(ValueError, match="fitted on"):
        ss.sample(oracle, shape=(2, 2), method="bespoke", solver=good, t_end=1e-2)
    with pytest.raises(ValueError, match="BespokeSolver"):
        ss.sample(oracle, shape=(2, 2), method="bespoke", solver=good.to_json(), t_end=T_END)


def test_holdout_selection_is_never_worse_on_the_validation_draws() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    kw = {"t_end": T_END, "pilot": 16, "holdout": 48, "dtype": torch.float64, "reference_tol": 1e-9}
    for lr, iterations in ((0.03, 20), (3.0, 12)):  # a sensible rate, and one that overshoots
        fit = fit_bespoke(
            oracle, sde, 4, (2,), iterations=iterations, lr=lr, eval_every=4,
            generator=torch.Generator().manual_seed(5), **kw,
        )  # fmt: skip
        assert fit.holdout == 48 and fit.val_error <= fit.val_error_start
        assert [k for k, _ in fit.val_history] == [0, 4, 8, 12, 16, 20][: iterations // 4 + 1]
        assert fit.val_error == min(e for _, e in fit.val_history)
        assert fit.val_history[0][1] == fit.val_error_start
        # The validation draws follow the training draws in the generator: made again here, the
        # returned solver's error on them is the recorded one (the same float64 solves).
        g = torch.Generator().manual_seed(5)
        torch.randn(16, 2, generator=g, dtype=torch.float64)
        x_val = torch.randn(48, 2, generator=g, dtype=torch.float64) * sde.prior_std()
        ends = fit.solver.times[[0, -1]]
        ref = ss.sample(oracle, x_T=x_val, method="dopri5", grid=ends, denoise=False, rtol=1e-9, atol=1e-9).x
        for solver, want in ((fit.solver, fit.val_error), (fit.start, fit.val_error_start)):
            x = ss.sample(oracle, x_T=x_val, method="bespoke", solver=solver, t_end=T_END, denoise=False).x
            assert float((x - ref).pow(2).mean().sqrt()) == pytest.approx(want, rel=1e-9)
    # Validation draws of their own generator: the same whatever the pilot size.
    own = [
        fit_bespoke(
            oracle,
            sde,
            4,
            (2,),
            t_end=T_END,
            pilot=n,
            holdout=32,
            iterations=0,
            dtype=torch.float64,
            holdout_generator=torch.Generator().manual_seed(9),
        ).val_error_start
        for n in (8, 24)
    ]
    assert own[0] == own[1]
    # Without a holdout there is no validation error.
    plain = fit_bespoke(oracle, sde, 4, (2,), t_end=T_END, pilot=16, iterations=2, dtype=torch.float64)
    assert plain.holdout == 0 and plain.val_history == [] and plain.val_error != plain.val_error


def test_minibatch_fit_is_deterministic_for_a_seed() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    kw = {"t_end": T_END, "pilot": 64, "batch": 16, "iterations": 10, "eval_every": 5, "dtype": torch.float64}
    runs = [
        fit_bespoke(oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(s), **kw) for s in (7, 7, 8)
    ]
    a, b, c = (r.solver for r in runs)
    assert torch.equal(a.times, b.times) and torch.equal(a.a, b.a) and torch.equal(a.b, b.b)
    assert runs[0].history == runs[1].history and len(runs[0].history) == 10
    assert not torch.equal(a.b, c.b)
    # Chosen by the whole pilot's error, measured at 0, 5 and 10: never worse than the start.
    assert [k for k, _ in runs[0].val_history] == [0, 5, 10]
    assert runs[0].pilot_error <= runs[0].pilot_error_start
    per_draw = fit_bespoke(
        oracle, sde, 4, (2,), generator=torch.Generator().manual_seed(7), loss="draw_rms", holdout=16, **kw
    )
    assert per_draw.val_error <= per_draw.val_error_start and not torch.equal(per_draw.solver.b, a.b)


def test_generalisation_controls_give_named_errors() -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2(), sde)
    kw = {"pilot": 8, "iterations": 0}
    with pytest.raises(ValueError, match="holdout must be an integer >= 0"):
        fit_bespoke(oracle, sde, 4, (2,), holdout=-1, **kw)
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1"):
        fit_bespoke(oracle, sde, 4, (2,), eval_every=0, **kw)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        fit_bespoke(oracle, sde, 4, (2,), batch=0, **kw)
    with pytest.raises(ValueError, match=r"batch must be at most pilot \(8\)"):
        fit_bespoke(oracle, sde, 4, (2,), batch=9, **kw)
    with pytest.raises(ValueError, match="loss must be one of"):
        fit_bespoke(oracle, sde, 4, (2,), loss="l1", **kw)
    with pytest.raises(ValueError, match="holdout_y has 3 labels for a holdout of 4"):
        fit_bespoke(oracle, sde, 4, (2,), holdout=4, holdout_y=torch.zeros(3, dtype=torch.long), **kw)
    with pytest.raises(ValueError, match="give labels for both"):
        fit_bespoke(oracle, sde, 4, (2,), holdout=4, y=torch.zeros(8, dtype=torch.long), **kw)

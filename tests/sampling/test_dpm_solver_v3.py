"""DPM-Solver-v3 (Zheng et al. 2023) and its empirical model statistics, on exact oracles.

The EMS reduce to DPM-Solver++ / DPM-Solver where the paper says they do; on Gaussian data with a
diagonal covariance they are known in closed form and make even a first-order step nearly exact;
with EMS estimated from a mixture the fitted order of convergence is the declared one; the pilot is
deterministic for a fixed generator; bad inputs raise errors that name the problem.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss
from scoresde.sampling import EMS, compute_ems
from scoresde.sampling.dpm_solver_v3 import dpm_solver_v3
from tests.sampling.test_ode import reference, rms

T_END = 1e-2


def _lam_range(sde: ss.SDE, t_end: float = 1e-3) -> tuple[float, float]:
    lam = sde.lambda_t(torch.tensor([sde.T, t_end], dtype=torch.float64))
    return float(lam[0]), float(lam[1])


_EMS: dict = {}


def mixture_ems(sde_name: str) -> EMS:
    """EMS of the smooth 2-D mixture of tests/sampling/test_ode.py (cached)."""
    if sde_name not in _EMS:
        oracle = reference(sde_name)[0]
        _EMS[sde_name] = compute_ems(
            oracle,
            (2,),
            generator=torch.Generator().manual_seed(3),
            pilot=128,
            knots=100,
            dtype=torch.float64,
        )
    return _EMS[sde_name]


def fitted_slope(errs: list[float], steps: list[int]) -> float:
    lx = torch.log(torch.tensor(steps, dtype=torch.float64))
    ly = torch.log(torch.tensor(errs, dtype=torch.float64))
    lx = lx - lx.mean()
    return -float((lx * (ly - ly.mean())).sum() / (lx**2).sum())


@pytest.mark.parametrize(("l_value", "s_value"), [(1.0, 0.0), (0.0, -1.0)])
def test_constant_ems_first_order_is_ddim(l_value: float, s_value: float) -> None:
    """``l = 1, s = b = 0`` is DPM-Solver++ (Sec. 3.1) and ``l = 0, s = -1, b = 0`` DPM-Solver
    (``g`` proportional to ``eps``): at first order both are DDIM."""
    oracle, sde, x_T, _ = reference("vp")
    ems = EMS.constant(*_lam_range(sde), l_value, s_value)
    kw = {"x_T": x_T, "steps": 12, "grid": "logsnr", "t_end": T_END, "denoise": False}
    x = ss.sample(oracle, method="dpm_solver_v3", ems=ems, order=1, corrector=False, **kw).x
    torch.testing.assert_close(x, ss.sample(oracle, method="ddim", **kw).x, rtol=0, atol=1e-8)


def test_constant_ems_second_order_is_the_phi_form_of_dpm_solver_pp() -> None:
    """With the DPM-Solver++ statistics a second-order step is the data-prediction exponential
    integrator with the exact ``phi_1`` weight: ``x_{i+1} = (sigma_{i+1}/sigma_i) x_i +
    s_{i+1} [phi_0 x0_i + phi_1 (x0_i - x0_{i-1}) / r_i]``."""
    from scoresde.sampling.schedule import grid_schedule, phi

    oracle, sde, x_T, _ = reference("vp")
    ems = EMS.constant(*_lam_range(sde), 1.0)
    ts = ss.time_grid(sde, 6, "logsnr", t_end=T_END).double()
    x = dpm_solver_v3(oracle, sde, x_T, ts, ems=ems, order=2, corrector=False, lower_order_final=False)
    sch = grid_schedule(sde, ts)
    y, prev = x_T, None
    for i in range(sch.steps):
        h = sch.h(i)
        x0 = oracle.denoise(y, ts[i])
        step = sch.s[i + 1] * phi(h, 0) * x0
        if prev is not None:
            step = step + sch.s[i + 1] * phi(h, 1) * (x0 - prev) * h / sch.h(i - 1)
        y, prev = sch.sigma[i + 1] / sch.sigma[i] * y + step, x0
    torch.testing.assert_close(x, y, rtol=0, atol=1e-8)


def _diagonal_gaussian() -> tuple[ss.GaussianMixture, torch.Tensor, torch.Tensor]:
    mu = torch.tensor([0.8, -1.2, 0.3], dtype=torch.float64)
    c = torch.tensor([0.3, 0.05, 1.5], dtype=torch.float64)
    return ss.GaussianMixture([1.0], mu[None], c[None]), mu, c


def _diagonal_gaussian_ems() -> EMS:
    if "gauss" not in _EMS:
        oracle = ss.AnalyticScore(_diagonal_gaussian()[0], ss.VPSDE())
        _EMS["gauss"] = compute_ems(
            oracle, (3,), generator=torch.Generator().manual_seed(0), pilot=32, knots=200, dtype=torch.float64
        )
    return _EMS["gauss"]


def test_ems_of_a_diagonal_gaussian_are_the_closed_form() -> None:
    """For ``x0 ~ N(mu, diag(c))``, ``sigma grad eps = diag(1 / (1 + c e^{2 lambda}))`` is
    constant in ``x``, so ``l = 1 / (1 + c e^{2 lambda})`` exactly, ``f = -l mu`` does not vary
    over the pilot (``s = 0``) and ``b = df/dlambda = 2 c e^{2 lambda} mu / (1 + c e^{2 lambda})^2``."""
    _, mu, c = _diagonal_gaussian()
    ems = _diagonal_gaussian_ems()
    e = torch.exp(2 * ems.lam)[:, None]
    l_exact = 1.0 / (1.0 + c * e)
    torch.testing.assert_close(ems.l, l_exact, rtol=0, atol=1e-9)
    assert float(ems.s.abs().max()) < 1e-6
    b_exact = 2 * c * e * mu / (1.0 + c * e) ** 2
    assert float((ems.b - b_exact).abs().max()) < 2e-3 * float(b_exact.abs().max())


def test_ems_make_a_diagonal_gaussian_nearly_exact_in_few_steps() -> None:
    """With those EMS ``g`` is constant along every trajectory, so even first order is exact up to
    the EMS discretisation; DDIM (the DPM-Solver++ statistics) is far off at the same steps."""
    gmm, _, _ = _diagonal_gaussian()
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm, sde)
    ems = _diagonal_gaussian_ems()
    x_T = sde.prior_sample((64, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = {"x_T": x_T, "grid": "logsnr", "t_end": T_END, "denoise": False}
    ref = ss.sample(oracle, method="dopri5", steps=1, rtol=1e-10, atol=1e-10, **kw).x
    v3 = ss.sample(oracle, method="dpm_solver_v3", ems=ems, steps=3, order=1, **kw).x
    ddim = ss.sample(oracle, method="ddim", steps=3, **kw).x
    assert rms(v3, ref) < 1e-3
    assert rms(ddim, ref) > 30 * rms(v3, ref)


@pytest.mark.parametrize(
    ("opts", "steps", "order"),
    [
        ({"order": 2, "corrector": False}, [20, 40, 80], 2),
        ({"order": 3, "corrector": False}, [20, 40, 80], 3),
        ({}, [40, 80, 160], 3),
    ],
    ids=["order2", "order3", "order3-corrector"],
)
def test_order_of_convergence_with_estimated_ems(opts: dict, steps: list[int], order: int) -> None:
    """The fitted slope of pathwise error vs steps is the predictor's order within 0.3, with EMS
    estimated from the mixture itself (the default, with corrector, is the registry's order)."""
    oracle, _, x_T, x_ref = reference("vp")
    ems = mixture_ems("vp")
    errs = []
    for n in steps:
        kw = {"x_T": x_T, "steps": n, "grid": "logsnr", "t_end": T_END, "denoise": False}
        errs.append(
            rms(
                ss.sample(oracle, method="dpm_solver_v3", ems=ems, lower_order_final=False, **opts, **kw).x,
                x_ref,
            )
        )
    slope = fitted_slope(errs, steps)
    assert abs(slope - order) <= 0.3, (opts, errs, slope)
    if not opts:
        assert order == ss.SAMPLERS["dpm_solver_v3"].order


def test_estimated_ems_beat_dpm_solver_pp_statistics() -> None:
    """At 10 steps the EMS estimated from the model lower the error of the same solver run with
    the DPM-Solver++ statistics (l = 1, s = b = 0), which is what they are for."""
    oracle, sde, x_T, x_ref = reference("vp")
    kw = {"x_T": x_T, "steps": 10, "grid": "logsnr", "t_end": T_END, "denoise": False}
    fitted = rms(ss.sample(oracle, method="dpm_solver_v3", ems=mixture_ems("vp"), **kw).x, x_ref)
    plain = rms(
        ss.sample(oracle, method="dpm_solver_v3", ems=EMS.constant(*_lam_range(sde), 1.0), **kw).x, x_ref
    )
    assert fitted < 0.7 * plain, (fitted, plain)


def test_matches_reference_with_exact_nfe_on_ve() -> None:
    oracle, _, x_T, x_ref = reference("ve")
    ems = compute_ems(
        oracle, (2,), generator=torch.Generator().manual_seed(3), pilot=64, knots=100, dtype=torch.float64
    )
    res = ss.sample(
        oracle, x_T=x_T, method="dpm_solver_v3", ems=ems, steps=50, grid="logsnr", t_end=T_END, denoise=False
    )
    assert res.nfe == 50
    assert rms(res.x, x_ref) < 1e-3


def test_pilot_is_deterministic_for_a_fixed_generator() -> None:
    oracle = reference("vp")[0]
    make = lambda seed: compute_ems(  # noqa: E731
        oracle, (2,), generator=torch.Generator().manual_seed(seed), pilot=16, knots=20, dtype=torch.float64
    )
    a, b, c = make(5), make(5), make(6)
    for name in ("lam", "l", "s", "b"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.l, c.l) and not torch.equal(a.s, c.s)


def test_state_dict_round_trip_and_shapes() -> None:
    ems = mixture_ems("vp")
    back = EMS.from_state_dict(
        {k: v.clone() if torch.is_tensor(v) else v for k, v in ems.state_dict().items()}
    )
    for name in ("lam", "l", "s", "b"):
        assert torch.equal(getattr(ems, name), getattr(back, name))
    assert back.pilot == 128 and ems.l.shape == (101, 2) and ems.lam.shape == (101,)


def test_any_sample_shape() -> None:
    """EMS of shape ``(2, 2)`` on ``(B, 2, 2)`` samples agree with the flat ``(B, 4)`` run."""
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture([0.6, 0.4], [[1.0, 0.0, -0.5, 0.5], [-1.0, 0.5, 0.5, 0.0]], [0.2, 0.3])
    oracle = ss.AnalyticScore(gmm, sde)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    flat = compute_ems(oracle, (4,), generator=g(), pilot=16, knots=30, dtype=torch.float64)
    square = compute_ems(oracle, (2, 2), generator=g(), pilot=16, knots=30, dtype=torch.float64)
    torch.testing.assert_close(square.l.reshape(31, 4), flat.l)
    x_T = sde.prior_sample((8, 4), generator=g(), dtype=torch.float64)
    kw = {"steps": 6, "grid": "logsnr", "denoise": False}
    a = ss.sample(oracle, x_T=x_T, method="dpm_solver_v3", ems=flat, **kw).x
    b = ss.sample(oracle, x_T=x_T.reshape(8, 2, 2), method="dpm_solver_v3", ems=square, **kw).x
    torch.testing.assert_close(b.reshape(8, 4), a, rtol=1e-10, atol=1e-10)


def test_grid_to_sigma_zero_ends_with_a_denoising_step() -> None:
    oracle, _, x_T, _ = reference("vp")
    ems = mixture_ems("vp")
    res = ss.sample(
        oracle, x_T=x_T, method="dpm_solver_v3", ems=ems, steps=8, grid="uniform", t_end=0.0, denoise=False
    )
    assert res.nfe == 8 and bool(torch.isfinite(res.x).all())


def test_bad_inputs_raise() -> None:
    oracle, _, x_T, _ = reference("vp")
    ems = mixture_ems("vp")
    kw = {"x_T": x_T, "steps": 4, "grid": "logsnr", "t_end": T_END}
    with pytest.raises(ValueError, match="ems="):
        ss.sample(oracle, method="dpm_solver_v3", **kw)
    with pytest.raises(TypeError, match="needs ems="):
        ss.sample(oracle, method="dpm_solver_v3", ems=ems.state_dict(), **kw)
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="dpm_solver_v3 order"):
            ss.sample(oracle, method="dpm_solver_v3", ems=ems, order=bad, **kw)
    for flag in ("corrector", "predictor_pseudo", "corrector_pseudo", "lower_order_final"):
        with pytest.raises(TypeError, match=flag):
            ss.sample(oracle, method="dpm_solver_v3", ems=ems, **{flag: "yes"}, **kw)
    narrow = EMS.constant(-1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="the EMS cover lambda"):
        ss.sample(oracle, method="dpm_solver_v3", ems=narrow, **kw)
    wide3 = EMS.constant(-20.0, 20.0, 1.0, shape=(3,))
    with pytest.raises(ValueError, match="does not broadcast"):
        ss.sample(oracle, method="dpm_solver_v3", ems=wide3, **kw)
    with pytest.raises(TypeError, match=r"explicit torch\.Generator"):
        compute_ems(oracle, (2,), generator=None)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="pilot"):
        compute_ems(oracle, (2,), generator=g, pilot=1)
    with pytest.raises(ValueError, match="knots"):
        compute_ems(oracle, (2,), generator=g, knots=2)
    with pytest.raises(ValueError, match="t_start > t_end"):
        compute_ems(oracle, (2,), generator=g, t_start=0.5, t_end=0.6)
    lam = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match="strictly increasing"):
        EMS(lam, torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"shape \(K, \*S\)"):
        EMS(torch.tensor([0.0, 1.0]), torch.zeros(3, 1), torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="NaN"):
        EMS(torch.tensor([0.0, 1.0]), torch.full((2, 1), math.nan), torch.zeros(2, 1), torch.zeros(2, 1))


def test_taylor_derivatives_full_and_pseudo_order() -> None:
    """Full order recovers the derivatives of a cubic exactly from 4 points; the pseudo-order
    estimates are the divided differences, exact for ``g'`` only when ``g`` is linear."""
    from scoresde.sampling.dpm_solver_v3 import _derivatives

    lams = [0.0, -0.3, -0.7, -1.2]
    cubic = lambda u: 1.0 + 2.0 * u - 1.5 * u**2 + 0.5 * u**3  # noqa: E731
    gs = [torch.tensor([cubic(u)], dtype=torch.float64) for u in lams]
    d1, d2, d3 = (float(v) for v in _derivatives(lams, gs, pseudo=False))
    assert (d1, d2, d3) == pytest.approx((2.0, -3.0, 3.0), abs=1e-10)
    p1, p2, p3 = (float(v) for v in _derivatives(lams, gs, pseudo=True))
    assert p1 == pytest.approx((cubic(lams[1]) - cubic(0.0)) / lams[1], abs=1e-12)
    assert p3 == pytest.approx(3.0, abs=1e-10)  # the top divided difference of a cubic is exact
    assert abs(p2 - (-3.0)) > 0.1  # the dropped corrections of g'' are not zero here
    line = [torch.tensor([0.5 - 2.0 * u], dtype=torch.float64) for u in lams[:2]]
    assert float(_derivatives(lams[:2], line, pseudo=True)[0]) == pytest.approx(-2.0, abs=1e-12)

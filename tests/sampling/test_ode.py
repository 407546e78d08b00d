"""Probability-flow ODE solvers against the exact Gaussian-mixture oracle.

Pathwise error against a high-accuracy solution of the same ODE from the same ``x_T``; the
log-log slope of that error against the number of steps is compared with each solver's declared
order; NFE is counted exactly; any tensor shape; bad options raise.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss

ODE_METHODS = [
    "euler",
    "heun",
    "ddim",
    "dpm_solver_2",
    "dpm_solver_3",
    "dpm_solver++_2m",
    "dpm_solver++_3m",
    "unipc",
    "unipc_bh1",
    "deis",
    "ipndm",
]
EVALS_PER_STEP = {"heun": 2, "dpm_solver_2": 2, "dpm_solver_3": 3}
MULTISTEP = {"dpm_solver++_2m", "dpm_solver++_3m", "unipc", "unipc_bh1", "deis"}

# Steps in the asymptotic regime of each solver on the problem below (logsnr grid).
ORDER_STEPS = {
    "euler": [20, 40, 80],
    "ddim": [20, 40, 80],
    "heun": [20, 40, 80],
    "dpm_solver_2": [20, 40, 80],
    "dpm_solver_3": [20, 40, 80],
    "dpm_solver++_2m": [20, 40, 80],
    "dpm_solver++_3m": [40, 80, 160],
    "unipc": [20, 40, 80],
    "unipc_bh1": [20, 40, 80],
    "deis": [40, 80, 160],
    "ipndm": [40, 80, 160],
}


def smooth_mixture() -> ss.GaussianMixture:
    """A smooth 2-D mixture with moderate isotropic spreads (0.45-0.55)."""
    return ss.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]], [0.3, 0.2, 0.25])


SDE_MAKERS = {
    "ve": lambda: ss.VESDE(sigma_min=0.01, sigma_max=10.0),
    "vp": lambda: ss.VPSDE(),
    "subvp": lambda: ss.SubVPSDE(),
    "edm": lambda: ss.EDMSDE(sigma_min=0.002, sigma_max=20.0),
    "straight": lambda: ss.StraightSDE(),
}

_REFS: dict = {}


def reference(sde_name: str, n: int = 32, t_end: float = 1e-2):
    """``(oracle, sde, x_T, x_ref)``: dopri5 at rtol = atol = 1e-10 in float64 (cached)."""
    key = (sde_name, n, t_end)
    if key not in _REFS:
        sde = SDE_MAKERS[sde_name]()
        oracle = ss.AnalyticScore(smooth_mixture(), sde)
        x_T = sde.prior_sample((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = ss.sample(
            oracle, x_T=x_T, method="dopri5", steps=1, t_end=t_end, denoise=False, rtol=1e-10, atol=1e-10
        )
        _REFS[key] = (oracle, sde, x_T, ref.x)
    return _REFS[key]


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def fitted_order(method: str, sde_name: str, steps: list[int]) -> float:
    """Least-squares slope of log(error) against log(steps)."""
    oracle, _, x_T, x_ref = reference(sde_name)
    opts = {"lower_order_final": False} if method in MULTISTEP else {}
    errs = []
    for n in steps:
        x = ss.sample(
            oracle, x_T=x_T, method=method, steps=n, grid="logsnr", t_end=1e-2, denoise=False, **opts
        ).x
        errs.append(rms(x, x_ref))
    lx = torch.log(torch.tensor(steps, dtype=torch.float64))
    ly = torch.log(torch.tensor(errs, dtype=torch.float64))
    lx = lx - lx.mean()
    return -float((lx * (ly - ly.mean())).sum() / (lx**2).sum())


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize("method", ODE_METHODS)
def test_order_of_convergence(method: str, sde_name: str) -> None:
    """The fitted slope of pathwise error vs steps is the declared order within 0.3."""
    slope = fitted_order(method, sde_name, ORDER_STEPS[method])
    assert abs(slope - ss.SAMPLERS[method].order) <= 0.3, f"{method} on {sde_name}: slope {slope:.2f}"


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["subvp", "edm", "straight"])
@pytest.mark.parametrize("method", ODE_METHODS)
def test_order_of_convergence_other_sdes(method: str, sde_name: str) -> None:
    steps = [2 * n for n in ORDER_STEPS[method]]
    slope = fitted_order(method, sde_name, steps)
    assert abs(slope - ss.SAMPLERS[method].order) <= 0.3, f"{method} on {sde_name}: slope {slope:.2f}"


# Steps with about 100 NFE each, and the tolerance on the RMS error that their order gives.
MODERATE = {
    "euler": (200, 0.06),
    "ddim": (100, 0.06),
    "heun": (50, 1e-2),
    "dpm_solver_2": (50, 1e-2),
    "dpm_solver_3": (33, 1e-3),
    "dpm_solver++_2m": (100, 1e-2),
    "dpm_solver++_3m": (100, 1e-3),
    "unipc": (100, 1e-3),
    "unipc_bh1": (100, 1e-3),
    "deis": (100, 1e-3),
    "ipndm": (100, 1e-2),
}


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp", "edm", "straight"])
@pytest.mark.parametrize("method", ODE_METHODS)
def test_matches_reference_with_exact_nfe(method: str, sde_name: str) -> None:
    oracle, _, x_T, x_ref = reference(sde_name)
    steps, tol = MODERATE[method]
    calls = []
    res = ss.sample(
        oracle,
        x_T=x_T,
        method=method,
        steps=steps,
        grid="logsnr",
        t_end=1e-2,
        denoise=False,
        callback=lambda i, t, x: calls.append(i),
    )
    assert res.nfe == steps * EVALS_PER_STEP.get(method, 1)
    assert calls == list(range(steps))
    assert rms(res.x, x_ref) < tol


@pytest.mark.parametrize("method", ODE_METHODS)
def test_grid_ending_at_zero_noise(method: str) -> None:
    """A uniform grid down to t = 0 (sigma = 0): the last step is first order, NFE drops by one per
    skipped correction, and the result stays close to dopri5's."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(smooth_mixture(), sde)
    x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # Reference: dopri5 to t = 1e-4 (the velocity is 0/0 at sigma = 0), then one exact-to-O(sigma^2)
    # DDIM step to t = 0.
    near = ss.sample(
        oracle, x_T=x_T, method="dopri5", steps=1, t_end=1e-4, denoise=False, rtol=1e-9, atol=1e-9
    )
    last = torch.tensor([1e-4, 0.0], dtype=torch.float64)
    ref = ss.sample(oracle, x_T=near.x, method="ddim", grid=last, denoise=False)
    steps = 60
    res = ss.sample(oracle, x_T=x_T, method=method, steps=steps, grid="uniform", t_end=0.0, denoise=False)
    extra = EVALS_PER_STEP.get(method, 1) - 1
    assert res.nfe == steps * (extra + 1) - (extra if method != "euler" else 0)
    assert bool(torch.isfinite(res.x).all())
    assert rms(res.x, ref.x) < (0.05 if ss.SAMPLERS[method].order == 1 else 0.01)


def test_tiny_final_sigma_in_float32() -> None:
    """VE down to its default eps = 1e-5 (sigma ~ 1.2e-4) in float32: every solver of order >= 2
    stays finite and within 2e-2 of the float64 reference after 30 logsnr steps."""
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    oracle = ss.AnalyticScore(smooth_mixture(), sde)
    x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(0))
    ref = ss.sample(oracle, x_T=x_T.double(), method="dopri5", steps=1, denoise=False, rtol=1e-9, atol=1e-9).x
    for method in [*ODE_METHODS, "dopri5"]:
        x = ss.sample(oracle, x_T=x_T, method=method, steps=30, grid="logsnr", denoise=False).x
        assert x.dtype == torch.float32 and bool(torch.isfinite(x).all()), method
        if ss.SAMPLERS[method].order >= 2:
            assert rms(x.double(), ref) < 2e-2, method


@pytest.mark.parametrize("method", [m for m in ODE_METHODS if m != "euler"])
def test_exact_for_point_mass_data(method: str) -> None:
    """For data at one point ``x0`` is constant along the ODE: every exponential integrator and
    Heun in ``(y, sigma_hat)`` is exact, whatever the step size."""
    point = ss.GaussianMixture([1.0], [[0.7, -0.3]], 0.0)
    for sde in (ss.VPSDE(), ss.VESDE(sigma_min=0.01, sigma_max=10.0)):
        oracle = ss.AnalyticScore(point, sde)
        x_T = sde.prior_sample((8, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        t_end = 1e-2
        s, sigma = sde.marginal(torch.tensor([sde.T, t_end], dtype=torch.float64))
        mu = point.means[0]
        exact = s[1] * mu + (sigma[1] / sigma[0]) * (x_T - s[0] * mu)
        x = ss.sample(oracle, x_T=x_T, method=method, steps=4, grid="uniform", t_end=t_end, denoise=False).x
        torch.testing.assert_close(x, exact, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("method", [*ODE_METHODS, "dopri5"])
def test_image_shaped_input(method: str) -> None:
    """(B, C, H, W) input gives the same result as the flattened (B, D) run."""
    gmm = ss.GaussianMixture.random(4, 3, 0.05, 0.3, generator=torch.Generator().manual_seed(3))
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm, sde)
    x_T = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    img = ss.sample(oracle, x_T=x_T, method=method, steps=6, grid="logsnr")
    flat = ss.sample(oracle, x_T=x_T.reshape(5, 4), method=method, steps=6, grid="logsnr")
    assert img.x.shape == (5, 1, 2, 2)
    assert img.nfe == flat.nfe
    torch.testing.assert_close(img.x.reshape(5, 4), flat.x, atol=1e-5, rtol=1e-5)


def test_dopri5_nfe_and_accuracy() -> None:
    """dopri5 reports its true NFE, which grows as the tolerance tightens, and is accurate."""
    oracle, _, x_T, _ = reference("vp")
    # An independent reference: DPM-Solver-3 with 600 steps (error ~1e-9 by its order).
    ref = ss.sample(
        oracle, x_T=x_T, method="dpm_solver_3", steps=600, grid="logsnr", t_end=1e-2, denoise=False
    )
    loose = ss.sample(
        oracle, x_T=x_T, method="dopri5", steps=1, t_end=1e-2, denoise=False, rtol=1e-4, atol=1e-4
    )
    tight = ss.sample(
        oracle, x_T=x_T, method="dopri5", steps=1, t_end=1e-2, denoise=False, rtol=1e-8, atol=1e-8
    )
    assert 0 < loose.nfe < tight.nfe
    assert loose.nfe % 6 == 2  # 1 initial + 1 step-size probe + 6 per attempted step
    assert rms(tight.x, ref.x) < 1e-6
    assert rms(loose.x, ref.x) < 1e-2
    with_denoise = ss.sample(oracle, x_T=x_T, method="dopri5", steps=1, t_end=1e-2, rtol=1e-4, atol=1e-4)
    assert with_denoise.nfe == loose.nfe + 1


def test_dopri5_step_size_probe_stays_in_the_interval() -> None:
    """Under VP the velocity at T is tiny (p_T ~ N(0, I)), so torchdiffeq's first-step probe
    lands far outside [t_end, T] (t = -22 here before the clamp); the model never sees it."""
    seen: list[float] = []

    class Recording(ss.AnalyticScore):
        def predict(self, kind, x, t, y=None):
            t = torch.as_tensor(t)
            seen.extend([float(t.min()), float(t.max())])
            return super().predict(kind, x, t, y)

    sde = ss.VPSDE()
    oracle = Recording(ss.GaussianMixture.ring(8, 2.0, 0.05), sde)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = ss.sample(oracle, sde, x_T=x_T, method="dopri5", rtol=1e-8, atol=1e-8, denoise=False, t_end=1e-3)
    assert torch.isfinite(res.x).all() and res.nfe > 20
    assert min(seen) >= 1e-3 - 1e-12 and max(seen) <= 1.0 + 1e-12
    ref = ss.sample(
        oracle, sde, x_T=x_T, method="dpm_solver_3", steps=300, grid="logsnr", t_end=1e-3, denoise=False
    )
    assert rms(res.x, ref.x) < 1e-5


def test_lower_order_final_changes_only_short_grids() -> None:
    oracle, _, x_T, _ = reference("vp")
    for method in MULTISTEP:
        for steps, differs in ((6, True), (20, False)):
            a = ss.sample(
                oracle, x_T=x_T, method=method, steps=steps, grid="logsnr", lower_order_final=True
            ).x
            b = ss.sample(
                oracle, x_T=x_T, method=method, steps=steps, grid="logsnr", lower_order_final=False
            ).x
            assert (not torch.equal(a, b)) == differs, (method, steps)


def test_unipc_orders() -> None:
    """UniPC with predictor order p converges with order p + 1 (the corrector's gain)."""
    for p in (1, 3):
        oracle, _, x_T, x_ref = reference("vp")
        errs = []
        steps = [40, 80, 160] if p == 3 else [20, 40, 80]
        for n in steps:
            x = ss.sample(
                oracle, x_T=x_T, method="unipc", steps=n, grid="logsnr", t_end=1e-2, denoise=False, order=p
            ).x
            errs.append(rms(x, x_ref))
        slope = math.log(errs[0] / errs[-1]) / math.log(steps[-1] / steps[0])
        assert abs(slope - (p + 1)) <= 0.3, (p, slope)


def test_unipc_final_corrector() -> None:
    """The optional corrector of the last step costs exactly one NFE and reduces the error."""
    oracle, _, x_T, x_ref = reference("vp")
    kw = {"x_T": x_T, "method": "unipc", "steps": 12, "grid": "logsnr", "t_end": 1e-2, "denoise": False}
    kw["lower_order_final"] = False
    plain = ss.sample(oracle, **kw)
    corrected = ss.sample(oracle, **kw, final_corrector=True)
    assert corrected.nfe == plain.nfe + 1 == 13
    assert rms(corrected.x, x_ref) < 0.9 * rms(plain.x, x_ref)


def test_bad_options() -> None:
    oracle, _, x_T, _ = reference("vp")
    for method in ODE_METHODS:
        with pytest.raises(TypeError, match="bogus"):
            ss.sample(oracle, x_T=x_T, method=method, steps=3, bogus=1)
    for bad in (0, 4, 2.5, True):
        with pytest.raises(ValueError, match="unipc order"):
            ss.sample(oracle, x_T=x_T, method="unipc", steps=3, order=bad)
    for method in MULTISTEP:
        with pytest.raises(TypeError, match="lower_order_final"):
            ss.sample(oracle, x_T=x_T, method=method, steps=3, lower_order_final="yes")
    with pytest.raises(TypeError, match="final_corrector"):
        ss.sample(oracle, x_T=x_T, method="unipc", steps=3, final_corrector=1)
    for kw in ({"rtol": -1.0}, {"atol": 0.0}, {"rtol": "tight"}):
        with pytest.raises(ValueError, match="tol"):
            ss.sample(oracle, x_T=x_T, method="dopri5", steps=3, **kw)
    with pytest.raises(ValueError, match="unknown sampling method"):
        ss.sample(oracle, x_T=x_T, method="dpm_solver_4", steps=3)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize(("order", "basis"), [(2, "t"), (4, "t"), (3, "sigma_hat")])
def test_deis_orders(sde_name: str, order: int, basis: str) -> None:
    """DEIS-tAB-k and rhoAB-k converge with order k; tAB4 with more than 3 but possibly less than 4:
    its corrected first step (trapezoidal, local error O(h^3)) caps the asymptotic order at 3,
    which shows only at many steps."""
    oracle, _, x_T, x_ref = reference(sde_name)
    steps = [40, 80, 160]
    errs = []
    for n in steps:
        kw = {"order": order, "basis": basis, "lower_order_final": False}
        kw.update(steps=n, grid="logsnr", t_end=1e-2, denoise=False)
        x = ss.sample(oracle, x_T=x_T, method="deis", **kw).x
        errs.append(rms(x, x_ref))
    slope = math.log(errs[0] / errs[-1]) / math.log(steps[-1] / steps[0])
    if order == 4:
        assert 3.2 <= slope <= 4.3, (order, basis, slope)
    else:
        assert abs(slope - order) <= 0.3, (order, basis, slope)


def test_ipndm_orders_rank() -> None:
    """iPNDM at order 1 is DDIM (Euler in ``y = x/s`` against ``sigma_hat``) to rounding, and each
    order up to 3 lowers the error at 20 steps (order 4 stays below order 2: with unequal steps the
    fixed weights' O(h^2) error dominates, so 3 and 4 are close)."""
    oracle, _, x_T, x_ref = reference("vp")
    kw = {"x_T": x_T, "steps": 20, "grid": "logsnr", "t_end": 1e-2, "denoise": False}
    x1 = ss.sample(oracle, method="ipndm", order=1, **kw).x
    torch.testing.assert_close(x1, ss.sample(oracle, method="ddim", **kw).x, atol=1e-12, rtol=1e-12)
    errs = [rms(ss.sample(oracle, method="ipndm", order=k, **kw).x, x_ref) for k in (1, 2, 3, 4)]
    assert errs[0] > errs[1] > errs[2] and errs[3] < errs[1], errs


def test_unipc_bh1_differs_from_bh2_and_converges() -> None:
    oracle, _, x_T, x_ref = reference("vp")
    kw = {"x_T": x_T, "steps": 10, "grid": "logsnr", "t_end": 1e-2, "denoise": False}
    a = ss.sample(oracle, method="unipc", **kw).x
    b = ss.sample(oracle, method="unipc_bh1", **kw).x
    assert not torch.equal(a, b)
    assert rms(b, x_ref) < 0.1

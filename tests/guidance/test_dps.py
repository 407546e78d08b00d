"""DPS as Chung et al. 2023 run it (Algorithm 1): structure, accuracy on an exact posterior, errors."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.guidance import Inpainting, compare_to_mixture, condition, dps_sample
from scoresde.sampling import GridOptimizer

from .test_conditional_sampling import _vector_problem

F64 = torch.float64


def test_zeta_zero_is_unconditional_ancestral_sampling() -> None:
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    dps = dps_sample(oracle, op, y_obs, shape=(64, 4), steps=40, zeta=0.0, seed=1, dtype=F64)
    anc = ss.sample(oracle, shape=(64, 4), method="ancestral", steps=40, seed=1, dtype=F64)
    torch.testing.assert_close(dps.x, anc.x, rtol=1e-12, atol=1e-12)
    assert dps.nfe == anc.nfe == 41


def test_dps_approximates_the_exact_posterior(sde: ss.SDE) -> None:
    """Measured (n = 3000, 200 steps, seed 0, zeta = 0.1, target noise 0.1): mode weights off by
    0.04 (VP), 0.06 (VE), 0.03 (sub-VP), means 0.005-0.010, covariances 0.010-0.012; the unguided
    VP sampler is off by 0.23 / 2.2 / 0.14.  The final residual settles near 2 * zeta (a
    normalised step has a fixed length)."""
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, sde)
    res = dps_sample(oracle, op, y_obs, shape=(3000, 4), steps=200, zeta=0.1, seed=0, dtype=F64)
    err = compare_to_mixture(condition(prior, op, y_obs, 0.1), res.x)
    assert err.weights < 0.08 and err.means < 0.03 and err.covs < 0.03, err
    resid = (op(res.x) - y_obs).norm(dim=1).mean()
    assert 0.1 < float(resid) < 0.3
    unguided = dps_sample(oracle, op, y_obs, shape=(3000, 4), steps=200, zeta=0.0, seed=0, dtype=F64)
    assert float((op(unguided.x) - y_obs).norm(dim=1).mean()) > 0.8


def test_batch_independent_noise_and_image_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    prior = ss.GaussianMixture.random(16, 2, eig_min=0.01, generator=g)
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    image = prior.sample(3, generator=g).reshape(3, 1, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[..., :2] = True
    op = Inpainting(mask)
    a = dps_sample(oracle, op, op(image), shape=(3, 1, 4, 4), steps=50, zeta=0.1, seed=4, dtype=F64)
    b = dps_sample(oracle, op, op(image[:2]), shape=(2, 1, 4, 4), steps=50, zeta=0.1, seed=4, dtype=F64)
    torch.testing.assert_close(a.x[:2], b.x)
    # The known pixels end near the observation (within a few step lengths), the others move freely.
    assert float((a.x - image)[..., :2].abs().max()) < 0.5
    calls = []
    dps_sample(oracle, op, op(image), shape=(3, 1, 4, 4), steps=5, callback=lambda i, t, x: calls.append(i))
    assert calls == [0, 1, 2, 3, 4]


def test_bad_input() -> None:
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    with pytest.raises(ValueError, match="zeta must be finite and >= 0"):
        dps_sample(oracle, op, y_obs, shape=(4, 4), zeta=-1.0)
    with pytest.raises(ValueError, match="unknown ancestral variance 'wide'"):
        dps_sample(oracle, op, y_obs, shape=(4, 4), variance="wide")
    with pytest.raises(TypeError, match="operator must be a LinearOperator"):
        dps_sample(oracle, torch.eye(4), y_obs, shape=(4, 4))
    with pytest.raises(ValueError, match=r"y_obs has shape \(1, 3\)"):
        dps_sample(oracle, op, torch.zeros(1, 3), shape=(4, 4))
    with pytest.raises(ValueError, match="give shape"):
        dps_sample(oracle, op, y_obs)
    with pytest.raises(ValueError, match="stopped being finite at step 1"):
        dps_sample(oracle, op, y_obs, x_T=torch.full((2, 4), 1e300, dtype=F64), zeta=1e300, steps=3)


def test_dps_is_a_sampler_of_ss_sample() -> None:
    """``ss.sample(method="dps")`` is ``dps_sample`` bit for bit (same generator), with its NFE,
    its trajectory and its error messages."""
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    kw = {"steps": 30, "dtype": F64, "record": True, "record_stride": 10}
    a = ss.sample(
        oracle,
        shape=(16, 4),
        method="dps",
        operator=op,
        y_obs=y_obs,
        zeta=0.1,
        generator=torch.Generator().manual_seed(3),
        **kw,
    )
    g = torch.Generator().manual_seed(3)
    b = dps_sample(oracle, op, y_obs, shape=(16, 4), zeta=0.1, generator=g, **kw)
    assert torch.equal(a.x, b.x)
    assert a.nfe == b.nfe == 31
    assert torch.equal(a.trajectory, b.trajectory) and a.trajectory.shape == (4, 16, 4)
    assert torch.equal(a.times, b.times)
    assert ss.SAMPLERS["dps"].stochastic and ss.SAMPLERS["dps"].required == ("operator", "y_obs")
    with pytest.raises(ValueError, match=r"method 'dps' needs the options operator=, y_obs="):
        ss.sample(oracle, shape=(4, 4), method="dps")
    with pytest.raises(ValueError, match=r"method 'dps' needs the option y_obs="):
        ss.sample(oracle, shape=(4, 4), method="dps", operator=op)
    with pytest.raises(TypeError, match="operator must be a LinearOperator"):
        ss.sample(oracle, shape=(4, 4), method="dps", operator=torch.eye(4), y_obs=y_obs)
    with pytest.raises(ValueError, match="zeta must be finite and >= 0"):
        ss.sample(oracle, shape=(4, 4), method="dps", operator=op, y_obs=y_obs, zeta=float("nan"))
    with pytest.raises(ValueError, match="grid optimisation needs a deterministic ODE solver"):
        dps_sample(oracle, op, y_obs, shape=(4, 4), grid=GridOptimizer())

"""encode / decode through the probability-flow ODE, slerp and temperature rescaling."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss


def test_encode_decode_round_trip(sde, gmm2d):
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(8, generator=torch.Generator().manual_seed(0))
    enc = ss.encode(oracle, sde, x, integrator=ss.AdaptiveIntegrator(rtol=1e-6, atol=1e-6))
    assert enc.x.shape == x.shape and enc.nfe > 0
    dec = ss.decode(oracle, sde, enc.x, integrator=ss.AdaptiveIntegrator(rtol=1e-6, atol=1e-6))
    assert float((dec.x - x).abs().max()) < 1e-4
    # The latent is the one the likelihood computation reaches.
    ll = ss.log_likelihood(oracle, sde, x, integrator=ss.AdaptiveIntegrator(rtol=1e-6, atol=1e-6))
    assert float((ll.z - enc.x).abs().max()) < 1e-4 * sde.prior_std()


def test_round_trip_error_shrinks_with_tolerance(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(8, generator=torch.Generator().manual_seed(1))
    errs = []
    for tol in (1e-3, 1e-4, 1e-5):
        z = ss.encode(oracle, sde, x, integrator=ss.AdaptiveIntegrator(rtol=tol, atol=tol)).x
        errs.append(
            float(
                (ss.decode(oracle, sde, z, integrator=ss.AdaptiveIntegrator(rtol=tol, atol=tol)).x - x)
                .abs()
                .max()
            )
        )
    assert errs[2] < errs[1] < errs[0], errs


def test_decoded_prior_samples_follow_the_data(gmm2d):
    """decode(prior draws) samples p_eps: component frequencies match the mixture weights."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    n = 400
    z = sde.prior_sample((n, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = ss.decode(oracle, sde, z, integrator=ss.AdaptiveIntegrator(rtol=1e-3, atol=1e-3)).x
    data = gmm2d.sample(n, generator=torch.Generator().manual_seed(3))
    freq = [torch.bincount(oracle.responsibilities(v, sde.eps).argmax(1), minlength=3) / n for v in (x, data)]
    p = gmm2d.weights
    assert bool(((freq[0] - freq[1]).abs() < 3 * torch.sqrt(2 * p * (1 - p) / n)).all()), freq


def test_slerp():
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(4, 3, 8, generator=g, dtype=torch.float64)
    z1 = torch.randn(4, 3, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ss.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(ss.slerp(z0, z1, 1.0), z1)
    path = ss.slerp(z0, z1, torch.linspace(0, 1, 5, dtype=torch.float64))
    assert path.shape == (5, 4, 3, 8)
    torch.testing.assert_close(path[2], ss.slerp(z0, z1, 0.5))
    # Equal-norm end points: the path stays on their sphere, at constant angular speed.
    z1n = z1 * (z0.flatten(1).norm(dim=1) / z1.flatten(1).norm(dim=1))[:, None, None]
    path = ss.slerp(z0, z1n, torch.linspace(0, 1, 5, dtype=torch.float64))
    norms = path.flatten(2).norm(dim=2)
    torch.testing.assert_close(norms, norms[:1].expand_as(norms))

    def cos(a, b):
        return (a.flatten(1) * b.flatten(1)).sum(1) / (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1))

    total = torch.arccos(cos(z0, z1n))
    torch.testing.assert_close(torch.arccos(cos(z0, path[1])), total / 4)
    # Parallel end points fall back to linear interpolation without NaNs.
    torch.testing.assert_close(ss.slerp(z0, 2 * z0, 0.5), 1.5 * z0)
    with pytest.raises(ValueError, match="same shape"):
        ss.slerp(z0, z1[:2], 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        ss.slerp(z0 * float("nan"), z1, 0.5)


def test_temperature():
    z = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = ss.temperature(z, 0.5)
    torch.testing.assert_close(out.flatten(1).norm(dim=1), 0.5 * z.flatten(1).norm(dim=1))
    per = ss.temperature(z, torch.tensor([1.0, 2.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(per[1], 2 * z[1])
    with pytest.raises(ValueError, match="positive"):
        ss.temperature(z, 0.0)
    with pytest.raises(ValueError, match="tau must"):
        ss.temperature(z, torch.ones(2))


def test_lower_temperature_raises_likelihood(gmm2d):
    """Fig. 3 / App. D.5: moderate rescaling of the latent norm moves decoded samples to
    higher (tau < 1) or lower (tau > 1) density regions."""
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    z = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    logps = []
    for tau in (1.4, 1.0, 0.6):
        x = ss.decode(
            oracle, sde, ss.temperature(z, tau), integrator=ss.FixedStepIntegrator(method="rk4", steps=20)
        ).x
        logps.append(float(oracle.log_prob(x, sde.eps).mean()))
    assert logps[0] < logps[1] < logps[2], logps


def test_encode_bad_input(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    with pytest.raises(ValueError, match="non-finite"):
        ss.encode(oracle, sde, torch.full((2, 2), float("inf"), dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        ss.decode(oracle, sde, torch.zeros(2, dtype=torch.float64))

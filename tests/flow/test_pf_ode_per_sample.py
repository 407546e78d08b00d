"""Per-sample-step Dormand-Prince (``norm="independent"``): exact batch independence, accuracy."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import scoresde as ss
from scoresde.flow.integrators import make_integrator
from scoresde.flow.likelihood import draw_probes
from scoresde.flow.pf_ode import odeint_per_sample

TOL = 1e-5


def test_linear_ode_per_sample_rates():
    """dy/du = -k y with a different k per sample: each sample meets its own tolerance."""
    k = torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64)
    y0 = torch.ones(3, 2, dtype=torch.float64)
    (y,), steps = odeint_per_sample(lambda u, s: (-k[:, None] * s[0],), (y0,), 0.0, 1.0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(y, torch.exp(-k)[:, None].expand(3, 2), rtol=1e-6, atol=1e-7)
    # The stiffer sample needs more steps; a sample alone takes exactly its steps in the batch.
    assert steps[0] < steps[2]
    (alone,), steps1 = odeint_per_sample(
        lambda u, s: (-k[2:][:, None] * s[0],), (y0[2:],), 0.0, 1.0, rtol=1e-8, atol=1e-8
    )
    assert int(steps1[0]) == int(steps[2]) and torch.equal(alone[0], y[2])


def test_backward_direction_and_calls():
    """Integrating from 1 to 0 inverts the forward solve; calls = 2 + 6 * max steps (FSAL)."""
    calls = 0

    def f(u, s):
        nonlocal calls
        calls += 1
        assert u.shape == (4,) and u.dtype == torch.float64
        return (torch.sin(3 * u)[:, None] * s[0],)

    y0 = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)[:, None]
    (y1,), steps = odeint_per_sample(f, (y0,), 0.0, 1.0, rtol=1e-9, atol=1e-9)
    assert calls == 2 + 6 * int(steps.max())
    exact = y0 * math.exp((1 - math.cos(3.0)) / 3)
    torch.testing.assert_close(y1, exact, rtol=1e-7, atol=1e-8)
    (back,), _ = odeint_per_sample(f, (y1,), 1.0, 0.0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(back, y0, rtol=1e-7, atol=1e-8)


def test_bad_tolerances_and_nonfinite_field():
    y0 = (torch.ones(2, 1, dtype=torch.float64),)
    with pytest.raises(ValueError, match="rtol"):
        odeint_per_sample(lambda u, s: s, y0, 0.0, 1.0, rtol=(1e-5, 1e-5))
    with pytest.raises(ValueError, match="atol"):
        odeint_per_sample(lambda u, s: s, y0, 0.0, 1.0, atol=-1.0)
    with pytest.raises(RuntimeError, match="step size underflow"):
        odeint_per_sample(lambda u, s: (torch.full_like(s[0], float("nan")),), y0, 0.0, 1.0)


def test_sample_alone_equals_sample_in_batch_exactly(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(64, generator=torch.Generator().manual_seed(7))
    batch = ss.log_likelihood(oracle, sde, x, integrator=ss.PerSample(rtol=TOL, atol=TOL))
    for i in (0, 17, 42, 63):
        alone = ss.log_likelihood(oracle, sde, x[i : i + 1], integrator=ss.PerSample(rtol=TOL, atol=TOL))
        assert abs(float(alone.logp[0] - batch.logp[i])) < 1e-12
        torch.testing.assert_close(alone.z[0], batch.z[i], rtol=0, atol=1e-12)
        assert alone.nfe <= batch.nfe


@pytest.mark.parametrize(
    "sde",
    [ss.VESDE(sigma_min=0.01, sigma_max=10.0), ss.VPSDE(), ss.SubVPSDE()],
    ids=["ve", "vp", "subvp"],
)
@pytest.mark.parametrize("time_variable", ["t", "log_sigma"])
def test_matches_exact_logp_2d(sde, time_variable, gmm2d):
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(32, generator=torch.Generator().manual_seed(0))
    res = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.PerSample(rtol=TOL, atol=TOL),
        options=ss.LikelihoodOptions(
            time_variable=time_variable, prior_logp=lambda z: oracle.log_prob(z, sde.T)
        ),
    )
    err = (res.logp - oracle.log_prob(x, sde.eps)).abs()
    assert float(err.mean()) <= 1e-4, float(err.mean())


def test_benchmark_problem_fewer_evaluations():
    """The 2-D VP mixture of benchmarks/likelihood.py (256 points): fewer batched evaluations
    than the shared-step per-sample norm, at mean error <= 1e-5 nats."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from likelihood import _gmm2d
    finally:
        sys.path.pop(0)
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(_gmm2d(), sde)
    x = _gmm2d().sample(256, generator=torch.Generator().manual_seed(0))
    exact = oracle.log_prob(x, sde.eps)
    kw = {"options": ss.LikelihoodOptions(prior_logp=lambda z: oracle.log_prob(z, sde.T))}
    new = ss.log_likelihood(oracle, sde, x, **kw, integrator=ss.PerSample(rtol=TOL, atol=TOL))
    old = ss.log_likelihood(
        oracle, sde, x, **kw, integrator=ss.AdaptiveIntegrator(rtol=TOL, atol=TOL, norm="per_sample")
    )
    assert new.nfe < old.nfe, (new.nfe, old.nfe)
    assert float((new.logp - exact).abs().mean()) <= 1e-5


def test_encode_decode_invert(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(16, generator=torch.Generator().manual_seed(3))
    z = ss.encode(oracle, sde, x, integrator=ss.PerSample())
    back = ss.decode(oracle, sde, z.x, integrator=ss.PerSample())
    torch.testing.assert_close(back.x, x, rtol=0, atol=1e-3)
    ref = ss.encode(oracle, sde, x, integrator=ss.AdaptiveIntegrator(rtol=1e-10, atol=1e-10))
    assert float((z.x - ref.x).abs().max()) < 1e-3


def test_independent_needs_dopri5(gmm2d):
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="dopri5"):
        ss.log_likelihood(oracle, sde, x, integrator=make_integrator("bosh3", norm="independent"))
    # Fixed-step methods ignore the norm.
    res = ss.log_likelihood(oracle, sde, x, integrator=make_integrator("rk4", norm="independent", steps=5))
    assert res.nfe == 20


def test_compact_evaluates_only_running_samples_with_the_same_result():
    """compact=True: the same trajectories and steps, and the field sees only running samples."""
    k = torch.tensor([0.5, 3.0, 40.0, 7.0], dtype=torch.float64)
    y0 = torch.ones(4, 2, dtype=torch.float64)
    sizes = []

    def f(u, s, index):
        sizes.append(index.numel())
        assert u.shape == index.shape and s[0].shape[0] == index.numel()
        return (-k[index][:, None] * s[0],)

    (full,), steps_full = odeint_per_sample(
        lambda u, s: (-k[:, None] * s[0],), (y0,), 0.0, 1.0, rtol=1e-8, atol=1e-8
    )
    (comp,), steps_comp = odeint_per_sample(f, (y0,), 0.0, 1.0, rtol=1e-8, atol=1e-8, compact=True)
    assert torch.equal(steps_full, steps_comp)
    torch.testing.assert_close(comp, full, rtol=0, atol=1e-14)
    assert sizes[0] == 4 and min(sizes) == 1  # the stiffest sample runs alone at the end
    # Work = sum over samples of their evaluations, not batch size x the hardest one's.
    assert sum(sizes) == 2 * 4 + 6 * int(steps_full.sum())


def test_independent_with_labels_and_probes_selects_each_samples_own(gmm2d):
    """Per-sample stepping hands the field a subset: labels and probes must follow their sample."""
    from scoresde.guidance import ClassConditionalScore, class_mixture

    sde = ss.VPSDE()
    model = ClassConditionalScore(gmm2d, sde)
    y = torch.arange(12) % model.num_classes
    mixtures = [class_mixture(gmm2d, c) for c in range(model.num_classes)]
    exact_by_class = [ss.AnalyticScore(m, sde) for m in mixtures]
    gen = torch.Generator().manual_seed(3)
    x = torch.cat([mixtures[int(c)].sample(1, generator=gen) for c in y])  # each from its own class

    def prior_for(labels):
        def prior(z):
            out = torch.empty(z.shape[0], dtype=z.dtype)
            for c, oracle in enumerate(exact_by_class):
                sel = labels == c
                if bool(sel.any()):
                    out[sel] = oracle.log_prob(z[sel], sde.T)
            return out

        return prior

    res = ss.log_likelihood(
        model, sde, x, y=y, integrator=ss.PerSample(), options=ss.LikelihoodOptions(prior_logp=prior_for(y))
    )
    exact = torch.stack([exact_by_class[int(c)].log_prob(x[i : i + 1], sde.eps)[0] for i, c in enumerate(y)])
    assert float((res.logp - exact).abs().mean()) < 1e-4
    # Hutchinson: a sample alone, with its own probes, gives exactly its value in the batch.
    probes = draw_probes(x, 2, generator=torch.Generator().manual_seed(0))
    batch = ss.log_likelihood(
        model,
        sde,
        x,
        y=y,
        integrator=ss.PerSample(),
        divergence=ss.Hutchinson(probes=probes),
        options=ss.LikelihoodOptions(prior_logp=prior_for(y)),
    )
    for i in (0, 5, 11):
        sl = slice(i, i + 1)
        alone = ss.log_likelihood(
            model,
            sde,
            x[sl],
            y=y[sl],
            integrator=ss.PerSample(),
            divergence=ss.Hutchinson(probes=probes[:, sl]),
            options=ss.LikelihoodOptions(prior_logp=prior_for(y[sl])),
        )
        assert abs(float(alone.logp[0] - batch.logp[i])) < 1e-12

"""The multilevel correction of fixed-step likelihood plans (Giles 2008; the default for
fixed-step integrators, ``PrecisionTarget(multilevel=False)`` turns it off) on a Gaussian whose
log-density is exact (``AnalyticScore``): the corrected coarse estimate is closer to the exact
mean than the uncorrected one and within its stated error; a reused plan carries its correction;
batches add its shared error linearly; bad inputs are refused by name."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as ss

# One anisotropic Gaussian in 4-D: rk4 on the log-SNR clock at 8 steps is off by about -4e-3
# nats per point with a spread of only 3.5e-3 (measured), i.e. a systematic bias, which the
# correction removes; heun2 at 8 steps is off by +0.26 (spread 0.2).
_MEAN = [[0.3, -0.2, 0.1, 0.0]]
_COV = [torch.diag(torch.tensor([0.05, 0.1, 0.2, 0.02], dtype=torch.float64)).tolist()]


def _setup(n: int = 96, seed: int = 0):
    sde = ss.VPSDE()
    gauss = ss.GaussianMixture([1.0], _MEAN, _COV)
    oracle = ss.AnalyticScore(gauss, sde)
    x = gauss.sample(n, generator=torch.Generator().manual_seed(seed)).double()
    return sde, oracle, x, oracle.log_prob(x, sde.eps).double()


def _run(oracle, sde, x, method: str, target, seed: int = 0, **kw) -> ss.LikelihoodResult:
    return ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.FixedStepIntegrator(method, 1),
        target_se=target,
        generator=torch.Generator().manual_seed(seed),
        options=ss.LikelihoodOptions(
            prior_logp=lambda z: oracle.log_prob(z, sde.T), time_variable="log_sigma"
        ),
        **kw,
    )


@pytest.mark.parametrize(("method", "se"), [("rk4", 0.004), ("heun2", 0.05)])
def test_corrected_coarse_estimate_beats_the_uncorrected(method, se):
    """Exact divergence, continuous data: the only errors are the solver's, so the corrected
    mean is off by the fine level's error plus the correction's sampling error; it must be
    within 3 of its stated s.e. plus the fine level's bound, and closer than the uncorrected."""
    sde, oracle, x, exact = _setup()
    r = _run(oracle, sde, x, method, ss.PrecisionTarget(se, multilevel=True), divergence="exact")
    p = r.plan
    assert p.fine_steps is not None and p.steps is not None and p.steps < p.fine_steps
    assert r.correction == p.correction and r.correction_se is not None and r.correction_se > 0
    assert r.mc_se == pytest.approx(r.correction_se, rel=1e-12)  # exact: no other noise
    assert r.mc_se <= se * (1 + 1e-9) and r.solver_error <= 0.25 * se * (1 + 1e-9)
    corrected = float(r.logp.mean() - exact.mean())
    uncorrected = corrected - r.correction
    assert abs(corrected) < abs(uncorrected) / 3, (corrected, uncorrected)
    assert abs(corrected) <= 3 * r.correction_se + r.solver_error, (corrected, r.correction_se)
    # The same steps without the correction: exactly the uncorrected mean.
    plain = ss.log_likelihood(
        oracle,
        sde,
        x,
        integrator=ss.FixedStepIntegrator(method, p.steps),
        divergence="exact",
        options=ss.LikelihoodOptions(
            prior_logp=lambda z: oracle.log_prob(z, sde.T), time_variable="log_sigma"
        ),
    )
    assert float(plain.logp.mean() - exact.mean()) == pytest.approx(uncorrected, abs=1e-9)
    assert r.bpd is None and r.nfe == plain.nfe + p.pilot_nfe


def test_multilevel_with_hutchinson_adds_the_variances():
    """With probes: the reported s.e. is the Monte-Carlo s.e. and the correction's in quadrature,
    at most the target.  (Gaussian probes: Rademacher ones are exact on a diagonal Jacobian.)
    A loose target: one probe suffices on the cheap replicate; a tight one: more probes."""
    sde, oracle, x, exact = _setup(n=256)
    for se, one_probe in ((0.4, True), (0.1, False)):
        r = _run(
            oracle,
            sde,
            x,
            "rk4",
            ss.PrecisionTarget(se, multilevel=True),
            divergence=ss.Hutchinson(probe="gaussian"),
        )
        p = r.plan
        assert p.divergence == "hutchinson" and (p.num_probes == 1) == one_probe, p
        assert p.var_probe > 0
        # The Monte-Carlo part: from the solve's own probes when it has several, else the plan's.
        mc = p.mc_se(x.shape[0], 1.0)
        if p.num_probes > 1:
            probes = r.logp_probes[0].double()
            mc = float((probes.var(0) / probes.shape[0]).sum().sqrt()) / x.shape[0]
        assert r.mc_se == pytest.approx(math.hypot(mc, r.correction_se), rel=1e-9)
        assert r.mc_se <= se * (1 + 1e-9)
        assert abs(float(r.logp.mean() - exact.mean())) <= 4 * r.mc_se + r.solver_error


def test_reused_multilevel_plan_corrects_another_batch():
    """A second batch of the same data reuses the plan: no pilot, the stored correction added,
    its s.e. widened by the batch's own deviation, and still closer than the uncorrected."""
    sde, oracle, x, exact = _setup(n=192)
    target = ss.PrecisionTarget(0.004, points=192, multilevel=True)
    first = _run(oracle, sde, x[:96], "rk4", target, divergence="exact")
    second = _run(oracle, sde, x[96:], "rk4", target, seed=1, divergence="exact", plan=first.plan)
    p = first.plan
    assert second.plan.pilot_nfe == 0 and second.plan.steps == p.steps and second.correction == p.correction
    assert second.nfe == 4 * p.steps
    want = math.sqrt(p.correction_var * (1 / p.pilot_points + 1 / 96))
    assert (
        second.correction_se == pytest.approx(want, rel=1e-9) and second.correction_se > first.correction_se
    )
    corrected = float(second.logp.mean() - exact[96:].mean())
    uncorrected = corrected - second.correction
    assert abs(corrected) < abs(uncorrected) / 2, (corrected, uncorrected)
    assert abs(corrected) <= 3 * second.correction_se + second.solver_error


def test_multilevel_with_quantized_data_reports_bits_per_dim():
    """Discrete data: bits/dim of the corrected log-likelihood, the correction's s.e. in bits/dim."""
    sde, oracle, x, _ = _setup(n=64)
    quant = ss.Quantization(64, -2.0, 2.0)
    bins = quant.levels_of(x.clamp(-2.0, 2.0)).double()
    r = _run(oracle, sde, bins, "rk4", ss.PrecisionTarget(0.02, multilevel=True), quantization=quant)
    d = x[0].numel()
    assert r.plan.units == "bits/dim" and r.bpd is not None
    assert torch.allclose(r.bpd, -r.logp / (d * math.log(2)))
    assert r.bpd_mean == pytest.approx(float(r.bpd.mean()))
    want = math.sqrt(r.plan.correction_var / r.plan.pilot_points) / (d * math.log(2))
    assert r.correction_se == pytest.approx(want, rel=1e-9) and r.mc_se <= 0.02 * (1 + 1e-9)


def test_bad_multilevel_inputs():
    sde, oracle, x, _ = _setup(n=8)
    with pytest.raises(ValueError, match="multilevel=True"):
        ss.log_likelihood(
            oracle,
            sde,
            x,
            integrator=ss.AdaptiveIntegrator(),
            target_se=ss.PrecisionTarget(0.1, multilevel=True),
        )
    with pytest.raises(TypeError, match="multilevel must be a bool"):
        ss.PrecisionTarget(0.1, multilevel="yes")  # type: ignore[arg-type]


def test_default_fixed_step_plan_is_multilevel():
    """``multilevel=None`` (default): on for the default (fixed-step) integrator, off for an
    adaptive one; ``False``: the plain plan, whose own steps meet the solver budget."""
    sde, oracle, x, _ = _setup(n=64)
    opts = ss.LikelihoodOptions(prior_logp=lambda z: oracle.log_prob(z, sde.T))
    default = ss.log_likelihood(oracle, sde, x, divergence="exact", target_se=0.004, options=opts)
    assert default.plan.fine_steps is not None and default.correction is not None
    plain = _run(oracle, sde, x, "rk4", ss.PrecisionTarget(0.004, multilevel=False), divergence="exact")
    assert plain.plan.fine_steps is None and plain.correction is None and plain.mc_se == 0.0
    assert plain.plan.steps > default.plan.steps
    adaptive = ss.log_likelihood(
        oracle, sde, x, divergence="exact", target_se=0.05, integrator=ss.AdaptiveIntegrator(), options=opts
    )
    assert adaptive.plan.fine_steps is None and adaptive.correction is None


def test_batches_add_the_shared_correction_error_linearly():
    """``log_likelihood_batches``: the batches share the first batch's correction, so the pilot's
    part of its s.e. adds linearly over them; each batch's own deviation in quadrature."""
    from scoresde.flow.batched import log_likelihood_batches

    sde, oracle, x, exact = _setup(n=128)
    res = log_likelihood_batches(
        oracle,
        sde,
        x,
        batch_size=64,
        integrator=ss.FixedStepIntegrator("rk4", 1),
        divergence="exact",
        options=ss.LikelihoodOptions(
            prior_logp=lambda z: oracle.log_prob(z, sde.T), time_variable="log_sigma"
        ),
        target_se=0.004,
    )
    p = res.plan
    assert p is not None and p.fine_steps is not None
    shared = math.sqrt(p.correction_var / p.pilot_points)
    want = math.hypot(64 * math.sqrt(p.correction_var / 64), 128 * shared) / 128
    assert res.mc_se == pytest.approx(want, rel=1e-9) and res.mc_se <= 0.004 * (1 + 1e-9)
    assert abs(float(res.logp.mean() - exact.mean())) <= 3 * res.mc_se + res.solver_error

"""Conditional samplers driven by the exact oracle, measured against exact conditionals.

Exact in the limit (steps -> inf, samples -> inf): classifier guidance with the exact
``p_t(y | x)`` at scale 1, likelihood guidance with the exact ``p_t(y_obs | x)``, and
classifier-free guidance at ``w = 0`` with exact conditional scores.  Approximations: DPS and
projection-based conditioning; these are checked where they are exact (projection with
independent known and unknown parts) and otherwise against their measured error (the full
table is ``docs/bench_guidance.md``).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.guidance import (
    AnalyticClassifier,
    ClassConditionalScore,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Colorization,
    DPSGuidance,
    ExactMeasurementLikelihood,
    FunctionOperator,
    Inpainting,
    LikelihoodGuidance,
    MatrixOperator,
    class_mixture,
    colorize,
    compare_to_mixture,
    condition,
    conditional_sample,
    inpaint,
)

F64 = torch.float64


def _ambiguous(gmm: ss.GaussianMixture, op):
    """Shift mode 1 so that A mu_1 = A mu_0 and observe A mu_0: both modes explain y."""
    means = gmm.means.clone()
    means[1] = means[1] + op.project((means[0] - means[1]).reshape(1, *op.in_shape)).reshape(-1)
    prior = ss.GaussianMixture(gmm.weights, means, gmm.covs)
    return prior, op(means[0].reshape(1, *op.in_shape))


def _vector_problem():
    g = torch.Generator().manual_seed(0)
    gmm = ss.GaussianMixture.random(4, 3, eig_min=0.01, eig_max=0.25, generator=g)
    op = MatrixOperator(torch.randn(2, 4, generator=g, dtype=F64))
    return (*_ambiguous(gmm, op), op)


@pytest.mark.parametrize("method", ["euler_maruyama", "euler"])
def test_exact_classifier_guidance_reproduces_each_class(gmm2d: ss.GaussianMixture, method: str) -> None:
    """Means within 0.03 and covariances within 0.012 of each class (n = 2000, 200 steps).

    Monte-Carlo error is about 0.007 on the means; measured errors are below 0.015
    (``docs/bench_guidance.md``).
    """
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    guided = ClassifierGuidance(oracle, AnalyticClassifier(oracle), scale=1.0)
    y = torch.arange(3).repeat_interleave(2000)
    res = ss.sample(guided, shape=(6000, 2), method=method, steps=200, seed=0, y=y, dtype=F64)
    assert res.nfe == 201
    for k in range(3):
        err = compare_to_mixture(class_mixture(gmm2d, k), res.x[y == k])
        assert err.means < 0.03 and err.covs < 0.012, (k, err)


def test_cfg_at_zero_weight_reproduces_the_class_and_counts_two_nfe(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.VPSDE()
    cfg = ClassifierFreeGuidance(ClassConditionalScore(gmm2d, sde), scale=0.0, null_label=3)
    res = ss.sample(
        cfg, shape=(2000, 2), method="euler", steps=200, seed=1, y=torch.full((2000,), 1), dtype=F64
    )
    assert res.nfe == 2 * 201  # conditional + unconditional evaluation per step, and the denoiser
    err = compare_to_mixture(class_mixture(gmm2d, 1), res.x)
    assert err.means < 0.03 and err.covs < 0.012, err
    # w > 0 sharpens: the guided class samples lie closer to the class mean.
    sharp = ss.sample(
        ClassifierFreeGuidance(ClassConditionalScore(gmm2d, sde), scale=3.0, null_label=3),
        shape=(2000, 2),
        method="euler",
        steps=50,
        seed=1,
        y=torch.full((2000,), 1),
        dtype=F64,
    )
    assert float(torch.cov(sharp.x.T).trace()) < float(torch.cov(res.x.T).trace())


def test_exact_likelihood_guidance_reproduces_the_posterior() -> None:
    """Mode weights within 0.03, means within 0.03, covariances within 0.01 (n = 3000, 200 steps).

    The posterior has two modes with weights 0.56 / 0.44; Monte-Carlo error on the weights is
    about 0.009.
    """
    prior, y_obs, op = _vector_problem()
    post = condition(prior, op, y_obs, 0.1)
    assert 0.3 < float(post.weights[0]) < 0.7
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    guided = LikelihoodGuidance(oracle, ExactMeasurementLikelihood(oracle, op, y_obs, 0.1))
    res = ss.sample(guided, shape=(3000, 4), method="euler_maruyama", steps=200, seed=0, dtype=F64)
    err = compare_to_mixture(post, res.x)
    assert err.weights < 0.03 and err.means < 0.03 and err.covs < 0.01, err


@pytest.mark.parametrize("kind", ["inpainting", "colorization"])
def test_projection_is_exact_when_known_and_unknown_parts_are_independent(kind: str) -> None:
    """One Gaussian with covariance commuting with P: the posterior of the unknown part is its prior.

    Image-shaped (1x4x4 inpainting, 3x2x2 colorization).  Known part exact to round-off;
    unknown part's mean within 0.03 and covariance within 0.02 (n = 3000, 100 steps): exact
    posterior samples of that size give errors 0.009-0.017 (means) and 0.008-0.011 (covs, a
    maximum over 136 entries).
    """
    g = torch.Generator().manual_seed(0)
    if kind == "inpainting":
        op = Inpainting(torch.rand(1, 4, 4, generator=g) > 0.5)
        cov = torch.rand(16, generator=g, dtype=F64) * 0.2 + 0.05  # diagonal: pixels independent
    else:
        op = Colorization((3, 2, 2))
        cov = torch.full((12,), 0.1, dtype=F64)  # isotropic: gray and chroma independent
    mean = torch.randn(1, op.in_features, generator=g, dtype=F64)
    prior = ss.GaussianMixture([1.0], mean, cov[None])
    x_true = prior.sample(1, generator=g).reshape(1, *op.in_shape)
    y_obs = op(x_true)
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    res = conditional_sample(oracle, op, y_obs, shape=(3000, *op.in_shape), steps=100, seed=0, dtype=F64)
    assert res.x.shape == (3000, *op.in_shape)
    assert res.nfe == 101
    torch.testing.assert_close(op(res.x), y_obs.expand(3000, *op.out_shape))
    post = condition(prior, op, y_obs, 0.0)
    err = compare_to_mixture(post, res.x)
    assert err.means < 0.03 and err.covs < 0.02, err


def test_projection_and_dps_are_approximations_with_measured_error() -> None:
    """On the two-mode vector problem (n = 3000, 200 steps), measured errors (seed 0):

    projection (noise-free target): weights 0.16, means 0.01, covs 0.01 — it gets the modes'
    shapes but not their weights; DPS (s_y = 0.1): weights 0.03, means 0.01, covs 0.01.
    Bounds are the measured errors plus Monte-Carlo margin, to catch regressions.
    """
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    proj = conditional_sample(oracle, op, y_obs, shape=(3000, 4), steps=200, seed=0, dtype=F64)
    err = compare_to_mixture(condition(prior, op, y_obs, 0.0), proj.x)
    assert 0.08 < err.weights < 0.25 and err.means < 0.04 and err.covs < 0.03, err
    dps = ss.sample(DPSGuidance(oracle, op, y_obs, 0.1), shape=(3000, 4), steps=200, seed=0, dtype=F64)
    err = compare_to_mixture(condition(prior, op, y_obs, 0.1), dps.x)
    assert err.weights < 0.08 and err.means < 0.04 and err.covs < 0.03, err


def test_inpaint_and_colorize_helpers_on_images() -> None:
    g = torch.Generator().manual_seed(0)
    prior = ss.GaussianMixture.random(16, 2, eig_min=0.01, generator=g)
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    image = prior.sample(4, generator=g).reshape(4, 1, 4, 4).float()
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, :2] = True
    out = inpaint(oracle, image, mask, channels=1, steps=20, seed=0)
    torch.testing.assert_close(out.x[..., :2], image[..., :2])
    assert bool(torch.isfinite(out.x).all()) and not torch.allclose(out.x[..., 2:], image[..., 2:])
    prior_rgb = ss.GaussianMixture.random(12, 2, eig_min=0.01, generator=g)
    gray = torch.randn(5, 1, 2, 2, generator=g)
    col = colorize(ss.AnalyticScore(prior_rgb, ss.VPSDE()), gray, steps=20, seed=0, method="euler")
    assert col.x.shape == (5, 3, 2, 2)
    torch.testing.assert_close(col.x.mean(1, keepdim=True), gray)


def test_dps_on_image_shapes_and_noise_reproducibility() -> None:
    g = torch.Generator().manual_seed(0)
    prior = ss.GaussianMixture.random(12, 2, eig_min=0.01, generator=g)
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    op = Colorization((3, 2, 2))
    y_obs = op(prior.sample(1, generator=g).reshape(1, 3, 2, 2))
    dps = DPSGuidance(oracle, op, y_obs[0], noise_std=0.2)
    a = ss.sample(dps, shape=(6, 3, 2, 2), steps=30, seed=3, dtype=F64)
    b = ss.sample(dps, shape=(2, 3, 2, 2), steps=30, seed=3, dtype=F64)
    torch.testing.assert_close(a.x[:2], b.x)
    assert a.nfe == 31
    # The observation is matched to about the noise level.
    assert float((op(a.x) - y_obs).abs().mean()) < 0.3


def test_conditional_sample_bad_input() -> None:
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    with pytest.raises(ValueError, match=r"y_obs has shape \(1, 3\) but MatrixOperator observes"):
        conditional_sample(oracle, op, torch.zeros(1, 3), shape=(4, 4))
    with pytest.raises(ValueError, match=r"x has shape \(4, 5\) but MatrixOperator expects"):
        conditional_sample(oracle, op, y_obs, x_T=torch.zeros(4, 5))
    with pytest.raises(ValueError, match="y_obs has a batch of 3 observations for a batch of 4"):
        conditional_sample(oracle, op, y_obs.expand(3, 2), shape=(4, 4))
    with pytest.raises(ValueError, match="unknown sampling method"):
        conditional_sample(oracle, op, y_obs, shape=(4, 4), method="nope")
    with pytest.raises(TypeError, match="LinearOperator"):
        conditional_sample(oracle, torch.eye(2), y_obs, shape=(4, 4))
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"image has shape \(2, 1, 3, 3\) but Inpainting expects"):
        inpaint(oracle, torch.zeros(2, 1, 3, 3), mask)
    with pytest.raises(ValueError, match="DPS needs a positive measurement noise_std"):
        DPSGuidance(oracle, op, y_obs, 0.0)
    with pytest.raises(ValueError, match=r"gray must have shape \(B, 1, \*S\)"):
        colorize(oracle, torch.zeros(2, 3, 2, 2))


def test_projection_seed_is_per_sample_and_works_with_a_function_operator() -> None:
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    a = conditional_sample(oracle, op, y_obs[0], shape=(6, 4), steps=20, seed=5, dtype=F64)
    b = conditional_sample(oracle, op, y_obs[0], shape=(2, 4), steps=20, seed=5, dtype=F64)
    torch.testing.assert_close(a.x[:2], b.x)
    mat = op.to_matrix()
    fop = FunctionOperator(lambda x: x @ mat.T, lambda y: y @ mat, (4,), (2,))
    c = conditional_sample(oracle, fop, y_obs, shape=(2, 4), steps=20, seed=5, dtype=F64)
    torch.testing.assert_close(c.x, b.x)


def test_conditional_sample_records_and_reports_like_sample(capsys) -> None:
    """The shared run setup: trajectory every ``record_stride`` steps, progress lines, the callback."""
    prior, y_obs, op = _vector_problem()
    oracle = ss.AnalyticScore(prior, ss.VPSDE())
    calls = []
    res = conditional_sample(
        oracle,
        op,
        y_obs,
        shape=(8, 4),
        steps=12,
        seed=2,
        dtype=F64,
        record=True,
        record_stride=5,
        progress="log",
        callback=lambda i, t, x: calls.append(i),
    )
    assert res.trajectory.shape == (4, 8, 4)  # start, steps 5 and 10, the last
    torch.testing.assert_close(res.trajectory_times, res.times[[0, 5, 10, 12]])
    assert calls == list(range(12)) and res.nfe == 13
    assert "conditional_sample: 12/12 (100%)" in capsys.readouterr().err
    plain = conditional_sample(oracle, op, y_obs, shape=(8, 4), steps=12, seed=2, dtype=F64)
    assert torch.equal(plain.x, res.x)

"""The exact oracles and the guided scores they make exact: identities to round-off."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde._core.tensors import LOG_2PI
from scoresde.guidance import (
    AnalyticClassifier,
    ClassConditionalScore,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Colorization,
    ExactMeasurementLikelihood,
    Inpainting,
    LikelihoodGuidance,
    MatrixOperator,
    class_mixture,
    condition,
)


def _problem(kind: str):
    g = torch.Generator().manual_seed(3)
    if kind == "matrix":
        gmm = ss.GaussianMixture.random(4, 3, eig_min=0.01, generator=g)
        op = MatrixOperator(torch.randn(2, 4, generator=g, dtype=torch.float64))
    elif kind == "inpainting":
        gmm = ss.GaussianMixture.random(16, 3, eig_min=0.01, generator=g)
        op = Inpainting(torch.rand(1, 4, 4, generator=g) > 0.5)
    else:
        gmm = ss.GaussianMixture.random(12, 3, eig_min=0.01, generator=g)
        op = Colorization((3, 2, 2))
    x_true = gmm.sample(1, generator=g).reshape(1, *op.in_shape)
    return gmm, op, op(x_true) + 0.1 * torch.randn(1, *op.out_shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["matrix", "inpainting", "colorization"])
def test_condition_is_bayes_rule(kind: str) -> None:
    """log p(x | y) - log p(x) - log N(y; A x, s^2 I) is the same constant (-log p(y)) for every x."""
    gmm, op, y = _problem(kind)
    post = condition(gmm, op, y, noise_std=0.1)
    x = gmm.sample(50, generator=torch.Generator().manual_seed(0))
    resid = y.reshape(1, -1) - op(x.reshape(50, *op.in_shape)).reshape(50, -1)
    m = resid.shape[1]
    log_lik = (
        -0.5 * (resid**2).sum(1) / 0.01
        - m * torch.log(torch.tensor(0.1, dtype=torch.float64))
        - 0.5 * m * LOG_2PI
    )
    const = post.log_prob(x) - gmm.log_prob(x) - log_lik
    assert float(const.max() - const.min()) < 1e-9


@pytest.mark.parametrize("kind", ["matrix", "inpainting", "colorization"])
def test_exact_likelihood_guidance_is_the_posterior_score(sde: ss.SDE, kind: str) -> None:
    """score + grad log p_t(y | x) (closed form) equals the score of the perturbed exact posterior."""
    gmm, op, y = _problem(kind)
    oracle = ss.AnalyticScore(gmm, sde)
    guided = LikelihoodGuidance(oracle, ExactMeasurementLikelihood(oracle, op, y, 0.1))
    x = torch.randn(6, *op.in_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    post = ss.AnalyticScore(condition(gmm, op, y, 0.1), sde)
    for t in [0.95, 0.4, 0.05, 1e-3]:
        expected = post.score(x.reshape(6, -1), t)
        torch.testing.assert_close(guided.score(x, t).reshape(6, -1), expected, rtol=1e-7, atol=1e-7)


def test_exact_classifier_guidance_is_the_class_conditional_score(
    sde: ss.SDE, gmm2d: ss.GaussianMixture
) -> None:
    oracle = ss.AnalyticScore(gmm2d, sde)
    guided = ClassifierGuidance(oracle, AnalyticClassifier(oracle), scale=1.0)
    x = torch.randn(9, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(9) % 3
    for t in [0.9, 0.2, 1e-3]:
        for k in range(3):
            sel = y == k
            exact = ss.AnalyticScore(class_mixture(gmm2d, k), sde).score(x[sel], t)
            torch.testing.assert_close(guided.score(x, t, y)[sel], exact)


def test_classes_grouping_components(gmm2d: ss.GaussianMixture) -> None:
    """Classes made of several components: p_t(c | x) sums the responsibilities, sums to 1."""
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    clf = AnalyticClassifier(oracle, classes=[1, 0, 1])
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logp = clf(x, torch.full((7,), 0.3, dtype=torch.float64))
    r = oracle.responsibilities(x, 0.3)
    torch.testing.assert_close(logp.exp(), torch.stack([r[:, 1], r[:, 0] + r[:, 2]], 1))
    assert class_mixture(gmm2d, 1, [1, 0, 1]).n_components == 2


@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_cfg_equals_classifier_guidance_with_the_implicit_classifier(sde: ss.SDE, gmm2d, w: float) -> None:
    """Ho & Salimans 2022: CFG at weight w is classifier guidance at scale 1 + w with p_t(y|x) exact."""
    oracle = ss.AnalyticScore(gmm2d, sde)
    cond = ClassConditionalScore(gmm2d, sde)
    cfg = ClassifierFreeGuidance(cond, scale=w, null_label=3)
    cg = ClassifierGuidance(oracle, AnalyticClassifier(oracle), scale=1 + w)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for t in [0.8, 0.1]:
        torch.testing.assert_close(cfg.score(x, t, y), cg.score(x, t, y))
    # The null label gives the unconditional score.
    torch.testing.assert_close(cfg.score(x, 0.3, torch.full((6,), 3)), oracle.score(x, 0.3))


def test_bad_labels_and_shapes(gmm2d: ss.GaussianMixture) -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    guided = ClassifierGuidance(oracle, AnalyticClassifier(oracle))
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"unknown class 5: classes are 0\.\.2"):
        guided.score(x, 0.5, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="needs labels"):
        guided.score(x, 0.5)
    with pytest.raises(ValueError, match="unknown class 3"):
        class_mixture(gmm2d, 3)
    cfg = ClassifierFreeGuidance(ClassConditionalScore(gmm2d, sde), 1.0, null_label=3)
    with pytest.raises(ValueError, match=r"unknown class 4: classes are 0\.\.2 \(or 3, the null label\)"):
        cfg.score(x, 0.5, torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="give null_label"):
        ClassifierFreeGuidance(oracle, 1.0)
    with pytest.raises(ValueError, match="A acts on 3 features but the mixture has dimension 2"):
        condition(gmm2d, torch.zeros(1, 3), torch.zeros(1))
    with pytest.raises(ValueError, match="y has 2 entries but A has 1 rows"):
        condition(gmm2d, torch.ones(1, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="singular"):
        condition(gmm2d, torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1), noise_std=0.0)

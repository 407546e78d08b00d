"""FID, KID and IS against closed forms and direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scoresde.evaluation.scores import (
    FeatureStats,
    fid_from_stats,
    inception_score,
    kernel_inception_distance,
)


def test_fid_of_commuting_gaussians_is_the_closed_form() -> None:
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    fid = fid_from_stats(FeatureStats(mu_a, np.diag(va), 10), FeatureStats(mu_b, np.diag(vb), 10))
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert fid == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_stats(FeatureStats(mu_a, np.diag(va), 2), FeatureStats(mu_a[:2], np.eye(2), 2))


def test_kid_is_the_unbiased_polynomial_mmd() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(9, 4, generator=g, dtype=torch.float64),
        torch.randn(9, 4, generator=g, dtype=torch.float64) + 0.5,
    )
    # With subset_size = N every subset is the whole set: compare with a direct double sum.
    kid, std = kernel_inception_distance(a, b, subsets=3, subset_size=9, generator=g)

    def k(x, y):
        return (float(x @ y) / 4 + 1) ** 3

    n = 9
    kxx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / n**2
    assert kid == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)
    # Unbiased: samples of one distribution average to ~0, a shifted one is clearly positive.
    same = kernel_inception_distance(
        torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g), 20, 100, g
    )
    shifted = kernel_inception_distance(
        torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g) + 0.5, 20, 100, g
    )
    assert abs(same[0]) < 3 * same[1] / math.sqrt(20) + 1e-3
    assert shifted[0] > 10 * abs(same[0]) and shifted[0] > 0


def test_inception_score_limits() -> None:
    k = 8
    assert inception_score(torch.zeros(40, k), splits=4)[0] == pytest.approx(1.0)  # no information
    confident = torch.full((40, k), -1e4)
    confident[torch.arange(40), torch.arange(40) % k] = 0.0  # sure, and spread over all classes
    mean, std = inception_score(confident, splits=5)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    one_class = torch.full((40, k), -1e4)
    one_class[:, 0] = 0.0  # sure, but always the same class
    assert inception_score(one_class, splits=4)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(torch.zeros(3, k), splits=10)


def _reference_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """The original code's IS (improved-gan ``inception_score.py``; torch-fidelity cuts alike)."""
    preds = np.exp(logits - logits.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits) : ((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("n, splits", [(64, 10), (37, 4), (101, 7), (20, 10)])
def test_inception_score_splits_as_the_reference(n: int, splits: int) -> None:
    g = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 12, generator=g, dtype=torch.float64) * 2
    mean, std = inception_score(logits, splits)
    ref_mean, ref_std = _reference_inception_score(logits.numpy(), splits)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-9, abs=1e-15)
    if n % splits:
        # The boundaries i * N // splits differ from tensor_split's (longer parts first), which
        # moves the score: the test tells the two apart.
        sizes = [(i + 1) * n // splits - i * n // splits for i in range(splits)]
        assert sizes != [len(p) for p in torch.tensor_split(logits, splits)]

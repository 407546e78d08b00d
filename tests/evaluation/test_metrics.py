"""Sample-quality metrics separate equal from different distributions."""

from __future__ import annotations

import torch

import scoresde as ss


def test_metrics_detect_a_shift() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 2, generator=g)
    b = torch.randn(2000, 2, generator=g)
    c = torch.randn(2000, 2, generator=g) + torch.tensor([0.5, 0.0])
    for metric in (ss.sliced_wasserstein, ss.mmd_rbf, ss.energy_distance):
        assert metric(a, b) < metric(a, c) / 3
    # A pure shift of 0.5 along one axis: sliced W2 = 0.5 * sqrt(E[cos^2]) = 0.5 / sqrt(2).
    sw = ss.sliced_wasserstein(a, a + torch.tensor([0.5, 0.0]), n_projections=4000, generator=g)
    assert abs(sw - 0.5 / 2**0.5) < 0.01

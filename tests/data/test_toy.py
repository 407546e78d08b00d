"""Toy data sets."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss


@pytest.mark.parametrize("name", sorted(ss.TOY_DATASETS))
def test_toy_sets_are_reproducible_and_finite(name: str) -> None:
    a = ss.toy_data(name, 500, generator=torch.Generator().manual_seed(0))
    b = ss.toy_data(name, 500, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b)


def test_toy_from_mixture_and_errors() -> None:
    gmm = ss.GaussianMixture.ring(4)
    assert ss.toy_data(gmm, 10).shape == (10, 2)
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'"):
        ss.toy_data("spiral", 10)
    with pytest.raises(ValueError, match="n must be positive"):
        ss.toy_data("funnel", 0)

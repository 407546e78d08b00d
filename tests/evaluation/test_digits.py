"""scoresde.evaluation.digits: the digits reference classifier and the Frechet distance."""

from __future__ import annotations

import pytest
import torch

from scoresde.evaluation.digits import DigitsClassifier, frechet_distance


def test_frechet_distance_of_gaussian_features_is_exact() -> None:
    # With an identity feature map the Frechet distance between large Gaussian samples tends to
    # the closed form ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2}) (here diagonal).
    class Identity(DigitsClassifier):
        def features(self, x):
            return x.reshape(x.shape[0], -1)

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    a = torch.randn(n, 1, 1, 2, generator=g, dtype=torch.float64)
    b = torch.randn(n, 1, 1, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5]).double() + 1.0
    expected = 2 * 1.0 + (1 + 4 - 2 * 2) + (1 + 0.25 - 2 * 0.5)
    assert frechet_distance(Identity(), a, b) == pytest.approx(expected, abs=0.02)
    assert frechet_distance(Identity(), a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_needs_two_images() -> None:
    clf = DigitsClassifier()
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(clf, torch.zeros(1, 1, 8, 8), torch.zeros(3, 1, 8, 8))

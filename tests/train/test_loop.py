"""The minimal training loop and EMA."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.train.losses import sample_time


def test_fit_learns_a_gaussian_score() -> None:
    """On N(mu, 0.25 I) data the trained model's DSM loss approaches the oracle's."""
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture([1.0], [[1.0, -0.5]], 0.25)
    data = gmm.sample(20_000, torch.Generator().manual_seed(0)).float()
    model = ss.ScoreModel(ss.MLP(2, hidden=64, depth=2), sde)
    torch.manual_seed(0)
    res = ss.fit(model, data, steps=800, batch_size=256, generator=torch.Generator().manual_seed(1))
    assert len(res.losses) == 800
    g = torch.Generator().manual_seed(2)
    x0 = data[:8000]
    t = sample_time(sde, 8000, g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        trained = float(ss.dsm_loss(res.ema_model, x0, t=t, noise=noise).loss)
        exact = float(
            ss.dsm_loss(ss.AnalyticScore(gmm, sde), x0.double(), t=t.double(), noise=noise.double()).loss
        )
        first = float(sum(res.losses[:20]) / 20)
    assert trained < first
    assert trained < exact * 1.1


def test_ema_warmup_and_average() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    ema = ss.EMA(net, decay=0.9)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.module.weight.fill_(0.0)
    ema.update(net)
    assert float(ema.module.weight) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="decay"):
        ss.EMA(net, decay=1.5)

"""Rectified-flow reflow: couplings from the teacher's ODE make a straighter flow."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.distill import reflow, reflow_pairs, straightness


def test_one_reflow_round_straightens_the_flow() -> None:
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture.ring(8, 2.0, 0.05)
    oracle = ss.AnalyticScore(gmm, sde)
    x0, x1 = reflow_pairs(oracle, (2048, 2), steps=10, seed=0)
    assert x0.shape == x1.shape == (2048, 2)
    # The pairs are the ODE's map: the same x1 maps to the same x0 whatever the batch split.
    x0b, _ = reflow_pairs(oracle, (2048, 2), steps=10, seed=0, batch_size=500)
    torch.testing.assert_close(x0, x0b, rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    straight = ss.StraightSDE()
    student = ss.ScoreModel(ss.MLP(2, hidden=64, depth=2), straight, prediction="velocity", scale_input=False)
    res = reflow(student, x0, x1, steps=300, batch_size=256, lr=3e-3, ema_decay=0.95)
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(9)) * straight.prior_std()
    s_teacher = straightness(oracle, z * sde.prior_std() / straight.prior_std()).mean()
    s_student = straightness(res.model, z).mean()
    # The VP teacher's paths curve (the ring's modes pull them); the reflowed ones are far straighter.
    assert float(s_student) < 0.5 * float(s_teacher), (float(s_student), float(s_teacher))


def test_reflow_refuses_a_curved_path_student_and_mismatched_pairs() -> None:
    student = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="velocity")
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="StraightSDE"):
        reflow(student, x, x, steps=1)
    straight = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.StraightSDE(), prediction="velocity")
    with pytest.raises(ValueError, match="one shape"):
        reflow(straight, x, torch.zeros(4, 3), steps=1)

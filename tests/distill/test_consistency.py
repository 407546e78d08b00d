"""Consistency models against the exact flow map of a Gaussian-mixture oracle."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.distill import ConsistencyLoss, ConsistencyModel, distill, flow_map
from scoresde.sampling.grids import time_grid


def _ring_setup():
    sde = ss.VPSDE()
    gmm = ss.GaussianMixture.ring(8, 2.0, 0.05)
    return sde, gmm, ss.AnalyticScore(gmm, sde)


_SETTINGS = {"batch_size": 128, "lr": 3e-3, "ema_decay": 0.9, "num_scales": 12}


def _two_blobs():
    sde = ss.VPSDE()
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    gmm = ss.GaussianMixture(torch.tensor([0.5, 0.5]), means, torch.full((2,), 0.2**2))
    return sde, gmm, ss.AnalyticScore(gmm, sde)


def _student(sde, seed: int = 0) -> ConsistencyModel:
    torch.manual_seed(seed)  # the network's initial weights
    net = ss.MLP(2, hidden=64, depth=2)
    return ConsistencyModel(ss.ScoreModel(net, sde, prediction="x0", sigma_data=0.5))


def test_boundary_condition_is_exact_and_c_skip_decays() -> None:
    sde, _, _ = _ring_setup()
    cm = _student(sde)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cm = cm.double()
    s_min, _ = sde.marginal(torch.tensor(sde.eps, dtype=torch.float64))
    out = cm(x, torch.full((16,), sde.eps, dtype=torch.float64))
    # f(x, t_min) = x / s(t_min) whatever the network says (Song et al. 2023, Eq. 5).
    torch.testing.assert_close(out, x / s_min, rtol=0, atol=1e-15)
    c = cm.c_skip(torch.tensor([sde.eps, 0.1, 0.5, 1.0], dtype=torch.float64))
    assert float(c[0]) == 1.0 and bool((c[1:] < c[:-1]).all()) and float(c[-1]) < 1e-4


def test_flow_map_of_the_oracle_matches_a_tight_adaptive_solve() -> None:
    sde, _, oracle = _two_blobs()
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = ss.sample(oracle, x_T=x_T, method="dopri5", denoise=False, rtol=1e-10, atol=1e-10).x
    s_end, _ = sde.marginal(torch.tensor(sde.eps, dtype=torch.float64))
    assert (flow_map(oracle, x_T, sde.T) * s_end - ref).abs().max() < 1e-5  # dopri5 at 1e-7
    heun = flow_map(oracle, x_T, sde.T, method="heun", steps=400)
    assert (heun * s_end - ref).abs().max() < 2e-4  # Heun, 400 steps on the edm grid


def _one_step_error(model, sde, x_T, ref) -> float:
    out = ss.sample(model, sde, x_T=x_T, method="consistency", steps=1, denoise=False, seed=0)
    return float((out.x.double() - ref).pow(2).sum(1).mean().sqrt())


def test_distillation_moves_the_one_step_map_towards_the_flow_map() -> None:
    sde, gmm, oracle = _two_blobs()
    x_T = sde.prior_sample((256, 2), generator=torch.Generator().manual_seed(2))
    ref = flow_map(oracle, x_T.double(), sde.T, method="heun", steps=100)
    data = lambda b, g: gmm.sample(b, generator=g).float()  # noqa: E731
    before = _one_step_error(_student(sde), sde, x_T, ref)
    errs = []
    for steps in (40, 160):
        res = distill(oracle, data, student=_student(sde), steps=steps, **_SETTINGS)
        errs.append(_one_step_error(res.model, sde, x_T, ref))
        assert res.steps == steps and len(res.losses) == steps
    # Untrained: ~1.3 (the network's output is noise; measured 1.29 -> 0.53 -> 0.37 at 0 / 50 /
    # 200 steps); training lowers the pathwise error, and more training lowers it further.
    assert errs[0] < 0.7 * before and errs[1] < 0.85 * errs[0], (before, errs)


def test_consistency_training_without_a_teacher_learns_the_flow_map() -> None:
    sde, gmm, oracle = _two_blobs()
    x_T = sde.prior_sample((256, 2), generator=torch.Generator().manual_seed(3))
    ref = flow_map(oracle, x_T.double(), sde.T, method="heun", steps=100)
    data = gmm.sample(4096, generator=torch.Generator().manual_seed(3)).float()
    before = _one_step_error(_student(sde), sde, x_T, ref)
    res = distill(None, data, student=_student(sde), steps=160, **_SETTINGS)
    assert _one_step_error(res.model, sde, x_T, ref) < 0.7 * before


def test_consistency_sampler_is_deterministic_for_a_seed_and_counts_nfe() -> None:
    sde, _, _ = _ring_setup()
    cm = _student(sde)
    a = ss.sample(cm, sde, shape=(8, 2), method="consistency", steps=3, denoise=False, seed=5)
    b = ss.sample(cm, sde, shape=(8, 2), method="consistency", steps=3, denoise=False, seed=5)
    c = ss.sample(cm, sde, shape=(8, 2), method="consistency", steps=3, denoise=False, seed=6)
    assert torch.equal(a.x, b.x)  # same code run twice on one machine
    assert not torch.equal(a.x, c.x)
    assert a.nfe == 3


def test_one_step_consistency_sampling_of_the_exact_flow_map_is_the_ode_solution() -> None:
    """A model whose denoise is the exact flow map makes the 1-step sampler the ODE solve."""
    sde, _, oracle = _ring_setup()

    class ExactFlowMap(ss.ScoreFunction):
        def __init__(self) -> None:
            super().__init__(sde, "x0")

        def forward(self, x, t, y=None):
            return flow_map(oracle, x, float(t[0]))

    x_T = sde.prior_sample((8, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = ss.sample(ExactFlowMap(), sde, x_T=x_T, method="consistency", steps=1, denoise=False, seed=0)
    ref = ss.sample(oracle, x_T=x_T, method="dopri5", denoise=False, rtol=1e-9, atol=1e-9).x
    assert (out.x - ref).abs().max() < 1e-3


def test_bad_inputs_give_named_errors() -> None:
    sde, gmm, oracle = _ring_setup()
    data = gmm.sample(64, generator=torch.Generator().manual_seed(0)).float()
    ts = time_grid(sde, 4, "edm")
    with pytest.raises(ValueError, match="needs a student"):
        distill(None, data, steps=1)
    with pytest.raises(ValueError, match="no parameters"):
        distill(oracle, data, steps=1)
    with pytest.raises(ValueError, match="fixed-step probability-flow ODE solver"):
        ConsistencyLoss(ts, oracle, solver="euler_maruyama")
    with pytest.raises(ValueError, match="fixed-step probability-flow ODE solver"):
        ConsistencyLoss(ts, oracle, solver="dopri5")
    with pytest.raises(ValueError, match="unknown distance"):
        ConsistencyLoss(ts, oracle, distance="l3")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        distill(oracle, data, student=_student(sde), steps=0)
    with pytest.raises(ValueError, match="share one SDE"):
        distill(oracle, data, student=_student(ss.VESDE()), steps=1)
    with pytest.raises(ValueError, match="t_min"):
        ConsistencyModel(_student(sde).denoiser, t_min=2.0)

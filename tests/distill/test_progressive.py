"""Progressive distillation (Salimans & Ho 2022) against an exact Gaussian-mixture teacher."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scoresde as ss
from scoresde.distill import progressive_distill, two_step_target
from scoresde.sampling.grids import time_grid


def _two_blobs():
    sde = ss.VPSDE()
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    gmm = ss.GaussianMixture(torch.tensor([0.5, 0.5]), means, torch.full((2,), 0.2**2))
    return sde, gmm, ss.AnalyticScore(gmm, sde)


class _Corrected(nn.Module):
    """The oracle's denoiser plus a learned correction that starts at zero: a student that starts
    as a copy of its teacher, as in the paper."""

    def __init__(self, oracle: ss.AnalyticScore) -> None:
        super().__init__()
        self.oracle = oracle
        self.mlp = ss.MLP(2, hidden=64, depth=2)
        last = [m for m in self.mlp.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.oracle.denoise(x, t) + self.mlp(x, t)


def _ddim(model, sde, x_T: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return ss.sample(model, sde, x_T=x_T, method="ddim", grid=grid, denoise=False).x


def test_the_target_makes_one_ddim_step_equal_two_teacher_steps() -> None:
    sde, _, oracle = _two_blobs()
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample((32, 2), generator=g, dtype=torch.float64)
    grid = time_grid(sde, 4, "logsnr")[1:4]  # t_1 -> t_2 -> t_3
    target = two_step_target(oracle, x, *(grid[k].expand(32) for k in range(3)))
    two = _ddim(oracle, sde, x, grid)  # the library's DDIM, two steps
    # One DDIM step from x with the target as its x0 (x_hat' = r x_hat + (1 - r) x0).
    s0, _ = sde.marginal(grid[0])
    s2, _ = sde.marginal(grid[2])
    r = sde.sigma_hat(grid[2]) / sde.sigma_hat(grid[0])
    one = s2 * (r * x / s0 + (1 - r) * target)
    torch.testing.assert_close(one, two, rtol=0, atol=1e-12)  # float64: exact up to rounding


def test_the_student_at_half_the_steps_imitates_the_teacher_at_all_of_them() -> None:
    sde, gmm, oracle = _two_blobs()
    ts = time_grid(sde, 4, "logsnr")
    torch.manual_seed(0)  # the correction network's initial weights
    student = ss.ScoreModel(_Corrected(oracle), sde, prediction="x0", scale_input=False)
    data = lambda b, g: gmm.sample(b, generator=g).float()  # noqa: E731
    res = progressive_distill(
        oracle, data, ts, student=student, steps=300, batch_size=256, lr=2e-3, ema_decay=0.9,
        weighting="uniform", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert res.steps == 2 and torch.equal(res.grid, ts[::2]) and len(res.rounds[0].losses) == 300
    x_T = sde.prior_sample((512, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _ddim(oracle, sde, x_T, ts)  # the teacher at N = 4 DDIM steps
        half = _ddim(oracle, sde, x_T, ts[::2])  # the teacher at N / 2
        pupil = _ddim(res.model, sde, x_T, res.grid)  # the student at N / 2
    err_teacher = float((half - ref).pow(2).sum(1).mean().sqrt())
    err_student = float((pupil - ref).pow(2).sum(1).mean().sqrt())
    # Measured 0.031 against 0.175 (RMS over 512 paths): the student at 2 steps is ~6x closer to
    # the teacher at 4 than the teacher at 2 is.
    assert err_student < 0.5 * err_teacher, (err_student, err_teacher)


class _ClassGaussians(nn.Module):
    """Exact denoiser of class ``y``'s Gaussian ``N(mu_y, v I)`` (a conditional teacher), plus a
    zero-initialised correction in the class-centred frame (a student that starts as the teacher)."""

    def __init__(self, sde: ss.SDE, means: torch.Tensor, var: float, correct: bool) -> None:
        super().__init__()
        self.sde, self.means, self.var = sde, means, var
        self.mlp = ss.MLP(2, hidden=64, depth=2) if correct else None
        if self.mlp is not None:
            last = [m for m in self.mlp.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional model needs labels")
        s, sigma = (c.to(x.dtype)[:, None] for c in self.sde.marginal(t.to(torch.float64)))
        centred = x - s * self.means[y].to(x.dtype)
        out = self.means[y].to(x.dtype) + self.var * s / (s**2 * self.var + sigma**2) * centred
        return out if self.mlp is None else out + self.mlp(centred, t)


def test_labels_reach_teacher_and_student_of_a_conditional_model() -> None:
    sde = ss.VPSDE()
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]])
    teacher = ss.ScoreModel(_ClassGaussians(sde, means, 0.04, False), sde, prediction="x0", scale_input=False)
    torch.manual_seed(0)
    student = ss.ScoreModel(_ClassGaussians(sde, means, 0.04, True), sde, prediction="x0", scale_input=False)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(600) % 3
    data = means[labels] + 0.2 * torch.randn(600, 2, generator=g)
    ts = time_grid(sde, 4, "logsnr")
    res = progressive_distill(
        teacher, data, ts, labels=labels, student=student, steps=200, batch_size=128, lr=2e-3,
        ema_decay=0.9, weighting="uniform", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    y = torch.arange(512) % 3
    x_T = sde.prior_sample((512, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = ss.sample(teacher, sde, x_T=x_T, method="ddim", grid=ts, denoise=False, y=y).x
        half = ss.sample(teacher, sde, x_T=x_T, method="ddim", grid=ts[::2], denoise=False, y=y).x
        pupil = ss.sample(res.model, sde, x_T=x_T, method="ddim", grid=res.grid, denoise=False, y=y).x
    err_teacher = float((half - ref).pow(2).sum(1).mean().sqrt())
    err_student = float((pupil - ref).pow(2).sum(1).mean().sqrt())
    # Measured 0.0037 against 0.103 (RMS over 512 paths).
    assert err_student < 0.25 * err_teacher, (err_student, err_teacher)


def test_bad_inputs_give_named_errors() -> None:
    sde, gmm, oracle = _two_blobs()
    data = gmm.sample(64, generator=torch.Generator().manual_seed(0)).float()
    with pytest.raises(ValueError, match="multiple of 4"):
        progressive_distill(oracle, data, time_grid(sde, 6, "logsnr"), rounds=2, student=oracle)
    with pytest.raises(ValueError, match="no parameters"):
        progressive_distill(oracle, data, time_grid(sde, 4, "logsnr"))
    with pytest.raises(ValueError, match="weighting"):
        progressive_distill(oracle, data, time_grid(sde, 4, "logsnr"), student=oracle, weighting="snr")
    with pytest.raises(ValueError, match="labels"):
        progressive_distill(oracle, data, time_grid(sde, 4, "logsnr"), student=oracle, labels=torch.zeros(3))

"""The SVD coordinates of a linear Gaussian measurement and the Gaussian moves of the SMC samplers."""

from __future__ import annotations

import math

import torch

import scoresde as ss
from scoresde.guidance import Colorization, MatrixOperator
from scoresde.guidance.measurement import forward_potential, gaussian_move, log_normal, svd_coordinates
from scoresde.sampling.noise import GeneratorNoise


def test_likelihood_factorises_in_svd_coordinates() -> None:
    """log N(y; A x, s^2 I) = sum_j log N(y_bar_j; c_j, kappa_j^2) + log_const for any x, also for a
    rank-deficient A whose range misses part of y, and for an operator without a stored SVD."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 5, generator=g, dtype=torch.float64
    )
    s_y = 0.3
    for op in (MatrixOperator(a), Colorization((3, 2, 2))):
        x = torch.randn(6, *op.in_shape, generator=g, dtype=torch.float64)
        y = torch.randn(3, *op.out_shape, generator=g, dtype=torch.float64)
        coords = svd_coordinates(op, y, s_y)
        for b in range(3):
            resid = (y[b : b + 1] - op(x)).reshape(6, -1)
            m = resid.shape[1]
            exact = -0.5 * resid.pow(2).sum(1) / s_y**2 - 0.5 * m * math.log(2 * math.pi * s_y**2)
            ours = log_normal(coords.coord(x), coords.y_bar[b], coords.kappa2) + coords.log_const[b]
            torch.testing.assert_close(ours, exact)


def test_forward_potential_is_consistent_with_the_forward_transition() -> None:
    """x_t = a x_t' + b n maps the potential at t' onto the potential at t (mean and variance)."""
    y_bar, kappa2 = (
        torch.tensor([0.7, -1.2], dtype=torch.float64),
        torch.tensor([0.0, 0.04], dtype=torch.float64),
    )
    for sde in (ss.VPSDE(), ss.VESDE()):
        t_lo, t_hi = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64)
        a, b = (float(c) for c in sde.transition(t_lo, t_hi))
        m_lo, v_lo = forward_potential(sde, t_lo, y_bar, kappa2)
        m_hi, v_hi = forward_potential(sde, t_hi, y_bar, kappa2)
        torch.testing.assert_close(a * m_lo, m_hi)
        torch.testing.assert_close(a * a * v_lo + b * b, v_hi)


def test_gaussian_move_samples_kernel_times_potential() -> None:
    """Observed coordinates: the product Gaussian; the unobserved ones: the kernel's."""
    op = MatrixOperator(torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64))
    coords = svd_coordinates(op, torch.tensor([[0.4]], dtype=torch.float64), 0.0)
    n, v = 200_000, 0.09
    mu = torch.tensor([[0.5, -0.1, 2.0]], dtype=torch.float64).expand(n, 3)
    mean, var = torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.04], dtype=torch.float64)
    x, c = gaussian_move(coords, mu, v, mean, var, GeneratorNoise(torch.Generator().manual_seed(1)))
    torch.testing.assert_close(c, coords.coord(x))
    m = float(coords.coord(mu[:1]))
    q_mean, q_var = (0.04 * m + v * 0.3) / (v + 0.04), v * 0.04 / (v + 0.04)
    assert abs(float(c.mean()) - q_mean) < 5 * math.sqrt(q_var / n)
    assert abs(float(c.var()) / q_var - 1) < 0.02
    u = (x[:, 0] - x[:, 1]) / math.sqrt(2)  # unobserved: kernel N((mu_0 - mu_1) / sqrt 2, v)
    assert abs(float(u.mean()) - 0.6 / math.sqrt(2)) < 5 * math.sqrt(v / n)
    assert abs(float(u.var()) / v - 1) < 0.02 and abs(float(x[:, 2].var()) / v - 1) < 0.02

"""The one-sum non-finite check and the scalar helpers of the samplers' fast path."""

from __future__ import annotations

import math

import torch

import scoresde as ss
from scoresde._core.checks import all_finite
from scoresde._core.tensors import lincomb, scalar, scalars


def test_all_finite_is_exact():
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert all_finite(x)
    for bad in (math.nan, math.inf, -math.inf):
        y = x.clone()
        y[3, 1] = bad
        assert not all_finite(y)
    # Finite entries whose sum overflows: the exact check answers.
    big = torch.full((4,), torch.finfo(torch.float32).max)
    assert math.isinf(float(big.sum())) and all_finite(big)


def test_lincomb_and_scalars():
    g = torch.Generator().manual_seed(1)
    x, y, z = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(lincomb(0.5, x, (2.0, y), (-1.5, z)), 0.5 * x + 2.0 * y - 1.5 * z)
    torch.testing.assert_close(lincomb(1.0, x, (2.0, y)), x + 2.0 * y)
    assert scalar(0.25, torch.float32) is scalar(0.25, torch.float32)  # memoised
    assert scalar(0.25, torch.float16) == 0.25  # half precisions: the float itself
    assert [float(v) for v in scalars([0.5, 1.5], torch.float64)] == [0.5, 1.5]


def test_coefficients_at_matches_the_marginal():
    for sde in (ss.VPSDE(), ss.VESDE()):
        for dtype in (torch.float32, torch.float64):
            t = torch.tensor([0.37], dtype=dtype)
            s, sigma = sde.marginal(t)
            ds, dsigma = sde.marginal_derivatives(t)
            got = sde.coefficients_at(float(t), dtype, True)
            assert got == (float(s), float(sigma), float(ds), float(dsigma))


def test_a_scalar_first_made_in_inference_mode_works_under_autograd():
    # The memo outlives the context: a coefficient first asked for under inference_mode (a
    # sampling run) must still enter a later autograd graph (guidance, training).
    value = 0.123456789
    with torch.inference_mode():
        scalar(value, torch.float32)
    w = torch.ones(3, requires_grad=True)
    (w * scalar(value, torch.float32)).sum().backward()
    assert w.grad is not None and torch.allclose(w.grad, torch.full((3,), value))

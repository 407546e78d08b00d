"""Noise levels at the snapped timestep: x0 at every timestep of a 4000-step cosine table.

A float32 time ``t_n = (n + 1) / N`` carries the rounding of ``t``; the network is evaluated at
the integer timestep ``n``, and ``s``, ``sigma`` must be the table's entry ``n`` too.  The
reference is float64 arithmetic from the same float32 inputs and the table's own
``alpha_bar_n``.  Bounds are relative to the output scale of each row (``max |x0_ref|``).
"""

from __future__ import annotations

import pytest
import torch

from scoresde.models.wrapper import ScoreModel
from scoresde.sde.discrete import DiscreteVPSDE, make_betas

N = 4000


class _Net(torch.nn.Module):
    """An arbitrary prediction that does not depend on the time input (which is recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen = t
        return 1.3 * torch.tanh(x.flip(0))


@pytest.fixture(scope="module")
def cosine() -> DiscreteVPSDE:
    # diffusers' float32 table of squaredcos_cap_v2, as sde_from_scheduler reads it.
    abar = torch.cumprod(1 - make_betas("squaredcos_cap_v2", N).float(), 0)
    return DiscreteVPSDE(abar.double())


@pytest.mark.parametrize("prediction", ["eps", "v", "x0", "score"])
def test_x0_at_every_table_timestep(cosine: DiscreteVPSDE, prediction: str) -> None:
    net = _Net()
    model = ScoreModel(net, cosine, prediction=prediction, scale_input=False, time_input="timestep")
    n = torch.arange(N)
    t = cosine.time_of_timestep(n).float()
    x = torch.randn(N, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x0 = model.denoise(x, t)
    assert x0.dtype == torch.float32
    assert torch.equal(net.seen, n.float())  # the network sees the integer timesteps
    out, xd, abar = net(x.double(), t), x.double(), cosine.alphas_cumprod
    s, sigma = abar.sqrt()[:, None], (1 - abar).sqrt()[:, None]
    ref = {
        "eps": (xd - sigma * out) / s,
        "v": s * xd - sigma * out,
        "x0": out,
        "score": (xd + sigma**2 * out) / s,
    }[prediction]
    err = (x0.double() - ref).abs().amax(1) / ref.abs().amax(1)
    assert float(err.max()) <= 1e-6, (float(err.max()), int(err.argmax()))


def test_marginal_is_the_table_at_float32_times(cosine: DiscreteVPSDE) -> None:
    n = torch.arange(N)
    s, sigma = cosine.marginal(cosine.time_of_timestep(n).float())
    assert s.dtype == sigma.dtype == torch.float32
    abar = cosine.alphas_cumprod
    # Within 2 float32 ulps (2e-7 relative): the table's own values (exact here; an ulp allowed for
    # CPUs whose vectorised sqrt / exp round differently).
    torch.testing.assert_close(s, abar.sqrt().float(), rtol=2e-7, atol=0)
    torch.testing.assert_close(sigma, (1 - abar).sqrt().float(), rtol=2e-7, atol=0)
    # Between the knots: still the interpolation of log s (half-way = the mean of the two).
    mid = cosine.log_alpha(torch.tensor([(3998 + 1.5) / N], dtype=torch.float64))
    torch.testing.assert_close(
        mid, 0.25 * (abar[3998].log() + abar[3999].log()).reshape(1), rtol=1e-12, atol=0
    )

"""The Jacobian-vector products behind DPM-Solver-v3's statistics (scoresde.sampling.ems).

Forward mode and its reverse-over-reverse fallback give ``J v`` within float rounding of each
other and of a central difference; a diffusers ``UNet2DModel`` with attention, on which torch
2.13's forward mode fails (fused attention kernels, GroupNorm on a non-contiguous tangent), gets
its statistics (whichever path a torch version takes, the product is checked).
"""

from __future__ import annotations

import pytest
import torch

from scoresde.sampling import compute_ems
from scoresde.sampling.ems import jvp, jvp_by_double_vjp


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.SiLU(), torch.nn.Linear(32, 6)).double()


def test_forward_mode_and_double_vjp_agree_with_the_jacobian() -> None:
    net = _mlp()
    g = torch.Generator().manual_seed(1)
    x, v = (
        torch.randn(4, 6, generator=g, dtype=torch.float64),
        torch.randn(4, 6, generator=g, dtype=torch.float64),
    )
    exact = torch.stack([torch.autograd.functional.jacobian(net, x[i]) @ v[i] for i in range(4)])
    for fn in (jvp, jvp_by_double_vjp):
        out, jv = fn(net, x, v)
        assert not out.requires_grad and not jv.requires_grad
        torch.testing.assert_close(out, net(x), rtol=0, atol=1e-14)
        # float64: a few ulps of the product's scale.
        torch.testing.assert_close(jv, exact, rtol=1e-12, atol=1e-12)


def test_an_error_of_the_function_itself_surfaces() -> None:
    def broken(z: torch.Tensor) -> torch.Tensor:
        raise ValueError("broken network")

    with pytest.raises(ValueError, match="broken network"):
        jvp(broken, torch.zeros(2), torch.ones(2))


def _diffusers_model():
    diffusers = pytest.importorskip("diffusers")
    from scoresde.interop.diffusers import from_diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=10,
    )
    return from_diffusers(unet, diffusers.DDPMScheduler(num_train_timesteps=1000))


def test_diffusers_unet_jvp_matches_a_central_difference() -> None:
    model, _ = _diffusers_model()
    model = model.double()
    g = torch.Generator().manual_seed(2)
    x, v = (torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t, y = torch.full((3,), 0.5, dtype=torch.float64), torch.tensor([0, 4, 9])
    out, jv = jvp(lambda z: model.eps(z, t, y), x, v)
    h = 1e-6
    with torch.no_grad():
        diff = (model.eps(x + h * v, t, y) - model.eps(x - h * v, t, y)) / (2 * h)
        torch.testing.assert_close(out, model.eps(x, t, y), rtol=0, atol=1e-12)
    # The difference quotient's own error is O(h^2) plus rounding ~1e-16 / h: about 1e-9 here.
    torch.testing.assert_close(jv, diff, rtol=1e-6, atol=1e-6 * float(diff.abs().max()))


def test_compute_ems_runs_on_a_diffusers_unet_with_attention() -> None:
    model, _ = _diffusers_model()
    ems = compute_ems(
        model, (1, 8, 8), generator=torch.Generator().manual_seed(0), pilot=4, knots=4, y=torch.arange(4)
    )
    assert ems.l.shape == ems.s.shape == ems.b.shape == (5, 1, 8, 8)
    assert all(bool(torch.isfinite(t).all()) for t in (ems.l, ems.s, ems.b))

"""Prediction conversions where the marginal's sigma is 0 (t = 0): refused, never a silent 0."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss


@pytest.mark.parametrize("sde", [ss.VESDE(), ss.VPSDE(), ss.SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize(
    "native, kind",
    [("score", "eps"), ("score", "v"), ("eps", "score"), ("x0", "eps"), ("x0", "score"), ("v", "score")],
)
def test_undefined_conversions_at_t0_raise(sde, native: str, kind: str) -> None:
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), sde, prediction=native)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"sigma\(t\) = 0.*t >= sde.eps"):
        model.predict(kind, x, torch.tensor([0.0, 0.5, 0.5]))
    # At sde.eps (where sampling stops) the same conversion is defined and finite.
    assert torch.isfinite(model.predict(kind, x, sde.eps)).all()


@pytest.mark.parametrize("native", ["score", "eps", "v"])
def test_denoiser_and_native_output_stay_defined_at_t0(native: str) -> None:
    sde = ss.VESDE()
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), sde, prediction=native)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    # x0 = x / s at sigma = 0 (the noisy input is the data), up to float32 rounding.
    torch.testing.assert_close(model.denoise(x, 0.0), x, rtol=0, atol=1e-6)
    assert model.predict(native, x, 0.0).shape == x.shape

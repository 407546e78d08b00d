"""Frozen traces and channels_last (:mod:`scoresde.models.execution`): outputs equal eager ones.

Tolerance: oneDNN's fused / NHWC convolutions sum in another order than the eager ones, so a
few ulps of the output scale (rtol 1e-4, atol 1e-5 on outputs of order 1), as for compile.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as ss
from scoresde.models.execution import (
    FreezeError,
    FrozenForward,
    channels_last_model,
    freeze_model,
    freeze_network,
    prepare_model,
    unfreeze_model,
)
from tests.models.test_compile import _randomize, _tiny_paper_model

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _inputs(shape: tuple[int, ...], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.rand(shape[0], generator=g) * 0.9 + 0.05


def _conditional_unet_model() -> ss.ScoreModel:
    from scoresde.nets.unet import UNet

    net = UNet(
        1, 8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_classes=3
    )
    return ss.ScoreModel(_randomize(net), ss.VPSDE())


@pytest.mark.parametrize("how", ["freeze", "channels_last", "both"])
@pytest.mark.parametrize("which", ["unet", "mlp", "paper"])
def test_outputs_equal_eager(which: str, how: str) -> None:
    if which == "unet":
        model, shape = _conditional_unet_model(), (3, 1, 8, 8)
    elif which == "mlp":
        model, shape = ss.ScoreModel(_randomize(ss.MLP(4, hidden=32, depth=2)), ss.VPSDE()), (5, 4)
    else:
        model, shape = _tiny_paper_model(), (2, 3, 8, 8)
    x, t = _inputs(shape)
    y = torch.tensor([0, 2, 1]) if which == "unet" else None
    x2, t2 = _inputs(shape, seed=2)
    with torch.no_grad():
        ref, ref2 = model.eps(x, t, y), model.eps(x2, t2, y)
        ref_uncond = model.eps(x, t) if which == "unet" else ref
    assert ref.abs().max() > 0.01
    assert (
        prepare_model(model, "freeze" if how != "channels_last" else "off", channels_last=how != "freeze")
        is model
    )
    with torch.no_grad():
        out, out2, again = model.eps(x, t, y), model.eps(x2, t2, y), model.eps(x, t, y)
        uncond = model.eps(x, t) if which == "unet" else out  # labels absent: another trace
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(out2, ref2, **TOL)  # new values through the same trace
    torch.testing.assert_close(uncond, ref_uncond, **TOL)
    torch.testing.assert_close(again, out, rtol=0, atol=0)  # the same code run twice
    assert out.is_contiguous()


def test_diffusers_adapter_frozen_matches_eager() -> None:
    diffusers = pytest.importorskip("diffusers")
    from scoresde.interop.diffusers import from_diffusers
    from tests.interop.conftest import tiny_unet

    loaded = from_diffusers(_randomize(tiny_unet()), diffusers.DDPMScheduler())
    x, t = _inputs((2, 1, 8, 8))
    with torch.no_grad():
        ref = loaded.model.eps(x, t)
    prepare_model(loaded, "freeze", channels_last=True)  # a holder: its .model's network
    with torch.no_grad():
        out = loaded.model.eps(x, t)
    torch.testing.assert_close(out, ref, **TOL)


def test_sampling_frozen_matches_eager() -> None:
    model = _conditional_unet_model()
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = {"shape": x_T.shape, "method": "ddim", "steps": 4, "x_T": x_T, "y": torch.tensor([1, 0, 2])}
    with torch.inference_mode():
        ref = ss.sample(model, model.sde, **kw).x
        freeze_model(model)
        out = ss.sample(model, model.sde, **kw).x
    torch.testing.assert_close(out, ref, **TOL)


class _Branchy(torch.nn.Module):
    """A network whose Python code branches on the time input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(x) if bool((t > 0.5).all()) else -self.lin(x)


def test_data_dependent_control_flow_falls_back_to_eager() -> None:
    net = _Branchy().eval()
    x, t = torch.randn(3, 4), torch.tensor([0.6, 0.7, 0.8])
    with pytest.raises(FreezeError, match="Python control flow"):
        freeze_network(net, (x, t))
    model = ss.ScoreModel(net, ss.VPSDE(), time_input="t")
    with torch.no_grad():
        ref = model.eps(x, t)
    freeze_model(model)
    with pytest.warns(RuntimeWarning, match="running the network eagerly"), torch.no_grad():
        out = model.eps(x, t)
    with torch.no_grad():
        low = model.eps(x, t * 0.1)  # the other branch, computed eagerly
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the same eager code run twice
    torch.testing.assert_close(low, -ref, rtol=0, atol=0)  # the same eager code; negation is exact
    assert net.forward.unsafe is not None


def test_gradients_and_training_run_eagerly() -> None:
    model = _conditional_unet_model()
    net = model.net
    freeze_model(model)
    x, t = _inputs((2, 1, 8, 8))
    x.requires_grad_(True)
    out = model.eps(x, t)  # gradients wanted: the eager network, differentiable
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    net.train()
    model.eps(x.detach(), t)
    assert isinstance(net.forward, FrozenForward) and not net.forward.traces


def test_freezing_keeps_the_module_and_its_state_dict() -> None:
    model = _conditional_unet_model()
    keys = list(model.state_dict())
    net = model.net
    freeze_model(model)
    freeze_model(model)  # idempotent
    assert model.net is net and list(model.state_dict()) == keys
    channels_last_model(model)
    assert list(model.state_dict()) == keys
    assert unfreeze_model(model) is model and "forward" not in net.__dict__


def test_bad_arguments_are_errors() -> None:
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE())
    with pytest.raises(ValueError, match="unknown compile value"):
        prepare_model(model, "fast")
    gmm = ss.GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
    with pytest.raises(ValueError, match="no network"):
        freeze_model(ss.AnalyticScore(gmm, ss.VPSDE()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TorchScript's deprecation warnings stay inside
        freeze_network(_randomize(ss.MLP(2, hidden=8, depth=1)), (torch.randn(3, 2), torch.rand(3)))

"""Compiled execution (:mod:`scoresde.models.compile`): outputs equal eager ones, clear errors.

Inductor compiles C++ kernels, which costs 15 s to minutes per network on a 2-core CPU: the
default run compiles the MLP with inductor and traces the UNet, the paper network and the
diffusers adapter through dynamo (``backend="aot_eager"``: same graph capture, no C++);
inductor on the UNet and the paper network is marked ``slow``.  Tolerance: inductor reorders
float32 sums, so a few ulps of the output scale (rtol 1e-4, atol 1e-5 on outputs of order 1).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.models import compile as C
from scoresde.models.compile import CompilerUnavailableError, compile_model, compiled_networks
from scoresde.nets.unet import UNet

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised output layers would hide a broken graph)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def _tiny_unet() -> UNet:
    return UNet(
        1, 8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0
    )


def _tiny_paper_model() -> torch.nn.Module:
    from scoresde.interop.score_sde import PaperScoreModel, build_paper_sde
    from scoresde.nets.score_sde import build_score_sde_net
    from scoresde.nets.score_sde.config import parse_net_config
    from scoresde.nets.score_sde.paper_configs import paper_config

    cfg = paper_config("vp/cifar10_ddpmpp_continuous")
    cfg["data"]["image_size"] = 8
    cfg["model"].update(nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4], dropout=0.0)
    net = _randomize(build_score_sde_net(cfg))
    return PaperScoreModel(net, build_paper_sde("vpsde", parse_net_config(cfg)), "vpsde").eval()


def _compare(model: torch.nn.Module, shape: tuple[int, ...], backend: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    t = torch.rand(shape[0], generator=g) * 0.9 + 0.05
    with torch.no_grad():
        ref = model.eps(x, t)
        assert compile_model(model, backend=backend) is model
        out = model.eps(x, t)
        again = model.eps(x, t)
    assert ref.abs().max() > 0.01  # a network that is not trivially zero
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(again, out, rtol=0, atol=0)  # the same compiled code run twice


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield
    torch._dynamo.reset()


def test_mlp_inductor_matches_eager() -> None:
    model = ss.ScoreModel(_randomize(ss.MLP(4, hidden=32, depth=2)), ss.VPSDE())
    _compare(model, (16, 4), "inductor")


def test_tiny_unet_traced_matches_eager() -> None:
    _compare(ss.ScoreModel(_randomize(_tiny_unet()), ss.VPSDE()), (3, 1, 8, 8), "aot_eager")


def test_paper_network_traced_matches_eager() -> None:
    _compare(_tiny_paper_model(), (2, 3, 8, 8), "aot_eager")


@pytest.mark.slow
def test_tiny_unet_inductor_matches_eager() -> None:
    _compare(ss.ScoreModel(_randomize(_tiny_unet()), ss.VPSDE()), (3, 1, 8, 8), "inductor")


@pytest.mark.slow
def test_paper_network_inductor_matches_eager() -> None:
    _compare(_tiny_paper_model(), (2, 3, 8, 8), "inductor")


def test_diffusers_adapter_traced_matches_eager() -> None:
    pytest.importorskip("diffusers")
    from scoresde.interop.diffusers import from_diffusers
    from tests.interop.conftest import tiny_unet

    diffusers = pytest.importorskip("diffusers")
    loaded = from_diffusers(_randomize(tiny_unet()), diffusers.DDPMScheduler())
    assert len(compiled_networks(loaded.model)) == 1
    assert compile_model(loaded, backend="eager") is loaded  # a holder: its .model is compiled
    torch._dynamo.reset()
    _compare(loaded.model, (2, 1, 8, 8), "aot_eager")


def test_wrappers_compile_the_inner_network_and_keep_state_dict_keys() -> None:
    inner = ss.ScoreModel(_randomize(ss.MLP(4, hidden=16, depth=1)), ss.VPSDE())
    model = ss.ClipDenoised(inner, mode="clip")
    keys = list(model.state_dict())
    assert compiled_networks(model) == [inner.net]
    compile_model(model, backend="eager")
    assert list(model.state_dict()) == keys  # checkpoints stay readable by eager models
    assert compiled_networks(inner.net) == [inner.net]  # a bare network is compiled itself


def test_bad_mode_and_no_network_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown compile mode"):
        compile_model(ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE()), mode="fast")
    gmm = ss.GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
    with pytest.raises(ValueError, match="no network to compile"):
        compile_model(ss.AnalyticScore(gmm, ss.VPSDE()))


def test_no_cxx_compiler_gives_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(C, "_cxx_compiler", lambda: None)
    C._probe.cache_clear()
    try:
        model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE())
        with pytest.raises(CompilerUnavailableError, match=r"C\+\+ compiler.*without --compile"):
            compile_model(model)
        compile_model(model, backend="eager")  # backends without C++ kernels still work
    finally:
        C._probe.cache_clear()


def test_broken_cxx_compiler_and_unsupported_dynamo_are_named(monkeypatch) -> None:
    monkeypatch.setattr(C, "_cxx_compiler", lambda: "false")  # /bin/false: exits 1
    C._probe.cache_clear()
    try:
        with pytest.raises(CompilerUnavailableError, match="failed on a one-line file"):
            C.check_compiler("inductor", "cpu")
        monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
        C._probe.cache_clear()
        with pytest.raises(CompilerUnavailableError, match="does not support this Python"):
            C.check_compiler("inductor", "cpu")
    finally:
        C._probe.cache_clear()

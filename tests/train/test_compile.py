"""Compiled training: the network under torch.compile gives eager's outputs and gradients (within
float tolerance), ``compile = auto`` follows the run length, and a missing compiler is a clear error."""

from __future__ import annotations

import pytest
import torch

import scoresde.train.compile as compile_module
from scoresde.data.images import load_digits
from scoresde.nets import build_net
from scoresde.train import TrainConfig, Trainer
from scoresde.train.compile import AUTO_MIN_STEPS, CompilerUnavailableError, compile_network, wants_compile

NETS = {
    "mlp": ({"name": "mlp", "dim": 6, "hidden": 16, "depth": 2}, (5, 6)),
    "unet": (
        {"name": "unet", "in_channels": 1, "image_size": 8, "base_channels": 4, "channel_mults": [1, 2]},
        (3, 1, 8, 8),
    ),
}


def _compare(name: str, backend: str) -> None:
    config, shape = NETS[name]
    torch.manual_seed(0)
    net = build_net(config)
    x, t = (
        torch.randn(shape, generator=torch.Generator().manual_seed(1)),
        torch.tensor([0.1, 0.5, 0.9, 0.3, 0.7]),
    )
    t = t[: shape[0]]
    compiled = compile_network(net, "cpu", backend=backend)
    eager_out = net(x, t)
    eager_out.square().sum().backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    out = compiled(x, t)
    out.square().sum().backward()
    # float32 tolerance: a few ulps of the output scale (fused kernels reorder sums).
    scale = float(eager_out.detach().abs().max())
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-5 * scale)
    for p, g in zip(net.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5 * float(g.abs().max()) + 1e-7)


@pytest.mark.parametrize(("name", "backend"), [("mlp", "aot_eager"), ("unet", "eager")])
def test_compiled_capture_matches_eager(name: str, backend: str) -> None:
    """The captured graph (TorchDynamo, with AOTAutograd for the MLP; no code generation, so fast)
    equals eager."""
    _compare(name, backend)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "unet"])
def test_inductor_matches_eager(name: str) -> None:
    """Generated kernels (Inductor, C++ on the CPU; minutes on a loaded 2-core machine)."""
    _compare(name, "inductor")


def test_auto_compiles_long_cuda_runs_only() -> None:
    assert not wants_compile("auto", AUTO_MIN_STEPS - 1, "cuda") and wants_compile(
        "auto", AUTO_MIN_STEPS, "cuda"
    )
    assert not wants_compile("auto", 10**9, "cpu")  # measured: compiling does not pay on the CPU
    assert wants_compile("on", 1) and not wants_compile("off", 10**9, "cuda")
    with pytest.raises(ValueError, match="unknown compile"):
        wants_compile("yes", 10)
    with pytest.raises(ValueError, match="unknown compile 'yes'"):
        TrainConfig(compile="yes")


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path) -> None:
    digits = load_digits(test_fraction=0.1)

    def broken(device):
        raise RuntimeError("no C++ compiler found (looked for g++)")

    monkeypatch.setattr(compile_module, "_probe", broken)
    with pytest.raises(
        CompilerUnavailableError, match=r"compile: torch.compile cannot run on cpu.*no C\+\+ compiler"
    ):
        compile_module.check_compiler("cpu")
    config = TrainConfig(
        out=str(tmp_path), steps=2, batch_size=8, compile="on", progress=False, num_samples=0
    )
    with pytest.raises(CompilerUnavailableError, match="compile = off"):
        Trainer(config, data=digits)

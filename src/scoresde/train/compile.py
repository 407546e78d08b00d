"""Compiled execution of the network (``torch.compile``), with a clear error when it cannot work.

``torch.compile`` traces the network once (TorchDynamo) and generates fused kernels (Inductor:
C++/OpenMP on the CPU, Triton on CUDA), which needs a working C++ compiler on the CPU (or Triton on
a GPU).  The first step pays the compilation.  Measured on this project's 2-core CPU
(``benchmarks/trainer_overhead.py --compile``, docs/bench_trainer_overhead.md): the default UNet
(28x28, batch 32, one thread) steps 0.4% faster compiled, after a compilation of minutes, and
the benchmark UNet of ``benchmarks/train_compile_check.py`` (28x28, batch 64, one thread) 10%
slower compiled, after about 2 CPU-minutes of compilation (docs/bench_speed.md), so compiling
never pays for a CPU run of any practical length; ``compile="auto"`` therefore compiles
only on CUDA, and only runs of at least :data:`AUTO_MIN_STEPS` steps (not yet measured on a GPU).
"""

from __future__ import annotations

import shutil

import torch
from torch import nn

__all__ = [
    "AUTO_MIN_STEPS",
    "COMPILE_MODES",
    "CompilerUnavailableError",
    "check_compiler",
    "compile_network",
    "wants_compile",
]

COMPILE_MODES = ("off", "on", "auto")

AUTO_MIN_STEPS = 4000
"""``compile="auto"`` compiles CUDA runs of at least this many steps (see the module docstring)."""


class CompilerUnavailableError(RuntimeError):
    """``torch.compile`` cannot run here (no C++ compiler, no Triton, an unsupported Python, ...)."""


def wants_compile(mode: str, steps: int, device: torch.device | str = "cpu") -> bool:
    """Whether a run of ``steps`` steps on ``device`` compiles under ``mode`` (``off``, ``on`` or
    ``auto``: CUDA runs of at least :data:`AUTO_MIN_STEPS` steps)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES)}")
    auto = torch.device(device).type == "cuda" and steps >= AUTO_MIN_STEPS
    return mode == "on" or (mode == "auto" and auto)


def _probe(device: torch.device) -> None:
    """Compile and run a tiny function on ``device`` (raises what torch raises)."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        raise RuntimeError("TorchDynamo does not support this Python version")
    if device.type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx
        names = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c] or ["g++", "c++", "clang++"]
        if not any(shutil.which(str(c)) for c in names):
            raise RuntimeError(f"no C++ compiler found (looked for {', '.join(map(str, names))})")
    fn = torch.compile(lambda x: torch.sin(x) * 2.0 + 1.0, dynamic=False)
    fn(torch.ones(4, device=device))


def check_compiler(device: torch.device | str = "cpu") -> None:
    """Raise :class:`CompilerUnavailableError` naming the problem if ``torch.compile`` cannot run.

    Compiles a one-line function on ``device`` (a few seconds, once per process).
    """
    device = torch.device(device)
    try:
        _probe(device)
    except Exception as err:  # torch raises many kinds here
        raise CompilerUnavailableError(
            f"compile: torch.compile cannot run on {device.type} here ({type(err).__name__}: {err}); "
            "it needs a C++ compiler (CPU) or Triton (CUDA) and its own Python dependencies: fix "
            "that, or train with compile = off"
        ) from err


def compile_network(
    net: nn.Module, device: torch.device | str = "cpu", backend: str = "inductor"
) -> nn.Module:
    """``torch.compile(net)`` after :func:`check_compiler`; the result shares ``net``'s parameters.

    Shapes are static (a training batch keeps its shape; a smaller last batch recompiles once).
    ``backend``: torch's compiler backend (``inductor`` generates kernels; ``aot_eager`` only traces,
    for tests of the capture).
    """
    if backend == "inductor":
        check_compiler(device)
    compiled = torch.compile(net, dynamic=False, backend=backend)
    # torch's stub types the result as a callable; compiling a module gives an OptimizedModule.
    assert isinstance(compiled, nn.Module)
    return compiled

"""Compiled execution: ``torch.compile`` of the network inside a score model.

:func:`compile_model` compiles, in place, every network a model evaluates: the ``net`` of a
:class:`~scoresde.models.wrapper.ScoreModel` (scoresde's own nets, the diffusers adapter), of
an :class:`~scoresde.interop.score_sde.PaperScoreModel` (the paper's NCSN++ / DDPM++), and of
any score model wrapped around them (:class:`~scoresde.models.ClipDenoised`, guidance
wrappers, :class:`~scoresde.models.CountingModel`).  It uses :meth:`torch.nn.Module.compile`,
which keeps the module and its ``state_dict`` keys as they are: checkpoints written after
compiling read back into eager models.  The wrapper's own arithmetic (input scaling, time
input, prediction conversions, the samplers' checks) stays eager: it is a few element-wise
operations per step, and compiling it would put the samplers' host reads inside the graph.

Where no compiler works (no C++ compiler for inductor's CPU kernels, a Python that dynamo
does not support, a broken toolchain, no Triton for CUDA), :func:`check_compiler` says so up
front with a tiny probe instead of failing deep inside the first sampler step.

When it pays: compiling costs seconds to minutes once per input shape (on a 2-core CPU about
15 s for a small MLP, one to two minutes for a small UNet); see docs/bench_speed.md for the
speed-up per evaluation and the break-even run length.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "COMPILE_MODES",
    "CompilerUnavailableError",
    "check_compiler",
    "compile_model",
    "compiled_networks",
]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""The ``mode`` values of :func:`torch.compile` (``reduce-overhead`` adds CUDA graphs on CUDA)."""


class CompilerUnavailableError(RuntimeError):
    """``torch.compile`` cannot run here (the message names why and what to do instead)."""


def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would call for CPU kernels (``$CXX`` / its config), if found."""
    try:
        from torch._inductor import config as inductor_config

        names = inductor_config.cpp.cxx
    except Exception:  # an inductor without this setting: fall back to the usual names
        names = (None, "g++")
    candidates = [n for n in names if n] if isinstance(names, tuple | list) else [names]
    candidates += [sysconfig.get_config_var("CXX") or "", "g++", "clang++", "c++"]
    for name in candidates:
        exe = str(name).split()[0] if name else ""
        if exe and shutil.which(exe):
            return exe
    return None


def _compiles_cxx(exe: str) -> str | None:
    """``None`` when ``exe`` turns a one-line C++ file into an object file, else the reason."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("int scoresde_probe(int x) { return x + 1; }\n")
        try:
            proc = subprocess.run(
                [exe, "-c", str(src), "-o", str(Path(tmp) / "probe.o")],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as err:
            return f"the C++ compiler {exe} could not run ({type(err).__name__}: {err})"
        if proc.returncode != 0:
            return f"the C++ compiler {exe} failed on a one-line file: {' '.join(proc.stderr.split())[:200]}"
    return None


@functools.cache
def _probe(backend: str, device_type: str) -> str | None:
    """``None`` when ``torch.compile`` can work here, else the reason why not.

    Cheap (well under a second): dynamo's platform check, then for inductor on the CPU a C++
    compiler found and compiling a one-line file, for CUDA a visible device and Triton.
    """
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch._dynamo does not support this Python / platform"
    if backend != "inductor":
        return None
    if device_type == "cpu":
        exe = _cxx_compiler()
        if exe is None:
            return "inductor's CPU kernels need a C++ compiler (g++ or clang++) and none was found on PATH"
        return _compiles_cxx(exe)
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
        try:
            import triton  # noqa: F401
        except ImportError:
            return "inductor's CUDA kernels need Triton, which is not installed"
    return None


def check_compiler(backend: str = "inductor", device: torch.device | str = "cpu") -> None:
    """Raise :class:`CompilerUnavailableError` unless ``torch.compile`` works on ``device``.

    Probes once per ``(backend, device type)`` and caches the answer: dynamo supports the
    platform; inductor on the CPU finds a C++ compiler that compiles a one-line file; on CUDA,
    a device and Triton.  (What the probe cannot see, e.g. a missing header, fails at the first
    evaluation with torch's own message.)

    Raises:
        CompilerUnavailableError: naming the cause (no C++ compiler, dynamo unsupported,
            the probe's error) and the remedy (run eagerly, without ``--compile``).
    """
    device_type = torch.device(device).type
    reason = _probe(backend, device_type)
    if reason is not None:
        raise CompilerUnavailableError(
            f"torch.compile (backend {backend!r}, device {device_type}) is not available: {reason}; "
            "run without --compile / compile=False (eager), or install the missing toolchain"
        )


def compiled_networks(model: nn.Module) -> list[nn.Module]:
    """The networks :func:`compile_model` compiles: the ``net`` of every score model inside
    ``model`` (each once), or ``model`` itself when it is a bare network without one."""
    from scoresde.models.base import ScoreFunction

    nets: list[nn.Module] = []
    for module in model.modules():
        net = getattr(module, "net", None)
        if (
            isinstance(module, ScoreFunction)
            and isinstance(net, nn.Module)
            and all(net is not n for n in nets)
        ):
            nets.append(net)
    if not nets and not isinstance(model, ScoreFunction):
        nets.append(model)
    return nets


def compile_model(
    model: Any,
    mode: str = "default",
    *,
    backend: str = "inductor",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    check: bool = True,
) -> Any:
    """Compile the network(s) of ``model`` with ``torch.compile``, in place; returns ``model``.

    The outputs equal eager ones within float tolerance (inductor fuses and reorders
    floating-point operations: expect differences of a few ulps of the output scale).  The
    first call of each input shape compiles (seconds to a minute on a CPU); later calls of the
    same shape reuse the compiled code.  A sampler of ``steps`` steps at one batch size
    therefore compiles once.

    Args:
        model: a score model (:class:`~scoresde.models.ScoreModel`, a paper model, a wrapper
            around them), a holder of one in ``.model`` (:class:`~scoresde.io.loaded.LoadedModel`,
            :class:`~scoresde.interop.diffusers.DiffusersModel`) or a bare ``nn.Module`` network.
        mode: one of :data:`COMPILE_MODES` (``reduce-overhead``: CUDA graphs, for fixed-step
            samplers on a GPU).
        backend: the ``torch.compile`` backend (``inductor``; ``eager`` / ``aot_eager`` for
            debugging).
        dynamic: ``torch.compile``'s ``dynamic`` (``None``: static first, dynamic after a
            second shape).
        fullgraph: refuse graph breaks.
        check: probe the compiler first (:func:`check_compiler`) so that a missing toolchain
            fails here, with a clear message, rather than at the first evaluation.

    Raises:
        ValueError: an unknown ``mode``, or a score model without a network to compile.
        CompilerUnavailableError: ``check`` and no working compiler.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES)}")
    inner = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):  # LoadedModel, DiffusersModel
        compile_model(inner, mode, backend=backend, dynamic=dynamic, fullgraph=fullgraph, check=check)
        return model
    nets = compiled_networks(model)
    if not nets:
        raise ValueError(
            f"{type(model).__name__} has no network to compile (compile_model compiles the `net` of the "
            "score models inside it); compile your network itself with torch.compile"
        )
    if check:
        device = next((p.device for n in nets for p in n.parameters()), torch.device("cpu"))
        check_compiler(backend, device)
    # torch.compile's modes are inductor's; other backends take none.
    options: dict[str, Any] = {"mode": mode} if backend == "inductor" else {}
    for net in nets:
        net.compile(backend=backend, dynamic=dynamic, fullgraph=fullgraph, **options)
    return model

"""Ways to execute the same network on a CPU, side by side: ms per forward / per training step.

Networks: (i) diffusers' ``UNet2DModel`` 28x28x1 (the one ``benchmarks/speed.py`` builds), through
``scoresde.interop.diffusers.UNetAdapter``; (ii) scoresde's ``UNet`` at the README 28x28 recipe's
size (base 16, mults 1 2 2, one block, attention at 7x7, 10 classes).

Forward (batch 32 by default): eager ``no_grad`` / ``inference_mode`` / ``channels_last`` (model and
input) / ``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference`` (oneDNN conv fusion) /
``torch.compile`` (inductor with ``freezing``, channels_last; ``--compile``: minutes to compile
on a busy CPU).  Training step (batch
64, eps-MSE, AdamW): default, ``foreach``, ``fused``, and ``channels_last``.  Every variant's
output is compared with eager (max abs difference).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src taskset -c 1 python benchmarks/network_modes.py``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def rounds(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call, cases alternated round by round (one warm-up call each)."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def networks() -> dict[str, tuple[nn.Module, bool]]:
    """name -> (network ``net(x, t[, y])``, conditional)."""
    from scoresde.interop.diffusers import UNetAdapter
    from speed import _recipe_unet, diffusers_unet

    torch.manual_seed(0)
    return {
        "diffusers UNet2DModel 28x28x1": (UNetAdapter(diffusers_unet(1, 28)), False),
        "scoresde UNet (README 28x28 recipe)": (_recipe_unet(conditional=True), True),
    }


def _randomise_zero_init(net: nn.Module) -> None:
    """Give zero-initialised layers (output convolutions) random weights, so outputs differ from 0."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def inputs(batch: int, conditional: bool, diffusers: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g).float() if diffusers else torch.rand(batch, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g) if conditional else None
    return x, t, y


def _forward_cases(net: nn.Module, args: tuple, with_compile: bool) -> tuple[dict, dict]:
    """name -> call, and name -> setup seconds, of each way to run ``net(*args)``."""
    from scoresde.models.execution import channels_last_model, freeze_model

    def infer(m: nn.Module = net) -> object:
        with torch.inference_mode():
            return m(*args)

    def nograd() -> object:
        with torch.no_grad():
            return net(*args)

    def prepared(how: str) -> nn.Module:
        m = copy.deepcopy(net)
        if "cl" in how:
            channels_last_model(m)
        if "freeze" in how:
            freeze_model(m)
        return m

    cl, frozen, frozen_cl = prepared("cl"), prepared("freeze"), prepared("freeze cl")
    setup: dict[str, float] = {}
    for label, m in (
        ("jit trace + freeze + optimize_for_inference", frozen),
        ("the same, channels_last", frozen_cl),
    ):
        t0 = time.perf_counter()
        infer(m)  # the first call traces, freezes and checks
        setup[label] = time.perf_counter() - t0
    cases: dict[str, Callable[[], object]] = {
        "eager no_grad": nograd,
        "eager inference_mode": infer,
        "channels_last (model + input)": functools.partial(infer, cl),
        "jit trace + freeze + optimize_for_inference": functools.partial(infer, frozen),
        "the same, channels_last": functools.partial(infer, frozen_cl),
    }
    if with_compile:  # inductor with weights frozen into the graph, on the channels_last copy
        label = "torch.compile (inductor, freezing, channels_last)"
        comp = torch.compile(copy.deepcopy(cl), options={"freezing": True})
        t0 = time.perf_counter()
        infer(comp)
        setup[label] = time.perf_counter() - t0
        cases[label] = functools.partial(infer, comp)
    return cases, setup


def forward_section(repeats: int, batch: int, with_compile: bool) -> list[str]:
    rows = [
        f"## Forward, batch {batch}, one thread",
        "",
        "Modes through `scoresde.models.execution` (`channels_last_model`, `freeze_model`); setup = the "
        "first call (trace, freeze, optimise, check on three more inputs; compile for inductor).",
        "",
        "| network | mode | ms per forward | vs eager no_grad | max abs diff to eager | setup s |",
        "|---|---|---|---|---|---|",
    ]
    for name, (net, cond) in networks().items():
        net = net.eval()
        _randomise_zero_init(net)
        x, t, y = inputs(batch, cond, "diffusers" in name)
        args = (x, t) if y is None else (x, t, y)
        with torch.no_grad():
            ref = net(*args)
        cases, setup = _forward_cases(net, args, with_compile)
        outs = {k: fn() for k, fn in cases.items()}
        sec = rounds(cases, repeats)
        for k in cases:
            diff = float((outs[k] - ref).abs().max())
            st = f"{setup[k]:.1f}" if k in setup else "-"
            rows.append(
                f"| {name} | {k} | {sec[k] * 1e3:.1f} | **{sec[k] / sec['eager no_grad']:.2f}x** | "
                f"{diff:.1e} | {st} |"
            )
    return [*rows, ""]


def _train_step(net0: nn.Module, args: tuple, target: torch.Tensor, opt_kw: dict, channels_last: bool):
    """(network, one AdamW step on the eps-MSE) from a copy of ``net0``."""
    net = copy.deepcopy(net0).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, **opt_kw)

    def step() -> None:
        loss = (net(*args) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return net, step


TRAIN_VARIANTS = {
    "AdamW default (foreach)": ({}, False),
    "AdamW foreach=False": ({"foreach": False}, False),
    "AdamW fused": ({"fused": True}, False),
    "channels_last + AdamW fused": ({"fused": True}, True),
}


def train_section(repeats: int, batch: int) -> list[str]:
    rows = [
        f"## Training step (forward, backward, AdamW), batch {batch}, one thread",
        "",
        "| network | variant | ms per step | vs default | max abs param diff after 3 steps |",
        "|---|---|---|---|---|",
    ]
    for name, (net0, cond) in networks().items():
        _randomise_zero_init(net0)
        x, t, y = inputs(batch, cond, "diffusers" in name)
        args = (x, t) if y is None else (x, t, y)
        target = torch.randn_like(x)
        built = {k: _train_step(net0, args, target, *v) for k, v in TRAIN_VARIANTS.items()}
        check = {k: _train_step(net0, args, target, *v) for k, v in TRAIN_VARIANTS.items()}
        for _, step in check.values():  # 3 steps each from the same start
            for _ in range(3):
                step()
        ref = [p.detach() for p in check["AdamW default (foreach)"][0].parameters()]
        sec = rounds({k: v[1] for k, v in built.items()}, repeats)
        base = sec["AdamW default (foreach)"]
        for k in TRAIN_VARIANTS:
            params = check[k][0].parameters()
            diff = max(float((p.detach() - r).abs().max()) for p, r in zip(params, ref, strict=True))
            rows.append(f"| {name} | {k} | {sec[k] * 1e3:.1f} | **{sec[k] / base:.2f}x** | {diff:.1e} |")
    return [*rows, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument(
        "--compile", action="store_true", help="also torch.compile with freezing (minutes on a busy CPU)"
    )
    p.add_argument("--sections", default="forward,train")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    lines = [
        "# Network execution modes on the CPU",
        "",
        f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, one thread. "
        f"`{' '.join(['benchmarks/network_modes.py', *(argv if argv is not None else sys.argv[1:])])}`",
        "",
    ]
    if "forward" in a.sections:
        lines += forward_section(a.repeats, a.batch, a.compile)
        print("\n".join(lines), flush=True)
    if "train" in a.sections:
        tr = train_section(a.repeats, a.train_batch)
        print("\n".join(tr), flush=True)
        lines += tr
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

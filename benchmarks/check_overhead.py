"""Cost of the contract checks and non-finite guards against one network forward.

Per sampler step the library runs ``check_times`` on ``t`` (in ``ScoreFunction.predict``),
``guard_output`` on each model output (``CountingModel``) and ``check_state_finite`` on the
state (``scoresde.sample``'s step callback).  This times each (minimum over repeats) and one
forward of the 3x256 MLP that ``benchmarks/samplers.py`` uses for its overhead table, at
batch 4096 on one thread.

Run: ``PYTHONPATH=src python benchmarks/check_overhead.py`` (writes docs/bench_check_overhead.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

import scoresde as ss
from scoresde._core.checks import check_state_finite, check_times, guard_output


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    torch.set_num_threads(1)
    net = ss.MLP(2, hidden=256, depth=3).eval()
    x = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((1,), 0.5).expand(4096)
    with torch.no_grad():
        out = net(x, t)
        forward = _best(lambda: net(x, t), 50)
        guard = _best(lambda: guard_output(out, x, t, "sample", "step 1"), 500)
        times = _best(lambda: check_times(t, 1.0), 500)
        state = _best(lambda: check_state_finite(x, "sample", "step 1"), 500)
    total = guard + times + state
    lines = [
        "# Overhead of the contract checks and non-finite guards",
        "",
        "Made by `benchmarks/check_overhead.py` (3x256 MLP, batch 4096, one thread, min over repeats).",
        "",
        "| what | time |",
        "|---|---|",
        f"| one MLP forward | {forward * 1e3:.3f} ms |",
        f"| guard_output (isfinite of a model output) | {guard * 1e6:.1f} us |",
        f"| check_times (range and NaN of t) | {times * 1e6:.1f} us |",
        f"| check_state_finite (isfinite of the state) | {state * 1e6:.1f} us |",
        f"| all three, relative to one forward | {100 * total / forward:.2f} % |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(__file__).resolve().parents[1].joinpath("docs", "bench_check_overhead.md").write_text(text)


if __name__ == "__main__":
    main()

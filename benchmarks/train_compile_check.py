"""Whether ``torch.compile`` pays for a training step: compile cost and compiled vs eager steps.

Issue 22 (docs/bench_speed.md, "Training step at batch 64", compiled): builds scoresde's and
diffusers' training steps with ``benchmarks/speed.py``'s ``_scoresde_step`` / ``_diffusers_step``
(28x28x1, batch 64, one thread), times each side's compile plus two steps (wall, and CPU seconds
including the compiler's processes), then the four steps (eager and compiled, both sides) side by
side in alternating rounds, in wall and CPU time.

Run: ``OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONPATH=src taskset -c 0 nice -n 10
python benchmarks/train_compile_check.py`` (a cold inductor cache compiles for minutes).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

import speed


def _cpu_all() -> float:
    """CPU seconds of this process and its finished children (the C++ compiler)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    torch.set_num_threads(1)
    ch, side, attn = speed.SIZES["28x28x1"]
    batch = 64
    print("start", time.strftime("%H:%M:%S"), speed.load_text(), flush=True)
    cases = {
        "ours_e": speed._scoresde_step(ch, side, attn, batch, "cpu", False)[0],
        "theirs_e": speed._diffusers_step(ch, side, batch, "cpu", False)[0],
    }
    builds = {
        "ours_c": lambda: speed._scoresde_step(ch, side, attn, batch, "cpu", True)[0],
        "theirs_c": lambda: speed._diffusers_step(ch, side, batch, "cpu", True)[0],
    }
    for name, build in builds.items():
        w0, c0 = time.perf_counter(), _cpu_all()
        step = build()
        step()
        step()
        print(
            f"{name}: compile + 2 steps {time.perf_counter() - w0:.0f} s wall, "
            f"{_cpu_all() - c0:.0f} s CPU (incl. compiler processes)",
            flush=True,
        )
        cases[name] = step
    wall, cpu = speed.side_by_side_cpu(cases, 5)
    for k in wall:
        print(f"{k}: wall {wall[k]:.3f} s/step, CPU {cpu[k]:.3f} s/step ({batch / cpu[k]:.1f} img/s)")
    for label, d in (("wall", wall), ("CPU", cpu)):
        print(
            f"{label}: eager ours/diffusers {d['theirs_e'] / d['ours_e']:.2f}x; compiled/compiled "
            f"{d['theirs_c'] / d['ours_c']:.2f}x; ours compiled / ours eager "
            f"{d['ours_e'] / d['ours_c']:.2f}x; "
            f"diffusers compiled / diffusers eager {d['theirs_e'] / d['theirs_c']:.2f}x",
            flush=True,
        )
    print("end", time.strftime("%H:%M:%S"), speed.load_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

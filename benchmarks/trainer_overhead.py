"""The trainer's step against a bare loop over the same network and loss, and when compiling pays.

Side by side in one process, one thread (run it under ``taskset -c 0``): blocks of ``--block``
steps alternate between

- **bare**: ``DSMLoss`` forward, backward, fused AdamW step (what a user's minimal loop does);
- **bare+**: the same plus gradient clipping and the EMA update (the trainer's recipe, by hand);
- **trainer**: :class:`scoresde.train.Trainer`'s own loop (batches drawn from ``(seed, step)``,
  learning-rate schedule, clipping, non-finite guard, EMA, on-device loss window, log lines),

on the README's first-run network (the default UNet, 28x28x1 images, batch 32).  The ratio
trainer / bare of the median per-step CPU times (one thread: robust to other jobs on a shared
machine) is the trainer's overhead.

``--compile`` also measures the compiled network (Inductor): the time of the first step
(compilation included) and the steady per-step time, giving the run length from which compiling
pays: ``steps >= compile_seconds / (eager_step - compiled_step)``.

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trainer_overhead.py \\
        --out docs/bench_trainer_overhead.md [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scoresde.data.images import DataSplit
from scoresde.models.wrapper import ScoreModel
from scoresde.nets import build_net
from scoresde.train import TrainConfig, Trainer
from scoresde.train.ema import EMA
from scoresde.train.logger import RunLogger
from scoresde.train.losses import DSMLoss
from scoresde.train.optim import adamw


def _data(n: int = 512, side: int = 28) -> DataSplit:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, side, side, generator=g) * 2 - 1
    return DataSplit(train=x, test=x[:32], name="uniform noise 28x28")


class Bare:
    """A minimal loop over the trainer's network, loss and optimiser (``full``: + clip and EMA)."""

    def __init__(self, trainer: Trainer, full: bool) -> None:
        torch.manual_seed(1)
        net = build_net(trainer.net_config)
        self.model = ScoreModel(net, trainer.sde, **trainer.model_config)
        self.opt = adamw(net.parameters(), 1e-4)
        self.loss = DSMLoss()
        self.ema = EMA(self.model, 0.999) if full else None
        self.data, self.batch, self.full = trainer.data.train, trainer.config.batch_size, full
        self.g = torch.Generator().manual_seed(2)

    def step(self) -> None:
        idx = torch.randint(0, self.data.shape[0], (self.batch,), generator=self.g)
        x0 = self.data[idx]
        u, noise = torch.rand(self.batch, generator=self.g), torch.randn(x0.shape, generator=self.g)
        self.model.train()
        loss = self.loss(self.model, x0, None, u, noise).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.full:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)


def _trainer(out: str, compile_mode: str, steps: int) -> Trainer:
    cfg = TrainConfig(
        out=out, name=f"bench-{compile_mode}", steps=steps, batch_size=32, log_every=50,
        save_every=10**9, eval_every=10**9, progress=False, num_samples=0, compile=compile_mode,
    )  # fmt: skip
    trainer = Trainer(cfg, data=_data())
    trainer.save = lambda path=None: None  # each block ends as a run does; checkpoints are not timed
    return trainer


def _clock() -> float:
    """CPU seconds of this process: with one thread, robust to other jobs on a shared machine
    (wall time is not: a preempted step counts the other jobs' time)."""
    return time.process_time()


def _trainer_block(trainer: Trainer, n: int, clock=_clock) -> float:
    """Seconds per step of ``n`` steps of the trainer's own loop (``Trainer._fit``)."""
    trainer.config.steps = trainer.step + n
    logger = RunLogger(Path(trainer.run_dir) / "metrics.jsonl", None, enabled=False)
    t0 = clock()
    trainer._fit(False, logger)
    return (clock() - t0) / n


def _bare_block(bare: Bare, n: int) -> float:
    t0 = _clock()
    for _ in range(n):
        bare.step()
    return (_clock() - t0) / n


def overhead(blocks: int, block: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        trainer = _trainer(out, "off", 10**9)
        bare, full = Bare(trainer, False), Bare(trainer, True)
        _trainer_block(trainer, 3), _bare_block(bare, 3), _bare_block(full, 3)  # warm-up
        runs = {
            "bare": lambda: _bare_block(bare, block),
            "bare+": lambda: _bare_block(full, block),
            "trainer": lambda: _trainer_block(trainer, block),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        order = list(runs)
        for i in range(blocks):
            for k in order[i % 3 :] + order[: i % 3]:  # rotate the order: no loop always runs first
                times[k].append(runs[k]())
        return {k: statistics.median(v) for k, v in times.items()}


def compile_cost(steps: int) -> dict[str, float]:
    """First-step and steady per-step seconds of the trainer, eager and compiled."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("off", "on"):
            t0 = time.perf_counter()  # compilation runs worker processes: wall time here
            trainer = _trainer(folder, mode, 10**9)
            first = _trainer_block(trainer, 1, time.perf_counter) + (time.perf_counter() - t0)
            _trainer_block(trainer, 3)
            steady = statistics.median(_trainer_block(trainer, steps) for _ in range(3))
            out[f"{mode}_first"], out[f"{mode}_step"] = first, steady
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--blocks", type=int, default=7)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    r = overhead(a.blocks, a.block)
    lines = [
        "| loop | CPU ms / step (median of blocks) | / bare |",
        "| --- | --- | --- |",
        *[f"| {k} | {1e3 * v:.1f} | {v / r['bare']:.3f} |" for k, v in r.items()],
    ]
    if a.compile:
        c = compile_cost(a.block)
        gain = c["off_step"] - c["on_step"]
        extra = c["on_first"] - c["off_first"]
        pays = f"{extra / gain:.0f} steps" if gain > 0 else "never (compiled steps are not faster)"
        lines += [
            "",
            "| trainer | first step incl. set-up (s) | steady ms / step |",
            "| --- | --- | --- |",
            f"| eager | {c['off_first']:.1f} | {1e3 * c['off_step']:.1f} |",
            f"| compiled (inductor) | {c['on_first']:.1f} | {1e3 * c['on_step']:.1f} |",
            "",
            f"Compiling pays after {pays} (extra first-step time / per-step gain).",
        ]
    text = "\n".join(lines)
    print(text)
    if a.out is not None:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

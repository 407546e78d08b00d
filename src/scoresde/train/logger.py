"""The trainer's log: ``metrics.jsonl`` (one JSON line per record), TensorBoard when installed, and
the loss accumulated on the device between log lines (read once per interval, not per step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["LossWindow", "RunLogger"]


class RunLogger:
    """Appends records to ``metrics.jsonl`` and mirrors their numbers to TensorBoard.

    Args:
        metrics: the ``metrics.jsonl`` file.
        tensorboard: the TensorBoard folder (``None``, or tensorboard not installed: none).
        enabled: ``False`` on every process but the main one (then nothing is written).
    """

    def __init__(self, metrics: Path, tensorboard: Path | None, enabled: bool = True) -> None:
        self.metrics, self.enabled = metrics, enabled
        self._tb = None
        if enabled and tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard))
            except ImportError:
                self._tb = None

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` (it must hold ``"step"``)."""
        if not self.enabled:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def log_train(
        self,
        step: int,
        loss: float,
        grad_norm: float,
        lr: float,
        steps: int,
        seconds: float,
        batch: int,
        skipped: int,
    ) -> None:
        """A training record: the window's mean loss, the last gradient norm and learning rate, and
        the speed of the ``steps`` steps (``seconds`` of training, ``batch`` images each) so far."""
        speed = {"it_per_s": steps / seconds, "images_per_s": steps * batch / seconds}
        self.log(
            {"step": step, "loss": loss, "grad_norm": grad_norm, "lr": lr, **speed, "skipped_steps": skipped}
        )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class LossWindow:
    """Per-step losses kept on the device: a running sum for the log interval and the history.

    ``add`` never synchronises with the device; :meth:`mean` (at a log line) and :meth:`history`
    (at the end of the run) read the values.
    """

    def __init__(self) -> None:
        self._steps: list[Tensor] = []
        self._window: Tensor | None = None
        self._count = 0

    def add(self, loss: Tensor) -> None:
        loss = loss.detach().float()
        self._steps.append(loss)
        self._window = loss if self._window is None else self._window + loss
        self._count += 1

    def mean(self) -> Tensor:
        """The mean loss since the last call, as a 0-d tensor on the device (resets the window)."""
        assert self._window is not None, "no loss since the last log line"
        out = self._window / self._count
        self._window, self._count = None, 0
        return out

    def history(self) -> list[float]:
        """Every step's loss, in order."""
        return torch.stack(self._steps).tolist() if self._steps else []

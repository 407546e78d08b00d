"""Where and how a run computes: the torch device and the number of CPU threads.

Both sides use these: the trainer (:mod:`scoresde.parallel.process_group`) and every CLI command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["local_rank", "num_threads", "resolve_device"]


def local_rank() -> int:
    """This process's ``LOCAL_RANK`` under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` picks ``cuda:<local_rank>`` when CUDA is available, else the CPU.

    Raises:
        ValueError: CUDA is asked for but not available, or the name is not a device.
    """
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``0``: keep torch's setting), then restore it."""
    if n < 0:
        raise ValueError(f"threads must be >= 0, got {n}")
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

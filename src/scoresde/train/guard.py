"""The non-finite guard: skip steps whose loss or gradient is NaN/inf, stop after too many in a row."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from scoresde._core.checks import NonFiniteError

__all__ = ["NonFiniteGuard"]


class NonFiniteGuard:
    """Counts skipped steps; :meth:`check` raises after more than ``limit`` consecutive ones.

    A skipped step makes no optimiser or EMA update but advances the step counter, so the run
    stays reproducible and the weights stay finite.

    Args:
        limit: the consecutive non-finite steps tolerated (0: stop at the first).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.run = 0  # consecutive skipped steps
        self.skipped = 0  # all skipped steps

    def record(self, finite: bool) -> bool:
        """Count one step; returns ``finite`` (whether to apply its update)."""
        self.run = 0 if finite else self.run + 1
        self.skipped += not finite
        return finite

    def check(self, step: int, loss: Tensor, grad_norm: Tensor, newest: Path | None) -> None:
        """Raise :class:`NonFiniteError` once more than ``limit`` consecutive steps were skipped
        (the step's ``loss`` and ``grad_norm`` are read only then)."""
        if self.run > self.limit:
            last = f"last: loss {float(loss)}, gradient norm {float(grad_norm)}"
            raise NonFiniteError(
                f"training stopped at step {step}: {self.run} consecutive step(s) had a non-finite loss "
                f"or gradient ({last}); their updates were skipped (the weights stay finite); the newest "
                f"checkpoint is {newest}; lower lr, clip gradients (grad_clip) or check the data"
            )

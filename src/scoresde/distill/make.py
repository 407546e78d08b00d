"""The distillation run of a config's method (``scoresde distill --method``).

:func:`make_distiller` picks the run class: :class:`~scoresde.distill.run.Distiller` (consistency
distillation, Song et al. 2023) or :class:`~scoresde.distill.progressive_run.ProgressiveDistiller`
(progressive distillation, Salimans & Ho 2022).  It lives apart from both so that neither run
module imports the other.
"""

from __future__ import annotations

import torch

from scoresde.distill.progressive_run import ProgressiveDistiller
from scoresde.distill.run import DistillConfig, Distiller, DistillRun

__all__ = ["make_distiller"]


def make_distiller(config: DistillConfig, device: torch.device | str = "cpu") -> DistillRun:
    """The run of ``config.method``: a :class:`~scoresde.distill.run.Distiller` or a
    :class:`~scoresde.distill.progressive_run.ProgressiveDistiller`."""
    if config.method == "progressive":
        return ProgressiveDistiller(config, device)
    return Distiller(config, device)

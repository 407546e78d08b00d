"""Training: losses (objects with their parameters), the optimiser loop, EMA, the learning-rate
schedule, batches, the checkpointer, the logger, evaluation, compilation, and the image trainer
(a short loop over these parts).  The run folder (layout, lock, atomic writes, ``last``) is
:class:`scoresde.io.run_folder.RunFolder`.

Checkpoint I/O lives in :mod:`scoresde.io.checkpoint` (shared with inference);
``scoresde.train.checkpoint`` is kept as an alias of it for old imports.
"""

import sys as _sys

from scoresde.io import checkpoint
from scoresde.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

_sys.modules[__name__ + ".checkpoint"] = checkpoint  # old path: scoresde.train.checkpoint

from scoresde.train.ema import EMA  # noqa: E402
from scoresde.train.loop import FitResult, fit  # noqa: E402
from scoresde.train.trainer import TrainConfig, Trainer, TrainResult  # noqa: E402

__all__ = [
    "EMA",
    "Checkpoint",
    "FitResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

"""Training: losses (objects with their parameters), the optimiser loop, EMA, the learning-rate
schedule, batches, the checkpointer, the logger, evaluation, compilation, and the image trainer
(a short loop over these parts).  The run folder (layout, lock, atomic writes, ``last``) is
:class:`scoresde.io.run_folder.RunFolder`.

Checkpoint I/O lives in :mod:`scoresde.io.checkpoint` (shared with inference); its three
names are re-exported here for convenience.
"""

from scoresde.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scoresde.train.ema import EMA
from scoresde.train.loop import FitResult, fit
from scoresde.train.trainer import TrainConfig, Trainer, TrainResult

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

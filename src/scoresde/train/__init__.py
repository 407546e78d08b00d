"""Training: EMA, the minimal loop, the image trainer and DDP setup.

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

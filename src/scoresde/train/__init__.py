"""Training: EMA, the minimal loop, the image trainer, checkpoints and DDP setup."""

from scoresde.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
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

"""Training: EMA and the training loop."""

from scoresde.train.ema import EMA
from scoresde.train.loop import FitResult, fit

__all__ = ["EMA", "FitResult", "fit"]

"""Data sets: 2-D toys (and, with the training issue, images)."""

from scoresde.data.toy import TOY_DATASETS, toy_data

__all__ = ["TOY_DATASETS", "toy_data"]

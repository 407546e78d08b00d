"""Data sets: 2-D toys and images (digits, arrays, folders)."""

from scoresde.data.images import DataSplit, load_dataset, load_digits
from scoresde.data.toy import TOY_DATASETS, toy_data

__all__ = ["TOY_DATASETS", "DataSplit", "load_dataset", "load_digits", "toy_data"]

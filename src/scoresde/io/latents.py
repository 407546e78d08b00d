"""Latents files: the ``.npz`` that ``scoresde encode`` writes (arrays ``z`` and ``x``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_latents"]


def load_latents(path: str) -> Tensor:
    """The latents ``z: (N, *D)`` of an ``.npz`` file written by ``scoresde encode`` (array ``z``)."""
    p = Path(path)
    if not path:
        raise ValueError("latents: missing; give --latents FILE.npz (written by `scoresde encode`)")
    if not p.is_file():
        raise FileNotFoundError(f"latents file {path!r} does not exist (write one with `scoresde encode`)")
    with np.load(p) as f:
        if "z" not in f.files:
            raise ValueError(
                f"{path}: expected an array named 'z' (as `scoresde encode` writes), found {f.files}"
            )
        z = torch.as_tensor(f["z"]).float()
    if z.ndim == 0 or z.shape[0] == 0:
        raise ValueError(f"--latents: {path} holds no latents (array z has shape {tuple(z.shape)})")
    return z

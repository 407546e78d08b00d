"""Inpainting masks by name (a half, the centre, random pixels) or from a ``.npy`` file.

A mask is boolean, true where a pixel is known, of shape ``(1, H, W)`` (the same for every
channel) or ``(C, H, W)``; :func:`scoresde.guidance.inpaint` and the DPS / SMC inpainting
operators take it as it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MASKS", "make_mask"]

MASKS = ("center", "left", "right", "top", "bottom", "random")


def make_mask(kind: str, shape: tuple[int, int, int], fraction: float = 0.5, seed: int = 0) -> Tensor:
    """A boolean mask ``(1, H, W)`` or ``(C, H, W)`` (true = known) by name or from a ``.npy`` file.

    Args:
        kind: ``center``, ``left``, ``right``, ``top``, ``bottom``, ``random`` or a path to ``.npy``.
        shape: ``(C, H, W)`` of one image.
        fraction: the hidden fraction of ``random``.
        seed: seed of ``random``.
    """
    import numpy as np

    c, h, w = shape
    known = torch.ones(1, h, w, dtype=torch.bool)
    if kind == "center":
        known[:, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = False
    elif kind == "left":
        known[:, :, : w // 2] = False
    elif kind == "right":
        known[:, :, w // 2 :] = False
    elif kind == "top":
        known[:, : h // 2] = False
    elif kind == "bottom":
        known[:, h // 2 :] = False
    elif kind == "random":
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"--mask-fraction must lie in (0, 1), got {fraction}")
        known = torch.rand(1, h, w, generator=torch.Generator().manual_seed(seed)) >= fraction
    elif kind.endswith(".npy"):
        path = Path(kind)
        if not path.is_file():
            raise FileNotFoundError(f"mask file not found: {path}")
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as err:
            raise ValueError(f"{path}: not a readable .npy array ({err})") from None
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != (h, w) or a.shape[0] not in (1, c):
            raise ValueError(
                f"{path}: a mask must have shape ({h}, {w}), (1, {h}, {w}) or {shape}, got {a.shape}"
            )
        if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{path}: a mask must be boolean or hold only 0 and 1 (1 = known)")
        known = torch.as_tensor(a.astype(bool))
    else:
        raise ValueError(f"unknown mask {kind!r}: choose one of {', '.join(MASKS)} or give a .npy file")
    if bool(known.all()) or not bool(known.any()):
        raise ValueError(
            f"mask {kind!r} hides {'nothing' if bool(known.all()) else 'everything'}; choose another"
        )
    return known

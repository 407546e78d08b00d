"""Pictures of a model's outputs: image grids, scatter plots of 2-D points, rows of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde.data.model_range import from_model_range

__all__ = ["save_picture", "save_rows"]


def save_picture(x: Tensor, info: Any, path: Path, nrow: int | None = None, title: str = "") -> Path:
    """Model outputs ``x: (N, *item_shape)`` as a picture at ``path``.

    Images (``info.image_shape`` set) become a PNG grid, 2-D points a scatter plot (``nrow=-1``:
    a path, coloured by position along it), other vectors a line plot.  ``info`` is the model's
    :class:`~scoresde.io.info.CheckpointInfo` (image shape and data range).
    """
    img = info.image_shape
    x = x.detach().cpu().float()
    if img is not None:
        from scoresde.data.images import save_image_grid

        x = from_model_range(x.reshape(-1, *img), info)
        return save_image_grid(x.clamp(-1, 1), path, nrow=nrow, scale=max(1, 64 // img[-1]))
    from scoresde.viz.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if x.shape[1] == 2:
        if nrow == -1:  # a path: colour by position along it
            ax.scatter(x[:, 0], x[:, 1], s=14, c=np.arange(x.shape[0]), cmap="viridis")
        else:
            ax.scatter(x[:, 0], x[:, 1], s=6, alpha=0.7)
        ax.set_aspect("equal", adjustable="datalim")
    else:
        for row in x[: min(32, x.shape[0])]:
            ax.plot(row.numpy(), alpha=0.5)
    ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def save_rows(rows: list[Tensor], path: Path) -> Path:
    """Write equally long rows of images ``(N, C, H, W)`` as one PNG (row ``i`` = ``rows[i]``)."""
    from scoresde.data.images import save_image_grid

    channels = max(r.shape[1] for r in rows)
    rows = [r.expand(-1, channels, -1, -1) if r.shape[1] != channels else r for r in rows]
    scale = min(8, max(1, 256 // rows[0].shape[-1]))
    return save_image_grid(torch.cat(rows), path, nrow=rows[0].shape[0], scale=scale)

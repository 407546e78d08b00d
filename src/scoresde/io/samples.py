"""Writing drawn samples: an ``.npz`` array file or a folder of numbered PNGs, and a PNG grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["SAMPLE_FORMATS", "write_samples"]

SAMPLE_FORMATS = ("npz", "png")
"""``npz``: one array file; ``png``: a folder of numbered PNGs (for external FID tools)."""


def write_samples(
    x: Tensor,
    info: Any,
    out: Path,
    tag: str,
    labels: Tensor | None = None,
    format: str = "npz",
    nrow: int | None = None,
) -> list[Path]:
    """Write samples ``x: (N, *item_shape)`` of the model described by ``info`` into ``out``.

    For an image model: a PNG grid ``samples_<tag>.png`` (``nrow`` images per row), then either
    ``samples_<tag>.npz`` (``x`` in the model's space, ``images`` as uint8 ``(N, H, W, C)``,
    ``y`` = ``labels`` when given) or, with ``format="png"``, the folder ``samples_<tag>/`` of
    ``000000.png``, ...; a vector model writes the ``.npz`` only.

    Returns:
        The paths written, in order.

    Raises:
        ValueError: ``format="png"`` for a model that makes vectors, or an unknown format.
    """
    from scoresde.data.images import save_image_folder, save_image_grid, to_uint8
    from scoresde.data.model_range import to_images

    if format not in SAMPLE_FORMATS:
        raise ValueError(f"unknown sample format {format!r}; choose one of {', '.join(SAMPLE_FORMATS)}")
    arrays = {"x": x.numpy()}
    if labels is not None:
        arrays["y"] = labels.numpy()
    images = to_images(x, info)
    written = []
    if images is not None:
        arrays["images"] = to_uint8(images).permute(0, 2, 3, 1).numpy()
        scale = min(8, max(1, 256 // images.shape[-1]))
        written.append(save_image_grid(images, out / f"samples_{tag}.png", nrow=nrow, scale=scale))
    if format == "png":
        if images is None:
            raise ValueError("--format png needs an image model; this one makes vectors (use --format npz)")
        folder = out / f"samples_{tag}"
        save_image_folder(images, folder, digits=max(6, len(str(x.shape[0] - 1))))
        written.append(folder)
    else:
        np.savez(out / f"samples_{tag}.npz", **arrays)  # type: ignore[arg-type]  # (a **dict could fill allow_pickle)
        written.append(out / f"samples_{tag}.npz")
    return written

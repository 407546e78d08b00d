"""Images between ``[-1, 1]`` (the library's image range) and a model's own data range.

A model records its data space as ``info.data_range = (low, high)``
(:class:`scoresde.io.info.CheckpointInfo`): ``(-1, 1)`` for scoresde and diffusers models,
``(0, 1)`` for score_sde models trained with ``data.centered = false``.  The maps are affine.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

__all__ = ["from_model_range", "to_images", "to_model_range"]


def to_model_range(x: Tensor, info: Any) -> Tensor:
    """Images in ``[-1, 1]`` mapped affinely into the model's data range ``info.data_range``."""
    lo, hi = info.data_range
    return x if (lo, hi) == (-1.0, 1.0) else lo + (x + 1.0) * (0.5 * (hi - lo))


def from_model_range(x: Tensor, info: Any) -> Tensor:
    """Images in the model's data range mapped affinely to ``[-1, 1]`` (for writing pictures)."""
    lo, hi = info.data_range
    return x if (lo, hi) == (-1.0, 1.0) else (x - lo) * (2.0 / (hi - lo)) - 1.0


def to_images(x: Tensor, info: Any) -> Tensor | None:
    """Model outputs ``(B, *item_shape)`` as images ``(B, C, H, W)`` in ``[-1, 1]``, or ``None``
    if they are not images (``info.image_shape`` says the images' shape)."""
    shape = info.image_shape
    if x.ndim == 2 and shape is not None and math.prod(shape) == x.shape[1]:
        x = x.reshape(-1, *shape)
    return from_model_range(x, info) if x.ndim == 4 and x.shape[1] in (1, 3) else None

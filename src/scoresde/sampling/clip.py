"""``clip_denoised``: a model's predicted x0 kept in its data range while sampling, by name.

The run option ``clip_denoised`` (``scoresde sample``, ``eval``, ``inpaint``, ``colorize``):
``"none"``, ``"clip"`` / ``"dynamic"`` (:class:`~scoresde.models.clipping.ClipDenoised`: plain
clipping, or the dynamic thresholding of Saharia et al. 2022, both to ``[-1, 1]``), or
``"auto"``: ``"clip"`` for image models whose data range is ``[-1, 1]``, ``"none"`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from scoresde.models.base import ScoreFunction
from scoresde.models.clipping import CLIP_MODES, ClipDenoised

__all__ = ["CLIP_CHOICES", "clip_denoised"]

CLIP_CHOICES = ("none", *CLIP_MODES, "auto")
"""The values of ``clip_denoised``."""


def clip_denoised(
    model: ScoreFunction, mode: str, data_range: Sequence[float] = (-1.0, 1.0), images: bool = False
) -> ScoreFunction:
    """``model`` wrapped in :class:`~scoresde.models.clipping.ClipDenoised` unless ``mode`` is none.

    Args:
        model: the score model.
        mode: one of :data:`CLIP_CHOICES`.
        data_range: the model's data space ``(low, high)`` (a checkpoint's
            :attr:`~scoresde.io.info.CheckpointInfo.data_range`).
        images: whether the model's data are images (``"auto"`` clips only those).

    Raises:
        ValueError: an unknown mode, or ``"clip"`` / ``"dynamic"`` for a model whose data range is
            not ``[-1, 1]`` (both keep x0 in ``[-1, 1]``, which would cut off its data).
    """
    if mode not in CLIP_CHOICES:
        raise ValueError(f"unknown clip_denoised {mode!r}; choose one of {list(CLIP_CHOICES)}")
    unit = tuple(float(v) for v in data_range) == (-1.0, 1.0)
    if mode == "auto":
        mode = "clip" if images and unit else "none"
    if mode == "none":
        return model
    if not unit:
        raise ValueError(
            f"clip_denoised={mode!r} keeps the predicted x0 in [-1, 1], but this model's data range is "
            f"{tuple(float(v) for v in data_range)}: its data would be cut off; use 'none' (or 'auto')"
        )
    return ClipDenoised(model, mode=mode)

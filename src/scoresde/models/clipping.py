"""Clipping and dynamic thresholding of the predicted clean data ``x0`` (for every sampler).

A network's denoiser ``x0(x_t, t)`` can leave the data range, most of all at large ``t`` and
under strong guidance; the samplers then drift towards saturated, flat images.  Clipping the
prediction to the data range ``[-b, b]`` (Ho et al. 2020's code clips ``x0`` in DDPM's
ancestral step) or *dynamic thresholding* (Saharia et al. 2022, "Photorealistic Text-to-Image
Diffusion Models with Deep Language Understanding", Sec. 2.3) keeps it inside:

    s = max(quantile_p(|x0|), b),   x0 <- b * clip(x0, -s, s) / s,

per sample, with ``p`` a high percentile (Saharia et al. use 99.5%).  When ``s = b`` this is
plain clipping; otherwise saturated pixels are pushed inwards instead of piling up at ``+-b``.

:class:`ClipDenoised` applies either to any :class:`~scoresde.models.ScoreFunction`.  Its native
prediction is ``x0``; the score, epsilon, v and velocity that samplers ask for are derived from
the clipped ``x0`` through the SDE's marginal, so every sampler (ODE, SDE, exponential
integrators, predictor-corrector) sees the same, consistent, clipped model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction

__all__ = ["CLIP_MODES", "ClipDenoised", "dynamic_threshold"]

CLIP_MODES = ("clip", "dynamic")


def dynamic_threshold(x0: Tensor, percentile: float = 0.995, bound: float = 1.0) -> Tensor:
    """Dynamic thresholding of ``x0: (B, *D)`` (Saharia et al. 2022, Sec. 2.3), per sample.

    ``s = max(quantile_p(|x0|), bound)`` over each sample's elements, then
    ``bound * clip(x0, -s, s) / s``.  A sample already inside ``[-bound, bound]`` is unchanged.
    """
    if not (0.0 < percentile <= 1.0):
        raise ValueError(f"percentile must lie in (0, 1], got {percentile}")
    flat = x0.reshape(x0.shape[0], -1).abs()
    s = torch.quantile(flat.float(), percentile, dim=1).to(x0.dtype).clamp_min(bound)
    s = append_dims(s, x0.ndim)
    return torch.minimum(torch.maximum(x0, -s), s) * (bound / s)


class ClipDenoised(ScoreFunction):
    """A score model whose denoiser ``x0`` is clipped or dynamically thresholded.

    Args:
        model: any score function (a network wrapper, guidance wrapper or exact oracle).
        mode: ``"clip"`` (to ``[-bound, bound]``) or ``"dynamic"`` (Saharia et al. 2022).
        bound: the data range ``[-bound, bound]`` (1 for the library's images).
        percentile: the quantile ``p`` of ``|x0|`` for ``"dynamic"``.
    """

    def __init__(
        self, model: ScoreFunction, mode: str = "clip", bound: float = 1.0, percentile: float = 0.995
    ) -> None:
        super().__init__(model.sde, "x0")
        if mode not in CLIP_MODES:
            raise ValueError(f"unknown clipping mode {mode!r}; choose one of {list(CLIP_MODES)}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        if not (0.0 < percentile <= 1.0):
            raise ValueError(f"percentile must lie in (0, 1], got {percentile}")
        self.model = model
        self.mode = mode
        self.bound = float(bound)
        self.percentile = float(percentile)
        self.nfe_per_call = model.nfe_per_call

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        x0 = self.model.denoise(x, t, y)
        if self.mode == "clip":
            return x0.clamp(-self.bound, self.bound)
        return dynamic_threshold(x0, self.percentile, self.bound)

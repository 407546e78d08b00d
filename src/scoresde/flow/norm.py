"""Error norms of adaptive steps: how a batch's local error estimates become step decisions.

:func:`per_sample_rms` gives one number per sample (the per-sample integrator of
:mod:`scoresde.flow.pf_ode` accepts or rejects each sample's step by it); :func:`per_sample_norm`
reduces it to the worst sample, as torchdiffeq's ``norm`` option expects (shared steps, but
every sample within tolerance, whatever else is in the batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["error_scale", "per_sample_norm", "per_sample_rms"]


def error_scale(
    y: Sequence[Tensor], y_new: Sequence[Tensor] | None, rtol: Sequence[float], atol: Sequence[float]
) -> list[Tensor]:
    """``atol + rtol * max(|y|, |y_new|)`` per state component (Hairer et al., Eq. II.4.10)."""
    out = []
    for j, yj in enumerate(y):
        mag = yj.abs() if y_new is None else torch.maximum(yj.abs(), y_new[j].abs())
        out.append(atol[j] + rtol[j] * mag)
    return out


def per_sample_rms(parts: Sequence[Tensor]) -> Tensor:
    """Per-sample RMS of the components' RMS: ``(B,)``.

    Each component (e.g. ``x: (B, *D)`` and the log-density ``(B,)``) gets the same weight
    whatever its number of entries, so the log-density's error is not diluted in high dimension.
    """
    per = torch.stack([p.reshape(p.shape[0], -1).pow(2).mean(dim=1) for p in parts], dim=0)
    return per.mean(dim=0).sqrt()


def per_sample_norm(state: tuple[Tensor, ...]) -> Tensor:
    """Error norm for batched states: RMS over each sample's entries, maximum over samples.

    Args:
        state: tuple of tensors ``(B, ...)`` (scaled error estimates of each state component).

    Returns:
        A scalar: ``max_b max_j rms(state[j][b])``.
    """
    per = [s.reshape(s.shape[0], -1).pow(2).mean(dim=1).sqrt() for s in state]
    return torch.stack(per, dim=0).amax()

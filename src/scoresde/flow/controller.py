"""Step-size control of adaptive Runge-Kutta steps, per sample (Hairer, Norsett & Wanner).

The controller decides the first step and, after each attempt, the factor by which the step
changes: Gustafsson's PI controller on acceptance, the I-part alone on rejection, as in
Hairer's DOPRI5 code.  It knows nothing of the tableau (:mod:`scoresde.flow.tableau`) except
its order, nor of how errors are measured (:mod:`scoresde.flow.norm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PIController"]


@dataclass(frozen=True)
class PIController:
    """``h_new = h * safety * err_old^beta / err^(1/order - 0.75 beta)``, clipped to
    ``[min_factor, max_factor]`` (``beta = 0``: the classical ``safety * err^(-1/order)``).

    Defaults are Hairer's DOPRI5 constants.  No growth right after a rejection.
    """

    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0
    beta: float = 0.04

    def initial_step(
        self,
        f: Callable[[Tensor], tuple[Tensor, ...]],
        y: tuple[Tensor, ...],
        k1: tuple[Tensor, ...],
        norm: Callable[[tuple[Tensor, ...]], Tensor],
        span: float,
        order: int,
    ) -> Tensor:
        """The first step size per sample (Hairer et al., Sec. II.4, "Starting step size").

        Args:
            f: ``h -> `` the vector field at ``(u0 + direction h, y + direction h k1)``, ``h: (B,)``.
            y: the initial state.
            k1: the vector field at the initial state.
            norm: the scaled per-sample error norm (``(B,)``) of a state-like tuple.
            span: ``|u1 - u0|``; no step is longer.
            order: the order of the method.
        """
        d0, d1 = norm(y), norm(k1)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
        h0 = torch.minimum(h0, torch.full_like(h0, span))
        f1 = f(h0)
        d2 = norm(tuple(a - c for a, c in zip(f1, k1, strict=True))) / h0
        dmax = torch.maximum(d1, d2)
        h1 = torch.where(
            dmax <= 1e-15, torch.maximum(h0 * 1e-3, torch.full_like(h0, 1e-6)), (0.01 / dmax).pow(1 / order)
        )
        return torch.minimum(torch.minimum(100 * h0, h1), torch.full_like(h0, span))

    def factor(
        self,
        err: Tensor,
        accept: Tensor,
        finite: Tensor,
        err_old: Tensor,
        last_rejected: Tensor,
        order: int,
    ) -> Tensor:
        """The factor of the next step size, per sample.

        Args:
            err: this attempt's scaled error norm ``(B,)`` (accepted when ``<= 1``).
            accept: which samples' steps were accepted.
            finite: which samples' attempts were finite (a non-finite one shrinks the most).
            err_old: the error of each sample's last accepted step (the PI memory).
            last_rejected: whether each sample's previous attempt was rejected.
            order: the order of the error estimate's leading term (5 for DOPRI5's propagated solution).
        """
        fac11 = err.clamp_min(1e-10).pow(1 / order - 0.75 * self.beta)
        grow = (self.safety / (fac11 * err_old.pow(-self.beta))).clamp(self.min_factor, self.max_factor)
        shrink = (self.safety / fac11).clamp(self.min_factor, 1.0)
        factor = torch.where(accept, grow, torch.where(finite, shrink, torch.full_like(err, self.min_factor)))
        return torch.where(last_rejected & accept, factor.clamp_max(1.0), factor)

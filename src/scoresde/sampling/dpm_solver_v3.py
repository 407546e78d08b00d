"""DPM-Solver-v3 (Zheng, Lu, Bao, Zhu, NeurIPS 2023): an ODE solver with empirical model statistics.

With ``alpha = s(t)``, ``lambda = log(alpha / sigma)`` and the noise prediction ``eps``, the
probability-flow ODE reads ``dx/dlambda = (dlog alpha/dlambda) x - sigma eps`` (Zheng et al.
2023, Eq. 3).  DPM-Solver-v3 rewrites it with three per-dimension functions of ``lambda``, the
*empirical model statistics* (EMS) ``l, s, b`` (Sec. 3.1, Eq. 4-7):

    N(x, lambda) = sigma eps(x, lambda) - l x,        f = N / alpha,
    dx/dlambda = (dlog alpha/dlambda - l) x - alpha f,
    g(x, lambda) = e^{-int_{lambda_s}^{lambda} s} f - int_{lambda_s}^{lambda} e^{-int_{lambda_s}^r s} b_r dr,

so that the exact solution from ``lambda_s`` to ``lambda_t`` is (Eq. 7)

    x_t = (alpha_t / alpha_s) e^{-int l} x_s
          - alpha_t e^{-int l} int e^{int_{lambda_s}^{lambda} (l + s)} (g(lambda) + B~(lambda)) dlambda,

with ``B~(lambda) = int_{lambda_s}^{lambda} e^{-int_{lambda_s}^r s} b_r dr``; only ``g`` is
approximated, by a Taylor expansion at ``lambda_s`` whose derivatives come from past
evaluations (Sec. 3.3).  The statistics are chosen so that ``g`` changes as little as possible:
``l`` minimises ``E ||grad_x N||_F^2`` (Eq. 6), i.e. ``l = E[diag(sigma grad_x eps)]``, and
``(s, b)`` minimise ``E ||f^(1) - s f - b||^2`` with ``f^(1) = df/dlambda`` along the ODE
(Eq. 8), a per-dimension linear regression.  :func:`compute_ems` estimates them from the model
itself on pilot trajectories (:mod:`scoresde.sampling.ems`, a tuner above
:func:`scoresde.sample`, which it calls).  ``l = 1, s = b = 0`` gives ``f = -x0`` and DPM-Solver++ (data
prediction, the paper's reduction); ``l = 0, s = -1, b = 0`` makes ``g`` proportional to ``eps``
(``f = e^{-lambda} eps``), which is DPM-Solver (noise prediction).

The EMS are stored on a uniform ``lambda`` grid and interpolated linearly; the integrals of
Eq. 7 are computed for whatever grid the sampler is given (no snapping of the steps to the EMS
grid), by the trapezoidal rule on the EMS knots refined to spacing :data:`QUAD_STEP`, with one
Richardson extrapolation (error ``O(QUAD_STEP^4)``), in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.dpm_solver import _check_flag, multistep_order
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import grid_schedule
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["EMS", "QUAD_STEP", "dpm_solver_v3"]

QUAD_STEP = 0.02
"""Largest spacing in ``lambda`` of the quadrature nodes for the coefficients of Eq. 7."""

_MAX_TAYLOR = 4  # Taylor terms A_0..A_3: order-3 predictor, order-4 pseudo corrector.


@dataclass(frozen=True)
class EMS:
    """Empirical model statistics ``l, s, b`` on a grid of ``lambda`` (Zheng et al. 2023, Sec. 3.1-3.2).

    Compute them once per model with :func:`compute_ems` and pass them to every
    ``dpm_solver_v3`` call (``ss.sample(..., method="dpm_solver_v3", ems=ems)``); they depend on
    the model and the SDE, not on the step count or grid.  :meth:`state_dict` /
    :meth:`from_state_dict` store them with a checkpoint.

    Attributes:
        lam: increasing ``lambda`` knots ``(K,)``, float64.
        l, s, b: the statistics at the knots ``(K, *S)``, float64, with ``S`` broadcastable
            to the sample shape ``D`` (``S = D`` from :func:`compute_ems`; ``(1,)`` for scalars).
        pilot: number of pilot samples they were estimated from (0: set by hand).
    """

    lam: Tensor
    l: Tensor
    s: Tensor
    b: Tensor
    pilot: int = 0

    def __post_init__(self) -> None:
        lam = self.lam
        if not torch.is_tensor(lam) or lam.ndim != 1 or lam.numel() < 2:
            raise ValueError("EMS.lam must be a 1-D tensor of at least 2 knots")
        if not bool(torch.isfinite(lam).all()) or not bool((lam[1:] > lam[:-1]).all()):
            raise ValueError("EMS.lam must be finite and strictly increasing")
        for name in ("l", "s", "b"):
            v = getattr(self, name)
            if not torch.is_tensor(v) or v.ndim < 2 or v.shape[0] != lam.numel():
                raise ValueError(
                    f"EMS.{name} must have shape (K, *S) with K = {lam.numel()} knots, got "
                    f"{tuple(v.shape) if torch.is_tensor(v) else type(v).__name__}"
                )
            if v.shape[1:] != self.l.shape[1:]:
                raise ValueError(f"EMS.{name} has shape {tuple(v.shape)}, l has {tuple(self.l.shape)}")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"EMS.{name} holds NaN or infinite values")

    @property
    def stat_shape(self) -> torch.Size:
        """``S``: the shape of the statistics at one knot."""
        return self.l.shape[1:]

    @classmethod
    def constant(
        cls,
        lam_min: float,
        lam_max: float,
        l: float,
        s: float = 0.0,
        shape: tuple[int, ...] = (1,),
        knots: int = 2,
    ) -> EMS:
        """Constant statistics ``l``, ``s`` and ``b = 0`` on ``[lam_min, lam_max]``.

        ``l = 1, s = 0`` is DPM-Solver++ (data prediction; Zheng et al. 2023, Sec. 3.1) and
        ``l = 0, s = -1`` DPM-Solver (noise prediction).
        """
        lam = torch.linspace(lam_min, lam_max, knots, dtype=torch.float64)
        full = torch.full((knots, *shape), float(l), dtype=torch.float64)
        return cls(lam, full, torch.full_like(full, float(s)), torch.zeros_like(full))

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "l": self.l, "s": self.s, "b": self.b, "pilot": self.pilot}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EMS:
        return cls(
            lam=state["lam"].to(torch.float64),
            l=state["l"].to(torch.float64),
            s=state["s"].to(torch.float64),
            b=state["b"].to(torch.float64),
            pilot=int(state.get("pilot", 0)),
        )

    def interpolate(self, name: str, lam: Tensor) -> Tensor:
        """Statistic ``name`` at ``lam: (Q,)`` by linear interpolation between knots ``(Q, *S)``."""
        knots, vals = self.lam, getattr(self, name)
        idx = (torch.searchsorted(knots, lam, right=True) - 1).clamp(0, knots.numel() - 2)
        w = (lam - knots[idx]) / (knots[idx + 1] - knots[idx])
        w = w.reshape(-1, *([1] * len(self.stat_shape)))
        return vals[idx] + w * (vals[idx + 1] - vals[idx])


# ---------------------------------------------------------------------------------------------- #
# The coefficients of Eq. 7 on a sampler grid.
# ---------------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Tables:
    """Per-step integrals of Eq. 7, float64, each ``(N, ...)`` with ``N`` steps.

    ``dL[i] = int l``, ``dS[i] = int s`` over step ``i``; ``A[i, k] = int e^{E} u^k / k!`` with
    ``E = int_{lambda_i}^{lambda} (l + s)`` and ``u = lambda - lambda_i``; ``C[i] = int e^{E} B~``;
    ``Bt[i] = B~(lambda_{i+1})``, all over ``[lambda_i, lambda_{i+1}]``.
    """

    dL: Tensor
    dS: Tensor
    A: Tensor
    C: Tensor
    Bt: Tensor


def _cumtrapz(y: Tensor, x: Tensor) -> Tensor:
    """Cumulative trapezoidal integral of ``y: (Q, ...)`` over nodes ``x: (Q,)``, starting at 0."""
    dx = (x[1:] - x[:-1]).reshape(-1, *([1] * (y.ndim - 1)))
    inc = 0.5 * dx * (y[1:] + y[:-1])
    return torch.cat([torch.zeros_like(y[:1]), torch.cumsum(inc, 0)])


def _nodes(ems: EMS, a: float, c: float, refine: int) -> Tensor:
    """Quadrature nodes on ``[a, c]``: the EMS knots inside, each piece cut to ``<= QUAD_STEP / refine``."""
    inner = ems.lam[(ems.lam > a) & (ems.lam < c)].tolist()
    pts = [a, *inner, c]
    out = []
    for p, q in pairwise(pts):
        n = max(1, math.ceil((q - p) / QUAD_STEP)) * refine
        out.append(torch.linspace(p, q, n + 1, dtype=torch.float64)[:-1])
    out.append(torch.tensor([c], dtype=torch.float64))
    return torch.cat(out)


def _tables_at(ems: EMS, lam: list[float], refine: int) -> _Tables:
    cols: dict[str, list[Tensor]] = {k: [] for k in ("dL", "dS", "A", "C", "Bt")}
    for a, c in pairwise(lam):
        x = _nodes(ems, a, c, refine)
        l, s, b = (ems.interpolate(k, x) for k in ("l", "s", "b"))
        dL, dS = _cumtrapz(l, x), _cumtrapz(s, x)  # exact: l, s are linear between nodes
        bt = _cumtrapz(torch.exp(-dS) * b, x)
        p = torch.exp(dL + dS)
        u = (x - a).reshape(-1, *([1] * len(ems.stat_shape)))
        cols["A"].append(
            torch.stack([_cumtrapz(p * u**k / math.factorial(k), x)[-1] for k in range(_MAX_TAYLOR)])
        )
        cols["C"].append(_cumtrapz(p * bt, x)[-1])
        cols["dL"].append(dL[-1])
        cols["dS"].append(dS[-1])
        cols["Bt"].append(bt[-1])
    return _Tables(**{k: torch.stack(v) for k, v in cols.items()})


def ems_tables(ems: EMS, lam: list[float]) -> _Tables:
    """The integrals of Eq. 7 for the steps between the increasing ``lam``, Richardson-extrapolated."""
    lo, hi = float(ems.lam[0]), float(ems.lam[-1])
    tol = 1e-9 * max(1.0, hi - lo)
    if lam[0] < lo - tol or lam[-1] > hi + tol:
        raise ValueError(
            f"the EMS cover lambda in [{lo:.4g}, {hi:.4g}] but the grid spans [{lam[0]:.4g}, "
            f"{lam[-1]:.4g}]; compute them with compute_ems(t_start=..., t_end=...) covering the grid"
        )
    coarse, fine = _tables_at(ems, lam, 1), _tables_at(ems, lam, 2)
    rich = lambda name: (4 * getattr(fine, name) - getattr(coarse, name)) / 3  # noqa: E731
    return _Tables(dL=fine.dL, dS=fine.dS, A=rich("A"), C=rich("C"), Bt=rich("Bt"))


# ---------------------------------------------------------------------------------------------- #
# The solver (Zheng et al. 2023, Sec. 3.3-3.4, Alg. 1-2).
# ---------------------------------------------------------------------------------------------- #
def _derivatives(lams: list[float], gs: list[Tensor], pseudo: bool) -> list[Tensor]:
    """``g^(k)(lams[0])`` for ``k = 1..n`` from ``n + 1`` values (Zheng et al. 2023, Sec. 3.3-3.4).

    Full order: the Taylor coefficients at ``lams[0]`` of the polynomial through all points
    (a Vandermonde solve).  Pseudo-order: ``k! g[lams[0], ..., lams[k]]``, the ``k``-th divided
    difference over the first ``k + 1`` points only, which drops the correction terms of the
    higher differences (the paper's pseudo-order solver, for very few steps).
    """
    n = len(gs) - 1
    if pseudo:
        table = list(gs)
        out = []
        for k in range(1, n + 1):
            table = [(table[j] - table[j + 1]) / (lams[j] - lams[j + k]) for j in range(n + 1 - k)]
            out.append(math.factorial(k) * table[0])
        return out
    d = torch.tensor([lams[m] - lams[0] for m in range(1, n + 1)], dtype=torch.float64)
    vander = d[:, None] ** torch.arange(1, n + 1, dtype=torch.float64)[None, :]
    w = torch.linalg.inv(vander).tolist()  # coefficient k-1 = sum_m w[k-1][m] (g_m - g_0)
    diffs = [g - gs[0] for g in gs[1:]]
    return [math.factorial(k) * sum(w[k - 1][m] * diffs[m] for m in range(n)) for k in range(1, n + 1)]


class _Stepper:
    """Eq. 7 on the grid: turns ``f`` into ``g`` about an anchor and takes the Taylor step."""

    def __init__(self, ems: EMS, sch: Any, n_fin: int, x: Tensor) -> None:
        lam = sch.lam[: n_fin + 1]
        self.lam = lam
        self.alpha = sch.s
        tab = ems_tables(ems, lam)
        cast = lambda v: v.to(dtype=x.dtype, device=x.device)  # noqa: E731
        self.S = torch.cat([torch.zeros_like(tab.dS[:1]), torch.cumsum(tab.dS, 0)])  # float64
        self.Bt = tab.Bt
        self.eL = cast(torch.exp(-tab.dL))
        self.A = cast(tab.A)
        self.C = cast(tab.C)
        self.l = cast(ems.interpolate("l", torch.tensor(lam, dtype=torch.float64)))

    def f(self, j: int, x: Tensor, eps: Tensor, sigma: float) -> Tensor:
        """``f = (sigma eps - l x) / alpha`` at grid point ``j``."""
        return (sigma * eps - self.l[j] * x) / self.alpha[j]

    def g(self, a: int, j: int, f_j: Tensor) -> Tensor:
        """``g`` about anchor ``a`` of ``f_j`` at grid point ``j``: ``e^{-(S_j - S_a)} f_j - B~_a(lambda_j)``.

        ``j`` is ``a``, ``a + 1`` (the corrector's new point) or earlier; for ``j < a``,
        ``B~_a(lambda_j) = -sum_{m=j}^{a-1} e^{S_a - S_m} B~_m(lambda_{m+1})``.
        """
        if j == a:
            return f_j
        past = (torch.exp(self.S[a] - self.S[m]) * self.Bt[m] for m in range(j, a))
        bt = self.Bt[a] if j > a else -sum(past, torch.zeros_like(self.Bt[a]))
        scale = torch.exp(self.S[a] - self.S[j])
        return scale.to(f_j) * f_j - bt.to(f_j)

    def step(self, a: int, x_a: Tensor, pts: list[tuple[int, Tensor]], pseudo: bool) -> Tensor:
        """``x`` at grid point ``a + 1`` from ``x_a``, ``g`` through ``[(j, f_j)]`` (anchor first)."""
        gs = [self.g(a, j, f_j) for j, f_j in pts]
        ders = _derivatives([self.lam[j] for j, _ in pts], gs, pseudo) if len(pts) > 1 else []
        inner = self.A[a, 0] * gs[0] + self.C[a]
        for k, d in enumerate(ders, start=1):
            inner = inner + self.A[a, k] * d
        a_t = self.alpha[a + 1]
        return self.eL[a] * ((a_t / self.alpha[a]) * x_a - a_t * inner)


def dpm_solver_v3(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    ems: EMS | None = None,
    order: int = 3,
    corrector: bool = True,
    predictor_pseudo: bool = False,
    corrector_pseudo: bool = False,
    lower_order_final: bool = True,
) -> Tensor:
    """Multistep DPM-Solver-v3 with EMS ``ems`` (Zheng et al. 2023, Alg. 1-2), 1 NFE per step.

    Predictor (Sec. 3.3): from ``x_i``, ``g`` is expanded at ``lambda_i`` to order ``p - 1``
    with derivatives from the ``p`` latest evaluations ``f_i, f_{i-1}, ...`` (converted to
    ``g`` about ``lambda_i``), and the step is Eq. 7 with the exact integrals of each Taylor term.
    Corrector (Sec. 3.4): once ``f_{i+1}`` is evaluated at the predicted ``x_{i+1}`` (the
    evaluation the next step needs anyway), the step from ``x_i`` is redone with ``f_{i+1}`` in
    place of the oldest point (same order ``p``; ``p + 1`` points with ``corrector_pseudo``);
    the stored ``f_{i+1}`` is kept, as the paper keeps ``N``.  The last step is not corrected.
    A step to ``sigma = 0`` is a plain denoising step.  Warm-up and ``lower_order_final`` as in
    :func:`~scoresde.sampling.dpm_solver.multistep_order`.  Order ``order`` (pseudo variants:
    see :func:`_derivatives`; they trade order for stability at very few steps).

    Args:
        ems: the statistics from :func:`compute_ems` (required); they must cover the grid.
        order: predictor order in ``{1, 2, 3}``.
        corrector: use the corrector.
        predictor_pseudo, corrector_pseudo: pseudo-order derivative estimates (Sec. 3.4).
        lower_order_final: lower the order over the last steps of short grids.
    """
    if not isinstance(ems, EMS):
        raise TypeError(
            "dpm_solver_v3 needs ems= an EMS from scoresde.sampling.dpm_solver_v3.compute_ems, got "
            f"{type(ems).__name__}"
        )
    if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
        raise ValueError(f"dpm_solver_v3 order must be 1, 2 or 3, got {order!r}")
    for name, value in (
        ("corrector", corrector),
        ("predictor_pseudo", predictor_pseudo),
        ("corrector_pseudo", corrector_pseudo),
        ("lower_order_final", lower_order_final),
    ):
        _check_flag(name, value)
    d = x.shape[1:]
    sd = ems.stat_shape
    if len(sd) > len(d) or any(a not in (1, b) for a, b in zip(reversed(sd), reversed(d))):
        raise ValueError(
            f"the EMS have shape {tuple(sd)}, which does not broadcast to samples of shape {tuple(d)}"
        )
    sch = grid_schedule(sde, ts)
    n = sch.steps
    n_fin = n if math.isfinite(sch.lam[-1]) else n - 1  # steps in lambda; a last one to sigma = 0 is apart
    tx = ts.to(x.dtype)
    st = _Stepper(ems, sch, n_fin, x) if n_fin > 0 else None
    fs: dict[int, Tensor] = {}
    p_prev, x_prev = 0, x
    for i in range(n):
        if i == n_fin:  # the step to sigma = 0
            x = model.denoise(x, tx[i], y)
        else:
            assert st is not None  # a step in lambda (i < n_fin) means n_fin > 0
            fs[i] = st.f(i, x, model.eps(x, tx[i], y), sch.sigma[i])
            # Corrector for x_i (its f_i is already in hand).
            pc = p_prev + (1 if corrector_pseudo else 0)
            if corrector and i > 0 and pc > 1:
                pts = [(i - 1, fs[i - 1]), (i, fs[i])] + [
                    (i - 1 - m, fs[i - 1 - m]) for m in range(1, pc - 1)
                ]
                x = st.step(i - 1, x_prev, pts, corrector_pseudo)
            p = multistep_order(i, n_fin, order, 1.0, lower_order_final)
            pts = [(i - m, fs[i - m]) for m in range(p)]
            x_prev = x
            x = st.step(i, x, pts, predictor_pseudo)
            p_prev = p
            fs.pop(i - 3, None)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x

"""UniPC (Zhao et al. 2023): a unified predictor-corrector for the probability-flow ODE.

Data-prediction form with ``B(h) = 1 - e^{-h}`` (the paper's ``B_2(h)``, "bh2", written for
``x0`` prediction; the default) or ``B(h) = h`` (``B_1(h)``, "bh1", which the paper recommends for
unconditional sampling at very few steps).  The predictor UniP-p extrapolates the data
prediction from the last ``p`` evaluations; the corrector UniC re-solves the step with the
evaluation at the predicted point included.  That evaluation is the one the next step needs
anyway, so the corrector costs no extra NFE (Zhao et al. 2023, Sec. 3.1-3.2, Alg. 1-2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from torch import Tensor

from scoresde._core.tensors import lincomb
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import fixed_times
from scoresde.sampling.dpm_solver import multistep_order, x0_at
from scoresde.sampling.noise import NoiseSource
from scoresde.sampling.schedule import grid_schedule, phi
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = ["UNIPC_VARIANTS", "unipc", "unipc_bh1", "unipc_weights"]

UNIPC_VARIANTS = ("bh1", "bh2")


def b_of_h(h: float, variant: str) -> float:
    """``B(h)`` of UniPC (Zhao et al. 2023, Sec. 3.3): ``h`` for bh1, ``1 - e^{-h}`` for bh2."""
    return h if variant == "bh1" else phi(h, 0)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve a small dense linear system by Gaussian elimination with partial pivoting."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for k in range(c, n + 1):
                m[r][k] -= f * m[c][k]
    out = [0.0] * n
    for c in reversed(range(n)):
        out[c] = (m[c][n] - sum(m[c][k] * out[k] for k in range(c + 1, n))) / m[c][c]
    return out


def _update(
    base: Tensor, bh: float, weights: Sequence[float], rs: list[float], m0: Tensor, ms: list[Tensor]
) -> Tensor:
    """``base + B sum_m a_m (m_m - m_0) / r_m``, with the ``m_0`` terms gathered into one."""
    coefs = [bh * a / r for a, r in zip(weights, rs)]
    return lincomb(1.0, base, (-sum(coefs), m0), *zip(coefs, ms))


def unipc_weights(rs: list[float], h: float, variant: str = "bh2") -> list[float]:
    """The weights ``a`` of the differences ``D_m / r_m`` (Zhao et al. 2023, Eq. 7 and 10).

    They solve ``sum_m a_m r_m^{j-1} = j! phi_j(h) / B(h)`` for ``j = 1..K`` (``B`` from
    :func:`b_of_h`), so that ``B sum_m a_m D_m / r_m`` reproduces the Taylor terms of the
    exact solution up to order ``K``; with a single difference ``a = 1/2`` (the bh2 choice,
    which keeps order 2).

    Args:
        rs: the nodes ``r_m = (lambda_m - lambda_i) / h`` of the ``K`` differences.
        h: the step in ``lambda``.
        variant: ``"bh1"`` or ``"bh2"``.
    """
    return list(_weights(tuple(rs), h, variant))


@lru_cache(maxsize=4096)
def _weights(rs: tuple[float, ...], h: float, variant: str) -> tuple[float, ...]:
    """:func:`unipc_weights`, memoised (each step asks for two sets, the same on every run)."""
    if len(rs) == 1:
        return (0.5,)
    bh = b_of_h(h, variant)
    k = len(rs)
    rows = [[r ** (j - 1) for r in rs] for j in range(1, k + 1)]
    rhs = [math.factorial(j) * phi(h, j) / bh for j in range(1, k + 1)]
    return tuple(_solve(rows, rhs))


def unipc(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    order: int = 2,
    lower_order_final: bool = True,
    final_corrector: bool = False,
    variant: str = "bh2",
) -> Tensor:
    """UniPC-p: UniP-p predictor and UniC corrector, data prediction, ``B(h)`` bh2 or bh1.

    Per step ``i``: the predictor ``x~_{i+1} = (sigma_{i+1}/sigma_i) x_i + s_{i+1} [(1 - e^{-h})
    m_i + B sum_m a_m D_m / r_m]`` with ``D_m = m_{i-m} - m_i`` over the last ``p - 1`` data
    predictions; then ``m_{i+1} = x0(x~_{i+1}, t_{i+1})`` and the corrector re-solves the step with
    ``D = m_{i+1} - m_i`` (``r = 1``) added, raising the order by one.  The last step is not
    corrected (no evaluation follows it) unless ``final_corrector`` is set, which spends one more
    NFE on it.  Warm-up and ``lower_order_final`` as in
    :func:`~scoresde.sampling.dpm_solver.multistep_order`.  1 NFE per step.

    Args:
        order: the predictor's order ``p`` in ``{1, 2, 3}``; with the corrector the method has
            order ``p + 1`` (default ``2``: order 3).
        lower_order_final: lower the order over the last steps of short grids.
        final_corrector: also correct the last step, with one extra model evaluation at the end
            (``NFE = steps + 1``); at a fixed NFE budget this often beats one more uncorrected
            step, since the last step, at the lowest noise, is the hardest.
    """
    if order not in (1, 2, 3) or isinstance(order, bool):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order!r}")
    for flag, value in (("lower_order_final", lower_order_final), ("final_corrector", final_corrector)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {value!r}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unipc variant must be one of {UNIPC_VARIANTS}, got {variant!r}")
    sch = grid_schedule(sde, ts)
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    grid = (tuple(sch.s), tuple(sch.sigma), tuple(sch.lam))
    plan = _plan(*grid, order, lower_order_final, final_corrector, variant)
    # The data predictions at t_i, t_{i-1}, ..., each as (u, k) with m = k u (the conversion's
    # scale folded into the coefficients: one tensor operation per evaluation).
    ms = [x0_at(at, x, 0)]
    for i, (ratio, pred, corr) in enumerate(plan):
        # Predictor (UniP-k), the first-order base gathered in: ratio x + sum_m pred_m m_m.
        x = lincomb(ratio, x, *((c * k, u) for c, (u, k) in zip(pred, ms)))
        if corr is not None:
            m_new = x0_at(at, x, i + 1)
            # Corrector (UniC), as its difference from the predictor: the new evaluation enters
            # with r = 1.
            x = lincomb(1.0, x, *((c * k, u) for c, (u, k) in zip(corr, [*ms[: len(corr) - 1], m_new])))
            ms = [m_new, *ms[: order - 1]]
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


@lru_cache(maxsize=64)
def _plan(
    s: tuple[float, ...],
    sigma: tuple[float, ...],
    lam: tuple[float, ...],
    order: int,
    lower_order_final: bool,
    final_corrector: bool,
    variant: str,
) -> tuple[tuple[float, tuple[float, ...], tuple[float, ...] | None], ...]:
    """The coefficients of every UniPC step on a grid, once per grid: ``(ratio, pred, corr)``
    with the predictor ``x~_{i+1} = ratio x_i + sum_m pred_m m_{i-m}`` (the first-order base
    ``(sigma_{i+1}/sigma_i) x_i + s_{i+1} (1 - e^{-h}) m_i`` and ``B sum_m a_m (m_{i-m} - m_i) / r_m``
    gathered per evaluation) and the corrected step ``x_{i+1} = x~_{i+1} + sum_m corr_m m_{i-m}
    + corr_new m_{i+1}`` (``corr = None`` where the step is not corrected).  Memoised: a run of
    the same grid reuses them."""
    steps = len(s) - 1
    plan = []
    lams = [lam[0]]
    for i in range(steps):
        h = lam[i + 1] - lam[i]
        k = multistep_order(i, steps, order, h, lower_order_final)
        ratio = sigma[i + 1] / sigma[i]
        s1 = s[i + 1]
        bh = s1 * b_of_h(h, variant) if math.isfinite(h) else s1
        rs = [(lams[m] - lams[0]) / h for m in range(1, k)]
        pc = [bh * a / r for a, r in zip(_weights(tuple(rs), h, variant), rs)] if k > 1 else []
        pred = (s1 * phi(h, 0) - sum(pc), *pc)
        corr = None
        if i + 1 < steps or (final_corrector and math.isfinite(h)):
            rs_c = [*rs, 1.0]
            cc = [bh * a / r for a, r in zip(_weights(tuple(rs_c), h, variant), rs_c)]
            corr = (sum(pc) - sum(cc), *(c - p for c, p in zip(cc, pc)), cc[-1])
            lams = [lam[i + 1], *lams[: order - 1]]
        plan.append((ratio, pred, corr))
    return tuple(plan)


def unipc_bh1(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource | None = None,
    y: Tensor | None = None,
    callback: Callback | None = None,
    order: int = 2,
    lower_order_final: bool = True,
    final_corrector: bool = False,
) -> Tensor:
    """:func:`unipc` with ``B(h) = h`` (Zhao et al. 2023, ``B_1``); same options and order."""
    return unipc(
        model,
        sde,
        x,
        ts,
        noise=noise,
        y=y,
        callback=callback,
        order=order,
        lower_order_final=lower_order_final,
        final_corrector=final_corrector,
        variant="bh1",
    )

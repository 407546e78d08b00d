"""A VP SDE from any tabulated DDPM noise schedule ``alphas_cumprod`` (Ho et al. 2020).

A discrete-time model is trained on ``x_n = sqrt(alpha_bar_n) x_0 + sqrt(1 - alpha_bar_n) n``
for integer timesteps ``n = 0, ..., N - 1``.  :class:`DiscreteVPSDE` makes that table a
continuous-time VP SDE on ``t in [0, 1]`` so that every sampler, likelihood and guidance method
of this library applies unchanged:

- **times**: timestep ``n`` sits at ``t_n = (n + 1) / N`` (DPM-Solver's discrete convention,
  Lu et al. 2022, App. D), so ``T = 1`` is the last timestep ``N - 1``; ``t = 0`` is the clean
  data, ``alpha_bar = 1``: the ``final_alpha_cumprod = 1`` that diffusers' DDIM steps to with
  ``set_alpha_to_one`` and the ``sigma = 0`` of DPM-Solver's ``final_sigmas_type="zero"``.
  The default ``eps = 1/N`` is timestep 0.
- **interpolation**: ``log s(t) = log sqrt(alpha_bar)`` is piecewise linear in ``t`` between
  the knots ``(0, 0), (t_0, log sqrt(alpha_bar_0)), ..., (1, log sqrt(alpha_bar_{N-1}))``
  (DPM-Solver's ``NoiseScheduleVP('discrete')``), so the marginal is exact at the table's times
  and ``beta(t) = -2 d log s/dt`` is piecewise constant: between two knots it is the
  ``-log(1 - beta_n) N`` of that DDPM step.
- :meth:`DiscreteVPSDE.timestep` is the inverse map ``n(t) = N t - 1`` that models trained on
  integer timesteps take (see :class:`~scoresde.models.ScoreModel`'s ``time_input``).

:func:`make_betas` builds diffusers' named schedules (``linear``, ``scaled_linear``,
``squaredcos_cap_v2``) and :func:`paper_ddpm_betas` the paper's DDPM discretisation
``beta_i = beta_min / N + i (beta_max - beta_min) / (N (N - 1))`` (Song et al. 2021, App. B;
score_sde_pytorch's ``VPSDE.discrete_betas``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from scoresde.sde.logalpha import LogAlphaVPSDE

__all__ = ["BETA_SCHEDULES", "DiscreteVPSDE", "make_betas", "paper_ddpm_betas"]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def make_betas(
    schedule: str = "linear",
    num_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 2e-2,
    max_beta: float = 0.999,
) -> Tensor:
    """DDPM betas ``(N,)`` in float64 by name, as diffusers' schedulers define them.

    - ``linear``: ``linspace(beta_start, beta_end, N)`` (Ho et al. 2020);
    - ``scaled_linear``: ``linspace(sqrt(beta_start), sqrt(beta_end), N)^2`` (latent diffusion);
    - ``squaredcos_cap_v2``: ``beta_n = min(1 - abar((n+1)/N) / abar(n/N), max_beta)`` with
      ``abar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2`` (Nichol & Dhariwal 2021, Eq. 17).
    """
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}")
    n = num_timesteps
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        u = torch.arange(n + 1, dtype=torch.float64) / n
        abar = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.clamp(1 - abar[1:] / abar[:-1], max=max_beta)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose one of {list(BETA_SCHEDULES)}")


def paper_ddpm_betas(beta_min: float = 0.1, beta_max: float = 20.0, num_timesteps: int = 1000) -> Tensor:
    """The paper's DDPM discretisation of the VP SDE: ``beta_i = linspace(beta_min/N, beta_max/N, N)``.

    Song et al. 2021, App. B (``beta_i = beta_bar_i / N``); score_sde_pytorch's
    ``VPSDE.discrete_betas``, on which its discrete DDPM checkpoints were trained.
    """
    return torch.linspace(
        beta_min / num_timesteps, beta_max / num_timesteps, num_timesteps, dtype=torch.float64
    )


class DiscreteVPSDE(LogAlphaVPSDE):
    """The VP SDE whose marginal interpolates a tabulated ``alphas_cumprod`` (see the module doc).

    Args:
        alphas_cumprod: DDPM's ``alpha_bar_n``, ``(N,)``, strictly decreasing in ``(0, 1]``; the
            last entry may be 0 (zero terminal SNR, Lin et al. 2024: diffusers'
            ``rescale_betas_zero_snr``).  Then ``s(T) = 0``, ``sigma(T) = 1``, ``lambda(T) = -inf``
            and ``s = 0`` on the whole last interval: DDIM-type steps from ``T`` work (``x0`` from
            a v-prediction is ``-v`` there), solvers that need a finite ``lambda(T)`` do not
            (use a table floored as diffusers' DPM-Solver / Euler / UniPC do, ``2**-24``).
        eps: the time at which sampling stops and likelihoods start (default ``1/N``: timestep 0;
            pass ``1e-5`` for the paper's bits/dim convention, Song et al. 2021, App. D).

    The probability-flow ODE defaults to the ``log_sigma`` clock here (``pf_ode_clock``): in
    ``t`` the interpolated ``log s(t)`` has a kink at every table entry, and the steps spread
    evenly over noise levels instead.
    """

    num_timesteps: int  # always set: the length N of the table

    pf_ode_clock = "log_sigma"

    def __init__(self, alphas_cumprod: Sequence[float] | Tensor, eps: float | None = None) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        if abar.ndim != 1 or abar.numel() < 1:
            raise ValueError(f"alphas_cumprod must be a non-empty 1-D table, got shape {tuple(abar.shape)}")
        inside = (abar[:-1] > 0) & (abar[:-1] <= 1)
        if not bool(torch.isfinite(abar).all()) or not bool(inside.all()) or not 0 <= float(abar[-1]) <= 1:
            raise ValueError(
                "alphas_cumprod must lie in (0, 1] (only the last entry may be 0: zero terminal SNR)"
            )
        if abar.numel() > 1 and not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        n = abar.numel()
        super().__init__(T=1.0, eps=1.0 / n if eps is None else eps)
        self.num_timesteps = n
        self.alphas_cumprod = abar
        # Knots (t_k, log s_k): (0, 0) then (t_n = (n + 1) / N, log sqrt(alpha_bar_n)).
        self._knots_t = torch.arange(n + 1, dtype=torch.float64) / n
        self._knots_la = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(abar)])
        if bool(self._knots_la[1] >= 0):
            raise ValueError("alphas_cumprod[0] must be < 1 (timestep 0 must add noise)")
        self._steps = torch.diff(self._knots_la)  # change of log s over each interval
        self._slopes = self._steps * n  # d log s / dt on each interval

    @classmethod
    def from_betas(cls, betas: Sequence[float] | Tensor, eps: float | None = None) -> DiscreteVPSDE:
        """Build from DDPM's ``beta_n``: ``alpha_bar_n = prod_{k <= n} (1 - beta_k)``."""
        b = torch.as_tensor(betas, dtype=torch.float64)
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        return cls(torch.cumprod(1 - b, dim=0), eps=eps)

    @classmethod
    def from_schedule(
        cls,
        schedule: str = "linear",
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        eps: float | None = None,
    ) -> DiscreteVPSDE:
        """Build from a named schedule of :func:`make_betas` (``linear`` is DDPM's 1000 steps)."""
        return cls.from_betas(make_betas(schedule, num_timesteps, beta_start, beta_end), eps=eps)

    def config(self) -> dict:
        return {"alphas_cumprod": self.alphas_cumprod.tolist(), "eps": self.eps}

    def __repr__(self) -> str:
        abar = self.alphas_cumprod
        table = f"[{abar[0]:.6g}, ..., {abar[-1]:.6g}]"
        return f"DiscreteVPSDE(N={self.num_timesteps}, alphas_cumprod={table}, eps={self.eps!r})"

    def snapped_position(self, t: Tensor) -> Tensor:
        """``u = N t`` in float64 (knot ``k`` of the table at ``u = k``, timestep ``n`` at ``u = n + 1``),
        snapped to the nearest integer when within float rounding of ``t``'s dtype.

        A time stored in float32 carries the rounding of ``(n + 1) / N`` (up to half an ulp of
        ``t``); the network is then evaluated at the integer timestep ``n``
        (:func:`~scoresde.models.wrapper.time_input_value` snaps within the same ``2 N`` ulps), so
        the noise level must be the table's entry ``n`` too, not the interpolated value a
        fraction of an ulp away (which near the end of a steep table such as 4000 cosine steps
        moves ``s(t)`` by 1e-3 relative).
        """
        t = torch.as_tensor(t)
        u = t.to(torch.float64) * self.num_timesteps
        if t.is_floating_point():
            near = torch.round(u)
            tol = 2 * self.num_timesteps * torch.finfo(t.dtype).eps
            u = torch.where((u - near).abs() <= tol, near, u)
        return u

    def _interval(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Index ``k`` of the interval ``[t_k, t_{k+1}]`` holding each ``t`` (ends extrapolate) and
        the offset ``u - k`` in units of ``1/N`` (float64)."""
        u = self.snapped_position(t)
        k = torch.floor(u).long().clamp(0, self.num_timesteps - 1)
        return k, u - k.to(torch.float64)

    def log_alpha64(self, t: Tensor) -> Tensor:
        """``log s(t)`` in float64, exact (the table's own value) at the snapped table times."""
        t = torch.as_tensor(t)
        k, frac = self._interval(t)
        kla, steps = (v.to(t.device) for v in (self._knots_la, self._steps))
        # At a knot the table's value itself (also where the next knot is log 0 = -inf).
        return torch.where(frac == 0, kla[k], kla[k] + steps[k] * frac)

    def log_alpha(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        out = self.log_alpha64(t)
        return out.to(t.dtype) if t.is_floating_point() else out

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(s, sigma)`` computed in float64 from the (snapped) table and returned in ``t``'s dtype."""
        t = torch.as_tensor(t)
        la = self.log_alpha64(t)
        s, sigma = torch.exp(la), torch.sqrt(-torch.expm1(2 * la))
        if t.is_floating_point():
            return s.to(t.dtype), sigma.to(t.dtype)
        return s, sigma

    def lambda_t(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        la = self.log_alpha64(t)
        out = la - 0.5 * torch.log(-torch.expm1(2 * la))
        return out.to(t.dtype) if t.is_floating_point() else out

    def dlog_alpha(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        out = self._slopes.to(t.device)[self._interval(t)[0]]
        return out.to(t.dtype) if t.is_floating_point() else out

    def t_of_log_alpha(self, log_alpha: Tensor) -> Tensor:
        la = torch.as_tensor(log_alpha)
        neg = -self._knots_la.to(la.device)  # increasing in t
        k = torch.searchsorted(neg, -la.to(torch.float64).contiguous(), right=True) - 1
        k = k.clamp(0, self.num_timesteps - 1)
        t = (
            self._knots_t.to(la.device)[k]
            + (la.to(torch.float64) - self._knots_la.to(la.device)[k]) / self._slopes.to(la.device)[k]
        )
        return t.to(la.dtype) if la.is_floating_point() else t

    def timestep(self, t: Tensor) -> Tensor:
        """The (fractional) timestep ``n(t) = N t - 1`` of a time ``t``: ``n(t_n) = n``."""
        t = torch.as_tensor(t)
        return t.to(torch.float64) * self.num_timesteps - 1.0

    def time_of_timestep(self, n: Tensor | Sequence[float]) -> Tensor:
        """``t_n = (n + 1) / N`` in float64: the time of (integer or fractional) timestep ``n``."""
        return (torch.as_tensor(n, dtype=torch.float64) + 1.0) / self.num_timesteps

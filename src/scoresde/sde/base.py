"""The abstract linear-drift SDE and its reverse-time SDE / probability-flow ODE.

Every diffusion in this library has the form (Song et al. 2021, Eq. 5)

    dx = f(t) x dt + g(t) dw,

whose perturbation kernel is Gaussian, ``x_t = s(t) x_0 + sigma(t) n`` with
``n ~ N(0, I)``.  A concrete SDE supplies ``s``, ``sigma``, ``f`` and ``g``; every
other quantity (``sigma_hat``, the half log-SNR ``lambda`` and its inverse, exact
transitions, the reverse SDE of Eq. 6, the probability-flow ODE of Eq. 13) is derived
here, so that no sampler or loss ever asks which concrete SDE it was given.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.checks import check_times
from scoresde._core.tensors import LOG_2PI, append_dims, as_shape, sum_except_batch

ScoreFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["SDE", "ReverseSDE", "ScoreFn"]


class SDE(ABC):
    """A linear-drift diffusion ``dx = f(t) x dt + g(t) dw`` on ``t in [0, T]``.

    Subclasses implement :meth:`marginal`, :meth:`drift_coef` and :meth:`diffusion`;
    they may override :meth:`t_of_lambda` with a closed form (the default bisects).

    Args:
        T: end time of the forward diffusion.
        eps: the small time at which sampling stops and likelihoods are evaluated
            (Song et al. 2021, App. C), avoiding the singular score at ``t = 0``.

    Attributes:
        pf_ode_clock: the integration variable the probability-flow ODE is solved in when the
            caller names none (:class:`~scoresde.flow.pf_ode.Clock`: ``t`` or ``log_sigma``).
    """

    num_timesteps: int | None = None
    """The length ``N`` of the timestep table of a discrete-time SDE, whose ``timestep(t)`` and
    ``time_of_timestep(n)`` map between times and timesteps (:class:`~scoresde.sde.DiscreteVPSDE`);
    ``None`` for a continuous-time SDE."""
    default_grid: str = "uniform"
    """The time grid samplers take when none is named (:func:`scoresde.sampling.grids.default_grid`)."""
    pf_ode_clock: str = "t"

    def __init__(self, T: float = 1.0, eps: float = 1e-5) -> None:
        if not (T > 0 and math.isfinite(T)):
            raise ValueError(f"T must be positive and finite, got {T}")
        if not (0.0 <= eps < T):
            raise ValueError(f"eps must lie in [0, T) = [0, {T}), got {eps}")
        self.T = float(T)
        self.eps = float(eps)

    # ------------------------------------------------------------------ #
    # What a concrete SDE supplies.
    # ------------------------------------------------------------------ #
    @abstractmethod
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Perturbation kernel ``p_{0t}(x_t | x_0) = N(s(t) x_0, sigma(t)^2 I)``.

        Args:
            t: times, any shape.

        Returns:
            ``(s, sigma)``, tensors of ``t``'s shape.
        """

    @abstractmethod
    def drift_coef(self, t: Tensor) -> Tensor:
        """The scalar ``f(t)`` of the linear drift ``f(t) x``; equals ``d log s / dt``."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """The diffusion coefficient ``g(t)``; ``g^2 = d sigma^2/dt - 2 f sigma^2``."""

    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior ``p_T`` used to start sampling."""
        return float(self.marginal(torch.tensor(self.T, dtype=torch.float64))[1])

    @property
    def name(self) -> str:
        return type(self).__name__

    def config(self) -> dict:
        """JSON-serialisable constructor arguments (used by checkpoints)."""
        return {"T": self.T, "eps": self.eps}

    @property
    def short_name(self) -> str:
        """The name :func:`scoresde.sde.make_sde` knows this SDE by (``vp``, ``ve``, ...).

        Raises:
            ValueError: the class is not in :data:`scoresde.sde.SDES`.
        """
        from scoresde.sde import SDES

        for key, cls in SDES.items():
            if type(self) is cls:
                return key
        raise ValueError(f"{type(self).__name__} is not in scoresde.sde.SDES; register it to save it by name")

    def to_dict(self) -> dict:
        """``{"name": short name, "kwargs": constructor arguments}``: the one JSON form of an SDE,
        read back by :func:`scoresde.sde.sde_from_dict`."""
        return {"name": self.short_name, "kwargs": self.config()}

    def __eq__(self, other: object) -> bool:
        """Equal SDEs are of the same class with the same constructor arguments."""
        if not isinstance(other, SDE):
            return NotImplemented
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.config().items()))))

    # ------------------------------------------------------------------ #
    # Derived quantities.
    # ------------------------------------------------------------------ #
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Forward drift ``f(t) x`` for ``x: (B, *D)``, ``t: (B,)`` or scalar."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return append_dims(self.drift_coef(t), x.ndim) * x if t.ndim else self.drift_coef(t) * x

    def sigma_hat(self, t: Tensor) -> Tensor:
        """``sigma(t) / s(t)``: the noise level of the rescaled variable ``x / s`` (EDM's sigma)."""
        s, sigma = self.marginal(t)
        return sigma / s

    def lambda_t(self, t: Tensor) -> Tensor:
        """Half log-SNR ``lambda(t) = log(s(t) / sigma(t))`` (Lu et al. 2022, DPM-Solver)."""
        s, sigma = self.marginal(t)
        return torch.log(s) - torch.log(sigma)

    def log_snr(self, t: Tensor) -> Tensor:
        """Log signal-to-noise ratio ``log(s^2 / sigma^2) = 2 lambda(t)``."""
        return 2.0 * self.lambda_t(t)

    def t_of_lambda(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`lambda_t` (strictly decreasing in ``t``).

        This default bisects on ``[0, T]`` in float64; SDEs with a closed form override it.
        """
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.full_like(lam, 0.0)
        hi = torch.full_like(lam, self.T)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            above = self.lambda_t(mid) > lam  # lambda decreases: the root lies to the right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def marginal_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(ds/dt, dsigma/dt)``, derived from ``f`` and ``g``.

        ``ds/dt = f s`` and ``dsigma/dt = (g^2 + 2 f sigma^2) / (2 sigma)``.
        """
        s, sigma = self.marginal(t)
        f, g = self.drift_coef(t), self.diffusion(t)
        return f * s, (g**2 + 2 * f * sigma**2) / (2 * sigma)

    def coefficients_at(self, t: float, dtype: torch.dtype, derivatives: bool = False) -> tuple[float, ...]:
        """``(s, sigma)`` at the one time ``t`` as Python floats, and with ``derivatives`` also
        ``(ds/dt, dsigma/dt)`` after them; memoised per SDE.

        Evaluated by :meth:`marginal` (and :meth:`marginal_derivatives`) on a one-entry CPU tensor
        of ``dtype``, so the floats are the values a ``(B,)`` tensor of that dtype holding ``t``
        gives; a model evaluated at one time for the whole batch (every fixed-step sampler)
        multiplies by them instead of computing the marginal per call.  The memo holds at most
        4096 entries (a sampler's grid, or the steps of an adaptive solve); an SDE's parameters
        are fixed at construction, so an entry never goes stale.
        """
        cache: dict[tuple[float, torch.dtype, bool], tuple[float, ...]] = self.__dict__.setdefault(
            "_coefficients", {}
        )
        key = (t, dtype, derivatives)
        hit = cache.get(key)
        if hit is None:
            tt = torch.tensor([t], dtype=dtype)
            values = list(self.marginal(tt))
            if derivatives:
                values += list(self.marginal_derivatives(tt))
            hit = tuple(float(v.reshape(-1)[0]) for v in values)
            if len(cache) >= 4096:
                cache.clear()
            cache[key] = hit
        return hit

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Draw from the perturbation kernel: ``x_t = s(t) x_0 + sigma(t) noise``."""
        s, sigma = self.marginal(torch.as_tensor(t, dtype=x0.dtype, device=x0.device))
        return append_dims(s, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * noise

    def transition(self, t_from: Tensor, t_to: Tensor) -> tuple[Tensor, Tensor]:
        """Exact forward transition ``x_{t_to} = a x_{t_from} + b n`` for ``t_to >= t_from``.

        ``a = s(t_to) / s(t_from)`` and ``b^2 = sigma(t_to)^2 - a^2 sigma(t_from)^2``.  For the
        VE SDE this is the SMLD chain ``x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z`` and
        for the VP SDE the DDPM chain ``x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z``
        (Song et al. 2021, Eq. 8 and 10) with ``beta_i = 1 - a^2``.
        """
        s0, sig0 = self.marginal(t_from)
        s1, sig1 = self.marginal(t_to)
        a = s1 / s0
        b2 = sig1**2 - (a * sig0) ** 2
        return a, torch.sqrt(torch.clamp(b2, min=0.0))

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Euler-Maruyama discretisation ``x_{t+dt} = x + f_i + G_i z``.

        Returns:
            ``(f_i, G_i)`` with ``f_i = f(t) x dt`` of ``x``'s shape and ``G_i = g(t) sqrt(dt)``
            of ``t``'s shape.  (The paper's SMLD / DDPM discretisations are :meth:`transition`.)
        """
        dt_t = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
        return self.drift(x, t) * dt_t, self.diffusion(t) * torch.sqrt(torch.abs(dt_t))

    def prior_sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw ``x_T ~ N(0, prior_std^2 I)`` of shape ``(B, *D)``."""
        shape = as_shape(shape)
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return z * self.prior_std()

    def prior_logp(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z: (B, *D)``, in nats, shape ``(B,)``."""
        std = self.prior_std()
        d = z[0].numel()
        return -0.5 * sum_except_batch(z**2) / std**2 - 0.5 * d * (LOG_2PI + 2 * math.log(std))

    def timestep(self, t: Tensor) -> Tensor:
        """The (fractional) timestep ``n(t)`` of a discrete-time SDE (one with ``num_timesteps``)."""
        raise TypeError(f"{self.name} has no timestep table (num_timesteps is None)")

    def time_of_timestep(self, n: Tensor | Sequence[float]) -> Tensor:
        """The time ``t_n`` of timestep ``n`` of a discrete-time SDE (one with ``num_timesteps``)."""
        raise TypeError(f"{self.name} has no timestep table (num_timesteps is None)")

    def check_t(self, t: Tensor, name: str = "t") -> None:
        """Raise ``ValueError`` unless every time lies in ``[0, T]``."""
        check_times(torch.as_tensor(t), self.T, name)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (Song et al. 2021, Eq. 6) or probability-flow ODE (Eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{self.name}({args})"


@dataclass
class ReverseSDE:
    """Reverse-time dynamics of a forward :class:`SDE`, run from ``T`` down to ``eps``.

    With ``probability_flow=False`` this is Eq. 6 of Song et al. 2021,
    ``dx = [f x - g^2 score] dt + g dw_bar``; with ``True`` it is the probability-flow
    ODE of Eq. 13, ``dx = [f x - g^2 score / 2] dt``, whose marginals match the SDE's.
    Time runs backwards: integrate with negative ``dt``.
    """

    sde: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Reverse drift at ``x: (B, *D)``, ``t: (B,)``."""
        g = append_dims(self.sde.diffusion(t), x.ndim)
        coef = 0.5 if self.probability_flow else 1.0
        return self.sde.drift(x, t) - coef * g**2 * self.score_fn(x, t)

    def diffusion(self, t: Tensor) -> Tensor:
        """Reverse diffusion coefficient: ``g(t)``, or zero for the probability-flow ODE."""
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Euler-Maruyama step of the reverse dynamics for a (negative) step ``dt``."""
        dt_t = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
        return self.drift(x, t) * dt_t, self.diffusion(t) * torch.sqrt(torch.abs(dt_t))

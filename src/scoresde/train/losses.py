"""Training objectives: continuous denoising score matching (Song et al. 2021, Eq. 7).

``L(theta) = E_t { lambda(t) E_{x0} E_{x_t | x0} ||s_theta(x_t, t) - grad log p_{0t}(x_t | x0)||^2 }``
with ``grad log p_{0t}(x_t | x0) = -n / sigma(t)`` and ``t ~ U(eps, T)``.

Weightings ``lambda(t)``:

- ``"sigma2"``: ``lambda = sigma(t)^2`` (the paper's default; equals plain epsilon-MSE);
- ``"likelihood"``: ``lambda = g(t)^2`` (Song et al. 2021c: the loss then bounds the negative
  log-likelihood), optionally with importance-sampled ``t`` (:func:`sample_time_importance`);
- ``"edm"``: EDM's ``lambda(sigma_hat) = (sigma_hat^2 + sigma_data^2) / (sigma_hat sigma_data)^2``
  on the denoiser's error (Karras et al. 2022, Eq. 8), i.e. the epsilon-MSE times
  ``1 + sigma_hat^2 / sigma_data^2``, with ``sigma_data`` the model's: a unit-variance target at
  every noise level (for ``sigma_data = 1`` the v-prediction MSE), where epsilon-MSE gives high
  noise levels almost no weight.

Also the discrete objectives the paper generalises, SMLD / NCSN (:func:`smld_loss`, Song &
Ermon 2019) and DDPM (:func:`ddpm_loss`, Ho et al. 2020), and flow matching
(:func:`flow_matching_loss`, Lipman et al. 2023), which all run on the same networks.
Each objective is also a small object with its parameters (:class:`DSMLoss`, :class:`SMLDLoss`,
:class:`DDPMLoss`, :class:`FlowMatchingLoss`), called as ``loss(model, x0, y, u, noise)`` by the
trainer, where ``u: (B,)`` are uniform variates that fix the times; :func:`make_objective` maps
the names of :class:`~scoresde.train.TrainConfig` to them.  The likelihood bound of Song et al.
2021c lives in :func:`scoresde.flow.bound.dsm_nll_bound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from scoresde._core.checks import (
    check_batch,
    check_data,
    check_finite,
    check_real_tensor,
    check_times,
    guard_output,
)
from scoresde._core.tensors import append_dims, sum_except_batch
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE
from scoresde.sde.importance import importance_time, importance_weight, sample_time_importance
from scoresde.train.times import TIME_SAMPLINGS, lognormal_time, uniform_time

WEIGHTINGS = ("sigma2", "likelihood", "edm")

__all__ = [
    "OBJECTIVES",
    "WEIGHTINGS",
    "DDPMLoss",
    "DSMLoss",
    "FlowMatchingLoss",
    "LossOutput",
    "Objective",
    "SMLDLoss",
    "ddpm_loss",
    "ddpm_times",
    "dsm_loss",
    "flow_matching_loss",
    "importance_time",
    "importance_weight",
    "make_objective",
    "sample_time",
    "sample_time_importance",
    "smld_loss",
    "smld_sigmas",
]


@dataclass
class LossOutput:
    """A training loss: ``loss`` (scalar, differentiable) and per-sample values ``per_sample: (B,)``."""

    loss: Tensor
    per_sample: Tensor
    t: Tensor


def _output(out: Tensor, x_t: Tensor, t: Tensor, what: str, check: bool) -> Tensor:
    """The model output ``out``, checked for NaN/inf when ``check`` (as the samplers check it)."""
    if check:
        guard_output(out.detach(), x_t.detach(), t.detach(), what, "its evaluation")
    return out


def sample_time(
    sde: SDE, n: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> Tensor:
    """``t ~ U(eps, T)``, shape ``(n,)``."""
    u = torch.rand(n, generator=generator, device=device, dtype=dtype)
    return sde.eps + (sde.T - sde.eps) * u


def dsm_loss(
    model: ScoreFunction,
    x0: Tensor,
    weighting: str = "sigma2",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    importance: bool = False,
    check: bool = True,
) -> LossOutput:
    """Continuous denoising score matching (Song et al. 2021, Eq. 7), per-dimension sum.

    Computed in epsilon form for numerical stability:
    ``lambda(t) ||s + n/sigma||^2 = lambda(t) / sigma^2 ||eps_theta - n||^2``.

    Args:
        model: the score model (its SDE defines the perturbation).
        x0: clean data ``(B, *D)``.
        weighting: ``"sigma2"``, ``"likelihood"`` or ``"edm"``.
        y: optional labels for conditional models.
        generator: RNG for ``t`` and the noise.
        t, noise: fix them instead of drawing (tests).
        importance: draw ``t`` from ``p(t) ∝ g(t)^2 / sigma(t)^2`` (:func:`sample_time_importance`)
            and reweight by ``1 / ((T - eps) p(t))``: the same expected loss as uniform ``t``,
            with much lower variance for ``weighting="likelihood"`` (Song et al. 2021c, Sec. 5).
        check: raise :class:`~scoresde._core.checks.NonFiniteError` when the model's output is not
            finite (as the samplers do); the trainer's objectives pass ``False`` (their own guard
            skips such steps without a per-step device synchronisation).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(WEIGHTINGS)}")
    if importance and weighting == "edm":
        raise ValueError("importance sampling of t is defined for the sigma2 and likelihood weightings")
    check_real_tensor(x0, "x0")
    check_data(x0, "x0")
    check_batch(x0, "x0")
    sde = model.sde
    if t is None:
        draw = sample_time_importance if importance else sample_time
        t = draw(sde, x0.shape[0], generator, x0.device, x0.dtype)
    else:
        check_real_tensor(t, "t")
        if t.shape != (x0.shape[0],):
            raise ValueError(f"t must have shape ({x0.shape[0]},), got {tuple(t.shape)}")
        check_times(t, sde.T, "t")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    else:
        check_real_tensor(noise, "noise")
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        check_finite(noise, "noise")
    x_t = sde.perturb(x0, t, noise)
    eps = _output(model.eps(x_t, t, y).to(noise.dtype), x_t, t, "dsm_loss", check)
    per_sample = sum_except_batch((eps - noise) ** 2)
    if importance:
        # w(t) / ((T - eps) p(t)) with p(t) = (g^2 / sigma^2) / Z: likelihood weighting gives Z / (T - eps).
        scale = importance_weight(sde, t)
        if weighting == "sigma2":
            _, sigma = sde.marginal(t)
            scale = scale * (sigma / sde.diffusion(t)) ** 2
        per_sample = per_sample * scale
    elif weighting == "likelihood":
        _, sigma = sde.marginal(t)
        per_sample = per_sample * (sde.diffusion(t) / sigma) ** 2
    elif weighting == "edm":
        sigma_data = float(getattr(model, "sigma_data", 1.0))
        per_sample = per_sample * (1.0 + (sde.sigma_hat(t) / sigma_data) ** 2)
    return LossOutput(per_sample.mean(), per_sample, t)


# ---------------------------------------------------------------------- #
# Importance sampling of t for likelihood weighting (Song et al. 2021c).
# ---------------------------------------------------------------------- #
# ---------------------------------------------------------------------- #
# Discrete objectives: SMLD / NCSN and DDPM.
# ---------------------------------------------------------------------- #
def smld_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> Tensor:
    """NCSN's noise levels: a geometric sequence from ``sigma_max`` down to ``sigma_min`` (float64)."""
    if not (0 < sigma_min < sigma_max) or num_scales < 2:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max and num_scales >= 2, got {sigma_min}, {sigma_max}, {num_scales}"
        )
    return torch.exp(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), num_scales, dtype=torch.float64)
    )


def _times_of_sigma_hat(sde: SDE, sigma_hat: Tensor) -> Tensor:
    """The times in ``(0, T]`` at which ``sigma(t) / s(t)`` equals the given noise levels (float64).

    Levels up to 10% above ``sigma_hat(T)`` are accepted (a discrete schedule such as DDPM's
    ends slightly off its continuous limit) and mapped to ``T``.
    """
    hi = float(sde.sigma_hat(torch.tensor(sde.T, dtype=torch.float64)))
    if bool((sigma_hat <= 0).any()) or float(sigma_hat.max()) > 1.1 * hi:
        raise ValueError(
            f"noise levels must lie in (0, {hi:.4g}] (the SDE's sigma(T)/s(T)), "
            f"got [{float(sigma_hat.min()):.4g}, {float(sigma_hat.max()):.4g}]"
        )
    return sde.t_of_lambda(-torch.log(sigma_hat.double())).clamp(0.0, sde.T)


def smld_loss(
    model: ScoreFunction,
    x0: Tensor,
    sigmas: Tensor | None = None,
    num_scales: int = 10,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    index: Tensor | None = None,
    noise: Tensor | None = None,
    check: bool = True,
) -> LossOutput:
    """The NCSN objective (Song & Ermon 2019, Eq. 5-6) over discrete noise levels ``sigma_i``.

    ``l = (1/L) sum_i lambda(sigma_i) E ||s_theta(x~, sigma_i) + (x~ - x) / sigma_i^2||^2 / 2``
    with ``lambda(sigma) = sigma^2`` and ``x~ = x + sigma_i n``: a level ``i`` is drawn per
    sample.  The network is queried at the time whose ``sigma(t) / s(t)`` is ``sigma_i`` (for the
    VE SDE ``s = 1``, so ``x~`` is SMLD's perturbation exactly; Song et al. 2021, Sec. 3.4).

    Args:
        model: the score model.
        x0: clean data ``(B, *D)``.
        sigmas: noise levels (``sigma_hat``); default: ``num_scales`` geometric levels spanning
            the model SDE's range on ``[eps, T]``.
        num_scales: ``L`` when ``sigmas`` is not given.
        y: optional labels.
        generator: RNG for the levels and the noise.
        index, noise: fix the level indices ``(B,)`` and the noise instead of drawing.
        check: raise :class:`~scoresde._core.checks.NonFiniteError` on a non-finite model output.
    """
    check_data(x0, "x0")
    sde = model.sde
    if sigmas is None:
        lo = float(sde.sigma_hat(torch.tensor(sde.eps, dtype=torch.float64)))
        hi = float(sde.sigma_hat(torch.tensor(sde.T, dtype=torch.float64)))
        sigmas = smld_sigmas(lo, hi, num_scales)
    times = _times_of_sigma_hat(sde, torch.as_tensor(sigmas, dtype=torch.float64))
    if index is None:
        index = torch.randint(0, len(times), (x0.shape[0],), generator=generator)
    t = times[index.cpu()].to(device=x0.device, dtype=x0.dtype)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = sde.perturb(x0, t, noise)
    # sigma^2 ||s + n / sigma||^2 = ||eps_theta - n||^2, written in the rescaled variable x / s.
    eps = _output(model.eps(x_t, t, y).to(noise.dtype), x_t, t, "smld_loss", check)
    per_sample = 0.5 * sum_except_batch((eps - noise) ** 2)
    return LossOutput(per_sample.mean(), per_sample, t)


def ddpm_times(sde: SDE, num_steps: int = 1000, betas: Tensor | None = None) -> Tensor:
    """The continuous times ``t_1 < ... < t_N`` of DDPM's discrete steps, float64 ``(N,)``.

    Without ``betas``: ``t_i = T i / N``, the grid on which the VP SDE with ``beta_min=0.1``,
    ``beta_max=20`` and ``N = 1000`` reproduces DDPM's ``beta_i in [1e-4, 0.02]`` (Song et al.
    2021, Eq. 10-11).  With ``betas``: the times with DDPM's signal-to-noise ratio,
    ``sigma(t_i)^2 / s(t_i)^2 = (1 - abar_i) / abar_i``, ``abar_i = prod_{j<=i} (1 - beta_j)``.
    """
    if betas is None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        return sde.T * torch.arange(1, num_steps + 1, dtype=torch.float64) / num_steps
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or bool(((betas <= 0) | (betas >= 1)).any()):
        raise ValueError("betas must be a 1-D tensor of values in (0, 1)")
    abar = torch.cumprod(1.0 - betas, 0)
    return _times_of_sigma_hat(sde, torch.sqrt((1.0 - abar) / abar))


def ddpm_loss(
    model: ScoreFunction,
    x0: Tensor,
    num_steps: int = 1000,
    betas: Tensor | None = None,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    index: Tensor | None = None,
    noise: Tensor | None = None,
    check: bool = True,
) -> LossOutput:
    """DDPM's simplified objective (Ho et al. 2020, Eq. 14 and Alg. 1) at discrete steps.

    ``i ~ U{1, ..., N}``, ``x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps`` and
    ``L_simple = ||eps - eps_theta(x_i, i)||^2``; the steps are the times of :func:`ddpm_times`
    and the perturbation is the model SDE's marginal there.

    Args:
        model: the score model.
        x0: clean data ``(B, *D)``.
        num_steps: ``N`` (when ``betas`` is not given).
        betas: DDPM's ``beta_i`` (optional).
        y: optional labels.
        generator: RNG for the steps and the noise.
        index, noise: fix the step indices (``0 .. N-1``) and the noise instead of drawing.
        check: raise :class:`~scoresde._core.checks.NonFiniteError` on a non-finite model output.
    """
    check_data(x0, "x0")
    sde = model.sde
    times = ddpm_times(sde, num_steps, betas)
    if index is None:
        index = torch.randint(0, len(times), (x0.shape[0],), generator=generator)
    t = times[index.cpu()].to(device=x0.device, dtype=x0.dtype)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = sde.perturb(x0, t, noise)
    eps = _output(model.eps(x_t, t, y).to(noise.dtype), x_t, t, "ddpm_loss", check)
    per_sample = sum_except_batch((eps - noise) ** 2)
    return LossOutput(per_sample.mean(), per_sample, t)


# ---------------------------------------------------------------------- #
# Flow matching.
# ---------------------------------------------------------------------- #
def flow_matching_loss(
    model: ScoreFunction,
    x0: Tensor,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    check: bool = True,
) -> LossOutput:
    """Conditional flow matching (Lipman et al. 2023, Eq. 9; Liu et al. 2023, rectified flow).

    With :class:`~scoresde.sde.StraightSDE`, ``x_t = (1 - t) x0 + t n`` and the target is the
    path's velocity ``u_t = n - x0``: ``l = ||v_theta(x_t, t) - (n - x0)||^2`` with ``t ~ U(eps, T)``.
    For any other SDE the target is its own path velocity ``s'(t) x0 + sigma'(t) n`` (whose
    conditional mean is the probability-flow ODE drift), so the trained model samples with
    the ODE samplers through ``ScoreModel(..., prediction="velocity")``.

    Args:
        model: the model (ideally ``prediction="velocity"``, then no conversion is involved).
        x0: clean data ``(B, *D)``.
        y: optional labels.
        generator: RNG for ``t`` and the noise.
        t, noise: fix them instead of drawing.
        check: raise :class:`~scoresde._core.checks.NonFiniteError` on a non-finite model output.
    """
    check_data(x0, "x0")
    sde = model.sde
    if t is None:
        t = sample_time(sde, x0.shape[0], generator, x0.device, x0.dtype)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = sde.perturb(x0, t, noise)
    ds, dsigma = (append_dims(c, x0.ndim) for c in sde.marginal_derivatives(t))
    target = ds * x0 + dsigma * noise
    v = _output(model.velocity(x_t, t, y).to(target.dtype), x_t, t, "flow_matching_loss", check)
    per_sample = sum_except_batch((v - target) ** 2)
    return LossOutput(per_sample.mean(), per_sample, t)


# ---------------------------------------------------------------------- #
# The objectives as objects: ``loss(model, x0, y, u, noise) -> LossOutput``.
# ---------------------------------------------------------------------- #
class Objective(Protocol):
    """A training objective with its parameters: ``loss(model, x0, y, u, noise) -> LossOutput``.

    The uniform variates ``u: (B,)`` in ``[0, 1)`` fix the times (or levels) and ``noise`` the
    perturbation; both are drawn by the caller, so that a distributed run can draw them for the
    global batch and give each process its share.  Objectives do not check the model's output
    for NaN (that would synchronise with the device at every step); the trainer's non-finite
    guard does, and the functions (:func:`dsm_loss`, ...) do for direct callers.
    """

    def __call__(
        self, model: ScoreFunction, x0: Tensor, y: Tensor | None, u: Tensor, noise: Tensor
    ) -> LossOutput: ...


@dataclass(frozen=True)
class DSMLoss:
    """Continuous denoising score matching (:func:`dsm_loss`; Song et al. 2021, Eq. 7).

    Args:
        weighting: ``"sigma2"``, ``"likelihood"`` (Song et al. 2021c) or ``"edm"`` (Karras et al.
            2022, Eq. 8).
        importance: importance-sampled ``t`` (:func:`importance_time`).
        time_sampling: ``"uniform"`` or ``"lognormal"`` (:mod:`scoresde.train.times`).
        p_mean, p_std: the log-normal's parameters (``ln sigma_hat ~ N(p_mean, p_std^2)``).
    """

    weighting: str = "sigma2"
    importance: bool = False
    time_sampling: str = "uniform"
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {list(WEIGHTINGS)}")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(
                f"unknown time_sampling {self.time_sampling!r}; choose one of {list(TIME_SAMPLINGS)}"
            )
        if self.importance and (self.time_sampling != "uniform" or self.weighting == "edm"):
            raise ValueError(
                "importance sampling of t needs weighting='likelihood' (or 'sigma2'; got "
                f"{self.weighting!r}) and time_sampling='uniform' (got "
                f"{self.time_sampling!r}): it replaces the time sampling"
            )
        if not (math.isfinite(self.p_mean) and math.isfinite(self.p_std) and self.p_std > 0):
            raise ValueError(f"need a finite p_mean and p_std > 0, got {self.p_mean}, {self.p_std}")

    def __call__(
        self, model: ScoreFunction, x0: Tensor, y: Tensor | None, u: Tensor, noise: Tensor
    ) -> LossOutput:
        sde = model.sde
        if self.importance:
            t = importance_time(sde, u)
        elif self.time_sampling == "lognormal":
            t = lognormal_time(sde, u, self.p_mean, self.p_std)
        else:
            t = uniform_time(sde, u)
        return dsm_loss(
            model, x0, self.weighting, y, t=t.to(x0), noise=noise, importance=self.importance, check=False
        )


@dataclass(frozen=True)
class SMLDLoss:
    """The NCSN objective over ``num_scales`` geometric levels (:func:`smld_loss`; Song & Ermon 2019)."""

    num_scales: int = 10

    def __post_init__(self) -> None:
        if self.num_scales < 2:
            raise ValueError(f"num_scales must be >= 2, got {self.num_scales}")

    def __call__(
        self, model: ScoreFunction, x0: Tensor, y: Tensor | None, u: Tensor, noise: Tensor
    ) -> LossOutput:
        index = torch.clamp((u * self.num_scales).long(), max=self.num_scales - 1)
        return smld_loss(model, x0, num_scales=self.num_scales, y=y, index=index, noise=noise, check=False)


@dataclass(frozen=True)
class DDPMLoss:
    """DDPM's simplified objective over ``num_steps`` steps (:func:`ddpm_loss`; Ho et al. 2020)."""

    num_steps: int = 1000

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")

    def __call__(
        self, model: ScoreFunction, x0: Tensor, y: Tensor | None, u: Tensor, noise: Tensor
    ) -> LossOutput:
        index = torch.clamp((u * self.num_steps).long(), max=self.num_steps - 1)
        return ddpm_loss(model, x0, num_steps=self.num_steps, y=y, index=index, noise=noise, check=False)


@dataclass(frozen=True)
class FlowMatchingLoss:
    """Conditional flow matching (:func:`flow_matching_loss`; Lipman et al. 2023)."""

    def __call__(
        self, model: ScoreFunction, x0: Tensor, y: Tensor | None, u: Tensor, noise: Tensor
    ) -> LossOutput:
        sde = model.sde
        t = (sde.eps + (sde.T - sde.eps) * u).to(x0)
        return flow_matching_loss(model, x0, y, t=t, noise=noise, check=False)


OBJECTIVES: dict[str, type] = {
    "dsm": DSMLoss,
    "smld": SMLDLoss,
    "ddpm": DDPMLoss,
    "flow_matching": FlowMatchingLoss,
}
"""The objectives by the names :class:`~scoresde.train.config.TrainConfig` uses."""


def make_objective(
    name: str,
    weighting: str = "sigma2",
    importance: bool = False,
    num_scales: int | None = None,
    time_sampling: str = "uniform",
    time_options: dict[str, float] | None = None,
) -> Objective:
    """The objective object of a name (the string form of :class:`~scoresde.train.TrainConfig`).

    Args:
        name: ``dsm`` (:class:`DSMLoss`), ``smld`` (:class:`SMLDLoss`), ``ddpm``
            (:class:`DDPMLoss`) or ``flow_matching`` (:class:`FlowMatchingLoss`).
        weighting: DSM weighting (``sigma2``, ``likelihood`` or ``edm``; the other losses have
            their own).
        importance: importance-sampled ``t`` for DSM.
        num_scales: the number of discrete levels / steps: ``L`` for ``smld`` (default 10, as in
            NCSN) and ``N`` for ``ddpm`` (default 1000).
        time_sampling: how DSM draws ``t`` (``uniform`` or ``lognormal``), with ``time_options``
            (``p_mean``, ``p_std``) for ``lognormal``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown loss {name!r}; choose one of {list(OBJECTIVES)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {list(WEIGHTINGS)}")
    if importance and name != "dsm":
        raise ValueError("importance sampling of t applies to the dsm loss only")
    if time_sampling != "uniform" and name != "dsm":
        raise ValueError("time_sampling applies to the dsm loss only (the others fix their own times)")
    options = dict(time_options or {})
    unknown = sorted(set(options) - {"p_mean", "p_std"})
    if unknown:
        raise ValueError(f"unknown time option(s) {unknown}; the lognormal sampling takes p_mean, p_std")
    if options and time_sampling != "lognormal":
        raise ValueError(f"time options {sorted(options)} apply to time_sampling='lognormal' only")
    if name == "dsm":
        return DSMLoss(weighting, importance, time_sampling, **{k: float(v) for k, v in options.items()})
    if name == "smld":
        return SMLDLoss(10 if num_scales is None else num_scales)
    if name == "ddpm":
        return DDPMLoss(1000 if num_scales is None else num_scales)
    return FlowMatchingLoss()

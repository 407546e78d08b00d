"""Predictors of the reverse-time SDE (Song et al. 2021, Sec. 4.2 and App. E-F).

A predictor *step* moves ``x`` from ``t`` to ``t_next < t`` with one model evaluation:
``step(model, sde, x, t, t_next, *, noise, y, **options) -> x``, with ``x: (B, *D)`` and
``t, t_next`` 0-d float64 tensors.  :data:`PREDICTORS` names the steps for
:func:`scoresde.sampling.pc.pc`; :func:`euler_maruyama`, :func:`reverse_diffusion` and
:func:`ancestral` are the predictor-only samplers (uniform sampler signature).

Every step is written for a general linear SDE through its exact transition
``x_t = a x_{t_next} + b n`` (:meth:`~scoresde.sde.SDE.transition`): no step asks which
concrete SDE it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.models.fixed_times import FixedTimes, fixed_times
from scoresde.sampling.noise import NoiseSource, scaled_draw
from scoresde.sampling.types import Callback
from scoresde.sde.base import SDE

__all__ = [
    "PREDICTORS",
    "PredictorStep",
    "ancestral",
    "ancestral_step",
    "euler_maruyama",
    "euler_maruyama_step",
    "get_predictor",
    "probability_flow_step",
    "reverse_diffusion",
    "reverse_diffusion_step",
    "run_predictor",
]

PredictorStep = Callable[..., Tensor]
"""``step(model, sde, x, t, t_next, *, noise, y=None, **options) -> x``."""

VARIANCES = ("posterior", "transition")


def _batch(t: Tensor, x: Tensor) -> Tensor:
    return t.to(x.dtype).expand(x.shape[0])


def euler_maruyama_step(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    t_next: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE (Song et al. 2021, Eq. 6).

    ``x <- x + [f x - g^2 score(x, t)] (t_next - t) + g(t) sqrt(t - t_next) z``.
    """
    reverse = sde.reverse(model.score_fn(y))
    drift, g = reverse.discretize(x, _batch(t, x), (t_next - t).to(x.dtype))
    return x + drift + append_dims(g, x.ndim) * noise(x)


def reverse_diffusion_step(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    t_next: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
) -> Tensor:
    """Reverse-diffusion predictor (Song et al. 2021, App. E, Eq. 46).

    The forward discretisation is the exact transition ``x_{i+1} = x_i + f_{i+1}(x_i) +
    G_{i+1} z`` with ``f_{i+1}(x) = (a - 1) x`` and ``G_{i+1} = b`` from
    ``sde.transition(t_next, t)``: the SMLD chain for VE (``a = 1``, ``b^2 = sigma_{i+1}^2 -
    sigma_i^2``) and the DDPM chain for VP (``a = sqrt(1 - beta_{i+1})``, ``b^2 = beta_{i+1}``).
    Its reverse is ``x_i = x_{i+1} - f_{i+1}(x_{i+1}) + G_{i+1}^2 score(x_{i+1}, t_{i+1}) +
    G_{i+1} z``.
    """
    a, b = (float(c) for c in sde.transition(t_next, t))
    score = model.score(x, _batch(t, x), y)
    return (2.0 - a) * x + b**2 * score + b * noise(x)


def ancestral_step(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    t_next: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    variance: str = "posterior",
) -> Tensor:
    """Ancestral sampling (Song et al. 2021, App. F), written once for every linear SDE.

    The forward chain ``x_t = a x_{t_next} + b n`` with ``x_{t_next} | x_0 ~ N(s' x_0,
    sigma'^2 I)`` (``s', sigma'`` the marginal at ``t_next``, ``sigma`` at ``t``) has the Gaussian
    posterior ``q(x_{t_next} | x_t, x_0) = N(mu, v I)`` with

        mu = (b^2 s' x_0 + a sigma'^2 x_t) / sigma^2,    v = sigma'^2 b^2 / sigma^2.

    Ancestral sampling draws from it with ``x_0`` replaced by the model's ``E[x_0 | x_t]``.
    Then ``mu = (x_t + b^2 score) / a``: for VE (``a = 1``) this is the SMLD ancestral update
    ``x_{i-1} = x_i + (sigma_i^2 - sigma_{i-1}^2) s + sqrt(sigma_{i-1}^2 (sigma_i^2 -
    sigma_{i-1}^2) / sigma_i^2) z`` and for VP (``a^2 = 1 - beta_i``, ``b^2 = beta_i``) the DDPM
    update ``(x_i + beta_i s) / sqrt(1 - beta_i) + sigma_i z`` (Ho et al. 2020, Alg. 2).

    Args:
        variance: ``"posterior"`` (``v`` above: DDPM's ``beta_tilde``, SMLD's form) or
            ``"transition"`` (``v = b^2``: DDPM's ``sigma_i^2 = beta_i``, the VP form the paper
            writes in App. F, Eq. 47).
    """
    check_variance(variance)
    x0 = model.denoise(x, _batch(t, x), y)
    mean, var = ancestral_posterior(sde, x, x0, t, t_next, variance)
    return mean + var**0.5 * noise(x)


def check_variance(variance: str) -> None:
    """Raise ``ValueError`` unless ``variance`` is an ancestral variance of :data:`VARIANCES`."""
    if variance not in VARIANCES:
        raise ValueError(f"unknown ancestral variance {variance!r}; choose one of {list(VARIANCES)}")


def ancestral_posterior(
    sde: SDE, x: Tensor, x0: Tensor, t: Tensor, t_next: Tensor, variance: str = "posterior"
) -> tuple[Tensor, float]:
    """Mean and variance of ``q(x_{t_next} | x_t, x0)`` (see :func:`ancestral_step`)."""
    a, b = (float(c) for c in sde.transition(t_next, t))
    s_next, sigma_next = (float(c) for c in sde.marginal(t_next))
    sigma = float(sde.marginal(t)[1])
    mean = (b**2 * s_next * x0 + a * sigma_next**2 * x) / sigma**2
    var = (sigma_next * b / sigma) ** 2 if variance == "posterior" else b**2
    return mean, var


def probability_flow_step(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    t_next: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
) -> Tensor:
    """Euler step of the probability-flow ODE (Song et al. 2021, Eq. 13), a deterministic predictor."""
    return x + model.velocity(x, _batch(t, x), y) * (t_next - t).to(x.dtype)


PREDICTORS: dict[str, PredictorStep | None] = {
    "euler_maruyama": euler_maruyama_step,
    "reverse_diffusion": reverse_diffusion_step,
    "ancestral": ancestral_step,
    "probability_flow": probability_flow_step,
    "none": None,
}
"""Predictor steps by name for :func:`~scoresde.sampling.pc.pc`; ``"none"`` means corrector-only."""


def get_predictor(name: str) -> PredictorStep | None:
    """Look up a predictor step by name, with an error that lists the choices."""
    try:
        return PREDICTORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown predictor {name!r}; choose one of {list(PREDICTORS)}") from None


def run_predictor(
    step: PredictorStep,
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    **options: Any,
) -> Tensor:
    """Apply ``step`` along the decreasing grid ``ts`` (predictor-only sampling, 1 NFE per step)."""
    for i in range(len(ts) - 1):
        x = step(model, sde, x, ts[i], ts[i + 1], noise=noise, y=y, **options)
        if callback is not None:
            callback(i, ts[i + 1], x)
    return x


def euler_maruyama(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6; App. E).

    ``x_{i+1} = x_i + [f x_i - g^2 score(x_i, t_i)] (t_{i+1} - t_i) + g(t_i) sqrt(t_i - t_{i+1}) z``.
    Weak order 1; 1 NFE per step.
    """
    # The step of euler_maruyama_step, x (1 + f dt) - g^2 dt score + g sqrt|dt| z, with its
    # coefficients tabulated once on the grid (in x's dtype, as the step evaluates them).
    tx = ts.to(x.dtype)
    f, g = sde.drift_coef(tx[:-1]).double(), sde.diffusion(tx[:-1]).double()
    dt = (ts[1:] - ts[:-1]).to(x.dtype).double()
    a, b, c = (1.0 + f * dt).tolist(), (-(g**2) * dt).tolist(), (g * dt.abs().sqrt()).tolist()
    at = fixed_times(model, tx, x, y)
    t_out = ts.unbind()
    for i in range(len(ts) - 1):
        x = _noisy_step(at, "score", x, i, a[i], b[i], noise, c[i])
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def _noisy_step(
    at: FixedTimes, kind: str, x: Tensor, i: int, a: float, b: float, noise: NoiseSource, c: float
) -> Tensor:
    """``a x + b pred + c z`` with ``pred`` the prediction ``kind`` at ``x`` and ``times[i]``, and
    ``z`` the next draw of ``noise``: the conversion folded into the coefficients
    (``pred = a' out + b' x``, :meth:`FixedTimes.linear`) and ``c z`` drawn scaled
    (:func:`~scoresde.sampling.noise.scaled_draw`), then two in-place additions (equal to the
    written form within float rounding; the same draws)."""
    out, pa, pb = at.linear(kind, x, i)
    return scaled_draw(noise, x, c).add_(x, alpha=a + b * pb).add_(out, alpha=b * pa)


def reverse_diffusion(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Reverse-diffusion sampler (Song et al. 2021, App. E): :func:`reverse_diffusion_step` per step.

    Weak order 1; 1 NFE per step.
    """
    # reverse_diffusion_step with the transition of every step tabulated once.
    a, b = (v.double().tolist() for v in sde.transition(ts[1:], ts[:-1]))
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    for i in range(len(ts) - 1):
        x = _noisy_step(at, "score", x, i, 2.0 - a[i], b[i] ** 2, noise, b[i])
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x


def ancestral(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    noise: NoiseSource,
    y: Tensor | None = None,
    callback: Callback | None = None,
    variance: str = "posterior",
) -> Tensor:
    """Ancestral sampler (Song et al. 2021, App. F; DDPM / SMLD): :func:`ancestral_step` per step.

    Weak order 1; 1 NFE per step.  ``variance`` as in :func:`ancestral_step`.
    """
    check_variance(variance)
    # ancestral_step's posterior (ancestral_posterior) tabulated once on the grid.
    a, b = (v.double() for v in sde.transition(ts[1:], ts[:-1]))
    s_next, sigma_next = (v.double() for v in sde.marginal(ts[1:]))
    sigma = sde.marginal(ts[:-1])[1].double()
    c_x0 = (b**2 * s_next / sigma**2).tolist()
    c_x = (a * sigma_next**2 / sigma**2).tolist()
    std = (sigma_next * b / sigma if variance == "posterior" else b).tolist()
    at = fixed_times(model, ts, x, y)
    t_out = ts.unbind()
    for i in range(len(ts) - 1):
        x = _noisy_step(at, "x0", x, i, c_x[i], c_x0[i], noise, std[i])
        if callback is not None:
            callback(i, t_out[i + 1], x)
    return x

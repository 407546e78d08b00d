"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

The instantaneous change of variables (Chen et al. 2018) along the probability-flow ODE
``dx/dt = v(x, t)`` (Eq. 13) gives

    log p_eps(x(eps)) = log p_T(x(T)) + int_eps^T div v(x(t), t) dt        (App. D.2, Eq. 39)

so integrating the augmented state ``(x, delta)`` with ``d delta/dt = div v`` from ``eps`` to
``T`` yields the latent ``z = x(T)`` and ``log p_eps(x) = prior_logp(z) + delta(T)``.  The
divergence is exact (``D`` vector-Jacobian products) or the Hutchinson-Skilling estimate
``E[n^T (dv/dx) n]`` with Rademacher or Gaussian probes ``n`` held fixed along one solve.

How the eps truncation, dequantization and bits/dim are handled is described in
:mod:`scoresde.flow.dequantization`.  Batch independence: see :mod:`scoresde.flow.pf_ode` (per-sample
error norm, or per-sample step sizes).  The model must treat samples independently (no batch
statistics in the network).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._checks import check_batch, check_real_tensor, check_tolerances, guard_output
from scoresde._utils import append_dims, check_data
from scoresde.flow.dequantization import Quantization, likelihood_points
from scoresde.flow.integrators import Integrator, make_integrator, with_tolerances
from scoresde.flow.pf_ode import ADAPTIVE_METHODS, Clock
from scoresde.models.base import ScoreFunction
from scoresde.progress import Progress, make_progress
from scoresde.sde.base import SDE

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "LikelihoodResult",
    "divergence_exact",
    "divergence_hutchinson",
    "draw_probes",
    "log_likelihood",
]

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def divergence_exact(v: Tensor, x: Tensor) -> Tensor:
    """``div_x v = sum_i dv_i/dx_i`` by one vector-Jacobian product per dimension.

    The ``D`` products run as one vectorised backward pass (``is_grads_batched``); models whose
    operations do not support it fall back to a loop of ``D`` backward passes.

    Args:
        v: ``(B, *D)`` output computed from ``x`` with autograd.
        x: ``(B, *D)`` input that requires grad.

    Returns:
        ``(B,)``.  Exact; practical for small ``D``.
    """
    b = x.shape[0]
    d = x[0].numel()
    eye = torch.eye(d, dtype=v.dtype, device=v.device)
    basis = eye[:, None, :].expand(d, b, d).reshape(d, *v.shape)  # basis[i] = e_i for every sample
    try:
        (g,) = torch.autograd.grad(v, x, basis, retain_graph=True, is_grads_batched=True)
        return torch.einsum("ibi->b", g.reshape(d, b, d))
    except RuntimeError:
        pass
    vf = v.reshape(b, -1)
    div = torch.zeros(b, dtype=v.dtype, device=v.device)
    for i in range(d):
        (g,) = torch.autograd.grad(vf[:, i].sum(), x, retain_graph=True, allow_unused=True)
        if g is not None:
            div = div + g.reshape(b, -1)[:, i]
    return div


def divergence_hutchinson(v: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """Hutchinson-Skilling estimate ``mean_k n_k^T (dv/dx) n_k`` (Song et al. 2021, App. D.2).

    Args:
        v: ``(B, *D)`` output computed from ``x`` with autograd.
        x: ``(B, *D)`` input that requires grad.
        probes: ``(K, B, *D)`` probe vectors with ``E[n n^T] = I``.

    Returns:
        ``(B,)`` unbiased estimate of the divergence.
    """
    est = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for n in probes:
        (g,) = torch.autograd.grad((v * n).sum(), x, retain_graph=True, allow_unused=True)
        if g is not None:
            est = est + (g * n).reshape(x.shape[0], -1).sum(1)
    return est / probes.shape[0]


def draw_probes(
    like: Tensor, num: int, kind: str = "rademacher", generator: torch.Generator | None = None
) -> Tensor:
    """``num`` probe vectors shaped like ``like: (B, *D)``, returned as ``(num, B, *D)``.

    Rademacher probes (entries ``+-1``) give the lowest-variance Hutchinson estimate among
    probes with ``E[n n^T] = I`` and independent entries; Gaussian probes are the paper's other option.
    """
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose one of {list(PROBES)}")
    if int(num) < 1:
        raise ValueError(f"num_probes must be at least 1, got {num}")
    dev = generator.device if generator is not None else like.device
    shape = (int(num), *like.shape)
    if kind == "gaussian":
        n = torch.randn(shape, generator=generator, dtype=like.dtype, device=dev)
    else:
        n = torch.randint(0, 2, shape, generator=generator, device=dev).to(like.dtype) * 2 - 1
    return n.to(like.device)


@dataclass
class LikelihoodResult:
    """Output of :func:`log_likelihood`; per-sample tensors are ``(B,)``.

    Attributes:
        logp: log-likelihood in nats: ``log p_eps(x)`` for continuous data (plus the
            ``[0, eps]`` correction if asked), the dequantization bound on ``log P(x)`` for
            discrete data; averaged over draws.
        nfe: evaluations of the ODE's vector field (each one batched model call).
        z: ``(B, *D)`` latent ``x(T)`` of the first draw.
        prior_logp: ``log p_T(z)`` averaged over draws.
        delta_logp: ``int_eps^T div v dt`` averaged over draws.
        offset: the added terms (log-Jacobian of the data scaling, decoder terms), averaged.
        logp_draws: ``(S, B)`` per-draw estimates (their mean is ``logp``).
        bpd: ``-logp / (D ln 2)`` for discrete data, else ``None``.
        bpd_mean, bpd_se: mean of ``bpd`` over the batch and its standard error.
    """

    logp: Tensor
    nfe: int
    z: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    offset: Tensor
    logp_draws: Tensor
    bpd: Tensor | None = None
    bpd_mean: float | None = None
    bpd_se: float | None = None


def _check_inputs(model: ScoreFunction, sde: SDE, x: Tensor, quantization: Quantization | None) -> None:
    if quantization is not None:
        if not torch.is_tensor(x) or x.ndim < 2:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must have shape (B, *D) with at least 2 dimensions, got {shape}")
        quantization.check(x)
    else:
        check_real_tensor(x, "x")
        check_data(x)
    check_batch(x, "x")
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "velocity"):
        raise TypeError(f"model must be a ScoreFunction with a velocity method, got {type(model).__name__}")


def log_likelihood(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    *,
    y: Tensor | None = None,
    divergence: str = "exact",
    probe: str = "rademacher",
    num_probes: int = 1,
    probes: Tensor | None = None,
    generator: torch.Generator | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int | None = None,
    time_variable: str = "t",
    norm: str = "per_sample",
    quantization: Quantization | None = None,
    eps_correction: str = "none",
    draws: int = 1,
    prior_logp: Callable[[Tensor], Tensor] | None = None,
    integrator: Integrator | None = None,
    progress: bool | str | Progress = False,
) -> LikelihoodResult:
    """Per-sample log-likelihood by the probability-flow ODE (Song et al. 2021, App. D.2).

    Args:
        model: score model; its ``velocity`` is the ODE's drift.
        sde: the forward SDE; the ODE runs from ``sde.eps`` to ``sde.T``.
        x: ``(B, *D)`` data in the model's space, or integer bins when ``quantization`` is set
            (integer dtypes are computed in the default float dtype; pass float64-valued bins
            for float64).  The ODE is integrated in ``x``'s dtype.
        y: optional class labels ``(B,)`` for conditional models.
        divergence: ``exact`` or ``hutchinson``.
        probe: ``rademacher`` or ``gaussian`` (Hutchinson probes).
        num_probes: probes ``K`` averaged at each evaluation (fixed along one solve).
        probes: explicit probes ``(K, S * B, *D)`` (e.g. to reuse them across calls).
        generator: source of the probes, dequantization and decoder noise.
        rtol, atol: adaptive-solver tolerances: each sample's local error on ``x`` is measured
            against ``atol + rtol |x|`` (RMS over its entries) and on the log-density against
            ``atol`` nats (no rtol: the accumulator's scale is arbitrary); ``independent`` takes
            the RMS of the two, ``per_sample``/``batch`` their maximum.
        method: torchdiffeq method (``dopri5`` default; ``rk4``, ``euler``, ... with ``steps``).
        steps: number of steps of a fixed-step method.
        time_variable: ``t`` (default, the paper's) or ``log_sigma``; both integrate the same
            ODE to the same answer (see :mod:`scoresde.pf_ode`; ``t`` needed fewer steps in
            our measurements, docs/bench_likelihood.md).
        norm: ``per_sample`` (default: shared steps, every sample within tolerance),
            ``independent`` (per-sample step sizes, results batch-independent up to the model's own
            rounding, see :mod:`scoresde.pf_ode`; fewer
            evaluations; ``dopri5`` only) or ``batch`` (torchdiffeq's whole-batch RMS); see
            :mod:`scoresde.pf_ode`.
        quantization: declare discrete data (see :class:`~scoresde.dequantization.Quantization`);
            enables uniform dequantization and bits/dim.
        eps_correction: ``none`` (the paper's convention), ``gaussian`` or ``discretized``
            (see :mod:`scoresde.dequantization`).
        draws: Monte-Carlo draws of the dequantization / decoder noise, averaged (they are
            solved as one batch).
        prior_logp: ``z -> log p_T(z)`` replacing ``sde.prior_logp`` (e.g. the exact ``p_T`` of
            an oracle, whose ``p_T`` is not exactly the SDE's Gaussian prior).
        integrator: the ODE integrator (:class:`~scoresde.flow.integrators.Torchdiffeq`,
            :class:`~scoresde.flow.integrators.PerSample`); when given, ``rtol``, ``atol``,
            ``method``, ``steps`` and ``norm`` are not used (they name the same objects through
            :func:`~scoresde.flow.integrators.make_integrator`).  A scalar ``rtol`` of the
            integrator applies to ``x`` only (the log-density gets ``atol`` alone, see above).
        progress: report how far the ODE solve has come (the fraction of ``[eps, T]`` that the
            slowest sample has covered) and the NFE: a bar on a terminal, else a line every
            10% or 30 s (see :mod:`scoresde.progress`).

    Returns:
        A :class:`LikelihoodResult`.
    """
    _check_inputs(model, sde, x, quantization)
    if method in ADAPTIVE_METHODS:
        check_tolerances(rtol, atol)
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {list(DIVERGENCES)}")
    if quantization is not None and not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if time_variable == "log_sigma" and sde.eps <= 0:
        raise ValueError("time_variable='log_sigma' needs sde.eps > 0 (log sigma is -inf at t = 0)")

    points, offset = likelihood_points(x, sde, quantization, eps_correction, draws, generator)
    s_count, b = offset.shape
    xs = points.reshape(s_count * b, *x.shape[1:])
    ys = None if y is None else y.repeat(s_count)
    if divergence == "hutchinson":
        if probes is None:
            probes = draw_probes(xs, num_probes, probe, generator)
        elif probes.ndim != xs.ndim + 1 or probes.shape[1:] != xs.shape:
            raise ValueError(
                f"probes must have shape (K, {', '.join(map(str, xs.shape))}), got {tuple(probes.shape)}"
            )
        probes = probes.to(dtype=xs.dtype, device=xs.device)

    clock = Clock(sde, time_variable)
    nfe = 0
    u0, u1 = clock.u_of_t(sde.eps), clock.u_of_t(sde.T)
    own_bar = not isinstance(progress, Progress)
    bar = make_progress(progress, 1.0, "likelihood", unit="of [eps, T]")

    def field(u: Tensor, state: tuple[Tensor, Tensor], index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # u: scalar, or (B',) per sample; index: the samples in state (per-sample stepping).
        nonlocal nfe
        nfe += 1
        done = (float(torch.as_tensor(u).min()) - float(u0)) / (float(u1) - float(u0))
        bar.update_to(max(bar.n, min(1.0, done)), nfe=nfe)
        b_now = state[0].shape[0]
        t, dt_du = clock(u)
        t_b = t.to(xs.dtype).expand(b_now).to(xs.device)
        dt_du = dt_du.to(xs.dtype).expand(b_now).to(xs.device)
        y_now = ys if ys is None or index is None else ys[index]
        with torch.enable_grad():
            xg = state[0].detach().requires_grad_(True)
            v = model.velocity(xg, t_b, y_now)
            guard_output(v, xg, t_b, "log_likelihood", f"ODE evaluation {nfe}")
            if divergence == "exact":
                div = divergence_exact(v, xg)
            else:
                div = divergence_hutchinson(v, xg, probes if index is None else probes[:, index])
        return v.detach() * append_dims(dt_du, v.ndim), div.detach() * dt_du

    state0 = (xs, torch.zeros(s_count * b, dtype=xs.dtype, device=xs.device))
    if integrator is None:
        integrator = make_integrator(method, rtol=rtol, atol=atol, steps=steps, norm=norm, compact=True)
    # The log-density accumulator's scale is arbitrary (it is offset by the prior), so its
    # error is controlled in absolute nats: atol only, no rtol.
    if not isinstance(integrator.rtol, tuple):
        integrator = with_tolerances(integrator, (integrator.rtol, 0.0), integrator.atol)
    z, delta = integrator.solve(field, state0, u0, u1)
    bar.update_to(1.0, nfe=nfe)
    if own_bar:
        bar.close()
    prior = (sde.prior_logp if prior_logp is None else prior_logp)(z).reshape(s_count, b)
    delta = delta.reshape(s_count, b)
    logp_draws = prior + delta + offset
    logp = logp_draws.mean(0)
    result = LikelihoodResult(
        logp=logp,
        nfe=nfe,
        z=z.reshape(s_count, *x.shape)[0],
        prior_logp=prior.mean(0),
        delta_logp=delta.mean(0),
        offset=offset.mean(0),
        logp_draws=logp_draws,
    )
    if quantization is not None:
        bpd = -logp / (x[0].numel() * math.log(2))
        result.bpd = bpd
        result.bpd_mean = float(bpd.mean())
        result.bpd_se = float(bpd.std() / math.sqrt(b)) if b > 1 else float("nan")
    return result

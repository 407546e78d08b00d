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

from scoresde._core.checks import check_batch, check_data, check_real_tensor, check_tolerances, guard_output
from scoresde._core.progress import Progress, make_progress
from scoresde._core.tensors import append_dims
from scoresde.flow.dequantization import Quantization, likelihood_points
from scoresde.flow.divergence import (
    JACOBIAN_MODES,
    GaussianControlVariate,
    divergence_exact,
    hutchinson_terms,
    velocity_and_divergence,
)
from scoresde.flow.integrators import Integrator, make_integrator, with_tolerances
from scoresde.flow.pf_ode import ADAPTIVE_METHODS, Clock
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "GaussianControlVariate",
    "LikelihoodResult",
    "divergence_exact",
    "divergence_hutchinson",
    "draw_probes",
    "log_likelihood",
]

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def divergence_hutchinson(v: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """Hutchinson-Skilling estimate ``mean_k n_k^T (dv/dx) n_k`` (Song et al. 2021, App. D.2).

    The ``K`` vector-Jacobian products run as one vectorised backward pass (a loop where the
    model's operations do not batch).

    Args:
        v: ``(B, *D)`` output computed from ``x`` with autograd.
        x: ``(B, *D)`` input that requires grad.
        probes: ``(K, B, *D)`` probe vectors with ``E[n n^T] = I``.

    Returns:
        ``(B,)`` unbiased estimate of the divergence.
    """
    k, b = probes.shape[0], x.shape[0]
    try:
        (g,) = torch.autograd.grad(v, x, probes, retain_graph=True, is_grads_batched=True)
    except RuntimeError:
        g = torch.stack([torch.autograd.grad((v * n).sum(), x, retain_graph=True)[0] for n in probes])
    return (g * probes).reshape(k, b, -1).sum(-1).mean(0)


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
            discrete data; averaged over draws and probes.
        nfe: evaluations of the ODE's vector field (each one batched model call), pilots included.
        z: ``(B, *D)`` latent ``x(T)`` of the first draw.
        prior_logp: ``log p_T(z)`` averaged over draws.
        delta_logp: ``int_eps^T div v dt`` averaged over draws and probes.
        offset: the added terms (log-Jacobian of the data scaling, decoder terms), averaged.
        logp_draws: ``(S, B)`` per-draw estimates (their mean is ``logp``).
        logp_probes: ``(S, K, B)`` per-draw, per-probe estimates (Hutchinson only).
        bpd: ``-logp / (D ln 2)`` for discrete data, else ``None``.
        bpd_mean, bpd_se: mean of ``bpd`` over the batch and its standard error across the points
            (their spread as a sample of the data, Monte-Carlo noise included).
        mc_se: Monte-Carlo standard error of the batch mean (bits/dim for discrete data, else
            nats): the spread the probes and dequantization draws alone would give the mean if
            the computation were repeated with fresh noise on the same points.  From the
            replicates of this solve where there are at least two per point, else from the
            pilot (``target_se``); ``0.0`` when nothing is random, ``nan`` when unknown.
        solver_error: estimated bound on the solver's error of the batch mean, same units
            (``target_se`` only: mean absolute difference between the pilot solves at the
            chosen tolerance and at a tolerance ten times tighter).
        plan: what ``target_se`` chose (``rtol``, ``atol``, ``divergence``, ``num_probes``,
            ``draws``, ``pilot_points``, ``pilot_nfe``) and the pilot's estimates behind it
            (``var_point``, ``var_probe``: per-point variances of one replicate in nats^2;
            ``solver_error``), else ``None``; pass it back as ``plan`` for another batch.
    """

    logp: Tensor
    nfe: int
    z: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    offset: Tensor
    logp_draws: Tensor
    logp_probes: Tensor | None = None
    bpd: Tensor | None = None
    bpd_mean: float | None = None
    bpd_se: float | None = None
    mc_se: float | None = None
    solver_error: float | None = None
    plan: dict | None = None


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
    time_variable: str | None = None,
    norm: str = "per_sample",
    quantization: Quantization | None = None,
    eps_correction: str = "none",
    draws: int = 1,
    prior_logp: Callable[[Tensor], Tensor] | None = None,
    integrator: Integrator | None = None,
    progress: bool | str | Progress = False,
    jacobian: str = "auto",
    control_variate: GaussianControlVariate | str | None = None,
    target_se: float | None = None,
    target_points: int | None = None,
    pilot_points: int = 32,
    solver_fraction: float = 0.25,
    plan: dict | None = None,
) -> LikelihoodResult:
    """Per-sample log-likelihood by the probability-flow ODE (Song et al. 2021, App. D.2).

    Args:
        model: score model; its ``velocity`` is the ODE's drift.
        sde: the forward SDE; the ODE runs from ``sde.eps`` to ``sde.T``.
        x: ``(B, *D)`` data in the model's space, or integer bins when ``quantization`` is set
            (integer dtypes are computed in the default float dtype; pass float64-valued bins
            for float64).  The ODE is integrated in ``x``'s dtype.
        y: optional class labels ``(B,)`` for conditional models.
        divergence: ``exact`` or ``hutchinson``; with ``target_se`` also ``auto`` (see below).
        probe: ``rademacher`` or ``gaussian`` (Hutchinson probes).
        num_probes: probes ``K`` per point (fixed along one solve); each has its own
            log-density accumulator, so the ``K`` estimates are kept (``logp_probes``) and their
            spread gives the Monte-Carlo error.
        probes: explicit probes ``(K, S * B, *D)`` (e.g. to reuse them across calls).
        generator: source of the probes, dequantization and decoder noise.
        rtol, atol: adaptive-solver tolerances: each sample's local error on ``x`` is measured
            against ``atol + rtol |x|`` (RMS over its entries) and on the log-density against
            ``atol`` nats (no rtol: the accumulator's scale is arbitrary); ``independent`` takes
            the RMS of the two, ``per_sample``/``batch`` their maximum.
        method: torchdiffeq method (``dopri5`` default; ``rk4``, ``euler``, ... with ``steps``).
        steps: number of steps of a fixed-step method.
        time_variable: ``t`` (the paper's) or ``log_sigma``; both integrate the same ODE to the
            same answer (see :mod:`scoresde.pf_ode`).  ``None`` (default) takes the SDE's
            ``pf_ode_clock`` (``t`` for the continuous SDEs, ``log_sigma`` for tabulated ones).
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
            10% or 30 s (see :mod:`scoresde._core.progress`).
        jacobian: how Jacobian products are formed (see :mod:`scoresde.flow.divergence`):
            ``backward`` (vector-Jacobian products), ``forward`` (``torch.func.jvp`` under
            ``vmap``, value and products in one pass; an error if the model does not support
            it) or ``auto`` (forward mode for exact divergences with ``D <=``
            :data:`~scoresde.flow.divergence.FORWARD_MAX_DIM`, falling back to backward mode).
        control_variate: Hutchinson only: a
            :class:`~scoresde.flow.divergence.GaussianControlVariate` (the exact divergence of a
            Gaussian data model's flow subtracted inside the estimate and added back exactly:
            unbiased, lower variance when the data are close to that Gaussian), or ``"gaussian"``
            to fit one to ``x`` (in the model's space, after dequantization).
        target_se: choose the tolerances, the divergence estimator and the number of probes /
            draws for this precision of the batch mean, in bits/dim for discrete data, else
            nats per point.  The rule: (1) a pilot on ``pilot_points`` points spread over the
            batch is solved at tolerances ``10^-1, 10^-2, ...`` and each also at ten times tighter,
            with the same random draws, so that each difference is the solver's alone; at the first
            decade whose mean absolute difference is at most ``solver_fraction * target_se``, the
            tolerance is placed between it and the decade before on the power law through their
            two differences (the solver error's estimate is that law's value there) -- the
            error of an adaptive Runge-Kutta solve falls about in proportion to its tolerance, so
            the difference measures the looser solve's error; when two decades both fail and the
            law falls at least half a decade per decade, the tolerance is extrapolated on it (at
            most two decades further) rather than piloted at tighter tolerances.  (2) From the
            pilot's replicates (one more pilot solve at the loose tolerance 1e-1 with four probes
            and, for noisy points, two draws per point; the tolerance pilot solves one replicate
            per point, the same noise at every tolerance) the
            per-point variances of the probe and of the dequantization noise are estimated, and
            the fewest probes (and draws) are taken whose Monte-Carlo standard error of the mean
            is at most ``target_se`` (with a 25% margin for the pilot's own noise).  (3) With
            ``divergence="auto"`` the exact divergence (``D`` products per evaluation) is taken
            when it costs fewer products than the probes needed, else Hutchinson.  The result
            reports ``mc_se``, ``solver_error`` and the ``plan``; ``rtol``, ``atol``,
            ``num_probes`` are then not used, ``draws`` is a minimum.  The spread of the points
            themselves (``bpd_se``) is not part of the target: it is a property of the data, not
            of the computation.
        target_points: the number of points of the mean that ``target_se`` refers to, when this
            batch is one of several of about equal size (default: this batch).  The batch then
            gets ``target_se * sqrt(target_points / B)`` for its Monte-Carlo part (independent
            batches add in variance) and ``solver_fraction * target_se`` for its solver error
            (a bias that does not average out).
        pilot_points: points of the pilot (``target_se``).
        solver_fraction: the solver's error budget as a fraction of ``target_se`` (default
            0.25: a bias that small adds at most 3% to the total error in quadrature).
        plan: the ``plan`` of an earlier call with the same ``target_se`` and ``target_points``
            (another batch of the same data): its choices are reused without a pilot, and its
            variance and solver-error estimates stand for this batch where its own replicates
            do not suffice.  The number of probes does not depend on the batch size (the
            Monte-Carlo target of a batch scales with ``sqrt(target_points / B)``).

    Returns:
        A :class:`LikelihoodResult`.
    """
    _check_inputs(model, sde, x, quantization)
    if jacobian not in JACOBIAN_MODES:
        raise ValueError(f"unknown jacobian {jacobian!r}; choose one of {list(JACOBIAN_MODES)}")
    allowed = (*DIVERGENCES, "auto") if target_se is not None else DIVERGENCES
    if divergence not in allowed:
        hint = " ('auto' needs target_se)" if divergence == "auto" else ""
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {list(allowed)}{hint}")
    if time_variable is None:
        time_variable = getattr(sde, "pf_ode_clock", "t")
    if quantization is not None and not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if isinstance(control_variate, str):
        if control_variate != "gaussian":
            raise ValueError(
                f"unknown control_variate {control_variate!r}; use 'gaussian' or a GaussianControlVariate"
            )
        pts, _ = likelihood_points(x, sde, quantization, eps_correction, 1, torch.Generator().manual_seed(0))
        control_variate = GaussianControlVariate.fit(pts[0])
    opts = dict(
        y=y,
        probe=probe,
        rtol=rtol,
        atol=atol,
        method=method,
        steps=steps,
        time_variable=time_variable,
        norm=norm,
        quantization=quantization,
        eps_correction=eps_correction,
        prior_logp=prior_logp,
        integrator=integrator,
        progress=progress,
        jacobian=jacobian,
        control_variate=control_variate,
    )
    if target_se is None:
        if method in ADAPTIVE_METHODS:
            check_tolerances(rtol, atol)
        opts.update(divergence=divergence, num_probes=num_probes, probes=probes, draws=draws)
        return _solve(model, sde, x, generator=generator, **opts)
    return _at_target(
        model,
        sde,
        x,
        generator,
        opts,
        divergence,
        draws,
        target_se,
        target_points,
        pilot_points,
        solver_fraction,
        plan,
    )


def _solve(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    *,
    y: Tensor | None,
    divergence: str,
    probe: str,
    num_probes: int,
    probes: Tensor | None,
    generator: torch.Generator | None,
    rtol: float,
    atol: float,
    method: str,
    steps: int | None,
    time_variable: str,
    norm: str,
    quantization: Quantization | None,
    eps_correction: str,
    draws: int,
    prior_logp: Callable[[Tensor], Tensor] | None,
    integrator: Integrator | None,
    progress: bool | str | Progress,
    jacobian: str,
    control_variate: GaussianControlVariate | None,
) -> LikelihoodResult:
    """One solve of the augmented ODE (the body of :func:`log_likelihood`)."""
    if time_variable == "log_sigma" and sde.eps <= 0:
        raise ValueError("time_variable='log_sigma' needs sde.eps > 0 (log sigma is -inf at t = 0)")
    points, offset = likelihood_points(x, sde, quantization, eps_correction, draws, generator)
    s_count, b = offset.shape
    xs = points.reshape(s_count * b, *x.shape[1:])
    ys = None if y is None else y.repeat(s_count)
    hutchinson = divergence == "hutchinson"
    if hutchinson:
        if probes is None:
            probes = draw_probes(xs, num_probes, probe, generator)
        elif probes.ndim != xs.ndim + 1 or probes.shape[1:] != xs.shape:
            raise ValueError(
                f"probes must have shape (K, {', '.join(map(str, xs.shape))}), got {tuple(probes.shape)}"
            )
        probes = probes.to(dtype=xs.dtype, device=xs.device)
    probe_mode = "forward" if jacobian == "forward" else "backward"

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

        def velocity(z: Tensor) -> Tensor:
            return model.velocity(z, t_b, y_now)

        if hutchinson:
            n = probes if index is None else probes[:, index]
            v, terms = hutchinson_terms(velocity, state[0], n, probe_mode)
            if control_variate is not None:
                terms = control_variate.correct(sde, t_b, n, terms)
            div = terms.T  # (B', K): one accumulator per probe
        else:
            v, div = velocity_and_divergence(velocity, state[0], jacobian)
        guard_output(v, state[0], t_b, "log_likelihood", f"ODE evaluation {nfe}")
        return v * append_dims(dt_du, v.ndim), div * append_dims(dt_du, div.ndim)

    k = probes.shape[0] if hutchinson else 1
    acc_shape = (s_count * b, k) if hutchinson else (s_count * b,)
    state0 = (xs, torch.zeros(acc_shape, dtype=xs.dtype, device=xs.device))
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
    logp_probes = None
    if hutchinson:
        delta_k = delta.reshape(s_count, b, k).permute(0, 2, 1)  # (S, K, B)
        logp_probes = prior[:, None] + delta_k + offset[:, None]
        delta = delta_k.mean(1)
    else:
        delta = delta.reshape(s_count, b)
    logp_draws = prior + delta + offset
    logp = logp_draws.mean(0)
    random = hutchinson or quantization is not None or eps_correction != "none"
    unit = 1.0 / (x[0].numel() * math.log(2)) if quantization is not None else 1.0
    result = LikelihoodResult(
        logp=logp,
        nfe=nfe,
        z=z.reshape(s_count, *x.shape)[0],
        prior_logp=prior.mean(0),
        delta_logp=delta.mean(0),
        offset=offset.mean(0),
        logp_draws=logp_draws,
        logp_probes=logp_probes,
        mc_se=_replicate_se(
            logp_draws, logp_probes, quantization is not None or eps_correction != "none", unit
        )
        if random
        else 0.0,
    )
    if quantization is not None:
        bpd = -logp / (x[0].numel() * math.log(2))
        result.bpd = bpd
        result.bpd_mean = float(bpd.mean())
        result.bpd_se = float(bpd.std() / math.sqrt(b)) if b > 1 else float("nan")
    return result


def _replicate_se(logp_draws: Tensor, logp_probes: Tensor | None, noisy_points: bool, unit: float) -> float:
    """Monte-Carlo standard error of the batch mean from the replicates of each point, or nan.

    Draws are independent replicates of a point (each has its own probes); without several draws,
    the probes of one draw are, unless the points themselves are noisy (dequantization).
    """
    s_count, b = logp_draws.shape
    if s_count >= 2:
        var = logp_draws.double().var(0) / s_count
    elif logp_probes is not None and logp_probes.shape[1] >= 2 and not noisy_points:
        var = logp_probes[0].double().var(0) / logp_probes.shape[1]
    else:
        return float("nan")
    return float(var.sum().sqrt()) / b * unit


TOLERANCE_EXPONENTS = (1.0, 2.0, 3.0, 4.0, 5.0)  # pilot tolerances 10^-e of target_se
PILOT_PROBES = 4
VARIANCE_TOLERANCE = 1e-1  # tolerance of the pilot's replicate solve (variances)
SE_MARGIN = 1.25  # variance margin for the pilot's own estimation noise


def _at_target(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    generator: torch.Generator | None,
    opts: dict,
    divergence: str,
    draws: int,
    target_se: float,
    target_points: int | None,
    pilot_points: int,
    solver_fraction: float,
    plan: dict | None = None,
) -> LikelihoodResult:
    """``log_likelihood(..., target_se=...)``: pilot, plan, then the solve (rule: see its docstring)."""
    if not (isinstance(target_se, int | float) and math.isfinite(target_se) and target_se > 0):
        raise ValueError(f"target_se must be a positive number, got {target_se!r}")
    if not 0 < solver_fraction < 1:
        raise ValueError(f"solver_fraction must be in (0, 1), got {solver_fraction!r}")
    if opts["integrator"] is not None or opts["method"] not in ADAPTIVE_METHODS:
        raise ValueError(
            "target_se chooses the tolerances of an adaptive method; pass no integrator or steps"
        )
    if int(pilot_points) < 2:
        raise ValueError(f"pilot_points must be at least 2, got {pilot_points}")
    b, d = x.shape[0], x[0].numel()
    total = b if target_points is None else int(target_points)
    if total < b:
        raise ValueError(f"target_points ({total}) must be at least the batch size ({b})")
    unit = 1.0 / (d * math.log(2)) if opts["quantization"] is not None else 1.0
    mc_target = target_se * math.sqrt(total / b)
    solver_budget = solver_fraction * target_se
    noisy_points = opts["quantization"] is not None or opts["eps_correction"] != "none"
    pilot_div = "exact" if divergence == "exact" else "hutchinson"
    if plan is not None:
        if plan.get("target_se") != float(target_se) or plan.get("target_points") != total:
            raise ValueError("plan was made for another target_se or target_points")
        final = _solve(
            model,
            sde,
            x,
            generator=generator,
            **dict(
                opts,
                divergence=plan["divergence"],
                num_probes=max(1, plan["num_probes"]),
                probes=None,
                draws=plan["draws"],
                rtol=plan["rtol"],
                atol=plan["atol"],
            ),
        )
        return _finish(final, dict(plan, pilot_nfe=0), unit)
    seed = int(
        torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu")
    )

    # (1) Pilot: the loosest tolerance whose error (against ten times tighter) is in budget.
    idx = torch.linspace(0, b - 1, min(b, int(pilot_points))).round().long().unique().to(x.device)
    pilot_opts = dict(opts, progress=False, probes=None)
    # The tolerance pilot solves one replicate per point (the same noise at every tolerance);
    # the variances come from one loose solve with several replicates (see below).
    pilot_opts.update(
        y=None if opts["y"] is None else opts["y"][idx], divergence=pilot_div, num_probes=1, draws=draws
    )
    pilot_nfe, solves = 0, {}

    def pilot(e: float) -> LikelihoodResult:
        nonlocal pilot_nfe
        if e not in solves:
            tol = 10.0**-e
            g = torch.Generator(device=generator.device if generator else "cpu").manual_seed(seed)
            solves[e] = _solve(model, sde, x[idx], generator=g, **dict(pilot_opts, rtol=tol, atol=tol))
            pilot_nfe += solves[e].nfe
        return solves[e]

    def error(e: float) -> float:
        return float((pilot(e).logp - pilot(e + 1.0).logp).abs().double().mean()) * unit

    chosen, solver_error, previous = TOLERANCE_EXPONENTS[-1], float("nan"), None
    for e in TOLERANCE_EXPONENTS:
        solver_error = error(e)
        if solver_error <= solver_budget:
            chosen = e
            if previous is not None and previous > solver_budget and solver_error > 0:
                # Between the failing decade and this one: the power law through both errors.
                per_decade = math.log10(previous / solver_error)
                if per_decade > 0:
                    chosen = min(e, max(e - 1.0, e - math.log10(solver_budget / solver_error) / per_decade))
                    solver_error = previous * 10.0 ** (-per_decade * (chosen - e + 1.0))
            break
        if previous is not None and solver_error < previous:
            # Two decades measured and the error falls at least half a decade per decade: extrapolate
            # on their power law (at most two decades) instead of solving at tighter tolerances.
            per_decade = math.log10(previous / solver_error)
            if per_decade >= 0.5:
                chosen = e + math.log10(solver_error / solver_budget) / per_decade
                if chosen <= e + 2.0:
                    solver_error = solver_budget
                    break
        previous = solver_error
    chosen = min(chosen, TOLERANCE_EXPONENTS[-1])
    # Variances from replicates (PILOT_PROBES probes, two draws for noisy points) at a loose
    # tolerance: each replicate's own solver error only adds to the spread it measures, so the
    # probes and draws are, if anything, over-counted.
    random = pilot_div == "hutchinson" or noisy_points
    if random:
        g = torch.Generator(device=generator.device if generator else "cpu").manual_seed(seed + 1)
        ref = _solve(
            model,
            sde,
            x[idx],
            generator=g,
            **dict(
                pilot_opts,
                num_probes=PILOT_PROBES,
                draws=max(draws, 2) if noisy_points else 1,
                rtol=VARIANCE_TOLERANCE,
                atol=VARIANCE_TOLERANCE,
            ),
        )
        pilot_nfe += ref.nfe

    # (2) Variances per point of one replicate: dequantization (between draws) and probe (within).
    var_probe = 0.0
    if random and ref.logp_probes is not None:
        var_probe = float(ref.logp_probes.double().var(1).mean())
    var_point = 0.0
    if noisy_points:
        means = ref.logp_draws.double()  # (S, B): each the mean of PILOT_PROBES probes (or exact)
        k0 = PILOT_PROBES if ref.logp_probes is not None else 1
        var_point = max(0.0, float(means.var(0).mean()) - var_probe / k0)
    budget = b * (mc_target / unit) ** 2 / SE_MARGIN  # mean per-point variance allowed

    def plan_for(estimator: str) -> tuple[int, int]:
        if estimator == "exact" or var_probe == 0.0:
            return max(draws, math.ceil(var_point / budget)), 1
        # Half the budget to the points' own noise at most, the rest to the probes.
        s_count = max(draws, math.ceil(2 * var_point / budget)) if var_point > budget / 2 else draws
        left = budget - var_point / s_count
        return s_count, max(1, math.ceil(var_probe / (s_count * left)))

    if divergence == "auto":
        s_e, _ = plan_for("exact")
        s_h, k_h = plan_for("hutchinson")
        divergence = "exact" if s_e * (1 + d) <= s_h * (1 + k_h) else "hutchinson"
    s_count, k = plan_for(divergence)
    tol = 10.0**-chosen
    plan = {
        "target_se": float(target_se),
        "target_points": total,
        "rtol": tol,
        "atol": tol,
        "divergence": divergence,
        "num_probes": k if divergence == "hutchinson" else 0,
        "draws": s_count,
        "pilot_points": int(idx.numel()),
        "pilot_nfe": pilot_nfe,
        "units": "bits/dim" if unit != 1.0 else "nats",
        "var_point": var_point,
        "var_probe": var_probe,
        "solver_error": solver_error,
    }
    final = _solve(
        model,
        sde,
        x,
        generator=generator,
        **dict(opts, divergence=divergence, num_probes=k, probes=None, draws=s_count, rtol=tol, atol=tol),
    )
    final.nfe += pilot_nfe
    return _finish(final, plan, unit)


def _finish(final: LikelihoodResult, plan: dict, unit: float) -> LikelihoodResult:
    """Attach the plan, the solver-error estimate and (where the solve's own replicates do not
    suffice) the Monte-Carlo SE from the plan's per-point variances (nats^2)."""
    b = final.logp.shape[0]
    if not math.isfinite(final.mc_se):
        s_count, k = plan["draws"], max(1, plan["num_probes"])
        var = plan["var_point"] / s_count
        if plan["divergence"] == "hutchinson":
            var += plan["var_probe"] / (s_count * k)
        final.mc_se = math.sqrt(var / b) * unit
    final.solver_error = plan["solver_error"]
    final.plan = plan
    return final

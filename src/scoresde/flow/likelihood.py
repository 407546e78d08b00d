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
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from scoresde._core.checks import check_batch, check_data, check_real_tensor, guard_output
from scoresde._core.progress import Progress, make_progress
from scoresde._core.tensors import append_dims
from scoresde.flow.dequantization import Quantization, likelihood_points
from scoresde.flow.divergence import (
    DIVERGENCES,
    PROBES,
    Exact,
    GaussianControlVariate,
    Hutchinson,
    divergence_exact,
    hutchinson_terms,
    velocity_and_divergence,
)
from scoresde.flow.integrators import AdaptiveIntegrator, FixedStepIntegrator, Integrator, with_tolerances
from scoresde.flow.pf_ode import Clock, default_time_variable
from scoresde.flow.planner import LikelihoodPlan, PrecisionTarget, make_plan
from scoresde.models.base import ScoreFunction, check_model_sde
from scoresde.sde.base import SDE

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "Exact",
    "GaussianControlVariate",
    "Hutchinson",
    "LikelihoodOptions",
    "LikelihoodPlan",
    "LikelihoodResult",
    "PrecisionTarget",
    "divergence_exact",
    "divergence_hutchinson",
    "draw_probes",
    "log_likelihood",
]


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


@dataclass(frozen=True)
class LikelihoodOptions:
    """How the likelihood treats the data and the ends of the ODE (the rarely changed settings).

    Attributes:
        time_variable: the integration variable: ``t`` (the paper's) or ``log_sigma``; both
            integrate the same ODE to the same answer (see :mod:`scoresde.flow.pf_ode`).
            ``None`` (default, as in :func:`~scoresde.flow.latent.encode`) takes the SDE's
            ``pf_ode_clock`` (:func:`~scoresde.flow.pf_ode.default_time_variable`).
        eps_correction: ``none`` (the paper's convention), ``gaussian`` or ``discretized``
            (see :mod:`scoresde.flow.dequantization`).
        draws: Monte-Carlo draws of the dequantization / decoder noise, averaged (solved as one
            batch); with ``target_se`` a minimum.
        prior_logp: ``z -> log p_T(z)`` replacing ``sde.prior_logp`` (e.g. the exact ``p_T`` of
            an oracle, whose ``p_T`` is not exactly the SDE's Gaussian prior).
    """

    time_variable: str | None = None
    eps_correction: str = "none"
    draws: int = 1
    prior_logp: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.draws, int) or isinstance(self.draws, bool) or self.draws < 1:
            raise ValueError(f"draws must be an integer >= 1, got {self.draws!r}")


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
            (``target_se`` only: the planner's bound ``|mean difference| + 2 s.e.`` between
            pilot solves at two accuracy levels, see :mod:`scoresde.flow.planner`).
        plan: what ``target_se`` chose and the pilot's estimates behind it
            (:class:`~scoresde.flow.planner.LikelihoodPlan`), else ``None``; pass it back as
            ``plan`` for another batch.
        correction: the multilevel correction added to every point's ``logp`` (nats; a
            multilevel plan, the default of fixed-step ``target_se`` plans), else ``None``: the mean of
            ``logp`` is the fine level's, each point keeps its coarse solve's own error.
        correction_se: its standard error (same units as ``mc_se``, which includes it in
            quadrature), else ``None``.
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
    plan: LikelihoodPlan | None = None
    correction: float | None = None
    correction_se: float | None = None


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


TARGET_SE_INTEGRATOR = FixedStepIntegrator("rk4", 1)
"""The integrator of ``log_likelihood(target_se=...)`` when none is given: ``rk4`` whose number of
equal steps (of the ``log_sigma`` clock) the planner chooses, with the multilevel correction
(:mod:`scoresde.flow.planner`)."""


def log_likelihood(
    model: ScoreFunction,
    sde: SDE | None,
    x: Tensor,
    *,
    y: Tensor | None = None,
    integrator: Integrator | None = None,
    divergence: str | Exact | Hutchinson = "exact",
    quantization: Quantization | None = None,
    options: LikelihoodOptions | None = None,
    generator: torch.Generator | None = None,
    target_se: float | PrecisionTarget | None = None,
    plan: LikelihoodPlan | None = None,
    progress: bool | str | Progress = False,
) -> LikelihoodResult:
    """Per-sample log-likelihood by the probability-flow ODE (Song et al. 2021, App. D.2).

    Two parts: a solve of the augmented ODE configured by ``integrator`` and ``divergence``,
    and, with ``target_se``, the precision planner (:mod:`scoresde.flow.planner`) that chooses
    them first.

    Args:
        model: score model; its ``velocity`` is the ODE's drift.
        sde: the forward SDE (``None``: ``model.sde``; must agree with it, as in
            :func:`scoresde.sample`); the ODE runs from ``sde.eps`` to ``sde.T``.
        x: ``(B, *D)`` data in the model's space, or integer bins when ``quantization`` is set
            (integer dtypes are computed in the default float dtype; pass float64-valued bins
            for float64).  The ODE is integrated in ``x``'s dtype.
        y: optional class labels ``(B,)`` for conditional models.
        integrator: how the ODE is solved (default
            :class:`~scoresde.flow.integrators.AdaptiveIntegrator`: ``dopri5`` at
            ``rtol = atol = 1e-5``, every sample within tolerance); also
            :class:`~scoresde.flow.integrators.PerSample` (per-sample step sizes: results
            batch-independent up to the model's own rounding) or
            :class:`~scoresde.flow.integrators.FixedStepIntegrator`.  Each sample's local error
            on ``x`` is measured against ``atol + rtol |x|`` and on the log-density against
            ``atol`` nats (no rtol: the accumulator's scale is arbitrary).  With ``target_se``
            the planner replaces the tolerances of an adaptive integrator or the steps of a
            fixed-step one, and the default is :data:`TARGET_SE_INTEGRATOR` (``rk4`` on equal
            steps of the ``log_sigma`` clock unless ``options.time_variable`` names another:
            on the digits benchmark it reaches the target in a third of the adaptive plan's
            time, ``benchmarks/likelihood_target_se.py``).
        divergence: :class:`~scoresde.flow.divergence.Exact` (``"exact"``, default) or
            :class:`~scoresde.flow.divergence.Hutchinson` (``"hutchinson"``: one Rademacher
            probe); with ``target_se`` also ``"auto"`` (the cheaper, see the planner).
        quantization: declare discrete data (see :class:`~scoresde.flow.dequantization.Quantization`);
            enables uniform dequantization and bits/dim.
        options: time variable, eps correction, dequantization draws, prior (see
            :class:`LikelihoodOptions`).
        generator: source of the probes, dequantization and decoder noise.
        target_se: a standard error of the batch mean (a float, in bits/dim for discrete data,
            else nats per point, or a :class:`~scoresde.flow.planner.PrecisionTarget`): the
            planner chooses the tolerance, the estimator and the numbers of probes and draws
            (the rule: :mod:`scoresde.flow.planner`).  The result reports ``mc_se``,
            ``solver_error`` and the ``plan``.  With a fixed-step integrator (the default) the
            batch is solved at a coarse number of steps and its mean corrected from the pilot
            (multilevel Monte Carlo, Giles 2008; ``PrecisionTarget(se, multilevel=False)``:
            the plain plan, whose own steps meet the solver budget).  The spread of the points themselves
            (``bpd_se``) is not part of the target: it is a property of the data.
        plan: the ``plan`` of an earlier call with the same target (another batch of the same
            data): its choices are reused without a pilot, and its variance and solver-error
            estimates stand for this batch where its own replicates do not suffice; a
            multilevel plan's stored correction is added to this batch too (its s.e. then
            counts this batch's own deviation from the data's mean, see
            :meth:`~scoresde.flow.planner.LikelihoodPlan.correction_se`).
        progress: report how far the ODE solve has come (the fraction of ``[eps, T]`` covered)
            and the NFE: a bar on a terminal, else a line every 10% or 30 s (see
            :mod:`scoresde._core.progress`).

    Returns:
        A :class:`LikelihoodResult`.
    """
    sde = check_model_sde(model, sde) if isinstance(model, torch.nn.Module) and hasattr(model, "sde") else sde
    if sde is None:
        raise TypeError("sde is None and the model has no sde")
    _check_inputs(model, sde, x, quantization)
    opts = options or LikelihoodOptions()
    if integrator is None and target_se is not None:
        integrator = TARGET_SE_INTEGRATOR
        if opts.time_variable is None:
            opts = replace(opts, time_variable="log_sigma")
    integrator = integrator or AdaptiveIntegrator()
    if isinstance(divergence, str):
        allowed = (*DIVERGENCES, "auto") if target_se is not None else DIVERGENCES
        if divergence not in allowed:
            hint = " ('auto' needs target_se)" if divergence == "auto" else ""
            raise ValueError(f"unknown divergence {divergence!r}; choose one of {list(allowed)}{hint}")
    elif not isinstance(divergence, Exact | Hutchinson):
        raise TypeError(f"divergence must be 'exact', 'hutchinson', Exact or Hutchinson, got {divergence!r}")
    time_variable = opts.time_variable or default_time_variable(sde)
    if quantization is not None and not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    hutch = divergence if isinstance(divergence, Hutchinson) else Hutchinson()
    exact = divergence if isinstance(divergence, Exact) else Exact()
    control_variate = hutch.control_variate
    if isinstance(control_variate, str):
        pts, _ = likelihood_points(
            x, sde, quantization, opts.eps_correction, 1, torch.Generator().manual_seed(0)
        )
        control_variate = GaussianControlVariate.fit(pts[0])

    def solve(
        xs: Tensor,
        ys: Tensor | None,
        how: Exact | Hutchinson,
        draws: int,
        solver: Integrator,
        g: torch.Generator | None,
        bar: bool | str | Progress,
    ) -> LikelihoodResult:
        return _solve(
            model, sde, xs, ys, how, control_variate, solver, quantization, opts, time_variable, draws, g, bar
        )

    if target_se is None:
        if plan is not None:
            raise ValueError("plan is the output of target_se; pass it together with the same target_se")
        how = exact if not isinstance(divergence, Hutchinson) and divergence != "hutchinson" else hutch
        return solve(x, y, how, opts.draws, integrator, generator, progress)

    # The planner: pilot solves on a few points, then the solve it chose.
    target = target_se if isinstance(target_se, PrecisionTarget) else PrecisionTarget(float(target_se))
    if not isinstance(integrator, FixedStepIntegrator) and not hasattr(integrator, "rtol"):
        raise ValueError(
            "target_se chooses the tolerances of an adaptive integrator or the steps of a "
            f"FixedStepIntegrator; got {type(integrator).__name__}"
        )
    b, d = x.shape[0], x[0].numel()
    unit = 1.0 / (d * math.log(2)) if quantization is not None else 1.0
    noisy_points = quantization is not None or opts.eps_correction != "none"
    kind = (
        divergence
        if isinstance(divergence, str)
        else ("exact" if isinstance(divergence, Exact) else "hutchinson")
    )

    def estimator(name: str, k: int) -> Exact | Hutchinson:
        if name == "exact":
            return exact
        return Hutchinson(k, hutch.probe, None, None, hutch.jacobian)

    if target.multilevel is True and not isinstance(integrator, FixedStepIntegrator):
        raise ValueError(
            "PrecisionTarget(multilevel=True) corrects a FixedStepIntegrator's coarse solve; got "
            f"{type(integrator).__name__}"
        )
    pilot_nfe, reused = 0, plan is not None
    if plan is None:
        seed = int(
            torch.randint(
                0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"
            )
        )

        def pilot(
            index: Tensor, how: Integrator, name: str, k: int, draws: int, pilot_seed: int
        ) -> LikelihoodResult:
            g = torch.Generator(device=generator.device if generator else "cpu").manual_seed(pilot_seed)
            index = index.to(x.device)
            return solve(
                x[index],
                None if y is None else y[index],
                estimator(name, k),
                draws,
                how,
                g,
                False,
            )

        plan = make_plan(pilot, integrator, b, d, target, kind, opts.draws, noisy_points, unit, seed)
        pilot_nfe = plan.pilot_nfe
    else:
        total = b if target.points is None else int(target.points)
        if plan.target_se != float(target.se) or plan.target_points != total:
            raise ValueError("plan was made for another target_se or target_points")
        plan = replace(plan, pilot_nfe=0)
    final = solve(
        x,
        y,
        estimator(plan.divergence, max(1, plan.num_probes)),
        plan.draws,
        plan.integrator(integrator),
        generator,
        progress,
    )
    final.nfe += pilot_nfe
    if final.mc_se is None or not math.isfinite(final.mc_se):
        final.mc_se = plan.mc_se(b, unit)
    final.solver_error = plan.solver_error
    final.plan = plan
    if plan.fine_steps is not None:  # the multilevel correction (planner's module docstring)
        _correct(final, plan.correction, plan.correction_se(b if reused else None, unit), d)
    return final


def _correct(result: LikelihoodResult, correction: float, correction_se: float, dims: int) -> None:
    """Add the multilevel correction (nats) to every point's log-likelihood and its s.e. to
    ``mc_se`` in quadrature (Giles 2008; :mod:`scoresde.flow.planner`)."""
    result.logp = result.logp + correction
    result.delta_logp = result.delta_logp + correction
    result.logp_draws = result.logp_draws + correction
    if result.logp_probes is not None:
        result.logp_probes = result.logp_probes + correction
    result.correction, result.correction_se = correction, correction_se
    result.mc_se = math.hypot(result.mc_se or 0.0, correction_se)
    if result.bpd is not None:
        result.bpd = -result.logp / (dims * math.log(2))
        result.bpd_mean = float(result.bpd.mean())


def _solve(
    model: ScoreFunction,
    sde: SDE,
    x: Tensor,
    y: Tensor | None,
    how: Exact | Hutchinson,
    control_variate: GaussianControlVariate | None,
    integrator: Integrator,
    quantization: Quantization | None,
    opts: LikelihoodOptions,
    time_variable: str,
    draws: int,
    generator: torch.Generator | None,
    progress: bool | str | Progress,
) -> LikelihoodResult:
    """One solve of the augmented ODE ``(x, delta)`` (the first part of :func:`log_likelihood`)."""
    if time_variable == "log_sigma" and sde.eps <= 0:
        raise ValueError("time_variable='log_sigma' needs sde.eps > 0 (log sigma is -inf at t = 0)")
    points, offset = likelihood_points(x, sde, quantization, opts.eps_correction, draws, generator)
    s_count, b = offset.shape
    xs = points.reshape(s_count * b, *x.shape[1:])
    ys = None if y is None else y.repeat(s_count)
    hutchinson = isinstance(how, Hutchinson)
    probes: Tensor | None = None  # set exactly when hutchinson
    if isinstance(how, Hutchinson):
        given = how.probes
        if given is None:
            given = draw_probes(xs, how.num_probes, how.probe, generator)
        elif given.ndim != xs.ndim + 1 or given.shape[1:] != xs.shape:
            raise ValueError(
                f"probes must have shape (K, {', '.join(map(str, xs.shape))}), got {tuple(given.shape)}"
            )
        probes = given.to(dtype=xs.dtype, device=xs.device)
    probe_mode = "forward" if how.jacobian == "forward" else "backward"

    clock = Clock(sde, time_variable)
    unit_clock = time_variable == "t"
    nfe = 0
    u0, u1 = clock.u_of_t(sde.eps), clock.u_of_t(sde.T)
    own_bar = not isinstance(progress, Progress)
    bar = make_progress(progress, 1.0, "likelihood", unit="of [eps, T]")

    def field(u: Tensor, state: tuple[Tensor, Tensor], index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # u: scalar, or (B',) per sample; index: the samples in state (per-sample stepping).
        nonlocal nfe
        nfe += 1
        if bar.mode != "off":
            done = (float(torch.as_tensor(u).min()) - float(u0)) / (float(u1) - float(u0))
            bar.update_to(max(bar.n, min(1.0, done)), nfe=nfe)
        b_now = state[0].shape[0]
        t, dt_du = clock(u)
        t_b = t.to(device=xs.device, dtype=xs.dtype).expand(b_now)
        y_now = ys if ys is None or index is None else ys[index]

        def velocity(z: Tensor) -> Tensor:
            return model.velocity(z, t_b, y_now)

        if probes is not None:  # Hutchinson
            n = probes if index is None else probes[:, index]
            v, terms = hutchinson_terms(velocity, state[0], n, probe_mode)
            if control_variate is not None:
                terms = control_variate.correct(sde, t_b, n, terms)
            div = terms.T  # (B', K): one accumulator per probe
        else:
            v, div = velocity_and_divergence(velocity, state[0], how.jacobian)
        guard_output(v, state[0], t_b, "log_likelihood", f"ODE evaluation {nfe}")
        if unit_clock:  # u = t: dt/du = 1, nothing to scale
            return v, div
        dt_b = dt_du.to(device=xs.device, dtype=xs.dtype).expand(b_now)
        return v * append_dims(dt_b, v.ndim), div * append_dims(dt_b, div.ndim)

    k = probes.shape[0] if probes is not None else 1
    acc_shape = (s_count * b, k) if hutchinson else (s_count * b,)
    state0 = (xs, torch.zeros(acc_shape, dtype=xs.dtype, device=xs.device))
    # The log-density accumulator's scale is arbitrary (it is offset by the prior), so its
    # error is controlled in absolute nats: atol only, no rtol.
    rtol = getattr(integrator, "rtol", None)
    if rtol is not None and not isinstance(rtol, tuple):
        integrator = with_tolerances(integrator, (rtol, 0.0), integrator.atol)  # type: ignore[attr-defined]
    with torch.no_grad():
        z, delta = integrator.solve(field, state0, u0, u1)
    bar.update_to(1.0, nfe=nfe)
    if own_bar:
        bar.close()
    prior = (sde.prior_logp if opts.prior_logp is None else opts.prior_logp)(z).reshape(s_count, b)
    logp_probes = None
    if hutchinson:
        delta_k = delta.reshape(s_count, b, k).permute(0, 2, 1)  # (S, K, B)
        logp_probes = prior[:, None] + delta_k + offset[:, None]
        delta = delta_k.mean(1)
    else:
        delta = delta.reshape(s_count, b)
    logp_draws = prior + delta + offset
    logp = logp_draws.mean(0)
    noisy_points = quantization is not None or opts.eps_correction != "none"
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
        mc_se=_replicate_se(logp_draws, logp_probes, noisy_points, unit)
        if hutchinson or noisy_points
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

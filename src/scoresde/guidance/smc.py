"""Sequential Monte Carlo posterior sampling for linear inverse problems (Wu et al. 2023, TDS).

Target: ``p(x_0 | y) ∝ p(x_0) N(y; A x_0, s_y^2 I)`` (``s_y = 0``: the noise-free ``A x_0 = y``)
with only the prior's score model.  ``K`` particles per measurement follow the ancestral
(posterior) kernel of the reverse process, ``p(x_{i+1} | x_i) = N(mu_i, v_i I)``
(:func:`~scoresde.sampling.predictors.ancestral_posterior`), twisted towards the measurement by
the Gaussian twisting functions of the Twisted Diffusion Sampler (Wu et al. 2023, Eq. 8-9)
with the covariance of PiGDM (Song et al. 2023),

    p~_i(y | x_i) = N(y; A x0_hat(x_i, t_i), s_y^2 I + r_i^2 A A^T),
    r_i^2 = sigma_hat_i^2 / (1 + sigma_hat_i^2)

(``r_i^2``: the posterior variance of ``x_0`` given ``x_i`` for data of unit variance),
evaluated in the SVD coordinates of ``A`` (:mod:`scoresde.guidance.measurement`), where it is
diagonal.  At small ``t`` it tends to the forward process's own potential (a plain
``(s_y^2 + r_i^2) I`` would be ``1 / S_j^2`` times too wide for singular values ``S_j != 1``).

``twist_cov="tweedie"`` (the default for up to :data:`TWEEDIE_MAX_RANK` observed coordinates)
replaces ``r_i^2 A A^T`` by the model's own posterior covariance from Tweedie's second-order
formula, ``Cov[x_0 | x_i] = (sigma_i^2 / s_i) d x0_hat / d x_i`` (as in Boys et al. 2023, TMPD),
in the same coordinates: ``V_r^T Cov V_r``, ``r`` vector-Jacobian products per step.  It is the
exact ``p_i(y | x_i)`` for Gaussian data and close to it within each mode of a mixture, whereas
the unit-variance ``r_i^2`` mis-weights modes whose covariances along the observed directions
differ (both twists are exact as ``t -> 0``): the weights must then move mass between modes late,
their spread becomes heavy-tailed, and the single draw of a run keeps a mode-weight bias that
falls only slowly with ``K`` (docs/bench_guidance_smc.md).
Each step proposes from the twisted kernel ``q = N(mu_i + v_i grad log p~_i(y | x_i), v_i I)``
(TDS, Eq. 10) and reweights by

    w_{i+1} = p(x_{i+1} | x_i) p~_{i+1}(y | x_{i+1}) / (q(x_{i+1} | x_i) p~_i(y | x_i))

(TDS, Alg. 1).  The last step is fully adapted: it samples the kernel times the forward
potential at ``eps`` (Gaussian, in closed form), then moves to the measurement itself: an exact
weight correction to ``N(y; A x_end, s_y^2 I)`` with noise; noise-free, the observed coordinates
are set to the measurement (a move of order ``sigma(eps)``, so ``A x_end = y`` exactly).
Conditioning the last kernel exactly on ``y`` instead collapses the weights noise-free (the
kernel's variance is far below the twist's there).  Whatever the twists, the weighted particles
target ``p_chain(x_end) N(y; A x_end, s_y^2)``, the chain's end-point law times the likelihood
(noise-free: the chain's law on ``A x = y``, smoothed at scale ``sigma(eps)``), so the sampler is
asymptotically exact in ``K`` up to the chain's own discretisation error, which falls with
``steps`` (a log-SNR grid spreads it evenly).  Resampling is systematic, triggered when the
effective sample size falls below ``resample_threshold * K``; the product of mean weights
estimates the evidence ``p(y)`` under the chain (unbiased with noise).

Proposals are small objects with their own parameters: :class:`TwistedProposal` (this
filter) and :class:`~scoresde.guidance.mcgdiff.MCGdiffProposal`; ``proposal="mcgdiff"`` (or
``MCGdiffProposal()``) runs the gradient-free MCGdiff filter instead
(:mod:`scoresde.guidance.mcgdiff`, Cardoso et al. 2023) towards the same target.

Cost per step: one network evaluation and one backward pass per particle (``"tweedie"``: ``r``
vector-Jacobian products, batched into one vmapped backward pass; the last step: no backward
pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from scoresde._core.progress import Progress, make_progress
from scoresde._core.tensors import append_dims
from scoresde.guidance.mcgdiff import MCGdiffProposal
from scoresde.guidance.measurement import (
    SVDCoordinates,
    finish_on_measurement,
    forward_potential,
    gaussian_move,
    log_normal,
    svd_coordinates,
)
from scoresde.guidance.operators import LinearOperator
from scoresde.guidance.particles import (
    FilterResult,
    ParticleProblem,
    effective_sample_size,
    resample_low_ess,
    systematic_resample,
    uniform_per_row,
)
from scoresde.guidance.projection import start_inverse_problem
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.sampling.predictors import ancestral_posterior
from scoresde.sampling.spec import SampleSpec, split_spec
from scoresde.sde.base import SDE

__all__ = [
    "PROPOSALS",
    "TWEEDIE_MAX_RANK",
    "TWIST_COVS",
    "MCGdiffProposal",
    "SMCProposal",
    "SMCResult",
    "TwistedProposal",
    "effective_sample_size",
    "make_proposal",
    "smc_sample",
    "systematic_resample",
]

TWIST_COVS = ("auto", "tweedie", "pigdm")
"""The twist covariances of :class:`TwistedProposal`."""

TWEEDIE_MAX_RANK = 16
"""``twist_cov="auto"`` uses the Tweedie covariance up to this many observed coordinates (its cost
is one vector-Jacobian product per coordinate and step), PiGDM's above (so 8x8 digits inpainting,
48 observed pixels, keeps the one-backward-pass PiGDM twist)."""


@dataclass
class SMCResult:
    """What :func:`smc_sample` returns.

    Attributes:
        x: one posterior sample per measurement, drawn from the final weighted particles, ``(B, *D)``.
        particles: the final particles ``(B, K, *D)``.
        log_weights: their normalised log-weights ``(B, K)`` (``logsumexp = 0`` per row).
        ess: effective sample size after each step's reweighting ``(steps, B)``.
        resampled: whether the particles were resampled at each step ``(steps, B)`` (TDS: before
            its move; MCGdiff: after its reweighting, before its move; never at its last step).
        log_evidence: log of the SMC estimate of ``p(y)`` under the chain ``(B,)``.
        nfe: network evaluations (batched calls over all ``B K`` particles).
        times: the time grid.
    """

    x: Tensor
    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    log_evidence: Tensor
    nfe: int
    times: Tensor

    def posterior_mean(self) -> Tensor:
        """The weighted particle mean ``(B, *D)``."""
        w = self.log_weights.exp()
        return (append_dims(w, self.particles.ndim) * self.particles).sum(1)


def _twist(
    model: ScoreFunction,
    coords: SVDCoordinates,
    y_bar: Tensor,
    x: Tensor,
    t: Tensor,
    var: Tensor,
    labels: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(log p~(y | x), grad_x log p~(y | x), x0_hat(x))`` per particle: one NFE, one backward."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        x0 = model.denoise(x_in, t.to(x.dtype).expand(x.shape[0]), labels)
        logp = log_normal(coords.coord(x0), y_bar, var)
        (grad,) = torch.autograd.grad(logp.sum(), x_in)
    return logp.detach(), grad.detach(), x0.detach()


def _twist_tweedie(
    model: ScoreFunction,
    coords: SVDCoordinates,
    y_bar: Tensor,
    x: Tensor,
    t: Tensor,
    sde: SDE,
    scale: float,
    labels: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The twist with the denoiser's own covariance: ``p~(y | x) = N(y_bar; c(x0_hat), kappa^2 +
    C(x))``, ``C = scale (sigma^2 / s) V_r^T (d x0_hat / d x) V_r`` (Tweedie's second-order
    formula, ``Cov[x_0 | x_t] = (sigma^2 / s) d E[x_0 | x_t] / d x_t``; exact for Gaussian data).

    One NFE and ``r`` vector-Jacobian products (one vmapped backward pass).  The gradient holds
    ``C`` fixed, ``(V_r^T J)^T C^{-1} (y_bar - c)``: the proposal may use any drift, since the
    weight uses the same one, so the target is unchanged.

    Returns:
        ``(log p~(y | x), its gradient with C fixed, x0_hat(x))`` per particle.
    """
    s, sigma = (float(c) for c in sde.marginal(t.double().cpu()))
    r = coords.vh.shape[0]
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        x0 = model.denoise(x_in, t.to(x.dtype).expand(x.shape[0]), labels)
        c0 = coords.coord(x0)
        eye = torch.eye(r, dtype=c0.dtype, device=c0.device)[:, None, :].expand(r, *c0.shape)
        try:  # the r vector-Jacobian products in one vmapped backward pass
            (rows,) = torch.autograd.grad(c0, x_in, eye, is_grads_batched=True)
        except RuntimeError:  # a model whose backward does not vmap: one pass per coordinate
            rows = torch.stack(
                [torch.autograd.grad(c0, x_in, eye[j], retain_graph=j + 1 < r)[0] for j in range(r)]
            )
    jac = rows.reshape(r, x.shape[0], -1).transpose(0, 1).double()  # (N, r, D): d c(x0_hat) / d x
    # C = (sigma^2 / s) V_r^T J V_r, symmetrised; eigenvalues floored (a learned J need not be
    # positive definite) far below the PiGDM variance r_t^2, so the exact oracle never binds it.
    cov = scale * (sigma**2 / s) * (jac @ coords.vh.T)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(cov)
    sigma_hat2 = (sigma / s) ** 2
    evals = evals.clamp_min(1e-6 * scale * sigma_hat2 / (1.0 + sigma_hat2))
    cov = (evecs * evals[:, None, :]) @ evecs.transpose(1, 2) + torch.diag(coords.kappa2)
    chol = torch.linalg.cholesky(cov)
    d = (y_bar - c0.detach())[..., None]
    sol = torch.cholesky_solve(d, chol)[..., 0]  # C^{-1} (y_bar - c)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    logp = -0.5 * ((d[..., 0] * sol).sum(-1) + logdet + r * math.log(2 * math.pi))
    grad = torch.einsum("nrd,nr->nd", jac, sol).reshape(x.shape).to(x.dtype)
    return logp, grad, x0.detach()


@dataclass(frozen=True)
class TwistedProposal:
    """``proposal=TwistedProposal(...)`` of :func:`smc_sample`: the twisted proposals of the
    Twisted Diffusion Sampler (the module docstring; Wu et al. 2023), one backward pass per step.

    Attributes:
        twist_cov: the twist's covariance: ``"tweedie"`` (the model's ``Cov[x_0 | x_t]``, ``r``
            vector-Jacobian products per step), ``"pigdm"`` (``r_t^2 A A^T``, one backward pass)
            or ``"auto"``: ``"tweedie"`` when ``A`` has at most :data:`TWEEDIE_MAX_RANK` non-zero
            singular values, else ``"pigdm"``.
        twist_var_scale: multiplies ``r_i^2`` in the twisting functions (the data's variance
            scale; 1 for data of unit variance), or the Tweedie covariance.
        drift_clip: the proposal's shift ``v_i grad log p~_i`` is clipped to
            ``drift_clip sqrt(v_i)`` per coordinate, and its weight uses the clipped shift, so
            the target is unchanged (``inf``: no clipping).  It guards against a learned
            denoiser's large ``x0_hat`` errors at high noise (``x0_hat = (x - sigma eps_hat) / s``
            multiplies the error of ``eps_hat`` by ``sigma / s``), whose gradient would otherwise
            throw the particles out of range.
    """

    name: ClassVar[str] = "tds"
    twist_cov: str = "auto"
    twist_var_scale: float = 1.0
    drift_clip: float = 3.0

    def __post_init__(self) -> None:
        if not (float(self.twist_var_scale) > 0 and math.isfinite(self.twist_var_scale)):
            raise ValueError(f"twist_var_scale must be finite and > 0, got {self.twist_var_scale}")
        if not float(self.drift_clip) > 0:
            raise ValueError(f"drift_clip must be > 0 (inf: no clipping), got {self.drift_clip}")
        if self.twist_cov not in TWIST_COVS:
            raise ValueError(f"unknown twist_cov {self.twist_cov!r}; choose one of {list(TWIST_COVS)}")

    def resolved_twist(self, coords: SVDCoordinates) -> str:
        """``twist_cov`` with ``"auto"`` resolved for the operator's rank."""
        if self.twist_cov != "auto":
            return self.twist_cov
        return "tweedie" if coords.vh.shape[0] <= TWEEDIE_MAX_RANK else "pigdm"

    def run(self, problem: ParticleProblem) -> FilterResult:
        """Run the twisted filter on ``problem``."""
        return _tds_filter(problem, self)


SMCProposal = TwistedProposal | MCGdiffProposal
"""A proposal object of :func:`smc_sample`."""

PROPOSALS: dict[str, type[TwistedProposal] | type[MCGdiffProposal]] = {
    "tds": TwistedProposal,
    "mcgdiff": MCGdiffProposal,
}
"""The proposal names :func:`smc_sample` takes (``"auto"``: ``"tds"``) and their classes."""


def make_proposal(proposal: str | SMCProposal, **options: Any) -> SMCProposal:
    """The proposal object of ``proposal`` (a name of :data:`PROPOSALS`, ``"auto"``, or an object).

    ``options`` are the proposal's parameters (``twist_cov``, ``twist_var_scale``,
    ``drift_clip`` for ``"tds"``); one that the proposal does not have is an error that names
    it and the proposal it belongs to.
    """
    if isinstance(proposal, (TwistedProposal, MCGdiffProposal)):
        if options:
            raise ValueError(
                f"{', '.join(f'{k}=' for k in options)} given beside a proposal object: "
                f"give them to the {type(proposal).__name__} itself"
            )
        return proposal
    if not isinstance(proposal, str) or proposal not in ("auto", *PROPOSALS):
        raise ValueError(f"unknown proposal {proposal!r}; choose one of {['auto', *PROPOSALS]}")
    cls = PROPOSALS["tds" if proposal == "auto" else proposal]
    own = {f.name for f in fields(cls)}
    foreign = [k for k in options if k not in own]
    if foreign:
        notes = []
        for key in foreign:
            owners = [n for n, c in PROPOSALS.items() if key in {f.name for f in fields(c)}]
            notes.append(f"{key}= applies to proposal={owners[0]!r} only" if owners else f"{key}= is unknown")
        given = ", ".join(f"{key}=" for key in foreign)
        raise ValueError(f"proposal={proposal!r} does not take {given} ({'; '.join(notes)})")
    return cls(**options)


def _tds_filter(problem: ParticleProblem, proposal: TwistedProposal) -> FilterResult:
    """The twisted SMC loop (module docstring), as
    :func:`~scoresde.guidance.mcgdiff.mcgdiff_filter` runs its own."""
    counted, sde, ts_dev, noise = problem.model, problem.sde, problem.ts, problem.noise
    coords = problem.coords
    b, k, dshape = problem.batch, problem.particles, problem.item_shape
    labels, callback, dtype = problem.labels, problem.callback, problem.dtype
    resample_threshold = problem.resample_threshold
    twist_var_scale, drift_clip = float(proposal.twist_var_scale), float(proposal.drift_clip)
    twist_cov = proposal.resolved_twist(coords)
    n_steps = len(ts_dev) - 1
    device = ts_dev.device
    y_bar = coords.repeat(k)

    def twist_var(t: Tensor) -> Tensor:
        sh = float(sde.sigma_hat(t.double().cpu()))
        return coords.kappa2 + float(twist_var_scale) * sh**2 / (1.0 + sh**2)

    x = noise(torch.empty((b * k, *dshape), device=device, dtype=dtype)) * sde.prior_std()
    log_z = torch.zeros(b, dtype=torch.float64, device=device)
    ess_hist, res_hist = [], []

    def twist(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if twist_cov == "tweedie":
            return _twist_tweedie(counted, coords, y_bar, x, t, sde, float(twist_var_scale), labels)
        return _twist(counted, coords, y_bar, x, t, twist_var(t), labels)

    logp_tw, grad, x0 = twist(x, ts_dev[0])
    log_w = logp_tw.reshape(b, k)
    bar = make_progress(problem.progress, n_steps, "smc")
    for i in range(n_steps):
        t, t_next = ts_dev[i], ts_dev[i + 1]
        # Resample (systematic) when the effective sample size is low.
        u_res = uniform_per_row(noise, b, x)  # drawn every step, so each row's stream is batch-independent
        flat, do_res, log_w, log_mean = resample_low_ess(log_w, resample_threshold, u_res)
        log_z = log_z + log_mean
        if flat is not None:
            x, x0, logp_tw, grad = x[flat], x0[flat], logp_tw[flat], grad[flat]
        res_hist.append(do_res)
        # The unconditional ancestral kernel N(mu, v I) with the model's x0_hat.
        mu, v = ancestral_posterior(sde, x, x0, t, t_next, "posterior")
        if i + 1 == n_steps:
            # Last step, fully adapted: the kernel times the forward potential g_eps, then the
            # measurement's own likelihood (noisy) or A x = y (noise-free).
            mean, var = forward_potential(sde, t_next, y_bar, coords.kappa2)
            inc = log_normal(coords.coord(mu), mean, v + var) - logp_tw
            x, c = gaussian_move(coords, mu, v, mean, var, noise)
            x, corr = finish_on_measurement(coords, x, c, y_bar, mean, var)
            inc = inc + corr
        else:
            # Twisted proposal N(mu + v grad, v I) and the TDS weight; the gradient is clipped to
            # +-drift_clip / sqrt(v) per coordinate (a shift of at most drift_clip kernel standard
            # deviations), and the weight uses the clipped gradient, so the target is unchanged.
            if math.isfinite(drift_clip):
                bound = drift_clip / math.sqrt(v)
                grad = grad.clamp(-bound, bound)
            x = mu + v * grad + math.sqrt(v) * noise(mu)
            logp_new, grad_new, x0 = twist(x, t_next)
            d = (x - mu).reshape(b * k, -1).double()
            g = grad.reshape(b * k, -1).double()
            log_kernel_ratio = -(g * d).sum(1) + 0.5 * v * g.pow(2).sum(1)
            inc = log_kernel_ratio + logp_new - logp_tw
            logp_tw, grad = logp_new, grad_new
        log_w = log_w + inc.reshape(b, k)
        log_w = torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)
        ess_hist.append(effective_sample_size(log_w))
        bar.update(1, nfe=getattr(counted, "nfe", 0))
        if callback is not None:
            callback(i, t_next, x)
    if not isinstance(problem.progress, Progress):
        bar.close()
    return FilterResult(x, log_w, log_z + coords.log_const, torch.stack(ess_hist), torch.stack(res_hist))


_SPEC_UNUSED = ("denoise", "x_T", "first_index", "record", "record_stride", "t_start", "t_end", "label")
"""The :class:`~scoresde.sampling.spec.SampleSpec` fields that SMC does not use (an error when set)."""


@torch.no_grad()
def smc_sample(
    model: ScoreFunction,
    operator: LinearOperator,
    y_obs: Tensor,
    sde: SDE | None = None,
    shape: Sequence[int] | None = None,
    *,
    proposal: str | SMCProposal = "auto",
    noise_std: float = 0.0,
    particles: int = 64,
    resample_threshold: float = 0.5,
    spec: SampleSpec | None = None,
    **kwargs: Any,
) -> SMCResult:
    """Sample ``x`` given ``y_obs = A x + N(0, noise_std^2 I)`` by SMC (TDS or MCGdiff).

    Args:
        model: the prior's score model (class-conditional with ``y``).
        operator: the measurement ``A`` (any :class:`~scoresde.guidance.LinearOperator`; its thin
            SVD is formed once, from the dense ``(M, D)`` matrix unless it is a
            :class:`~scoresde.guidance.MatrixOperator`).
        y_obs: observations ``(B, *out_shape)`` or one ``(*out_shape)`` for the whole batch.
        sde: the forward SDE (default ``model.sde``).
        shape: ``(B, *D)``: ``B`` measurements (independent SMC runs).
        proposal: a proposal object, :class:`TwistedProposal` (one backward pass per step) or
            :class:`~scoresde.guidance.mcgdiff.MCGdiffProposal` (potentials on the SVD
            coordinates of ``A``, fully adapted, no gradient), or its name ``"tds"`` /
            ``"mcgdiff"``; ``"auto"``: ``"tds"`` (the better of the two on the exact-mixture
            benchmark, noisy and noise-free).  With a name, the proposal's parameters may be
            given as keywords (``twist_cov``, ``twist_var_scale``, ``drift_clip`` of
            :class:`TwistedProposal`); a parameter the proposal does not have is an error.
        noise_std: the measurement noise ``s_y`` (0: noise-free).
        particles: ``K`` particles per measurement.
        resample_threshold: resample when ``ESS < resample_threshold * K`` (1: every step; 0: never).
        spec: the run's :class:`~scoresde.sampling.spec.SampleSpec` (as for :func:`scoresde.sample`).
        **kwargs: fields of :class:`~scoresde.sampling.spec.SampleSpec`: ``steps`` (default 200),
            ``grid`` (default ``"logsnr"``, equal steps in log-SNR: closer to the exact
            posteriors than ``"uniform"`` on the exact-mixture benchmark at the same steps and
            ``K``), ``generator`` / ``seed`` (with ``seed``, measurement ``b``'s result depends
            only on the seed, ``b`` and ``K``, not on the batch size), ``y`` (class labels
            ``(B,)``), ``callback`` (``callback(i, t, particles)`` after each step, particles
            ``(B K, *D)``), ``device``, ``dtype``, ``progress``; then the proposal's parameters.
            ``denoise``, ``x_T``, ``first_index``, ``record``, ``record_stride``, ``t_start``,
            ``t_end`` and ``label`` do not apply (an error when given).

    Returns:
        An :class:`SMCResult`.
    """
    if shape is not None:
        kwargs["shape"] = shape
    spec, options = split_spec(spec, kwargs, steps=200, grid="logsnr")
    spec.check_unused(_SPEC_UNUSED, "smc_sample")
    prop = make_proposal(proposal, **options)
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be an integer >= 1, got {particles!r}")
    if not (0.0 <= float(resample_threshold) <= 1.0):
        raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold}")
    if not (float(noise_std) >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    if spec.shape is None:
        raise ValueError("give shape=(B, *D): B measurements, each with its own particles")
    shape = tuple(int(s) for s in spec.shape)
    b, k = shape[0], particles
    # The start's checks (model, SDE, grid, labels, observations) on a placeholder batch.
    start, y_obs = start_inverse_problem(
        model,
        operator,
        y_obs,
        sde,
        spec.replace(shape=None, x_T=torch.zeros(shape, device=spec.device, dtype=spec.dtype)),
    )
    y = spec.y
    problem = ParticleProblem(
        model=CountingModel(model),
        sde=start.sde,
        ts=start.ts.to(start.x.device),
        noise=start.noise,
        coords=svd_coordinates(operator, y_obs, noise_std),
        batch=b,
        particles=k,
        item_shape=tuple(start.x.shape[1:]),
        resample_threshold=float(resample_threshold),
        labels=None if y is None else y.repeat_interleave(k, 0),
        callback=spec.callback,
        progress=spec.progress,
        dtype=spec.dtype,
    )
    out = prop.run(problem)
    x, log_w = out.x, out.log_w
    log_z = out.log_z + torch.logsumexp(log_w, 1) - math.log(k)
    log_w_norm = log_w - torch.logsumexp(log_w, 1, keepdim=True)
    # One sample per measurement from the weighted particles (inverse CDF with one uniform).
    cdf = torch.cumsum(log_w_norm.exp(), 1)
    pick = torch.searchsorted(cdf, uniform_per_row(problem.noise, b, x)[:, None]).clamp_max(k - 1).reshape(b)
    parts = x.reshape(b, k, *problem.item_shape)
    return SMCResult(
        x=parts[torch.arange(b, device=x.device), pick],
        particles=parts,
        log_weights=log_w_norm,
        ess=out.ess,
        resampled=out.resampled,
        log_evidence=log_z,
        nfe=problem.model.nfe,
        times=start.ts,
    )

"""Divergence of the probability-flow field: exact (forward or reverse mode), Hutchinson, control variate.

The instantaneous change of variables (Song et al. 2021, App. D.2, Eq. 39) needs ``div v =
tr(dv/dx)`` at every evaluation of the ODE.  Three ways to get it, all per sample of a batch whose
samples are independent (the model must not mix them):

* **Exact, reverse mode** (:func:`divergence_exact`): ``D`` vector-Jacobian products
  ``e_i^T (dv/dx)``, run as one vectorised backward pass after the forward pass that built ``v``.
* **Exact, forward mode** (:func:`jvp_divergence`): ``D`` Jacobian-vector products ``(dv/dx) e_i``
  by ``torch.func.jvp`` under ``torch.func.vmap`` over the basis vectors, in one batched pass that
  returns the value ``v`` as well; no graph is kept.  The primal computation does not depend on
  the tangent, so ``vmap`` runs it once.  Which of the two is cheaper depends on the model and
  the device; :data:`FORWARD_MAX_DIM` is where ``jacobian="auto"`` switches (set from
  ``benchmarks/likelihood_target_se.py``).
* **Hutchinson-Skilling** (:func:`hutchinson_terms`): ``n_k^T (dv/dx) n_k`` for ``K`` probes
  with ``E[n n^T] = I``, all ``K`` in one batched pass (forward or reverse mode), kept per probe
  so that their spread gives the Monte-Carlo error.

**Control variate** (:class:`GaussianControlVariate`).  For a Gaussian data distribution
``N(mu, Sigma)`` every linear SDE has Gaussian marginals ``N(s mu, C_t)``, ``C_t = s^2 Sigma +
sigma^2 I``, and the probability-flow field ``v_G(x, t) = f(t) x - g(t)^2 score_G(x, t) / 2``
(Eq. 13) has the constant Jacobian ``A_t = f(t) I + g(t)^2 C_t^{-1} / 2``, whose trace is known in
closed form.  The estimator

    n^T (dv/dx) n - n^T A_t n + tr(A_t)

has the same expectation as ``n^T (dv/dx) n`` for any ``A_t`` (``E[n^T A n] = tr A``), so it stays
unbiased; its variance is that of the Hutchinson estimate of ``tr(dv/dx - A_t)``, small when the
model's Jacobian is close to that of the Gaussian fit of the data.  (With Rademacher probes the
``f(t) I`` part alone changes nothing: ``n^T n = D`` exactly; the gain comes from the
off-diagonal entries of ``C_t^{-1}``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from scoresde.sde.base import SDE

__all__ = [
    "DIVERGENCES",
    "FORWARD_MAX_DIM",
    "PROBES",
    "Exact",
    "Hutchinson",
    "JACOBIAN_MODES",
    "ForwardModeUnsupported",
    "GaussianControlVariate",
    "divergence_exact",
    "hutchinson_terms",
    "jvp_divergence",
    "velocity_and_divergence",
]

JACOBIAN_MODES = ("auto", "forward", "backward")
DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
# ``jacobian="auto"`` takes forward mode for D <= FORWARD_MAX_DIM.  Chosen by measurement
# (benchmarks/likelihood_target_se.py, docs/bench_likelihood_target_se.md).
FORWARD_MAX_DIM = 0


@dataclass(frozen=True)
class Exact:
    """The exact divergence: ``D`` Jacobian products per evaluation.

    Args:
        jacobian: ``backward`` (vector-Jacobian products), ``forward`` (``torch.func.jvp`` under
            ``vmap``; an error if the model does not support it) or ``auto`` (forward mode for
            ``D <=`` :data:`FORWARD_MAX_DIM`, falling back to backward mode).
    """

    jacobian: str = "auto"

    def __post_init__(self) -> None:
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"unknown jacobian {self.jacobian!r}; choose one of {list(JACOBIAN_MODES)}")


@dataclass(frozen=True)
class Hutchinson:
    """The Hutchinson-Skilling estimate ``n^T (dv/dx) n`` (Song et al. 2021, App. D.2).

    Args:
        num_probes: probes ``K`` per point, fixed along one solve; each has its own
            log-density accumulator, so the ``K`` estimates are kept and their spread gives
            the Monte-Carlo error.
        probe: ``rademacher`` (the lowest variance among probes with independent entries) or
            ``gaussian``.
        probes: explicit probes ``(K, S * B, *D)`` (e.g. to reuse them across calls); then
            ``num_probes`` and ``probe`` are not used.
        control_variate: a :class:`GaussianControlVariate` (the exact divergence of a
            Gaussian data model's flow subtracted inside the estimate and added back exactly),
            or ``"gaussian"`` to fit one to the points (in the model's space, after
            dequantization).
        jacobian: ``backward`` (one vectorised vector-Jacobian product) or ``forward``.
    """

    num_probes: int = 1
    probe: str = "rademacher"
    probes: Tensor | None = field(default=None, compare=False)
    control_variate: GaussianControlVariate | str | None = field(default=None, compare=False)
    jacobian: str = "backward"

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ValueError(f"unknown probe {self.probe!r}; choose one of {list(PROBES)}")
        if not isinstance(self.num_probes, int) or self.num_probes < 1:
            raise ValueError(f"num_probes must be at least 1, got {self.num_probes!r}")
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"unknown jacobian {self.jacobian!r}; choose one of {list(JACOBIAN_MODES)}")
        if isinstance(self.control_variate, str) and self.control_variate != "gaussian":
            raise ValueError(
                f"unknown control_variate {self.control_variate!r}; "
                "use 'gaussian' or a GaussianControlVariate"
            )


class ForwardModeUnsupported(RuntimeError):
    """The model cannot be differentiated in forward mode under ``torch.func`` (an operation
    without a forward-mode formula or a ``vmap`` rule, in-place updates of captured tensors, ...)."""


def divergence_exact(v: Tensor, x: Tensor) -> Tensor:
    """``div_x v = sum_i dv_i/dx_i`` by one vector-Jacobian product per dimension (reverse mode).

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


def _basis(x: Tensor) -> Tensor:
    """``(D, B, *D)``: ``basis[i]`` is the unit vector ``e_i`` in every sample."""
    b, d = x.shape[0], x[0].numel()
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return eye[:, None, :].expand(d, b, d).reshape(d, *x.shape)


def _jvps(f: Callable[[Tensor], Tensor], x: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x), (df/dx) w_k for every tangent w_k)`` in one ``vmap``-ped forward-mode pass."""
    from torch.func import jvp, vmap

    x = x.detach()
    try:
        with torch.no_grad():
            # torch's stubs: out_dims takes None entries, and jvp without has_aux returns a pair.
            v, jw = vmap(lambda w: jvp(f, (x,), (w,)), in_dims=0, out_dims=(None, 0))(tangents)  # type: ignore[arg-type,misc]
    except (RuntimeError, NotImplementedError, ValueError) as err:
        raise ForwardModeUnsupported(
            f"forward-mode divergence failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "use jacobian='backward'"
        ) from err
    return v, jw


def jvp_divergence(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(v, div v)`` of ``v = f(x)`` by ``D`` forward-mode products in one batched pass.

    Args:
        f: ``(B, *D) -> (B, *D)``, sample-wise (no mixing across the batch).
        x: ``(B, *D)``.

    Returns:
        ``v: (B, *D)`` (detached) and ``div: (B,)``.

    Raises:
        ForwardModeUnsupported: the model does not support ``torch.func.jvp`` / ``vmap``.
    """
    b, d = x.shape[0], x[0].numel()
    v, jw = _jvps(f, x, _basis(x))
    return v, torch.einsum("ibi->b", jw.reshape(d, b, d))


def hutchinson_terms(
    f: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor, jacobian: str = "backward"
) -> tuple[Tensor, Tensor]:
    """``(v, n_k^T (dv/dx) n_k)`` for all ``K`` probes in one batched pass (Song et al. 2021, App. D.2).

    Args:
        f: ``(B, *D) -> (B, *D)``, sample-wise.
        x: ``(B, *D)``.
        probes: ``(K, B, *D)``.
        jacobian: ``backward`` (one vectorised vector-Jacobian product over the probes; a loop
            over them where the model's operations do not batch) or ``forward`` (``jvp`` under
            ``vmap``).

    Returns:
        ``v: (B, *D)`` (detached) and ``terms: (K, B)``; their mean over ``K`` is the estimate.
    """
    k, b = probes.shape[0], x.shape[0]
    if jacobian == "forward":
        v, jn = _jvps(f, x, probes)
        return v, (jn * probes).reshape(k, b, -1).sum(-1)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = f(xg)
        if k == 1:
            # One probe: a plain vector-Jacobian product, no graph kept (vmap's batching costs more).
            (g,) = torch.autograd.grad(v, xg, probes[0])
            g = g[None]
        else:
            try:
                (g,) = torch.autograd.grad(v, xg, probes, retain_graph=True, is_grads_batched=True)
            except RuntimeError:
                last = k - 1
                g = torch.stack(
                    [torch.autograd.grad(v, xg, n, retain_graph=i < last)[0] for i, n in enumerate(probes)]
                )
    return v.detach(), (g * probes).reshape(k, b, -1).sum(-1)


def velocity_and_divergence(
    f: Callable[[Tensor], Tensor], x: Tensor, jacobian: str = "auto"
) -> tuple[Tensor, Tensor]:
    """``(v, div v)`` exactly, in forward or reverse mode (``auto``: forward for ``D <=``
    :data:`FORWARD_MAX_DIM`, falling back to reverse mode when the model does not support it)."""
    if jacobian not in JACOBIAN_MODES:
        raise ValueError(f"unknown jacobian {jacobian!r}; choose one of {list(JACOBIAN_MODES)}")
    use_forward = jacobian == "forward" or (jacobian == "auto" and x[0].numel() <= FORWARD_MAX_DIM)
    if use_forward:
        try:
            return jvp_divergence(f, x)
        except ForwardModeUnsupported:
            if jacobian == "forward":
                raise
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = f(xg)
        div = divergence_exact(v, xg)
    return v.detach(), div.detach()


@dataclass
class GaussianControlVariate:
    """The probability-flow field of Gaussian data ``N(mean, cov)`` as a control variate.

    Its Jacobian ``A_t = f(t) I + g(t)^2 C_t^{-1} / 2`` with ``C_t = s(t)^2 cov + sigma(t)^2 I``
    (see the module docstring) is applied in the eigenbasis of ``cov``, so each probe costs
    ``O(D^2)`` and the trace ``O(D)``.

    Attributes:
        mean: ``(D,)`` (only its shape is used: the Jacobian does not depend on the mean).
        cov: ``(D, D)`` symmetric positive semi-definite.
    """

    mean: Tensor
    cov: Tensor

    def __post_init__(self) -> None:
        d = self.mean.numel()
        if self.cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}) for a mean of {d} entries, got {tuple(self.cov.shape)}")
        evals, evecs = torch.linalg.eigh(0.5 * (self.cov + self.cov.T))
        self._evals = evals.clamp_min(0.0)
        self._evecs = evecs

    @classmethod
    def fit(cls, x: Tensor, shrinkage: float = 1e-3) -> GaussianControlVariate:
        """Mean and covariance of samples ``x: (N, *D)``, the covariance shrunk towards its
        mean variance by ``shrinkage`` (keeps it well defined for ``N <= D``)."""
        flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[0] < 2:
            raise ValueError("GaussianControlVariate.fit needs at least 2 samples")
        mean = flat.mean(0)
        cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
        scale = cov.diagonal().mean()
        cov = (1 - shrinkage) * cov + shrinkage * scale * torch.eye(flat.shape[1], dtype=cov.dtype)
        return cls(mean, cov)

    def _diag(self, sde: SDE, t: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t): (B,)`` and the eigenvalues of ``g^2 C_t^{-1} / 2``: ``(B, D)``."""
        t64 = t.detach().to(torch.float64).cpu()
        s, sigma = sde.marginal(t64)
        f = sde.drift_coef(t64)
        g2 = sde.diffusion(t64) ** 2
        lam = self._evals[None, :] * (s**2)[:, None] + (sigma**2)[:, None]
        return f, 0.5 * g2[:, None] / lam

    def trace(self, sde: SDE, t: Tensor) -> Tensor:
        """``tr A_t: (B,)`` for times ``t: (B,)``."""
        f, lam = self._diag(sde, t)
        return f * lam.shape[1] + lam.sum(1)

    def quadratic(self, sde: SDE, t: Tensor, probes: Tensor) -> Tensor:
        """``n_k^T A_t n_k: (K, B)`` for probes ``(K, B, *D)``."""
        k, b = probes.shape[:2]
        f, lam = self._diag(sde, t)
        n = probes.reshape(k, b, -1).to(torch.float64).cpu()
        rot = n @ self._evecs.to(n.dtype)  # coordinates in the eigenbasis of cov
        quad = f[None, :] * n.pow(2).sum(-1) + (rot.pow(2) * lam[None]).sum(-1)
        return quad.to(probes.dtype).to(probes.device)

    def correct(self, sde: SDE, t: Tensor, probes: Tensor, terms: Tensor) -> Tensor:
        """The control-variate estimates ``terms - n^T A_t n + tr A_t``: ``(K, B)``."""
        tr = self.trace(sde, t).to(terms.dtype).to(terms.device)
        return terms - self.quadratic(sde, t, probes) + tr[None, :]

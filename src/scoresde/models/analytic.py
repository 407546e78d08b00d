"""Exact oracles: Gaussian-mixture data and its closed-form perturbed scores under any SDE.

If ``p_0 = sum_k w_k N(mu_k, Sigma_k)`` and ``x_t = s x_0 + sigma n``, then
``p_t = sum_k w_k N(s mu_k, s^2 Sigma_k + sigma^2 I)``: scores, denoisers and log-densities
are exact at every ``t`` for every linear SDE.  The whole test-suite measures samplers,
likelihoods and guidance against these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor

from scoresde._core.checks import check_finite
from scoresde._core.tensors import LOG_2PI, batch_time
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

__all__ = ["AnalyticScore", "GaussianMixture"]


class GaussianMixture:
    """A mixture of full-covariance Gaussians on ``R^D``.

    Args:
        weights: ``(K,)`` non-negative mixture weights (normalised here).
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` full covariances, ``(K, D)`` diagonals, ``(K,)`` isotropic
            variances, or a scalar variance shared by all components.
        dtype: working precision (float64 by default: this is a test oracle).
    """

    def __init__(
        self,
        weights: Sequence[float] | Tensor,
        means: Sequence[Sequence[float]] | Tensor,
        covs: Tensor | Sequence | float,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        w = torch.as_tensor(weights, dtype=dtype)
        mu = torch.as_tensor(means, dtype=dtype)
        if mu.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        k, d = mu.shape
        if w.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match means, got {tuple(w.shape)}")
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        cov = torch.as_tensor(covs, dtype=dtype)
        if cov.ndim == 0:
            cov = cov * torch.eye(d, dtype=dtype).expand(k, d, d)
        elif cov.shape == (k,):
            cov = cov[:, None, None] * torch.eye(d, dtype=dtype)
        elif cov.shape == (k, d):
            cov = torch.diag_embed(cov)
        elif cov.shape != (k, d, d):
            raise ValueError(
                f"covs must be a scalar, (K,), (K, D) or (K, D, D) with K={k}, D={d}; got {tuple(cov.shape)}"
            )
        check_finite(cov, "covs")
        check_finite(mu, "means")
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(cov)
        if bool((evals < -1e-12 * evals.abs().max()).any()):
            raise ValueError("covs must be positive semi-definite")
        self.weights = w / w.sum()
        self.means = mu
        self.covs = cov
        self.evals = evals.clamp_min(0.0)
        self.evecs = evecs
        self.dtype = dtype

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    # ------------------------------------------------------------------ #
    # Construction helpers for common test problems.
    # ------------------------------------------------------------------ #
    @classmethod
    def ring(cls, k: int = 8, radius: float = 2.0, std: float = 0.05) -> GaussianMixture:
        """``k`` equal isotropic Gaussians evenly spaced on a circle in 2-D."""
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
        return cls(torch.ones(k), means, torch.full((k,), std**2))

    @classmethod
    def random(
        cls,
        dim: int,
        k: int,
        eig_min: float = 1e-4,
        eig_max: float = 0.25,
        mean_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> GaussianMixture:
        """Random mixture with random-rotation covariances whose eigenvalues span ``[eig_min, eig_max]``."""
        g = generator
        means = mean_scale * torch.randn(k, dim, generator=g, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
        log_e = torch.empty(k, dim, dtype=torch.float64).uniform_(
            math.log(eig_min), math.log(eig_max), generator=g
        )
        log_e[:, 0], log_e[:, -1] = math.log(eig_min), math.log(eig_max)
        covs = q @ torch.diag_embed(log_e.exp()) @ q.transpose(-1, -2)
        w = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
        return cls(w, means, covs)

    # ------------------------------------------------------------------ #
    # Sampling and density of p_0.
    # ------------------------------------------------------------------ #
    @overload
    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: Literal[False] = False
    ) -> Tensor: ...

    @overload
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...

    @overload
    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]: ...

    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``n`` samples ``(n, D)`` (and their component labels ``(n,)``)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype)
        x = self.means[labels] + torch.einsum("nij,nj->ni", self.evecs[labels], self.evals[labels].sqrt() * z)
        return (x, labels) if return_labels else x

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p_0(x)`` for ``x: (B, D)``; needs non-singular covariances."""
        one = torch.ones(x.shape[0], dtype=self.dtype)
        return self.perturbed_log_prob(x, one, torch.zeros_like(one))

    # ------------------------------------------------------------------ #
    # The perturbed mixture p_t = sum_k w_k N(s mu_k, s^2 Sigma_k + sigma^2 I).
    # ------------------------------------------------------------------ #
    def _terms(self, x: Tensor, s: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log-densities (B, K), eigen-coordinates (B, K, D), variances (B, K, D)."""
        x = x.to(self.dtype)
        s = s.to(self.dtype)[:, None, None]
        sigma = sigma.to(self.dtype)[:, None, None]
        var = s**2 * self.evals[None] + sigma**2  # (B, K, D)
        diff = x[:, None, :] - s * self.means[None]  # (B, K, D)
        z = torch.einsum("kdj,bkd->bkj", self.evecs, diff)  # U_k^T (x - s mu_k)
        log_comp = (
            torch.log(self.weights)[None]
            - 0.5 * (z**2 / var).sum(-1)
            - 0.5 * torch.log(var).sum(-1)
            - 0.5 * self.dim * LOG_2PI
        )
        return log_comp, z, var

    def perturbed_log_prob(self, x: Tensor, s: Tensor, sigma: Tensor) -> Tensor:
        """``log p_t(x)`` with per-sample ``s, sigma: (B,)``."""
        log_comp, _, _ = self._terms(x, s, sigma)
        return torch.logsumexp(log_comp, dim=1)

    def perturbed_responsibilities(self, x: Tensor, s: Tensor, sigma: Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | x_t)``, shape ``(B, K)``."""
        log_comp, _, _ = self._terms(x, s, sigma)
        return torch.softmax(log_comp, dim=1)

    def perturbed_score(self, x: Tensor, s: Tensor, sigma: Tensor) -> Tensor:
        """``grad log p_t(x)``: ``-sum_k r_k (s^2 Sigma_k + sigma^2 I)^{-1} (x - s mu_k)``."""
        log_comp, z, var = self._terms(x, s, sigma)
        r = torch.softmax(log_comp, dim=1)
        comp = torch.einsum("kdj,bkj->bkd", self.evecs, z / var)
        return -(r[..., None] * comp).sum(1)

    def perturbed_denoise(self, x: Tensor, s: Tensor, sigma: Tensor) -> Tensor:
        """``E[x_0 | x_t]``: ``sum_k r_k (mu_k + s Sigma_k (s^2 Sigma_k + sigma^2 I)^{-1} (x - s mu_k))``."""
        log_comp, z, var = self._terms(x, s, sigma)
        r = torch.softmax(log_comp, dim=1)
        s_ = s.to(self.dtype)[:, None, None]
        comp = self.means[None] + torch.einsum("kdj,bkj->bkd", self.evecs, s_ * self.evals * z / var)
        return (r[..., None] * comp).sum(1)


class AnalyticScore(ScoreFunction):
    """The exact score of a Gaussian mixture pushed through ``sde``, at any ``t``.

    A drop-in :class:`ScoreFunction`: any sampler, likelihood or guidance method can use it
    in place of a trained network.  Inputs of shape ``(B, *D)`` are flattened to the
    mixture's dimension.  ``denoise`` is the exact posterior mean, computed directly.
    """

    def __init__(self, gmm: GaussianMixture, sde: SDE) -> None:
        super().__init__(sde, "score")
        self.gmm = gmm

    def _flat(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.gmm.dim:
            raise ValueError(
                f"x has {flat.shape[1]} features per sample, the mixture has dimension {self.gmm.dim}"
            )
        return flat

    def _coefs(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t = batch_time(t, x).to(torch.float64)
        return self.sde.marginal(t)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        s, sigma = self._coefs(x, t)
        return self.gmm.perturbed_score(self._flat(x), s, sigma).to(x.dtype).reshape(x.shape)

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        if kind != "x0":
            return super().predict(kind, x, t, y)
        t = self.checked_inputs(x, t)
        s, sigma = self._coefs(x, t)
        return self.gmm.perturbed_denoise(self._flat(x), s, sigma).to(x.dtype).reshape(x.shape)

    def log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Exact ``log p_t(x)``, shape ``(B,)``."""
        s, sigma = self._coefs(x, t)
        return self.gmm.perturbed_log_prob(self._flat(x), s, sigma).to(x.dtype)

    def responsibilities(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Exact ``p_t(k | x)`` over mixture components, shape ``(B, K)``."""
        s, sigma = self._coefs(x, t)
        return self.gmm.perturbed_responsibilities(self._flat(x), s, sigma).to(x.dtype)

"""Guided scores: ``grad log p_t(x | obs) = grad log p_t(x) + grad log p_t(obs | x)``.

Song et al. 2021 (Sec. 5, Eq. 14) solve inverse problems and class-conditional generation with
the reverse SDE of the conditional distribution, whose score is the unconditional score plus the
gradient of a time-dependent log-likelihood ``log p_t(obs | x)``.  Each class here is a
:class:`~scoresde.models.ScoreFunction` wrapping the unconditional model, so every sampler of
:data:`scoresde.SAMPLERS` (reverse SDE, probability-flow ODE, PC, ...) samples the conditional
distribution through :func:`scoresde.sample` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scoresde._core.checks import check_finite
from scoresde._core.tensors import LOG_2PI, append_dims
from scoresde.guidance.operators import LinearOperator
from scoresde.models.analytic import AnalyticScore
from scoresde.models.base import ScoreFunction

__all__ = [
    "ClassifierGuidance",
    "DPSGuidance",
    "ExactMeasurementLikelihood",
    "LikelihoodGuidance",
    "check_labels",
    "classifier_log_prob",
]

LogLikelihood = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""``log_likelihood(x, t, y) -> (B,)``: a differentiable ``log p_t(obs | x)``."""


def _grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``grad_x sum(fn(x))``, computed even under ``torch.no_grad``."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x_in).sum(), x_in)
    return g


class LikelihoodGuidance(ScoreFunction):
    """Score of ``p_t(x | obs) ∝ p_t(x) p_t(obs | x)^scale`` (Song et al. 2021, Eq. 14).

    ``score = model.score(x, t) + scale * grad_x log_likelihood(x, t, y)``.  With the exact
    ``log p_t(obs | x)`` and ``scale = 1`` the samplers target the exact posterior.

    Args:
        model: the unconditional score model.
        log_likelihood: ``(x, t, y) -> (B,)`` differentiable in ``x``.
        scale: guidance scale (1 = Bayes' rule).
        model_labels: pass the labels ``y`` on to ``model`` too (a class-conditional model).
    """

    def __init__(
        self,
        model: ScoreFunction,
        log_likelihood: LogLikelihood,
        scale: float = 1.0,
        model_labels: bool = False,
    ) -> None:
        super().__init__(model.sde, "score")
        self.model = model
        self.log_likelihood = log_likelihood
        self.scale = float(scale)
        self.model_labels = bool(model_labels)
        self.nfe_per_call = model.nfe_per_call

    def guidance(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """``grad_x log p_t(obs | x)``, shape ``(B, *D)``."""
        return _grad(lambda x_in: self.log_likelihood(x_in, t, y), x)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        score = self.model.score(x, t, y if self.model_labels else None)
        return score + self.scale * self.guidance(x, t, y)


def check_labels(y: Tensor | None, batch: int, num_classes: int, allow_null: bool = False) -> Tensor:
    """Raise ``ValueError`` unless ``y`` holds ``batch`` integer labels in ``[0, num_classes)``."""
    if y is None:
        raise ValueError("class-conditional sampling needs labels: pass y=(B,) integer classes")
    if not torch.is_tensor(y) or y.is_floating_point() or y.shape != (batch,):
        raise ValueError(f"y must be an integer tensor of shape ({batch},), got {getattr(y, 'shape', y)}")
    hi = num_classes + 1 if allow_null else num_classes
    bad = (y < 0) | (y >= hi)
    if bool(bad.any()):
        top = f"{num_classes - 1} (or {num_classes}, the null label)" if allow_null else f"{num_classes - 1}"
        raise ValueError(f"unknown class {int(y[bad][0])}: classes are 0..{top}")
    return y.long()


def classifier_log_prob(classifier: nn.Module, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """``log p_t(y | x)`` from a classifier returning logits ``(B, C)``; checks the labels."""
    logits = classifier(x, t)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the classifier must return logits of shape (B, C), got {tuple(logits.shape)}")
    y = check_labels(y, x.shape[0], logits.shape[1])
    return torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]


class ClassifierGuidance(LikelihoodGuidance):
    """Class-conditional sampling with a noise-conditional classifier (Song et al. 2021, Sec. 5, App. I.1).

    ``score(x, t, y) = s(x, t) + scale * grad_x log p_t(y | x)``; the labels ``y: (B,)`` are
    those given to :func:`scoresde.sample`.  ``scale = 1`` is Bayes' rule (exact with the
    exact classifier, see :class:`~scoresde.guidance.AnalyticClassifier`); larger scales
    sharpen the classes (Dhariwal & Nichol 2021).

    Args:
        model: the unconditional score model.
        classifier: ``classifier(x, t) -> logits (B, C)``, trained on noisy inputs.
        scale: guidance scale.
    """

    def __init__(self, model: ScoreFunction, classifier: nn.Module, scale: float = 1.0) -> None:
        super().__init__(model, self._log_prob, scale)
        self.classifier = classifier

    def _log_prob(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("classifier guidance needs labels: pass y=(B,) integer classes")
        return classifier_log_prob(self.classifier, x, t, y)


class DPSGuidance(ScoreFunction):
    """Diffusion posterior sampling (Chung et al. 2023, Eq. 16) for ``y = A x + N(0, noise_std^2 I)``.

    Approximates ``p_t(y | x_t)`` by ``N(y; A x0_hat(x_t), noise_std^2 I)`` with the Tweedie
    denoiser ``x0_hat = E[x_0 | x_t]``, and differentiates through the denoiser:
    ``score = s(x_t, t) - scale * grad_x ||y - A x0_hat(x_t)||^2 / (2 noise_std^2)``.
    An approximation (it ignores the spread of ``x_0`` given ``x_t``): biased, most at large ``t``.
    One network evaluation and one backward pass per call.

    Args:
        model: the unconditional score model.
        operator: the measurement ``A``.
        y_obs: observations ``(B, *out_shape)``, or one observation for the whole batch.
        noise_std: the measurement noise ``s_y > 0``.
        scale: multiplies the likelihood gradient (Chung et al.'s step size, here in score units).
    """

    def __init__(
        self,
        model: ScoreFunction,
        operator: LinearOperator,
        y_obs: Tensor,
        noise_std: float,
        scale: float = 1.0,
    ) -> None:
        super().__init__(model.sde, "score")
        if not noise_std > 0:
            raise ValueError(f"DPS needs a positive measurement noise_std, got {noise_std}")
        self.model = model
        self.operator = operator
        self.y_obs = operator.batch_observations(y_obs)
        self.noise_std = float(noise_std)
        self.scale = float(scale)
        self.nfe_per_call = model.nfe_per_call

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        y_obs = self.operator.match_observations(self.y_obs, x)
        s, sigma = (append_dims(c, x.ndim) for c in self.sde.marginal(t))
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = self.model.denoise(x_in, t, y)
            resid = y_obs - self.operator.forward(x0)
            sq = resid.pow(2).reshape(x.shape[0], -1).sum()
            (g,) = torch.autograd.grad(sq, x_in)
        score = (s * x0.detach() - x) / sigma**2  # the score implied by the same evaluation
        return score - self.scale * g / (2 * self.noise_std**2)


class ExactMeasurementLikelihood(nn.Module):
    """The exact ``log p_t(y_obs | x_t)`` of mixture data under ``y = A x_0 + N(0, s_y^2 I)``.

    Given component ``k`` and ``x_t``, ``x_0`` is Gaussian with mean
    ``m_k = mu_k + s S_k (s^2 S_k + sigma^2 I)^{-1} (x_t - s mu_k)`` and covariance
    ``V_k = sigma^2 S_k (s^2 S_k + sigma^2 I)^{-1}``, so
    ``p_t(y | x_t) = sum_k p_t(k | x_t) N(y; A m_k, A V_k A^T + s_y^2 I)``.
    With :class:`LikelihoodGuidance` at scale 1 it gives the exact posterior score: the oracle
    against which DPS and projection are measured.

    Args:
        oracle: the exact unconditional score (mixture and SDE).
        operator: the measurement ``A``.
        y_obs: observations ``(B, *out_shape)`` or one observation.
        noise_std: ``s_y >= 0``.
    """

    def __init__(
        self, oracle: AnalyticScore, operator: LinearOperator, y_obs: Tensor, noise_std: float
    ) -> None:
        super().__init__()
        if operator.in_features != oracle.gmm.dim:
            raise ValueError(f"A acts on {operator.in_features} features, the mixture has {oracle.gmm.dim}")
        self.oracle = oracle
        self.a = operator.to_matrix(oracle.gmm.dtype)
        self.y_obs = operator.batch_observations(y_obs).reshape(-1, operator.out_features)
        check_finite(self.y_obs, "y_obs")
        self.noise_std = float(noise_std)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        gmm = self.oracle.gmm
        xf = self.oracle._flat(x).to(gmm.dtype)
        s, sigma = self.oracle._coefs(x, t)
        log_comp, z, var = gmm._terms(xf, s, sigma)  # z = U^T (x - s mu), var = s^2 e + sigma^2
        log_r = torch.log_softmax(log_comp, dim=1)  # (B, K)
        s_, sig_ = s.to(gmm.dtype)[:, None, None], sigma.to(gmm.dtype)[:, None, None]
        m = gmm.means[None] + torch.einsum("kdj,bkj->bkd", gmm.evecs, s_ * gmm.evals * z / var)  # (B, K, D)
        v_eig = sig_**2 * gmm.evals / var  # (B, K, D)
        au = self.a @ gmm.evecs  # (K, M, D)
        cov = torch.einsum("kmd,bkd,knd->bkmn", au, v_eig, au)
        cov = cov + self.noise_std**2 * torch.eye(self.a.shape[0], dtype=gmm.dtype)
        y_obs = self.y_obs.to(gmm.dtype).expand(x.shape[0], -1)
        resid = y_obs[:, None, :] - m @ self.a.T  # (B, K, M)
        chol = torch.linalg.cholesky(cov)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_n = -0.5 * (resid * sol).sum(-1) - 0.5 * logdet - 0.5 * self.a.shape[0] * LOG_2PI
        return torch.logsumexp(log_r + log_n, dim=1).to(x.dtype)

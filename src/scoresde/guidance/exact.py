"""Exact oracles for controllable generation with Gaussian-mixture data.

* Under a linear Gaussian measurement ``y = A x + n``, ``n ~ N(0, s_y^2 I)``, the posterior of a
  mixture prior ``sum_k w_k N(mu_k, S_k)`` is again a mixture, in closed form
  (:func:`condition`).
* When the mixture components are the classes, ``p_t(y | x)`` is the posterior component
  probability of the perturbed mixture (:class:`AnalyticClassifier`) and every class-conditional
  score is exact (:class:`ClassConditionalScore`).

These drive the tests of every conditional sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scoresde._core.checks import check_finite
from scoresde._core.tensors import LOG_2PI
from scoresde.guidance.operators import LinearOperator, MatrixOperator
from scoresde.models.analytic import AnalyticScore, GaussianMixture
from scoresde.models.base import ScoreFunction
from scoresde.sde.base import SDE

__all__ = [
    "AnalyticClassifier",
    "ClassConditionalScore",
    "MixtureErrors",
    "class_mixture",
    "compare_to_mixture",
    "condition",
]


def condition(
    gmm: GaussianMixture, operator: LinearOperator | Tensor, y: Tensor, noise_std: float = 0.0
) -> GaussianMixture:
    """The exact posterior ``p(x | y)`` of a mixture prior under ``y = A x + N(0, noise_std^2 I)``.

    For each component ``k`` (Bishop 2006, Eq. 2.113-2.117):
    ``C_k = A S_k A^T + s_y^2 I``, ``K_k = S_k A^T C_k^{-1}``,
    ``mu_k' = mu_k + K_k (y - A mu_k)``, ``S_k' = S_k - K_k A S_k`` and weights
    ``w_k' ∝ w_k N(y; A mu_k, C_k)``.

    Args:
        gmm: the prior.
        operator: a :class:`LinearOperator` or a matrix ``(M, D)``.
        y: one observation ``(M,)``, ``(1, M)`` or ``(1, *out_shape)``.
        noise_std: measurement noise ``s_y`` (0 for noise-free measurements; then every
            ``A S_k A^T`` must be non-singular).

    Returns:
        The posterior as a :class:`GaussianMixture` on the flattened signal.
    """
    op = operator if isinstance(operator, LinearOperator) else MatrixOperator(operator)
    if op.in_features != gmm.dim:
        raise ValueError(f"A acts on {op.in_features} features but the mixture has dimension {gmm.dim}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    a = op.to_matrix(gmm.dtype)  # (M, D)
    yv = torch.as_tensor(y, dtype=gmm.dtype).reshape(-1)
    if yv.shape[0] != a.shape[0]:
        raise ValueError(f"y has {yv.shape[0]} entries but A has {a.shape[0]} rows")
    check_finite(yv, "y")
    m = a.shape[0]
    c = a @ gmm.covs @ a.T + noise_std**2 * torch.eye(m, dtype=gmm.dtype)  # (K, M, M)
    chol, info = torch.linalg.cholesky_ex(c)
    if bool((info != 0).any()):
        raise ValueError("A S_k A^T + noise_std^2 I is singular: use noise_std > 0 or a full-rank A")
    resid = yv - gmm.means @ a.T  # (K, M)
    sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # C_k^{-1} (y - A mu_k)
    gain_t = torch.cholesky_solve(a @ gmm.covs, chol)  # C_k^{-1} A S_k = K_k^T, (K, M, D)
    means = gmm.means + torch.einsum("kdm,km->kd", (a @ gmm.covs).transpose(-1, -2), sol)
    covs = gmm.covs - (a @ gmm.covs).transpose(-1, -2) @ gain_t
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_lik = -0.5 * (resid * sol).sum(-1) - 0.5 * logdet - 0.5 * m * LOG_2PI
    log_w = torch.log(gmm.weights) + log_lik
    weights = torch.softmax(log_w, dim=0)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    return GaussianMixture(weights, means, covs, dtype=gmm.dtype)


def _class_index(classes: Sequence[int] | Tensor | None, k: int) -> Tensor:
    if classes is None:
        return torch.arange(k)
    idx = torch.as_tensor(classes, dtype=torch.long)
    if idx.shape != (k,) or bool((idx < 0).any()):
        raise ValueError(f"classes must give a non-negative class for each of the {k} components")
    return idx


def class_mixture(
    gmm: GaussianMixture, label: int, classes: Sequence[int] | Tensor | None = None
) -> GaussianMixture:
    """The class-conditional distribution ``p(x | y = label)``: the components of class ``label``."""
    idx = _class_index(classes, gmm.n_components)
    n_classes = int(idx.max()) + 1
    if not 0 <= label < n_classes:
        raise ValueError(f"unknown class {label}; the mixture has classes 0..{n_classes - 1}")
    keep = idx == label
    return GaussianMixture(gmm.weights[keep], gmm.means[keep], gmm.covs[keep], dtype=gmm.dtype)


class AnalyticClassifier(nn.Module):
    """The exact time-dependent classifier ``log p_t(y | x)`` of a mixture whose components are classes.

    ``p_t(y | x) = sum_{k in y} p_t(k | x)``, the responsibilities of the perturbed mixture
    (Song et al. 2021, Sec. 5: the noise-conditional classifier of class-conditional sampling).

    Args:
        oracle: the exact unconditional score (carries the mixture and the SDE).
        classes: class of each component (default: component ``k`` is class ``k``).

    Call: ``classifier(x, t) -> (B, num_classes)`` log-probabilities.
    """

    classes: Tensor  # buffer: the class of each mixture component

    def __init__(self, oracle: AnalyticScore, classes: Sequence[int] | Tensor | None = None) -> None:
        super().__init__()
        self.oracle = oracle
        self.register_buffer("classes", _class_index(classes, oracle.gmm.n_components))
        self.num_classes = int(self.classes.max()) + 1

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s, sigma = self.oracle._coefs(x, t)
        log_comp, _, _ = self.oracle.gmm._terms(self.oracle._flat(x), s, sigma)
        log_r = torch.log_softmax(log_comp, dim=1)  # (B, K) = log p_t(k | x)
        member = torch.nn.functional.one_hot(self.classes, self.num_classes).to(log_r)  # (K, C)
        # log p_t(c | x) = logsumexp over the components k of class c.
        return torch.logsumexp(log_r[:, :, None] + torch.log(member)[None], dim=1).to(x.dtype)


class ClassConditionalScore(ScoreFunction):
    """Exact class-conditional scores ``grad log p_t(x | y)`` of a labelled mixture.

    ``y = num_classes`` (the null token of classifier-free guidance) or ``y=None`` gives the
    unconditional score.  A test oracle for :class:`~scoresde.guidance.ClassifierFreeGuidance`.

    Args:
        gmm: the mixture.
        sde: the forward SDE.
        classes: class of each component (default: component ``k`` is class ``k``).
    """

    def __init__(self, gmm: GaussianMixture, sde: SDE, classes: Sequence[int] | Tensor | None = None) -> None:
        super().__init__(sde, "score")
        idx = _class_index(classes, gmm.n_components)
        self.num_classes = int(idx.max()) + 1
        self.unconditional = AnalyticScore(gmm, sde)
        self.per_class = [AnalyticScore(class_mixture(gmm, c, idx), sde) for c in range(self.num_classes)]

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        out = self.unconditional(x, t)
        if y is None:
            return out
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if bool(((y < 0) | (y > self.num_classes)).any()):
            raise ValueError(
                f"unknown class in y; classes are 0..{self.num_classes - 1} (null {self.num_classes})"
            )
        for c, oracle in enumerate(self.per_class):
            sel = y == c
            if bool(sel.any()):
                out[sel] = oracle(x[sel], t[sel])
        return out


@dataclass
class MixtureErrors:
    """Largest absolute errors of samples' mode weights, component means and covariances.

    Attributes:
        weights: ``max_k |w_k(samples) - w_k|``.
        means: ``max_{k, i} |mean_k(samples) - mu_k|_i`` over modes with enough samples.
        covs: ``max_{k, i, j} |cov_k(samples) - S_k|_{ij}`` over the same modes.
        counts: samples assigned to each mode.
    """

    weights: float
    means: float
    covs: float
    counts: list[int]


def compare_to_mixture(target: GaussianMixture, x: Tensor, min_count: int = 50) -> MixtureErrors:
    """Compare samples ``x: (N, *D)`` with a mixture by assigning each to its most likely component.

    The assignment uses the responsibilities of the target slightly smoothed (``sigma = 1e-3``),
    so that singular covariances (noise-free posteriors) are usable.  Modes with fewer than
    ``min_count`` assigned samples are left out of the mean and covariance errors.
    """
    flat = x.reshape(x.shape[0], -1).to(target.dtype)
    if flat.shape[1] != target.dim:
        raise ValueError(f"samples have {flat.shape[1]} features, the mixture has dimension {target.dim}")
    n, k = flat.shape[0], target.n_components
    r = target.perturbed_responsibilities(flat, torch.ones(n, dtype=target.dtype), torch.full((n,), 1e-3))
    lab = r.argmax(1)
    counts = torch.bincount(lab, minlength=k)
    dw = float((counts.to(target.dtype) / n - target.weights).abs().max())
    dm = dc = 0.0
    for j in range(k):
        sel = flat[lab == j]
        if len(sel) < min_count:
            continue
        dm = max(dm, float((sel.mean(0) - target.means[j]).abs().max()))
        dc = max(dc, float((torch.cov(sel.T) - target.covs[j]).abs().max()))
    return MixtureErrors(dw, dm, dc, counts.tolist())

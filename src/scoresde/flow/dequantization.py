"""Discrete data for likelihoods: quantization, uniform dequantization and the ``[0, eps]`` terms.

Bits/dim of discrete data (e.g. 8-bit images) under a continuous model need three
ingredients that are easy to get silently wrong; each one is explicit here.

1. **Quantization.**  A :class:`Quantization` declares that each entry of the data is an
   integer bin ``k in {0, ..., num_bins - 1}`` whose bin is the interval
   ``[low + k w, low + (k + 1) w)`` of the model's space, ``w = (high - low) / num_bins``.
   8-bit images scaled to ``[-1, 1]`` are ``Quantization(256, -1.0, 1.0)`` (the paper's setup).
   Training data hold the levels themselves, scaled so that the integers map exactly onto
   ``[low, high]`` (``x = low + k (high - low) / (K - 1)``, :mod:`scoresde.data.images`);
   :meth:`Quantization.levels_of` reads the bins back.  This is the library's one convention:
   the trainer, ``scoresde likelihood`` and :func:`~scoresde.flow.likelihood.log_likelihood`
   all go through this class.
2. **Uniform dequantization** (Theis et al. 2016; Song et al. 2021, App. D.2): with
   ``y = low + (k + u) w``, ``u ~ U[0, 1)^D``, Jensen gives
   ``log P(k) >= E_u[log p(y)] + D log w``.  ``D log w`` is the log-Jacobian of the data
   scaling (for 8 bits in ``[-1, 1]``: ``D log(2/256)``), added explicitly instead of a
   hard-coded bits/dim offset.  Several draws of ``u`` may be averaged.
3. **The interval ``[0, eps]``.**  The probability-flow ODE is integrated from ``eps`` (where
   the model's score is still defined) to ``T``, so it yields ``log p_eps``, the density of the
   data *slightly noised*.  The paper's convention (``eps_correction="none"``) evaluates
   ``log p_eps`` at the data point itself.  Two corrections turn this into a bound on a proper
   model of the data at ``t = 0`` by adding a decoder ``p(x_0 | x_eps)`` (as in Song et al.
   2021c and Kingma et al. 2021's VDM), with ``x_eps ~ q(x_eps | x_0) = N(s x_0, sigma^2 I)``
   the forward kernel at ``eps``:

   - ``"gaussian"``: decoder ``N(x_0; x_eps / s, sigma_hat^2 I)``; the bound
     ``E_q[log p_eps(x_eps) + log p(x_0 | x_eps) - log q(x_eps | x_0)]`` simplifies to
     ``E_n[log p_eps(s x_0 + sigma n)] + D log s``: a lower bound on the continuous density of
     "ODE to ``eps``, then the Gaussian decoder".  Combines with uniform dequantization.
   - ``"discretized"`` (dequantization-free, needs a :class:`Quantization`): decoder mass of
     bin ``k`` under ``N(x_eps / s, sigma_hat^2 I)`` (outer bins open-ended, as in Ho et al.
     2020's discretized decoder) and ``q`` centred on the bin centre; a lower bound on the
     probability of ``k`` under a proper discrete model, no Jacobian needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde._core.tensors import LOG_2PI, sum_except_batch
from scoresde.sde.base import SDE

__all__ = ["EPS_CORRECTIONS", "Quantization", "likelihood_points"]

EPS_CORRECTIONS = ("none", "gaussian", "discretized")


@dataclass(frozen=True)
class Quantization:
    """Integer-valued data ``k in {0, ..., num_bins - 1}`` with bins tiling ``[low, high)``.

    Args:
        num_bins: number of levels per entry (256 for 8 bits).
        low, high: the interval of the model's space that the bins tile.
    """

    num_bins: int = 256
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if int(self.num_bins) < 2:
            raise ValueError(f"num_bins must be at least 2, got {self.num_bins}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"need finite low < high, got low={self.low}, high={self.high}")

    @property
    def width(self) -> float:
        """Bin width ``w`` in the model's space: ``dy/du`` of the data scaling."""
        return (self.high - self.low) / self.num_bins

    def check(self, k: Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` unless ``k`` holds integers in ``[0, num_bins - 1]``."""
        if not torch.is_tensor(k):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
        kf = k.to(torch.float64)
        if not bool(torch.isfinite(kf).all()):
            raise ValueError(f"{name} contains non-finite values")
        if not bool((kf == torch.round(kf)).all()):
            raise ValueError(f"{name} must hold integer bin indices for bits/dim (declared {self})")
        lo, hi = float(kf.min()), float(kf.max())
        if lo < 0 or hi > self.num_bins - 1:
            raise ValueError(
                f"{name} has values in [{lo:g}, {hi:g}], outside the declared range "
                f"[0, {self.num_bins - 1}] of {self}"
            )

    def dequantize(self, k: Tensor, u: Tensor) -> Tensor:
        """``y = low + (k + u) w`` for offsets ``u`` in ``[0, 1)``."""
        return self.low + (k + u) * self.width

    def centre(self, k: Tensor) -> Tensor:
        """Bin centres ``low + (k + 1/2) w``."""
        return self.dequantize(k, torch.full_like(k, 0.5))

    def levels_of(self, x: Tensor) -> Tensor:
        """The bins ``k`` of data scaled as ``x = low + k (high - low) / (K - 1)`` (rounded, clamped)."""
        k = torch.round((x.double() - self.low) / (self.high - self.low) * (self.num_bins - 1))
        return k.clamp(0, self.num_bins - 1).to(
            x.dtype if x.is_floating_point() else torch.get_default_dtype()
        )

    def dequantize_data(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Uniformly dequantize scaled data ``x`` (see :meth:`levels_of`): ``low + (k + u) w``,
        ``u ~ U[0, 1)^D`` drawn in float64 on the CPU generator's device; ``x``'s dtype."""
        k = torch.round((x.double() - self.low) / (self.high - self.low) * (self.num_bins - 1))
        dev = generator.device if generator is not None else x.device
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=dev).to(x.device)
        return self.dequantize(k, u).to(x.dtype)

    def log_jacobian(self, num_dims: int) -> float:
        """``D log w``: add to ``log p(y)`` of dequantized data for the density of ``k + u``."""
        return num_dims * math.log(self.width)

    def bits_per_dim(self, logp: Tensor, num_dims: int, dequantized: bool = True) -> Tensor:
        """Bits/dim of discrete data from log-likelihoods in nats.

        Args:
            logp: ``log p(y)`` of dequantized data ``y`` (``dequantized=True``), or already a
                bound on ``log P(k)`` (``dequantized=False``, e.g. ``LikelihoodResult.logp``).
            num_dims: ``D``, the entries per data point.
        """
        jac = self.log_jacobian(num_dims) if dequantized else 0.0
        return -(logp + jac) / (num_dims * math.log(2.0))

    def log_bin_mass(self, k: Tensor, mean: Tensor, std: float | Tensor) -> Tensor:
        """``log P(bin k)`` under ``N(mean, std^2)`` per entry, outer bins open-ended; shape of ``k``."""
        w = self.width
        a = (self.low + k * w - mean) / std
        b = (self.low + (k + 1) * w - mean) / std
        a = torch.where(k <= 0, torch.full_like(a, -math.inf), a)
        b = torch.where(k >= self.num_bins - 1, torch.full_like(b, math.inf), b)
        # log(Phi(b) - Phi(a)), evaluated in the tail where it is accurate (mirror if a > 0).
        flip = a > 0
        lo = torch.where(flip, -b, a)
        hi = torch.where(flip, -a, b)
        log_hi = torch.special.log_ndtr(hi)
        log_lo = torch.special.log_ndtr(lo)
        return log_hi + torch.log1p(-torch.exp(log_lo - log_hi))


def _randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=dev).to(like.device)


def _rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=dev).to(like.device)


def likelihood_points(
    x: Tensor,
    sde: SDE,
    quantization: Quantization | None,
    eps_correction: str,
    draws: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Where to evaluate ``log p_eps``, and what to add to it.

    ``log P(x)`` (or ``log p(x)`` for continuous data) is estimated by the mean over draws of
    ``log p_eps(points[j]) + offset[j]``; see the module docstring for each term.  Random draws
    come from ``generator`` in a fixed order: first the dequantization offsets ``(S, B, *D)``,
    then the forward-kernel noise ``(S, B, *D)``.

    Args:
        x: ``(B, *D)`` data; integer bins when ``quantization`` is given.
        sde: the forward SDE (its ``eps`` and marginal at ``eps``).
        quantization: how discrete data map to the model's space, or ``None``.
        eps_correction: ``none``, ``gaussian`` or ``discretized``.
        draws: number ``S`` of Monte-Carlo draws (of ``u`` and/or ``n``).
        generator: source of every random draw.

    Returns:
        ``points: (S, B, *D)`` in ``x``'s dtype and ``offset: (S, B)``.
    """
    if eps_correction not in EPS_CORRECTIONS:
        raise ValueError(f"unknown eps_correction {eps_correction!r}; choose one of {list(EPS_CORRECTIONS)}")
    if eps_correction == "discretized" and quantization is None:
        raise ValueError(
            "eps_correction='discretized' needs a Quantization (it is a bound for discrete data)"
        )
    if int(draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    random = quantization is not None or eps_correction != "none"
    s_count = int(draws) if random else 1
    shape = (s_count, *x.shape)
    b, d = x.shape[0], x[0].numel()
    offset = torch.zeros(s_count, b, dtype=x.dtype, device=x.device)

    # Data in the model's space: uniformly dequantized, bin centres, or the continuous input.
    if quantization is None:
        y = x.expand(shape)
    elif eps_correction == "discretized":
        y = quantization.centre(x).expand(shape)
    else:
        y = quantization.dequantize(x, _rand(shape, x, generator))
        offset = offset + d * math.log(quantization.width)
    if eps_correction == "none":
        return y.contiguous(), offset

    # Forward kernel at eps: x_eps = s y + sigma n.
    if sde.eps <= 0:
        raise ValueError(f"eps_correction={eps_correction!r} needs sde.eps > 0, got {sde.eps}")
    s, sigma = (float(c) for c in sde.marginal(torch.tensor(sde.eps, dtype=torch.float64)))
    n = _randn(shape, x, generator)
    points = s * y + sigma * n
    flat_n2 = sum_except_batch(n.reshape(s_count * b, *x.shape[1:]) ** 2).reshape(s_count, b)
    if eps_correction == "gaussian":
        return points, offset + d * math.log(s)
    # Discretized decoder: log q(x_eps | centre) subtracted, log P_dec(k | x_eps) added.
    sigma_hat = sigma / s
    assert quantization is not None  # checked above: 'discretized' needs one
    neg_log_q = 0.5 * d * (LOG_2PI + 2 * math.log(sigma)) + 0.5 * flat_n2
    log_dec = quantization.log_bin_mass(x.expand(shape), points / s, sigma_hat)
    log_dec = log_dec.reshape(s_count, b, -1).sum(-1)
    return points, offset + neg_log_q + log_dec

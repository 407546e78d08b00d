"""Conversions between what a network may predict: score, epsilon, x0, v and velocity.

For the marginal ``x = s x0 + sigma n`` of any linear SDE (see :mod:`scoresde.sde.base`):

- epsilon: ``eps = E[n | x]``; score ``= -eps / sigma`` (Song et al. 2021, Eq. 7 target);
- x0 (the denoiser, Tweedie's formula): ``x0 = (x - sigma eps) / s``;
- v (Salimans & Ho 2022, generalised): ``v = (s eps - sigma x0) / sqrt(s^2 + sigma^2)``;
- velocity (flow matching): ``u = s' x0 + sigma' eps``, the probability-flow ODE drift
  ``f x - g^2 score / 2`` written in the path's derivatives.

Every conversion goes through epsilon; all take per-sample coefficients already broadcast
to ``x``'s shape.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from scoresde._core.tensors import scalar

PREDICTIONS = ("score", "eps", "x0", "v", "velocity")

__all__ = [
    "PREDICTIONS",
    "apply_conversion",
    "check_prediction",
    "conversion_coefficients",
    "convert",
    "convert_at",
    "from_eps",
    "to_eps",
]


def check_prediction(prediction: str) -> str:
    """Return ``prediction`` if it names a known parameterisation, else raise ``ValueError``."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")
    return prediction


def to_eps(
    prediction: str,
    out: Tensor,
    x: Tensor,
    s: Tensor,
    sigma: Tensor,
    ds: Tensor | None = None,
    dsigma: Tensor | None = None,
) -> Tensor:
    """Convert a prediction of kind ``prediction`` to epsilon.

    Args:
        prediction: one of :data:`PREDICTIONS`.
        out: the prediction, shape ``(B, *D)``.
        x: the noisy input ``x_t``.
        s, sigma: marginal coefficients broadcastable to ``x``.
        ds, dsigma: their time derivatives (only for ``velocity``).
    """
    if prediction == "eps":
        return out
    if prediction == "score":
        return -sigma * out
    if prediction == "x0":
        return (x - s * out) / sigma
    if prediction == "v":
        # x = s x0 + sigma eps and v r = s eps - sigma x0 with r = sqrt(s^2 + sigma^2).
        r2 = s**2 + sigma**2
        return (sigma * x + s * r2**0.5 * out) / r2
    if prediction == "velocity":
        if ds is None or dsigma is None:
            raise ValueError("velocity conversion needs ds/dt and dsigma/dt")
        # Solve [s sigma; s' sigma'] [x0; eps] = [x; u] for eps.
        det = s * dsigma - sigma * ds
        return (s * out - ds * x) / det
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")


def convert(
    prediction: str,
    kind: str,
    out: Tensor,
    x: Tensor,
    s: Tensor,
    sigma: Tensor,
    ds: Tensor | None = None,
    dsigma: Tensor | None = None,
) -> Tensor:
    """Convert a prediction of kind ``prediction`` to one of kind ``kind``.

    Through epsilon (:func:`to_eps` then :func:`from_eps`), except ``v -> x0``, computed directly
    as ``x0 = (s x - sigma r v) / r^2`` (``s x - sigma v`` for a VP SDE, ``r = 1``): through
    epsilon it divides ``x - sigma eps`` by ``s``, a cancellation that loses digits as ``s -> 0``
    (2e-5 of the output scale near ``T`` of a 4000-step cosine table in float32).
    """
    if prediction == kind:
        return out
    if (prediction, kind) == ("v", "x0"):
        r2 = s**2 + sigma**2
        return (s * x - sigma * r2**0.5 * out) / r2
    eps = to_eps(prediction, out, x, s, sigma, ds, dsigma)
    return from_eps(kind, eps, x, s, sigma, ds, dsigma)


def from_eps(
    prediction: str,
    eps: Tensor,
    x: Tensor,
    s: Tensor,
    sigma: Tensor,
    ds: Tensor | None = None,
    dsigma: Tensor | None = None,
) -> Tensor:
    """Convert epsilon to a prediction of kind ``prediction`` (the inverse of :func:`to_eps`)."""
    if prediction == "eps":
        return eps
    if prediction == "score":
        return -eps / sigma
    x0 = (x - sigma * eps) / s
    if prediction == "x0":
        return x0
    if prediction == "v":
        return (s * eps - sigma * x0) / (s**2 + sigma**2) ** 0.5
    if prediction == "velocity":
        if ds is None or dsigma is None:
            raise ValueError("velocity conversion needs ds/dt and dsigma/dt")
        return ds * x0 + dsigma * eps
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")


@lru_cache(maxsize=8192)
def conversion_coefficients(
    prediction: str,
    kind: str,
    s: float,
    sigma: float,
    ds: float | None = None,
    dsigma: float | None = None,
) -> tuple[float, float] | None:
    """The coefficients ``(a, b)`` of ``kind = a out + b x`` at one time, or ``None`` where a
    coefficient divides by zero (a conversion undefined at ``sigma = 0``, a zero determinant).

    Every conversion is linear in ``(out, x)``: ``a, b`` are :func:`convert` itself at the basis
    ``(1, 0)`` and ``(0, 1)``, in float64 Python arithmetic (one set of formulas, ``v -> x0``
    directly as there).  :func:`apply_conversion` applies them.  Memoised (8192 entries): a
    sampler asks for the same coefficients at the times of its grid on every run.
    """
    if (ds is None or dsigma is None) and "velocity" in (prediction, kind):
        raise ValueError("velocity conversion needs ds/dt and dsigma/dt")
    coefs = (s, sigma, ds, dsigma)
    try:
        a = float(convert(prediction, kind, 1.0, 0.0, *coefs))  # type: ignore[arg-type]
        b = float(convert(prediction, kind, 0.0, 1.0, *coefs))  # type: ignore[arg-type]
    except ZeroDivisionError:
        return None
    return a, b


def apply_conversion(out: Tensor, x: Tensor, a: float, b: float) -> Tensor:
    """``a out + b x`` (coefficients of :func:`conversion_coefficients`) in two tensor operations.

    Computed as ``b (x + (a / b) out)``: the sum is rounded once at the scale of ``x``, as the
    tensor form ``(x - sigma eps) / s`` does (``b x + a out`` would round both products first,
    and at small sigma, where x0 -> eps and x0 -> score nearly cancel, lose those digits).
    """
    if b == 0.0:
        return out * scalar(a, out.dtype)
    res = torch.add(x, out, alpha=a / b)
    return res.mul_(scalar(b, res.dtype))


def convert_at(
    prediction: str,
    kind: str,
    out: Tensor,
    x: Tensor,
    s: float,
    sigma: float,
    ds: float | None = None,
    dsigma: float | None = None,
) -> Tensor:
    """:func:`convert` at one time for the whole batch, its coefficients Python floats.

    Every conversion is linear in ``(out, x)``: ``kind = a out + b x``, with ``a, b`` from
    :func:`conversion_coefficients`, applied by :func:`apply_conversion` in two tensor operations
    instead of four to eight.  Where a coefficient divides by zero (a conversion undefined at
    ``sigma = 0``, or a zero determinant) it falls back to :func:`convert`, which gives the
    tensor's inf / NaN.
    """
    if prediction == kind:
        return out
    ab = conversion_coefficients(prediction, kind, s, sigma, ds, dsigma)
    if ab is None:

        def tensor(v: float) -> Tensor:
            return torch.tensor(v, dtype=x.dtype, device=x.device)

        d1 = None if ds is None else tensor(ds)
        d2 = None if dsigma is None else tensor(dsigma)
        return convert(prediction, kind, out, x, tensor(s), tensor(sigma), d1, d2)
    return apply_conversion(out, x, *ab)

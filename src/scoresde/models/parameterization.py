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

from torch import Tensor

PREDICTIONS = ("score", "eps", "x0", "v", "velocity")

__all__ = ["PREDICTIONS", "check_prediction", "convert", "from_eps", "to_eps"]


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
        return (sigma * x + s * r2.sqrt() * out) / r2
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
        return (s * x - sigma * r2.sqrt() * out) / r2
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
        return (s * eps - sigma * x0) / (s**2 + sigma**2).sqrt()
    if prediction == "velocity":
        if ds is None or dsigma is None:
            raise ValueError("velocity conversion needs ds/dt and dsigma/dt")
        return ds * x0 + dsigma * eps
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")

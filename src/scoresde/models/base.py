"""The interface every score model answers: one raw prediction, every other one derived."""

from __future__ import annotations

from abc import abstractmethod

from torch import Tensor, nn

from scoresde._utils import append_dims, batch_time
from scoresde.models.parameterization import check_prediction, from_eps, to_eps
from scoresde.sde.base import SDE

__all__ = ["ScoreFunction"]


class ScoreFunction(nn.Module):
    """A model of ``grad log p_t(x)`` for a given :class:`~scoresde.sde.SDE`.

    Subclasses implement :meth:`forward` returning their native ``prediction`` (one of
    ``score``, ``eps``, ``x0``, ``v``, ``velocity``); :meth:`eps`, :meth:`score`,
    :meth:`denoise`, :meth:`v` and :meth:`velocity` convert consistently through the SDE's
    marginal (see :mod:`scoresde.models.parameterization`).  Samplers, losses and the
    likelihood only ever call these five methods.

    ``nfe_per_call`` is the number of network evaluations one call costs (2 for
    classifier-free guidance, which evaluates the conditional and unconditional model);
    :class:`CountingModel` counts it.

    Args:
        sde: the forward SDE whose marginals the model describes.
        prediction: what :meth:`forward` returns.
    """

    nfe_per_call: int = 1

    def __init__(self, sde: SDE, prediction: str) -> None:
        super().__init__()
        self.sde = sde
        self.prediction = check_prediction(prediction)

    @abstractmethod
    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The native prediction at ``x: (B, *D)``, ``t: (B,)``, optional labels ``y: (B,)``."""

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The prediction of kind ``kind`` (``score``, ``eps``, ``x0``, ``v``, ``velocity``)."""
        check_prediction(kind)
        t = batch_time(t, x)
        out = self(x, t, y)
        if kind == self.prediction:
            return out
        s, sigma = (append_dims(c, x.ndim) for c in self.sde.marginal(t))
        ds = dsigma = None
        if "velocity" in (kind, self.prediction):
            ds, dsigma = (append_dims(c, x.ndim) for c in self.sde.marginal_derivatives(t))
        eps = to_eps(self.prediction, out, x, s, sigma, ds, dsigma)
        return from_eps(kind, eps, x, s, sigma, ds, dsigma)

    def eps(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted noise ``E[n | x_t]``."""
        return self.predict("eps", x, t, y)

    def score(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted score ``grad_x log p_t(x)``."""
        return self.predict("score", x, t, y)

    def denoise(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted clean data ``E[x_0 | x_t]`` (Tweedie's formula)."""
        return self.predict("x0", x, t, y)

    def v(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted ``v`` (Salimans & Ho 2022, generalised to any linear SDE)."""
        return self.predict("v", x, t, y)

    def velocity(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The probability-flow ODE drift ``dx/dt`` (Song et al. 2021, Eq. 13)."""
        return self.predict("velocity", x, t, y)

    def score_fn(self, y: Tensor | None = None):
        """A plain ``(x, t) -> score`` closure, e.g. for :meth:`SDE.reverse`."""
        return lambda x, t: self.score(x, t, y)


class CountingModel(ScoreFunction):
    """Wraps a :class:`ScoreFunction` and counts its evaluations (the NFE).

    One batched call of the underlying network counts as one function evaluation,
    whatever is derived from it; a wrapped model that evaluates its network several times
    per call (e.g. classifier-free guidance) declares so in ``nfe_per_call``.
    """

    def __init__(self, model: ScoreFunction) -> None:
        super().__init__(model.sde, model.prediction)
        self.inner = model
        self.nfe_per_call = model.nfe_per_call
        self.nfe = 0

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        self.nfe += self.inner.nfe_per_call
        return self.inner(x, t, y)

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        self.nfe += self.inner.nfe_per_call
        return self.inner.predict(kind, x, t, y)

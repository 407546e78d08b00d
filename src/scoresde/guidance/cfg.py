"""Classifier-free guidance (Ho & Salimans 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.guidance.likelihood import check_labels
from scoresde.models.base import ScoreFunction

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(ScoreFunction):
    """The guided noise ``eps~ = (1 + w) eps(x, t, y) - w eps(x, t, null)`` (Ho & Salimans 2022, Eq. 6).

    ``scale`` is Ho & Salimans' ``w``: ``w = 0`` is the plain conditional model, ``w > 0``
    sharpens towards ``p_t(x | y)^{1+w} / p_t(x)^w`` (diffusers' ``guidance_scale`` is
    ``1 + w``).  In score form this is classifier guidance with the implicit classifier
    ``grad log p_t(y | x) = score(x, t, y) - score(x, t, null)`` at scale ``1 + w``.

    The conditional and unconditional predictions come from one network call on the doubled
    batch; that is two network evaluations per sample, so ``nfe_per_call = 2`` and
    :func:`scoresde.sample` reports twice the steps.

    Args:
        model: a class-conditional model trained with label dropout (e.g. ``MLP(num_classes=C)``),
            whose label ``null_label`` means "no label".
        scale: the guidance weight ``w``.
        null_label: the null token (default: the network's ``num_classes``, as :class:`~scoresde.MLP`).
    """

    nfe_per_call = 2

    def __init__(self, model: ScoreFunction, scale: float = 1.0, null_label: int | None = None) -> None:
        super().__init__(model.sde, "eps")
        if null_label is None:
            null_label = getattr(getattr(model, "net", model), "num_classes", None)
        if null_label is None or int(null_label) < 1:
            raise ValueError("give null_label: the model (or its net) has no num_classes attribute")
        self.model = model
        self.scale = float(scale)
        self.null_label = int(null_label)
        self.nfe_per_call = 2 * model.nfe_per_call

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        y = check_labels(y, x.shape[0], self.null_label, allow_null=True).to(x.device)
        null = torch.full_like(y, self.null_label)
        eps = self.model.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        eps_cond, eps_uncond = eps.chunk(2)
        # Guided noise prediction (Ho & Salimans 2022, Eq. 6).
        return (1 + self.scale) * eps_cond - self.scale * eps_uncond

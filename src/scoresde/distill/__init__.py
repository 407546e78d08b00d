"""Learned few-step generators distilled from any score model.

- :mod:`~scoresde.distill.consistency`: consistency models (Song et al. 2023) with the
  boundary-condition parameterisation, the consistency distillation and consistency
  training losses;
- :mod:`~scoresde.distill.loop`: the training loop :func:`distill` (EMA target network,
  AdamW), returning the student ready for ``sample(..., method="consistency")``;
- :mod:`~scoresde.distill.reflow`: rectified-flow reflow (Liu et al. 2023): couplings from
  the probability-flow ODE, flow matching on them, and the straightness of a flow.
"""

from scoresde.distill.consistency import ConsistencyLoss, ConsistencyModel, flow_map
from scoresde.distill.loop import DistillResult, distill
from scoresde.distill.reflow import ReflowResult, reflow, reflow_pairs, straightness

__all__ = [
    "ConsistencyLoss",
    "ConsistencyModel",
    "DistillResult",
    "ReflowResult",
    "distill",
    "flow_map",
    "reflow",
    "reflow_pairs",
    "straightness",
]

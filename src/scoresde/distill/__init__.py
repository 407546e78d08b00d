"""Learned few-step generators distilled from any score model.

- :mod:`~scoresde.distill.consistency`: consistency models (Song et al. 2023) with the
  boundary-condition parameterisation, the consistency distillation and consistency
  training losses;
- :mod:`~scoresde.distill.loop`: the training loop :func:`distill` (EMA target network,
  AdamW), returning the student ready for ``sample(..., method="consistency")``;
- :mod:`~scoresde.distill.run`: a distillation run in a run folder with checkpoints and an exact
  resume (:class:`Distiller`, what ``scoresde distill`` runs);
- :mod:`~scoresde.distill.progressive`: progressive distillation (Salimans & Ho 2022): halve the
  DDIM steps of a teacher, round by round; :mod:`~scoresde.distill.progressive_run` its run
  (:class:`ProgressiveDistiller`, what ``scoresde distill --method progressive`` runs);
- :mod:`~scoresde.distill.reflow`: rectified-flow reflow (Liu et al. 2023): couplings from
  the probability-flow ODE, flow matching on them, and the straightness of a flow.
"""

from scoresde.distill.consistency import ConsistencyLoss, ConsistencyModel, flow_map
from scoresde.distill.loop import DistillResult, distill
from scoresde.distill.make import make_distiller
from scoresde.distill.progressive import (
    ProgressiveResult,
    ProgressiveRound,
    progressive_distill,
    progressive_loss,
    two_step_target,
)
from scoresde.distill.progressive_run import ProgressiveDistiller
from scoresde.distill.reflow import ReflowResult, reflow, reflow_pairs, straightness
from scoresde.distill.run import DistillConfig, Distiller

__all__ = [
    "ConsistencyLoss",
    "ConsistencyModel",
    "DistillConfig",
    "DistillResult",
    "Distiller",
    "ProgressiveDistiller",
    "ProgressiveResult",
    "ProgressiveRound",
    "ReflowResult",
    "distill",
    "flow_map",
    "make_distiller",
    "progressive_distill",
    "progressive_loss",
    "reflow",
    "reflow_pairs",
    "straightness",
    "two_step_target",
]

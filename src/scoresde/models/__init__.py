"""Score models: the common interface, the network wrapper and exact oracles."""

from scoresde.models.analytic import AnalyticScore, GaussianMixture
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.models.clipping import ClipDenoised, dynamic_threshold
from scoresde.models.funnel import Funnel
from scoresde.models.parameterization import PREDICTIONS, from_eps, to_eps
from scoresde.models.wrapper import ScoreModel

__all__ = [
    "PREDICTIONS",
    "AnalyticScore",
    "ClipDenoised",
    "CountingModel",
    "Funnel",
    "GaussianMixture",
    "ScoreFunction",
    "ScoreModel",
    "dynamic_threshold",
    "from_eps",
    "to_eps",
]

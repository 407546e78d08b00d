"""Controllable generation (Song et al. 2021, Sec. 5 and App. I; Ho & Salimans 2022).

Guidance produces a new :class:`~scoresde.models.ScoreFunction` whose score is the conditional
one, so every sampler works unchanged: :class:`ClassifierGuidance`, :class:`ClassifierFreeGuidance`,
:class:`DPSGuidance`, :class:`LikelihoodGuidance`.  Projection-based conditioning
(:func:`conditional_sample`, :func:`inpaint`, :func:`colorize`) acts between sampler steps.
"""

from scoresde.guidance.cfg import ClassifierFreeGuidance
from scoresde.guidance.exact import AnalyticClassifier, ClassConditionalScore, class_mixture, condition
from scoresde.guidance.likelihood import (
    ClassifierGuidance,
    DPSGuidance,
    ExactMeasurementLikelihood,
    LikelihoodGuidance,
    classifier_log_prob,
)
from scoresde.guidance.operators import (
    Colorization,
    FunctionOperator,
    Inpainting,
    LinearOperator,
    MatrixOperator,
)
from scoresde.guidance.projection import colorize, conditional_sample, inpaint

__all__ = [
    "AnalyticClassifier",
    "ClassConditionalScore",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "Colorization",
    "DPSGuidance",
    "ExactMeasurementLikelihood",
    "FunctionOperator",
    "Inpainting",
    "LikelihoodGuidance",
    "LinearOperator",
    "MatrixOperator",
    "class_mixture",
    "classifier_log_prob",
    "colorize",
    "condition",
    "conditional_sample",
    "inpaint",
]

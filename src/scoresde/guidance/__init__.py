"""Controllable generation (Song et al. 2021, Sec. 5 and App. I; Ho & Salimans 2022).

Guidance produces a new :class:`~scoresde.models.ScoreFunction` whose score is the conditional
one, so every sampler works unchanged: :class:`ClassifierGuidance`, :class:`ClassifierFreeGuidance`,
:class:`DPSGuidance`, :class:`LikelihoodGuidance`.  Projection-based conditioning
(:func:`conditional_sample`, :func:`inpaint`, :func:`colorize`) acts between sampler steps;
:func:`dps_sample` is diffusion posterior sampling as its paper runs it (an alias of
``scoresde.sample(method="dps")``); :func:`smc_sample` is sequential Monte Carlo with a proposal
object (:class:`TwistedProposal`, :class:`MCGdiffProposal`).
"""

from scoresde.guidance.cfg import ClassifierFreeGuidance
from scoresde.guidance.classifier import (
    ClassifierFitResult,
    NoiseConditionalClassifier,
    classifier_accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from scoresde.guidance.dps import dps_sample
from scoresde.guidance.exact import (
    AnalyticClassifier,
    ClassConditionalScore,
    MixtureErrors,
    class_mixture,
    compare_to_mixture,
    condition,
)
from scoresde.guidance.inverse import sample_posterior
from scoresde.guidance.likelihood import (
    ClassifierGuidance,
    DPSGuidance,
    ExactMeasurementLikelihood,
    LikelihoodGuidance,
    classifier_log_prob,
)
from scoresde.guidance.mcgdiff import MCGdiffProposal
from scoresde.guidance.operators import (
    Colorization,
    FunctionOperator,
    Inpainting,
    LinearOperator,
    MatrixOperator,
)
from scoresde.guidance.projection import colorize, conditional_sample, inpaint
from scoresde.guidance.smc import SMCProposal, SMCResult, TwistedProposal, smc_sample

__all__ = [
    "AnalyticClassifier",
    "ClassConditionalScore",
    "ClassifierFitResult",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "Colorization",
    "DPSGuidance",
    "ExactMeasurementLikelihood",
    "FunctionOperator",
    "Inpainting",
    "LikelihoodGuidance",
    "LinearOperator",
    "MCGdiffProposal",
    "MatrixOperator",
    "MixtureErrors",
    "NoiseConditionalClassifier",
    "SMCProposal",
    "SMCResult",
    "TwistedProposal",
    "class_mixture",
    "classifier_accuracy",
    "classifier_log_prob",
    "compare_to_mixture",
    "colorize",
    "condition",
    "conditional_sample",
    "dps_sample",
    "inpaint",
    "load_classifier",
    "sample_posterior",
    "save_classifier",
    "smc_sample",
    "train_classifier",
]

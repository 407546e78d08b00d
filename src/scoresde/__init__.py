"""scoresde: score-based generative modelling through stochastic differential equations.

Implements Song et al. 2021, "Score-Based Generative Modeling through Stochastic
Differential Equations" (ICLR 2021): forward SDEs and their marginals, denoising score
matching, reverse-time SDE and probability-flow ODE samplers, with exact Gaussian-mixture
oracles to test every piece against.
"""

from scoresde import guidance
from scoresde.data import TOY_DATASETS, toy_data
from scoresde.data.images import DataSplit, load_dataset, load_digits
from scoresde.dequantization import Quantization
from scoresde.guidance import ClassifierFreeGuidance, ClassifierGuidance, DPSGuidance, conditional_sample
from scoresde.latent import FlowResult, decode, encode, slerp, temperature
from scoresde.likelihood import LikelihoodResult, log_likelihood
from scoresde.losses import (
    LossOutput,
    ddpm_loss,
    dsm_loss,
    flow_matching_loss,
    sample_time_importance,
    smld_loss,
)
from scoresde.metrics import energy_distance, mmd_rbf, sliced_wasserstein
from scoresde.models import (
    PREDICTIONS,
    AnalyticScore,
    CountingModel,
    Funnel,
    GaussianMixture,
    ScoreFunction,
    ScoreModel,
)
from scoresde.nets import MLP
from scoresde.nets.unet import UNet
from scoresde.sampling import GRIDS, SAMPLERS, PerSampleNoise, SampleResult, sample, time_grid
from scoresde.sampling.langevin import LangevinResult, langevin_dynamics
from scoresde.sde import EDMSDE, SDE, SDES, VESDE, VPSDE, ReverseSDE, StraightSDE, SubVPSDE, make_sde
from scoresde.train import EMA, Checkpoint, TrainConfig, Trainer, fit, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "EDMSDE",
    "EMA",
    "GRIDS",
    "MLP",
    "PREDICTIONS",
    "SAMPLERS",
    "SDE",
    "SDES",
    "TOY_DATASETS",
    "VESDE",
    "VPSDE",
    "AnalyticScore",
    "CountingModel",
    "Funnel",
    "FlowResult",
    "GaussianMixture",
    "LikelihoodResult",
    "LangevinResult",
    "LossOutput",
    "PerSampleNoise",
    "Quantization",
    "ReverseSDE",
    "SampleResult",
    "ScoreFunction",
    "ScoreModel",
    "StraightSDE",
    "SubVPSDE",
    "__version__",
    "decode",
    "dsm_loss",
    "encode",
    "energy_distance",
    "fit",
    "log_likelihood",
    "langevin_dynamics",
    "make_sde",
    "mmd_rbf",
    "sample",
    "slerp",
    "sliced_wasserstein",
    "temperature",
    "time_grid",
    "toy_data",
    "Checkpoint",
    "DataSplit",
    "TrainConfig",
    "Trainer",
    "UNet",
    "ddpm_loss",
    "flow_matching_loss",
    "load_checkpoint",
    "load_dataset",
    "load_digits",
    "sample_time_importance",
    "save_checkpoint",
    "smld_loss",
]
__all__ += ["ClassifierFreeGuidance", "ClassifierGuidance", "DPSGuidance", "conditional_sample", "guidance"]

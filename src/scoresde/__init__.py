"""scoresde: score-based generative modelling through stochastic differential equations.

Implements Song et al. 2021, "Score-Based Generative Modeling through Stochastic
Differential Equations" (ICLR 2021): forward SDEs and their marginals, denoising score
matching, reverse-time SDE and probability-flow ODE samplers, with exact Gaussian-mixture
oracles to test every piece against.

The public names are imported on first use (PEP 562 module ``__getattr__``): ``import scoresde``
loads no torch, so ``scoresde --help`` starts fast; ``scoresde.VPSDE`` (or ``from scoresde
import VPSDE``) imports its module then.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_EXPORTS: dict[str, str] = {
    "scoresde.guidance": (
        "guidance ClassifierFreeGuidance ClassifierGuidance DPSGuidance conditional_sample dps_sample"
    ),
    "scoresde.data": "TOY_DATASETS toy_data",
    "scoresde.data.images": "DataSplit load_dataset load_digits",
    "scoresde.flow.dequantization": "Quantization",
    "scoresde.flow.latent": "FlowResult decode encode slerp temperature",
    "scoresde.flow.likelihood": "LikelihoodResult log_likelihood",
    "scoresde.losses": "LossOutput ddpm_loss dsm_loss flow_matching_loss sample_time_importance smld_loss",
    "scoresde.metrics": "energy_distance mmd_rbf sliced_wasserstein",
    "scoresde.models": (
        "PREDICTIONS AnalyticScore ClipDenoised CountingModel Funnel GaussianMixture ScoreFunction ScoreModel"
    ),
    "scoresde.nets": "MLP",
    "scoresde.nets.unet": "UNet",
    "scoresde.sampling": "GRIDS SAMPLERS PerSampleNoise SampleResult sample time_grid",
    "scoresde.sampling.langevin": "LangevinResult langevin_dynamics",
    "scoresde.sde": (
        "EDMSDE PAPER_LIKELIHOOD_EPS SDE SDES VESDE VPSDE CosineVPSDE DiscreteVPSDE ReverseSDE "
        "StraightSDE SubVPSDE make_betas make_sde paper_ddpm_betas"
    ),
    "scoresde.sharding": "gather_to_rank0 sample_batches shard_range",
    "scoresde.train": "EMA Checkpoint TrainConfig Trainer fit load_checkpoint save_checkpoint",
    "scoresde.models.compile": "compile_model",
}
"""The public names, by the module that defines them (imported on first use, PEP 562)."""

_WHERE: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names.split()}

__version__ = "0.1.0"

__all__ = [
    # SDEs
    "SDE",
    "SDES",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "EDMSDE",
    "StraightSDE",
    "DiscreteVPSDE",
    "CosineVPSDE",
    "ReverseSDE",
    "make_sde",
    "make_betas",
    "paper_ddpm_betas",
    "PAPER_LIKELIHOOD_EPS",
    # models and exact oracles
    "PREDICTIONS",
    "ScoreFunction",
    "ScoreModel",
    "CountingModel",
    "GaussianMixture",
    "AnalyticScore",
    "ClipDenoised",
    "Funnel",
    "MLP",
    "UNet",
    # training
    "LossOutput",
    "dsm_loss",
    "smld_loss",
    "ddpm_loss",
    "flow_matching_loss",
    "sample_time_importance",
    "EMA",
    "fit",
    "TrainConfig",
    "Trainer",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    # data and metrics
    "TOY_DATASETS",
    "toy_data",
    "DataSplit",
    "load_dataset",
    "load_digits",
    "sliced_wasserstein",
    "mmd_rbf",
    "energy_distance",
    # sampling
    "SAMPLERS",
    "GRIDS",
    "sample",
    "SampleResult",
    "time_grid",
    "PerSampleNoise",
    "langevin_dynamics",
    "sample_batches",
    "shard_range",
    "gather_to_rank0",
    "LangevinResult",
    # likelihood and latents
    "log_likelihood",
    "LikelihoodResult",
    "Quantization",
    "encode",
    "decode",
    "FlowResult",
    "slerp",
    "temperature",
    # controllable generation
    "guidance",
    "ClassifierGuidance",
    "ClassifierFreeGuidance",
    "DPSGuidance",
    "conditional_sample",
    "dps_sample",
    # compiled execution
    "compile_model",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import the module of the public name ``name`` on first use (PEP 562) and cache it."""
    module = _WHERE.get(name)
    if module is None:  # a subpackage (scoresde.sharding, scoresde.viz, ...), as an eager import had it
        if not name.startswith("_") and importlib.util.find_spec(f"scoresde.{name}") is not None:
            return importlib.import_module(f"scoresde.{name}")
        raise AttributeError(f"module 'scoresde' has no attribute {name!r}")
    obj = importlib.import_module(module)
    if name != module.rsplit(".", 1)[-1]:  # else the name is the subpackage itself (guidance)
        obj = getattr(obj, name)
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

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

import ast
import functools
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the one list of public names: read by type checkers, docs and _where()
    from scoresde import guidance
    from scoresde.data import (
        TOY_DATASETS,
        toy_data,
    )
    from scoresde.data.images import (
        DataSplit,
        load_dataset,
        load_digits,
    )
    from scoresde.evaluation.metrics import (
        energy_distance,
        mmd_rbf,
        sliced_wasserstein,
    )
    from scoresde.flow.dequantization import (
        Quantization,
    )
    from scoresde.flow.divergence import (
        Exact,
        Hutchinson,
    )
    from scoresde.flow.integrators import (
        AdaptiveIntegrator,
        FixedStepIntegrator,
        PerSample,
    )
    from scoresde.flow.latent import (
        FlowResult,
        decode,
        encode,
        slerp,
        temperature,
    )
    from scoresde.flow.likelihood import (
        LikelihoodOptions,
        LikelihoodResult,
        log_likelihood,
    )
    from scoresde.flow.planner import (
        LikelihoodPlan,
        PrecisionTarget,
    )
    from scoresde.guidance import (
        ClassifierFreeGuidance,
        ClassifierGuidance,
        DPSGuidance,
        conditional_sample,
        dps_sample,
    )
    from scoresde.models import (
        PREDICTIONS,
        AnalyticScore,
        ClipDenoised,
        Funnel,
        GaussianMixture,
        ScoreFunction,
        ScoreModel,
    )
    from scoresde.models.compile import (
        compile_model,
    )
    from scoresde.models.execution import (
        channels_last_model,
        freeze_model,
        prepare_model,
    )
    from scoresde.nets import (
        MLP,
    )
    from scoresde.nets.unet import (
        UNet,
    )
    from scoresde.sampling import (
        DEFAULT_SAMPLING,
        EMS,
        GRIDS,
        SAMPLERS,
        GridOptimizer,
        PerSampleNoise,
        SampleResult,
        SampleSpec,
        compute_ems,
        sample,
        time_grid,
    )
    from scoresde.sampling.langevin import (
        LangevinResult,
        langevin_dynamics,
    )
    from scoresde.sde import (
        EDMSDE,
        PAPER_LIKELIHOOD_EPS,
        SDE,
        SDES,
        VESDE,
        VPSDE,
        CosineVPSDE,
        DiscreteVPSDE,
        ReverseSDE,
        StraightSDE,
        SubVPSDE,
        make_betas,
        make_sde,
        paper_ddpm_betas,
    )
    from scoresde.train import (
        EMA,
        Checkpoint,
        TrainConfig,
        Trainer,
        fit,
        load_checkpoint,
        save_checkpoint,
    )
    from scoresde.train.losses import (
        LossOutput,
        ddpm_loss,
        dsm_loss,
        flow_matching_loss,
        sample_time_importance,
        smld_loss,
    )


@functools.cache
def _where() -> dict[str, str]:
    """Public name -> defining module, read from the ``TYPE_CHECKING`` imports above (parsed once)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    where: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom) and imp.module:
                    for alias in imp.names:
                        name = alias.asname or alias.name
                        where[name] = imp.module if imp.module != "scoresde" else f"scoresde.{name}"
    return where


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
    "SampleSpec",
    "SampleResult",
    "DEFAULT_SAMPLING",
    "GridOptimizer",
    "compute_ems",
    "EMS",
    "time_grid",
    "PerSampleNoise",
    "langevin_dynamics",
    "LangevinResult",
    # likelihood and latents
    "log_likelihood",
    "LikelihoodResult",
    "LikelihoodOptions",
    "LikelihoodPlan",
    "PrecisionTarget",
    "AdaptiveIntegrator",
    "FixedStepIntegrator",
    "PerSample",
    "Exact",
    "Hutchinson",
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
    "freeze_model",
    "channels_last_model",
    "prepare_model",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import the module of the public name ``name`` on first use (PEP 562) and cache it."""
    module = _where().get(name)
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

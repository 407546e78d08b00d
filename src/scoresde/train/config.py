"""The configuration of a training run: one dataclass, every field typed, documented and checked.

``scoresde train`` makes one flag per field from the field's type and ``metadata["help"]``
(:func:`scoresde.settings.dataclass_options`), so a new field is a new flag, settable in a
``--config`` file and with ``--set`` too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypedDict

from scoresde.models.parameterization import PREDICTIONS
from scoresde.models.wrapper import TIME_INPUTS
from scoresde.nets.unet import TIME_EMBEDDINGS
from scoresde.sde import SDES
from scoresde.train.compile import AUTO_MIN_STEPS, COMPILE_MODES
from scoresde.train.losses import OBJECTIVES, WEIGHTINGS, make_objective
from scoresde.train.times import TIME_SAMPLINGS
from scoresde.train.validate import check_field_types, check_ranges

__all__ = ["RESUMABLE_KEYS", "SCHEDULES", "ModelOptions", "TrainConfig"]

SCHEDULES = ("constant", "cosine", "linear")


class ModelOptions(TypedDict):
    """The :class:`~scoresde.models.wrapper.ScoreModel` options a trainer builds its models with."""

    prediction: str
    scale_input: bool
    sigma_data: float
    time_input: str


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint).

    Data: ``data`` is ``"digits"``, a ``.npy``/``.npz`` file or a folder of images;
    ``test_fraction`` is held out; ``image_size`` resizes folder images; ``hflip`` flips
    training images left-right at random.

    Network: ``net`` is ``unet`` (images) or ``mlp`` (vectors: the images are flattened).
    The UNet defaults (16 base channels, one residual block per level, three levels from
    16 px up, no dropout, batch 32) are sized for a first run on a laptop CPU, chosen by
    measurement (``benchmarks/first_run_28px.py``); on a GPU raise ``base_channels``,
    ``num_res_blocks`` and ``batch_size``.
    ``conditional`` embeds the class labels, and ``label_dropout`` replaces a fraction of
    them by the "no label" token (for classifier-free guidance).

    Model: ``sde`` with ``sde_options`` (e.g. ``{"beta_max": 20.0}``), what the network
    predicts, the time input, and ``sigma_data`` (``None``: the training data's std).

    Loss: ``loss`` in ``dsm``, ``smld``, ``ddpm``, ``flow_matching``; DSM ``weighting`` and
    ``importance`` sampling of ``t``; ``num_scales`` levels for the discrete losses.

    Optimisation: AdamW with linear warm-up over ``warmup`` steps, then constant, cosine
    (default) or linear decay to ``lr * final_lr`` (``schedule``) over ``steps``, or over the
    ``minutes`` budget when it ends first (the fraction of the budget spent sets the rate);
    ``grad_clip`` on the global gradient norm; EMA with warm-up; ``bf16`` autocast; ``compile``
    (``torch.compile`` of the network, :mod:`scoresde.train.compile`);
    ``batch_size`` is the *global* batch (split over processes).

    Evaluation grids: ``sample_method`` for ``sample_steps`` steps, the predicted x0 clipped
    to the images' range (``sample_clip``).  The defaults (Euler-Maruyama on the reverse SDE,
    clipped) and the cosine decay over the budget were chosen by the same measurement.
    ``eval_share`` bounds the time spent in evaluations before the last one.

    Reliability: ``overwrite`` lets a fresh run replace an existing run folder (otherwise it is
    refused unless the trainer resumed); ``max_nonfinite_steps`` is how many *consecutive*
    steps with a non-finite loss or gradient are skipped (no optimiser or EMA update, the
    step counter advances so the run stays reproducible) before training stops with an error
    (0: stop at the first).

    Every field is checked on construction (:mod:`scoresde.train.validate`): its type
    (strict: ``"false"`` is not a boolean) and one range rule each; errors name the field and
    the value.
    """

    # Data.
    data: str = field(
        default="digits",
        metadata={"help": "'digits' (bundled), a .npy/.npz file (N, H, W[, C]) or a folder of images"},
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "fraction of the data held out for evaluation"}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "resize the images (any layout) to this size"}
    )
    hflip: bool = field(default=False, metadata={"help": "random horizontal flips"})
    # Network.
    net: str = field(
        default="unet",
        metadata={"help": "unet (images), mlp (flattened images / vectors) or diffusers-unet (UNet2DModel)"},
    )
    base_channels: int = field(default=16, metadata={"help": "UNet channels of the first level"})
    channel_mults: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "UNet channel multiplier per resolution level (default: 1 2 2 for images of side "
            ">= 16 divisible by 4, else 1 2)"
        },
    )
    num_res_blocks: int = field(default=1, metadata={"help": "UNet residual blocks per level"})
    attn_resolutions: tuple[int, ...] | None = field(
        default=None,
        metadata={"help": "resolutions with self-attention (default: the UNet's lowest resolution)"},
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout rate of the network"})
    scale_shift: bool = field(
        default=False,
        metadata={"help": "UNet: adaptive group norm, GN(h) * (1 + scale) + shift (Dhariwal & Nichol 2021)"},
    )
    time_embedding: str = field(default="fourier", metadata={"help": "fourier or sinusoidal"})
    hidden: int = field(default=256, metadata={"help": "MLP width"})
    depth: int = field(default=3, metadata={"help": "MLP depth"})
    conditional: bool = field(default=False, metadata={"help": "class-conditional model (needs labels)"})
    label_dropout: float = field(
        default=0.0,
        metadata={"help": "fraction of labels replaced by the null token (classifier-free guidance)"},
    )
    # SDE and model.
    sde: str = field(default="vp", metadata={"help": "forward SDE: vp, ve, subvp, edm, straight"})
    sde_options: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "SDE constructor option KEY=VALUE, e.g. beta_max=20", "flag": "sde-option"},
    )
    # Default v, by measurement: eps-prediction image models gave saturated, out-of-range samples
    # on a first run, v clean ones (benchmarks/first_run_28px.py, benchmarks/demo_predictions.py).
    prediction: str = field(
        default="v", metadata={"help": "what the network predicts: v (default), eps, score, x0, velocity"}
    )
    time_input: str = field(default="t", metadata={"help": "t or log_sigma"})
    sigma_data: float | None = field(
        default=None, metadata={"help": "data standard deviation for input scaling (default: measured)"}
    )
    # Loss.
    loss: str = field(default="dsm", metadata={"help": "dsm, smld (NCSN), ddpm or flow_matching"})
    # Default auto, by measurement (resolved in __post_init__, see resolve_weighting): edm for the
    # v / x0 / velocity networks: on the handwriting stand-in the 28x28 recipe's unguided class
    # accuracy rose from 0.59 (sigma2) to 0.705 at equal CPU time, and on the upsampled digits it
    # reached 0.965 (docs/bench_first_run_28px_standin.md; benchmarks/first_run_28px.py); sigma2
    # for eps / score networks, whose own target already has unit variance: eps networks on the
    # digits after 1,200 steps scored 0.49 (VE) / 0.52 (VP) class accuracy with sigma2 against
    # 0.13 / 0.13 with edm (benchmarks/weighting_eps.py, docs/bench_weighting_eps.md).
    weighting: str = field(
        default="auto",
        metadata={
            "help": "DSM weighting: edm (Karras et al. 2022), sigma2, likelihood, or auto (likelihood with "
            "--importance, sigma2 for eps / score predictions, else edm)"
        },
    )
    importance: bool = field(
        default=False, metadata={"help": "importance-sample t for likelihood weighting (Song et al. 2021c)"}
    )
    time_sampling: str = field(
        default="uniform",
        metadata={"help": "how DSM draws t: uniform or lognormal (EDM's ln sigma ~ N(p_mean, p_std^2))"},
    )
    time_options: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "time-sampling option KEY=VALUE: p_mean, p_std", "flag": "time-option"},
    )
    num_scales: int | None = field(default=None, metadata={"help": "noise levels (smld) / steps (ddpm)"})
    # Optimisation.
    steps: int = field(default=5000, metadata={"help": "total optimiser steps"})
    minutes: float | None = field(
        default=None,
        metadata={
            "help": "wall-clock budget of the training loop in minutes: stop at whichever of steps or "
            "minutes comes first (then the final checkpoint and evaluation)"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "global batch size"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup: int = field(default=200, metadata={"help": "linear learning-rate warm-up steps"})
    schedule: str = field(
        default="cosine",
        metadata={
            "help": "learning-rate schedule after warm-up: constant, or cosine / linear decay to "
            "lr * final_lr over steps, or over the minutes budget when that ends first",
            "choices": SCHEDULES,
        },
    )
    final_lr: float = field(
        default=0.0,
        metadata={"help": "last learning rate of the cosine and linear schedules, as a fraction of lr"},
    )
    grad_clip: float | None = field(default=1.0, metadata={"help": "gradient-norm clip"})
    ema_decay: float = field(default=0.999, metadata={"help": "decay of the EMA weights"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast"})
    compile: str = field(
        default="auto",
        metadata={
            "help": "torch.compile the network: on, off, or auto (on for CUDA runs of at least "
            f"{AUTO_MIN_STEPS} steps; on a CPU compiling was measured not to pay); bare --compile: on",
            "choices": COMPILE_MODES,
            "const": "on",
        },
    )
    seed: int = field(
        default=0, metadata={"help": "seed of every random draw (data split, weights, batches, noise)"}
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when available), cpu, cuda or cuda:N"})
    # Evaluation and outputs.
    out: str = field(default="runs", metadata={"help": "parent folder of the run folder"})
    name: str = field(default="run", metadata={"help": "run name (the run folder is <out>/<name>)"})
    log_every: int = field(default=50, metadata={"help": "steps between log lines of metrics.jsonl"})
    eval_every: int = field(default=1000, metadata={"help": "steps between evaluations"})
    save_every: int = field(default=1000, metadata={"help": "steps between checkpoints"})
    num_samples: int = field(default=64, metadata={"help": "samples in each evaluation grid"})
    sample_method: str = field(
        default="euler_maruyama",
        metadata={"help": "sampler for evaluation grids (a key of scoresde.SAMPLERS)"},
    )
    sample_steps: int = field(default=100, metadata={"help": "sampler steps for evaluation grids"})
    sample_clip: str = field(
        default="clip",
        metadata={
            "help": "the predicted x0 of evaluation grids: clip (to the images' [-1, 1]), dynamic "
            "(thresholding, Saharia et al. 2022) or none",
            "choices": ("none", "clip", "dynamic"),
        },
    )
    eval_share: float = field(
        default=0.25,
        metadata={
            "help": "bound on the evaluations' share of the run's time: an evaluation before the last "
            "is skipped while evaluating so far took more than this fraction of the time"
        },
    )
    eval_bpd: bool = field(default=False, metadata={"help": "held-out bits/dim at each evaluation"})
    bpd_samples: int = field(default=64, metadata={"help": "held-out images scored for bits/dim"})
    progress: bool = field(
        default=True,
        metadata={"help": "progress: a bar on a terminal, else a line every tenth of the run or 30 s"},
    )
    # Reliability.
    overwrite: bool = field(
        default=False, metadata={"help": "replace an existing run in <out>/<name> (otherwise refused)"}
    )
    max_nonfinite_steps: int = field(
        default=5,
        metadata={"help": "consecutive non-finite steps skipped before training stops (0: stop at once)"},
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        check_ranges(self)
        if self.weighting == "auto":
            self.weighting = resolve_weighting(self.prediction, self.importance)
        choices = {
            "net": ("unet", "mlp", "diffusers-unet"),
            "sde": tuple(SDES),
            "prediction": PREDICTIONS,
            "time_input": TIME_INPUTS,
            "loss": OBJECTIVES,
            "weighting": (*WEIGHTINGS, "auto"),
            "time_sampling": TIME_SAMPLINGS,
            "time_embedding": TIME_EMBEDDINGS,
            "schedule": SCHEDULES,
            "compile": COMPILE_MODES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"unknown {key} {getattr(self, key)!r}; choose one of {list(allowed)}")
        positive = ("steps", "batch_size", "log_every", "eval_every", "save_every", "sample_steps")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)}")
        if self.lr <= 0 or self.warmup < 0 or not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(
                "need lr > 0, warmup >= 0 and 0 <= ema_decay < 1, "
                f"got {self.lr}, {self.warmup}, {self.ema_decay}"
            )
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"minutes must be a positive number of minutes, got {self.minutes}")
        if not (0.0 < self.eval_share <= 1.0):
            raise ValueError(f"eval_share must lie in (0, 1], got {self.eval_share}")
        if not (0.0 <= self.label_dropout < 1.0):
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.importance and self.loss != "dsm":
            raise ValueError("importance sampling of t applies to the dsm loss only")
        # The objective checks the combinations (importance with lognormal or edm, option names).
        make_objective(self.loss, self.weighting, self.importance, self.num_scales,
                       self.time_sampling, self.time_options)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, with a clear error for unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known options: {sorted(known)}")
        return cls(**d)


def resolve_weighting(prediction: str, importance: bool) -> str:
    """The DSM weighting that ``weighting="auto"`` stands for.

    ``likelihood`` with importance-sampled times (Song et al. 2021c, the pair that bounds the
    likelihood); ``sigma2`` (the eps-MSE, Ho et al. 2020) for eps and score networks, whose own
    target already has unit variance; ``edm`` (Karras et al. 2022, Eq. 8: the MSE of the
    unit-variance target) for v, x0 and velocity networks, where it weights the high noise
    levels that decide a sample's class and shape as much as the low ones.
    """
    if importance:
        return "likelihood"
    return "sigma2" if prediction in ("eps", "score") else "edm"


RESUMABLE_KEYS = frozenset(
    {"steps", "out", "name", "log_every", "eval_every", "save_every", "num_samples", "sample_method"}
    | {"sample_steps", "sample_clip", "eval_bpd", "bpd_samples", "progress", "device", "overwrite"}
    | {"max_nonfinite_steps", "minutes", "compile", "eval_share"}
)
"""Options that may differ between a checkpoint's run and the run that resumes it."""

"""diffusers models as scoresde score models: a ``UNet2DModel`` plus its scheduler config.

A diffusers model is a network plus a scheduler config that says (a) the noise table the
network was trained on and (b) what it predicts.  This adapter turns them into an ordinary
:class:`~scoresde.models.ScoreModel` and SDE, so every sampler, exact likelihood, encoder and
guidance method of scoresde applies:

- VP schedulers (``DDPMScheduler``, ``DDIMScheduler``, ``DPMSolverMultistepScheduler``, ...):
  the SDE is a :class:`~scoresde.sde.DiscreteVPSDE` of the scheduler's own ``alphas_cumprod``
  (timestep ``n`` at ``t = (n + 1)/N``, ``t = 0`` the clean data), the time input is the
  interpolated ``timestep``, and ``prediction_type`` ``epsilon`` / ``v_prediction`` / ``sample``
  becomes ``eps`` / ``v`` / ``x0``;
- ``ScoreSdeVeScheduler`` (the paper's NCSN++ ported to diffusers): a
  :class:`~scoresde.sde.VESDE` with the paper's ``kernel="geometric"`` noise level
  ``sigma_min (sigma_max/sigma_min)^t``, time input ``sigma`` and prediction ``score`` (the
  Fourier-embedded ``UNet2DModel`` takes ``sigma`` and divides its output by it).

Class-conditional ``UNet2DModel``s (``num_class_embeds`` / ``class_embed_type``) take the labels
``y`` that scoresde passes as ``class_labels``.  :func:`scheduler_grid` gives the scoresde time
grid on which scoresde's ``ddim`` / ``dpm_solver_pp_2m`` / ``ancestral`` / ``pc`` take the same
steps as diffusers' scheduler loops.

diffusers is an optional dependency (``pip install scoresde[diffusers]``), imported inside the
functions.  Nothing here downloads: folders are read with ``local_files_only=True``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scoresde._core.tensors import append_dims
from scoresde.models.base import ScoreFunction
from scoresde.models.wrapper import ScoreModel
from scoresde.sde.base import SDE
from scoresde.sde.discrete import DiscreteVPSDE
from scoresde.sde.ve import VESDE

__all__ = [
    "PIPELINE_DATA_RANGES",
    "DiffusersModel",
    "SUPPORTED_SCHEDULERS",
    "UNetAdapter",
    "data_range_of",
    "from_diffusers",
    "load_diffusers",
    "prediction_from_config",
    "SIGMA_SPACINGS",
    "SchedulerClipping",
    "scheduler_grid",
    "scheduler_sampling",
    "sde_from_scheduler",
]

VP_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
)
VE_SCHEDULERS = ("ScoreSdeVeScheduler",)
SUPPORTED_SCHEDULERS = VP_SCHEDULERS + VE_SCHEDULERS
"""Scheduler class names whose configs this adapter reads."""

PIPELINE_DATA_RANGES: dict[str, tuple[float, float]] = {
    "DDPMPipeline": (-1.0, 1.0),
    "DDIMPipeline": (-1.0, 1.0),
    "PNDMPipeline": (-1.0, 1.0),
    "ScoreSdeVePipeline": (0.0, 1.0),
}
"""The data space of each pipeline class with a ``UNet2DModel``: the range its loop ends in before
it writes images (DDPM / DDIM / PNDM: ``(x / 2 + 0.5).clamp(0, 1)``, so ``[-1, 1]``;
``ScoreSdeVePipeline``: ``sample_mean.clamp(0, 1)``, so ``[0, 1]``, the paper's VE models with
``data.centered = false``)."""

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
"""diffusers' ``prediction_type`` to scoresde's ``prediction``."""

INSTALL_HINT = "pip install scoresde[diffusers]"


def _import_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"scoresde.interop.diffusers needs the diffusers package: {INSTALL_HINT}") from err
    return diffusers


class UNetAdapter(nn.Module):
    """``net(x, t[, y])`` around a diffusers ``UNet2DModel``: labels go in as ``class_labels``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        out = (
            self.unet(x, t, return_dict=False)
            if y is None
            else self.unet(x, t, class_labels=y, return_dict=False)
        )
        return out[0] if isinstance(out, tuple) else out


@dataclass
class DiffusersModel:
    """A diffusers model as scoresde objects; unpacks as ``model, sde = ...``.

    Attributes:
        model: the :class:`~scoresde.models.ScoreModel` (in eval mode when loaded from a folder).
        sde: its SDE.
        scheduler_class: the scheduler's class name.
        scheduler_config: the scheduler config it was built from.
        num_classes: number of class labels of a class-conditional UNet, else ``None``.
        data_range: the model's data space ``(low, high)`` (see :func:`data_range_of`).
        data_range_source: where ``data_range`` came from (the pipeline or scheduler class).
    """

    model: ScoreModel
    sde: SDE
    scheduler_class: str
    scheduler_config: dict = field(repr=False)
    num_classes: int | None = None
    data_range: tuple[float, float] = (-1.0, 1.0)
    data_range_source: str = ""

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.sde


def _scheduler_name_and_config(scheduler: Any) -> tuple[str, dict]:
    """``(class name, config dict)`` of a scheduler or of its config (a dict with ``_class_name``)."""
    if isinstance(scheduler, dict):
        config = dict(scheduler)
        name = config.get("_class_name")
        if not isinstance(name, str):
            raise ValueError(
                "a scheduler config dict needs its '_class_name' (as in scheduler_config.json); "
                f"supported: {list(SUPPORTED_SCHEDULERS)}"
            )
        return name, config
    attached = getattr(scheduler, "config", None)
    if attached is None:
        raise TypeError(f"expected a diffusers scheduler or its config dict, got {type(scheduler).__name__}")
    return type(scheduler).__name__, dict(attached)


def _check_supported(name: str) -> None:
    if name not in SUPPORTED_SCHEDULERS:
        raise ValueError(f"unsupported scheduler {name!r}; supported: {list(SUPPORTED_SCHEDULERS)}")


def sde_from_scheduler(scheduler: Any, eps: float | None = None) -> SDE:
    """The SDE of a diffusers scheduler (instance or config dict with ``_class_name``).

    VP schedulers give a :class:`~scoresde.sde.DiscreteVPSDE` of the scheduler's own float32
    ``alphas_cumprod`` (so the marginals are the ones the model was trained on, bit for bit);
    ``ScoreSdeVeScheduler`` gives ``VESDE(sigma_min, sigma_max, kernel="geometric",
    eps=sampling_eps)``.

    Args:
        eps: override the SDE's ``eps`` (where sampling stops and likelihoods start; e.g.
            :data:`~scoresde.sde.PAPER_LIKELIHOOD_EPS` for the paper's bits/dim convention).
    """
    name, config = _scheduler_name_and_config(scheduler)
    _check_supported(name)
    if name in VE_SCHEDULERS:
        return VESDE(
            sigma_min=float(config.get("sigma_min", 0.01)),
            sigma_max=float(config.get("sigma_max", 1348.0)),
            eps=float(config.get("sampling_eps", 1e-5)) if eps is None else eps,
            kernel="geometric",
        )
    # Zero terminal SNR (rescale_betas_zero_snr=True, Lin et al. 2024): the table is the
    # scheduler's own.  DDIM / DDPM keep alphas_cumprod[-1] = 0 (s(T) = 0: x0 at T is -v for a
    # v-prediction model; an eps model divides by zero there, as in diffusers); DPM-Solver, Euler,
    # UniPC, ... floor it at 2**-24 in their own table, which is what is read here.
    if not isinstance(scheduler, dict):
        abar = scheduler.alphas_cumprod
    else:
        cls = getattr(_import_diffusers(), name)
        clean = {k: v for k, v in config.items() if not k.startswith("_")}
        abar = cls.from_config(clean).alphas_cumprod
    abar = torch.as_tensor(abar).to(torch.float64)
    if (
        config.get("rescale_betas_zero_snr", False)
        and abar.numel() > 1
        and float(abar[-1]) >= float(abar[-2])
    ):
        raise ValueError(
            f"{name} with rescale_betas_zero_snr=True floors the last alphas_cumprod at 2**-24 = "
            f"{float(abar[-1]):.3g}, above the one before it ({float(abar[-2]):.3g}): its table is not "
            "decreasing, so it is no SDE's marginal. Load the model with a DDIMScheduler config "
            "(rescale_betas_zero_snr=True, timestep_spacing='trailing': the exact zero), or keep "
            "rescale_betas_zero_snr=False"
        )
    return DiscreteVPSDE(abar, eps=eps)


def data_range_of(pipeline_class: str | None, scheduler_class: str) -> tuple[tuple[float, float], str]:
    """The data space of a diffusers model and where it comes from: ``((low, high), source)``.

    From the pipeline class when there is one (:data:`PIPELINE_DATA_RANGES`), else from the
    scheduler class: ``ScoreSdeVeScheduler`` is only used by ``ScoreSdeVePipeline`` (``[0, 1]``),
    the VP schedulers by pipelines that work in ``[-1, 1]``.  A pipeline class not in the table
    takes its scheduler's convention with a warning that says so.
    """
    by_scheduler = (0.0, 1.0) if scheduler_class in VE_SCHEDULERS else (-1.0, 1.0)
    if pipeline_class is None:
        return by_scheduler, f"scheduler {scheduler_class} (a model folder without a pipeline)"
    if pipeline_class in PIPELINE_DATA_RANGES:
        return PIPELINE_DATA_RANGES[pipeline_class], f"pipeline {pipeline_class}"
    warnings.warn(
        f"pipeline class {pipeline_class!r} is not one whose data range scoresde knows "
        f"({sorted(PIPELINE_DATA_RANGES)}); assuming {list(by_scheduler)} from its scheduler "
        f"{scheduler_class}. Pass data_range= to load_diffusers if that is wrong.",
        stacklevel=3,
    )
    return by_scheduler, f"scheduler {scheduler_class} (pipeline {pipeline_class} not known)"


def prediction_from_config(scheduler: Any) -> str:
    """scoresde's ``prediction`` for a scheduler: ``eps``, ``v`` or ``x0`` (``score`` for VE)."""
    name, config = _scheduler_name_and_config(scheduler)
    _check_supported(name)
    if name in VE_SCHEDULERS:
        return "score"
    kind = config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unsupported prediction_type {kind!r}; supported: {list(PREDICTION_TYPES)}")
    return PREDICTION_TYPES[kind]


def from_diffusers(
    unet: nn.Module,
    scheduler: Any,
    *,
    time_input: str | None = None,
    eps: float | None = None,
    data_range: tuple[float, float] | None = None,
) -> DiffusersModel:
    """A ``UNet2DModel`` and its scheduler (instance or config dict) as a scoresde model and SDE.

    Args:
        unet: the network (a diffusers ``UNet2DModel`` or any module with its call signature).
        scheduler: the scheduler it was trained with, or that scheduler's config dict.
        time_input: override the time map (default ``timestep`` for VP, ``sigma`` for VE;
            ``timestep_nearest`` evaluates only at integer timesteps, k-diffusion's ``quantize``).
        eps: override the SDE's ``eps`` (see :func:`sde_from_scheduler`).
        data_range: the model's data space; default from the scheduler class
            (:func:`data_range_of` without a pipeline).

    Returns:
        A :class:`DiffusersModel` (unpacks as ``model, sde``).
    """
    name, config = _scheduler_name_and_config(scheduler)
    sde = sde_from_scheduler(scheduler, eps=eps)
    prediction = prediction_from_config(scheduler)
    if time_input is None:
        time_input = "sigma" if name in VE_SCHEDULERS else "timestep"
    model = ScoreModel(
        UNetAdapter(unet), sde, prediction=prediction, scale_input=False, time_input=time_input
    )
    unet_config = getattr(unet, "config", {}) or {}
    num_classes = unet_config.get("num_class_embeds") if hasattr(unet_config, "get") else None
    if data_range is None:
        data_range, source = data_range_of(None, name)
    else:
        data_range, source = _check_range(data_range), "given"
    return DiffusersModel(model, sde, name, config, num_classes, data_range, source)


def _check_range(data_range: Any) -> tuple[float, float]:
    lo, hi = (float(v) for v in data_range)
    if not lo < hi:
        raise ValueError(f"data_range must be (low, high) with low < high, got {data_range!r}")
    return lo, hi


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_diffusers(
    path: str | Path,
    *,
    scheduler: Any = None,
    time_input: str | None = None,
    eps: float | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    data_range: tuple[float, float] | None = None,
) -> DiffusersModel:
    """Load a local diffusers folder (offline) as a scoresde model and SDE.

    ``path`` is either a pipeline folder written by ``pipeline.save_pretrained`` (a
    ``model_index.json`` with ``unet/`` and ``scheduler/``) or a model folder written by
    ``unet.save_pretrained`` (a ``config.json`` of a ``UNet2DModel``), whose scheduler comes from
    ``scheduler`` or a ``scheduler_config.json`` beside it.

    Args:
        scheduler: a scheduler or its config dict, overriding the folder's.
        time_input, eps: as in :func:`from_diffusers`.
        device, dtype: where and in which dtype to put the network.
        data_range: override the model's data space, which otherwise comes from the pipeline
            class in ``model_index.json`` (``ScoreSdeVePipeline``: ``(0, 1)``; ``DDPMPipeline``,
            ``DDIMPipeline``, ``PNDMPipeline``: ``(-1, 1)``) or, for a model folder, from the
            scheduler class (:func:`data_range_of`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a diffusers folder, a network that is not a ``UNet2DModel``, no or an
            unsupported scheduler.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such diffusers folder: {root}")
    diffusers = _import_diffusers()
    pipeline_class: str | None = None
    if (root / "model_index.json").is_file():
        index = _read_json(root / "model_index.json")
        pipeline_class = str(index.get("_class_name") or "unknown")
        unet_entry = index.get("unet")
        if not (isinstance(unet_entry, list) and len(unet_entry) == 2):
            raise ValueError(
                f"{root}: the pipeline has no 'unet' component (model_index.json lists {sorted(index)})"
            )
        unet_dir = root / "unet"
        if scheduler is None:
            sched_file = root / "scheduler" / "scheduler_config.json"
            if not sched_file.is_file():
                raise ValueError(
                    f"{root}: the pipeline has no scheduler/scheduler_config.json; pass scheduler="
                )
            scheduler = _read_json(sched_file)
    elif (root / "config.json").is_file():
        unet_dir = root
        if scheduler is None:
            sched_file = root / "scheduler_config.json"
            if not sched_file.is_file():
                raise ValueError(
                    f"{root}: a model folder without scheduler_config.json; pass scheduler= (a diffusers "
                    f"scheduler or its config), one of {list(SUPPORTED_SCHEDULERS)}"
                )
            scheduler = _read_json(sched_file)
    else:
        raise ValueError(
            f"{root} is not a diffusers model folder: it has neither model_index.json (a pipeline saved "
            "with save_pretrained) nor config.json (a model saved with save_pretrained)"
        )
    net_config = _read_json(unet_dir / "config.json") if (unet_dir / "config.json").is_file() else {}
    cls_name = net_config.get("_class_name")
    if cls_name != "UNet2DModel":
        raise ValueError(f"{unet_dir}: the network is {cls_name!r}, but only UNet2DModel is supported")
    name, _ = _scheduler_name_and_config(scheduler)
    _check_supported(name)
    unet = diffusers.UNet2DModel.from_pretrained(unet_dir, local_files_only=True)
    unet = unet.to(device=device, dtype=dtype) if dtype is not None else unet.to(device)
    result = from_diffusers(unet.eval(), scheduler, time_input=time_input, eps=eps, data_range=data_range)
    if data_range is None:
        result.data_range, result.data_range_source = data_range_of(pipeline_class, name)
    result.model.eval()
    return result


SIGMA_SPACINGS = (
    "use_karras_sigmas",
    "use_lu_lambdas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_flow_sigmas",
)
"""Scheduler flags that place the steps at noise levels between the integer timesteps: refused
by :func:`scheduler_grid` (see :func:`_refuse_spacings`)."""


def _refuse_spacings(name: str, config: dict) -> None:
    used = [flag for flag in SIGMA_SPACINGS if config.get(flag)]
    if used:
        raise ValueError(
            f"{name} with {used[0]}=True: diffusers then steps at noise levels between the timesteps "
            "while evaluating the network at their rounded (or, for squaredcos_cap_v2, log-sigma "
            "interpolated) timesteps, which a scoresde time grid does not express exactly. Set "
            f"{used[0]}=False to reproduce diffusers' loop, or use scoresde's own spacing "
            "(grid='karras' or grid='logsnr' in ss.sample) on the same model."
        )


def _refuse_clipping(name: str, config: dict) -> None:
    setting = (
        "thresholding" if config.get("thresholding") else "clip_sample" if config.get("clip_sample") else ""
    )
    if setting:
        default = " (DDIMScheduler's default)" if setting == "clip_sample" and name == "DDIMScheduler" else ""
        raise ValueError(
            f"{name} has {setting}=True{default}: its loop clips or thresholds the predicted x0. Use "
            "`model, grid = scheduler_sampling(model, scheduler, sde)` to sample as diffusers does, "
            f"or set {setting}=False (scheduler.register_to_config({setting}=False)) for unclipped sampling"
        )


def scheduler_grid(scheduler: Any, sde: SDE, *, clipping: bool = True) -> Tensor:
    """The scoresde time grid (float64, decreasing) on which scoresde takes a scheduler's steps.

    Call after ``scheduler.set_timesteps(n)``.  With it, scoresde's ``ddim`` reproduces
    ``DDIMScheduler`` (eta 0), ``dpm_solver_pp_2m`` ``DPMSolverMultistepScheduler`` (2nd order,
    ``dpmsolver++``), ``ancestral`` ``DDPMScheduler`` (``fixed_small`` variance) and ``pc`` with
    ``reverse_diffusion`` + ``langevin`` the predictor/corrector of ``ScoreSdeVeScheduler``:

    - DDIM / DDPM: timestep ``n`` at ``t = (n + 1)/N``, the final ``alpha = 1`` at ``t = 0``
      (DDIM with ``set_alpha_to_one=False`` ends at timestep 0);
    - DPM-Solver: the same times, then ``t = 0`` (``final_sigmas_type="zero"``) or timestep 0;
    - ScoreSdeVe: its continuous ``timesteps``.

    A scheduler that clips or thresholds ``x0`` (``clip_sample`` / ``thresholding``) is refused
    here (``clipping=False`` skips that check); :func:`scheduler_sampling` gives the grid with
    the model that applies it.  Karras / Lu / exponential / beta / flow sigma spacings are
    refused by name (:data:`SIGMA_SPACINGS`).

    ``DDIMScheduler`` with ``timestep_spacing="linspace"`` steps from each timestep to
    ``t - N // n``, not to the next timestep: no grid alone reproduces it, so it is refused here
    and reproduced by :func:`scheduler_sampling`.

    Raises:
        ValueError: timesteps not set, steps that do not go from one timestep to the next, a
            sigma spacing of :data:`SIGMA_SPACINGS`, or clipping (see above).
    """
    grid, targets = _grid_and_ddim_targets(scheduler, sde, clipping)
    if targets is not None and not bool(torch.equal(targets, grid[1:])):
        config = _scheduler_name_and_config(scheduler)[1]
        raise ValueError(
            "this DDIMScheduler steps from each timestep to t - N // steps, which is not the next "
            f"timestep (timestep_spacing={config.get('timestep_spacing')!r}): use "
            "`model, grid = scheduler_sampling(model, scheduler, sde)` to sample as diffusers does, "
            "or timestep_spacing 'leading' or 'trailing'"
        )
    return grid


def _grid_and_ddim_targets(scheduler: Any, sde: SDE, clipping: bool) -> tuple[Tensor, Tensor | None]:
    """:func:`scheduler_grid`'s grid and, for DDIM, the time each step lands on (``None`` otherwise).

    DDIM's step from timestep ``tau_i`` lands on ``tau_i - N // n`` (or the final alpha); with
    ``leading`` / ``trailing`` spacing that is the next grid time, with ``linspace`` it is not.
    """
    name, config = _scheduler_name_and_config(scheduler)
    _check_supported(name)
    _refuse_spacings(name, config)
    if clipping:
        _refuse_clipping(name, config)
    ts = getattr(scheduler, "timesteps", None)
    if ts is None:
        raise ValueError("call scheduler.set_timesteps(n) before scheduler_grid")
    if name in VE_SCHEDULERS:
        return torch.as_tensor(ts).to(torch.float64), None
    if getattr(scheduler, "num_inference_steps", None) is None:
        raise ValueError("call scheduler.set_timesteps(n) before scheduler_grid")
    if sde.num_timesteps is None:
        raise TypeError(
            f"a {name} grid needs a discrete-time SDE with the scheduler's timestep table "
            f"(the DiscreteVPSDE of sde_from_scheduler), got {sde!r}"
        )
    steps = torch.as_tensor(ts).to(torch.float64)
    if bool((steps != steps.round()).any()):
        raise ValueError(f"{name} has fractional timesteps; scheduler_grid maps integer timesteps only")
    times = sde.time_of_timestep(steps)
    targets = None
    if name == "DDIMScheduler":
        prev = steps - config["num_train_timesteps"] // scheduler.num_inference_steps
        if bool((prev[:-1] < 0).any()):
            raise ValueError(
                "this DDIMScheduler steps below timestep 0 before its last step (timesteps "
                f"{steps.tolist()}); use timestep_spacing 'leading' or 'trailing'"
            )
        targets = sde.time_of_timestep(prev[:-1])
        last = prev[-1:]
        if float(last) >= 0:
            final = sde.time_of_timestep(last)
        elif config.get("set_alpha_to_one", True):
            final = torch.zeros(1, dtype=torch.float64)
        else:
            final = sde.time_of_timestep(torch.zeros(1))
    elif name == "DDPMScheduler":
        final = torch.zeros(1, dtype=torch.float64)
    else:
        sigmas = getattr(scheduler, "sigmas", None)
        final_zero = sigmas is None or float(torch.as_tensor(sigmas)[-1]) == 0.0
        final = torch.zeros(1, dtype=torch.float64) if final_zero else sde.time_of_timestep(torch.zeros(1))
    if targets is not None:
        targets = torch.cat([targets, final])
    if float(final) >= float(times[-1]):
        # A last step from timestep 0 to alpha_bar_0 moves nothing.
        return times, None if targets is None else targets[:-1]
    return torch.cat([times, final]), targets


def _diffusers_threshold(x0: Tensor, ratio: float, max_value: float) -> Tensor:
    """diffusers' ``_threshold_sample``: ``s = clamp(quantile_ratio(|x0|), 1, max_value)``, then
    ``clamp(x0, -s, s) / s`` per sample (Saharia et al. 2022, Sec. 2.3)."""
    flat = x0.reshape(x0.shape[0], -1)
    q = torch.quantile(flat.abs().float(), ratio, dim=1).to(x0.dtype)
    s = q.clamp(min=1.0, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape)


class SchedulerClipping(ScoreFunction):
    """A model whose ``x0`` is clipped or thresholded as a diffusers scheduler's loop does it.

    ``clip_sample``: ``x0.clamp(-clip_sample_range, clip_sample_range)``; ``thresholding``:
    diffusers' dynamic thresholding (:func:`_diffusers_threshold`, with
    ``dynamic_thresholding_ratio`` and ``sample_max_value``).  The native prediction is the
    clipped ``x0``; every other prediction is derived from it (``DDPMScheduler``'s posterior
    mean and DPM-Solver++'s data prediction use only the clipped ``x0``, so scoresde's
    ``ancestral`` and ``dpm_solver_pp_*`` then take the scheduler's steps).

    ``DDIMScheduler`` (with ``use_clipped_model_output=False``, its pipeline's default) moves by
    ``x_next = s_p clip(x0) + sigma_p eps`` with the *unclipped* ``eps``, to the level ``p`` of
    timestep ``tau_i - N // n`` (``ddim_targets``), which with ``timestep_spacing="linspace"``
    is not the next timestep ``t_{i+1}``: the next step then treats that ``x`` as a sample at
    ``t_{i+1}``.  No ``(x, t) -> x0`` model gives that for every next time, so for DDIM the model
    is tied to the grid ``ts``: at ``t_i`` it returns the ``x0_hat`` for which scoresde's ``ddim``
    step to ``t_{i+1}`` is the scheduler's step,

        x0_hat = (s_p clip(x0) - r_p s_i x0 + (r_p - r) x) / (s_{i+1} - r s_i),

    with ``r = sigma_{i+1} / sigma_i`` and ``r_p = sigma_p / sigma_i`` (``p = t_{i+1}`` gives
    ``clip(x0) + b (clip(x0) - x0)``, ``b = r s_i / (s_{i+1} - r s_i)``).  Such a model is only
    for ``ddim`` on that grid (a time off the grid raises).  Without clipping in ``config``
    (``linspace`` DDIM alone), ``clip`` is the identity.
    """

    def __init__(
        self,
        model: ScoreFunction,
        config: dict,
        ddim_grid: Tensor | None = None,
        ddim_targets: Tensor | None = None,
    ) -> None:
        super().__init__(model.sde, "x0")
        self.model = model
        self.nfe_per_call = model.nfe_per_call
        self.thresholding = bool(config.get("thresholding", False))
        self.clip_range = float(config.get("clip_sample_range", 1.0))
        self.ratio = float(config.get("dynamic_thresholding_ratio", 0.995))
        self.max_value = float(config.get("sample_max_value", 1.0))
        self.clipping = self.thresholding or bool(config.get("clip_sample", False))
        self.ddim_grid = None if ddim_grid is None else torch.as_tensor(ddim_grid, dtype=torch.float64)
        if ddim_targets is not None:
            ddim_targets = torch.as_tensor(ddim_targets, dtype=torch.float64)
            if self.ddim_grid is None or ddim_targets.shape != (len(self.ddim_grid) - 1,):
                raise ValueError("ddim_targets needs ddim_grid and one target time per step")
        self.ddim_targets = ddim_targets

    def clip(self, x0: Tensor) -> Tensor:
        """The scheduler's clipping (or thresholding) of ``x0`` (the identity without either)."""
        if self.thresholding:
            return _diffusers_threshold(x0, self.ratio, self.max_value)
        if not self.clipping:
            return x0
        return x0.clamp(-self.clip_range, self.clip_range)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        x0 = self.model.denoise(x, t, y)
        clipped = self.clip(x0)
        if self.ddim_grid is None:
            return clipped
        grid = self.ddim_grid.to(t.device)
        tol = 4 * torch.finfo(t.dtype).eps
        match = (t.to(torch.float64)[:, None] - grid[None, :-1]).abs() <= tol * grid[None, :-1]
        if not bool(match.any(dim=1).all()):
            raise ValueError(
                "this DDIM clipping model is tied to its scheduler's grid; it was called at a time off "
                "that grid (use it only with method='ddim' on the grid scheduler_sampling returned)"
            )
        i = match.to(torch.int64).argmax(dim=1)
        s0, sig0 = self.sde.marginal(grid[i])
        s1, sig1 = self.sde.marginal(grid[i + 1])
        r = sig1 / sig0
        # x0_hat = clip(x0) + b (clip(x0) - x0), b = r s_i / (s_{i+1} - r s_i): exactly x0 where
        # nothing is clipped.
        b = append_dims((r * s0 / (s1 - r * s0)).to(x.dtype), x.ndim)
        x0_hat = clipped + b * (clipped - x0)
        if self.ddim_targets is None:
            return x0_hat
        # Landing at p instead of t_{i+1} adds ((s_p - s_{i+1}) clip(x0) + (r_p - r)(x - s_i x0)) / D,
        # D = s_{i+1} - r s_i: zero where p = t_{i+1}.
        sp, sigp = self.sde.marginal(self.ddim_targets.to(t.device)[i])
        rp = sigp / sig0
        denom = s1 - r * s0
        a = append_dims(((sp - s1) / denom).to(x.dtype), x.ndim)
        e = append_dims(((rp - r) / denom).to(x.dtype), x.ndim)
        s0x = append_dims(s0.to(x.dtype), x.ndim)
        return x0_hat + a * clipped + e * (x - s0x * x0)


def scheduler_sampling(model: ScoreFunction, scheduler: Any, sde: SDE) -> tuple[ScoreFunction, Tensor]:
    """``(model, grid)`` on which scoresde samples as a diffusers scheduler's loop does, clipping included.

    Call after ``scheduler.set_timesteps(n)``.  Without ``clip_sample`` / ``thresholding`` (and
    for DDIM, with ``leading`` / ``trailing`` spacing) this is
    ``(model, scheduler_grid(scheduler, sde))``.  ``DDIMScheduler`` with ``timestep_spacing =
    "linspace"`` gets a model tied to the grid whose ``ddim`` steps land where diffusers' do
    (:class:`SchedulerClipping` with ``ddim_targets``), clipping or not.  With clipping, the model
    applies it with the scheduler's semantics (:class:`SchedulerClipping`): ``DDIMScheduler`` ->
    ``method="ddim"`` (eta 0), ``DDPMScheduler`` -> ``"ancestral"``, ``DPMSolverMultistepScheduler`` /
    ``DPMSolverSinglestepScheduler`` with ``algorithm_type="dpmsolver++"`` ->
    ``"dpm_solver_pp_*"``; other schedulers with clipping are refused.
    """
    name, config = _scheduler_name_and_config(scheduler)
    grid, targets = _grid_and_ddim_targets(scheduler, sde, clipping=False)
    off_grid = targets is not None and not bool(torch.equal(targets, grid[1:]))
    if name == "DDIMScheduler" and off_grid:
        return SchedulerClipping(model, config, ddim_grid=grid, ddim_targets=targets), grid
    if not (config.get("clip_sample") or config.get("thresholding")):
        return model, grid
    if name == "DDIMScheduler":
        return SchedulerClipping(model, config, ddim_grid=grid), grid
    dpmpp = name.startswith("DPMSolver") and config.get("algorithm_type", "dpmsolver++") == "dpmsolver++"
    if name == "DDPMScheduler" or dpmpp:
        return SchedulerClipping(model, config), grid
    setting = "thresholding" if config.get("thresholding") else "clip_sample"
    raise ValueError(
        f"{name} with {setting}=True is not reproduced by scoresde (supported: DDIMScheduler, DDPMScheduler, "
        f"DPMSolver* with algorithm_type='dpmsolver++'); set {setting}=False, or clip with "
        "scoresde.models.clipping.ClipDenoised (x0 clipped, every other prediction derived from it)"
    )

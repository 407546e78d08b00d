"""Export a scoresde model as a diffusers pipeline folder: ``unet/`` + ``scheduler/`` + ``model_index.json``.

The other direction of :mod:`scoresde.interop.diffusers`.  A diffusers pipeline is a
``UNet2DModel`` plus a scheduler whose table ``alphas_cumprod[n]`` says the marginal at integer
timestep ``n``, ``x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps`` (Ho et al. 2020, Eq. 4), and
whose ``prediction_type`` says what the UNet predicts.  A scoresde model maps onto that exactly
when

- its network *is* a ``UNet2DModel``: a :class:`~scoresde.nets.DiffusersUNet` (``scoresde train
  --net diffusers-unet``) or the adapter of a loaded diffusers model.  scoresde's own
  :class:`~scoresde.nets.UNet` is refused: its blocks do not map onto ``UNet2DModel``'s weight for
  weight (residual sums rescaled by ``1/sqrt(2)``, GroupNorm groups chosen per width, its own time
  and class embeddings), so any mapping would change the function;
- its SDE is variance preserving, ``s(t)^2 + sigma(t)^2 = 1`` (VP, cosine VP, a diffusers table):
  then ``abar = s(t)^2`` at the time of each timestep.  VE, sub-VP, EDM and straight-line SDEs
  are refused by name;
- the UNet's timestep is linear in ``t`` (``t``, ``scaled_t``: timestep ``n`` is the time
  ``t_n = n / c`` with ``c = 999`` for the default ``DiffusersUNet``) or is the SDE's own
  timestep (``timestep`` on a :class:`~scoresde.sde.DiscreteVPSDE`);
- it predicts ``eps`` / ``v`` / ``x0`` (``epsilon`` / ``v_prediction`` / ``sample``);
- its input is not rescaled: ``scale_input`` divides ``x_t`` by ``sqrt(s^2 sigma_data^2 +
  sigma^2)``, which is 1 on a VP SDE only for ``sigma_data = 1`` (``--sigma-data 1``).

The scheduler is a ``DDIMScheduler`` (Song et al. 2021b) with the table as ``trained_betas``
(``beta_n = 1 - abar_n / abar_{n-1}``; diffusers rebuilds ``abar`` as their float32 cumulative
product), ``timestep_spacing="trailing"`` (the first step at ``t = 1``), ``set_alpha_to_one``
(the last step lands on ``t = 0``) and ``clip_sample=False``.  With it,
``DDIMPipeline.from_pretrained(folder)(num_inference_steps=k, eta=0)`` takes the steps of
scoresde's ``ddim`` on :meth:`ExportedPipeline.grid` ``(k)`` (tested to float rounding).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from scoresde.models.wrapper import ScoreModel

__all__ = ["EXPORT_INFO", "ExportedPipeline", "export_diffusers", "exported_unet", "read_export"]

EXPORT_INFO = "scoresde_export.json"
"""The file beside ``model_index.json`` that says where the pipeline came from."""

PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
"""scoresde's ``prediction`` to diffusers' ``prediction_type``."""

_VP_TOLERANCE = 1e-6
"""How far ``s^2 + sigma^2`` (and the input scale) may be from 1: float64 rounding of the SDE."""


@dataclass
class ExportedPipeline:
    """What :func:`export_diffusers` wrote.

    Attributes:
        path: the pipeline folder.
        prediction_type: ``epsilon``, ``v_prediction`` or ``sample``.
        num_train_timesteps: the scheduler table's length ``N``.
        time_scale: ``c`` with timestep ``n`` at ``t = n / c``; ``None`` for a discrete SDE
            (timestep ``n`` at ``t = (n + 1) / N``).
        table_error: the largest relative difference between diffusers' float32 rebuild of
            ``alphas_cumprod`` and the exact table ``s(t_n)^2``.
        num_classes: classes of a class-conditional UNet (label ``num_classes`` is "no label"),
            else ``None``.  ``DDIMPipeline`` passes no labels: call the scheduler loop with
            ``unet(x, t, class_labels=y)`` for such a model.
        scheduler_config: the scheduler's config (as in ``scheduler/scheduler_config.json``).
    """

    path: Path
    prediction_type: str
    num_train_timesteps: int
    time_scale: float | None
    table_error: float
    num_classes: int | None = None
    scheduler_config: dict = field(repr=False, default_factory=dict)

    def time_of_timestep(self, n: Tensor) -> Tensor:
        """The scoresde time (float64) of the scheduler's timestep ``n``."""
        n = torch.as_tensor(n, dtype=torch.float64)
        if self.time_scale is None:
            return (n + 1.0) / self.num_train_timesteps
        return n / self.time_scale

    def grid(self, num_inference_steps: int) -> Tensor:
        """The scoresde time grid (float64, decreasing, ending at 0) on which scoresde's ``ddim``
        takes the steps of the exported ``DDIMScheduler`` after ``set_timesteps(num_inference_steps)``."""
        from scoresde.interop.diffusers import _import_diffusers

        sched = _import_diffusers().DDIMScheduler.from_config(self.scheduler_config)
        sched.set_timesteps(num_inference_steps)
        steps = torch.as_tensor(sched.timesteps).to(torch.float64)
        last = float(steps[-1]) - self.num_train_timesteps // num_inference_steps
        final = (
            self.time_of_timestep(torch.tensor([last])) if last >= 0 else torch.zeros(1, dtype=torch.float64)
        )
        return torch.cat([self.time_of_timestep(steps), final])


def exported_unet(net: nn.Module) -> tuple[nn.Module, float]:
    """The ``UNet2DModel`` inside a scoresde network, and the factor ``k`` with which the network
    turns its time value into the UNet's timestep (``timestep = k * value``).

    Raises:
        ValueError: scoresde's own UNet (whose weights do not map onto ``UNet2DModel``) or any
            other network that is not a ``UNet2DModel`` inside.
    """
    from scoresde.interop.diffusers import UNetAdapter
    from scoresde.nets import DiffusersUNet, UNet

    inner = getattr(net, "module", net)  # DistributedDataParallel
    if isinstance(inner, DiffusersUNet):
        return inner.unet, inner.time_scale
    if isinstance(inner, UNetAdapter):
        return inner.unet, 1.0
    if isinstance(inner, UNet):
        raise ValueError(
            "scoresde's own UNet cannot be exported to diffusers: its blocks do not map onto "
            "UNet2DModel's weight for weight (residual sums rescaled by 1/sqrt(2), GroupNorm groups per "
            "width, its own time and class embeddings), so the exported network would compute another "
            "function; train with --net diffusers-unet (scoresde.nets.DiffusersUNet) to export"
        )
    raise ValueError(
        f"a {type(inner).__name__} network cannot be exported to diffusers: only a UNet2DModel "
        "(scoresde.nets.DiffusersUNet, or a model loaded from diffusers) can"
    )


def _table(model: ScoreModel, unet_scale: float) -> tuple[Tensor, float | None]:
    """``(abar (N,) float64, time_scale c or None)`` of the model's timesteps; refuses what does
    not map onto a DDIM table (see the module docstring)."""
    sde = model.sde
    kind = type(sde).__name__
    if model.time_input == "timestep":
        if sde.num_timesteps is None:  # pragma: no cover - ScoreModel refuses this already
            raise ValueError("time_input 'timestep' needs a discrete-time SDE")
        if unet_scale != 1.0:
            raise ValueError(f"a UNet fed {unet_scale} x the timestep has no diffusers scheduler")
        n = sde.num_timesteps
        t = (torch.arange(n, dtype=torch.float64) + 1.0) / n
        scale = None
    elif model.time_input in ("t", "scaled_t"):
        c = unet_scale * (model.time_scale if model.time_input == "scaled_t" else 1.0)
        n = math.floor(c * sde.T + 1e-9) + 1
        if n < 2:
            raise ValueError(f"the UNet's timestep is {c} t: fewer than two integer timesteps in [0, T]")
        t = torch.arange(n, dtype=torch.float64) / c
        scale = c
    else:
        raise ValueError(
            f"time_input {model.time_input!r} is not linear in t: diffusers passes integer timesteps "
            "to the UNet; export needs time_input 't' or 'scaled_t' (or 'timestep' on a discrete SDE)"
        )
    s, sigma = sde.marginal(t)
    s, sigma = s.to(torch.float64), sigma.to(torch.float64)
    vp = float((s**2 + sigma**2 - 1.0).abs().max())
    if vp > _VP_TOLERANCE:
        raise ValueError(
            f"{kind} is not variance preserving (s^2 + sigma^2 differs from 1 by up to {vp:.3g}): "
            "diffusers' DDIM/DDPM schedulers model x_n = sqrt(abar) x_0 + sqrt(1 - abar) eps; export "
            "needs a VP SDE (vp, cosine VP, or a diffusers table)"
        )
    if model.scale_input:
        factor = torch.sqrt((s * model.sigma_data) ** 2 + sigma**2)
        off = float((factor - 1.0).abs().max())
        if off > _VP_TOLERANCE:
            raise ValueError(
                f"the model divides its input by sqrt(s^2 sigma_data^2 + sigma^2) (scale_input with "
                f"sigma_data={model.sigma_data}), up to {off:.3g} away from 1, which a diffusers pipeline "
                "does not do; train with sigma_data 1 (--sigma-data 1) to export"
            )
    return s**2, scale


def export_diffusers(
    model: ScoreModel,
    out: str | Path,
    *,
    overwrite: bool = False,
    source: str = "",
) -> ExportedPipeline:
    """Write ``model`` as a diffusers ``DDIMPipeline`` folder (``save_pretrained`` layout).

    Args:
        model: a :class:`~scoresde.ScoreModel` whose network is a ``UNet2DModel`` inside (see the
            module docstring for what maps exactly; everything else is refused with the reason).
        out: the folder to write (``unet/``, ``scheduler/``, ``model_index.json`` and
            :data:`EXPORT_INFO`).
        overwrite: replace an existing non-empty folder (otherwise refused).
        source: where the model came from, recorded in :data:`EXPORT_INFO`.

    Returns:
        :class:`ExportedPipeline`, whose :meth:`~ExportedPipeline.grid` gives the scoresde grid of
        the pipeline's steps.

    Raises:
        ValueError: a model that does not map exactly, or ``out`` exists and is not empty.
    """
    from scoresde.interop.diffusers import _import_diffusers

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    if model.prediction not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction {model.prediction!r} has no diffusers prediction_type; export needs "
            f"{sorted(PREDICTION_TYPES)} (epsilon, v_prediction, sample)"
        )
    unet, unet_scale = exported_unet(model.net)
    abar, scale = _table(model, unet_scale)
    if float(abar[-1]) <= 0.0:
        raise ValueError(
            "the last timestep has alphas_cumprod 0 (zero terminal SNR): DDIM cannot start there"
        )
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    betas = (1.0 - abar / prev).clamp_min(0.0)
    diffusers = _import_diffusers()
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=int(abar.numel()),
        trained_betas=betas.tolist(),
        prediction_type=PREDICTION_TYPES[model.prediction],
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    rebuilt = torch.as_tensor(scheduler.alphas_cumprod).to(torch.float64)
    table_error = float(((rebuilt - abar).abs() / abar).max())
    embeds = getattr(unet.config, "num_class_embeds", None)
    num_classes = getattr(getattr(model.net, "module", model.net), "num_classes", None)
    if num_classes is None and embeds is not None:
        num_classes = int(embeds)
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.save_pretrained(out, safe_serialization=True)
    info = {
        "source": source,
        "prediction": model.prediction,
        "time_input": model.time_input,
        "timestep_of_t": "n(t) = N t - 1" if scale is None else f"n(t) = {scale} t",
        "time_scale": scale,
        "prediction_type": PREDICTION_TYPES[model.prediction],
        "num_train_timesteps": int(abar.numel()),
        "sde": model.sde.to_dict(),
        "alphas_cumprod_max_rel_error": table_error,
        "num_classes": num_classes,
    }
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return ExportedPipeline(
        out,
        PREDICTION_TYPES[model.prediction],
        int(abar.numel()),
        scale,
        table_error,
        num_classes,
        dict(scheduler.config),
    )


def read_export(path: str | Path) -> ExportedPipeline:
    """The :class:`ExportedPipeline` of a folder written by :func:`export_diffusers` (from its
    :data:`EXPORT_INFO` and ``scheduler/scheduler_config.json``)."""
    path = Path(path)
    try:
        info = json.loads((path / EXPORT_INFO).read_text())
        sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    except FileNotFoundError as err:
        raise ValueError(
            f"{path}: not a folder written by scoresde's export ({err.filename} is missing)"
        ) from None
    return ExportedPipeline(
        path,
        info["prediction_type"],
        int(info["num_train_timesteps"]),
        info["time_scale"],
        float(info["alphas_cumprod_max_rel_error"]),
        info.get("num_classes"),
        sched,
    )

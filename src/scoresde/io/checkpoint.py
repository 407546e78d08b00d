"""Checkpoints: one safetensors file holding every tensor, with a JSON header for the rest.

A checkpoint is a single ``.safetensors`` file (no pickle anywhere; ``torch.load`` is never
used).  Its tensors are the network weights (``net.*``), the EMA weights (``ema.*``), the
optimiser's tensors (``optim.<param index>.<name>``) and RNG states (``rng.*``); its
safetensors metadata entry ``"scoresde"`` is a JSON document with the SDE, network and
``ScoreModel`` configs, the training config, the step, the EMA counters, the optimiser's
scalar state and a description of the data.  The file is written to a temporary name in
the same folder, flushed and fsynced, then renamed over the target
(:func:`scoresde.io.run_folder.write_atomically`), so a reader never sees a half-written checkpoint.

The JSON can be read without loading any tensor: :func:`read_checkpoint_metadata`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.io.run_folder import RunFolder, clean_temp_files, file_mode, write_atomically
from scoresde.models.wrapper import ScoreModel
from scoresde.nets import build_net, net_config
from scoresde.nets.limits import check_net_config
from scoresde.sde import sde_from_dict
from scoresde.sde.base import SDE

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointWriteError",
    "check_metadata",
    "clean_temp_files",
    "file_mode",
    "intact_checkpoints",
    "resume_checkpoint",
    "build_model",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "sde_config",
]

FORMAT = "scoresde-checkpoint"
VERSION = 1


def sde_config(sde: SDE) -> dict:
    """``{"name": short name, "kwargs": constructor arguments}`` of an SDE from :data:`SDES`
    (:meth:`~scoresde.sde.SDE.to_dict`, which names the SDE if it is not registered)."""
    return sde.to_dict()


def build_model(config: dict) -> ScoreModel:
    """Build the ``ScoreModel`` described by a checkpoint's JSON (``sde``, ``net``, ``model``)."""
    for key in ("sde", "net", "model"):
        if not isinstance(config.get(key), dict):
            raise ValueError(f"checkpoint config: {key!r} must be a JSON object, got {config.get(key)!r}")
    if not isinstance(config["sde"].get("kwargs", {}), dict):
        raise ValueError("checkpoint config: sde.kwargs must be a JSON object")
    check_net_config(config["net"], "checkpoint config 'net'")
    try:
        sde = sde_from_dict(config["sde"])
        net_cfg = dict(config["net"])
        if net_cfg.get("name") == "unet":
            # UNets saved before ``min_group_channels`` existed used one channel per group.
            net_cfg.setdefault("min_group_channels", 1)
        net = build_net(net_cfg)
        return ScoreModel(net, sde, **config["model"])
    except KeyError as err:
        raise ValueError(f"checkpoint config lacks the entry {err}") from None
    except TypeError as err:
        raise ValueError(f"checkpoint config: bad sde or model entry ({err})") from None


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimiser's ``state_dict`` into tensors and JSON-able scalars."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {
        "param_groups": sd["param_groups"],
        "scalars": scalars,
        "class": type(optimizer).__name__,
    }


def _optimizer_state(meta: dict, tensors: dict[str, Tensor]) -> dict:
    """Rebuild an optimiser ``state_dict`` from :func:`_optimizer_split`'s parts."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def _prefixed(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def _unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


_RESERVED = ("net", "ema", "optim", "rng")
"""The tensor-name prefixes of a checkpoint's own tensors."""


def save_checkpoint(
    path: str | Path,
    model: ScoreModel,
    *,
    ema: nn.Module | None = None,
    ema_state: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    train_config: dict | None = None,
    data_info: dict | None = None,
    rng: dict[str, Tensor] | None = None,
    extra: dict | None = None,
    tensors: dict[str, Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring for the layout).

    Args:
        path: the ``.safetensors`` file to write (parent folders are created).
        model: the trained ``ScoreModel`` (its network must come from :data:`scoresde.nets.NETS`).
        ema: the EMA copy of ``model`` (a ``ScoreModel`` or its network).
        ema_state: EMA counters, e.g. ``{"decay": 0.999, "num_updates": 100}``.
        optimizer: its tensors and scalar state are saved for exact resumption.
        step: the number of optimiser steps taken.
        train_config: the training configuration (JSON-serialisable dict).
        data_info: a description of the training data.
        rng: RNG states as uint8 tensors (e.g. ``torch.get_rng_state()``), saved as ``rng.<name>``.
        extra: any further JSON-serialisable metadata.
        tensors: any further tensors by name (outside the ``net.`` / ``ema.`` / ``optim.`` /
            ``rng.`` prefixes), read back from :attr:`Checkpoint.tensors`.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    net = model.net
    saved = _prefixed("net", net.state_dict())
    if ema is not None:
        ema_net = ema.net if isinstance(ema, ScoreModel) else ema
        saved.update(_prefixed("ema", ema_net.state_dict()))
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "sde": sde_config(model.sde),
        "net": net_config(net),
        "model": model.config(),
        "has_ema": ema is not None,
        "ema": ema_state or {},
        "train": train_config or {},
        "data": data_info or {},
        "rng": sorted(rng) if rng else [],
        "extra": extra or {},
    }
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _optimizer_split(optimizer)
        saved.update(opt_tensors)
    for name, state in (rng or {}).items():
        saved[f"rng.{name}"] = state.detach().cpu().contiguous()
    for name, value in (tensors or {}).items():
        if name.split(".", 1)[0] in _RESERVED or name in saved:
            raise ValueError(f"extra checkpoint tensor {name!r} clashes with the checkpoint's own")
        saved[name] = value.detach().cpu().contiguous()
    try:
        header = json.dumps(meta)
    except TypeError as err:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {err}") from None

    from safetensors import SafetensorError

    try:
        write_atomically(path, lambda tmp: save_file(saved, tmp, metadata={"scoresde": header}))
    except (OSError, SafetensorError) as err:
        raise CheckpointWriteError(path, err) from err
    return path


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a checkpoint file (e.g. {RunFolder(path).last})")


def read_checkpoint_metadata(path: str | Path) -> dict:
    """The JSON part of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    _check_exists(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("scoresde")
    except Exception as err:
        raise ValueError(
            f"{path}: not a valid safetensors checkpoint (corrupt or truncated: {err})"
        ) from None
    if raw is None:
        raise ValueError(f"{path}: a safetensors file but not a scoresde checkpoint (no 'scoresde' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt checkpoint metadata ({err})") from None
    if not isinstance(meta, dict):
        kind = type(meta).__name__
        raise ValueError(f"{path}: checkpoint metadata must be a JSON object, got a JSON {kind}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    check_metadata(meta, str(path))
    return meta


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: a ready ``ScoreModel`` in eval mode (EMA weights unless ``ema=False`` was asked
            or the checkpoint has none).
        config: the full JSON metadata (``sde``, ``net``, ``model``, ``train``, ``data``, ...).
        step: optimiser steps taken.
        path: the file.
        tensors: every stored tensor by name (``net.*``, ``ema.*``, ``optim.*``, ``rng.*``).
    """

    model: ScoreModel
    config: dict
    step: int
    path: Path
    tensors: dict[str, Tensor] = field(repr=False, default_factory=dict)

    @property
    def info(self):
        """The typed :class:`~scoresde.io.info.CheckpointInfo` of this checkpoint's model."""
        from scoresde.io.info import CheckpointInfo

        return CheckpointInfo.from_metadata(self.config, self.path)

    def net_state(self) -> dict[str, Tensor]:
        """The raw (non-EMA) network weights."""
        return _unprefixed("net", self.tensors)

    def ema_state(self) -> dict[str, Tensor] | None:
        """The EMA network weights, or ``None``."""
        return _unprefixed("ema", self.tensors) if self.config.get("has_ema") else None

    def optimizer_state(self) -> dict | None:
        """An optimiser ``state_dict`` ready for ``optimizer.load_state_dict``, or ``None``."""
        meta = self.config.get("optimizer")
        return None if meta is None else _optimizer_state(meta, self.tensors)

    def rng_state(self, name: str) -> Tensor | None:
        """A stored RNG state (``rng.<name>``), or ``None``."""
        return self.tensors.get(f"rng.{name}")


def load_checkpoint(path: str | Path, ema: bool = True, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.safetensors`` file, or a run folder (then ``checkpoints/last.safetensors``).
        ema: put the EMA weights (when present) into ``.model``; else the raw weights.
        device: where to put the tensors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a (valid) scoresde checkpoint.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if RunFolder.resolve(path).is_file():
        path = RunFolder.resolve(path)
    meta = read_checkpoint_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as err:
        raise ValueError(f"{path}: corrupt checkpoint tensors ({err})") from None
    if meta.get("has_ema") and not any(k.startswith("ema.") for k in tensors):
        raise ValueError(f"{path}: the metadata says has_ema but the file holds no ema.* tensors")
    if not any(k.startswith("net.") for k in tensors):
        raise ValueError(f"{path}: the checkpoint holds no network weights (net.* tensors)")
    model = build_model(meta)
    weights = _unprefixed("ema" if ema and meta.get("has_ema") else "net", tensors)
    try:
        model.net.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the network config ({err})") from None
    model.to(device).eval()
    return Checkpoint(model=model, config=meta, step=int(meta["step"]), path=path, tensors=tensors)


# ---------------------------------------------------------------------- #
# Reliability: metadata checks, write errors, file modes, temp files, intact checkpoints.
# ---------------------------------------------------------------------- #
class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, permissions, ...); the target was not touched.

    Attributes:
        path: the checkpoint that could not be written.
        intact: the newest checkpoint known to be intact (set by the trainer), or ``None``.
    """

    def __init__(self, path: Path, cause: BaseException, intact: Path | None = None) -> None:
        self.path, self.cause, self.intact = Path(path), cause, intact
        errno = getattr(cause, "errno", None)
        super().__init__(errno, self._message())

    def _message(self) -> str:
        if self.intact is not None:
            kept = f"the newest intact checkpoint is {self.intact}"
        elif self.path.exists():
            kept = f"the previous {self.path.name} is unchanged and intact"
        else:
            kept = "no earlier checkpoint exists at this path"
        return f"could not write checkpoint {self.path} ({self.cause}); {kept}"

    def __str__(self) -> str:
        return self._message()


def check_metadata(meta: dict, where: str = "checkpoint") -> None:
    """Validate a checkpoint's JSON before anything is allocated (entries named in errors)."""
    step = meta.get("step")
    if "step" not in meta:
        raise ValueError(f"{where}: the metadata lacks 'step'")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    for key in ("sde", "net", "model"):
        if key not in meta:
            raise ValueError(f"{where}: the metadata lacks {key!r}")
        if not isinstance(meta[key], dict):
            raise ValueError(f"{where}: {key!r} must be a JSON object, got {meta[key]!r}")
    for key in ("train", "data", "ema", "extra"):
        if key in meta and not isinstance(meta[key], dict):
            raise ValueError(f"{where}: {key!r} must be a JSON object, got {meta[key]!r}")
    if not isinstance(meta.get("has_ema", False), bool):
        raise ValueError(f"{where}: 'has_ema' must be true or false, got {meta.get('has_ema')!r}")
    sigma_data = meta["model"].get("sigma_data", 1.0)
    if (
        isinstance(sigma_data, bool)
        or not isinstance(sigma_data, (int, float))
        or not (math.isfinite(sigma_data) and sigma_data > 0)
    ):
        raise ValueError(f"{where}: model.sigma_data must be a finite number > 0, got {sigma_data!r}")
    check_net_config(meta["net"], f"{where}: 'net'")


def _is_intact(path: Path) -> bool:
    from safetensors.torch import load_file

    try:
        meta = read_checkpoint_metadata(path)
        tensors = load_file(str(path))
    except (ValueError, OSError, FileNotFoundError):
        return False
    except Exception:  # safetensors' own errors
        return False
    return not (meta.get("has_ema") and not any(k.startswith("ema.") for k in tensors))


def intact_checkpoints(folder: str | Path) -> list[Path]:
    """The step checkpoints ``step_*.safetensors`` in ``folder``, newest first (by name)."""
    folder = Path(folder)
    return sorted(folder.glob("step_*.safetensors"), reverse=True)


def resume_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """The checkpoint to resume from: ``path`` or, if it is missing or corrupt, the newest intact one.

    ``path`` is a checkpoint file or a run folder (then ``checkpoints/last.safetensors``).
    When ``last.safetensors`` is missing or corrupt (e.g. a disk filled up while it was being
    replaced), the newest step checkpoint that reads completely is used instead.

    Returns:
        ``(checkpoint, note)``: ``note`` says why a fallback was taken, else ``None``.

    Raises:
        FileNotFoundError: neither ``path`` nor any intact step checkpoint beside it.
    """
    path = RunFolder.resolve(path)
    if _is_intact(path):
        return path, None
    problem = "is missing" if not path.exists() else "is corrupt or incomplete"
    for candidate in intact_checkpoints(path.parent):
        if candidate != path and _is_intact(candidate):
            return candidate, f"{path} {problem}; resuming from the newest intact checkpoint {candidate}"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (and no intact step_*.safetensors beside it)")
    read_checkpoint_metadata(path)  # raises the precise reason
    raise ValueError(f"{path}: checkpoint {problem} and no intact step_*.safetensors beside it")

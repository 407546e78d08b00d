"""Checkpoints: one safetensors file holding every tensor, with a JSON header for the rest.

A checkpoint is a single ``.safetensors`` file (no pickle anywhere; ``torch.load`` is never
used).  Its tensors are the network weights (``net.*``), the EMA weights (``ema.*``), the
optimiser's tensors (``optim.<param index>.<name>``) and RNG states (``rng.*``); its
safetensors metadata entry ``"scoresde"`` is a JSON document with the SDE, network and
``ScoreModel`` configs, the training config, the step, the EMA counters, the optimiser's
scalar state and a description of the data.  The file is written to a temporary name in
the same folder, flushed and fsynced, then renamed over the target (:func:`os.replace`), so
a reader never sees a half-written checkpoint.

The JSON can be read without loading any tensor: :func:`read_checkpoint_metadata`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.models.wrapper import ScoreModel
from scoresde.nets import build_net, net_config
from scoresde.sde import SDES, sde_from_dict
from scoresde.sde.base import SDE

__all__ = [
    "FORMAT",
    "Checkpoint",
    "build_model",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "sde_config",
]

FORMAT = "scoresde-checkpoint"
VERSION = 1


def sde_config(sde: SDE) -> dict:
    """``{"name": short name, "kwargs": constructor arguments}`` of an SDE from :data:`SDES`."""
    if type(sde) not in SDES.values():
        raise ValueError(
            f"cannot describe a {type(sde).__name__} as a config; checkpoints support {sorted(SDES)}"
        )
    return sde.to_dict()


def build_model(config: dict) -> ScoreModel:
    """Build the ``ScoreModel`` described by a checkpoint's JSON (``sde``, ``net``, ``model``)."""
    try:
        sde = sde_from_dict(config["sde"])
        net = build_net(config["net"])
        return ScoreModel(net, sde, **config["model"])
    except KeyError as err:
        raise ValueError(f"checkpoint config lacks the entry {err}") from None


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

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    net = model.net
    tensors = _prefixed("net", net.state_dict())
    if ema is not None:
        ema_net = ema.net if isinstance(ema, ScoreModel) else ema
        tensors.update(_prefixed("ema", ema_net.state_dict()))
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
        tensors.update(opt_tensors)
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state.detach().cpu().contiguous()
    try:
        header = json.dumps(meta)
    except TypeError as err:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {err}") from None

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"scoresde": header})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder; pass a checkpoint file (e.g. {path}/checkpoints/last.safetensors)"
        )


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
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
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
    if path.is_dir() and (path / "checkpoints" / "last.safetensors").is_file():
        path = path / "checkpoints" / "last.safetensors"
    meta = read_checkpoint_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as err:
        raise ValueError(f"{path}: corrupt checkpoint tensors ({err})") from None
    model = build_model(meta)
    weights = _unprefixed("ema" if ema and meta.get("has_ema") else "net", tensors)
    try:
        model.net.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the network config ({err})") from None
    model.to(device).eval()
    return Checkpoint(model=model, config=meta, step=int(meta["step"]), path=path, tensors=tensors)

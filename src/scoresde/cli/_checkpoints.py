"""Helpers shared by the subcommands that read a score-model checkpoint (sample, inpaint, colorize).

A checkpoint's JSON tells the shape of one model input (``net``) and of one data image
(``data``); an MLP trained on flattened images has ``(C*H*W,)`` inputs that are shown as
``(C, H, W)`` images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_class",
    "cycle_labels",
    "data_image_shape",
    "default_out",
    "item_shape",
    "label_dropout",
    "num_classes",
    "to_images",
]


def item_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one model input: ``(C, H, W)`` for a UNet, ``(D,)`` for an MLP."""
    net = meta["net"]
    if net["name"] == "unet":
        return (int(net["in_channels"]), int(net["image_size"]), int(net["image_size"]))
    return (int(net["dim"]),)


def data_image_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """Shape ``(C, H, W)`` of one training image, or ``()`` when the checkpoint does not say."""
    return tuple(int(s) for s in (meta.get("data", {}) or {}).get("shape") or ())


def num_classes(meta: dict[str, Any]) -> int | None:
    """Number of classes of a class-conditional network, else ``None``."""
    n = meta["net"].get("num_classes")
    return int(n) if n else None


def label_dropout(meta: dict[str, Any]) -> float:
    """The label-dropout rate the model was trained with (0 when not recorded)."""
    return float((meta.get("train", {}) or {}).get("label_dropout") or 0.0)


def to_images(x: Tensor, meta: dict[str, Any]) -> Tensor | None:
    """Model outputs ``(B, *item_shape)`` as images ``(B, C, H, W)``, or ``None`` if they are not images."""
    shape = data_image_shape(meta)
    if x.ndim == 2 and len(shape) == 3 and math.prod(shape) == x.shape[1]:
        x = x.reshape(-1, *shape)
    return x if x.ndim == 4 and x.shape[1] in (1, 3) else None


def default_out(checkpoint_path: Path, folder: str) -> Path:
    """``<run>/<folder>`` for a checkpoint at ``<run>/checkpoints/<file>`` (else beside the file)."""
    parent = checkpoint_path.parent
    run = parent.parent if parent.name == "checkpoints" else parent
    return run / folder


def cycle_labels(n: int, classes: int, label: int | None) -> Tensor:
    """``n`` labels: all ``label``, or ``0, 1, ..., classes - 1, 0, ...``."""
    if label is not None:
        return torch.full((n,), int(label), dtype=torch.long)
    return torch.arange(n) % classes


def check_class(label: int | None, classes: int | None, what: str) -> None:
    """Raise ``ValueError`` unless ``label`` is ``None`` or a class in ``[0, classes)``."""
    if label is None:
        return
    if not classes:
        raise ValueError(f"--class needs {what} that knows classes; this one is unconditional")
    if not 0 <= label < classes:
        raise ValueError(f"unknown class {label}: --class must lie in [0, {classes - 1}] ({classes} classes)")

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


def held_out_images(source: str, num: int, seed: int) -> tuple[Tensor, Tensor | None]:
    """The first ``num`` held-out images ``(num, C, H, W)`` (and labels) of a data source.

    ``source`` is anything :func:`scoresde.data.images.load_dataset` reads (``digits``,
    ``digits-color``, a ``.npz`` file, a folder); the held-out split is the one the training
    command makes with the same ``seed`` (default 0), so these images were not trained on.
    """
    from scoresde.data.images import load_dataset

    data = load_dataset(source, seed=seed)
    if data.test.shape[0] < num:
        raise ValueError(f"{source} holds {data.test.shape[0]} held-out images; ask for at most that many")
    labels = None if data.test_labels is None else data.test_labels[:num]
    return data.test[:num], labels


def model_labels(meta: dict[str, Any], labels: Tensor | None) -> Tensor | None:
    """Labels for a conditional model restoring images: ``None`` (the null token, i.e. the
    unconditional score) when it was trained with label dropout, else the images' true labels."""
    classes = num_classes(meta)
    if not classes or label_dropout(meta) > 0:
        return None
    if labels is None:
        raise ValueError(
            "this class-conditional model (trained without label dropout) needs labels, "
            "but the data has none; use a labelled data set or an unconditional model"
        )
    return labels


def check_images_fit(images: Tensor, meta: dict[str, Any], source: str) -> None:
    """Raise ``ValueError`` unless the model's inputs are these images (or them flattened)."""
    want = item_shape(meta)
    got = tuple(images.shape[1:])
    if want != got and want != (math.prod(got),):
        raise ValueError(f"the model takes inputs {want} but {source} images have shape {got}")


def save_rows(rows: list[Tensor], path: Path) -> Path:
    """Write equally long rows of images ``(N, C, H, W)`` as one PNG (row ``i`` = ``rows[i]``)."""
    from scoresde.data.images import save_image_grid

    channels = max(r.shape[1] for r in rows)
    rows = [r.expand(-1, channels, -1, -1) if r.shape[1] != channels else r for r in rows]
    scale = min(8, max(1, 256 // rows[0].shape[-1]))
    return save_image_grid(torch.cat(rows), path, nrow=rows[0].shape[0], scale=scale)

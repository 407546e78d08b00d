"""What a checkpoint says about its model, read once into a typed object.

Every command that reads a checkpoint asks the same questions: what shape does the model take,
are its inputs images, is it class-conditional, was it trained with label dropout, under which
SDE, predicting what, with which time input.  :class:`CheckpointInfo` answers them from the
checkpoint's JSON header (no tensor is read) in one place, so no command re-reads the raw JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoresde.io.run_folder import RunFolder
from scoresde.sde import sde_from_dict
from scoresde.sde.base import SDE

__all__ = ["CheckpointInfo", "checkpoint_file", "read_checkpoint_info"]


def checkpoint_file(path: str | Path) -> Path:
    """The ``.safetensors`` file of ``path``: the file itself, or ``<run>/checkpoints/last.safetensors``.

    Raises:
        ValueError: no path given.
        FileNotFoundError: nothing there, or a folder that is not a run folder.
    """
    if not str(path):
        raise ValueError("checkpoint: missing; give --checkpoint RUN_FOLDER_OR_FILE.safetensors")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"checkpoint not found: {str(p)!r} does not exist (give a run folder or a .safetensors file)"
        )
    if p.is_dir():
        last = RunFolder.resolve(p)
        if not last.is_file():
            raise FileNotFoundError(
                f"{str(p)!r} is a folder without checkpoints/last.safetensors; is it a run folder?"
            )
        return last
    return p


@dataclass(frozen=True)
class CheckpointInfo:
    """The model a checkpoint describes.

    Attributes:
        path: the checkpoint file.
        step: optimiser steps taken.
        sde: the forward SDE the model was trained under.
        prediction: what the network predicts (``eps``, ``score``, ``x0``, ``v``, ``velocity``).
        time_input: what the network takes as its time input (``t``, ``log_sigma``, ...).
        net: the network config (``{"name": ..., **constructor arguments}``).
        item_shape: the shape of one model input: ``(C, H, W)`` for an image network, ``(D,)``
            for a vector network (an MLP trained on flattened images included).
        image_shape: ``(C, H, W)`` when the data are images (also when the network sees them
            flattened), else ``None``.
        num_classes: the number of classes of a class-conditional network, else ``None``.
        label_dropout: the fraction of labels dropped in training (0 when not recorded).
        test_fraction: the held-out fraction of the training data (default 0.1).
        data_seed: the seed of the training run's data split (``train.data_seed``, else
            ``train.seed``; default 0).
        config: the full JSON header (for a model from elsewhere: what its loader reported).
        data_range: the model's data space ``(low, high)``: images lie in it (``(-1, 1)`` for
            scoresde models and diffusers DDPM / DDIM / PNDM pipelines; ``(0, 1)`` for diffusers
            ``ScoreSdeVePipeline`` and score_sde models with ``data.centered = false``; see
            :mod:`scoresde.io.sources`).
        source: where the model came from: ``scoresde`` (a checkpoint), ``diffusers`` or
            ``score_sde`` (see :mod:`scoresde.io.sources`).
    """

    path: Path
    step: int
    sde: SDE
    prediction: str
    time_input: str
    net: dict[str, Any]
    item_shape: tuple[int, ...]
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    label_dropout: float
    test_fraction: float
    data_seed: int
    config: dict[str, Any] = field(repr=False)
    data_range: tuple[float, float] = (-1.0, 1.0)
    source: str = "scoresde"

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], path: str | Path) -> CheckpointInfo:
        """Build from a checkpoint's JSON header (see :mod:`scoresde.io.checkpoint`)."""
        try:
            sde = sde_from_dict(meta["sde"])
            net = dict(meta["net"])
        except KeyError as err:
            raise ValueError(f"{path}: checkpoint config lacks the entry {err}") from None
        model = meta.get("model", {}) or {}
        train = meta.get("train", {}) or {}
        data_shape = tuple(int(s) for s in (meta.get("data", {}) or {}).get("shape") or ())
        extra_shape = tuple(int(s) for s in (meta.get("extra", {}) or {}).get("shape") or ())
        item = _item_shape(net, data_shape or extra_shape, path)
        if len(data_shape) == 3:
            image: tuple[int, int, int] | None = data_shape
        elif len(item) == 3:
            image = item
        else:
            image = None
        classes = net.get("num_classes")
        return cls(
            path=Path(path),
            step=int(meta.get("step", 0)),
            sde=sde,
            prediction=str(model.get("prediction", "score")),
            time_input=str(model.get("time_input", "t")),
            net=net,
            item_shape=item,
            image_shape=image,
            num_classes=int(classes) if classes else None,
            label_dropout=float(train.get("label_dropout") or 0.0),
            test_fraction=float(train.get("test_fraction", 0.1)),
            data_seed=int(train.get("data_seed", train.get("seed", 0))),
            config=meta,
        )

    @property
    def conditional(self) -> bool:
        """Whether the network takes class labels."""
        return self.num_classes is not None


def _item_shape(net: dict[str, Any], data_shape: tuple[int, ...], path: str | Path) -> tuple[int, ...]:
    if "in_channels" in net and "image_size" in net:
        size = int(net["image_size"])
        return (int(net["in_channels"]), size, size)
    if "dim" in net:
        return (int(net["dim"]),)
    if data_shape:
        return data_shape if net.get("name") != "mlp" else (math.prod(data_shape),)
    raise ValueError(f"{path}: the checkpoint records no input shape (neither in its network nor its data)")


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a checkpoint file or run folder, without reading its tensors."""
    from scoresde.io.checkpoint import read_checkpoint_metadata

    file = checkpoint_file(path)
    return CheckpointInfo.from_metadata(read_checkpoint_metadata(file), file)

"""Data for a trained model: its held-out split, in its input shape and data range.

A model is scored on data it did not train on: image sources are split by
:func:`scoresde.data.images.load_dataset` with the ``test_fraction`` and seed its checkpoint
records (:class:`scoresde.io.info.CheckpointInfo`), vector arrays hold out their last rows,
toy sets draw fresh points.  Images whose size differs from the model's are resized the way
training resizes them (``image_size``: bicubic, antialiased, back on the level grid); a shape
that resizing cannot fix is refused with both shapes named.

Sources: ``digits`` (the bundled 8x8 digits, 17 levels), a toy set name of
:data:`scoresde.data.toy.TOY_DATASETS` (2-D vectors), a ``.npy`` / ``.npz`` file of images
``(N, H, W[, C])`` (uint8: 256 levels) or of vectors ``(N, D)`` matching the model, and
anything else ``load_dataset`` reads (CIFAR batches, image folders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde.data.model_range import to_model_range

__all__ = [
    "ModelData",
    "check_images_fit",
    "cycle_labels",
    "held_out_images",
    "load_model_data",
    "model_image_size",
    "model_labels",
]


@dataclass
class ModelData:
    """Data in the model's space ``x: (N, *D)``, labels ``y`` or ``None``, ``levels`` or ``None``."""

    x: Tensor
    y: Tensor | None
    levels: int | None
    name: str


def model_image_size(info: Any) -> int | None:
    """The side of the model's square images (what training's ``image_size`` made), else ``None``."""
    shape = info.image_shape
    if shape is None or shape[-1] != shape[-2]:
        return None
    return int(shape[-1])


def load_model_data(source: str, info: Any, num: int, seed: int, split: str = "test") -> ModelData:
    """``num`` points of ``source`` in the model's space (``info``: its ``CheckpointInfo``).

    ``split``: ``test`` (held-out) or ``train``; image data are split as in training (and
    resized to the model's image size), vector arrays hold out their last ``test_fraction``
    rows, and toy sets draw fresh points from ``seed``.

    Raises:
        ValueError: an unknown source, or data whose shape does not match the model's.
        FileNotFoundError: a source that is no data set name and no file.
    """
    from scoresde.data.toy import TOY_DATASETS, toy_data

    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    shape = info.item_shape
    if source in TOY_DATASETS:
        x = toy_data(source, num, torch.Generator().manual_seed(seed)).float()
        _check_shape(x, shape, source)
        return ModelData(x, None, None, source)
    path = Path(source)
    is_array = path.suffix.lower() in (".npy", ".npz")
    if is_array and path.is_file() and len(shape) == 1 and info.image_shape is None:
        arr = _vector_array(path)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"data {source!r}: holds {arr.dtype} values, not real numbers")
        x = torch.as_tensor(np.asarray(arr, dtype=np.float32))
        _check_shape(x, shape, source)
        n_test = max(1, round(x.shape[0] * info.test_fraction))  # the last rows are held out
        x = x[-n_test:] if split == "test" else x[:-n_test]
        return ModelData(x[:num], None, None, str(path))
    if source != "digits" and not path.exists():
        raise FileNotFoundError(
            f"data {source!r}: not 'digits', not a toy set ({', '.join(TOY_DATASETS)}), and no such file"
        )
    from scoresde.data.images import load_dataset

    data = load_dataset(source, info.test_fraction, info.data_seed, image_size=model_image_size(info))
    x = data.test if split == "test" else data.train
    y = data.test_labels if split == "test" else data.train_labels
    if len(shape) == 1:
        x = x.flatten(1)
    _check_shape(x, shape, source)
    x = to_model_range(x[:num], info)  # images lie in [-1, 1]; the model's range may differ
    return ModelData(x, None if y is None else y[:num], data.levels, data.name)


def _vector_array(path: Path) -> np.ndarray:
    """The one array of a ``.npy`` file, or of a ``.npz`` (under an image key of
    :func:`scoresde.data.images.load_npz`, or its only array); several candidates are ambiguous."""
    from scoresde.data.images import _IMAGE_KEYS

    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy: one array, no open file
            return np.asarray(loaded)
        with loaded as arr:
            found = [k for k in _IMAGE_KEYS if k in arr.files] or list(arr.files)
            if len(found) != 1:
                raise ValueError(
                    f"{path}: {'ambiguous arrays' if found else 'no array'} {found} (keys in the file: "
                    f"{arr.files}); keep the one that holds the data points (named x)"
                )
            return arr[found[0]]
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not readable as numbers without unpickling ({err})") from None


def _check_shape(x: Tensor, shape: tuple[int, ...], source: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"data {source!r} has points of shape {tuple(x.shape[1:])}, but the model was trained on "
            f"{tuple(shape)}; pass the data the model was trained on"
        )


def held_out_images(
    source: str, num: int, seed: int, image_size: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """The first ``num`` held-out images ``(num, C, H, W)`` (and labels) of a data source.

    ``source`` is anything :func:`scoresde.data.images.load_dataset` reads (``digits``,
    ``digits-color``, a ``.npz`` file, a folder); the held-out split is the one the training
    command makes with the same ``seed`` (default 0), so these images were not trained on;
    ``image_size`` resizes them as training does (:func:`model_image_size` of a model).
    """
    from scoresde.data.images import load_dataset

    data = load_dataset(source, seed=seed, image_size=image_size)
    if data.test.shape[0] < num:
        raise ValueError(f"{source} holds {data.test.shape[0]} held-out images; ask for at most that many")
    labels = None if data.test_labels is None else data.test_labels[:num]
    return data.test[:num], labels


def check_images_fit(images: Tensor, info: Any, source: str) -> None:
    """Raise ``ValueError`` unless the model's inputs are these images (or them flattened)."""
    want = info.item_shape
    got = tuple(images.shape[1:])
    if want != got and want != (math.prod(got),):
        raise ValueError(f"the model takes inputs {want} but {source} images have shape {got}")


def model_labels(info: Any, labels: Tensor | None) -> Tensor | None:
    """Labels for a conditional model restoring images: ``None`` (the null token, i.e. the
    unconditional score) when it was trained with label dropout, else the images' true labels."""
    if not info.num_classes or info.label_dropout > 0:
        return None
    if labels is None:
        raise ValueError(
            "this class-conditional model (trained without label dropout) needs labels, "
            "but the data has none; use a labelled data set or an unconditional model"
        )
    return labels


def cycle_labels(n: int, classes: int, label: int | None) -> Tensor:
    """``n`` labels: all ``label``, or ``0, 1, ..., classes - 1, 0, ...``."""
    if label is not None:
        return torch.full((n,), int(label), dtype=torch.long)
    return torch.arange(n) % classes

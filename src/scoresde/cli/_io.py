"""Shared pieces of the checkpoint subcommands: load a model, load data, write pictures.

Data sources (``--data``): ``digits`` (the bundled 8x8 digits, 17 levels), a toy set name of
:data:`scoresde.data.toy.TOY_DATASETS` (2-D vectors), a ``.npy`` / ``.npz`` file of images
``(N, H, W[, C])`` (uint8: 256 levels) or of vectors ``(N, D)`` matching the model.  For image
sources the held-out split of :func:`scoresde.data.images.load_dataset` is used, with the
checkpoint's ``test_fraction`` and ``seed`` when it records them, so a model is scored on data
it did not train on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["Data", "LoadedModel", "load_data", "load_model", "save_picture"]


@dataclass
class LoadedModel:
    """A checkpoint ready to use: ``model`` (EMA weights), its ``sde``, the data ``shape`` ``(*D)``."""

    model: torch.nn.Module
    sde: object
    shape: tuple[int, ...]
    config: dict
    path: Path


@dataclass
class Data:
    """Data in the model's space ``x: (N, *D)``, labels ``y`` or ``None``, ``levels`` or ``None``."""

    x: Tensor
    y: Tensor | None
    levels: int | None
    name: str


def load_model(path: str | Path) -> LoadedModel:
    """Load ``path`` (a checkpoint file or a run folder of ``scoresde train``)."""
    from scoresde.io.checkpoint import load_checkpoint

    p = Path(path)
    if not str(path):
        raise ValueError("checkpoint: missing; give --checkpoint RUN_FOLDER_OR_FILE.safetensors")
    if not p.exists():
        raise FileNotFoundError(
            f"checkpoint {str(p)!r} does not exist (give a run folder or a .safetensors file)"
        )
    if p.is_dir() and not (p / "checkpoints" / "last.safetensors").is_file():
        raise FileNotFoundError(
            f"{str(p)!r} is a folder without checkpoints/last.safetensors; is it a run folder?"
        )
    ckpt = load_checkpoint(p)
    model = ckpt.model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    shape = ckpt.config.get("data", {}).get("shape") or ckpt.config.get("extra", {}).get("shape")
    if not shape:
        net = ckpt.config.get("net", {})
        dim = net.get("dim") or net.get("config", {}).get("dim")
        if dim is None:
            raise ValueError(f"{ckpt.path}: the checkpoint records no data shape")
        shape = [dim]
    if ckpt.config.get("net", {}).get("name") == "mlp":
        shape = [int(np.prod(shape))]  # `scoresde train --net mlp` flattens the images
    return LoadedModel(model, model.sde, tuple(int(s) for s in shape), ckpt.config, ckpt.path)


def load_data(source: str, loaded: LoadedModel, num: int, seed: int, split: str = "test") -> Data:
    """``num`` points of ``source`` in the model's space.

    ``split``: ``test`` (held-out) or ``train``; image data are split as in training, vector
    arrays hold out their last ``test_fraction`` rows, and toy sets draw fresh points from ``seed``.

    Raises:
        ValueError: an unknown source, or data whose shape does not match the model's.
    """
    from scoresde.data.toy import TOY_DATASETS, toy_data

    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    shape = loaded.shape
    train_cfg = loaded.config.get("train", {})
    test_fraction = float(train_cfg.get("test_fraction", 0.1))
    data_seed = int(train_cfg.get("seed", 0))
    if source in TOY_DATASETS:
        x = toy_data(source, num, torch.Generator().manual_seed(seed)).float()
        _check_shape(x, shape, source)
        return Data(x, None, None, source)
    path = Path(source)
    is_array = path.suffix.lower() in (".npy", ".npz")
    if is_array and path.is_file() and len(shape) == 1:
        arr = np.load(path)
        if isinstance(arr, np.lib.npyio.NpzFile):
            key = "x" if "x" in arr.files else arr.files[0]
            arr = arr[key]
        x = torch.as_tensor(np.asarray(arr, dtype=np.float32))
        _check_shape(x, shape, source)
        n_test = max(1, round(x.shape[0] * test_fraction))  # the last rows are held out
        x = x[-n_test:] if split == "test" else x[:-n_test]
        return Data(x[:num], None, None, str(path))
    if source != "digits" and not path.exists():
        raise FileNotFoundError(
            f"data {source!r}: not 'digits', not a toy set ({', '.join(TOY_DATASETS)}), and no such file"
        )
    from scoresde.data.images import load_dataset

    split_data = load_dataset(source, test_fraction, data_seed)
    x = split_data.test if split == "test" else split_data.train
    y = split_data.test_labels if split == "test" else split_data.train_labels
    if len(shape) == 1:
        x = x.flatten(1)
    _check_shape(x, shape, source)
    return Data(x[:num], None if y is None else y[:num], split_data.levels, split_data.name)


def _check_shape(x: Tensor, shape: tuple[int, ...], source: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"data {source!r} has points of shape {tuple(x.shape[1:])}, but the model was trained on "
            f"{tuple(shape)}; pass the data the model was trained on"
        )


def image_shape(loaded: LoadedModel) -> tuple[int, int, int] | None:
    """``(C, H, W)`` when the model's data are images (also when an MLP sees them flattened)."""
    data_shape = loaded.config.get("data", {}).get("shape")
    if data_shape and len(data_shape) == 3:
        return tuple(int(s) for s in data_shape)  # type: ignore[return-value]
    return None


def save_picture(
    x: Tensor, loaded: LoadedModel, path: Path, nrow: int | None = None, title: str = ""
) -> Path:
    """Images as a PNG grid, 2-D points as a scatter plot, other vectors as a line plot."""
    img = image_shape(loaded)
    x = x.detach().cpu().float()
    if img is not None:
        from scoresde.data.images import save_image_grid

        return save_image_grid(x.reshape(-1, *img).clamp(-1, 1), path, nrow=nrow, scale=max(1, 64 // img[-1]))
    from scoresde.viz.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if x.shape[1] == 2:
        if nrow == -1:  # a path: colour by position along it
            ax.scatter(x[:, 0], x[:, 1], s=14, c=np.arange(x.shape[0]), cmap="viridis")
        else:
            ax.scatter(x[:, 0], x[:, 1], s=6, alpha=0.7)
        ax.set_aspect("equal", adjustable="datalim")
    else:
        for row in x[: min(32, x.shape[0])]:
            ax.plot(row.numpy(), alpha=0.5)
    ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def mean_se(values: Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean of a 1-D tensor."""
    v = values.double()
    n = v.numel()
    se = float(v.std() / math.sqrt(n)) if n > 1 else float("nan")
    return float(v.mean()), se

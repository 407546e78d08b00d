"""Shared pieces of the checkpoint subcommands: load a model, load data, labels, pictures.

Data sources (``--data``): ``digits`` (the bundled 8x8 digits, 17 levels), a toy set name of
:data:`scoresde.data.toy.TOY_DATASETS` (2-D vectors), a ``.npy`` / ``.npz`` file of images
``(N, H, W[, C])`` (uint8: 256 levels) or of vectors ``(N, D)`` matching the model.  For image
sources the held-out split of :func:`scoresde.data.images.load_dataset` is used, with the
checkpoint's ``test_fraction`` and ``seed`` when it records them, so a model is scored on data
it did not train on.

What a checkpoint says about its model (input shape, image shape, classes, label dropout, SDE)
comes from its :class:`~scoresde.io.info.CheckpointInfo`, read once by :func:`load_model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde.io.info import CheckpointInfo

__all__ = [
    "Data",
    "LoadedModel",
    "check_class",
    "check_images_fit",
    "cycle_labels",
    "default_out",
    "from_model_range",
    "held_out_images",
    "load_data",
    "load_model",
    "mean_se",
    "model_labels",
    "save_picture",
    "save_rows",
    "to_images",
    "to_model_range",
]


@dataclass
class LoadedModel:
    """A checkpoint ready to use: ``model`` (EMA weights unless ``--raw``) and its typed ``info``."""

    model: Any
    info: CheckpointInfo

    @property
    def sde(self) -> Any:
        return self.model.sde

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape ``(*D)`` of one model input."""
        return self.info.item_shape

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def step(self) -> int:
        return self.info.step

    @property
    def config(self) -> dict[str, Any]:
        return self.info.config


@dataclass
class Data:
    """Data in the model's space ``x: (N, *D)``, labels ``y`` or ``None``, ``levels`` or ``None``."""

    x: Tensor
    y: Tensor | None
    levels: int | None
    name: str


def load_model(
    ctx: Any = None, *, path: str | Path | None = None, raw: bool = False, device: Any = "cpu"
) -> LoadedModel:
    """Load the checkpoint group's model (``ctx["checkpoint"]``, ``ctx["raw"]``, or the model
    source ``ctx["model"]`` of :mod:`scoresde.cli.models`, on ``ctx.device``), or the checkpoint
    at ``path``; frozen and in eval mode.

    Raises:
        ValueError: none or both of ``--checkpoint`` / ``--model``, an unknown model source, or
            not a valid checkpoint.
        FileNotFoundError: no such file, or a folder that is not a run folder.
    """
    from scoresde.io.checkpoint import load_checkpoint
    from scoresde.io.info import checkpoint_file

    if ctx is not None:
        path, raw, device = ctx["checkpoint"], ctx["raw"], ctx.device
        spec = ctx.cfg.get("model", "")
        if "model" in ctx.cfg:
            from scoresde.cli.models import check_one_source, load_source

            check_one_source(str(path or ""), str(spec or ""))
            if spec:
                weights = "raw" if raw else ctx.cfg.get("weights", "ema")
                model, info = load_source(spec, ctx.cfg.get("model_config", ""), weights, device)
                return LoadedModel(model, info)
    ckpt = load_checkpoint(checkpoint_file(path or ""), ema=not raw, device=device)
    model = ckpt.model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return LoadedModel(model, ckpt.info)


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
    test_fraction, data_seed = loaded.info.test_fraction, loaded.info.data_seed
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
    x = to_model_range(x[:num], loaded.info)  # images lie in [-1, 1]; the model's range may differ
    return Data(x, None if y is None else y[:num], split_data.levels, split_data.name)


def _check_shape(x: Tensor, shape: tuple[int, ...], source: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"data {source!r} has points of shape {tuple(x.shape[1:])}, but the model was trained on "
            f"{tuple(shape)}; pass the data the model was trained on"
        )


def to_model_range(x: Tensor, info: CheckpointInfo) -> Tensor:
    """Images in ``[-1, 1]`` mapped affinely into the model's data range ``info.data_range``."""
    lo, hi = info.data_range
    return x if (lo, hi) == (-1.0, 1.0) else lo + (x + 1.0) * (0.5 * (hi - lo))


def from_model_range(x: Tensor, info: CheckpointInfo) -> Tensor:
    """Images in the model's data range mapped affinely to ``[-1, 1]`` (for writing pictures)."""
    lo, hi = info.data_range
    return x if (lo, hi) == (-1.0, 1.0) else (x - lo) * (2.0 / (hi - lo)) - 1.0


def save_picture(
    x: Tensor, loaded: LoadedModel, path: Path, nrow: int | None = None, title: str = ""
) -> Path:
    """Images as a PNG grid, 2-D points as a scatter plot, other vectors as a line plot."""
    img = loaded.info.image_shape
    x = x.detach().cpu().float()
    if img is not None:
        from scoresde.data.images import save_image_grid

        x = from_model_range(x.reshape(-1, *img), loaded.info)
        return save_image_grid(x.clamp(-1, 1), path, nrow=nrow, scale=max(1, 64 // img[-1]))
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


def to_images(x: Tensor, info: CheckpointInfo) -> Tensor | None:
    """Model outputs ``(B, *item_shape)`` as images ``(B, C, H, W)`` in ``[-1, 1]``, or ``None``
    if they are not images."""
    shape = info.image_shape
    if x.ndim == 2 and shape is not None and math.prod(shape) == x.shape[1]:
        x = x.reshape(-1, *shape)
    return from_model_range(x, info) if x.ndim == 4 and x.shape[1] in (1, 3) else None


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


def model_labels(info: CheckpointInfo, labels: Tensor | None) -> Tensor | None:
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


def check_images_fit(images: Tensor, info: CheckpointInfo, source: str) -> None:
    """Raise ``ValueError`` unless the model's inputs are these images (or them flattened)."""
    want = info.item_shape
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

"""CIFAR-10 / CIFAR-100 as distributed by their authors (Krizhevsky 2009), read without running code.

Accepted layouts (a folder, a folder holding one of these folders, or the ``.tar.gz`` itself):

- python batches, the files torchvision downloads: ``cifar-10-batches-py/`` with
  ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta``; CIFAR-100's
  ``cifar-100-python/`` with ``train``, ``test`` and ``meta``.  Each is a pickled dict with
  ``data`` (``(N, 3072)`` uint8, channel-major rows) and ``labels`` (CIFAR-10) or
  ``fine_labels`` / ``coarse_labels`` (CIFAR-100).  They are read through
  :func:`scoresde.data.safe_pickle.safe_load`, which admits only dicts, lists, strings, numbers
  and numpy arrays, never code.
- the binary version: ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` ...
  ``data_batch_5.bin`` and ``test_batch.bin`` (records of 1 label byte + 3072 pixel bytes), or
  ``cifar-100-binary/`` with ``train.bin`` and ``test.bin`` (2 label bytes, coarse then fine,
  + 3072).  Class names come from ``batches.meta.txt`` / ``fine_label_names.txt`` when present.

The official train/test split is used as such.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scoresde.data.labels import check_classes
from scoresde.data.safe_pickle import safe_loads

__all__ = ["CIFAR_LAYOUTS", "find_cifar", "load_cifar"]

_TRAIN10 = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_LAYOUTS: dict[str, tuple[list[str], list[str]]] = {
    # layout: (train files, test files)
    "cifar10-python": (_TRAIN10, ["test_batch"]),
    "cifar100-python": (["train"], ["test"]),
    "cifar10-binary": ([f + ".bin" for f in _TRAIN10], ["test_batch.bin"]),
    "cifar100-binary": (["train.bin"], ["test.bin"]),
}
"""Each known layout's training and test files."""

_META = {
    "cifar10-python": "batches.meta",
    "cifar100-python": "meta",
    "cifar10-binary": "batches.meta.txt",
    "cifar100-binary": "fine_label_names.txt",
}
_PIXELS = 3 * 32 * 32


def _reader(path: Path) -> tuple[dict[str, Callable[[], bytes]], str]:
    """Map each file's base name under ``path`` (a folder, or a tar archive) to a reader."""
    if path.is_dir():
        files = {}
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.name not in files:
                files[p.name] = p.read_bytes
        return files, str(path)
    if path.is_file() and tarfile.is_tarfile(path):
        members: dict[str, bytes] = {}
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and name not in members:
                    members[name] = tar.extractfile(m).read()  # type: ignore[union-attr]
        return {name: _constant(raw) for name, raw in members.items()}, str(path)
    return {}, str(path)


def _constant(raw: bytes) -> Callable[[], bytes]:
    return lambda: raw


def find_cifar(path: str | Path) -> str | None:
    """The CIFAR layout found at ``path`` (a key of :data:`CIFAR_LAYOUTS`), or ``None``."""
    path = Path(path)
    if path.is_dir():
        names = {p.name for p in path.rglob("*") if p.is_file()}
    elif path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")) and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            names = {Path(m.name).name for m in tar.getmembers() if m.isfile()}
    else:
        return None
    # A layout whose files are partly there is still that layout (load_cifar then names what is
    # missing), not a folder of images.  CIFAR-100's generic names (train, test, meta) count
    # only two together.
    best, score = None, 0
    for layout, (train, test) in CIFAR_LAYOUTS.items():
        found = len(names & {*train, *test, _META[layout]})
        needed = 2 if layout == "cifar100-python" else 1
        if found >= needed and found > score:
            best, score = layout, found
    return best


def _text(raw: object) -> str:
    return raw.decode("latin1") if isinstance(raw, bytes) else str(raw)


def _python_batch(raw: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_loads(raw, where)
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    batch = {_text(k): v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{where}: expected keys 'data' and {label_key!r}, found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(
            f"{where}: 'data' must be uint8 of shape (N, {_PIXELS}), got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{where}: {label_key!r} must hold {data.shape[0]} labels, got shape {labels.shape}")
    return data, labels.astype(np.int64)


def _binary_batch(
    raw: bytes, where: str, label_bytes: int, label_index: int
) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + _PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(f"{where}: size {len(raw)} is not a multiple of the {record}-byte CIFAR record")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    return rows[:, label_bytes:], rows[:, label_index].astype(np.int64)


def _class_names(
    layout: str, files: dict[str, Callable[[], bytes]], where: str, labels: str
) -> list[str] | None:
    meta = _META[layout]
    if meta not in files:
        return None
    raw = files[meta]()
    if layout.endswith("binary"):
        return [line.strip() for line in raw.decode("latin1").splitlines() if line.strip()]
    d = safe_loads(raw, f"{where}/{meta}")
    if not isinstance(d, dict):
        return None
    d = {_text(k): v for k, v in d.items()}
    key = "label_names" if layout == "cifar10-python" else f"{labels}_label_names"
    return [_text(n) for n in d[key]] if key in d else None


def load_cifar(path: str | Path, labels: str = "fine"):
    """Load CIFAR-10 or CIFAR-100 (python batches or binary) with its own train/test split.

    Args:
        path: a folder (or the ``.tar.gz`` archive) holding one of :data:`CIFAR_LAYOUTS`.
        labels: for CIFAR-100, ``"fine"`` (100 classes) or ``"coarse"`` (20 super-classes).

    Returns:
        A :class:`~scoresde.data.images.DataSplit` with ``(N, 3, 32, 32)`` images in
        ``[-1, 1]``, labels, ``levels=256`` and the class names.
    """
    from scoresde.data.images import DataSplit, to_unit_range

    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    path = Path(path)
    layout = find_cifar(path)
    if layout is None:
        raise ValueError(
            f"{path}: not a CIFAR folder or archive; expected one of "
            + "; ".join(f"{k}: {', '.join(tr[:1] + te)}" for k, (tr, te) in CIFAR_LAYOUTS.items())
        )
    files, where = _reader(path)
    train_files, test_files = CIFAR_LAYOUTS[layout]
    cifar100 = layout.startswith("cifar100")

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for n in names:
            raw = files[n]()
            if layout.endswith("python"):
                key = f"{labels}_labels" if cifar100 else "labels"
                parts.append(_python_batch(raw, f"{where}/{n}", key))
            else:
                fine = int(cifar100 and labels == "fine")  # CIFAR-100 records: coarse, fine, pixels
                parts.append(_binary_batch(raw, f"{where}/{n}", 2 if cifar100 else 1, fine))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    missing = [n for n in train_files + test_files if n not in files]
    if missing:
        raise ValueError(
            f"{where}: an incomplete {layout} folder: {', '.join(missing)} missing (it needs the "
            f"training files {', '.join(train_files)} and the test files {', '.join(test_files)})"
        )
    (x_tr, y_tr), (x_te, y_te) = read(train_files), read(test_files)
    names = _class_names(layout, files, where, labels)
    num_classes = check_classes(
        torch.as_tensor(y_tr),
        torch.as_tensor(y_te),
        where,
        declared=len(names) if names else None,
        source=_META[layout],
        names=names,
    )

    def images(a: np.ndarray) -> torch.Tensor:
        return to_unit_range(torch.as_tensor(a.reshape(-1, 3, 32, 32).copy()), 255.0)

    return DataSplit(
        train=images(x_tr),
        test=images(x_te),
        train_labels=torch.as_tensor(y_tr),
        test_labels=torch.as_tensor(y_te),
        num_classes=num_classes,
        levels=256,
        name=str(path),
        class_names=names,
    )

"""Latents files: the ``.npz`` that ``scoresde encode`` writes (arrays ``z`` and ``x``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_latents"]

_KINDS = {
    "U": "strings",
    "S": "bytes",
    "c": "complex numbers",
    "b": "booleans",
    "M": "dates",
    "m": "durations",
}


def load_latents(path: str) -> Tensor:
    """The latents ``z: (N, *D)`` of an ``.npz`` file written by ``scoresde encode`` (array ``z``).

    Raises:
        ValueError: no path, a file that is not an ``.npz`` archive (checked from its first
            bytes, never unpickled), no array ``z``, an array of non-numbers (strings, objects,
            complex), no latents, or non-finite values; each message names the file.
        FileNotFoundError: no such file.
    """
    p = Path(path)
    if not path:
        raise ValueError("latents: missing; give --latents FILE.npz (written by `scoresde encode`)")
    if not p.is_file():
        raise FileNotFoundError(f"latents file {path!r} does not exist (write one with `scoresde encode`)")
    if not zipfile.is_zipfile(p):
        with open(p, "rb") as f:
            head = f.read(6)
        kind = "a single .npy array" if head == b"\x93NUMPY" else "not an .npz archive"
        raise ValueError(
            f"--latents: {path} is {kind}; give the latents.npz (array z) that `scoresde encode` writes"
        )
    try:
        with np.load(p, allow_pickle=False) as f:
            files = list(f.files)
            z_np = f["z"] if "z" in files else None
    except ValueError as err:  # an object array: numpy would need to unpickle it
        raise ValueError(f"--latents: {path}: array z is unreadable without unpickling ({err})") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"--latents: {path} is not a readable .npz archive ({err})") from None
    if z_np is None:
        raise ValueError(f"{path}: expected an array named 'z' (as `scoresde encode` writes), found {files}")
    if not (np.issubdtype(z_np.dtype, np.floating) or np.issubdtype(z_np.dtype, np.integer)):
        kind = _KINDS.get(z_np.dtype.kind, "non-numbers")
        raise ValueError(f"--latents: {path}: array z holds {kind} (dtype {z_np.dtype}), not real numbers")
    z = torch.as_tensor(z_np).float()
    if z.ndim == 0 or z.shape[0] == 0:
        raise ValueError(f"--latents: {path} holds no latents (array z has shape {tuple(z.shape)})")
    if not torch.isfinite(z).all():
        bad = (
            int((~torch.isfinite(z)).flatten(1).any(1).sum())
            if z.ndim > 1
            else int((~torch.isfinite(z)).sum())
        )
        raise ValueError(f"--latents: {path}: {bad} of the {z.shape[0]} latents hold NaN or infinite values")
    return z

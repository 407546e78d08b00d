"""A fingerprint of a model's weights: which network a fitted artefact (a bespoke solver) is for.

:func:`weights_digest` hashes every parameter and buffer of a module — its name, dtype, shape
and bytes — in name order.  Loading the same weights on any machine gives the same bytes, so
the digest is equal exactly when the weights are (no arithmetic is involved, so the equality
is exact, not a float tolerance).  Names are taken as the eager module has them: the
``_orig_mod.`` segment ``torch.compile`` inserts is dropped, and memory formats
(``channels_last``) are made contiguous first, so preparing a network for speed keeps its
digest.  Take it before :func:`scoresde.models.execution.prepare_model` with ``freeze``, which
folds the weights into a traced graph.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

__all__ = ["weights_digest"]

_COMPILED = "_orig_mod."


def weights_digest(module: nn.Module) -> str:
    """The SHA-256 hex digest of ``module``'s parameters and buffers (names, dtypes, shapes, bytes).

    Args:
        module: any ``nn.Module`` (a :class:`~scoresde.models.base.ScoreFunction`, a network).

    Returns:
        64 hex characters.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"weights_digest needs an nn.Module, got {type(module).__name__}")
    h = hashlib.sha256()
    entries = {name.replace(_COMPILED, ""): t for name, t in module.state_dict(keep_vars=False).items()}
    for name in sorted(entries):
        t = entries[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

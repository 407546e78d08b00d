"""A model ready for inference: a checkpoint or a model from elsewhere, with its typed info."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scoresde.io.info import CheckpointInfo

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    """A model (EMA weights unless raw ones were asked for), frozen and in eval mode, and its
    typed ``info`` (:class:`~scoresde.io.info.CheckpointInfo`)."""

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


def load_model(
    checkpoint: str | Path = "",
    *,
    source: str | None = None,
    model_config: str = "",
    weights: str = "ema",
    raw: bool = False,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """The model of a checkpoint (a ``.safetensors`` file or a run folder) or of a model source
    ``SOURCE:PATH`` (:func:`scoresde.io.sources.load_source`), on ``device``.

    A checkpoint of ``scoresde distill`` (``extra["consistency"]``) gives its
    :class:`~scoresde.distill.ConsistencyModel` (sample it with ``method="consistency"``).

    Args:
        checkpoint: the checkpoint file or run folder.
        source: ``SOURCE:PATH`` of a model from elsewhere; ``None`` when the caller has no
            source (then only ``checkpoint`` is read), ``""`` for none given.
        model_config: the config of a score_sde source.
        weights: ``ema`` or ``raw`` weights of a score_sde source (``raw=True`` selects raw).
        raw: the raw weights instead of the EMA weights.
        device: where the model goes.

    Raises:
        ValueError: none or both of ``checkpoint`` / ``source``, an unknown source, or not a
            valid checkpoint.
        FileNotFoundError: no such file, or a folder that is not a run folder.
    """
    from scoresde.io.checkpoint import load_checkpoint
    from scoresde.io.info import checkpoint_file
    from scoresde.io.sources import check_one_source, freeze, load_source

    if source is not None:
        check_one_source(str(checkpoint or ""), str(source or ""))
        if source:
            source_model, info = load_source(source, model_config, "raw" if raw else weights, device)
            return LoadedModel(source_model, info)
    ckpt = load_checkpoint(checkpoint_file(checkpoint or ""), ema=not raw, device=device)
    model: Any = freeze(ckpt.model)
    consistency = (ckpt.config.get("extra") or {}).get("consistency")
    if consistency is not None:
        # A student of `scoresde distill`: its network is the denoiser of a consistency model.
        from scoresde.models.consistency import ConsistencyModel

        model = freeze(ConsistencyModel(model, consistency.get("sigma_data"), consistency.get("t_min")))
    return LoadedModel(model, ckpt.info)

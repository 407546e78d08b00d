"""A model ready for inference: a checkpoint or a model from elsewhere, with its typed info."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scoresde.io.info import CheckpointInfo

__all__ = ["DistilledGrid", "LoadedModel", "load_model"]


@dataclass(frozen=True)
class DistilledGrid:
    """The sampler a progressive-distillation student was distilled for (Salimans & Ho 2022):
    ``steps`` DDIM steps on exactly the times ``grid`` (``(steps + 1,)``, float64, decreasing),
    every ``2**rounds``-th time of its first teacher's ``grid_name`` grid."""

    steps: int
    grid: torch.Tensor
    grid_name: str
    method: str = "ddim"

    @classmethod
    def from_extra(cls, entry: dict[str, Any]) -> DistilledGrid:
        """Of a checkpoint's ``extra["progressive"]``
        (:func:`scoresde.distill.progressive_run.progressive_extra`)."""
        grid = torch.tensor([float(t) for t in entry["grid"]], dtype=torch.float64)
        return cls(int(entry["steps"]), grid, str(entry.get("grid_name", "")))

    def check(self, method: str, steps: int, grid: str) -> None:
        """Raise a ``ValueError`` unless ``method`` / ``steps`` / ``grid`` (a name) are what
        the student was distilled for."""
        if method != self.method or steps != self.steps or grid != self.grid_name:
            raise ValueError(
                f"this checkpoint is a progressive-distillation student: it samples only with "
                f"{self.method} in {self.steps} steps on its distilled {self.grid_name} grid (--method "
                f"{self.method} --steps {self.steps} --grid {self.grid_name}, the defaults for it), not "
                f"{method} in {steps} steps on a {grid} grid"
            )


@dataclass
class LoadedModel:
    """A model (EMA weights unless raw ones were asked for), frozen and in eval mode, and its
    typed ``info`` (:class:`~scoresde.io.info.CheckpointInfo`); ``distilled_grid``: the sampler
    of a progressive-distillation student, else ``None``; ``digest``: the weights' fingerprint
    (:func:`scoresde.io.digest.weights_digest`) when the loader was asked for it, else ``""``."""

    model: Any
    info: CheckpointInfo
    distilled_grid: DistilledGrid | None = None
    digest: str = ""

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
    :class:`~scoresde.distill.ConsistencyModel` (sample it with ``method="consistency"``); one of
    ``scoresde distill --method progressive`` (``extra["progressive"]``) its student, a plain
    score model, with the grid it was distilled for in ``distilled_grid`` (sample it with
    ``method="ddim", grid=loaded.distilled_grid.grid``).

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
    progressive = (ckpt.config.get("extra") or {}).get("progressive")
    distilled = None if progressive is None else DistilledGrid.from_extra(progressive)
    return LoadedModel(model, ckpt.info, distilled)

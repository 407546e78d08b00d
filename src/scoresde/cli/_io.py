"""Glue of the checkpoint subcommands: the model of the checkpoint group, its data, run folders.

The library does the work: :func:`scoresde.io.loaded.load_model` (checkpoints and models from
elsewhere), :func:`scoresde.data.heldout.load_model_data` (held-out data in the model's space),
:mod:`scoresde.viz.pictures` (pictures).  This module reads the command's settings for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scoresde.data.heldout import ModelData, load_model_data
from scoresde.evaluation.metrics import mean_se
from scoresde.io.loaded import LoadedModel
from scoresde.io.loaded import load_model as _load
from scoresde.io.run_folder import RunFolder

__all__ = ["check_class", "default_out", "load_data", "load_model", "mean_se", "sampling_grid"]


def load_model(ctx: Any, digest: bool = False) -> LoadedModel:
    """The checkpoint group's model (``--checkpoint`` / ``--raw``, or ``--model`` with
    ``--model-config`` / ``--weights``) on ``ctx.device``, frozen and in eval mode; with
    ``--compile on|freeze`` / ``--channels-last``, its network prepared by
    :func:`scoresde.models.execution.prepare_model` (``on`` first checks that a compiler works).
    ``digest``: also fingerprint the weights (``loaded.digest``), before any preparation."""
    cfg = ctx.cfg
    loaded = _load(
        cfg["checkpoint"],
        source=cfg.get("model", "") if "model" in cfg else None,
        model_config=cfg.get("model_config", ""),
        weights=cfg.get("weights", "ema"),
        raw=cfg["raw"],
        device=ctx.device,
    )
    if digest:
        from scoresde.io.digest import weights_digest

        loaded.digest = weights_digest(loaded.model)
    mode = cfg.get("compile", "off")
    if mode not in ("off", None, False) or cfg.get("channels_last"):
        from scoresde.models.execution import prepare_model

        prepare_model(
            loaded.model,
            "on" if mode is True else (mode or "off"),
            compile_mode=cfg.get("compile_mode", "default"),
            channels_last=bool(cfg.get("channels_last")),
        )
    return loaded


def sampling_grid(cfg: dict[str, Any], loaded: LoadedModel, sde: Any, device: Any) -> Any:
    """The ``grid`` argument of :func:`scoresde.sample` for the settings ``cfg``: a progressive
    student's own distilled times (after checking ``--method`` / ``--steps`` / ``--grid`` are its:
    :meth:`~scoresde.io.loaded.DistilledGrid.check`), else a grid name or, for ``--grid
    optimized``, a :class:`~scoresde.sampling.grid_opt.GridOptimizer` (the sampler is checked
    before any pilot).

    Raises:
        ValueError: a progressive student with another sampler, step count or grid.
    """
    from scoresde.sampling.grid_opt import grid_choice

    distilled = loaded.distilled_grid
    if distilled is not None:
        distilled.check(cfg["method"], cfg["steps"], cfg["grid"])
        return distilled.grid
    return grid_choice(
        cfg["grid"], sde, cfg["method"], pilot=cfg["grid_pilot"], seed=cfg["grid_seed"], device=device
    )


def load_data(source: str, loaded: LoadedModel, num: int, seed: int, split: str = "test") -> ModelData:
    """``num`` points of ``--data`` in the model's space (:func:`load_model_data`)."""
    return load_model_data(source, loaded.info, num, seed, split)


def default_out(checkpoint_path: Path, folder: str) -> Path:
    """``<run>/<folder>`` for a checkpoint at ``<run>/checkpoints/<file>`` (else beside the file)."""
    return RunFolder.of_checkpoint(checkpoint_path).root / folder


def check_class(label: int | None, classes: int | None, what: str) -> None:
    """Raise ``ValueError`` unless ``--class`` is ``None`` or a class in ``[0, classes)``."""
    if label is None:
        return
    if not classes:
        raise ValueError(f"--class needs {what} that knows classes; this one is unconditional")
    if not 0 <= label < classes:
        raise ValueError(f"unknown class {label}: --class must lie in [0, {classes - 1}] ({classes} classes)")

"""Models from elsewhere, read as the same (model, :class:`CheckpointInfo`) pair as a checkpoint.

A model source is written ``SOURCE:PATH``:

- ``diffusers:DIR``: a local diffusers folder written by ``save_pretrained`` (a pipeline, or a
  ``UNet2DModel`` with ``scheduler_config.json`` beside it), read offline by
  :func:`scoresde.interop.diffusers.load_diffusers`;
- ``score_sde:CKPT`` with a config (a JSON/TOML file or a paper config name of
  :data:`scoresde.nets.score_sde.paper_configs.PAPER_CONFIGS`) and ``ema`` or ``raw`` weights:
  a score_sde_pytorch ``checkpoint_*.pth``, read by :func:`scoresde.interop.score_sde.load_score_sde`.

:func:`load_source` turns either into the :class:`~scoresde.io.info.CheckpointInfo` that
inference code reads (model input shape, image shape, classes, SDE, data range), so it need not
ask where the model came from.  The data range comes from the model: a diffusers pipeline class
(``ScoreSdeVePipeline`` ``[0, 1]``, ``DDPMPipeline`` / ``DDIMPipeline`` / ``PNDMPipeline``
``[-1, 1]``; a model folder from its scheduler class), a score_sde config's ``data.centered``;
``info.config["data_range_source"]`` says which.  The CLI's ``--model`` / ``--model-config`` /
``--weights`` flags are :mod:`scoresde.cli.models`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scoresde.io.info import CheckpointInfo

__all__ = ["MODEL_SOURCES", "WEIGHTS", "check_one_source", "freeze", "load_source", "parse_model_spec"]

MODEL_SOURCES = ("diffusers", "score_sde")
"""The prefixes of ``--model SOURCE:PATH``."""

WEIGHTS = ("ema", "raw")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"SOURCE:PATH"`` as ``(source, path)``.

    Raises:
        ValueError: no prefix, an unknown prefix (the known ones listed), or no path.
    """
    source, sep, path = spec.partition(":")
    if not sep or source not in MODEL_SOURCES:
        known = ", ".join(f"{s}:PATH" for s in MODEL_SOURCES)
        raise ValueError(
            f"--model {spec!r}: unknown model source {source if sep else spec!r}; known: {known}"
        )
    if not path:
        raise ValueError(f"--model {spec!r}: no path after '{source}:'")
    return source, path


def check_one_source(checkpoint: str, model: str) -> None:
    """Raise ``ValueError`` unless exactly one of ``--checkpoint`` / ``--model`` is given."""
    if checkpoint and model:
        raise ValueError("give either --checkpoint or --model, not both")
    if not checkpoint and not model:
        raise ValueError(
            "no model given: pass --checkpoint RUN_FOLDER_OR_FILE.safetensors, --model diffusers:DIR, "
            "or --model score_sde:CKPT.pth --model-config CFG"
        )


def load_source(
    spec: str, model_config: str = "", weights: str = "ema", device: Any = "cpu"
) -> tuple[Any, CheckpointInfo]:
    """The model of ``--model SOURCE:PATH`` on ``device`` and its :class:`CheckpointInfo`.

    Raises:
        ValueError: a bad spec, a missing ``--model-config`` for score_sde, or the loader's
            errors (not a diffusers folder, missing keys, ...).
        FileNotFoundError: no such file or folder.
    """
    source, path = parse_model_spec(spec)
    if weights not in WEIGHTS:
        raise ValueError(f"--weights {weights!r}: expected one of {', '.join(WEIGHTS)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"--model {spec!r}: {path!r} does not exist")
    if source == "diffusers":
        if model_config:
            raise ValueError(
                "--model-config is for score_sde models; a diffusers folder carries its own config"
            )
        return _from_diffusers(path, device)
    if not model_config:
        raise ValueError(
            f"--model {spec!r} needs --model-config: a .json/.toml config file or a paper config name"
        )
    return _from_score_sde(path, model_config, weights, device)


def _info(
    path: str, sde: Any, item_shape: tuple[int, int, int], num_classes: Any, **extra: Any
) -> CheckpointInfo:
    step = extra.pop("step", None)
    prediction = str(extra.pop("prediction", "score"))
    time_input = str(extra.pop("time_input", "t"))
    data_range = tuple(float(v) for v in extra.pop("data_range"))  # from the loader, never assumed
    return CheckpointInfo(
        path=Path(path),
        step=int(step or 0),
        sde=sde,
        prediction=prediction,
        time_input=time_input,
        net={"name": extra["source"]},
        item_shape=item_shape,
        image_shape=item_shape,
        num_classes=int(num_classes) if num_classes else None,
        label_dropout=0.0,
        test_fraction=0.1,
        data_seed=0,
        config=dict(extra),
        data_range=data_range,  # type: ignore[arg-type]
        source=str(extra["source"]),
    )


def freeze(model: Any) -> Any:
    model = model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


def _from_diffusers(path: str, device: Any) -> tuple[Any, CheckpointInfo]:
    from scoresde.interop.diffusers import load_diffusers

    loaded = load_diffusers(path, device=device)
    unet_config: Any = None
    for module in loaded.model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "get") and cfg.get("in_channels") is not None:
            unet_config = cfg
            break
    if unet_config is None or unet_config.get("sample_size") is None:
        raise ValueError(f"{path}: the UNet config records no in_channels / sample_size")
    size = unet_config["sample_size"]
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    shape = (int(unet_config["in_channels"]), int(h), int(w))
    info = _info(
        path,
        loaded.sde,
        shape,
        loaded.num_classes,
        source="diffusers",
        prediction=getattr(loaded.model, "prediction", "eps"),
        time_input=getattr(loaded.model, "time_input", "timestep"),
        scheduler=loaded.scheduler_class,
        data_range=loaded.data_range,
        data_range_source=loaded.data_range_source,
    )
    return freeze(loaded.model), info


def _from_score_sde(path: str, config: str, weights: str, device: Any) -> tuple[Any, CheckpointInfo]:
    from scoresde.interop.score_sde import load_score_sde

    loaded = load_score_sde(path, config, weights=weights, device=device)
    cfg = loaded.config
    shape = (int(cfg.num_channels), int(cfg.image_size), int(cfg.image_size))
    info = _info(
        path,
        loaded.sde,
        shape,
        None,
        source="score_sde",
        step=loaded.step,
        data_range=loaded.data_range,
        data_range_source=f"config data.centered = {str(loaded.config.centered).lower()}",
        sde_name=loaded.sde_name,
        weights=weights,
    )
    return freeze(loaded.model), info

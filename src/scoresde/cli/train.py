"""Train a score model on images: the bundled digits, a .npy/.npz array or a folder of images.

Every option of ``scoresde.train.TrainConfig`` is a flag (``--base-channels 64``); a
``--config`` file (TOML or JSON, keys as in TrainConfig) sets defaults that ``--set KEY=VALUE``
and flags override.
Outputs go to ``<out>/<name>/``: ``checkpoints/`` (safetensors), ``samples/`` (PNG grids),
``metrics.jsonl`` and ``config.json``.  ``--resume`` continues a run exactly.  Under
``torchrun --nproc_per_node=N -m scoresde train ...`` it trains with DistributedDataParallel
(gloo on CPU, nccl on GPU); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

HELP = "train a score model on images (digits, .npy/.npz arrays, image folders); torchrun for DDP"

_HELPS = {
    "data": "'digits' (bundled), a .npy/.npz file (N, H, W[, C]) or a folder of images",
    "test_fraction": "fraction of the data held out for evaluation",
    "image_size": "resize folder images to this size",
    "hflip": "random horizontal flips",
    "net": "unet (images) or mlp (flattened images / vectors)",
    "base_channels": "UNet channels of the first level",
    "channel_mults": "UNet channel multiplier per resolution level",
    "num_res_blocks": "UNet residual blocks per level",
    "attn_resolutions": "resolutions with self-attention",
    "time_embedding": "fourier or sinusoidal",
    "hidden": "MLP width",
    "depth": "MLP depth",
    "conditional": "class-conditional model (needs labels)",
    "label_dropout": "fraction of labels replaced by the null token (classifier-free guidance)",
    "sde": "forward SDE: vp, ve, subvp, edm, straight",
    "sde_options": "SDE constructor option KEY=VALUE (repeatable), e.g. beta_max=20",
    "prediction": "what the network predicts: eps, score, x0, v, velocity",
    "time_input": "t or log_sigma",
    "sigma_data": "data standard deviation for input scaling (default: measured)",
    "loss": "dsm, smld (NCSN), ddpm or flow_matching",
    "weighting": "DSM weighting: sigma2 or likelihood",
    "importance": "importance-sample t for likelihood weighting (Song et al. 2021c)",
    "num_scales": "noise levels (smld) / steps (ddpm)",
    "steps": "total optimiser steps",
    "batch_size": "global batch size",
    "warmup": "linear learning-rate warm-up steps",
    "schedule": "learning-rate schedule after warm-up: constant or cosine",
    "grad_clip": "gradient-norm clip ('none' to disable)",
    "bf16": "bfloat16 autocast",
    "device": "auto, cpu or cuda",
    "out": "parent folder of the run folder",
    "name": "run name (the run folder is <out>/<name>)",
    "num_samples": "samples in each evaluation grid",
    "sample_method": "sampler for evaluation grids (a key of scoresde.SAMPLERS)",
    "sample_steps": "sampler steps for evaluation grids",
    "eval_bpd": "held-out bits/dim at each evaluation (needs scoresde.log_likelihood)",
    "progress": "progress bar",
}


def _none_or(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _field_kind(hint: Any) -> tuple[str, type]:
    """(``scalar`` | ``optional`` | ``tuple`` | ``dict`` | ``bool``, base type) of a field's annotation."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return "bool", bool
    if origin is tuple:
        return "tuple", typing.get_args(hint)[0]
    if origin is dict:
        return "dict", float
    if origin in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
        return "optional", base
    return "scalar", hint


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scoresde.train.trainer import TrainConfig

    p.add_argument("--config", help="TOML or JSON file of TrainConfig options (flags override it)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option (repeatable; tuples comma-separated), e.g. --set steps=500",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from a checkpoint file or run folder (default: <out>/<name>/checkpoints/last)",
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind, base = _field_kind(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{_HELPS.get(f.name, f.name.replace('_', ' '))} (default: {default})"
        common = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind == "tuple":
            p.add_argument(flag, nargs="*", type=base, metavar=base.__name__.upper(), **common)
        elif kind == "dict":
            p.add_argument("--sde-option", action="append", metavar="KEY=VALUE", **common)
        elif kind == "optional":
            p.add_argument(flag, type=_none_or(base), **common)
        else:
            p.add_argument(flag, type=base, **common)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: invalid TOML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a table of options")
    # Like every subcommand's --config: top-level keys, then a [train] table (one file can hold
    # the settings of several commands; other commands' tables are ignored).
    table = data.get("train") if isinstance(data.get("train"), dict) else {}
    data = {k: v for k, v in data.items() if not isinstance(v, dict) or k == "sde_options"}
    data.update(table)
    data = {k.replace("-", "_"): v for k, v in data.items()}
    return data


def _parse_sde_options(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--sde-option expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--sde-option {key}: {value!r} is not a number") from None
    return out


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as typed TrainConfig values (errors name the key and the fix)."""
    import difflib

    from scoresde.cli.config import ConfigError
    from scoresde.train.trainer import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r} in --set{hint}; valid settings: {', '.join(hints)}")
        kind, base = _field_kind(hints[key])
        raw = raw.strip()
        try:
            if kind == "bool":
                if raw.lower() not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                    raise ValueError
                value: Any = raw.lower() in ("true", "yes", "on", "1")
            elif kind == "tuple":
                value = tuple(base(v) for v in raw.split(",") if v.strip())
            elif kind == "dict":
                value = _parse_sde_options([v for v in raw.split(",") if v.strip()])
            elif kind == "optional":
                value = _none_or(base)(raw)
            else:
                value = base(raw)
        except ValueError:
            raise ConfigError(
                f"{key} (from --set): cannot read {raw!r} as {kind} of {base.__name__}"
            ) from None
        out[key] = value
    return out


def resolve_config(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """Merge checkpoint (when resuming) < config file < flags into a TrainConfig; return it and the
    checkpoint to resume from."""
    from scoresde.io.checkpoint import read_checkpoint_metadata
    from scoresde.train.trainer import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    if "sde_options" in flags:
        flags["sde_options"] = _parse_sde_options(flags["sde_options"])
    from_file = load_config_file(args.config) if args.config else {}
    unknown = sorted(set(from_file) - names)
    if unknown:
        raise ValueError(f"{args.config}: unknown option(s) {unknown}")
    merged = {**from_file, **_parse_overrides(getattr(args, "overrides", None) or []), **flags}
    resume_path = None
    if args.resume is not None:
        if args.resume == "auto":
            resume_path = Path(merged.get("out", "runs")) / merged.get("name", "run") / "checkpoints"
            resume_path = resume_path / "last.safetensors"
        else:
            resume_path = Path(args.resume)
            if resume_path.is_dir():
                resume_path = resume_path / "checkpoints" / "last.safetensors"
        saved = read_checkpoint_metadata(resume_path).get("train", {})
        merged = {**{k: v for k, v in saved.items() if k in names}, **merged}
    return TrainConfig.from_dict(merged), resume_path


def run(args: argparse.Namespace) -> int:
    from scoresde.train.distributed import cleanup_distributed
    from scoresde.train.trainer import Trainer

    config, resume_path = resolve_config(args)
    try:
        trainer = Trainer(config)
        main = trainer.dist.is_main
        if resume_path is not None:
            step = trainer.resume(resume_path)
            if main:
                print(f"resumed {resume_path} at step {step}")
        if main:
            n_params = sum(p.numel() for p in trainer.model.parameters())
            world = trainer.dist.world_size
            print(
                f"training {config.net} ({n_params:,} parameters) on {trainer.data.name} "
                f"{trainer.data.shape} with the {trainer.sde!r} and the {config.loss} loss: "
                f"{config.steps} steps, batch {config.batch_size} on {world} process(es), "
                f"device {trainer.device}",
                flush=True,
            )
        result = trainer.fit()
        if main:
            ev = ", ".join(f"{k} {v:.4g}" for k, v in result.eval.items())
            print(
                f"step {result.step}: {result.images_per_second:.1f} images/s over {result.seconds:.1f}s "
                f"of training{'; ' + ev if ev else ''}"
            )
            print(f"checkpoint {result.checkpoint}")
            print(f"outputs in {result.run_dir.resolve()}")
    finally:
        cleanup_distributed()
    sys.stdout.flush()
    return 0

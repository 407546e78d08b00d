"""Validation of a :class:`~scoresde.train.TrainConfig`: strict types, then one rule per field.

Types come from the dataclass annotations, so every field is covered and a new field is
checked without a line here: ``bool`` fields take only ``True``/``False`` (a TOML string
``"false"`` is refused, not truthy), ``int`` fields integers (integral floats such as
``1e3`` are accepted as ints), ``float`` fields real numbers, tuples lists of their element
type.  The range rules follow; each names the field and the bad value.  Rules that need the
data (attention resolutions that exist in the UNet, grids that can be written as images, data
that are not degenerate) are :func:`check_with_data`, which the trainer calls before the first step.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from scoresde._core.checks import MAX_SEED

__all__ = ["check_field_types", "check_ranges", "check_with_data"]


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, args[0])
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            value = int(value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list, got {value!r}")
        (elem, *_) = typing.get_args(hint)
        return tuple(_coerce(f"{name}[{i}]", v, elem) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a table of KEY = VALUE, got {value!r}")
        key_t, val_t = typing.get_args(hint)
        return {_coerce(f"{name} key", k, key_t): _coerce(f"{name}.{k}", v, val_t) for k, v in value.items()}
    return value


def check_field_types(config: Any) -> None:
    """Check (and normalise: lists to tuples, ints to floats) every field of a dataclass."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        setattr(config, f.name, _coerce(f.name, getattr(config, f.name), hints[f.name]))


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(x: float) -> bool:
    return math.isfinite(x)


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_ranges(c: Any) -> None:
    """One rule per field of a :class:`~scoresde.train.TrainConfig` (after the type checks)."""
    from scoresde.sampling.registry import SAMPLERS

    _need(0.0 <= c.test_fraction < 1.0, f"test_fraction must lie in [0, 1), got {c.test_fraction}")
    _need(c.image_size is None or c.image_size >= 1, f"image_size must be >= 1 (or None), got {c.image_size}")
    for key in ("base_channels", "num_res_blocks", "hidden", "depth"):
        _need(getattr(c, key) >= 1, f"{key} must be >= 1, got {getattr(c, key)}")
    if c.channel_mults is not None:
        _need(len(c.channel_mults) >= 1, "channel_mults must hold at least one multiplier")
        _need(all(m >= 1 for m in c.channel_mults), f"channel_mults must be >= 1, got {c.channel_mults}")
    _need(
        c.attn_resolutions is None or all(r >= 1 for r in c.attn_resolutions),
        f"attn_resolutions must be >= 1, got {c.attn_resolutions}",
    )
    _need(0.0 <= c.dropout < 1.0, f"dropout must lie in [0, 1), got {c.dropout}")
    _need(
        c.label_dropout == 0 or c.conditional,
        f"label_dropout {c.label_dropout} needs conditional = true (an unconditional model has no labels)",
    )
    for key, value in c.sde_options.items():
        _need(_finite(value), f"sde_options.{key} must be finite, got {value}")
    _need(
        c.sigma_data is None or (_finite(c.sigma_data) and c.sigma_data > 0),
        f"sigma_data must be a finite number > 0 (or None: measured), got {c.sigma_data}",
    )
    _need(c.num_scales is None or c.num_scales >= 1, f"num_scales must be >= 1 (or None), got {c.num_scales}")
    _need(_finite(c.lr) and c.lr > 0, f"lr must be a finite number > 0, got {c.lr}")
    _need(
        _finite(c.final_lr) and 0.0 <= c.final_lr <= 1.0,
        f"final_lr is the last learning rate as a fraction of lr, in [0, 1]; got {c.final_lr}",
    )
    _need(
        _finite(c.weight_decay) and c.weight_decay >= 0,
        f"weight_decay must be a finite number >= 0, got {c.weight_decay}",
    )
    _need(
        c.grad_clip is None or (_finite(c.grad_clip) and c.grad_clip > 0),
        f"grad_clip must be a finite number > 0 (or None to disable clipping), got {c.grad_clip}",
    )
    _need(0 <= c.seed <= MAX_SEED, f"seed must lie in [0, 2**63 - 1], got {c.seed}")
    _need(
        bool(_DEVICE.fullmatch(c.device)),
        f"device must be auto, cpu, mps, cuda or cuda:N, got {c.device!r}",
    )
    _need(
        c.name not in ("", ".", "..") and "/" not in c.name and "\\" not in c.name,
        f"name must be a plain folder name (no '/', not '.' or '..'), got {c.name!r}",
    )
    _need(c.num_samples >= 0, f"num_samples must be >= 0, got {c.num_samples}")
    _need(
        c.sample_method in SAMPLERS and not SAMPLERS[c.sample_method].required,
        f"sample_method {c.sample_method!r} is not a sampler that needs no further options; choose one of "
        f"{sorted(k for k, v in SAMPLERS.items() if not v.required)}",
    )
    _need(c.bpd_samples >= 1, f"bpd_samples must be >= 1, got {c.bpd_samples}")
    _need(c.max_nonfinite_steps >= 0, f"max_nonfinite_steps must be >= 0, got {c.max_nonfinite_steps}")


def check_with_data(c: Any, data: Any, world_size: int = 1) -> None:
    """The rules of a :class:`~scoresde.train.TrainConfig` that need its data set, checked before
    the first step (errors name the option, or the problem of the data)."""
    from scoresde.nets.build import default_attn_resolutions, default_channel_mults

    if c.batch_size % world_size:
        raise ValueError(
            f"batch_size {c.batch_size} (the global batch) must be divisible by the "
            f"number of processes {world_size}"
        )
    n_train = data.train.shape[0]
    if n_train < c.batch_size:
        raise ValueError(f"batch_size {c.batch_size} exceeds the {n_train} training images")
    if c.conditional and data.num_classes is None:
        raise ValueError(f"conditional training needs labels, but {data.name or 'the data'} has none")
    std = float(data.train.double().std()) if n_train > 1 else 0.0
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(
            f"the training data {data.name or ''} are degenerate: their standard deviation is {std:g} "
            "(every value alike, e.g. constant images); a score model cannot learn such data and "
            "sigma_data would be 0; check the file"
        )
    if c.image_size is not None and tuple(data.shape[1:]) != (c.image_size, c.image_size):
        raise ValueError(
            f"image_size {c.image_size}: the data's images are {data.shape[1]}x{data.shape[2]} "
            "(image_size resizes data that the trainer loads itself, of any layout)"
        )
    if c.eval_bpd and data.levels is None:
        raise ValueError("eval_bpd needs discrete data (levels); this data set is continuous")
    if c.eval_bpd and data.test.shape[0] == 0:
        raise ValueError("eval_bpd needs held-out images: test_fraction is 0")
    ch, h, w = data.shape
    if c.num_samples > 0 and ch not in (1, 3):
        raise ValueError(
            f"num_samples {c.num_samples} writes sample grids as PNG, which needs 1 or 3 channels; "
            f"the data has {ch}: set num_samples = 0"
        )
    if c.net == "unet" and h == w:
        mults = default_channel_mults(c.channel_mults, h)
        levels = [h // 2**i for i in range(len(mults))]
        missing = [r for r in default_attn_resolutions(c.attn_resolutions, h, mults) if r not in levels]
        if missing:
            raise ValueError(
                f"attn_resolutions {list(c.attn_resolutions)}: the UNet has no resolution {missing} "
                f"(its resolutions are {levels}); choose among them or none"
            )

"""Size limits checked before a network is allocated (configs from checkpoints, files, flags).

A checkpoint's JSON or a config file is untrusted input: ``base_channels: 1e6`` would try to
allocate terabytes before any error.  :func:`check_net_config` checks every size entry's type
and range and estimates the parameter count, refusing with the entry named.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_PARAMETERS", "SIZE_LIMITS", "check_net_config", "estimate_parameters"]

SIZE_LIMITS: dict[str, int] = {
    "in_channels": 4096,
    "image_size": 8192,
    "base_channels": 8192,
    "num_res_blocks": 64,
    "dim": 2**24,
    "hidden": 65536,
    "depth": 1024,
    "time_dim": 65536,
    "num_classes": 2**20,
}
"""The largest value accepted for each integer entry of a network config."""

MAX_CHANNEL_MULT = 64
MAX_LEVELS = 16
MAX_PARAMETERS = 4 * 10**9
"""At most four billion parameters (16 GB of float32 weights) per network."""


def _int(config: dict, key: str, where: str, low: int = 1) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    high = SIZE_LIMITS.get(key)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{where}: {key} must lie in [{low}, {high}], got {value}")
    return value


def _int_list(config: dict, key: str, where: str, high: int) -> list[int]:
    value = config.get(key, [])
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {key} must be a list of integers, got {value!r}")
    if len(value) > MAX_LEVELS:
        raise ValueError(f"{where}: {key} has {len(value)} entries, at most {MAX_LEVELS} are supported")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high:
            raise ValueError(f"{where}: {key} entries must be integers in [1, {high}], got {value!r}")
    return list(value)


def estimate_parameters(config: dict[str, Any]) -> int:
    """A rough upper estimate of the parameter count of a ``unet`` / ``mlp`` config."""
    if config.get("name") == "mlp":
        dim, hidden, depth = (int(config.get(k) or d) for k, d in (("dim", 1), ("hidden", 256), ("depth", 3)))
        classes = int(config.get("num_classes") or 0)
        return 2 * dim * hidden + depth * hidden * hidden + 4 * hidden * hidden + classes * hidden
    base = int(config.get("base_channels") or 64)
    mults = config.get("channel_mults") or [1, 2]
    blocks = int(config.get("num_res_blocks") or 2)
    in_ch = int(config.get("in_channels") or 1)
    classes = int(config.get("num_classes") or 0)
    widest = base * max(mults)
    # Two 3x3 convolutions per residual block, on each level going down and up, plus the middle.
    convs = sum(2 * 9 * (base * m) ** 2 * (2 * blocks + 1) for m in mults) + 4 * 9 * widest**2
    return convs + 9 * in_ch * base * 2 + classes * 4 * base


def check_net_config(config: object, where: str = "network config") -> None:
    """Refuse a network config whose sizes are of the wrong type, out of range or too large.

    Raises:
        ValueError: naming the entry (``where: base_channels must lie in [1, 8192], got 1000000``).
    """
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(config).__name__}")
    for key in SIZE_LIMITS:
        _int(config, key, where, low=1)
    if "channel_mults" in config:
        _int_list(config, "channel_mults", where, MAX_CHANNEL_MULT)
    if "attn_resolutions" in config:
        _int_list(config, "attn_resolutions", where, SIZE_LIMITS["image_size"])
    n = estimate_parameters(config)
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"{where}: about {n:.3g} parameters ({math.ceil(4 * n / 2**30)} GiB of float32), more than "
            f"the {MAX_PARAMETERS:.0e} allowed; check base_channels, channel_mults, hidden, depth"
        )

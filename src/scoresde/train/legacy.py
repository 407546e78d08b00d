"""Reading what older checkpoints recorded: options added later, and the resume compatibility rule.

A checkpoint stores the :class:`~scoresde.train.config.TrainConfig` and network config of its run.
Options added after it was written take the values that reproduce what that run did
(:data:`LEGACY_VALUES`); a resumed run must match the checkpoint in every option but
:data:`~scoresde.train.config.RESUMABLE_KEYS` and in its network, else it would not continue
the same run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEGACY_VALUES", "check_resumable", "saved_net_config", "saved_train_config"]

LEGACY_VALUES: dict[str, Any] = {"final_lr": 0.1, "sample_clip": "none"}
"""The value of an option added later that reproduces what a checkpoint saved before it was
added did (cosine schedules then ended at ``lr / 10``; evaluation grids were not clipped)."""


def saved_train_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The training options a checkpoint's JSON records, with :data:`LEGACY_VALUES` for options
    it predates."""
    return {**LEGACY_VALUES, **meta.get("train", {})}


def saved_net_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The network config a checkpoint's JSON records (UNets saved before ``min_group_channels``
    existed used one channel per group)."""
    net = dict(meta.get("net", {}))
    if net.get("name") == "unet":
        net.setdefault("min_group_channels", 1)
    return net


def check_resumable(
    where: str, saved: dict[str, Any], mine: dict[str, Any], saved_net: dict, mine_net: dict, free: frozenset
) -> None:
    """Raise ``ValueError`` naming every option (outside ``free``) or network entry that differs.

    Args:
        where: the checkpoint (named in the message).
        saved, mine: the checkpoint's and this run's training options.
        saved_net, mine_net: the checkpoint's and this run's network configs.
        free: the options that may differ.
    """
    diff = sorted(k for k in mine if k not in free and saved.get(k) != mine[k])
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in diff)
        raise ValueError(f"cannot resume {where}: options differ from the checkpoint's ({detail})")
    net_diff = sorted(k for k in mine_net if saved_net.get(k) != mine_net[k])
    if net_diff:
        detail = ", ".join(f"{k}: {saved_net.get(k)!r} -> {mine_net[k]!r}" for k in net_diff)
        raise ValueError(f"cannot resume {where}: its network differs from this run's ({detail})")

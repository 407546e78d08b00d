"""The network config a training run builds, from the data's shape and the architecture options.

The trainer knows data and options; what arguments a UNet or an MLP takes is known here, beside
the networks (:data:`scoresde.nets.NETS`, :func:`scoresde.nets.build_net`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["NET_KINDS", "default_attn_resolutions", "default_channel_mults", "net_config_for"]

NET_KINDS = ("unet", "mlp", "diffusers-unet")


def default_channel_mults(channel_mults: tuple[int, ...] | None, image_size: int) -> tuple[int, ...]:
    """``channel_mults`` as given, or by default (``None``) three levels ``(1, 2, 2)`` for images of
    side ``>= 16`` divisible by 4 (28 px: 28, 14, 7), else ``(1, 2)`` for even sides, else ``(1,)``.

    Three levels put the attention (at the lowest level) on a 7x7 or 8x8 grid for 28-32 px
    images, where two levels would put it on 14x14 or 16x16 at several times the cost per step.
    """
    if channel_mults is not None:
        return tuple(int(m) for m in channel_mults)
    if image_size >= 16 and image_size % 4 == 0:
        return (1, 2, 2)
    return (1, 2) if image_size % 2 == 0 else (1,)


def default_attn_resolutions(
    attn_resolutions: tuple[int, ...] | None, image_size: int, channel_mults: tuple[int, ...]
) -> tuple[int, ...]:
    """``attn_resolutions`` as given, or by default (``None``) the UNet's lowest resolution."""
    if attn_resolutions is not None:
        return tuple(attn_resolutions)
    return (image_size // 2 ** (len(channel_mults) - 1),)


def net_config_for(
    kind: str,
    data_shape: tuple[int, int, int],
    num_classes: int | None,
    options: Any,
) -> dict:
    """``{"name": kind, **constructor arguments}`` for images of ``data_shape = (C, H, W)``.

    Args:
        kind: ``unet`` (the images as they are), ``mlp`` (the images flattened) or
            ``diffusers-unet`` (a diffusers ``UNet2DModel`` with the UNet options:
            :func:`scoresde.nets.diffusers_unet.diffusers_unet_config`).
        data_shape: one image's shape.
        num_classes: classes of a class-conditional network, else ``None``.
        options: anything with the architecture attributes (``base_channels``,
            ``channel_mults`` (``None``: :func:`default_channel_mults`), ``num_res_blocks``,
            ``attn_resolutions``, ``dropout``, ``time_embedding`` for the UNet; ``hidden``,
            ``depth`` for the MLP), e.g. a :class:`~scoresde.train.config.TrainConfig`.

    Raises:
        ValueError: an unknown kind, or non-square images for the UNet.
    """
    ch, h, w = data_shape
    if kind == "mlp":
        return {
            "name": "mlp",
            "dim": ch * h * w,
            "hidden": options.hidden,
            "depth": options.depth,
            "num_classes": num_classes,
        }
    if kind not in ("unet", "diffusers-unet"):
        raise ValueError(f"unknown net {kind!r}; choose one of {list(NET_KINDS)}")
    if h != w:
        raise ValueError(f"the UNet needs square images, got {h}x{w}; pass image_size to resize")
    mults = default_channel_mults(options.channel_mults, h)
    attn = default_attn_resolutions(options.attn_resolutions, h, mults)
    if kind == "diffusers-unet":
        from scoresde.nets.diffusers_unet import diffusers_unet_config

        if getattr(options, "scale_shift", False):
            raise ValueError(
                "scale_shift is an option of scoresde's UNet (--net unet), not of --net diffusers-unet"
            )

        return diffusers_unet_config(
            ch, h, options.base_channels, mults, options.num_res_blocks, attn, options.dropout, num_classes
        )
    return {
        "name": "unet",
        "in_channels": ch,
        "image_size": h,
        "base_channels": options.base_channels,
        "channel_mults": list(mults),
        "num_res_blocks": options.num_res_blocks,
        "attn_resolutions": list(attn),
        "dropout": options.dropout,
        "num_classes": num_classes,
        "time_embedding": options.time_embedding,
        "scale_shift": bool(getattr(options, "scale_shift", False)),
    }

"""A diffusers ``UNet2DModel`` as a scoresde network ``net(x, t[, y])``, trainable and saved as JSON.

diffusers' ``UNet2DModel`` (the DDPM UNet of Ho et al. 2020, App. B, as diffusers builds it) takes
``(sample, timestep, class_labels)`` and returns an object with ``.sample``.  :class:`DiffusersUNet`
makes it an ordinary scoresde network:

- **time input, declared**: the UNet's sinusoidal embedding is made for integer timesteps
  ``0 .. 999``; the net passes ``time_scale * t`` (default ``999 t``, the DDPM convention that
  scoresde's ``scaled_t`` also uses) for the time value ``t`` the :class:`~scoresde.ScoreModel`
  gives it.  ``time_scale`` is part of the config, so an exported model
  (:mod:`scoresde.interop.export_diffusers`) knows which timestep means which time;
- **labels**: ``num_classes`` classes plus a "no label" token ``num_classes`` (as scoresde's own
  networks, for classifier-free guidance): the UNet gets ``num_class_embeds = num_classes + 1``;
- **config**: ``{"in_channels", "image_size", "num_classes", "time_scale", "unet": {...}}``, the
  last entry the ``UNet2DModel`` constructor arguments, JSON-serialisable, so checkpoints save it
  as safetensors + JSON like every other network (:mod:`scoresde.io.checkpoint`).

diffusers is an optional dependency (``pip install scoresde[diffusers]``), imported when a
:class:`DiffusersUNet` is built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DiffusersUNet", "diffusers_unet_config", "norm_groups"]

_RESERVED = ("sample_size", "in_channels", "out_channels", "num_class_embeds")
"""``UNet2DModel`` arguments that :class:`DiffusersUNet` sets from its own."""

_MAX_WIDTH = 8192
_MAX_LEVELS = 16
_MAX_LAYERS = 64
_MAX_PARAMETERS = 4 * 10**9


def _import_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the diffusers-unet network needs the diffusers package: pip install scoresde[diffusers]"
        ) from err
    return diffusers


def _unet_config(unet: nn.Module) -> Any:
    """The ``config`` of a diffusers ``UNet2DModel``: a ``FrozenDict`` whose entries are also
    attributes.  Typed ``Any`` because diffusers is untyped (and imported lazily); ``nn.Module``'s
    ``__getattr__`` would otherwise type it ``Tensor | Module``."""
    return unet.config


def norm_groups(channels: list[int], min_group_channels: int = 4, max_groups: int = 32) -> int:
    """The most GroupNorm groups (``<= max_groups``) of ``>= min_group_channels`` channels that
    divide every width in ``channels`` (``UNet2DModel`` has one ``norm_num_groups`` for all)."""
    g = math.gcd(*channels)
    groups = max(1, min(max_groups, g // max(1, min_group_channels)))
    while g % groups:
        groups -= 1
    return groups


def diffusers_unet_config(
    in_channels: int,
    image_size: int,
    base_channels: int = 32,
    channel_mults: tuple[int, ...] = (1, 2),
    num_res_blocks: int = 1,
    attn_resolutions: tuple[int, ...] = (),
    dropout: float = 0.0,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """A :class:`DiffusersUNet` config from scoresde's UNet options (the trainer's ``--net
    diffusers-unet``): one level per ``channel_mults`` entry with ``base_channels * mult``
    channels and ``num_res_blocks`` ResNet blocks, attention blocks (``AttnDownBlock2D`` /
    ``AttnUpBlock2D``) at the resolutions in ``attn_resolutions``, GroupNorm groups by
    :func:`norm_groups`.

    Raises:
        ValueError: a resolution in ``attn_resolutions`` that the UNet does not have.
    """
    mults = [int(m) for m in channel_mults]
    levels = [image_size // 2**i for i in range(len(mults))]
    missing = [r for r in attn_resolutions if r not in levels]
    if missing:
        raise ValueError(
            f"attn_resolutions {list(attn_resolutions)}: the UNet has no resolution {missing} "
            f"(its resolutions are {levels}); choose among them or none"
        )
    widths = [base_channels * m for m in mults]
    attn = [r in attn_resolutions for r in levels]
    return {
        "name": "diffusers-unet",
        "in_channels": in_channels,
        "image_size": image_size,
        "num_classes": num_classes,
        "time_scale": 999.0,
        "unet": {
            "block_out_channels": widths,
            "layers_per_block": num_res_blocks,
            "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
            "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
            "norm_num_groups": norm_groups(widths),
            "dropout": dropout,
        },
    }


def _check_unet_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse sizes that would allocate absurd networks (configs from checkpoints are untrusted)."""
    widths = kwargs.get("block_out_channels", [])
    if not isinstance(widths, (list, tuple)) or not 1 <= len(widths) <= _MAX_LEVELS:
        raise ValueError(f"diffusers-unet: block_out_channels must be a list of 1 to {_MAX_LEVELS} widths")
    if any(isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= _MAX_WIDTH for c in widths):
        raise ValueError(f"diffusers-unet: block_out_channels entries must be integers in [1, {_MAX_WIDTH}]")
    layers = kwargs.get("layers_per_block", 2)
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= _MAX_LAYERS:
        raise ValueError(f"diffusers-unet: layers_per_block must be an integer in [1, {_MAX_LAYERS}]")
    # Two 3x3 convolutions per ResNet block, down (layers) and up (layers + 1), plus the middle.
    n = sum(2 * 9 * c * c * (2 * layers + 1) for c in widths) + 4 * 9 * max(widths) ** 2
    if n > _MAX_PARAMETERS:
        raise ValueError(
            f"diffusers-unet: about {n:.3g} parameters, more than the {_MAX_PARAMETERS:.0e} allowed"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class DiffusersUNet(nn.Module):
    """``net(x, t[, y])`` around a diffusers ``UNet2DModel`` (see the module docstring).

    Args:
        in_channels: image channels (input and output).
        image_size: the square images' side (the UNet's ``sample_size``).
        num_classes: classes of a class-conditional network (label ``num_classes`` is "no
            label"), else ``None``.
        time_scale: the UNet sees the timestep ``time_scale * t``.
        unet: the other ``UNet2DModel`` arguments (``block_out_channels``, ``layers_per_block``,
            ``down_block_types``, ...), or a built ``UNet2DModel`` to wrap as it is (its
            ``sample_size``, channels and ``num_class_embeds`` must agree with the arguments).

    Raises:
        ValueError: sizes out of range, or a ``unet`` that disagrees with the other arguments.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int | None = None,
        time_scale: float = 999.0,
        unet: dict[str, Any] | nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.time_scale = float(time_scale)
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"time_scale must be a finite number > 0, got {time_scale}")
        embeds = None if self.num_classes is None else self.num_classes + 1
        if isinstance(unet, nn.Module):
            cfg = _unet_config(unet)
            got = (cfg.sample_size, cfg.in_channels, cfg.out_channels, cfg.num_class_embeds)
            want = (self.image_size, self.in_channels, self.in_channels, embeds)
            if tuple(got) != want:
                raise ValueError(
                    f"the UNet2DModel has (sample_size, in_channels, out_channels, num_class_embeds) = "
                    f"{tuple(got)}, the arguments say {want}"
                )
            self.unet = unet
            return
        kwargs = dict(unet or {})
        clash = sorted(k for k in _RESERVED if k in kwargs)
        if clash:
            raise ValueError(f"diffusers-unet: set {clash} through in_channels / image_size / num_classes")
        _check_unet_kwargs(kwargs)
        diffusers = _import_diffusers()
        try:
            self.unet = diffusers.UNet2DModel(
                sample_size=self.image_size,
                in_channels=self.in_channels,
                out_channels=self.in_channels,
                num_class_embeds=embeds,
                **kwargs,
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad diffusers-unet config {kwargs}: {err}") from None

    @classmethod
    def from_unet(
        cls, unet: nn.Module, time_scale: float = 999.0, num_classes: int | None = None
    ) -> DiffusersUNet:
        """Wrap a built ``UNet2DModel`` (square ``sample_size``, ``in_channels == out_channels``).

        ``num_classes`` defaults to ``num_class_embeds - 1`` (the last embedding is then the "no
        label" token) for a class-conditional UNet.
        """
        cfg = _unet_config(unet)
        size = cfg.sample_size
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise ValueError(f"DiffusersUNet needs square images, the UNet's sample_size is {size}")
            size = size[0]
        if num_classes is None and cfg.num_class_embeds is not None:
            num_classes = int(cfg.num_class_embeds) - 1
        return cls(cfg.in_channels, int(size), num_classes, time_scale, unet=unet)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (``unet`` as ``UNet2DModel`` arguments)."""
        unet = {
            k: _jsonable(v)
            for k, v in dict(_unet_config(self.unet)).items()
            if not k.startswith("_") and k not in _RESERVED
        }
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "time_scale": self.time_scale,
            "unet": unet,
        }

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The UNet's output at ``x: (B, C, H, W)``, times ``t: (B,)`` (timestep ``time_scale * t``)
        and labels ``y: (B,)`` (``None``: the "no label" token of a conditional network)."""
        labels = None
        if self.num_classes is not None:
            if y is None:
                labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            else:
                if y.is_floating_point() or bool(((y < 0) | (y > self.num_classes)).any()):
                    raise ValueError(
                        f"labels must be integers in [0, {self.num_classes}] ({self.num_classes} = no label)"
                    )
                labels = y.long()
        elif y is not None:
            raise ValueError("this network is unconditional (num_classes=None) but labels y were given")
        return self.unet(x, t * self.time_scale, class_labels=labels, return_dict=False)[0]

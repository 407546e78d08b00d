"""A compact DDPM++-style U-Net for images, in pure PyTorch.

The architecture follows Ho et al. 2020 (DDPM, App. B) as refined in Song et al. 2021
(NCSN++ / DDPM++, App. H): residual blocks of GroupNorm, SiLU and 3x3 convolutions with
the time embedding added between the two convolutions (BigGAN-style), residual
connections rescaled by ``1/sqrt(2)``, zero-initialised output convolutions, and
self-attention at the resolutions listed in ``attn_resolutions``.  No custom CUDA ops:
attention uses :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.nets.embeddings import GaussianFourierProjection, SinusoidalEmbedding
from scoresde.nets.upsample import upsample_conv

__all__ = ["TIME_EMBEDDINGS", "UNet"]

TIME_EMBEDDINGS = ("fourier", "sinusoidal")
_SKIP_SCALE = 1.0 / math.sqrt(2.0)


def _groups(channels: int, min_group_channels: int = 4, max_groups: int = 32) -> int:
    """The most GroupNorm groups (``<= max_groups``, dividing ``channels``) of ``>= min_group_channels`` each.

    At least ``min_group_channels`` channels per group matters: with one channel per group the
    norm is an instance norm, which subtracts every channel's spatial mean and so removes the
    per-channel time / class embedding added just before it (the blocks below add ``temb``
    before ``norm2``); the network could then not tell noise levels or labels apart.  The paper's
    networks use ``min(channels // 4, 32)`` groups (score_sde_pytorch ``layerspp``).
    """
    g = max(1, min(max_groups, channels // max(1, min_group_channels)))
    while channels % g:
        g -= 1
    return g


def _norm(channels: int, min_group_channels: int = 4) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels, min_group_channels), channels, eps=1e-6)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer's weights and bias (DDPM++: residual branches start as identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``GN -> SiLU -> conv -> (+ temb) -> GN -> SiLU -> dropout -> conv``, plus a skip.

    The output is ``(skip(x) + h) / sqrt(2)`` (DDPM++'s ``skip_rescale``).  With
    ``scale_shift`` the embedding modulates the second norm's output instead of being added
    before it, ``GN(h) * (1 + scale) + shift`` (adaptive group normalisation, Dhariwal & Nichol
    2021, Sec. 3 / "AdaGN"): the time and class embedding act multiplicatively on every channel.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        temb_dim: int,
        dropout: float,
        group_ch: int = 4,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = _norm(in_ch, group_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = _norm(out_ch, group_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        emb = self.temb(F.silu(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = emb.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h += emb  # in place: a convolution's backward needs no output
            h = self.norm2(h)
        h = self.conv2(self.dropout(F.silu(h)))
        return (self.skip(x) + h).mul_(_SKIP_SCALE)  # an addition's backward needs no output either


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H * W`` positions, residual and rescaled."""

    def __init__(self, channels: int, group_ch: int = 4) -> None:
        super().__init__()
        self.norm = _norm(channels, group_ch)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        out = self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
        return (x + out).mul_(_SKIP_SCALE)


class Downsample(nn.Module):
    """Strided 3x3 convolution halving the resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling followed by a 3x3 convolution (computed by :func:`upsample_conv`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return upsample_conv(x, self.conv.weight, self.conv.bias)


class UNet(nn.Module):
    """``net(x, t[, y])`` for images ``x: (B, C, H, W)`` with ``H = W = image_size``.

    Args:
        in_channels: image channels ``C`` (output has the same shape as the input).
        image_size: side length, any multiple of ``2^(len(channel_mults) - 1)`` (no upper limit:
            attention is memory-efficient, and runs only at ``attn_resolutions``).
        base_channels: channels of the first level.
        channel_mults: channel multiplier of each resolution level; each level after the
            first halves the resolution.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: resolutions at which self-attention follows each residual block
            (the middle block always has one).
        dropout: dropout rate inside residual blocks.
        num_classes: if set, ``y: (B,)`` integer labels in ``[0, num_classes]`` are embedded
            and added to the time embedding; label ``num_classes`` is the "no label" token
            used for classifier-free guidance and is what ``y=None`` means.
        time_embedding: ``"fourier"`` (Gaussian random features, NCSN++; for ``t`` or
            ``log sigma`` inputs) or ``"sinusoidal"`` (DDPM; expects ``t`` in ``[0, 1]``,
            scaled by 1000).
        fourier_scale: frequency scale of the Fourier features.
        min_group_channels: at least this many channels per GroupNorm group (at most 32
            groups).  The default 4 is the paper networks' rule; ``1`` reproduces networks
            saved before it (one channel per group at widths up to 32, where the norm removed
            the time and class embedding; see ``_groups``), and is what checkpoints without
            this key load with.
        scale_shift: condition every residual block by adaptive group normalisation
            (``GN(h) * (1 + scale) + shift`` from the time and class embedding; Dhariwal &
            Nichol 2021) instead of adding the embedding before the norm.  Off by default, which
            is what checkpoints without this key load with.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (4,),
        dropout: float = 0.1,
        num_classes: int | None = None,
        time_embedding: str = "fourier",
        fourier_scale: float = 16.0,
        min_group_channels: int = 4,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        channel_mults = tuple(int(m) for m in channel_mults)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        if in_channels < 1 or base_channels < 1 or num_res_blocks < 1 or not channel_mults:
            raise ValueError(
                "in_channels, base_channels and num_res_blocks must be positive and channel_mults "
                f"non-empty, got {in_channels}, {base_channels}, {num_res_blocks}, {channel_mults}"
            )
        if any(m < 1 for m in channel_mults):
            raise ValueError(f"channel_mults must be positive, got {channel_mults}")
        factor = 2 ** (len(channel_mults) - 1)
        if image_size < 1 or image_size % factor:
            raise ValueError(
                f"image_size must be positive and divisible by 2^(len(channel_mults) - 1) = {factor}, "
                f"got {image_size}"
            )
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(
                f"unknown time_embedding {time_embedding!r}; choose one of {list(TIME_EMBEDDINGS)}"
            )
        if not (0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if min_group_channels < 1:
            raise ValueError(f"min_group_channels must be positive, got {min_group_channels}")
        g = int(min_group_channels)
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        self._config = {
            "in_channels": in_channels,
            "image_size": image_size,
            "base_channels": base_channels,
            "channel_mults": list(channel_mults),
            "num_res_blocks": num_res_blocks,
            "attn_resolutions": list(attn_resolutions),
            "dropout": dropout,
            "num_classes": num_classes,
            "time_embedding": time_embedding,
            "fourier_scale": fourier_scale,
            "min_group_channels": g,
            "scale_shift": bool(scale_shift),
        }
        ss = bool(scale_shift)

        # Time (and class) embedding, 4x the base width (DDPM).
        temb_dim = 4 * base_channels
        proj = (
            GaussianFourierProjection(base_channels, fourier_scale)
            if time_embedding == "fourier"
            else SinusoidalEmbedding(base_channels)
        )
        self.time_embed = nn.Sequential(
            proj, nn.Linear(base_channels, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim)
        )
        self.class_embed = nn.Embedding(num_classes + 1, temb_dim) if num_classes else None

        # Downsampling path; remember the channels of every skip connection.
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base_channels]
        ch, res = base_channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                out_ch = base_channels * mult
                self.down.append(ResBlock(ch, out_ch, temb_dim, dropout, g, ss))
                ch = out_ch
                if res in attn_resolutions:
                    self.down.append(AttnBlock(ch, g))
                skips.append(ch)
            if level != len(channel_mults) - 1:
                self.down.append(Downsample(ch))
                res //= 2
                skips.append(ch)

        # Middle.
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, temb_dim, dropout, g, ss),
                AttnBlock(ch, g),
                ResBlock(ch, ch, temb_dim, dropout, g, ss),
            ]
        )

        # Upsampling path, consuming the skips in reverse order.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                out_ch = base_channels * mult
                self.up.append(ResBlock(ch + skips.pop(), out_ch, temb_dim, dropout, g, ss))
                ch = out_ch
                if res in attn_resolutions:
                    self.up.append(AttnBlock(ch, g))
            if level != 0:
                self.up.append(Upsample(ch))
                res *= 2
        assert not skips

        self.norm_out = _norm(ch, g)
        self.conv_out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    def config(self) -> dict:
        """JSON-serialisable constructor arguments (used by checkpoints)."""
        return dict(self._config)

    def _embed(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"UNet expects t of shape ({x.shape[0]},), got {tuple(t.shape)}")
        temb = self.time_embed(t)
        if self.class_embed is not None:
            num_classes = self.num_classes
            assert num_classes is not None  # a class embedding exists only with num_classes
            if y is None:
                y = torch.full((x.shape[0],), num_classes, dtype=torch.long, device=x.device)
            if y.shape != (x.shape[0],):
                raise ValueError(f"UNet expects labels y of shape ({x.shape[0]},), got {tuple(y.shape)}")
            if y.is_floating_point() or bool(((y < 0) | (y > num_classes)).any()):
                raise ValueError(
                    f"labels must be integers in [0, {self.num_classes}] ({self.num_classes} = no label)"
                )
            temb = temb + self.class_embed(y.long())
        elif y is not None:
            raise ValueError("this UNet is unconditional (num_classes=None) but labels y were given")
        return temb

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict a tensor of ``x``'s shape ``(B, C, H, W)`` from ``x``, ``t: (B,)``, ``y: (B,)``."""
        size = self.image_size
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, size, size):
            raise ValueError(
                f"UNet expects x of shape (B, {self.in_channels}, {size}, {size}), got {tuple(x.shape)}"
            )
        temb = self._embed(x, t, y)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, ResBlock):
                h = layer(h, temb)
                hs.append(h)
            elif isinstance(layer, AttnBlock):
                h = layer(h)
                hs[-1] = h
            else:
                h = layer(h)
                hs.append(h)
        for layer in self.mid:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), temb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))

"""Building blocks of the paper's score networks: NCSN++, DDPM++ and DDPM.

Song et al. 2021, App. H ("Architecture improvements") builds NCSN++ and DDPM++ from the DDPM
U-Net (Ho et al. 2020, App. B) with BigGAN-type residual blocks (Brock et al. 2019), FIR
anti-aliased resampling (StyleGAN2), residual-connection rescaling by ``1/sqrt(2)``,
progressive-growing input/output pyramids and, for continuous-time VE models, Gaussian Fourier
features of the noise level (Tancik et al. 2020).  The attribute names (``GroupNorm_0``,
``Conv_0``, ``Dense_0``, ``NIN_0``, ...) and the order in which they are created follow the
paper's released code, so that its state dicts load unchanged.  Attention uses
:func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.nets.score_sde import resample
from scoresde.nets.upsample import upsample_conv

__all__ = [
    "NIN",
    "AttnBlock",
    "Combine",
    "Downsample",
    "FIRConv2d",
    "GaussianFourierFeatures",
    "ResnetBlockBigGAN",
    "ResnetBlockDDPM",
    "Upsample",
    "conv1x1",
    "conv3x3",
    "default_init",
    "timestep_embedding",
]

_SQRT2 = math.sqrt(2.0)
GroupsFn = Callable[[int], int]


def ncsnpp_groups(channels: int) -> int:
    """GroupNorm groups of NCSN++ / DDPM++: ``min(channels // 4, 32)``."""
    return min(channels // 4, 32)


def ddpm_groups(channels: int) -> int:
    """GroupNorm groups of DDPM: always 32."""
    return 32


def group_norm(channels: int, groups: GroupsFn) -> nn.GroupNorm:
    g = groups(channels)
    if g < 1 or channels % g:
        raise ValueError(f"GroupNorm needs channels divisible by its {g} groups, got {channels} channels")
    return nn.GroupNorm(num_groups=g, num_channels=channels, eps=1e-6)


def default_init(weight: Tensor, scale: float = 1.0) -> Tensor:
    """DDPM's initialiser in place: uniform variance scaling, ``fan_avg`` mode.

    ``Var = scale / ((fan_in + fan_out) / 2)``; a scale of 0 becomes 1e-10 (a near-zero layer).
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    bound = math.sqrt(3 * scale / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def _conv(in_ch: int, out_ch: int, size: int, stride: int, padding: int, bias: bool, init_scale: float):
    conv = nn.Conv2d(in_ch, out_ch, size, stride=stride, padding=padding, bias=bias)
    default_init(conv.weight, init_scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def conv3x3(
    in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0, padding: int = 1
) -> nn.Conv2d:
    """A 3x3 convolution with DDPM's initialisation."""
    return _conv(in_ch, out_ch, 3, stride, padding, bias, init_scale)


def conv1x1(in_ch: int, out_ch: int, bias: bool = True, init_scale: float = 1.0) -> nn.Conv2d:
    """A 1x1 convolution with DDPM's initialisation."""
    return _conv(in_ch, out_ch, 1, 1, 0, bias, init_scale)


def linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A linear layer with DDPM's initialisation and a zero bias."""
    layer = nn.Linear(in_dim, out_dim)
    default_init(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def timestep_embedding(timesteps: Tensor, dim: int, max_positions: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of DDPM (Ho et al. 2020), as the paper's code computes it.

    Frequencies ``exp(-log(max_positions) i / (dim/2 - 1))`` for ``i < dim/2`` (note the
    ``- 1``), then ``[sin, cos]``; an odd ``dim`` is padded with one zero.

    Args:
        timesteps: ``(B,)`` (the paper's VP models take ``999 t``).
        dim: embedding size.

    Returns:
        ``(B, dim)`` in float32.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(timesteps.shape)}")
    half = dim // 2
    scale = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=timesteps.device) * -scale)
    args = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GaussianFourierFeatures(nn.Module):
    """``[sin(2 pi W s), cos(2 pi W s)]`` of a scalar ``s`` with fixed ``W ~ N(0, scale^2)``.

    Song et al. 2021, App. H.1 feeds ``s = log sigma`` to continuous-time VE NCSN++ models.  ``W``
    is an ``nn.Parameter`` with ``requires_grad=False``, as in the paper's code (so it is in the
    state dict and in ``parameters()``, but not among the EMA's shadow parameters).

    Args:
        embedding_size: number of frequencies (the output has twice as many features).
        scale: standard deviation of the frequencies.
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, s: Tensor) -> Tensor:
        proj = s[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class NIN(nn.Module):
    """A per-pixel linear map ("network in network"): ``y[b, o, h, w] = sum_c x[b, c, h, w] W[c, o] + b[o]``.

    Stored as ``W: (C_in, C_out)`` and ``b: (C_out,)``, the paper's layout.
    """

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(default_init(torch.empty(num_units, in_dim), init_scale).T.contiguous())
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("bhwc,co->bhwo", x.permute(0, 2, 3, 1), self.W) + self.b
        return y.permute(0, 3, 1, 2)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Single-head self-attention over the pixels of ``(B, C, H, W)`` maps, softmax scale ``C^-1/2``.

    Memory-efficient: :func:`~torch.nn.functional.scaled_dot_product_attention` never has to
    hold the ``(H W)^2`` weights on backends with fused kernels.
    """
    b, c, h, w = q.shape

    def tokens(z: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 1, H W, C)
        return z.reshape(b, 1, c, h * w).transpose(-1, -2)

    out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
    return out.transpose(-1, -2).reshape(b, c, h, w)


class AttnBlock(nn.Module):
    """Self-attention residual block of DDPM (Ho et al. 2020) and NCSN++ (``AttnBlockpp``).

    ``x + NIN_3(attention(NIN_0(h), NIN_1(h), NIN_2(h)))`` with ``h = GroupNorm_0(x)``, divided by
    ``sqrt(2)`` when ``skip_rescale`` (Song et al. 2021, App. H.1).
    """

    def __init__(
        self, channels: int, groups: GroupsFn, skip_rescale: bool = False, init_scale: float = 0.0
    ) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels, groups)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        h = self.GroupNorm_0(x)
        h = self.NIN_3(attention(self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)))
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class FIRConv2d(nn.Module):
    """A ``kxk`` convolution fused with FIR up- or downsampling (StyleGAN2's ``Conv2d``).

    Parameters ``weight: (C_out, C_in, k, k)`` and ``bias: (C_out,)``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        up: bool = False,
        down: bool = False,
        resample_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d resamples up or down, not both")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"FIRConv2d needs an odd kernel size, got {kernel}")
        self.weight = nn.Parameter(default_init(torch.zeros(out_ch, in_ch, kernel, kernel)))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up, self.down = up, down
        self.resample_kernel = tuple(resample_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            x = resample.upsample_conv_2d(x, self.weight, self.resample_kernel)
        elif self.down:
            x = resample.conv_downsample_2d(x, self.weight, self.resample_kernel)
        else:
            x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        return x + self.bias.reshape(1, -1, 1, 1)


class Upsample(nn.Module):
    """Double the resolution: nearest neighbour (+ ``Conv_0``) or FIR (+ fused ``Conv2d_0``)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, 3, up=True, resample_kernel=fir_kernel)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fir:
            if self.with_conv:  # conv3x3(nearest2x(x)), computed at x's resolution
                return upsample_conv(x, self.Conv_0.weight, self.Conv_0.bias)
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.with_conv:
            return self.Conv2d_0(x)
        return resample.upsample_2d(x, self.fir_kernel)


class Downsample(nn.Module):
    """Halve the resolution: pad right/bottom then stride-2 ``Conv_0`` (or 2x2 average), or FIR."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, 3, down=True, resample_kernel=fir_kernel)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fir:
            # DDPM emulates TensorFlow's 'SAME' padding of a stride-2 convolution.
            x = F.pad(x, (0, 1, 0, 1))
            return self.Conv_0(x) if self.with_conv else F.avg_pool2d(x, 2, stride=2)
        if self.with_conv:
            return self.Conv2d_0(x)
        return resample.downsample_2d(x, self.fir_kernel)


class Combine(nn.Module):
    """Merge an input-pyramid image into the features: ``Conv_0`` (1x1), then sum or concatenate."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat") -> None:
        super().__init__()
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


def _add_temb(h: Tensor, dense: nn.Linear, act: nn.Module, temb: Tensor | None) -> Tensor:
    """Add the time embedding as a per-channel bias (DDPM)."""
    if temb is None:
        return h
    return h + dense(act(temb)).reshape(h.shape[0], -1, 1, 1)


class ResnetBlockDDPM(nn.Module):
    """DDPM's residual block (``ResnetBlockDDPM`` / ``ResnetBlockDDPMpp`` of the paper's code).

    ``GN -> act -> Conv_0 -> (+ Dense_0(act(temb))) -> GN -> act -> dropout -> Conv_1``, plus the
    input (through ``NIN_0``, or a 3x3 ``Conv_2`` with ``conv_shortcut``, when the width changes),
    divided by ``sqrt(2)`` when ``skip_rescale``.
    """

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        groups: GroupsFn,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        conv_shortcut: bool = False,
        dropout: float = 0.1,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch, groups)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = linear(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch, groups)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.act, self.skip_rescale = act, skip_rescale
        self.in_ch, self.out_ch, self.conv_shortcut = in_ch, out_ch, conv_shortcut

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if hasattr(self, "Dense_0"):
            h = _add_temb(h, self.Dense_0, self.act, temb)
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.in_ch != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-type residual block of NCSN++ (Brock et al. 2019; Song et al. 2021, App. H.1).

    Like :class:`ResnetBlockDDPM`, but it can resample (``up`` / ``down``, FIR or naive) both
    branches after the first normalisation, and the skip is a 1x1 ``Conv_2`` whenever the width
    or the resolution changes.
    """

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        groups: GroupsFn,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.1,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch, groups)
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = linear(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch, groups)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        self.project = in_ch != out_ch or up or down
        if self.project:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        self.act, self.skip_rescale = act, skip_rescale

    def _resample(self, z: Tensor) -> Tensor:
        if self.up:
            return resample.upsample_2d(z, self.fir_kernel) if self.fir else resample.naive_upsample_2d(z)
        if self.down:
            return resample.downsample_2d(z, self.fir_kernel) if self.fir else resample.naive_downsample_2d(z)
        return z

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.act(self.GroupNorm_0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.Conv_0(h)
        if hasattr(self, "Dense_0"):
            h = _add_temb(h, self.Dense_0, self.act, temb)
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if self.project:
            x = self.Conv_2(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h

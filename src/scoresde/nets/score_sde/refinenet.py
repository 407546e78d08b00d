"""RefineNet blocks of NCSN / NCSNv2 (Song & Ermon 2019, 2020), named as in score_sde_pytorch.

The score networks of "Generative Modeling by Estimating Gradients of the Data Distribution"
(NCSN, Song & Ermon 2019, App. B.1) and "Improved Techniques for Training Score-Based
Generative Models" (NCSNv2, Song & Ermon 2020, App. B) are RefineNets (Lin et al. 2017) with
dilated convolutions and instance normalisation with a per-channel mean term
("InstanceNorm++").  NCSN conditions every normalisation on the noise-level index ("CondInstanceNorm++",
an embedding of ``(gamma, alpha, beta)`` per level); NCSNv2 normalises unconditionally and divides
the output by ``sigma`` instead.

Attribute names (and so state-dict keys) follow score_sde_pytorch's ``models/layers.py`` and
``models/normalization.py``: ``ResidualBlock`` (``conv1``, ``normalize1``, ``normalize2``,
``conv2``, ``shortcut``), ``RCUBlock`` (``1_1_conv``, ...; conditional: ``1_1_norm``),
``CRPBlock`` / ``MSFBlock`` (``convs``, conditional: ``norms``) and ``RefineBlock``
(``adapt_convs``, ``msf``, ``crp``, ``output_convs``).  The forward passes keep the paper's
operation order.  Dilated 3x3 convolutions are padded by their dilation ("same" padding, as in
the paper's JAX code and the NCSNv2 code it was ported from; see ``docs/score_sde_checkpoints.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ConvMeanPool",
    "CRPBlock",
    "InstanceNormPlus",
    "MSFBlock",
    "RCUBlock",
    "RefineBlock",
    "ResidualBlock",
]

_EPS = 1e-5  # the paper's InstanceNorm++ epsilon (also nn.InstanceNorm2d's default)


class InstanceNormPlus(nn.Module):
    """InstanceNorm++ (NCSN, Song & Ermon 2019, App. B.1, Eq. 14): instance norm plus channel means.

    ``z = gamma * (IN(x) + alpha * (mu - m) / s) + beta`` where ``mu`` are the per-channel
    spatial means, ``m`` / ``s^2`` their mean and unbiased variance over channels.  With
    ``num_classes`` the ``(gamma, alpha, beta)`` come from an embedding of the noise-level
    index (``embed.weight``: ``(num_classes, 3 C)``, CondInstanceNorm++); otherwise they are the
    parameters ``gamma``, ``alpha``, ``beta``.

    Args:
        channels: C.
        num_classes: the number of noise levels for the conditional version, else ``None``.
    """

    def __init__(self, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.conditional = num_classes is not None
        if num_classes is not None:
            self.embed = nn.Embedding(num_classes, 3 * channels)
            nn.init.normal_(self.embed.weight[:, : 2 * channels].detach(), 1.0, 0.02)
            nn.init.zeros_(self.embed.weight[:, 2 * channels :].detach())
        else:
            self.alpha = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
            self.gamma = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
            self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Normalise ``x: (B, C, H, W)``; ``y: (B,)`` noise-level indices (conditional only)."""
        means = x.mean(dim=(2, 3))
        m = means.mean(dim=-1, keepdim=True)
        v = means.var(dim=-1, keepdim=True)
        means = (means - m) / (v + _EPS).sqrt()
        h = F.instance_norm(x, eps=_EPS)
        if self.conditional:
            if y is None:
                raise ValueError("a conditional InstanceNorm++ needs the noise-level indices y")
            gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        else:
            gamma, alpha, beta = self.gamma, self.alpha, self.beta
        h = h + means[..., None, None] * alpha[..., None, None]
        return gamma.view(-1, self.channels, 1, 1) * h + beta.view(-1, self.channels, 1, 1)


def _conv3x3(c_in: int, c_out: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution that keeps the size ("same" padding, also when dilated)."""
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=bias)


def _mean_pool(x: Tensor) -> Tensor:
    """2x2 mean pooling in the paper's summation order (``sum([a, b, c, d]) / 4``)."""
    return (x[:, :, ::2, ::2] + x[:, :, 1::2, ::2] + x[:, :, ::2, 1::2] + x[:, :, 1::2, 1::2]) / 4.0


class ConvMeanPool(nn.Module):
    """A convolution then 2x2 mean pooling; ``adjust_padding`` pads the top and left by one first.

    With ``adjust_padding`` the convolution sits at ``conv.1`` (``nn.Sequential(ZeroPad2d, conv)``).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, adjust_padding: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)
        self.conv: nn.Module = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), conv) if adjust_padding else conv

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H / 2, W / 2)``."""
        return _mean_pool(self.conv(x))


class ResidualBlock(nn.Module):
    """The pre-activation residual block of NCSN / NCSNv2 (norm, act, conv, norm, act, conv + shortcut).

    ``resample="down"`` halves the resolution (a :class:`ConvMeanPool` as the second conv and as
    a 1x1 shortcut) unless ``dilation > 1``: then every conv is dilated and the size is kept,
    as in the paper.  The shortcut is a 1x1 conv (a dilated 3x3 conv when dilated) when the
    channels change or ``resample`` is set, else the identity.

    Args:
        c_in, c_out: channels.
        resample: ``"down"`` or ``None``.
        act: the activation.
        num_classes: noise levels for conditional norms (NCSN), ``None`` for NCSNv2.
        adjust_padding: pad top/left before the mean pooling (28 px images).
        dilation: the dilation of the 3x3 convs.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        resample: str | None,
        act: nn.Module,
        num_classes: int | None = None,
        adjust_padding: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if resample not in ("down", None):
            raise ValueError(f"resample must be 'down' or None, got {resample!r}")
        self.non_linearity = act
        self.c_in, self.c_out, self.resample = c_in, c_out, resample
        shortcut: nn.Module | None = None
        needs_shortcut = c_in != c_out or resample is not None
        if resample == "down" and dilation == 1:
            self.conv1 = _conv3x3(c_in, c_in)
            self.normalize2 = InstanceNormPlus(c_in, num_classes)
            self.conv2: nn.Module = ConvMeanPool(c_in, c_out, 3, adjust_padding)
            shortcut = ConvMeanPool(c_in, c_out, 1, adjust_padding)
        elif resample == "down":
            self.conv1 = _conv3x3(c_in, c_in, dilation)
            self.normalize2 = InstanceNormPlus(c_in, num_classes)
            self.conv2 = _conv3x3(c_in, c_out, dilation)
            shortcut = _conv3x3(c_in, c_out, dilation)
        else:
            self.conv1 = _conv3x3(c_in, c_out, dilation)
            self.normalize2 = InstanceNormPlus(c_out, num_classes)
            self.conv2 = _conv3x3(c_out, c_out, dilation)
            if needs_shortcut:
                shortcut = _conv3x3(c_in, c_out, dilation) if dilation > 1 else nn.Conv2d(c_in, c_out, 1)
        if shortcut is not None:
            self.shortcut = shortcut
        self.normalize1 = InstanceNormPlus(c_in, num_classes)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The block at ``x``; ``y`` the noise-level indices (conditional norms only)."""
        act = self.non_linearity
        h = self.conv1(act(self.normalize1(x, y)))
        h = self.conv2(act(self.normalize2(h, y)))
        skip = x if self.c_in == self.c_out and self.resample is None else self.shortcut(x)
        return skip + h


class RCUBlock(nn.Module):
    """Residual conv units: ``n_blocks`` times ``x + (act, [norm,] conv) x n_stages`` (RefineNet).

    Convs are bias-free 3x3, named ``{i}_{j}_conv`` (with ``{i}_{j}_norm`` before the
    activation when conditional), ``i``, ``j`` from 1.
    """

    def __init__(
        self, channels: int, n_blocks: int, n_stages: int, act: nn.Module, num_classes: int | None = None
    ) -> None:
        super().__init__()
        self.n_blocks, self.n_stages, self.conditional = n_blocks, n_stages, num_classes is not None
        for i in range(1, n_blocks + 1):
            for j in range(1, n_stages + 1):
                if num_classes is not None:
                    setattr(self, f"{i}_{j}_norm", InstanceNormPlus(channels, num_classes))
                setattr(self, f"{i}_{j}_conv", _conv3x3(channels, channels, bias=False))
        self.act = act

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        for i in range(1, self.n_blocks + 1):
            residual = x
            for j in range(1, self.n_stages + 1):
                if self.conditional:
                    x = getattr(self, f"{i}_{j}_norm")(x, y)
                x = getattr(self, f"{i}_{j}_conv")(self.act(x))
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: ``x = act(x)``, then ``n_stages`` times ``x += conv(pool(path))``.

    NCSNv2 pools with a 5x5 max pool; the conditional NCSN version normalises first and uses a
    5x5 average pool (zero padding counted, as ``nn.AvgPool2d``'s default).
    """

    def __init__(self, channels: int, n_stages: int, act: nn.Module, num_classes: int | None = None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(n_stages))
        self.conditional = num_classes is not None
        if num_classes is not None:
            self.norms = nn.ModuleList(InstanceNormPlus(channels, num_classes) for _ in range(n_stages))
        self.act = act

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        x = self.act(x)
        path = x
        for i, conv in enumerate(self.convs):
            if self.conditional:
                path = F.avg_pool2d(self.norms[i](path, y), 5, stride=1, padding=2)
            else:
                path = F.max_pool2d(path, 5, stride=1, padding=2)
            path = conv(path)
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: ``sum_i upsample(conv_i([norm_i](x_i)))``, bilinear, corners aligned."""

    def __init__(self, in_channels: list[int], channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.convs = nn.ModuleList(_conv3x3(c, channels) for c in in_channels)
        self.conditional = num_classes is not None
        if num_classes is not None:
            self.norms = nn.ModuleList(InstanceNormPlus(c, num_classes) for c in in_channels)

    def forward(self, xs: list[Tensor], shape: tuple[int, int], y: Tensor | None = None) -> Tensor:
        """Fuse the maps ``xs`` at ``shape = (H, W)``."""
        total = xs[0].new_zeros(xs[0].shape[0], self.channels, *shape)
        for i, conv in enumerate(self.convs):
            h = self.norms[i](xs[i], y) if self.conditional else xs[i]
            h = F.interpolate(conv(h), size=shape, mode="bilinear", align_corners=True)
            total = total + h
        return total


class RefineBlock(nn.Module):
    """A RefineNet block: RCU on each input, fusion (if more than one), CRP, output RCU.

    Args:
        in_channels: channels of each input (one for the ``start`` block).
        channels: output channels.
        act: the activation.
        num_classes: noise levels for conditional norms (NCSN), ``None`` for NCSNv2.
        start: the first (coarsest) block, with one input and no fusion.
        end: the last block, with three output RCUs instead of one.
    """

    def __init__(
        self,
        in_channels: list[int],
        channels: int,
        act: nn.Module,
        num_classes: int | None = None,
        start: bool = False,
        end: bool = False,
    ) -> None:
        super().__init__()
        self.adapt_convs = nn.ModuleList(RCUBlock(c, 2, 2, act, num_classes) for c in in_channels)
        self.output_convs = RCUBlock(channels, 3 if end else 1, 2, act, num_classes)
        if not start:
            self.msf = MSFBlock(in_channels, channels, num_classes)
        self.crp = CRPBlock(channels, 2, act, num_classes)

    def forward(self, xs: list[Tensor], shape: tuple[int, int], y: Tensor | None = None) -> Tensor:
        """Refine the maps ``xs`` (coarse last) into one map of size ``shape``."""
        hs = [rcu(x, y) for rcu, x in zip(self.adapt_convs, xs, strict=True)]
        h = self.msf(hs, shape, y) if len(hs) > 1 else hs[0]
        return self.output_convs(self.crp(h, y), y)

"""Nearest-neighbour 2x upsampling followed by a 3x3 convolution, computed at the input resolution.

``conv3x3(nearest2x(x))`` is the upsampling layer of DDPM (Ho et al. 2020, App. B) and of the U-Nets
built on it.  Every output pixel of the upsampled image reads a 3x3 window that covers only 2x2
distinct input pixels, so the layer is four 2x2 convolutions of the input (one per output phase)
whose kernels are sums of the 3x3 kernel's taps: the sub-pixel convolution of Shi et al. 2016
("Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
Neural Network"), derived here from the 3x3 kernel so that the parameters stay those of the
original layer.  It needs 16/36 of the multiply-adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample_conv"]


def _phase_kernels(weight: Tensor) -> Tensor:
    """The four 2x2 kernels that a 3x3 kernel ``(O, I, 3, 3)`` becomes after 2x nearest upsampling.

    Output row ``2i + a`` of ``conv3x3(nearest2x(x))`` reads upsampled rows ``2i + a - 1 .. 2i + a + 1``,
    which are input rows ``i - 1, i, i`` (``a = 0``) or ``i, i, i + 1`` (``a = 1``): a 2x2 kernel whose
    taps are sums of the 3x3 kernel's rows, and likewise for columns.  Returns ``(4 O, I, 2, 2)``,
    output channel ``4 o + 2 a + b`` holding phase ``(a, b)`` of channel ``o``.
    """
    w0, w1, w2 = weight.unbind(2)
    rows = torch.stack([torch.stack([w0, w1 + w2], 2), torch.stack([w0 + w1, w2], 2)], 1)  # (O, a, I, 2, 3)
    c0, c1, c2 = rows.unbind(-1)
    k = torch.stack([torch.stack([c0, c1 + c2], -1), torch.stack([c0 + c1, c2], -1)], 2)  # (O, a, b, I, 2, 2)
    return k.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def upsample_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv3x3(nearest2x(x))`` (padding 1) computed at the input's resolution.

    Equal to ``F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``
    up to float rounding, in 16/36 of its multiply-adds (plus a one-pixel border): each of the
    four output phases is a 2x2 convolution of ``x`` (:func:`_phase_kernels`), run as one
    convolution with ``4 O`` outputs on ``x`` padded by one pixel, whose phases are then
    interleaved (the sub-pixel convolution of Shi et al. 2016, derived from the 3x3 kernel).
    Gradients reach ``weight`` through the kernel sums, so the parameters are the 3x3 kernel's.
    """
    o = weight.shape[0]
    y = F.conv2d(x, _phase_kernels(weight), None if bias is None else bias.repeat_interleave(4), padding=1)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if y.requires_grad and not torch.jit.is_tracing():  # the Function's backward; jit.trace cannot record it
        return _Interleave.apply(y, o, channels_last)
    return _interleave(y, o, channels_last)


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def _interleave(y: Tensor, o: int, channels_last: bool) -> Tensor:
    """``(B, 4 O, H + 1, W + 1) -> (B, O, 2 H, 2 W)`` by four slice copies (see :class:`_Interleave`)."""
    b, _, h1, w1 = y.shape
    h, w = h1 - 1, w1 - 1
    phases = y.unflatten(1, (o, 2, 2))
    if channels_last:
        out = y.new_empty(b, h, 2, w, 2, o)
        for a, c in _PHASES:
            out[:, :, a, :, c] = phases[:, :, a, c, a : a + h, c : c + w].permute(0, 2, 3, 1)
        return out.view(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    out = y.new_empty(b, o, h, 2, w, 2)
    for a, c in _PHASES:
        out[:, :, :, a, :, c] = phases[:, :, a, c, a : a + h, c : c + w]
    return out.view(b, o, 2 * h, 2 * w)


class _Interleave(torch.autograd.Function):
    """``(B, 4 O, H + 1, W + 1) -> (B, O, 2 H, 2 W)``: phase ``(a, b)`` of output pixel ``(i, j)`` is
    ``y[:, 4 o + 2 a + b, i + a, j + b]``.

    Four slice copies each way; written as a function of its own so that the backward writes the
    four gradient slices into one buffer (zeroing only the unused border) instead of autograd's
    four zero-filled, summed copies of the whole input.  Plain views and copies, which
    ``torch.compile`` traces without a graph break.
    """

    @staticmethod
    def forward(ctx, y: Tensor, o: int, channels_last: bool) -> Tensor:
        ctx.geometry = (y.shape, o, channels_last)
        return _interleave(y, o, channels_last)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        shape, o, channels_last = ctx.geometry
        h, w = shape[2] - 1, shape[3] - 1
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        grad_y = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=fmt)
        phases = grad_y.unflatten(1, (o, 2, 2))
        g = grad.unflatten(2, (h, 2)).unflatten(4, (w, 2))  # (B, O, H, a, W, b)
        for a, c in _PHASES:
            phases[:, :, a, c, a : a + h, c : c + w] = g[:, :, :, a, :, c]
            phases[:, :, a, c, h if a == 0 else 0] = 0.0  # the row and column this phase does not use
            phases[:, :, a, c, :, w if c == 0 else 0] = 0.0
        return grad_y, None, None

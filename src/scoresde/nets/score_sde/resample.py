"""Up- and down-sampling of images: FIR filters (StyleGAN2), nearest and average pooling.

NCSN++ (Song et al. 2021, App. H.1) resamples feature maps with the anti-aliasing FIR filter
``[1, 3, 3, 1]`` of StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN"; Zhang 2019).  Everything rests on :func:`upfirdn2d`: upsample by inserting
zeros, pad, filter with a 2-D FIR kernel, downsample by striding.  It is written with plain
``torch`` operations (no custom CUDA op) and runs at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "conv_downsample_2d",
    "downsample_2d",
    "fir_kernel_2d",
    "naive_downsample_2d",
    "naive_upsample_2d",
    "upfirdn2d",
    "upsample_2d",
    "upsample_conv_2d",
]


def fir_kernel_2d(k: Sequence[float] | Tensor, device=None, dtype=torch.float32) -> Tensor:
    """The normalised 2-D FIR kernel: the outer product of a 1-D ``k`` with itself, summing to 1.

    A 2-D ``k`` is only normalised.  The normalisation is done in float32 first, as the paper's
    code does, then cast to ``dtype``.
    """
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = torch.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {tuple(k.shape)}")
    k = k / k.sum()
    return k.to(device=device, dtype=dtype)


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample, FIR-filter and downsample every channel of ``x: (B, C, H, W)``.

    Steps: insert ``up - 1`` zeros after every pixel along each axis, pad ``pad[0]`` pixels
    before and ``pad[1]`` after (negative values crop), convolve (a true convolution: the
    kernel is flipped) with ``kernel: (kh, kw)``, and keep every ``down``-th pixel.

    Returns:
        ``(B, C, (H up + pad0 + pad1 - kh) // down + 1, (W up + pad0 + pad1 - kw) // down + 1)``.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    # Zero insertion: (N, H, 1, W, 1) padded to (N, H, up, W, up).
    out = x.reshape(b * c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
    out = out.reshape(b * c, 1, h * up, w * up)
    # Padding, with negative amounts cropping.
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[..., max(-p0, 0) : out.shape[-2] - max(-p1, 0), max(-p0, 0) : out.shape[-1] - max(-p1, 0)]
    # Filtering (F.conv2d is a correlation, so flip the kernel) and decimation.
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, kh, kw).to(out.dtype)
    out = F.conv2d(out, weight)
    out = out[..., ::down, ::down]
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def upsample_2d(x: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """Upsample ``x: (B, C, H, W)`` by ``factor`` with the FIR filter ``k`` (constant-preserving)."""
    kernel = fir_kernel_2d(k, x.device) * factor**2
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """Downsample ``x: (B, C, H, W)`` by ``factor`` with the FIR filter ``k`` (constant-preserving)."""
    kernel = fir_kernel_2d(k, x.device)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: Tensor, weight: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """Fused FIR upsampling and ``kxk`` convolution with ``weight: (C_out, C_in, k, k)``.

    A transposed convolution of stride ``factor`` followed by the FIR filter, padded once
    (StyleGAN2's ``upsample_conv_2d``); the output is ``(B, C_out, factor H, factor W)``.
    """
    kh, kw = weight.shape[-2:]
    if kh != kw:
        raise ValueError(f"need a square convolution kernel, got {kh}x{kw}")
    kernel = fir_kernel_2d(k, x.device) * factor**2
    p = (kernel.shape[0] - factor) - (kw - 1)
    # conv_transpose2d takes (C_in, C_out, k, k); flipping makes it the adjoint of a correlation.
    w_t = torch.flip(weight, [2, 3]).transpose(0, 1)
    out = F.conv_transpose2d(x, w_t, stride=factor)
    return upfirdn2d(out, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: Tensor, weight: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """Fused ``kxk`` convolution and FIR downsampling (StyleGAN2's ``conv_downsample_2d``).

    The FIR filter pads once, then a stride-``factor`` convolution with ``weight``; the output is
    ``(B, C_out, H / factor, W / factor)``.
    """
    kw = weight.shape[-1]
    kernel = fir_kernel_2d(k, x.device)
    p = (kernel.shape[0] - factor) + (kw - 1)
    out = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(out, weight, stride=factor)


def naive_upsample_2d(x: Tensor, factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling: every pixel repeated ``factor x factor`` times."""
    b, c, h, w = x.shape
    out = x.reshape(b, c, h, 1, w, 1).expand(b, c, h, factor, w, factor)
    return out.reshape(b, c, h * factor, w * factor)


def naive_downsample_2d(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling over non-overlapping ``factor x factor`` blocks."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))

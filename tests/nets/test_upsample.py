"""Nearest 2x upsampling + 3x3 convolution at the input resolution vs the reference formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scoresde.nets.upsample import upsample_conv


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (2, 3, 3, 5), (1, 2, 1, 1)])
def test_upsample_conv_equals_nearest_then_conv(shape: tuple, channels_last: bool) -> None:
    """The sub-pixel form of nearest 2x upsampling + 3x3 convolution: values and gradients equal the
    reference formula within float rounding (a few ulps of the output scale), in either memory format."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    w0 = torch.randn(7, shape[1], 3, 3, generator=g, dtype=torch.float64)
    b0 = torch.randn(7, generator=g, dtype=torch.float64)
    upstream = torch.randn(shape[0], 7, 2 * shape[2], 2 * shape[3], generator=g, dtype=torch.float64)
    outs, grads = [], []
    for fn in (
        lambda x, w, b: F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1),
        upsample_conv,
    ):
        x, w, b = (v.clone().requires_grad_() for v in (x0, w0, b0))
        out = fn(x, w, b)
        outs.append(out)
        grads.append(torch.autograd.grad((out * upstream).sum(), (x, w, b)))
    assert outs[1].shape == outs[0].shape
    if shape[2] * shape[3] > 1:  # the input's memory format is kept
        assert outs[1].is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)
    for mine, ref in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-11)


def test_layers_use_it_with_their_own_parameters() -> None:
    """The UNet's and the paper networks' upsampling layers keep their 3x3 convolution (same state-dict
    names) and equal nearest upsampling followed by it."""
    from scoresde.nets.score_sde.layers import Upsample as PaperUpsample
    from scoresde.nets.unet import Upsample

    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    for layer, conv in ((Upsample(4), "conv"), (PaperUpsample(4, with_conv=True), "Conv_0")):
        assert set(layer.state_dict()) == {f"{conv}.weight", f"{conv}.bias"}
        ref = getattr(layer, conv)(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace, as the freeze mode uses it
def test_no_grad_and_traced_paths_match() -> None:
    """Without autograd (sampling) and under ``torch.jit.trace`` (the freeze execution mode) the
    plain-copy path runs; it gives the training path's values (within a few float32 ulps of
    these O(1) outputs: the convolution may take another oneDNN kernel without autograd) and
    traces without error."""
    from scoresde.nets.unet import Upsample

    layer = Upsample(3)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    grad_path = layer(x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), grad_path, rtol=1e-6, atol=1e-6)
        traced = torch.jit.trace(layer.eval(), x)
        torch.testing.assert_close(traced(x), grad_path, rtol=1e-6, atol=1e-6)

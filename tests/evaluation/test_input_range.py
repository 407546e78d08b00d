"""Inception inputs: the declared range is converted explicitly, anything else is refused."""

from __future__ import annotations

import pytest
import torch

from scoresde.evaluation import FIDInceptionV3


def _prep(x: torch.Tensor, **kw) -> torch.Tensor:
    return FIDInceptionV3(resize_to=None, quantize=False, **kw).prepare(x)


def _images(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(seed))  # [0, 1]


def test_declared_ranges_convert_to_minus_one_one() -> None:
    u = _images()
    signed = u * 2 - 1
    torch.testing.assert_close(_prep(signed), signed)
    torch.testing.assert_close(_prep(u, input_range="0,1"), signed, rtol=0, atol=1e-6)
    b = (u * 255).round().to(torch.uint8)
    torch.testing.assert_close(_prep(b, input_range="0,255"), b.float() / 127.5 - 1, rtol=0, atol=1e-6)
    # Grayscale is repeated to three channels after the conversion.
    assert _prep(signed[:, :1]).shape == (4, 3, 6, 6)


def test_uint8_without_a_declared_range_is_refused() -> None:
    b = (_images() * 255).to(torch.uint8)
    with pytest.raises(ValueError, match=r"uint8 images.*input_range='0,255'"):
        _prep(b)
    with pytest.raises(ValueError, match="uint8"):
        _prep(b, input_range="0,1")


def test_zero_one_images_are_refused_not_clamped() -> None:
    u = _images()
    with pytest.raises(ValueError, match="look like \\[0, 1\\] images"):
        _prep(u)
    # Declared explicitly, a batch without negative values is accepted as it is.
    torch.testing.assert_close(_prep(u, input_range="-1,1"), u)
    with pytest.raises(ValueError, match="outside the declared input_range"):
        _prep(u * 255)  # 0..255 floats passed as [-1, 1]
    with pytest.raises(ValueError, match="outside the declared input_range"):
        _prep(u * 255, input_range="0,1")


def test_out_of_range_values_are_refused_unless_clipping_is_asked_for() -> None:
    x = _images() * 2.4 - 1.2  # a sample that overshoots [-1, 1]
    with pytest.raises(ValueError, match=r"range over \[-1\.\d*, 1\.\d*\].*out_of_range='clip'"):
        _prep(x)
    torch.testing.assert_close(_prep(x, out_of_range="clip"), x.clamp(-1, 1))
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="outside the declared"):
        _prep(nan, out_of_range="clip")
    with pytest.raises(ValueError, match="input_range must be one of"):
        FIDInceptionV3(input_range="0..1")  # type: ignore[arg-type]

"""The FID Inception-v3 network, in plain PyTorch, for FID, KID and the Inception Score.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium") compares 2048-d pool features of Inception-v3 (Szegedy et al. 2016, "Rethinking
the Inception Architecture for Computer Vision"); the Inception Score (Salimans et al. 2016)
uses its 1008-way classifier.  The standard numbers come from one particular network, the
TensorFlow graph ``inception-2015-12-05``, whose ported weights pytorch-fid and torch-fidelity
load as ``pt_inception-2015-12-05-6726825d.pth``.  That graph differs from torchvision's
Inception-v3 in ways that change the numbers, and this module builds it as it is:

- the A, C and E blocks average-pool *without* counting the zero padding (TensorFlow's
  ``avg_pool``: ``count_include_pad=False``);
- the last E block (``Mixed_7c``) max-pools in its pool branch where the paper average-pools;
- the classifier has 1008 outputs (1000 ImageNet classes and 8 unused ones);
- inputs are resized to 299 x 299 bilinearly (``align_corners=False``) and mapped from
  ``[0, 1]`` to ``[-1, 1]``.

Inputs are checked against a declared range (``input_range``: ``"-1,1"``, the library's
convention, ``"0,1"`` or ``"0,255"`` for uint8 images) and converted from it explicitly; values
outside it are refused unless ``out_of_range="clip"`` asks for the clipping that writing PNG
files would do.  Nothing is clamped silently.

Module and parameter names follow that file's state dict (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch_pool.bn.running_var``, ``fc.weight``, ...), so :func:`load_fid_inception`
reads it directly (``torch.load(..., weights_only=True)``, never an unpickling of code).  No
weights ship with this library and nothing is downloaded: real FID / KID / IS numbers need
the real file; any other weights (e.g. :func:`standin_inception_state`, for tests) give
numbers that are comparable only with themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FID_WEIGHTS_NAME",
    "FIDInceptionV3",
    "InceptionOutput",
    "load_fid_inception",
    "standin_inception_state",
]

InputRange = Literal["-1,1", "0,1", "0,255"]
"""The value ranges :class:`FIDInceptionV3` accepts: ``[-1, 1]``, ``[0, 1]``, 8-bit ``0..255``."""

INPUT_RANGES: dict[str, tuple[float, float]] = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
"""The public file (from pytorch-fid's releases) whose state dict :class:`FIDInceptionV3` loads."""


class BasicConv2d(nn.Module):
    """Convolution (no bias), batch norm (``eps = 0.001``, as TensorFlow's), ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that ignores the zero padding (TensorFlow's ``avg_pool``)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35 x 35 block: 1x1, 5x5, double 3x3 and pooled 1x1 branches (Szegedy et al. 2016, Fig. 5)."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: strided 3x3, strided double 3x3 and max pool."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (1x7 then 7x1; Szegedy et al. 2016, Fig. 6)."""

    def __init__(self, c_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: strided 3x3, 7x7-then-strided-3x3 and max pool."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs (Szegedy et al. 2016, Fig. 7).

    ``pool="max"`` is the FID graph's ``Mixed_7c``, which max-pools in its pool branch.
    """

    def __init__(self, c_in: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_tf(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


@dataclass
class InceptionOutput:
    """Pool features ``(B, 2048)`` (for FID / KID) and classifier logits ``(B, 1008)`` (for IS)."""

    features: Tensor
    logits: Tensor


class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the FID graph ``inception-2015-12-05`` (see the module docstring).

    ``forward`` takes images ``(B, C, H, W)`` (``C`` is 1 or 3, grayscale is repeated) in the
    declared ``input_range`` and returns :class:`InceptionOutput`.

    Args:
        resize_to: the input size (299 for standard numbers; ``None`` keeps the size, which
            must be at least 75).
        quantize: round images to 8 bits first, as they are when written to PNG files and
            read back by external FID tools.
        input_range: the range of the images passed in, converted to ``[-1, 1]`` explicitly:
            ``"-1,1"`` (the library's convention), ``"0,1"``, or ``"0,255"`` (uint8 images, or
            floats on that scale).  ``None`` (the default) means ``"-1,1"`` and also refuses a
            batch without a single negative value, the mark of ``[0, 1]`` images passed by
            mistake; say ``"-1,1"`` explicitly to score such a batch.  A uint8 tensor needs
            ``"0,255"``.
        out_of_range: ``"error"`` (default) refuses values outside ``input_range`` with a
            message; ``"clip"`` clips them into it (what writing a PNG does to a sample that
            overshoots).
    """

    def __init__(
        self,
        resize_to: int | None = 299,
        quantize: bool = True,
        input_range: InputRange | None = None,
        out_of_range: Literal["error", "clip"] = "error",
    ) -> None:
        super().__init__()
        if input_range is not None and input_range not in INPUT_RANGES:
            raise ValueError(
                f"input_range must be one of {sorted(INPUT_RANGES)} or None, got {input_range!r}"
            )
        if out_of_range not in ("error", "clip"):
            raise ValueError(f"out_of_range must be 'error' or 'clip', got {out_of_range!r}")
        self.resize_to = resize_to
        self.quantize = quantize
        self.input_range = input_range
        self.out_of_range = out_of_range
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def to_unit_range(self, x: Tensor) -> Tensor:
        """Check ``x`` against ``input_range`` and map it to ``[-1, 1]`` (float32), explicitly.

        Raises:
            ValueError: a uint8 tensor without ``input_range="0,255"``; values outside the
                declared range (with ``out_of_range="error"``); with ``input_range=None``, a
                batch with no negative value (``[0, 1]`` images passed as ``[-1, 1]``).
        """
        name = self.input_range or "-1,1"
        if x.dtype == torch.uint8 and name != "0,255":
            raise ValueError(
                f"uint8 images given to an Inception network declared for input_range={name!r}: "
                "pass input_range='0,255' to convert them (x / 127.5 - 1)"
            )
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise ValueError(f"images must be a float or uint8 tensor, got {x.dtype}")
        lo, hi = INPUT_RANGES[name]
        x = x.float()
        x_min, x_max = float(x.min()), float(x.max())
        if not (x_min >= lo and x_max <= hi):  # also catches NaN
            if self.out_of_range != "clip" or x.isnan().any():
                raise ValueError(
                    f"images range over [{x_min:.4g}, {x_max:.4g}], outside the declared input_range "
                    f"[{lo:g}, {hi:g}]; declare their range (input_range='0,1' or '0,255'), or pass "
                    "out_of_range='clip' to clip them as writing PNG files would"
                )
            x = x.clamp(lo, hi)
        if self.input_range is None and x_min >= 0.0:
            raise ValueError(
                "images in [-1, 1] expected, but no value in the batch is negative: these look like [0, 1] "
                "images; pass input_range='0,1' to convert them, or input_range='-1,1' if they really are "
                "[-1, 1] images"
            )
        return x * (2.0 / (hi - lo)) - (hi + lo) / (hi - lo)

    def prepare(self, x: Tensor) -> Tensor:
        """Images in ``input_range`` to the network's input: 3 channels, 8-bit, 299 x 299, ``[-1, 1]``."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"Inception features need images (B, C, H, W) with C in 1, 3, got {tuple(x.shape)}"
            )
        x = self.to_unit_range(x)
        if self.quantize:
            x = torch.round((x + 1.0) * 127.5) / 127.5 - 1.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize_to is not None:
            # Resizing [0, 1] images and mapping to [-1, 1] afterwards, as pytorch-fid does, is the
            # same as resizing the [-1, 1] images: bilinear interpolation commutes with x -> 2x - 1.
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: Tensor) -> InceptionOutput:
        x = self.prepare(x)
        # Stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35.
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b):
            x = block(x)
        for late in (
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = late(x)
        features = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # pool3: (B, 2048)
        return InceptionOutput(features=features, logits=self.fc(features))


def load_fid_inception(
    path: str | Path,
    device: torch.device | str = "cpu",
    resize_to: int | None = 299,
    quantize: bool = True,
    input_range: InputRange | None = None,
    out_of_range: Literal["error", "clip"] = "error",
) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` from a local weights file (``torch.load(weights_only=True)``).

    Args:
        path: ``pt_inception-2015-12-05-6726825d.pth`` for standard numbers, or any file with
            the same state-dict names and shapes.
        device: where to put the network.
        resize_to, quantize, input_range, out_of_range: see :class:`FIDInceptionV3`.

    Raises:
        FileNotFoundError: no such file (the message says where to get the real one).
        ValueError: names or shapes that do not match the FID network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no Inception weights at {path}; FID/KID/IS need the FID Inception file {FID_WEIGHTS_NAME} "
            "(published with pytorch-fid), passed as a local path"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch weights file ({err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    net = FIDInceptionV3(
        resize_to=resize_to, quantize=quantize, input_range=input_range, out_of_range=out_of_range
    )
    want = net.state_dict()
    optional = {k for k in want if k.endswith("num_batches_tracked")}
    missing = sorted(set(want) - set(state) - optional)
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not the FID Inception-v3 state dict: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise ValueError(
                f"{path}: {k} has shape {tuple(v.shape)}, the FID network needs {tuple(want[k].shape)}"
            )
    net.load_state_dict({**{k: want[k] for k in optional}, **state})
    return net.to(device).eval().requires_grad_(False)


def standin_inception_state(seed: int = 0) -> dict[str, Tensor]:
    """Random weights in the FID file's format, for offline tests of the code path (not real FID).

    He-normal convolutions, unit batch norms and a small random classifier keep activations
    of order one through the 94 layers.
    """
    g = torch.Generator().manual_seed(seed)
    net = FIDInceptionV3()
    state = {}
    for name, value in net.state_dict().items():
        if name.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[name] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name == "fc.weight":
            state[name] = torch.randn(value.shape, generator=g) * 0.05
        elif name.endswith("num_batches_tracked"):
            continue
        else:
            state[name] = value.clone()
    return state

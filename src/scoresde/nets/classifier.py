"""Time-dependent classifiers ``net(x, t) -> logits`` for noisy inputs (Song et al. 2021, Sec. 5)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from scoresde._core.tensors import append_dims
from scoresde.nets.embeddings import GaussianFourierProjection

__all__ = ["TimeClassifier"]


class TimeClassifier(nn.Module):
    """A classifier of noisy data ``x_t`` conditioned on ``t``, returning logits ``(B, num_classes)``.

    Vectors ``(B, D)`` go through a residual SiLU MLP; images ``(B, C, H, W)`` through a small
    convolutional encoder (stride-2 stages, time embedding added to every stage, global average
    pooling), in the spirit of the noise-conditional classifier of Song et al. 2021 (App. I.1).

    Args:
        in_shape: shape of one input, ``(D,)`` or ``(C, H, W)``.
        num_classes: number of classes ``C``.
        hidden: MLP width, or channels of the first convolutional stage.
        depth: number of hidden layers / convolutional stages.
        time_dim: size of the Fourier time embedding.
        fourier_scale: frequency scale of the time embedding (1 trains faster than the score
            networks' 16: ``p_t(y | x)`` varies slowly in ``t``).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: int = 128,
        depth: int = 3,
        time_dim: int = 64,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) not in (1, 3) or any(s < 1 for s in self.in_shape):
            raise ValueError(f"in_shape must be (D,) or (C, H, W), got {self.in_shape}")
        if num_classes < 2 or hidden < 1 or depth < 1:
            raise ValueError(
                f"need num_classes >= 2, hidden >= 1, depth >= 1; got {num_classes}, {hidden}, {depth}"
            )
        self.num_classes = int(num_classes)
        self.hidden, self.depth = int(hidden), int(depth)
        self.time_dim, self.fourier_scale = int(time_dim), float(fourier_scale)
        self.time_embed = nn.Sequential(GaussianFourierProjection(time_dim, fourier_scale), nn.SiLU())
        self.act = nn.SiLU()
        if len(self.in_shape) == 1:
            self.inp: nn.Module = nn.Linear(self.in_shape[0], hidden)
            self.temb = nn.ModuleList([nn.Linear(time_dim, hidden)])
            self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
            width = hidden
        else:
            self.inp = nn.Conv2d(self.in_shape[0], hidden, 3, padding=1)
            widths = [hidden * 2 ** min(i, 2) for i in range(depth + 1)]
            self.temb = nn.ModuleList(nn.Linear(time_dim, w) for w in widths[:-1])
            self.layers = nn.ModuleList(
                nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(depth)
            )
            width = widths[-1]
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"TimeClassifier expects x of shape (B, *{self.in_shape}), got {tuple(x.shape)}")
        emb = self.time_embed(t).to(x.dtype)
        h = self.inp(x)
        if len(self.in_shape) == 1:
            h = h + self.temb[0](emb)
            for layer in self.layers:
                h = h + layer(self.act(h))
        else:
            for proj, layer in zip(self.temb, self.layers, strict=True):
                # Time embedding added per channel, then a stride-2 stage.
                h = layer(self.act(h + append_dims(proj(emb), h.ndim)))
            h = h.mean(dim=tuple(range(2, h.ndim)))
        return self.out(self.act(h))

    def config(self) -> dict:
        """JSON-serialisable constructor arguments (for :func:`scoresde.guidance.save_classifier`)."""
        return {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "depth": self.depth,
            "time_dim": self.time_dim,
            "fourier_scale": self.fourier_scale,
        }

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())

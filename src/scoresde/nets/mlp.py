"""An MLP score network for vector data, conditioned on time by Fourier features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scoresde.nets.embeddings import GaussianFourierProjection

__all__ = ["MLP"]


class MLP(nn.Module):
    """``net(x, t[, y])`` for ``x: (B, D)``: residual SiLU MLP with time (and class) embedding.

    Args:
        dim: data dimension ``D``.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        time_dim: size of the Fourier time embedding.
        fourier_scale: frequency scale of the time embedding.
        num_classes: if set, ``y: (B,)`` integer labels are embedded and added; label
            ``num_classes`` is the "no label" token used for classifier-free guidance.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 64,
        fourier_scale: float = 16.0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be positive, got {dim}, {hidden}, {depth}")
        self.dim = dim
        self._config = {
            "dim": dim,
            "hidden": hidden,
            "depth": depth,
            "time_dim": time_dim,
            "fourier_scale": fourier_scale,
            "num_classes": num_classes,
        }
        self.time_embed = nn.Sequential(
            GaussianFourierProjection(time_dim, fourier_scale), nn.Linear(time_dim, hidden), nn.SiLU()
        )
        self.class_embed = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.num_classes = num_classes
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.act = nn.SiLU()
        self.out = nn.Linear(hidden, dim)

    def config(self) -> dict:
        """JSON-serialisable constructor arguments (used by checkpoints)."""
        return dict(self._config)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = self.time_embed(t)
        if self.class_embed is not None:
            assert self.num_classes is not None  # a class embedding exists only with num_classes
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embed(y)
        h = self.inp(x) + emb
        for layer in self.layers:
            h = h + layer(self.act(h))
        return self.out(self.act(h))

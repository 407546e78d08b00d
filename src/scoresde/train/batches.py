"""The trainer's minibatches: every random draw of step ``k`` from generators keyed by ``(seed, k)``.

Minibatch order comes from a :class:`~torch.utils.data.DistributedSampler` seeded per epoch; the
diffusion times, noise, flips and label dropout of step ``k`` from the stream
:func:`~scoresde._core.seeds.derive_seed` ``(seed, k, 0)``, drawn for the *global* batch on every
process, of which process ``r`` takes positions ``r, r + W, r + 2W, ...`` (the positions the
sampler's indices take).  ``W`` processes therefore draw what one process with the global batch
draws, and a run resumed at step ``k`` draws exactly what an uninterrupted run does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from scoresde._core.seeds import derive_seed
from scoresde.data.images import DataSplit

__all__ = ["Batch", "BatchSource"]


@dataclass
class Batch:
    """One process's share of a step's batch: data ``x0``, labels ``y``, uniforms ``u``, ``noise``."""

    x0: Tensor
    y: Tensor | None
    u: Tensor
    noise: Tensor


class _Indices(Dataset[int]):
    """The item indices ``0, ..., n - 1`` as a data set (the sampler reads only its length)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return range(self.n)[index]


class BatchSource:
    """Minibatches of ``data.train`` for step ``k`` (see the module docstring).

    Args:
        data: the data set.
        batch_size: the global batch.
        seed: the run's seed.
        rank, world_size: this process and the number of processes.
        conditional: return labels.
        label_dropout: the fraction of labels replaced by the null token ``data.num_classes``.
        hflip: flip images left-right with probability 1/2.
        flatten: flatten each item (for vector networks).
        device: where the batches go.
    """

    def __init__(
        self,
        data: DataSplit,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        conditional: bool = False,
        label_dropout: float = 0.0,
        hflip: bool = False,
        flatten: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.conditional, self.label_dropout, self.hflip = conditional, label_dropout, hflip
        self.flatten, self.device = flatten, torch.device(device)
        self.steps_per_epoch = data.train.shape[0] // batch_size
        self.local_batch = batch_size // world_size
        self.sampler: DistributedSampler[int] = DistributedSampler(
            _Indices(data.train.shape[0]),
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self._epoch: int | None = None
        self._epoch_indices: list[int] = []

    def to_net(self, x: Tensor) -> Tensor:
        """A batch of items as the network takes it (flattened for vector networks)."""
        return x.reshape(x.shape[0], -1) if self.flatten else x

    def indices(self, step: int) -> list[int]:
        """This process's training indices at ``step`` (epoch-wise DistributedSampler order)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch_indices = list(iter(self.sampler))
            self._epoch = epoch
        b = self.local_batch
        return self._epoch_indices[offset * b : (offset + 1) * b]

    def __call__(self, step: int) -> Batch:
        """This process's batch at ``step``, drawn for the global batch."""
        rank, world, n = self.rank, self.world_size, self.batch_size
        idx = torch.tensor(self.indices(step), dtype=torch.long)
        x0 = self.data.train[idx]
        labels, null_label = self.data.train_labels, self.data.num_classes
        if self.conditional and (labels is None or null_label is None):
            raise ValueError("conditional batches need labelled data (train_labels and num_classes)")
        y = labels[idx] if self.conditional and labels is not None else None
        g = torch.Generator().manual_seed(derive_seed(self.seed, step, 0))
        u = torch.rand(n, generator=g)[rank::world]
        noise = torch.randn((n, *self.data.shape), generator=g)[rank::world]
        flip = torch.rand(n, generator=g)[rank::world] < 0.5
        drop = torch.rand(n, generator=g)[rank::world] < self.label_dropout
        if self.hflip:
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        if y is not None and null_label is not None and self.label_dropout > 0:
            y = torch.where(drop, torch.full_like(y, null_label), y)
        dev = self.device
        return Batch(
            self.to_net(x0).to(dev),
            None if y is None else y.to(dev),
            u.to(dev),
            self.to_net(noise).to(dev),
        )

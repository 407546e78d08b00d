"""A sharded batch runner for any per-item job (likelihoods, latents, ...).

``N`` items are cut into contiguous batches of ``batch_size``; under ``torchrun`` rank ``r`` of
``W`` takes the :func:`~scoresde.parallel.sharding.shard_range` block of the *batches*, so every
rank solves whole batches of the one-process run (an adaptive solve shares its steps within a
batch, so the same points in the same batch give the same values), and the per-item results
are gathered on rank 0 in item order.  Each batch gets its own ``torch.Generator`` keyed by
``(seed, first item of the batch)`` through the library's one per-sample seed scheme
(:func:`scoresde._core.seeds.derive_keys`, the keys of
:func:`scoresde.sampling.noise.sample_keys`), so the random draws of a batch do not depend on
the process count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from scoresde._core.progress import Progress, make_progress
from scoresde._core.seeds import derive_keys
from scoresde.parallel.process_group import DistInfo
from scoresde.parallel.sharding import gather_to_rank0, shard_range

__all__ = ["BatchOutput", "BatchRun", "batch_generator", "run_batches"]

_MASK63 = (1 << 63) - 1


def batch_generator(seed: int, start: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of the batch whose first item is ``start``: seeded with the per-sample key
    of item ``start`` under ``seed`` (:func:`~scoresde._core.seeds.derive_keys`)."""
    key = int(derive_keys(int(seed), torch.tensor([int(start)]))[0]) & _MASK63
    return torch.Generator(device=device).manual_seed(key)


@dataclass
class BatchOutput:
    """What a job returns for one batch.

    Attributes:
        items: per-item results, each ``(n, ...)`` for the batch's ``n`` items (gathered in
            item order on rank 0).
        stats: per-batch numbers (e.g. evaluations, variance sums), gathered in batch order.
    """

    items: dict[str, Tensor]
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class BatchRun:
    """What :func:`run_batches` returns: on rank 0 the whole run's results, elsewhere ``None``s.

    Attributes:
        items: per-item results ``(N, ...)`` (CPU), by name.
        stats: per-batch numbers ``(number of batches,)`` (float64), by name, in batch order.
    """

    items: dict[str, Tensor] | None
    stats: dict[str, Tensor] | None

    @property
    def is_main(self) -> bool:
        return self.items is not None


def run_batches(
    job: Callable[[range, torch.Generator], BatchOutput],
    num: int,
    batch_size: int,
    *,
    seed: int = 0,
    info: DistInfo | None = None,
    device: torch.device | str = "cpu",
    progress: bool | str | Progress = False,
    desc: str = "",
    unit: str = "items",
) -> BatchRun:
    """Run ``job(items, generator)`` on this process's batches and gather the results on rank 0.

    Args:
        job: computes one batch: ``items`` is the batch's range of item indices, ``generator``
            its :func:`batch_generator`.  Every batch must return the same keys.
        num: the number of items ``N``.
        batch_size: items per batch.
        seed: the run's seed.
        info: this process's place (:func:`~scoresde.parallel.process_group.init_distributed`);
            ``None``: a single process.
        device: where the generators draw.
        progress: items done, shown on rank 0 only.
        desc, unit: the progress label and unit.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = info or DistInfo()
    starts = list(range(0, num, batch_size))
    mine = [starts[k] for k in shard_range(len(starts), info.rank, info.world_size)]
    total = sum(min(batch_size, num - s) for s in mine)
    own_bar = not isinstance(progress, Progress)
    bar = make_progress(progress if info.is_main else False, total, desc, unit=unit)
    outputs: list[BatchOutput] = []
    for start in mine:
        items = range(start, min(start + batch_size, num))
        out = job(items, batch_generator(seed, start, device))
        outputs.append(out)
        bar.update(len(items), **{k: v for k, v in out.stats.items() if k == "nfe"})
    if own_bar:
        bar.close()
    # Every rank gathers the same names, shapes and dtypes, also a rank without batches.
    spec, stat_names = _spec(outputs, info)
    results: dict[str, Tensor] = {}
    stats: dict[str, Tensor] = {}
    for name, (trailing, dtype) in spec.items():
        parts = [o.items[name].detach().cpu() for o in outputs]
        local = torch.cat(parts) if parts else torch.empty((0, *trailing), dtype=dtype)
        gathered = gather_to_rank0(local, info)
        if gathered is not None:
            results[name] = gathered
    for name in stat_names:
        gathered = gather_to_rank0(torch.tensor([o.stats[name] for o in outputs], dtype=torch.float64), info)
        if gathered is not None:
            stats[name] = gathered
    return BatchRun(results, stats) if info.is_main else BatchRun(None, None)


def _spec(
    outputs: list[BatchOutput], info: DistInfo
) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], list[str]]:
    """Item names with their trailing shapes and dtypes, and stat names: rank 0's, on every rank."""
    local = None
    if outputs:
        first = outputs[0]
        items = {k: (tuple(v.shape[1:]), v.dtype) for k, v in sorted(first.items.items())}
        local = (items, sorted(first.stats))
    if not info.distributed:
        return local or ({}, [])
    import torch.distributed as dist

    box = [local]
    dist.broadcast_object_list(box, src=0)
    return box[0] or ({}, [])

"""Split a job of ``N`` items over the processes of ``torchrun`` and gather the results on rank 0.

Commands that process many items (sampling 50k images for FID, scoring a test set) give rank
``r`` of ``W`` the contiguous block :func:`shard_range` ``(N, r, W)``, run it, and collect the
blocks in rank order on rank 0 with :func:`gather_to_rank0`.  With per-sample seeds (sample
``i`` depends on ``(seed, i)`` only: :class:`~scoresde.sampling.noise.PerSampleNoise` with
``first_index``) the gathered result equals a single-process run exactly.

:func:`sample_batches` is the loop both cases share: ``N`` samples in batches of ``batch_size``
starting at index ``first_index``, each sample keyed by its global index;
:func:`sample_sharded` runs it on this process's block and gathers the samples on rank 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from scoresde._core.progress import Progress, make_progress
from scoresde.parallel.process_group import DistInfo

__all__ = ["ShardedSamples", "gather_to_rank0", "sample_batches", "sample_sharded", "shard_range"]


def shard_range(n: int, rank: int = 0, world_size: int = 1) -> range:
    """The indices of ``n`` items that rank ``rank`` of ``world_size`` handles.

    Contiguous blocks in rank order, sizes differing by at most one (the first ``n mod W``
    ranks take one more), so concatenating the blocks in rank order gives ``range(n)``.
    """
    if n < 0:
        raise ValueError(f"the number of items must be >= 0, got {n}")
    if world_size < 1 or not (0 <= rank < world_size):
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def gather_to_rank0(x: Tensor, info: DistInfo) -> Tensor | None:
    """Concatenate every rank's ``x: (n_r, *D)`` along dim 0 in rank order, on rank 0.

    Blocks may differ in length (as :func:`shard_range` makes them).  Returns the
    concatenation on rank 0 and ``None`` on the other ranks; single-process, ``x`` itself.
    Every rank must call it with tensors of the same trailing shape and dtype.
    """
    if not info.distributed:
        return x
    # gloo talks CPU tensors, nccl CUDA ones.
    dev = torch.device("cpu") if info.backend == "gloo" else info.device
    local = x.detach().to(dev).contiguous()
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(info.world_size)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.int64, device=dev))
    counts = [int(s) for s in sizes]
    biggest = max(counts)
    padded = torch.zeros((biggest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    if info.rank == 0:
        parts = [torch.empty_like(padded) for _ in range(info.world_size)]
        dist.gather(padded, gather_list=parts, dst=0)
        return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(x.device)
    dist.gather(padded, dst=0)
    return None


def sample_batches(
    sample_fn: Callable[..., Any],
    model: Any,
    item_shape: Sequence[int],
    indices: range,
    seed: int,
    batch_size: int = 256,
    labels: Tensor | None = None,
    progress: bool | str | Progress = False,
    **options: Any,
) -> Tensor:
    """Samples ``indices`` (e.g. a :func:`shard_range`) drawn in batches with per-sample seeds.

    Sample ``i`` depends on ``(seed, i)`` only (``first_index`` of each batch is its global
    index), so any batch size, and any split of ``range(N)`` over processes, gives the
    same samples.

    Args:
        sample_fn: :func:`scoresde.sample` (or a function with its signature).
        model: the score model.
        item_shape: the shape ``D`` of one sample.
        indices: the global indices to draw (a ``range``).
        seed: the run's seed.
        batch_size: samples per call.
        labels: labels of *all* ``N`` samples, indexed by global index (or ``None``).
        progress: report samples done across all batches (see :mod:`scoresde._core.progress`); the
            per-batch ``sample_fn`` calls report nothing.
        **options: passed to ``sample_fn`` (``method``, ``steps``, ``device``, ...).

    Returns:
        ``(len(indices), *D)`` samples on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if indices.step != 1:
        raise ValueError("indices must be a contiguous range")
    own_bar = not isinstance(progress, Progress)
    bar = make_progress(progress, len(indices), "sample", unit="samples")
    chunks = []
    for start in range(indices.start, indices.stop, batch_size):
        n = min(batch_size, indices.stop - start)
        y = None if labels is None else labels[start : start + n]
        if y is not None and options.get("device") is not None:
            y = y.to(options["device"])
        res = sample_fn(model, shape=(n, *item_shape), seed=seed, first_index=start, y=y, **options)
        chunks.append(res.x.detach().cpu())
        bar.update(n)
    if own_bar:
        bar.close()
    if not chunks:
        return torch.empty((0, *item_shape))
    return torch.cat(chunks)


@dataclass
class ShardedSamples:
    """What :func:`sample_sharded` returns.

    Attributes:
        x: all ``N`` samples ``(N, *D)`` (float32, CPU) on rank 0; ``None`` on the other ranks.
        nfe: network evaluations per sample (the most any of this process's batches took).
    """

    x: Tensor | None
    nfe: int


def sample_sharded(
    model: Any,
    item_shape: Sequence[int],
    num: int,
    seed: int,
    info: DistInfo,
    batch_size: int = 256,
    labels: Tensor | None = None,
    progress: bool | str | Progress = False,
    sample_fn: Callable[..., Any] | None = None,
    **options: Any,
) -> ShardedSamples:
    """``num`` samples with per-sample seeds, this process's :func:`shard_range` block of them
    drawn by :func:`sample_batches`, gathered on rank 0 (single-process: all of them, here).

    Args:
        model, item_shape, seed, batch_size, labels: as for :func:`sample_batches`.
        num: the number of samples of the whole run.
        info: this process's place in the run (:func:`scoresde.parallel.process_group.init_distributed`).
        progress: shown on rank 0 only.
        sample_fn: the sampler (default :func:`scoresde.sample`).
        **options: passed to ``sample_fn`` (``method``, ``steps``, ``grid``, ``device``, ...).
    """
    draw: Callable[..., Any]  # not sample_fn: mypy does not narrow it by the import, nor in a closure
    if sample_fn is None:
        from scoresde.sampling.api import sample as draw
    else:
        draw = sample_fn
    nfe = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal nfe
        res = draw(*args, **kwargs)
        nfe = max(nfe, res.nfe)
        return res

    mine = shard_range(num, info.rank, info.world_size)
    part = sample_batches(
        counted,
        model,
        item_shape,
        mine,
        seed=seed,
        batch_size=batch_size,
        labels=labels,
        progress=progress if info.is_main else False,
        **options,
    )
    return ShardedSamples(gather_to_rank0(part.float(), info), nfe)

"""Running one job over many processes: the ``torchrun`` process group, sharding and gathering,
and a sharded batch runner for any per-item job.

Modules:
    process_group: ``init_distributed`` from torchrun's environment (``DistInfo``), barrier,
        mean over processes, cleanup.
    sharding: ``shard_range`` (a rank's contiguous block), ``gather_to_rank0``, and the sampling
        loops ``sample_batches`` / ``sample_sharded`` (per-sample seeds).
    runner: ``run_batches``, the batch runner (per-batch generators from the per-sample seed
        scheme, whole batches per rank, results gathered on rank 0), used by the likelihood
        and the latents commands.
"""

from scoresde.parallel.process_group import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    init_distributed,
)
from scoresde.parallel.runner import BatchOutput, BatchRun, batch_generator, run_batches
from scoresde.parallel.sharding import (
    ShardedSamples,
    gather_to_rank0,
    sample_batches,
    sample_sharded,
    shard_range,
)

__all__ = [
    "BatchOutput",
    "BatchRun",
    "DistInfo",
    "ShardedSamples",
    "all_reduce_mean",
    "barrier",
    "batch_generator",
    "cleanup_distributed",
    "gather_to_rank0",
    "init_distributed",
    "run_batches",
    "sample_batches",
    "sample_sharded",
    "shard_range",
]

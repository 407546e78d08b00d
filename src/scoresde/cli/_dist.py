"""The process a CLI command runs in: single, or one rank of ``torchrun``.

``torchrun --nproc_per_node=N -m scoresde sample|likelihood|eval|encode ...`` starts ``N``
copies of the command; each joins the process group (:func:`dist_info`), takes its block
:func:`~scoresde.sharding.shard_range` of the items, and the blocks are gathered on rank 0
(:func:`~scoresde.sharding.gather_to_rank0`), which alone writes files and prints.
"""

from __future__ import annotations

import torch

from scoresde.distributed import DistInfo, init_distributed
from scoresde.sharding import gather_to_rank0, shard_range

__all__ = ["dist_info", "gather_to_rank0", "my_share", "shard_range"]


def dist_info(device: torch.device) -> DistInfo:
    """Join torchrun's process group (``gloo`` on the CPU, ``nccl`` on CUDA) or stay single."""
    return init_distributed(str(device))


def my_share(n: int, info: DistInfo) -> range:
    """This process's block of ``range(n)``."""
    return shard_range(n, info.rank, info.world_size)

"""Train a score model on images: the bundled digits, a .npy/.npz array or a folder of images.

Every field of ``scoresde.train.TrainConfig`` is a flag (``--base-channels 64``), made from the
field's type and help (:func:`scoresde.settings.dataclass_options`); a ``--config`` file (TOML
or JSON, keys as in TrainConfig, at the top level or in a ``[train]`` table) sets defaults that
``--set KEY=VALUE`` and flags override, as for every subcommand.
Outputs go to ``<out>/<name>/``: ``checkpoints/`` (safetensors), ``samples/`` (PNG grids),
``metrics.jsonl`` and ``config.json``.  ``--resume`` continues a run exactly.  Under
``torchrun --nproc_per_node=N -m scoresde train ...`` it trains with DistributedDataParallel
(gloo on CPU, nccl on GPU); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.settings import Option, dataclass_options
from scoresde.train.config import TrainConfig
from scoresde.train.resume import resume_path, resumed_settings

_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _resume_path(cfg: dict[str, Any]) -> Path | None:
    """The checkpoint ``--resume`` names (bare ``--resume``: ``<out>/<name>/checkpoints/last``)."""
    return resume_path(cfg["resume"], cfg["out"], cfg["name"])


def _resumed_settings(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The training settings of the checkpoint being resumed: the layer under everything given."""
    path = _resume_path(cfg)
    return None if path is None else resumed_settings(path)


def _train_config(cfg: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict({k: cfg[k] for k in _FIELDS})


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path | None]:
    """The ``TrainConfig`` of a parsed command line (resumed settings < file < --set < flags) and
    the checkpoint to resume from."""
    cfg, given = COMMAND.settings(args)
    return _train_config(cfg), _resume_path(given)


def run(ctx: Context) -> int:
    from scoresde.parallel.process_group import cleanup_distributed
    from scoresde.train.trainer import Trainer

    config, resume_path = _train_config(ctx.cfg), _resume_path(ctx.given)
    try:
        trainer = Trainer(config)
        main = trainer.dist.is_main
        if resume_path is not None:
            step = trainer.resume(resume_path)
            if main:
                print(f"resumed {resume_path} at step {step}")
        if main:
            n_params = sum(p.numel() for p in trainer.model.parameters())
            world = trainer.dist.world_size
            print(
                f"training {config.net} ({n_params:,} parameters) on {trainer.data.name} "
                f"{trainer.data.shape} with the {trainer.sde!r} and the {config.loss} loss: "
                f"{config.steps} steps, batch {config.batch_size} on {world} process(es), "
                f"device {trainer.device}",
                flush=True,
            )
        result = trainer.fit()
        if main:
            ev = ", ".join(f"{k} {v:.4g}" for k, v in result.eval.items())
            print(
                f"step {result.step}: {result.images_per_second:.1f} images/s over {result.seconds:.1f}s "
                f"of training{'; ' + ev if ev else ''}"
            )
            print(f"checkpoint {result.checkpoint}")
            print(f"outputs in {result.run_dir.resolve()}")
    finally:
        cleanup_distributed()
    sys.stdout.flush()
    return 0


COMMAND = Command(
    name="train",
    help="train a score model on images (digits, .npy/.npz arrays, image folders); torchrun for DDP",
    doc=__doc__,
    options=[
        *dataclass_options(TrainConfig),
        Option(
            "resume",
            "",
            "continue from a checkpoint file or run folder (bare --resume: <out>/<name>/checkpoints/last)",
            type=str,
            const="auto",
            metavar="PATH",
        ),
        *[o for o in runtime_options() if o.key not in _FIELDS],
    ],
    body=run,
    base=_resumed_settings,
)
add_arguments = COMMAND.add_arguments

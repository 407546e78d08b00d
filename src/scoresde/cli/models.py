"""The model-source flags of the inference subcommands: a model from elsewhere besides ``--checkpoint``.

Every command of the checkpoint group (:func:`scoresde.cli.command.checkpoint_options`) takes its
model from exactly one of ``--checkpoint PATH`` (a scoresde ``.safetensors`` checkpoint or a run
folder), ``--model diffusers:DIR`` or ``--model score_sde:CKPT --model-config CFG [--weights
ema|raw]``; the sources are read by :func:`scoresde.io.sources.load_source`.
"""

from __future__ import annotations

from scoresde.cli.names import WEIGHTS
from scoresde.settings import Option

__all__ = ["model_source_options"]


def model_source_options() -> list[Option]:
    """``--model SOURCE:PATH``, ``--model-config`` and ``--weights`` (a model from elsewhere)."""
    return [
        Option(
            "model",
            "",
            "a model from elsewhere instead of --checkpoint: diffusers:DIR (a save_pretrained folder) "
            "or score_sde:CKPT.pth (with --model-config)",
            type=str,
            metavar="SOURCE:PATH",
        ),
        Option(
            "model_config",
            "",
            "score_sde models: the config (a .json/.toml file or a paper config name, e.g. "
            "vp/cifar10_ddpmpp_continuous)",
            type=str,
            metavar="CFG",
        ),
        Option(
            "weights", "ema", "score_sde models: ema or raw weights (--raw also selects raw)", choices=WEIGHTS
        ),
    ]

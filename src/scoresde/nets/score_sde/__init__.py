"""The paper's own score networks (Song et al. 2021): NCSN++, DDPM++ and DDPM, in pure PyTorch.

Their state-dict names match score_sde_pytorch, so its checkpoints load unchanged; see
:mod:`scoresde.interop.score_sde` for the loader and the paper's score-function conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scoresde.nets.score_sde.config import ScoreSdeNetConfig, load_config_file, parse_net_config
from scoresde.nets.score_sde.ddpm import DDPM
from scoresde.nets.score_sde.ncsnpp import NCSNpp

__all__ = [
    "DDPM",
    "NCSNpp",
    "ScoreSdeNetConfig",
    "build_score_sde_net",
    "load_config_file",
    "parse_net_config",
]


def build_score_sde_net(config: Mapping[str, Any] | ScoreSdeNetConfig) -> NCSNpp | DDPM:
    """Build the network named by ``model.name`` (``ncsnpp`` for NCSN++ and DDPM++, ``ddpm``)."""
    cfg = parse_net_config(config)
    return NCSNpp(cfg) if cfg.name == "ncsnpp" else DDPM(cfg)

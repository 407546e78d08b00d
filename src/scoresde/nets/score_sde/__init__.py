"""The paper's own score networks (Song et al. 2021): NCSN++, DDPM++, DDPM, NCSN and NCSNv2, in pure PyTorch.

Their state-dict names match score_sde_pytorch, so its checkpoints load unchanged; see
:mod:`scoresde.interop.score_sde` for the loader and the paper's score-function conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scoresde.nets.score_sde.config import (
    NCSNNetConfig,
    ScoreSdeNetConfig,
    load_config_file,
    parse_net_config,
)
from scoresde.nets.score_sde.ddpm import DDPM
from scoresde.nets.score_sde.ncsn import NCSN, NCSNv2
from scoresde.nets.score_sde.ncsnpp import NCSNpp

__all__ = [
    "DDPM",
    "NCSN",
    "NCSNNetConfig",
    "NCSNpp",
    "NCSNv2",
    "ScoreSdeNetConfig",
    "build_score_sde_net",
    "load_config_file",
    "parse_net_config",
]


def build_score_sde_net(
    config: Mapping[str, Any] | ScoreSdeNetConfig | NCSNNetConfig,
) -> NCSNpp | DDPM | NCSN | NCSNv2:
    """Build the network named by ``model.name``: ``ncsnpp`` (NCSN++ and DDPM++), ``ddpm``,
    ``ncsn`` (NCSN) or ``ncsnv2_64`` / ``ncsnv2_128`` / ``ncsnv2_256`` (NCSNv2)."""
    cfg = parse_net_config(config)
    if isinstance(cfg, NCSNNetConfig):
        return NCSN(cfg) if cfg.name == "ncsn" else NCSNv2(cfg)
    return NCSNpp(cfg) if cfg.name == "ncsnpp" else DDPM(cfg)

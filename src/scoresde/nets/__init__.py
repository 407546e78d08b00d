"""Score networks in pure PyTorch, and building one from its JSON config."""

from __future__ import annotations

from torch import nn

from scoresde.nets.classifier import TimeClassifier
from scoresde.nets.diffusers_unet import DiffusersUNet
from scoresde.nets.embeddings import GaussianFourierProjection, SinusoidalEmbedding
from scoresde.nets.limits import check_net_config
from scoresde.nets.mlp import MLP
from scoresde.nets.unet import UNet

NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet, "diffusers-unet": DiffusersUNet}


def net_config(net: nn.Module) -> dict:
    """``{"name": ..., **constructor arguments}`` of a network from :data:`NETS`."""
    for name, cls in NETS.items():
        if type(net) is cls:
            assert isinstance(net, (MLP, UNet, DiffusersUNet))  # the classes of NETS
            return {"name": name, **net.config()}
    raise ValueError(
        f"cannot describe a {type(net).__name__} as a config; checkpoints support the networks {sorted(NETS)}"
    )


def build_net(config: dict) -> nn.Module:
    """Build a network from ``{"name": "unet" | "mlp" | "diffusers-unet", **constructor arguments}``."""
    check_net_config(config)
    config = dict(config)
    name = config.pop("name", None)
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETS)}")
    try:
        return NETS[name](**config)
    except TypeError as err:
        raise ValueError(f"bad {name} network config {config}: {err}") from None


__all__ = [
    "MLP",
    "DiffusersUNet",
    "NETS",
    "GaussianFourierProjection",
    "SinusoidalEmbedding",
    "TimeClassifier",
    "UNet",
    "build_net",
    "net_config",
]

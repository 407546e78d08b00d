"""The network fields of a few of the paper's own config files, as plain data.

Values copied from score_sde_pytorch's ``configs/`` (each config file's ``model`` / ``data`` /
``training.sde`` / ``training.continuous`` fields, with the defaults of
``configs/default_cifar10_configs.py`` or ``configs/default_lsun_configs.py`` filled in), keyed
by the config file's path without ``.py``.  Pass a name to
:func:`scoresde.interop.score_sde.load_score_sde` in place of a config file to load the matching
released checkpoint.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PAPER_CONFIGS", "paper_config"]

_CIFAR10_DATA = {"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "centered": False}
_CIFAR10_MODEL = {
    "sigma_min": 0.01,
    "sigma_max": 50.0,
    "num_scales": 1000,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "dropout": 0.1,
    "embedding_type": "fourier",
}
_LSUN_MODEL = {**_CIFAR10_MODEL, "sigma_max": 378.0, "num_scales": 2000, "dropout": 0.0}
_NCSNPP_COMMON = {
    "name": "ncsnpp",
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "resamp_with_conv": True,
    "conditional": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive_combine": "sum",
    "attention_type": "ddpm",
    "init_scale": 0.0,
    "fourier_scale": 16,
    "conv_size": 3,
}

PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "ve/cifar10_ncsnpp_continuous": {
        "training": {"sde": "vesde", "continuous": True},
        "data": dict(_CIFAR10_DATA),
        "model": {
            **_CIFAR10_MODEL,
            **_NCSNPP_COMMON,
            "scale_by_sigma": True,
            "ema_rate": 0.999,
            "nf": 128,
            "ch_mult": [1, 2, 2, 2],
            "num_res_blocks": 4,
            "attn_resolutions": [16],
            "fir": True,
            "progressive": "none",
            "progressive_input": "residual",
        },
    },
    "vp/cifar10_ddpmpp_continuous": {
        "training": {"sde": "vpsde", "continuous": True},
        "data": {**_CIFAR10_DATA, "centered": True},
        "model": {
            **_CIFAR10_MODEL,
            **_NCSNPP_COMMON,
            "scale_by_sigma": False,
            "ema_rate": 0.9999,
            "nf": 128,
            "ch_mult": [1, 2, 2, 2],
            "num_res_blocks": 4,
            "attn_resolutions": [16],
            "fir": False,
            "progressive": "none",
            "progressive_input": "none",
            "embedding_type": "positional",
        },
    },
    "vp/ddpm/cifar10_continuous": {
        "training": {"sde": "vpsde", "continuous": True},
        "data": {**_CIFAR10_DATA, "centered": True},
        "model": {
            **_CIFAR10_MODEL,
            "name": "ddpm",
            "scale_by_sigma": False,
            "ema_rate": 0.9999,
            "normalization": "GroupNorm",
            "nonlinearity": "swish",
            "nf": 128,
            "ch_mult": [1, 2, 2, 2],
            "num_res_blocks": 2,
            "attn_resolutions": [16],
            "resamp_with_conv": True,
            "conditional": True,
        },
    },
    "ve/celebahq_256_ncsnpp_continuous": {
        "training": {"sde": "vesde", "continuous": True},
        "data": {"dataset": "CelebAHQ", "image_size": 256, "num_channels": 3, "centered": False},
        "model": {
            **_LSUN_MODEL,
            **_NCSNPP_COMMON,
            "sigma_max": 348.0,
            "scale_by_sigma": True,
            "ema_rate": 0.999,
            "nf": 128,
            "ch_mult": [1, 1, 2, 2, 2, 2, 2],
            "num_res_blocks": 2,
            "attn_resolutions": [16],
            "fir": True,
            "progressive": "output_skip",
            "progressive_input": "input_skip",
        },
    },
    "ve/ffhq_ncsnpp_continuous": {
        "training": {"sde": "vesde", "continuous": True},
        "data": {"dataset": "FFHQ", "image_size": 1024, "num_channels": 3, "centered": False},
        "model": {
            **_LSUN_MODEL,
            **_NCSNPP_COMMON,
            "sigma_max": 1348.0,
            "scale_by_sigma": True,
            "ema_rate": 0.9999,
            "nf": 16,
            "ch_mult": [1, 2, 4, 8, 16, 32, 32, 32],
            "num_res_blocks": 1,
            "attn_resolutions": [16],
            "dropout": 0.0,
            "fir": True,
            "progressive": "output_skip",
            "progressive_input": "input_skip",
        },
    },
}


def paper_config(name: str) -> dict[str, Any]:
    """A deep copy of ``PAPER_CONFIGS[name]``."""
    if name not in PAPER_CONFIGS:
        raise ValueError(f"unknown paper config {name!r}; known: {sorted(PAPER_CONFIGS)}")
    return copy.deepcopy(PAPER_CONFIGS[name])

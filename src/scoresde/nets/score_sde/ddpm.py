"""DDPM's U-Net (Ho et al. 2020, App. B), state-dict compatible with score_sde_pytorch's ``models/ddpm.py``.

The paper (Song et al. 2021) trains it as a continuous-time VP / sub-VP score model ("DDPM cont.").
Layers sit in one ``nn.ModuleList`` ``all_modules`` in constructor order, with the ``sigmas``
buffer beside it.  Every GroupNorm has 32 groups, so ``nf`` must be a multiple of 32.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.nets.score_sde import layers
from scoresde.nets.score_sde.config import ScoreSdeNetConfig, parse_net_config
from scoresde.nets.score_sde.ncsnpp import _check_input, activation, discrete_sigmas

__all__ = ["DDPM"]


class DDPM(nn.Module):
    """``net(x, labels)``: the DDPM U-Net on ``x: (B, C, H, W)`` with timestep labels ``(B,)``.

    The time input is embedded sinusoidally (the paper's VP models feed ``999 t``; its DDPM
    ignores ``model.embedding_type``).  With ``model.conditional = false``
    (``configs/vp/ddpm/cifar10_unconditional.py``, "NCSNv2 technique 3") the network has no time
    embedding layers and ignores ``labels``: the paper's ``DDPM`` constructor stops with a
    ``NameError`` on that config (its module list is only created in the conditional branch),
    so this builds what the config asks for.  ``centered=False`` maps the input
    from ``[0, 1]`` to ``[-1, 1]``; ``scale_by_sigma`` divides the output by
    ``sigmas[labels]`` (integer labels).

    Args:
        config: the paper's ``model`` / ``data`` fields with ``model.name="ddpm"``.
    """

    sigmas: Tensor

    def __init__(self, config: Mapping[str, Any] | ScoreSdeNetConfig) -> None:
        super().__init__()
        cfg = parse_net_config(config)
        if not isinstance(cfg, ScoreSdeNetConfig) or cfg.name != "ddpm":
            raise ValueError(f"DDPM needs model.name 'ddpm', got {cfg.name!r}")
        if cfg.nf % 32:
            raise ValueError(
                f"config field model.nf must be a multiple of 32 for DDPM (GroupNorm(32)), got {cfg.nf}"
            )
        self.cfg = cfg
        self.act = act = activation(cfg.nonlinearity)
        self.register_buffer("sigmas", discrete_sigmas(cfg))
        nf, ch_mult, n_blocks = cfg.nf, cfg.ch_mult, cfg.num_res_blocks
        n_levels = len(ch_mult)
        resolutions = [cfg.image_size // 2**i for i in range(n_levels)]
        groups = layers.ddpm_groups
        block = partial(layers.ResnetBlockDDPM, act=act, groups=groups, temb_dim=4 * nf, dropout=cfg.dropout)
        attn = partial(layers.AttnBlock, groups=groups)
        channels = cfg.num_channels

        modules: list[nn.Module] = []
        if cfg.conditional:
            modules += [layers.linear(nf, 4 * nf), layers.linear(4 * nf, 4 * nf)]
        modules.append(layers.conv3x3(channels, nf))
        hs_c = [nf]
        in_ch = nf
        for level in range(n_levels):
            for _ in range(n_blocks):
                out_ch = nf * ch_mult[level]
                modules.append(block(in_ch=in_ch, out_ch=out_ch))
                in_ch = out_ch
                if resolutions[level] in cfg.attn_resolutions:
                    modules.append(attn(channels=in_ch))
                hs_c.append(in_ch)
            if level != n_levels - 1:
                modules.append(layers.Downsample(in_ch, with_conv=cfg.resamp_with_conv))
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        modules += [block(in_ch=in_ch), attn(channels=in_ch), block(in_ch=in_ch)]

        for level in reversed(range(n_levels)):
            for _ in range(n_blocks + 1):
                out_ch = nf * ch_mult[level]
                modules.append(block(in_ch=in_ch + hs_c.pop(), out_ch=out_ch))
                in_ch = out_ch
            if resolutions[level] in cfg.attn_resolutions:
                modules.append(attn(channels=in_ch))
            if level != 0:
                modules.append(layers.Upsample(in_ch, with_conv=cfg.resamp_with_conv))
        assert not hs_c
        modules.append(layers.group_norm(in_ch, groups))
        modules.append(layers.conv3x3(in_ch, channels, init_scale=0.0))
        self.all_modules = nn.ModuleList(modules)
        self.attn_levels = tuple(r in cfg.attn_resolutions for r in resolutions)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """The network output at ``x: (B, C, H, W)`` for timesteps ``labels: (B,)``."""
        cfg, modules, act = self.cfg, self.all_modules, self.act
        _check_input(x, labels, cfg)
        idx = iter(range(len(modules)))

        def nxt() -> nn.Module:
            return modules[next(idx)]

        temb = None
        if cfg.conditional:
            temb = layers.timestep_embedding(labels, cfg.nf)
            temb = nxt()(temb)
            temb = nxt()(act(temb))
        h = x if cfg.centered else 2 * x - 1.0

        hs = [nxt()(h)]
        n_levels = len(cfg.ch_mult)
        for level in range(n_levels):
            for _ in range(cfg.num_res_blocks):
                h = nxt()(hs[-1], temb)
                if self.attn_levels[level]:
                    h = nxt()(h)
                hs.append(h)
            if level != n_levels - 1:
                hs.append(nxt()(hs[-1]))

        h = nxt()(hs[-1], temb)
        h = nxt()(h)
        h = nxt()(h, temb)

        for level in reversed(range(n_levels)):
            for _ in range(cfg.num_res_blocks + 1):
                h = nxt()(torch.cat([h, hs.pop()], dim=1), temb)
            if self.attn_levels[level]:
                h = nxt()(h)
            if level != 0:
                h = nxt()(h)
        assert not hs
        h = act(nxt()(h))
        h = nxt()(h)
        assert next(idx, None) is None, "not every module was used"
        if cfg.scale_by_sigma:
            # Divided by the float64 buffer as in the paper's code, returned in the network's dtype.
            used_sigmas = self.sigmas[labels.long()].reshape(x.shape[0], *([1] * (x.ndim - 1)))
            h = (h / used_sigmas).to(h.dtype)
        return h

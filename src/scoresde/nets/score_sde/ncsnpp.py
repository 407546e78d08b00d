"""NCSN++ and DDPM++ (Song et al. 2021, App. H), state-dict compatible with score_sde_pytorch.

One class builds both: DDPM++ is NCSN++ with positional embeddings and without FIR or
progressive pyramids.  All layers sit in one ``nn.ModuleList`` ``all_modules`` in the order the
paper's constructor appends them, and the buffer ``sigmas`` holds the discrete noise levels, so
a ``model`` state dict saved by the paper's code loads with ``strict=True``.  The parameter-free
FIR resamplers of the ``output_skip`` / ``input_skip`` pyramids are not in ``all_modules``
(as in the paper's code, which keeps them outside the list).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.nets.score_sde import layers, resample
from scoresde.nets.score_sde.config import NCSNNetConfig, ScoreSdeNetConfig, parse_net_config

__all__ = ["NCSNpp", "activation", "discrete_sigmas"]


def activation(name: str) -> nn.Module:
    """The paper's ``config.model.nonlinearity``: ``elu``, ``relu``, ``lrelu`` (0.2) or ``swish``."""
    acts: dict[str, Callable[[], nn.Module]] = {
        "elu": nn.ELU,
        "relu": nn.ReLU,
        "lrelu": partial(nn.LeakyReLU, 0.2),
        "swish": nn.SiLU,
    }
    return acts[name.lower()]()


def discrete_sigmas(cfg: ScoreSdeNetConfig | NCSNNetConfig) -> Tensor:
    """The paper's ``get_sigmas``: ``num_scales`` geometric levels, ``sigma_max`` down to ``sigma_min``.

    In float64, as the paper's code stores them (the state dict's ``sigmas`` buffer).
    """
    return torch.exp(
        torch.linspace(math.log(cfg.sigma_max), math.log(cfg.sigma_min), cfg.num_scales, dtype=torch.float64)
    )


class NCSNpp(nn.Module):
    """``net(x, labels)``: NCSN++ / DDPM++ on images ``x: (B, C, H, W)``.

    ``labels`` is the noise level ``sigma`` (``embedding_type="fourier"``: the network embeds
    ``log sigma``) or the timestep ``999 t`` (``"positional"``).  With ``scale_by_sigma`` the
    output is divided by ``sigma`` (Song & Ermon 2020, technique 3); with ``centered=False`` the
    input is mapped from ``[0, 1]`` to ``[-1, 1]`` first.

    Args:
        config: the paper's ``model`` / ``data`` fields (see
            :func:`~scoresde.nets.score_sde.config.parse_net_config`) with ``model.name="ncsnpp"``.
    """

    sigmas: Tensor

    def __init__(self, config: Mapping[str, Any] | ScoreSdeNetConfig) -> None:
        super().__init__()
        cfg = parse_net_config(config)
        if not isinstance(cfg, ScoreSdeNetConfig) or cfg.name != "ncsnpp":
            raise ValueError(f"NCSNpp needs model.name 'ncsnpp', got {cfg.name!r}")
        # parse_net_config requires every NCSN++ field for model.name "ncsnpp" (None only for DDPM).
        assert cfg.fir is not None and cfg.fir_kernel is not None and cfg.skip_rescale is not None
        assert cfg.init_scale is not None
        assert cfg.progressive_combine is not None
        self.cfg = cfg
        self.act = act = activation(cfg.nonlinearity)
        self.register_buffer("sigmas", discrete_sigmas(cfg))
        nf, ch_mult, n_blocks = cfg.nf, cfg.ch_mult, cfg.num_res_blocks
        n_levels = len(ch_mult)
        resolutions = [cfg.image_size // 2**i for i in range(n_levels)]
        groups = layers.ncsnpp_groups
        fir, fir_kernel, skip_rescale, init_scale = cfg.fir, cfg.fir_kernel, cfg.skip_rescale, cfg.init_scale
        combine = cfg.progressive_combine

        modules: list[nn.Module] = []
        # Time / noise-level embedding.
        if cfg.embedding_type == "fourier":
            # parse_net_config requires fourier_scale for the Fourier embedding (only for it).
            assert cfg.fourier_scale is not None
            modules.append(layers.GaussianFourierFeatures(nf, cfg.fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if cfg.conditional:
            modules += [layers.linear(embed_dim, 4 * nf), layers.linear(4 * nf, 4 * nf)]

        attn = partial(layers.AttnBlock, groups=groups, skip_rescale=skip_rescale, init_scale=init_scale)
        up = partial(layers.Upsample, with_conv=cfg.resamp_with_conv, fir=fir, fir_kernel=fir_kernel)
        down = partial(layers.Downsample, with_conv=cfg.resamp_with_conv, fir=fir, fir_kernel=fir_kernel)
        # ResnetBlockDDPM or ResnetBlockBigGAN (which also takes up= / down=).
        blocks: dict[str, Callable[..., nn.Module]] = {
            "ddpm": partial(
                layers.ResnetBlockDDPM,
                act=act,
                groups=groups,
                dropout=cfg.dropout,
                init_scale=init_scale,
                skip_rescale=skip_rescale,
                temb_dim=4 * nf,
            ),
            "biggan": partial(
                layers.ResnetBlockBigGAN,
                act=act,
                groups=groups,
                dropout=cfg.dropout,
                fir=fir,
                fir_kernel=fir_kernel,
                init_scale=init_scale,
                skip_rescale=skip_rescale,
                temb_dim=4 * nf,
            ),
        }
        block = blocks["ddpm" if cfg.resblock_type == "ddpm" else "biggan"]
        channels = cfg.num_channels

        # Downsampling path.
        modules.append(layers.conv3x3(channels, nf))
        hs_c = [nf]
        in_ch = nf
        pyramid_in_ch = channels
        for level in range(n_levels):
            for _ in range(n_blocks):
                out_ch = nf * ch_mult[level]
                modules.append(block(in_ch=in_ch, out_ch=out_ch))
                in_ch = out_ch
                if resolutions[level] in cfg.attn_resolutions:
                    modules.append(attn(channels=in_ch))
                hs_c.append(in_ch)
            if level != n_levels - 1:
                modules.append(
                    down(in_ch=in_ch) if cfg.resblock_type == "ddpm" else block(down=True, in_ch=in_ch)
                )
                if cfg.progressive_input == "input_skip":
                    modules.append(layers.Combine(pyramid_in_ch, in_ch, method=combine))
                    if combine == "cat":
                        in_ch *= 2
                elif cfg.progressive_input == "residual":
                    modules.append(
                        layers.Downsample(
                            pyramid_in_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel
                        )
                    )
                    pyramid_in_ch = in_ch
                hs_c.append(in_ch)

        # Middle.
        in_ch = hs_c[-1]
        modules += [block(in_ch=in_ch), attn(channels=in_ch), block(in_ch=in_ch)]

        # Upsampling path with the output pyramid.
        pyramid_ch = 0
        for level in reversed(range(n_levels)):
            for _ in range(n_blocks + 1):
                out_ch = nf * ch_mult[level]
                modules.append(block(in_ch=in_ch + hs_c.pop(), out_ch=out_ch))
                in_ch = out_ch
            if resolutions[level] in cfg.attn_resolutions:
                modules.append(attn(channels=in_ch))
            if cfg.progressive != "none":
                if level == n_levels - 1:
                    modules.append(layers.group_norm(in_ch, groups))
                    if cfg.progressive == "output_skip":
                        modules.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
                        pyramid_ch = channels
                    else:
                        modules.append(layers.conv3x3(in_ch, in_ch))
                        pyramid_ch = in_ch
                elif cfg.progressive == "output_skip":
                    modules.append(layers.group_norm(in_ch, groups))
                    modules.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
                    pyramid_ch = channels
                else:
                    modules.append(
                        layers.Upsample(pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel)
                    )
                    pyramid_ch = in_ch
            if level != 0:
                modules.append(
                    up(in_ch=in_ch) if cfg.resblock_type == "ddpm" else block(in_ch=in_ch, up=True)
                )
        assert not hs_c

        if cfg.progressive != "output_skip":
            modules.append(layers.group_norm(in_ch, groups))
            modules.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
        self.all_modules = nn.ModuleList(modules)
        # Attention by level, fixed at construction (the paper tests h.shape[-1], the same at image_size).
        self.attn_levels = tuple(r in cfg.attn_resolutions for r in resolutions)

    def _skip_resample(self, x: Tensor, direction: str) -> Tensor:
        """The parameter-free pyramid resampler (FIR or nearest / average), outside ``all_modules``."""
        kernel = self.cfg.fir_kernel
        if direction == "up":
            if self.cfg.fir and kernel is not None:
                return resample.upsample_2d(x, kernel)
            return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.cfg.fir and kernel is not None:
            return resample.downsample_2d(x, kernel)
        return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), 2, stride=2)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """The network output at ``x: (B, C, H, W)`` for time inputs ``labels: (B,)``."""
        cfg, modules, act = self.cfg, self.all_modules, self.act
        _check_input(x, labels, cfg)
        idx = iter(range(len(modules)))

        def nxt() -> nn.Module:
            return modules[next(idx)]

        if cfg.embedding_type == "fourier":
            used_sigmas = labels
            temb = nxt()(torch.log(labels))
        else:
            used_sigmas = self.sigmas[labels.int()]
            temb = layers.timestep_embedding(labels, cfg.nf)
        if cfg.conditional:
            temb = nxt()(temb)
            temb = nxt()(act(temb))
        else:
            temb = None
        if not cfg.centered:
            x = 2 * x - 1.0

        # Downsampling path.
        pyramid_in = x  # read only by the input_skip / residual pyramids
        hs = [nxt()(x)]
        for level in range(len(cfg.ch_mult)):
            for _ in range(cfg.num_res_blocks):
                h = nxt()(hs[-1], temb)
                if self.attn_levels[level]:
                    h = nxt()(h)
                hs.append(h)
            if level != len(cfg.ch_mult) - 1:
                h = nxt()(hs[-1]) if cfg.resblock_type == "ddpm" else nxt()(hs[-1], temb)
                if cfg.progressive_input == "input_skip":
                    pyramid_in = self._skip_resample(pyramid_in, "down")
                    h = nxt()(pyramid_in, h)
                elif cfg.progressive_input == "residual":
                    pyramid_in = nxt()(pyramid_in)
                    pyramid_in = (pyramid_in + h) / math.sqrt(2.0) if cfg.skip_rescale else pyramid_in + h
                    h = pyramid_in
                hs.append(h)

        # Middle.
        h = nxt()(hs[-1], temb)
        h = nxt()(h)
        h = nxt()(h, temb)

        # Upsampling path.
        pyramid = None
        for level in reversed(range(len(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                h = nxt()(torch.cat([h, hs.pop()], dim=1), temb)
            if self.attn_levels[level]:
                h = nxt()(h)
            if cfg.progressive != "none":
                if level == len(cfg.ch_mult) - 1:
                    pyramid = act(nxt()(h))
                    pyramid = nxt()(pyramid)
                elif cfg.progressive == "output_skip":
                    assert pyramid is not None  # set at the top level, the first one visited
                    pyramid = self._skip_resample(pyramid, "up")
                    pyramid_h = act(nxt()(h))
                    pyramid = pyramid + nxt()(pyramid_h)
                else:
                    pyramid = nxt()(pyramid)
                    pyramid = (pyramid + h) / math.sqrt(2.0) if cfg.skip_rescale else pyramid + h
                    h = pyramid
            if level != 0:
                h = nxt()(h) if cfg.resblock_type == "ddpm" else nxt()(h, temb)
        assert not hs

        if cfg.progressive == "output_skip":
            assert pyramid is not None  # built along the upsampling path
            h = pyramid
        else:
            h = act(nxt()(h))
            h = nxt()(h)
        assert next(idx, None) is None, "not every module was used"
        if cfg.scale_by_sigma:
            # The positional models index the float64 ``sigmas`` buffer, as the paper's code does:
            # divide in float64 (one rounding), return in the network's dtype.
            h = (h / used_sigmas.reshape(x.shape[0], *([1] * (x.ndim - 1)))).to(h.dtype)
        return h


def _check_input(x: Tensor, labels: Tensor, cfg: ScoreSdeNetConfig) -> None:
    size, c = cfg.image_size, cfg.num_channels
    if (
        x.ndim != 4
        or x.shape[1] != c
        or x.shape[-1] % 2 ** (len(cfg.ch_mult) - 1)
        or x.shape[-2] != x.shape[-1]
    ):
        raise ValueError(
            f"expected square images x: (B, {c}, H, H) with H divisible by 2^(levels - 1) "
            f"(H = {size} in the config), got {tuple(x.shape)}"
        )
    if labels.shape != (x.shape[0],):
        raise ValueError(f"expected labels of shape ({x.shape[0]},), got {tuple(labels.shape)}")

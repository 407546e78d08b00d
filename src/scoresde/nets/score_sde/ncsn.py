"""NCSN and NCSNv2 (Song & Ermon 2019, 2020), with the state-dict names of score_sde_pytorch's ``ncsnv2.py``.

Both are RefineNets over a noise-level *index* ``labels: (B,)`` (integers into the ``num_scales``
geometric levels ``sigmas``, largest first):

- **NCSN** (``model.name = "ncsn"``, ``configs/ve/ncsn/*``): every normalisation is
  CondInstanceNorm++ over the index; the output *is* the score ``s(x, sigma_i)`` (the paper's
  code does not divide it by ``sigma``; ``model.scale_by_sigma = False``).
- **NCSNv2** (``ncsnv2_64``, ``ncsnv2_128``, ``ncsnv2_256``; ``configs/ve/ncsnv2/*``):
  unconditional InstanceNorm++, and the output is divided by ``sigmas[labels]`` (Song & Ermon
  2020, technique 3), so the network is ``s(x, sigma_i) = f(x) / sigma_i``.  ``_128`` and
  ``_256`` are the deeper variants for 96-128 px and 129-256 px images.

With ``data.centered = false`` the input is mapped from ``[0, 1]`` to ``[-1, 1]`` first.  The
encoder halves the resolution once (NCSN, NCSNv2-64), twice (128) or three times (256); its
later stages are dilated instead.  The buffer ``sigmas`` (float64, as the paper stores it) is in
the NCSNv2 state dicts; NCSN's state dict has none, so its copy here is not persistent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from scoresde.nets.score_sde.config import NCSNNetConfig, parse_net_config
from scoresde.nets.score_sde.ncsnpp import activation, discrete_sigmas
from scoresde.nets.score_sde.refinenet import InstanceNormPlus, RefineBlock, ResidualBlock

__all__ = ["NCSN", "NCSNv2"]

# Encoder stages per network: (attribute, channel multiplier in, out, dilation of the 'down'
# block and its partner); a dilation of 1 halves the resolution.
_ENCODERS: dict[str, list[tuple[str, int, int, int]]] = {
    "64": [("res2", 1, 2, 1), ("res3", 2, 2, 2), ("res4", 2, 2, 4)],
    "128": [("res2", 1, 2, 1), ("res3", 2, 2, 1), ("res4", 2, 4, 2), ("res5", 4, 4, 4)],
    "256": [("res2", 1, 2, 1), ("res3", 2, 2, 1), ("res31", 2, 2, 1), ("res4", 2, 4, 2), ("res5", 4, 4, 4)],
}
# Decoder blocks in the paper's constructor order: (attribute, output channel multiplier,
# index of the encoder stage it refines, counted from the coarsest = 0).
_DECODERS: dict[str, list[tuple[str, int, int]]] = {
    "64": [("refine1", 2, 0), ("refine2", 2, 1), ("refine3", 1, 2), ("refine4", 1, 3)],
    "128": [("refine1", 4, 0), ("refine2", 2, 1), ("refine3", 2, 2), ("refine4", 1, 3), ("refine5", 1, 4)],
    "256": [
        ("refine1", 4, 0),
        ("refine2", 2, 1),
        ("refine3", 2, 3),
        ("refine31", 2, 2),
        ("refine4", 1, 4),
        ("refine5", 1, 5),
    ],
}


class _RefineNetScore(nn.Module):
    """The shared body of NCSN and NCSNv2 (see the module docstring)."""

    sigmas: Tensor

    def __init__(self, config: Mapping[str, Any] | NCSNNetConfig, names: tuple[str, ...]) -> None:
        super().__init__()
        cfg = parse_net_config(config)
        if not isinstance(cfg, NCSNNetConfig) or cfg.name not in names:
            raise ValueError(f"{type(self).__name__} needs model.name in {list(names)}, got {cfg.name!r}")
        self.cfg = cfg
        conditional = cfg.conditional_norms
        classes = cfg.num_scales if conditional else None
        self.register_buffer("sigmas", discrete_sigmas(cfg), persistent=not conditional)
        self.act = act = activation(cfg.nonlinearity)
        nf, c = cfg.nf, cfg.num_channels
        self.begin_conv = nn.Conv2d(c, nf, 3, padding=1)
        self.normalizer = InstanceNormPlus(nf, classes)
        self.end_conv = nn.Conv2d(nf, c, 3, padding=1)
        depth = "64" if cfg.name in ("ncsn", "ncsnv2_64") else cfg.name.split("_")[1]
        self._encoder = ["res1"] + [stage[0] for stage in _ENCODERS[depth]]
        self.res1 = nn.ModuleList(ResidualBlock(nf, nf, None, act, classes) for _ in range(2))
        mults = [1]
        for name, m_in, m_out, dilation in _ENCODERS[depth]:
            # The paper passes adjust_padding for 28 px images to NCSN(v2)-64's last stage, whose
            # blocks are dilated and so never pool: it has no effect there.
            first = ResidualBlock(m_in * nf, m_out * nf, "down", act, classes, dilation=dilation)
            second = ResidualBlock(m_out * nf, m_out * nf, None, act, classes, dilation=dilation)
            setattr(self, name, nn.ModuleList([first, second]))
            mults.append(m_out)
        self._decoder: list[tuple[str, int]] = []
        coarse_first = mults[::-1]
        prev = {k: m_out for _, m_out, k in _DECODERS[depth]}  # output multiplier per stage
        for name, m_out, k in _DECODERS[depth]:
            end = k == len(mults) - 1
            ins = [coarse_first[k] * nf] if k == 0 else [coarse_first[k] * nf, prev[k - 1] * nf]
            setattr(self, name, RefineBlock(ins, m_out * nf, act, classes, start=k == 0, end=end))
            self._decoder.append((name, k))
        self._decoder.sort(key=lambda item: item[1])

    def reset_sigmas(self) -> None:
        """Recompute the noise levels (NCSN's are not in its state dict: call after ``to_empty``)."""
        self.sigmas = discrete_sigmas(self.cfg).to(self.sigmas.device)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """The network output at ``x: (B, C, H, W)`` for noise-level indices ``labels: (B,)``."""
        cfg = self.cfg
        _check_input(x, labels, cfg)
        labels = labels.long()
        y = labels if cfg.conditional_norms else None
        h = x if cfg.centered else 2 * x - 1.0
        h = self.begin_conv(h)
        layers = []
        for name in self._encoder:
            for block in getattr(self, name):
                h = block(h, y)
            layers.append(h)
        layers = layers[::-1]  # coarsest first
        ref = None
        for name, k in self._decoder:
            ins = [layers[k]] if ref is None else [layers[k], ref]
            ref = getattr(self, name)(ins, tuple(layers[k].shape[2:]), y)
        assert ref is not None
        out = self.end_conv(self.act(self.normalizer(ref, y)))
        if cfg.conditional_norms:
            return out
        # As the paper: divided by the float64 buffer, so the output is float64 (the score
        # wrapper casts back to the input's dtype).
        return out / self.sigmas[labels].view(x.shape[0], *([1] * (x.ndim - 1)))


class NCSN(_RefineNetScore):
    """``net(x, labels)``: NCSN (Song & Ermon 2019), the score at noise-level indices ``labels``.

    Args:
        config: the paper's ``model`` / ``data`` fields with ``model.name = "ncsn"``.
    """

    def __init__(self, config: Mapping[str, Any] | NCSNNetConfig) -> None:
        super().__init__(config, ("ncsn",))


class NCSNv2(_RefineNetScore):
    """``net(x, labels)``: NCSNv2 (Song & Ermon 2020), ``f(x) / sigmas[labels]``.

    Args:
        config: the paper's ``model`` / ``data`` fields with ``model.name`` ``ncsnv2_64``,
            ``ncsnv2_128`` or ``ncsnv2_256``.
    """

    def __init__(self, config: Mapping[str, Any] | NCSNNetConfig) -> None:
        super().__init__(config, ("ncsnv2_64", "ncsnv2_128", "ncsnv2_256"))


def _check_input(x: Tensor, labels: Tensor, cfg: NCSNNetConfig) -> None:
    factor = 2 ** (3 if cfg.name == "ncsnv2_256" else 2 if cfg.name == "ncsnv2_128" else 1)
    if x.ndim != 4 or x.shape[1] != cfg.num_channels or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(
            f"expected images x: (B, {cfg.num_channels}, H, W) with H and W divisible by {factor} "
            f"(H = W = {cfg.image_size} in the config), got {tuple(x.shape)}"
        )
    if labels.shape != (x.shape[0],):
        raise ValueError(f"expected noise-level indices of shape ({x.shape[0]},), got {tuple(labels.shape)}")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError("NCSN / NCSNv2 take integer noise-level indices, got fractional labels")

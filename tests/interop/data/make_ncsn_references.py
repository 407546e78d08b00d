"""Regenerate the NCSN / NCSNv2 references from the paper's own code (see README.md here).

Run from a checkout of ``yang-song/score_sde_pytorch`` at commit ``cb1f359`` (its ``models/``
and ``sde_lib.py`` importable), with this repository's ``src`` on ``PYTHONPATH`` for the paper
config values, and the output folder as the argument::

    PYTHONPATH=/path/to/scoresde/src python make_ncsn_references.py OUT

The paper's ``models/ncsnv2.py`` cannot build these networks as released; the four patches
below (applied here at import, the paper's files untouched) are the smallest that make it run,
each what the paper's JAX code and the original NCSN / NCSNv2 code do.  Not imported by tests.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import types
from pathlib import Path

import sde_lib
import torch
from safetensors.torch import save_file

from models import layers, ncsnv2, normalization, utils
from scoresde.nets.score_sde.paper_configs import paper_config

_orig_conv3x3 = layers.ncsn_conv3x3


def _conv3x3(in_planes, out_planes, stride=1, bias=True, dilation=1, init_scale=1.0, padding=1):
    # Patch 1: the released function scales conv.bias even with bias=False (AttributeError on
    # None), so every RCU / CRP block fails; init_scale is 1 for these networks.
    # Patch 2: dilated convs get padding = dilation ("SAME"); with the released padding=1 a
    # dilated 'down' block's conv path and shortcut differ in size and cannot be added.
    conv = torch.nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, bias=bias, dilation=dilation,
        padding=dilation if dilation > 1 else padding,
    )  # fmt: skip
    assert init_scale == 1.0
    return conv


layers.ncsn_conv3x3 = _conv3x3
# Patch 3 (NCSN only): ConditionalResidualBlock's default dilation=None fails at `dilation > 1`.
_defaults = list(layers.ConditionalResidualBlock.__init__.__defaults__)
_defaults[-1] = 1
layers.ConditionalResidualBlock.__init__.__defaults__ = tuple(_defaults)

FIXTURES = {  # tag: (paper config, overrides)
    "ncsn_v1": ("ve/ncsn/cifar10", {"data.image_size": 16, "model.nf": 4}),
    "ncsnv2_64": ("ve/ncsnv2/cifar10", {"data.image_size": 16, "model.nf": 4}),
    "ncsnv2_128": ("ve/ncsnv2/bedroom", {"data.image_size": 16, "model.nf": 4}),
    "ncsnv2_256": ("ve/ncsnv2/bedroom", {"data.image_size": 32, "model.nf": 4, "model.name": "ncsnv2_256"}),
}


def _namespace(cfg: dict) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(**{k: types.SimpleNamespace(**v) for k, v in cfg.items()})
    ns.data.channels = ns.data.num_channels  # Patch 4: models/ncsnv2.py reads data.channels
    return ns


def _build(cfg: dict) -> torch.nn.Module:
    config = _namespace(cfg)
    if config.model.name == "ncsn":
        # Patch 3 (cont.): NCSN asks get_normalization(config) for the unconditional
        # InstanceNorm2dPlus and then calls it with the noise-level index; the conditional
        # one (ConditionalInstanceNorm2dPlus over model.num_scales levels) is what it needs.
        ncsnv2.get_normalization = lambda config: normalization.ConditionalInstanceNorm2dPlus
    else:
        ncsnv2.get_normalization = normalization.get_normalization
    return utils.get_model(config.model.name)(config)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    meta = {}
    for tag, (name, overrides) in FIXTURES.items():
        cfg = paper_config(name)
        for key, value in overrides.items():
            section, field = key.split(".")
            cfg[section][field] = value
        meta[tag] = {"config": name, "overrides": overrides}
        torch.manual_seed(0)
        model = _build(copy.deepcopy(cfg)).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        raw = {k: v.clone() for k, v in model.state_dict().items()}
        shadow = [
            p.detach() + 0.01 * torch.randn(p.shape, generator=gen)
            for p in model.parameters()
            if p.requires_grad
        ]
        torch.save(
            {
                "model": {"module." + k: v for k, v in raw.items()},
                "ema": {"decay": 0.999, "num_updates": 0, "shadow_params": shadow},
                "step": 0,
            },
            out / f"{tag}_checkpoint.pth",
        )
        size, m = cfg["data"]["image_size"], cfg["model"]
        sde = sde_lib.VESDE(sigma_min=m["sigma_min"], sigma_max=m["sigma_max"], N=m["num_scales"])
        x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
        t = torch.tensor([0.002, 0.3, 0.65, 1.0])
        tensors = {"x": x, "t": t, "labels": torch.round((sde.T - t) * (sde.N - 1)).long()}
        for weights in ("raw", "ema"):
            if weights == "ema":
                with torch.no_grad():
                    for p, s in zip([p for p in model.parameters() if p.requires_grad], shadow, strict=True):
                        p.copy_(s)
            score_fn = utils.get_score_fn(sde, model, train=False, continuous=False)
            with torch.no_grad():
                score = score_fn(x, t)
            tensors[f"{weights}_score"] = score.float()
            dtype = str(score.dtype).removeprefix("torch.")
        save_file(
            tensors,
            out / f"{tag}_reference.safetensors",
            metadata={
                "source": "yang-song/score_sde_pytorch@cb1f359 (patched, see README)",
                "score_dtype": dtype,
            },
        )
        print(
            tag,
            {k: tuple(v.shape) for k, v in tensors.items()},
            dtype,
            float(tensors["ema_score"].abs().max()),
        )
    (out / "ncsn_references.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    _ = functools  # kept for readers patching further

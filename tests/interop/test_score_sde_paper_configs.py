"""Every config file of score_sde_pytorch builds as the paper wrote it, and runs in any dtype.

``tests/nets/data/score_sde_pytorch_configs.json`` holds each config file of the paper's code
(``configs/**.py`` at commit ``cb1f359``, every section but ``config.device``), read by running
the file with a stand-in ``ml_collections.ConfigDict``.  Full-size networks are built on the
meta device (no memory, no weights); the dtype tests use tiny versions of the discrete configs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import scoresde as ss
from scoresde.interop.score_sde import build_score_sde, load_score_sde
from scoresde.nets.score_sde import DDPM, NCSN, NCSNpp, NCSNv2
from scoresde.nets.score_sde.config import REFINENET_NETWORKS, parse_net_config
from scoresde.nets.score_sde.paper_configs import PAPER_CONFIGS, paper_config

DATA = Path(__file__).resolve().parents[1] / "nets" / "data" / "score_sde_pytorch_configs.json"
FULL = json.loads(DATA.read_text())
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "score_sde_pytorch"
NETWORK_CLASSES = {"ddpm": DDPM, "ncsnpp": NCSNpp, "ncsn": NCSN, "ncsnv2_64": NCSNv2, "ncsnv2_128": NCSNv2}


def test_every_config_file_is_encoded() -> None:
    assert sorted(PAPER_CONFIGS) == sorted(FULL) and len(FULL) == 39
    for name, full in FULL.items():
        ours = PAPER_CONFIGS[name]
        assert ours["model"] == full["model"] and ours["data"] == full["data"], name
        assert ours["training"] == {k: full["training"][k] for k in ours["training"]}, name


@pytest.mark.parametrize("name", sorted(FULL))
def test_every_paper_config_builds_on_the_meta_device(name: str) -> None:
    """From the full config text (training, sampling, eval, optim sections included) and by name."""
    full = FULL[name]
    built = build_score_sde(full, device="meta")
    assert built.config == parse_net_config(PAPER_CONFIGS[name])  # what load_score_sde(ckpt, name) builds
    assert type(built.net) is NETWORK_CLASSES[full["model"]["name"]]
    if full["model"]["name"] in REFINENET_NETWORKS:
        # VE over discrete noise levels, also for ve/ncsn/celeba (training.loss = 'vesde', no
        # training.sde) and ve/ncsnv2/bedroom (training.continuouse = False: continuous stays true).
        assert built.sde_name == "vesde" and not built.continuous
        assert full["training"].get("sde", full["training"].get("loss")) == "vesde"
    else:
        assert (
            built.sde_name == full["training"]["sde"] and built.continuous == full["training"]["continuous"]
        )
    assert next(built.net.parameters()).device.type == "meta"
    if full["model"]["name"] == "ncsnpp" and full["model"]["embedding_type"] == "positional":
        assert "fourier_scale" not in full["model"] or built.config.fourier_scale is not None


def _tiny(name: str) -> dict:
    cfg = paper_config(name)
    cfg["data"]["image_size"] = 8
    nf = 32 if cfg["model"]["name"] == "ddpm" else 8
    cfg["model"].update(nf=nf, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4], dropout=0.0)
    return cfg


def _saved(tmp_path: Path, cfg: dict, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = build_score_sde(cfg).net
    for p in net.parameters():  # the near-zero initial layers would hide the network
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {"module." + k: v for k, v in net.state_dict().items()}, "step": 1}, path)
    return path


DISCRETE = [
    "ve/cifar10_ncsnpp",
    "ve/celeba_ncsnpp",
    "vp/cifar10_ncsnpp",
    "vp/cifar10_ddpmpp",
    "ve/cifar10_ddpm",
]


@pytest.mark.parametrize("name", DISCRETE)
def test_discrete_models_keep_the_input_dtype(name: str, tmp_path: Path) -> None:
    """float32 in, float32 out (the float64 ``sigmas`` division does not leak); float64 works too."""
    cfg = _tiny(name)
    loaded = load_score_sde(_saved(tmp_path, cfg), cfg, weights="raw")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    t = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        s32 = loaded.model.score(x, t)
        s64 = loaded.model.score(x.double(), t.double())
        assert loaded.net(x, loaded.model.labels(t)).dtype == torch.float32
    assert s32.dtype == torch.float32 and s64.dtype == torch.float64
    # float64 inputs run the float32 network: the same numbers, to float32 rounding of the output.
    scale = float(s32.abs().max())
    torch.testing.assert_close(s64.float(), s32, rtol=0, atol=1e-6 * scale)


def test_discrete_ncsnpp_samples_and_scores_likelihoods_in_float32(tmp_path: Path) -> None:
    """The paper's discrete VE NCSN++ (positional, scale_by_sigma): samplers and likelihood run."""
    cfg = _tiny("ve/cifar10_ncsnpp")
    loaded = load_score_sde(_saved(tmp_path, cfg), cfg, weights="raw")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for method in ("euler_maruyama", "pc", "dpm_solver++_2m"):
            out = ss.sample(loaded.model, loaded.sde, shape=(2, 3, 8, 8), method=method, steps=3, generator=g)
            assert out.x.dtype == torch.float32 and bool(torch.isfinite(out.x).all()), method
    x = torch.rand(1, 3, 8, 8, generator=g)
    ll = ss.log_likelihood(
        loaded.model,
        loaded.sde,
        x,
        divergence="hutchinson",
        integrator=ss.FixedStepIntegrator("euler", 2),
        generator=g,
    )
    assert ll.logp.dtype == torch.float32 and bool(torch.isfinite(ll.logp).all())


@pytest.mark.parametrize("fixture", ["ncsnpp_ve", "ddpmpp_vp", "ddpm_vp"])
def test_fixture_models_take_float64_inputs(fixture: str) -> None:
    loaded = load_score_sde(FIXTURES / fixture / "checkpoint.pth", FIXTURES / fixture / "config.json")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        s32, s64 = loaded.model.score(x, t), loaded.model.score(x.double(), t.double())
    assert s64.dtype == torch.float64
    # VP: std in float64 instead of float32 (1e-7 relative away from t = 0); network in float32.
    torch.testing.assert_close(s64.float(), s32, rtol=0, atol=2e-6 * float(s32.abs().max()))


def test_the_positional_configs_need_no_fourier_scale() -> None:
    cfg = paper_config("ve/cifar10_ncsnpp")
    assert "fourier_scale" not in cfg["model"]
    assert build_score_sde(cfg, device="meta").config.fourier_scale is None
    fourier = copy.deepcopy(paper_config("ve/cifar10_ncsnpp_continuous"))
    del fourier["model"]["fourier_scale"]
    with pytest.raises(ValueError, match=r"required field model\.fourier_scale"):
        build_score_sde(fourier, device="meta")

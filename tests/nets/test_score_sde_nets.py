"""The paper's networks (NCSN++, DDPM++, DDPM): resampling, attention, variants, large images.

Agreement with the paper's own outputs is tested in ``tests/interop/test_score_sde.py``; here are
the parts those fixtures do not reach.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from scoresde.nets import UNet
from scoresde.nets.score_sde import DDPM, NCSN, NCSNpp, NCSNv2, build_score_sde_net, layers
from scoresde.nets.score_sde import resample as R
from scoresde.nets.score_sde.paper_configs import PAPER_CONFIGS, paper_config


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The paper's formula: softmax over all pixels of q.k / sqrt(C), then the weighted sum of v."""
    b, c, h, w = q.shape
    weights = torch.einsum("bchw,bcij->bhwij", q, k) * c**-0.5
    weights = F.softmax(weights.reshape(b, h, w, h * w), dim=-1).reshape(b, h, w, h, w)
    return torch.einsum("bhwij,bcij->bchw", weights, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_equals_the_naive_formula(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 5, 5, generator=g, dtype=dtype) for _ in range(3))
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(layers.attention(q, k, v), naive_attention(q, k, v), rtol=tol, atol=tol)
    block = layers.AttnBlock(8, layers.ncsnpp_groups, skip_rescale=True, init_scale=0.3).to(dtype)
    x = torch.randn(2, 8, 4, 4, generator=g, dtype=dtype)
    hn = block.GroupNorm_0(x)
    ref = (x + block.NIN_3(naive_attention(block.NIN_0(hn), block.NIN_1(hn), block.NIN_2(hn)))) / math.sqrt(2)
    torch.testing.assert_close(block(x), ref, rtol=tol, atol=tol)


def test_unet_attention_equals_the_naive_formula() -> None:
    net = UNet(3, 8, base_channels=8, num_res_blocks=1, attn_resolutions=(4,))
    block = next(m for m in net.modules() if type(m).__name__ == "AttnBlock")
    torch.nn.init.normal_(block.proj.weight)  # zero-initialised: would hide the attention
    x = torch.randn(2, block.norm.num_channels, 4, 4)
    q, k, v = block.qkv(block.norm(x)).chunk(3, dim=1)
    ref = (x + block.proj(naive_attention(q, k, v))) / math.sqrt(2)
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


def test_fir_resampling_preserves_constants_and_reproduces_the_kernel() -> None:
    k = (1, 3, 3, 1)
    const = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(R.upsample_2d(const, k)[..., 2:-2, 2:-2], torch.tensor(3.0))
    assert torch.allclose(R.downsample_2d(const, k)[..., 1:-1, 1:-1], torch.tensor(3.0))
    # A true convolution of a unit impulse with padding returns the kernel itself (unflipped).
    kernel = torch.arange(1.0, 10.0).reshape(3, 3)
    delta = torch.zeros(1, 1, 1, 1)
    delta[..., 0, 0] = 1.0
    torch.testing.assert_close(R.upfirdn2d(delta, kernel, pad=(2, 2)), kernel.reshape(1, 1, 3, 3))
    assert R.upsample_2d(torch.randn(2, 3, 5, 7), k).shape == (2, 3, 10, 14)
    assert R.downsample_2d(torch.randn(2, 3, 6, 8), k).shape == (2, 3, 3, 4)


def test_fused_fir_convolutions_equal_resample_then_convolve() -> None:
    """StyleGAN2's fused ops equal FIR upsampling then a 'same' conv (and conv then FIR down).

    They pad once instead of twice, so they agree away from the borders.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 12, 12, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    k = (1, 3, 3, 1)
    up = R.upsample_conv_2d(x, w, k)
    ref = F.conv2d(R.upsample_2d(x, k), w, padding=1)
    assert up.shape == ref.shape == (2, 3, 24, 24)
    torch.testing.assert_close(up[..., 3:-3, 3:-3], ref[..., 3:-3, 3:-3], rtol=1e-12, atol=1e-12)
    down = R.conv_downsample_2d(x, w, k)
    ref = R.downsample_2d(F.conv2d(x, w, padding=1), k)
    assert down.shape == ref.shape == (2, 3, 6, 6)
    torch.testing.assert_close(down[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], rtol=1e-12, atol=1e-12)


def _tiny(name: str = "ve/cifar10_ncsnpp_continuous", **model) -> dict:
    cfg = paper_config(name)
    cfg["data"]["image_size"] = 16
    cfg["model"].update(nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.0, **model)
    return cfg


NETWORK_CLASSES = {"ddpm": DDPM, "ncsnpp": NCSNpp, "ncsn": NCSN, "ncsnv2_64": NCSNv2, "ncsnv2_128": NCSNv2}

VARIANTS = {
    "residual_pyramids_fir": {"progressive": "residual", "progressive_input": "residual", "fir": True},
    "residual_pyramids_nofir": {"progressive": "residual", "progressive_input": "residual", "fir": False},
    "skip_cat": {
        "progressive": "output_skip",
        "progressive_input": "input_skip",
        "progressive_combine": "cat",
    },
    "skip_nofir": {"progressive": "output_skip", "progressive_input": "input_skip", "fir": False},
    "ddpm_blocks_fir": {"resblock_type": "ddpm", "fir": True},
    "ddpm_blocks_nofir_noconv": {"resblock_type": "ddpm", "fir": False, "resamp_with_conv": False},
    "unconditional_elu": {"conditional": False, "nonlinearity": "elu", "skip_rescale": False},
    "positional_scaled": {"embedding_type": "positional", "scale_by_sigma": True},
}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_ncsnpp_variants_run_and_round_trip(variant: str) -> None:
    cfg = _tiny(**VARIANTS[variant])
    net = NCSNpp(cfg).eval()
    for p in net.parameters():  # the near-zero initial layers would hide broken branches
        torch.nn.init.normal_(p, std=0.3) if p.requires_grad else None
    x = torch.rand(2, 3, 16, 16)
    labels = (
        torch.tensor([0.5, 20.0])
        if cfg["model"]["embedding_type"] == "fourier"
        else torch.tensor([3.0, 900.0])
    )
    with torch.no_grad():
        out = net(x, labels)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert not torch.allclose(out[0], out[1])
    rebuilt = NCSNpp(copy.deepcopy(cfg)).eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, labels), out)


def test_residual_input_pyramid_uses_fused_fir_convolutions() -> None:
    """The paper's CIFAR-10 NCSN++ (progressive_input='residual') downsamples its pyramid with FIR convs."""
    with torch.device("meta"):
        net = build_score_sde_net(PAPER_CONFIGS["ve/cifar10_ncsnpp_continuous"])
    fused = [m for m in net.all_modules if isinstance(m, layers.Downsample) and hasattr(m, "Conv2d_0")]
    assert len(fused) == 3 and all(m.Conv2d_0.down for m in fused)


def test_paper_configs_build_on_the_meta_device() -> None:
    """Full-size networks by construction only; DDPM against Ho et al. 2020's 35.7M parameters.

    score_sde_pytorch's DDPM has one attention block per upsampling level, where Ho et al.'s has
    one after each of its ``num_res_blocks + 1`` blocks: two blocks fewer at 256 channels.
    """
    counts = {}
    for name, cfg in PAPER_CONFIGS.items():
        with torch.device("meta"):
            net = build_score_sde_net(cfg)
        counts[name] = sum(p.numel() for p in net.parameters())
        assert type(net) is NETWORK_CLASSES[cfg["model"]["name"]]
    attn_256 = 2 * 256 + 4 * (256 * 256 + 256)  # GroupNorm + four NIN layers
    assert round((counts["vp/ddpm/cifar10_continuous"] + 2 * attn_256) / 1e5) == 357
    assert counts["ve/ffhq_ncsnpp_continuous"] > counts["ve/celebahq_256_ncsnpp_continuous"] > 0
    # The RefineNets by size: NCSNv2-64 at nf = 128 has 29.7M parameters, NCSNv2-128 more.
    assert round(counts["ve/ncsnv2/cifar10"] / 1e5) == 297
    assert counts["ve/ncsnv2/bedroom"] > counts["ve/ncsn/cifar10"] > counts["ve/ncsnv2/cifar10"]


def _narrow(name: str) -> dict:
    cfg = paper_config(name)
    cfg["model"].update(nf=4, ch_mult=[1] * len(cfg["model"]["ch_mult"]), num_res_blocks=1)
    return cfg


@pytest.mark.parametrize(
    ("name", "size"), [("ve/celebahq_256_ncsnpp_continuous", 256), ("ve/ffhq_ncsnpp_continuous", 1024)]
)
def test_ncsnpp_at_256_and_1024_px(name: str, size: int) -> None:
    net = build_score_sde_net(_narrow(name)).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, size, size), torch.tensor([2.0]))
    assert out.shape == (1, 3, size, size) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize(("size", "levels"), [(256, 6), (1024, 8)])
def test_unet_at_256_and_1024_px(size: int, levels: int) -> None:
    net = UNet(
        3, size, base_channels=4, channel_mults=(1,) * levels, num_res_blocks=1, attn_resolutions=(16,)
    )
    torch.nn.init.normal_(net.conv_out.weight)
    with torch.no_grad():
        out = net.eval()(torch.rand(1, 3, size, size), torch.rand(1))
    assert out.shape == (1, 3, size, size) and bool(torch.isfinite(out).all()) and out.abs().sum() > 0


def test_bad_network_inputs() -> None:
    net = NCSNpp(_tiny())
    with pytest.raises(ValueError, match="expected square images"):
        net(torch.rand(2, 3, 16, 12), torch.ones(2))
    with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
        net(torch.rand(2, 3, 16, 16), torch.ones(3))
    with pytest.raises(ValueError, match=r"model\.nf must be a multiple of 32"):
        DDPM(_tiny("vp/ddpm/cifar10_continuous"))
    with pytest.raises(ValueError, match=r"NCSNpp needs model\.name 'ncsnpp'"):
        NCSNpp(paper_config("vp/ddpm/cifar10_continuous"))
    with pytest.raises(ValueError, match="unknown paper config"):
        paper_config("ve/mnist")

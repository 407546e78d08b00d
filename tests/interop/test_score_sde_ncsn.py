"""NCSN and NCSNv2 checkpoints against the paper's own code (``tests/interop/data``, see its README).

The references come from score_sde_pytorch's ``models/ncsnv2.py`` with the four smallest patches
that let it build these networks (the README lists them).  Bounds: ``rtol = 1e-5`` and
``atol = 1e-5`` times the reference's max abs, as for the shared fixtures (``test_score_sde.py``);
on the machine that made them the scores agree bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import scoresde as ss
from scoresde.interop.score_sde import PaperScoreModel, build_score_sde, load_score_sde
from scoresde.nets.score_sde import NCSN, NCSNv2
from scoresde.nets.score_sde.paper_configs import paper_config

DATA = Path(__file__).resolve().parent / "data"
META = json.loads((DATA / "ncsn_references.json").read_text())


def _config(tag: str) -> dict:
    cfg = paper_config(META[tag]["config"])
    for key, value in META[tag]["overrides"].items():
        section, field = key.split(".")
        cfg[section][field] = value
    return cfg


@pytest.mark.parametrize("tag", sorted(META))
@pytest.mark.parametrize("weights", ["raw", "ema"])
def test_ncsn_scores_match_the_paper(tag: str, weights: str) -> None:
    ref = load_file(DATA / f"{tag}_reference.safetensors")
    loaded = load_score_sde(DATA / f"{tag}_checkpoint.pth", _config(tag), weights=weights)
    assert type(loaded.net) is (NCSN if tag == "ncsn_v1" else NCSNv2)
    assert loaded.sde_name == "vesde" and not loaded.continuous
    assert torch.equal(loaded.model.labels(ref["t"]), ref["labels"])
    with torch.no_grad():
        score = loaded.model.score(ref["x"], ref["t"])
        score64 = loaded.model.score(ref["x"].double(), ref["t"].double())
    expected = ref[f"{weights}_score"]
    assert score.dtype == torch.float32 and score64.dtype == torch.float64
    scale = float(expected.abs().max())
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-5 * scale)
    # float64 times give the noise-level index in float64: (1 - t)(N - 1) can fall on the other
    # side of a tie (t = 0.3, N = 1086: 759.5 rounds to 760 from float32 t, 759 from float64 t),
    # and then the neighbouring level is used.  Elsewhere the same numbers.
    same = loaded.model.labels(ref["t"].double()) == ref["labels"]
    assert (~same).nonzero().flatten().tolist() == ([1] if META[tag]["config"] == "ve/ncsnv2/bedroom" else [])
    torch.testing.assert_close(score64[same].float(), expected[same], rtol=1e-5, atol=1e-5 * scale)


def test_ncsn_score_is_the_network_output_and_ncsnv2_divides_by_sigma() -> None:
    """NCSN's output is the score as trained; NCSNv2 divides by ``sigmas[index]`` (float64 buffer)."""
    for tag in ("ncsn_v1", "ncsnv2_64"):
        loaded = load_score_sde(DATA / f"{tag}_checkpoint.pth", _config(tag), weights="raw")
        ref = load_file(DATA / f"{tag}_reference.safetensors")
        with torch.no_grad():
            out = loaded.net(ref["x"], ref["labels"])
        assert ("sigmas" in loaded.net.state_dict()) == (tag != "ncsn_v1")
        assert out.dtype == (torch.float32 if tag == "ncsn_v1" else torch.float64)
        torch.testing.assert_close(loaded.net.sigmas[0].item(), float(_config(tag)["model"]["sigma_max"]))


def test_ncsn_fixture_samples_with_annealed_langevin_dynamics() -> None:
    """The paper's sampler for these configs (``sampling.corrector = 'ald'``, no predictor) runs."""
    loaded = load_score_sde(DATA / "ncsn_v1_checkpoint.pth", _config("ncsn_v1"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = ss.sample(
            loaded.model,
            loaded.sde,
            shape=(2, 3, 16, 16),
            method="pc",
            predictor="none",
            corrector="ald",
            steps=4,
            generator=g,
        )
    assert out.x.shape == (2, 3, 16, 16) and bool(torch.isfinite(out.x).all())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "model.normalization",
            "GroupNorm",
            r"model\.normalization for ncsnv2_64; supported: \['InstanceNorm\+\+'\]",
        ),
        ("model.scale_by_sigma", False, r"model\.scale_by_sigma for ncsnv2_64.*always divides"),
        ("model.interpolation", "nearest", r"model\.interpolation; supported: \['bilinear'\]"),
        ("model.ch_mult", [1, 2], r"unsupported config field model\.ch_mult"),
        ("data.image_size", 30, r"data\.image_size = 30 must be divisible by 4 for ncsnv2_128"),
        ("training.sde", "vpsde", r"training\.sde for NCSN / NCSNv2.*supported: \['vesde'\]"),
    ],
)
def test_refinenet_values_the_paper_would_read_differently_are_refused(
    field: str, value, message: str
) -> None:
    cfg = paper_config("ve/ncsnv2/cifar10")
    if field == "data.image_size":
        cfg["model"]["name"] = "ncsnv2_128"
    section, key = field.split(".")
    cfg[section][key] = value
    with pytest.raises(ValueError, match=message):
        build_score_sde(cfg, device="meta")


def test_ncsn_takes_only_integer_noise_levels() -> None:
    loaded = load_score_sde(DATA / "ncsn_v1_checkpoint.pth", _config("ncsn_v1"), weights="raw")
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="integer noise-level indices"):
        loaded.net(x, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="VE, discrete-time"):
        PaperScoreModel(loaded.net, loaded.sde, "vesde", continuous=True)

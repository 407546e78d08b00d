"""The paper's own checkpoints: score_sde_pytorch fixtures load and reproduce the paper's outputs.

The fixtures (``shared/fixtures/score_sde_pytorch``, beside the repository) were made by running
the paper's code; their README gives the tolerance used here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import scoresde as ss
from scoresde.interop.score_sde import load_score_sde
from scoresde.nets.score_sde import build_score_sde_net
from scoresde.sde import sde_from_dict

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "score_sde_pytorch"
NAMES = ["ncsnpp_ve", "ddpmpp_vp", "ddpm_vp"]
EPS32 = torch.finfo(torch.float32).eps


def _close(out: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def _paths(name: str) -> tuple[Path, Path]:
    return FIXTURES / name / "checkpoint.pth", FIXTURES / name / "config.json"


@pytest.fixture(scope="module")
def refs() -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(FIXTURES / name / "reference.safetensors") for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("weights", "key"), [("raw", "model_out"), ("ema", "ema_model_out")])
def test_network_outputs_match_the_paper(name: str, weights: str, key: str, refs) -> None:
    ref = refs[name]
    loaded = load_score_sde(*_paths(name), weights=weights)
    assert loaded.weights == weights and loaded.step == 3
    with torch.no_grad():
        out = loaded.net(ref["x"], ref["labels"])
    _close(out, ref[key])


@pytest.mark.parametrize("name", NAMES)
def test_score_function_matches_the_paper(name: str, refs) -> None:
    ref = refs[name]
    loaded = load_score_sde(*_paths(name))  # EMA weights, as the reference score
    with torch.no_grad():
        score = loaded.model.score(ref["x"], ref["t"])
    _close(score, ref["score"])
    # Stored float32 references computed on another CPU: its vectorised exp/sqrt may round the
    # last bit differently, so allow 4 float32 ulps of the output scale (not bit equality).
    for got, want in (
        (loaded.model.labels(ref["t"]), ref["labels"]),
        (loaded.model.std(ref["t"]), ref["marginal_std"]),
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=4 * EPS32 * float(want.abs().max()))
    # The SDE's marginal is the paper's (exactly for VE; for VP in exact arithmetic).
    _, sigma = loaded.sde.marginal(ref["t"].double())
    torch.testing.assert_close(sigma.float(), ref["marginal_std"], rtol=4e-5, atol=0)
    if name == "ncsnpp_ve":
        cfg = loaded.net.cfg
        assert loaded.sde == ss.VESDE(cfg.sigma_min, cfg.sigma_max, kernel="geometric")
        assert sde_from_dict(loaded.sde.to_dict()) == loaded.sde  # a library SDE, saved by name
    else:
        assert isinstance(loaded.sde, ss.VPSDE)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_names_order_and_counts(name: str) -> None:
    """Our keys are the paper's, in the paper's order; parameter counts match its config."""
    ckpt = torch.load(_paths(name)[0], map_location="cpu", weights_only=True)
    config = json.loads(_paths(name)[1].read_text())
    net = build_score_sde_net(config)
    theirs = [k.removeprefix("module.") for k in ckpt["model"]]
    assert list(net.state_dict()) == theirs
    for k, v in net.state_dict().items():
        assert v.shape == ckpt["model"]["module." + k].shape and v.dtype == ckpt["model"]["module." + k].dtype
    counts = config["parameter_count"]
    assert sum(p.numel() for p in net.parameters()) == counts["parameters_total"]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == counts["parameters_trainable"]
    assert net.load_state_dict({k: ckpt["model"]["module." + k] for k in theirs}, strict=True)


def test_ema_is_matched_by_the_paper_indices() -> None:
    """keys.txt lists each key's position in shadow_params; the loaded EMA weights follow it."""
    ckpt_path, config_path = _paths("ncsnpp_ve")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    loaded = load_score_sde(ckpt_path, config_path, weights="ema")
    state = loaded.net.state_dict()
    rows = [line.split() for line in (FIXTURES / "ncsnpp_ve" / "keys.txt").read_text().splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")]
    n_ema = 0
    for key, *_, ema_index, _opt in rows:
        name = key.removeprefix("module.")
        if ema_index == "-":
            # Bit equality: loading copies the stored tensors, no arithmetic.
            assert torch.equal(state[name], ckpt["model"][key])  # W and sigmas: not averaged
        else:
            assert torch.equal(state[name], ckpt["ema"]["shadow_params"][int(ema_index)])
            n_ema += 1
    assert n_ema == len(ckpt["ema"]["shadow_params"])


def _save(tmp_path: Path, obj) -> Path:
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    return path


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    ckpt_path, config_path = _paths("ddpmpp_vp")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    del ckpt["model"]["module.all_modules.3.Conv_0.weight"]
    ckpt["model"]["module.extra.weight"] = torch.zeros(2)
    with pytest.raises(
        ValueError,
        match=r"missing keys: 1 \(all_modules.3.Conv_0.weight\).*unexpected keys: 1 \(extra.weight\)",
    ):
        load_score_sde(_save(tmp_path, ckpt), config_path, weights="raw")
    # A config that builds another network: many keys listed, the first few by name.
    config = json.loads(config_path.read_text())
    config["model"]["num_res_blocks"] = 2
    with pytest.raises(ValueError, match=r"missing keys: \d+ \(all_modules\.\d+\..*, \.\.\.\)"):
        load_score_sde(ckpt_path, config)


def test_non_tensor_pickle_is_refused(tmp_path: Path) -> None:
    config_path = _paths("ddpm_vp")[1]
    path = _save(tmp_path, {"model": {}, "payload": Path("/")})  # an arbitrary Python object
    with pytest.raises(ValueError, match=r"refusing to load .*weights_only=True"):
        load_score_sde(path, config_path)


def test_ema_length_mismatch_and_missing_ema(tmp_path: Path) -> None:
    ckpt_path, config_path = _paths("ddpmpp_vp")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt["ema"]["shadow_params"] = ckpt["ema"]["shadow_params"][:-1]
    with pytest.raises(ValueError, match="EMA holds 153 shadow parameters but the network has 154"):
        load_score_sde(_save(tmp_path, ckpt), config_path)
    bare = {k: v for k, v in ckpt["model"].items()}  # a bare state dict: raw weights only
    path = _save(tmp_path, bare)
    with pytest.raises(ValueError, match="no EMA weights"):
        load_score_sde(path, config_path)
    assert load_score_sde(path, config_path, weights="raw").step is None


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "spec_norm", True, "unsupported config field model.spec_norm"),
        ("model", "nonlinearity", "gelu", "unsupported value 'gelu' of config field model.nonlinearity"),
        ("model", "name", "ncsnv2", "unsupported value 'ncsnv2' of config field model.name"),
        ("model", "progressive", "sideways", "config field model.progressive"),
        ("model", "conv_size", 5, "config field model.conv_size"),
        ("data", "image_size", 15, "config field data.image_size = 15 must be divisible"),
        ("data", "channels_last", True, "unsupported config field data.channels_last"),
        (
            "training",
            "continuous",
            False,
            r"model\.embedding_type = 'fourier' and training\.continuous = false",
        ),
        ("training", "continuous", "yes", r"training\.continuous must be true or false"),
        ("training", "sde", "edm", "unsupported value 'edm' of config field training.sde"),
    ],
)
def test_unsupported_config_is_named(section: str, key: str, value, message: str) -> None:
    ckpt_path, config_path = _paths("ncsnpp_ve")
    config = json.loads(config_path.read_text())
    config[section][key] = value
    with pytest.raises(ValueError, match=message):
        load_score_sde(ckpt_path, config)


def test_missing_fields_and_toml_and_dotted_config(tmp_path: Path, refs) -> None:
    ckpt_path, config_path = _paths("ddpmpp_vp")
    config = json.loads(config_path.read_text())
    del config["model"]["nf"]
    with pytest.raises(ValueError, match=r"required field model\.nf"):
        load_score_sde(ckpt_path, config)
    with pytest.raises(ValueError, match=r"required field training\.sde"):
        load_score_sde(ckpt_path, {"model": {}, "data": {}})
    # The same config as TOML, and as dotted keys.
    config = json.loads(config_path.read_text())
    lines = []
    for section in ("model", "data", "training"):
        lines.append(f"[{section}]")
        for k, v in config[section].items():
            lines.append(f"{k} = {json.dumps(v)}")
    toml = tmp_path / "config.toml"
    toml.write_text("\n".join(lines) + "\n")
    dotted = {f"{s}.{k}": v for s in ("model", "data", "training") for k, v in config[s].items()}
    ref = refs["ddpmpp_vp"]
    for cfg in (toml, dotted):
        with torch.no_grad():
            _close(load_score_sde(ckpt_path, cfg).model.score(ref["x"], ref["t"]), ref["score"])


def test_paper_ve_sde_is_consistent() -> None:
    """sigma(t) = sigma_min r^t, g^2 = d sigma^2 / dt, and t(lambda) inverts lambda(t)."""
    sde = ss.VESDE(0.01, 50.0, kernel="geometric")
    t = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)
    _, sigma = sde.marginal(t)
    torch.testing.assert_close(sigma, 0.01 * 5000.0**t)
    h = 1e-6
    dvar = (sde.marginal(t + h)[1] ** 2 - sde.marginal(t - h)[1] ** 2) / (2 * h)
    torch.testing.assert_close(sde.diffusion(t) ** 2, dvar, rtol=1e-6, atol=0)
    torch.testing.assert_close(sde.t_of_lambda(sde.lambda_t(t)), t)
    assert sde.prior_std() == 50.0


def test_sampling_and_likelihood_run_on_the_loaded_vp_model() -> None:
    loaded = load_score_sde(*_paths("ddpmpp_vp"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = ss.sample(
            loaded.model, loaded.sde, shape=(2, 3, 16, 16), method="dpm_solver++_2m", steps=4, generator=g
        )
    assert (
        out.x.shape == (2, 3, 16, 16) and bool(torch.isfinite(out.x).all()) and out.nfe == 5
    )  # 4 steps + the final denoising step
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    ll = ss.log_likelihood(
        loaded.model,
        loaded.sde,
        x,
        divergence="hutchinson",
        generator=g,
        integrator=ss.FixedStepIntegrator(method="euler", steps=2),
    )
    assert ll.logp.shape == (1,) and bool(torch.isfinite(ll.logp).all())
    # bits/dim of 8-bit data in the model's [-1, 1] space (uniform dequantization).
    k = torch.randint(0, 256, (1, 3, 16, 16), generator=g)
    ll = ss.log_likelihood(
        loaded.model,
        loaded.sde,
        k,
        divergence="hutchinson",
        generator=g,
        quantization=loaded.quantization,
        integrator=ss.FixedStepIntegrator(method="euler", steps=2),
    )
    assert loaded.data_range == (-1.0, 1.0)
    assert ll.bpd is not None and bool(torch.isfinite(ll.bpd).all())


def test_sampling_runs_on_the_loaded_ve_model() -> None:
    loaded = load_score_sde(*_paths("ncsnpp_ve"))
    assert loaded.data_range == (0.0, 1.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = ss.sample(
            loaded.model, loaded.sde, shape=(2, 3, 16, 16), method="euler_maruyama", steps=3, generator=g
        )
    assert out.x.shape == (2, 3, 16, 16) and bool(torch.isfinite(out.x).all())


def test_conditional_labels_are_refused() -> None:
    loaded = load_score_sde(*_paths("ddpm_vp"))
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="unconditional"):
        loaded.model.score(x, 0.5, torch.tensor([1]))


def test_a_paper_config_name_builds_its_full_size_network(tmp_path: Path) -> None:
    """A config name stands for the paper's config file; its net is the full-size one (keys checked)."""
    ckpt_path = _paths("ddpmpp_vp")[0]
    with pytest.raises(ValueError, match=r"missing keys: \d+ .*unexpected keys"):
        load_score_sde(ckpt_path, "vp/cifar10_ddpmpp_continuous")
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_score_sde(ckpt_path, str(tmp_path / "nothing.json"))


def test_the_docs_example_runs(monkeypatch) -> None:
    import re

    text = (ROOT / "docs" / "score_sde_checkpoints.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(ROOT)  # the example reaches the fixtures as ../shared/...
    namespace: dict = {}
    exec(compile(block, "score_sde_checkpoints.md", "exec"), namespace)
    assert namespace["out"].x.shape == (2, 3, 16, 16)
    assert bool(torch.isfinite(namespace["ll"].bpd).all())


def test_discrete_vp_convention(refs) -> None:
    """training.continuous = false: labels t (N - 1), std from DDPM's discrete betas.

    As the paper's ``get_score_fn``; its table is float32 (``torch.linspace`` / ``cumprod``), which
    near t = 0 is only good to about 1e-4 relative, so the reference here is float32 too.
    """
    ckpt_path, config_path = _paths("ddpmpp_vp")
    config = json.loads(config_path.read_text())
    config["training"]["continuous"] = False
    loaded = load_score_sde(ckpt_path, config)
    assert not loaded.continuous
    ref = refs["ddpmpp_vp"]
    x, t = ref["x"], ref["t"]
    n = 1000
    index = torch.floor(t * (n - 1)).long()
    betas = torch.linspace(0.1 / n, 20.0 / n, n)
    std = torch.sqrt(1 - torch.cumprod(1 - betas, 0))[index]
    exact = torch.sqrt(-torch.expm1(torch.cumsum(torch.log1p(-betas.double()), 0)))[index]
    torch.testing.assert_close(std.double(), exact, rtol=2e-4, atol=0)
    with torch.no_grad():
        expected = -loaded.net(x, t * (n - 1)) / std.float().reshape(-1, 1, 1, 1)
        _close(loaded.model.score(x, t), expected)
    # Sub-VP ignores the flag, as in the paper: labels 999 t and std 1 - exp(2 log_mean_coeff).
    config["training"]["sde"] = "subvpsde"
    sub = load_score_sde(ckpt_path, config)
    assert sub.continuous is False and sub.model.continuous and isinstance(sub.sde, ss.SubVPSDE)
    lmc = -0.25 * t.double() ** 2 * 19.9 - 0.05 * t.double()
    # float32 1 - exp(.) near t = 0: about 1e-4 relative, as in the paper.
    torch.testing.assert_close(sub.model.std(t).double(), -torch.expm1(2 * lmc), rtol=2e-4, atol=0)


def test_discrete_ve_convention(tmp_path: Path) -> None:
    """SMLD-style NCSN++: the label is the index round((1 - t)(N - 1)) into the descending sigmas."""
    config = json.loads(_paths("ncsnpp_ve")[1].read_text())
    config["model"].update(embedding_type="positional", num_scales=10)
    config["training"]["continuous"] = False
    net = build_score_sde_net(config)
    path = _save(tmp_path, {"model": net.state_dict(), "step": 0})
    loaded = load_score_sde(path, config, weights="raw")
    t = torch.tensor([0.0, 0.04, 0.5, 1.0])
    labels = loaded.model.labels(t)
    assert labels.tolist() == [9, 9, 4, 0] and labels.dtype == torch.long
    sigma = 50.0 * (0.01 / 50.0) ** (labels.double() / 9)  # the paper's get_sigmas, level i
    torch.testing.assert_close(loaded.model.std(t), sigma.float())
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score(x, t), loaded.net(x, labels))

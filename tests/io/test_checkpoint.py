"""Safetensors checkpoints: round trip, atomic writes, clear errors, no pickle."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import scoresde as ss
from scoresde.io import checkpoint as ckpt_module
from scoresde.io.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint


def _model(sde: ss.SDE | None = None) -> ss.ScoreModel:
    torch.manual_seed(0)
    net = ss.UNet(1, 8, base_channels=8, num_res_blocks=1, num_classes=3, dropout=0.0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return ss.ScoreModel(net, sde or ss.VESDE(sigma_min=0.02, sigma_max=5.0), prediction="x0", sigma_data=0.4)


def test_round_trip_weights_ema_optimizer_and_config(tmp_path) -> None:
    model = _model()
    ema = ss.EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-3, weight_decay=0.01)
    x, t, y = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        loss = model(x, t, y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    rng = torch.get_rng_state()
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        model,
        ema=ema.module,
        ema_state={"decay": 0.9, "num_updates": 2},
        optimizer=opt,
        step=2,
        train_config={"lr": 1e-3},
        rng={"torch_cpu": rng},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left behind
    raw = load_checkpoint(path, ema=False)
    averaged = load_checkpoint(path)
    assert raw.step == 2 and raw.config["train"] == {"lr": 1e-3}
    assert raw.config["sde"] == {"name": "ve", "kwargs": model.sde.config()}
    assert type(raw.model.sde) is ss.VESDE and raw.model.prediction == "x0" and raw.model.sigma_data == 0.4
    with torch.no_grad():
        # Bit equality: the same weights (loaded byte for byte) in the same network on this machine.
        torch.testing.assert_close(raw.model(x, t, y), model.eval()(x, t, y), rtol=0, atol=0)
        torch.testing.assert_close(averaged.model(x, t, y), ema.module(x, t, y), rtol=0, atol=0)
        assert not torch.equal(averaged.model(x, t, y), raw.model(x, t, y))
    # The optimiser continues identically from the restored state.
    opt2 = torch.optim.AdamW(raw.model.net.parameters(), lr=1e-3, weight_decay=0.01)
    opt2.load_state_dict(raw.optimizer_state())
    for m, o in ((model, opt), (raw.model, opt2)):
        m.train()
        loss = m(x, t, y).square().mean()
        o.zero_grad()
        loss.backward()
        o.step()
    for a, b in zip(model.net.parameters(), raw.model.net.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(raw.rng_state("torch_cpu"), rng)


def test_every_sde_round_trips(tmp_path) -> None:
    for sde in (ss.VPSDE(beta_max=15.0), ss.SubVPSDE(), ss.EDMSDE(), ss.StraightSDE(), ss.VESDE()):
        path = save_checkpoint(tmp_path / "s.safetensors", _model(sde))
        loaded = load_checkpoint(path)
        assert type(loaded.model.sde) is type(sde) and loaded.model.sde.config() == sde.config()


def test_overwrite_is_atomic_and_metadata_is_readable(tmp_path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _model(), step=1)
    save_checkpoint(path, _model(), step=5)
    meta = read_checkpoint_metadata(path)
    assert meta["step"] == 5 and meta["format"] == "scoresde-checkpoint"
    assert json.loads(json.dumps(meta)) == meta


def test_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 7)
    with pytest.raises(ValueError, match="not a valid safetensors checkpoint"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.safetensors", _model())
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(truncated)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a scoresde checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="cannot describe"):
        save_checkpoint(tmp_path / "x.safetensors", ss.ScoreModel(torch.nn.Linear(2, 2), ss.VPSDE()))


def test_no_pickle_in_checkpoint_code() -> None:
    source = inspect.getsource(ckpt_module)
    assert "torch.load(" not in source and "import pickle" not in source

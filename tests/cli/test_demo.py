"""``scoresde demo --quick`` end to end: every promised file, a sane metrics table."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

import scoresde as ss
from scoresde.cli import demo
from scoresde.cli.__main__ import main


def _run(tmp_path, capsys, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text()), capsys.readouterr().out


def test_demo_quick_writes_every_output(tmp_path, capsys) -> None:
    metrics, printed = _run(tmp_path, capsys)
    out = tmp_path / "demo"
    for name in ("samples.png", "density.png", "loss.png", "metrics.md", "config.toml"):
        assert (out / name).stat().st_size > 100, name
        assert name in printed
    for group in ("langevin", "vp", "ve"):
        gif = out / f"trajectories_{group}.gif"
        assert 1_000 < gif.stat().st_size < 2_000_000
        assert gif.name in printed
    assert str(out.resolve()) in printed
    labels = [r["label"] for r in metrics["samplers"]]
    assert {"Langevin (exact score)", "VP reverse SDE", "VP PF-ODE", "VE reverse SDE", "VE PF-ODE"} <= set(
        labels
    )
    # Rows run exactly when their method exists; the rest are reported, not replaced.
    for spec in demo.SAMPLER_TABLE:
        available = spec.model == "exact" or spec.method in ss.SAMPLERS
        assert (spec.label in labels) == available
        assert any(spec.label in s for s in metrics["skipped"]) == (not available)
    for row in metrics["samplers"]:
        assert row["finite"] and math.isfinite(row["sliced_w2"])
        assert row["nfe"] >= row["steps"]
    assert metrics["config"]["steps"] == demo.QUICK["steps"]
    table = (out / "metrics.md").read_text()
    assert "| VP PF-ODE | `euler` | 20 | 21 |" in table


def test_demo_quick_is_reproducible_and_explicit_settings_win(tmp_path, capsys) -> None:
    a, _ = _run(tmp_path / "a", capsys, "--samples", "300")
    b, _ = _run(tmp_path / "b", capsys, "--samples", "300")
    assert a["config"]["samples"] == 300
    assert [r["sliced_w2"] for r in a["samplers"]] == [r["sliced_w2"] for r in b["samplers"]]


def test_demo_likelihood_map_uses_log_likelihood_when_present(tmp_path, capsys, monkeypatch) -> None:
    # Stand in for the PF-ODE likelihood with the exact funnel density: the demo's plumbing
    # (model panel, error metric) is what is tested, so the map error must come out ~0.
    funnel = ss.Funnel(2, 1.5)

    def fake_log_likelihood(model, sde, x, **kwargs):
        assert isinstance(model, ss.ScoreFunction)
        return SimpleNamespace(logp=funnel.log_prob(x.double()))

    monkeypatch.setattr(ss, "log_likelihood", fake_log_likelihood, raising=False)
    metrics, printed = _run(tmp_path, capsys)
    assert metrics["likelihood_map_mean_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert "PF-ODE likelihood of the VP model" in printed


def test_local_langevin_samples_a_gaussian() -> None:
    # ULA on N(0, I) with step h has stationary variance 1 / (1 - h/2).
    g = torch.Generator().manual_seed(0)
    x0 = 3 * torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    x, traj = demo.langevin_dynamics_local(lambda z: -z, x0, 400, 0.1, g, record_every=100)
    assert traj.shape == (5, 20_000, 2)
    assert x.var(0).tolist() == pytest.approx([1 / (1 - 0.05)] * 2, rel=0.04)

"""``scoresde demo --quick`` end to end: every promised file, a sane metrics table."""

from __future__ import annotations

import contextlib
import io
import json
import math
from types import SimpleNamespace

import pytest
import torch

import scoresde as ss
from scoresde.cli.__main__ import main
from scoresde.experiments import funnel_demo as demo

ARGS = ["demo", "--quick", "--no-progress", "--samples", "200"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("demo") / "run"
    threads = torch.get_num_threads()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*ARGS, "--out", str(out)])
    assert torch.get_num_threads() == threads  # the demo's thread setting does not leak
    return code, out, json.loads((out / "metrics.json").read_text()), buf.getvalue()


def test_demo_quick_writes_every_output(quick_run) -> None:
    code, out, _, printed = quick_run
    assert code == 0
    for name in ("samples.png", "density.png", "loss.png", "metrics.md", "config.toml"):
        assert (out / name).stat().st_size > 100, name
        assert name in printed
    for group in ("langevin", "vp", "ve"):
        gif = out / f"trajectories_{group}.gif"
        assert 1_000 < gif.stat().st_size < 2_000_000
        assert gif.name in printed
    assert str(out.resolve()) in printed
    assert "PF-ODE likelihood of the VP model" in printed


def test_demo_quick_metrics(quick_run) -> None:
    _, out, metrics, _ = quick_run
    labels = [r["label"] for r in metrics["samplers"]]
    assert {"Langevin (exact score)", "VP reverse SDE", "VP PF-ODE", "VE reverse SDE", "VE PF-ODE"} <= set(
        labels
    )
    # Every row of the table runs, each with a sampler of the registry (none replaced by another).
    assert labels == [spec.label for spec in demo.SAMPLER_TABLE]
    for spec, row in zip(demo.SAMPLER_TABLE, metrics["samplers"], strict=True):
        assert spec.model == "exact" or spec.method in ss.SAMPLERS
        assert row["method"] == spec.method
    for row in metrics["samplers"]:
        assert row["finite"] and math.isfinite(row["sliced_w2"])
        assert row["nfe"] >= row["steps"]
    # --quick replaced the defaults; the explicit --samples won over it.
    assert metrics["config"]["steps"] == demo.QUICK["steps"]
    assert metrics["config"]["samples"] == 200
    table = (out / "metrics.md").read_text()
    assert "| VP PF-ODE | `euler` | 20 | 21 |" in table
    assert "exact samples (floor)" in table
    # The real PF-ODE likelihood map of a 60-step model: computed and finite (the model is too
    # crude for its error to be small; the default 2000-step run is about 1 nat off).
    assert math.isfinite(metrics["likelihood_map_mean_abs_error"])
    assert metrics["likelihood_map_mean_abs_error"] > 0


def test_demo_likelihood_map_and_reproducibility(quick_run, tmp_path, capsys, monkeypatch) -> None:
    # Stand in for the PF-ODE likelihood with the exact funnel density: the demo's plumbing
    # (the model panel and its error metric) is what is tested, so the error must be ~0.
    funnel = ss.Funnel(2, 1.5)

    def fake_log_likelihood(model, sde, x, **kwargs):
        assert isinstance(model, ss.ScoreFunction)
        return SimpleNamespace(logp=funnel.log_prob(x.double()))

    monkeypatch.setattr("scoresde.flow.likelihood.log_likelihood", fake_log_likelihood)
    assert main([*ARGS, "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["likelihood_map_mean_abs_error"] == pytest.approx(0.0, abs=1e-9)
    assert "PF-ODE likelihood of the VP model" in capsys.readouterr().out
    # Same settings and seed as the first run: the same samples, so the same metrics.
    first = quick_run[2]["samplers"]
    assert [r["sliced_w2"] for r in metrics["samplers"]] == [r["sliced_w2"] for r in first]

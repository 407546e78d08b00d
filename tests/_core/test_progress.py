"""Progress reports: bars only on a terminal, a few lines with rate and ETA in a log file."""

from __future__ import annotations

import io

import pytest
import torch

import scoresde as ss
import scoresde._core.progress as progress_module
from scoresde._core.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_tty_sampling_output_stays_small(capsys, gmm2d) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    ss.sample(oracle, shape=(4, 2), method="euler", steps=1000, seed=0, progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 11 and len(err) < 1500  # ~ every 10% of 1000 steps, no bar redraws
    assert "\r" not in err and lines[-1].startswith("euler: 1000/1000 (100%)")
    assert "it/s" in lines[-1] and "eta" in lines[-1] and "nfe=1000" in lines[-1]


def test_lines_by_time_and_tty_bar(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    p = Progress(total=100, desc="job", every_seconds=10.0, stream=out)
    for _ in range(50):
        now[0] += 1.0
        p.update(1)
    now[0] += 1.0
    p.update(1)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 + 1  # at 10, 20, 30, 40, 50 s, and the final line at 51 s
    assert lines[-1].startswith("job: 51/100 (51%)")
    assert lines[0] == "job: 10/100 (10%) 1 it/s elapsed 0:10 eta 1:30"
    tty = _Tty()
    with Progress(total=3, desc="bar", stream=tty) as bar:
        assert bar.mode == "bar"
        bar.update(3)
    assert "\r" in tty.getvalue()  # tqdm drew on the terminal
    silent = io.StringIO()
    with Progress(total=3, mode=False, stream=silent) as off:
        off.update(3)
    assert silent.getvalue() == ""
    with pytest.raises(ValueError, match="unknown progress mode 'loud'"):
        Progress(mode="loud")


def test_time_budget_shortens_the_eta(monkeypatch) -> None:
    """``train --minutes``: the ETA is the time budget left when it ends before the steps do."""
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    p = Progress(total=1000, desc="run", every_seconds=10.0, stream=out, time_limit=60.0)
    for _ in range(10):
        now[0] += 1.0
        p.update(1)
    assert out.getvalue().splitlines()[0] == "run: 10/1000 (1%) 1 it/s elapsed 0:10 eta 0:50 (time budget)"
    fast = Progress(total=20, desc="run", stream=io.StringIO(), time_limit=60.0)
    now[0] += 1.0
    fast.update(10)
    assert fast.line().endswith("eta 0:01")  # the steps end first: the usual ETA


def test_likelihood_reports_progress(capsys, gmm2d) -> None:
    sde = ss.VPSDE()
    x = gmm2d.sample(8, torch.Generator().manual_seed(0))
    ss.log_likelihood(ss.AnalyticScore(gmm2d, sde), sde, x, progress="log")
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 12
    assert lines[-1].startswith("likelihood: 1/1 (100%)") and "nfe=" in lines[-1]


def test_trainer_logs_fit_a_file(capsys) -> None:
    net = ss.MLP(2, hidden=16, depth=1)
    model = ss.ScoreModel(net, ss.VPSDE(), prediction="eps")
    ss.fit(
        model,
        torch.randn(64, 2, generator=torch.Generator().manual_seed(0)),
        steps=200,
        batch_size=16,
        progress=True,
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) <= 11 and "train: 200/200 (100%)" in err

"""The progressive distillation run (:class:`ProgressiveDistiller`): a conditional teacher's labels,
the rounds' grids and teachers, and the settings' named errors."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.distill import progressive_run
from scoresde.distill.make import make_distiller
from scoresde.distill.run import DistillConfig
from scoresde.io.checkpoint import save_checkpoint
from scoresde.sampling.grids import time_grid


@pytest.fixture(scope="module")
def conditional_ckpt(tmp_path_factory) -> str:
    """An untrained class-conditional MLP on flattened 8x8 digits, saved as `scoresde train` would."""
    from scoresde.data.images import load_digits

    data = load_digits(0.1, 0)
    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(64, hidden=16, depth=1, num_classes=10), ss.VPSDE(), prediction="eps")
    ema = ss.ScoreModel(ss.MLP(64, hidden=16, depth=1, num_classes=10), ss.VPSDE(), prediction="eps")
    ema.load_state_dict(model.state_dict())
    run = tmp_path_factory.mktemp("cond_run")
    save_checkpoint(
        run / "checkpoints" / "last.safetensors",
        model,
        ema=ema,
        step=1,
        train_config={"test_fraction": 0.1, "seed": 0, "net": "mlp"},
        data_info=data.info(),
    )
    return str(run)


def test_a_conditional_teacher_gets_the_labels_and_each_round_its_grid(
    conditional_ckpt, tmp_path, monkeypatch
) -> None:
    seen: list[tuple[int, bool, int]] = []
    real = progressive_run.progressive_loss

    def spy(student, teacher, x0, ts, y=None, generator=None, weighting="truncated_snr"):
        seen.append((ts.numel() - 1, y is not None and y.shape == x0.shape[:1], id(teacher)))
        return real(student, teacher, x0, ts, y=y, generator=generator, weighting=weighting)

    monkeypatch.setattr(progressive_run, "progressive_loss", spy)
    config = DistillConfig(
        conditional_ckpt, method="progressive", rounds=2, steps=2, batch_size=4, out=str(tmp_path), name="r"
    )
    assert config.teacher_steps == 8 and config.schedule == "linear" and config.weighting == "truncated_snr"
    distiller = make_distiller(config)
    assert isinstance(distiller, progressive_run.ProgressiveDistiller)
    first = id(distiller.teacher)
    result = distiller.fit()
    assert result.step == 4 and len(result.losses) == 4
    # Rounds of 8 then 4 teacher steps; labels every step; round 2's teacher is round 1's EMA.
    assert [n for n, _, _ in seen] == [8, 8, 4, 4] and all(has for _, has, _ in seen)
    assert seen[0][2] == seen[1][2] == first and seen[2][2] == seen[3][2] != first
    ts = time_grid(distiller.first_teacher.sde, 8, "logsnr")
    assert torch.equal(distiller.grid, ts[::2]) and distiller.extra["progressive"]["steps"] == 2
    # The linear schedule decays to 0 within each round: the last step of round 2 runs at lr / 2.
    assert distiller.last_lr == pytest.approx(config.lr / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rounds": 0}, "rounds must be a positive integer"),
        ({"rounds": 2, "teacher_steps": 6}, "not divisible by 2\\*\\*rounds = 4"),
        ({"teacher_steps": 1}, "teacher_steps must be an integer >= 2"),
        ({"weighting": "inverse_step"}, "unknown progressive weighting"),
        ({"grid": "karras"}, "unknown grid"),
        ({"method": "reflow"}, "unknown distillation method"),
    ],
)
def test_bad_settings_give_named_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        DistillConfig("teacher", **{"method": "progressive", **kwargs})


# ---- the time budget (``minutes``) ------------------------------------------------------------- #
class _StepClock:
    """A fake clock for the time budget (:class:`~scoresde.train.schedule.TimeBudget`): one second
    per optimiser step, so that time places the rounds' ends deterministically."""

    def __init__(self, monkeypatch) -> None:
        from types import SimpleNamespace

        from scoresde.distill.run import DistillRun
        from scoresde.train import schedule

        self.now = 0.0
        finish = DistillRun._finish_step

        def tick(run, *args):
            self.now += 1.0
            return finish(run, *args)

        monkeypatch.setattr(DistillRun, "_finish_step", tick)
        monkeypatch.setattr(schedule, "time", SimpleNamespace(perf_counter=lambda: self.now))


def _rates(run) -> list[float]:
    import json

    return [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _budgeted(teacher: str, tmp_path, name: str, **kwargs) -> DistillConfig:
    options = {"rounds": 2, "steps": 100, "minutes": 0.125, "batch_size": 4, "log_every": 1}
    return DistillConfig(teacher, method="progressive", out=str(tmp_path), name=name, **{**options, **kwargs})


def test_a_budget_splits_over_the_rounds_and_the_rate_decays_over_each_share(
    conditional_ckpt, tmp_path, monkeypatch
) -> None:
    # 7.5 s for 2 rounds: round 1's share is 3.75 s (4 steps), round 2's what is left then,
    # (7.5 - 4) s (4 steps); each round's linear rate decays over its share, not over steps = 100.
    _StepClock(monkeypatch)
    config = _budgeted(conditional_ckpt, tmp_path, "b")
    result = make_distiller(config).fit()
    assert result.step == 8
    rates = _rates(tmp_path / "b")
    expected = [config.lr * (1 - i / 3.75) for i in range(4)] + [config.lr * (1 - i / 3.5) for i in range(4)]
    assert rates == pytest.approx(expected, rel=1e-12)
    # Each round's end is saved; the last is round 2's student, for 8 / 2**2 = 2 DDIM steps.
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("step_*"))
    assert names == ["step_0000004.safetensors", "step_0000008.safetensors"]
    from scoresde.io.checkpoint import read_checkpoint_metadata

    first = read_checkpoint_metadata(tmp_path / "b" / "checkpoints" / names[0])["extra"]["progressive"]
    last = read_checkpoint_metadata(tmp_path / "b" / "checkpoints" / "last.safetensors")["extra"][
        "progressive"
    ]
    assert (first["round"], first["steps"], first["round_start"], first["round_done"]) == (1, 4, 0, True)
    assert (last["round"], last["steps"], last["round_start"], last["round_done"]) == (2, 2, 4, True)
    assert (last["round_seconds"], last["run_seconds"]) == (4.0, 8.0)


def test_a_budgeted_run_resumed_mid_round_continues_that_round_with_the_rest_of_its_share(
    conditional_ckpt, tmp_path, monkeypatch
) -> None:
    from safetensors.torch import load_file

    _StepClock(monkeypatch)
    make_distiller(_budgeted(conditional_ckpt, tmp_path, "straight", save_every=2)).fit()
    ckpts = tmp_path / "straight" / "checkpoints"
    final = load_file(ckpts / "last.safetensors")
    # Step 6 is round 2's second step (the round started after step 4); step 4 ends round 1.
    for step in (6, 4):
        resumed = make_distiller(_budgeted(conditional_ckpt, tmp_path, f"from{step}", save_every=2))
        assert resumed.resume(ckpts / f"step_000000{step}.safetensors") == step
        assert (resumed.round, resumed.round_start, resumed.round_done) == (
            (1, 4, False) if step == 6 else (0, 0, True)
        )
        assert resumed.fit().step == 8
        again = load_file(tmp_path / f"from{step}" / "checkpoints" / "last.safetensors")
        # With this clock, time places the same ends: the same run (teacher, student, EMA, optimiser).
        assert sorted(again) == sorted(final) and all(torch.equal(again[k], final[k]) for k in final)
    # The finished run resumes only with more rounds.
    with pytest.raises(ValueError, match="ends the run's 2 round\\(s\\): resume with more --rounds"):
        make_distiller(_budgeted(conditional_ckpt, tmp_path, "again")).resume(ckpts / "last.safetensors")


def test_a_consistency_budget_stops_the_run_and_decays_its_rate(
    conditional_ckpt, tmp_path, monkeypatch
) -> None:
    _StepClock(monkeypatch)
    config = DistillConfig(
        conditional_ckpt, steps=100, minutes=0.0625, schedule="linear", final_lr=0.0, batch_size=4,
        num_scales=4, groups=2, log_every=1, out=str(tmp_path), name="c",
    )  # fmt: skip
    assert make_distiller(config).fit().step == 4  # 3.75 s of one-second steps
    from scoresde.io.checkpoint import read_checkpoint_metadata

    assert read_checkpoint_metadata(tmp_path / "c" / "checkpoints" / "last.safetensors")["step"] == 4
    assert _rates(tmp_path / "c") == pytest.approx([config.lr * (1 - i / 3.75) for i in range(4)], rel=1e-12)


@pytest.mark.parametrize("minutes", [0, 0.0, -1.0, float("nan"), float("inf"), True, "5"])
@pytest.mark.parametrize("method", ["consistency", "progressive"])
def test_bad_minutes_give_named_errors(minutes, method) -> None:
    with pytest.raises(ValueError, match="minutes must be a positive, finite number of minutes"):
        DistillConfig("teacher", method=method, minutes=minutes)

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

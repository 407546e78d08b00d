"""Fixtures shared by the CLI tests: a tiny digits checkpoint saved as `scoresde train` saves one."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.io.checkpoint import save_checkpoint


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory) -> str:
    """A run folder holding an MLP on flattened 8x8 digits, barely trained (10 steps), saved the
    way `scoresde train --net mlp` saves it (with the data split's settings)."""
    from scoresde.data.images import load_digits

    data = load_digits(0.1, 0)
    torch.manual_seed(0)  # the initial weights (torch's own initial seed is random per process)
    model = ss.ScoreModel(ss.MLP(64, hidden=32, depth=2), ss.VPSDE(), prediction="eps")
    train = data.train.flatten(1)
    fit = ss.fit(
        model,
        lambda n, g: train[torch.randint(0, train.shape[0], (n,), generator=g)],
        steps=10,
        batch_size=64,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    run = tmp_path_factory.mktemp("digits_run")
    save_checkpoint(
        run / "checkpoints" / "last.safetensors",
        model,
        ema=fit.ema_model,
        step=10,
        train_config={"test_fraction": 0.1, "seed": 0, "net": "mlp"},
        data_info=data.info(),
    )
    return str(run)

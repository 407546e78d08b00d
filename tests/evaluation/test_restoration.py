"""Restoration errors: hidden-pixel MSE, known-pixel change, gray-value error, SMC diagnostics."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from scoresde.evaluation.restoration import colorization_errors, inpainting_errors, smc_diagnostics


def test_inpainting_errors_by_hand() -> None:
    images = torch.zeros(2, 1, 2, 2)
    mask = torch.tensor([[[True, False], [True, True]]])  # one hidden pixel of four
    samples = torch.zeros(3, 2, 1, 2, 2)
    samples[0, :, 0, 0, 1] = 1.0  # sample 0 misses the hidden pixel by 1
    samples[1, :, 0, 0, 0] = 0.5  # sample 1 moves a known pixel
    e = inpainting_errors(samples, images, mask, torch.full((1, 2, 2), 2.0))
    assert e["hidden_fraction"] == 0.25
    assert e["mse_hidden"] == pytest.approx(1 / 3)
    assert e["mse_hidden_of_sample_mean"] == pytest.approx(1 / 9)
    assert e["mse_hidden_mean_image_baseline"] == pytest.approx(4.0)
    assert e["max_abs_error_known"] == pytest.approx(0.5)


def test_colorization_errors_by_hand() -> None:
    images = torch.zeros(1, 3, 2, 2)
    gray = images.mean(1, keepdim=True)
    samples = torch.zeros(1, 1, 3, 2, 2)
    samples[0, 0, 0] = 3.0  # channel mean 1 off the gray value; a third of the values out of range
    e = colorization_errors(samples, images, gray)
    assert e["max_abs_gray_error"] == pytest.approx(1.0)
    assert e["fraction_in_range"] == pytest.approx(2 / 3)
    assert e["mse_to_original"] == pytest.approx(3.0) and e["mse_gray_baseline"] == 0.0
    assert "mse_to_original" not in colorization_errors(samples[:, :, :1], gray, gray)


def test_smc_diagnostics() -> None:
    res = SimpleNamespace(
        particles=torch.zeros(2, 4, 3),
        ess=torch.tensor([[4.0, 2.0], [3.0, 1.0]]),
        resampled=torch.tensor([[False, True], [True, True]]),
        log_evidence=torch.tensor([-1.0, -3.0]),
    )
    d = smc_diagnostics(res)
    assert d == {
        "particles": 4,
        "ess_final_mean": 2.0,
        "ess_min": 1.0,
        "ess_mean": 2.5,
        "resampling_steps_mean": 1.5,
        "log_evidence_mean": -2.0,
    }

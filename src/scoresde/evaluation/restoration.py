"""How well images were restored: inpainting and colorization errors, SMC weight diagnostics.

Samples come as ``(K, N, C, H, W)`` (``K`` restorations of each of ``N`` images) in ``[-1, 1]``,
beside the original images ``(N, C, H, W)``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["colorization_errors", "inpainting_errors", "smc_diagnostics"]


def inpainting_errors(samples: Tensor, images: Tensor, mask: Tensor, mean_image: Tensor) -> dict[str, float]:
    """Errors of inpaintings (Song et al. 2021, App. I.2); ``mask: (C, H, W)``, true = known.

    Returns the hidden fraction, the mean squared error on the hidden pixels of each sample
    (``mse_hidden``) and of the mean of the ``K`` samples (a posterior-mean estimate), that of
    filling them with ``mean_image`` (the training images' mean, a baseline), and the largest
    change of a known pixel.
    """
    hidden = ~mask
    return {
        "hidden_fraction": float(hidden.float().mean()),
        "mse_hidden": float(((samples - images) ** 2)[:, :, hidden].mean()),
        "mse_hidden_of_sample_mean": float(((samples.mean(0) - images) ** 2)[:, hidden].mean()),
        "mse_hidden_mean_image_baseline": float(((mean_image - images) ** 2)[:, hidden].mean()),
        "max_abs_error_known": float((samples - images)[:, :, mask].abs().max()),
    }


def colorization_errors(samples: Tensor, images: Tensor, gray: Tensor) -> dict[str, float]:
    """Errors of colorizations (Song et al. 2021, App. I.3) of ``gray: (N, 1, H, W)``.

    The largest deviation of a sample's channel mean from the gray input, the fraction of
    values within ``[-1.05, 1.05]`` and, for colour originals, the mean squared error to them
    beside that of the gray image itself.
    """
    out = {
        "max_abs_gray_error": float((samples.mean(dim=2, keepdim=True) - gray).abs().max()),
        "fraction_in_range": float(((samples >= -1.0 - 0.05) & (samples <= 1.0 + 0.05)).float().mean()),
    }
    if images.shape[1] == 3:
        out["mse_to_original"] = float(((samples - images) ** 2).mean())
        out["mse_gray_baseline"] = float(((gray.expand_as(images) - images) ** 2).mean())
    return out


def smc_diagnostics(res: Any) -> dict[str, Any]:
    """The particle count, effective sample sizes, resampling and evidence of an
    :class:`~scoresde.guidance.smc.SMCResult` (``ess``: ``(steps, B)``)."""
    ess = res.ess.double()
    return {
        "particles": int(res.particles.shape[1]),
        "ess_final_mean": float(ess[-1].mean()),
        "ess_min": float(ess.min()),
        "ess_mean": float(ess.mean()),
        "resampling_steps_mean": float(res.resampled.double().sum(0).mean()),
        "log_evidence_mean": float(res.log_evidence.double().mean()),
    }

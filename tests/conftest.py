"""Shared fixtures: the three SDEs of the paper and small exact mixtures."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss

torch.set_num_threads(1)  # small tensors: one thread avoids oversubscription on shared CI cores


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs on one torch thread, and a test that changes the count cannot leak it."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_global_rng() -> None:
    """Tests that draw from torch's global RNG (e.g. a network's initial weights) repeat exactly.

    torch 2.13 starts its global generator from a random seed in every process, so without this a
    test's outcome could change from run to run.  The library's own draws take explicit generators.
    """
    torch.manual_seed(0)


def all_sdes() -> list[ss.SDE]:
    return [ss.VESDE(sigma_min=0.01, sigma_max=10.0), ss.VPSDE(), ss.SubVPSDE()]


SDE_IDS = ["ve", "vp", "subvp"]


@pytest.fixture(params=all_sdes(), ids=SDE_IDS)
def sde(request) -> ss.SDE:
    return request.param


@pytest.fixture
def gmm2d() -> ss.GaussianMixture:
    """A 2-D three-component mixture with full, anisotropic covariances."""
    means = [[-1.0, 0.5], [1.0, 1.0], [0.5, -1.0]]
    covs = [
        [[0.10, 0.03], [0.03, 0.05]],
        [[0.04, -0.01], [-0.01, 0.09]],
        [[0.02, 0.0], [0.0, 0.02]],
    ]
    return ss.GaussianMixture([0.5, 0.3, 0.2], means, covs)

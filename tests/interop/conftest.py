"""Tiny randomly initialised diffusers ``UNet2DModel``s (seeded, no download) for the interop tests."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip(
    "diffusers", reason="the diffusers extra is not installed (pip install scoresde[diffusers])"
)


def tiny_unet(fourier: bool = False, num_class_embeds: int | None = None, seed: int = 0) -> torch.nn.Module:
    """A 1-channel 8x8 ``UNet2DModel`` with two small levels, in eval mode."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        time_embedding_type="fourier" if fourier else "positional",
        num_class_embeds=num_class_embeds,
    )
    return unet.eval()


@pytest.fixture(scope="session")
def unet() -> torch.nn.Module:
    return tiny_unet()

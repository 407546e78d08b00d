"""The data range of a diffusers model comes from its pipeline class (or, alone, its scheduler).

Each test saves a tiny random-weight pipeline with ``save_pretrained`` into a temporary folder
and reads it back the way the CLI does (:func:`scoresde.io.sources.load_source`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scoresde.interop.diffusers import PIPELINE_DATA_RANGES, load_diffusers
from scoresde.io.sources import load_source
from tests.interop.conftest import diffusers, tiny_unet

PIPELINES = {
    "DDPMPipeline": ("DDPMScheduler", (-1.0, 1.0)),
    "DDIMPipeline": ("DDIMScheduler", (-1.0, 1.0)),
    "PNDMPipeline": ("PNDMScheduler", (-1.0, 1.0)),
    "ScoreSdeVePipeline": ("ScoreSdeVeScheduler", (0.0, 1.0)),
}


def _save_pipeline(folder: Path, pipeline: str, scheduler: str) -> Path:
    unet = tiny_unet(fourier=scheduler == "ScoreSdeVeScheduler")
    sched = getattr(diffusers, scheduler)(
        **({} if scheduler == "ScoreSdeVeScheduler" else {"num_train_timesteps": 50})
    )
    getattr(diffusers, pipeline)(unet=unet, scheduler=sched).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_each_pipeline_class_gives_its_data_range(pipeline: str, tmp_path: Path) -> None:
    scheduler, expected = PIPELINES[pipeline]
    assert PIPELINE_DATA_RANGES[pipeline] == expected
    folder = _save_pipeline(tmp_path / pipeline, pipeline, scheduler)
    loaded = load_diffusers(folder)
    assert loaded.data_range == expected and loaded.data_range_source == f"pipeline {pipeline}"
    _, info = load_source(f"diffusers:{folder}")  # what the CLI reads
    assert info.data_range == expected
    assert info.config["data_range_source"] == f"pipeline {pipeline}"


@pytest.mark.parametrize(
    ("scheduler", "expected"), [("ScoreSdeVeScheduler", (0.0, 1.0)), ("DDIMScheduler", (-1.0, 1.0))]
)
def test_a_model_folder_takes_its_schedulers_range(scheduler: str, expected, tmp_path: Path) -> None:
    unet = tiny_unet(fourier=scheduler == "ScoreSdeVeScheduler")
    unet.save_pretrained(tmp_path)
    getattr(diffusers, scheduler)().save_pretrained(tmp_path)
    _, info = load_source(f"diffusers:{tmp_path}")
    assert info.data_range == expected and info.config["data_range_source"].startswith(
        f"scheduler {scheduler}"
    )


def test_an_unknown_pipeline_class_warns_and_an_explicit_range_wins(tmp_path: Path) -> None:
    folder = _save_pipeline(tmp_path / "p", "ScoreSdeVePipeline", "ScoreSdeVeScheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "MyCustomPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="MyCustomPipeline.*assuming \\[0.0, 1.0\\].*data_range="):
        loaded = load_diffusers(folder)
    assert loaded.data_range == (0.0, 1.0)
    loaded = load_diffusers(folder, data_range=(-2.0, 2.0))
    assert loaded.data_range == (-2.0, 2.0) and loaded.data_range_source == "given"
    with pytest.raises(ValueError, match="low < high"):
        load_diffusers(folder, data_range=(1.0, 0.0))


def test_the_score_sde_ve_range_reaches_the_cli_image_maps(tmp_path: Path) -> None:
    """Samples of a ScoreSdeVe model in [0, 1] become [-1, 1] pictures, not clipped halves."""
    from scoresde.data.model_range import from_model_range, to_model_range

    folder = _save_pipeline(tmp_path / "ve", "ScoreSdeVePipeline", "ScoreSdeVeScheduler")
    _, info = load_source(f"diffusers:{folder}")
    x = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8)
    pictures = from_model_range(x, info)
    assert float(pictures.min()) == -1.0 and float(pictures.max()) == 1.0
    torch.testing.assert_close(to_model_range(pictures, info), x)

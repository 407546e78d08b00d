"""Discrete-time paper checkpoints against the paper's own code (``tests/interop/data``, see its README).

Bounds: ``rtol = 1e-5`` and ``atol = 1e-5`` times the reference's max abs, as for the shared
fixtures (``test_score_sde.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scoresde.interop.score_sde import load_score_sde
from scoresde.nets.score_sde.paper_configs import paper_config

DATA = Path(__file__).resolve().parent / "data"
META = json.loads((DATA / "discrete_references.json").read_text())


def _config(tag: str) -> dict:
    cfg = paper_config(META[tag]["config"])
    for key, value in META[tag]["overrides"].items():
        section, field = key.split(".")
        cfg[section][field] = value
    return cfg


@pytest.mark.parametrize("tag", sorted(META))
@pytest.mark.parametrize("weights", ["raw", "ema"])
def test_discrete_scores_match_the_paper(tag: str, weights: str) -> None:
    ref = load_file(DATA / f"{tag}_reference.safetensors")
    loaded = load_score_sde(DATA / f"{tag}_checkpoint.pth", _config(tag), weights=weights)
    assert not loaded.continuous
    with torch.no_grad():
        score = loaded.model.score(ref["x"], ref["t"])
        score64 = loaded.model.score(ref["x"].double(), ref["t"].double())
    expected = ref[f"{weights}_score"]
    assert score.dtype == torch.float32 and score64.dtype == torch.float64
    scale = float(expected.abs().max())
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(score64.float(), expected, rtol=1e-5, atol=1e-5 * scale)

"""The README-ready snippet of docs/interop.md runs on a pipeline folder saved here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from tests.interop.conftest import diffusers, tiny_unet

DOC = Path(__file__).resolve().parents[2] / "docs" / "interop.md"


@pytest.mark.slow  # about 60 s here: the Hutchinson likelihood of an untrained UNet takes many steps
def test_interop_snippet_runs_on_a_saved_pipeline(tmp_path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler()).save_pretrained(
        tmp_path / "my-ddpm"
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__interop_doc__"}
    exec(compile(blocks[0], "docs/interop.md", "exec"), namespace)
    assert namespace["images"].shape == (4, 1, 8, 8) and namespace["out"].nfe == 21
    bpd = namespace["ll"].bpd
    assert bpd.shape == (4,) and bool(torch.isfinite(bpd).all()) and math.isfinite(namespace["ll"].bpd_mean)
    assert "bits/dim" in capsys.readouterr().out

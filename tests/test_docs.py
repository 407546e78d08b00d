"""The documentation runs: the API examples page and the scripts under examples/ (quick modes)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_api_examples_run(tmp_path, monkeypatch, capsys, one_thread) -> None:
    blocks = python_blocks(ROOT / "docs" / "api_examples.md")
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__api_examples__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"api_examples.md block {i}", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"docs/api_examples.md, python block {i} failed:\n{block}") from err
    assert "trajectory.gif" in capsys.readouterr().out


def test_quickstart_runs(tmp_path, monkeypatch, one_thread) -> None:
    monkeypatch.chdir(tmp_path)
    result = runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__not_main__")
    values = result["main"](["--quick"])
    assert set(values) == {"euler_maruyama", "euler"}
    assert all(0 < v < 5.0 for v in values.values())  # finite distances
    assert (tmp_path / "runs" / "quickstart" / "quickstart.png").stat().st_size > 10_000


def test_gmm_oracle_error_falls_with_steps(one_thread) -> None:
    result = runpy.run_path(str(ROOT / "examples" / "gmm_oracle.py"), run_name="__not_main__")
    table = result["main"](["--quick"])
    for method in ("euler_maruyama", "euler"):
        assert table[method, 64] < table[method, 4]


def test_example_config_file_is_valid(tmp_path) -> None:
    import argparse

    from scoresde.cli import demo
    from scoresde.cli.config import resolve

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    cfg = resolve(
        parser.parse_args(["--config", str(ROOT / "examples" / "demo_config.toml")]), demo.OPTIONS, "demo"
    )
    assert (cfg["seed"], cfg["name"], cfg["funnel_scale"]) == (1, "funnel-wide", 2.0)


def test_concept_pages_exist_and_link() -> None:
    for page in ("sdes", "samplers", "likelihood", "guidance"):
        text = (ROOT / "docs" / "concepts" / f"{page}.md").read_text()
        assert "Song et al. 2021" in text
    gallery = (ROOT / "docs" / "gallery.md").read_text()
    for image in re.findall(r"\]\((img/[^)]+)\)", gallery):
        assert (ROOT / "docs" / image).is_file(), image


def test_readme_python_blocks_run(tmp_path, monkeypatch, one_thread) -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    x3 = namespace["x3"]
    # The guided samples sit on component 3 of the ring (radius 2, angle 3 * 45 degrees).
    angle = torch.atan2(x3[:, 1], x3[:, 0]).mean()
    assert abs(float(angle) - 3 * torch.pi / 4) < 0.05

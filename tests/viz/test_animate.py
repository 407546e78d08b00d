"""Trajectory GIFs: frame count, panel layout, points where they should be, size limits."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from scoresde.viz import animate_trajectories, animate_trajectory


def test_gif_frames_and_points(tmp_path) -> None:
    r, b = 30, 50
    traj = torch.zeros(r, b, 2)
    traj[:, :, 0] = torch.linspace(-1, 1, r)[:, None]  # all points move from left to right
    path = animate_trajectories(
        {"a": traj, "b": traj[::3]}, tmp_path / "t.gif", (-2, 2, -2, 2), frames=10, size=100, radius=0
    )
    gif = Image.open(path)
    assert gif.n_frames == 10
    assert gif.size == (2 * 106 + 6, 100 + 30 + 6)

    def blue_columns(frame: int) -> list[int]:
        gif.seek(frame)
        rgb = gif.convert("RGB")
        return [x for x in range(6, 106) if rgb.getpixel((x, 6 + 50)) == (31, 119, 180)]

    # x = -1 maps to pixel column 6 + 25 (approx.) in the first frame and x = +1 to 6 + 74 in the last.
    assert blue_columns(0) and abs(blue_columns(0)[0] - 31) <= 1
    assert blue_columns(9) and abs(blue_columns(9)[0] - 80) <= 1


def test_gif_is_small_with_many_points(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    traj = torch.randn(60, 2000, 2, generator=g).cumsum(0) / 10
    data = torch.randn(4000, 2, generator=g)
    times = {k: torch.linspace(1, 0, 60) for k in "abc"}
    path = animate_trajectories({k: traj for k in "abc"}, tmp_path / "big.gif", (-3, 3, -3, 3), times, data)
    assert path.stat().st_size < 2_000_000


def test_single_and_bad_input(tmp_path) -> None:
    path = animate_trajectory(torch.randn(5, 10, 2), tmp_path / "one.gif", (-3, 3, -3, 3), title="x")
    assert Image.open(path).n_frames == 5
    with pytest.raises(ValueError, match=r"shape \(R, B, 2\)"):
        animate_trajectory(torch.randn(5, 10), tmp_path / "bad.gif", (-3, 3, -3, 3))
    with pytest.raises(ValueError, match="xmin < xmax"):
        animate_trajectory(torch.randn(5, 10, 2), tmp_path / "bad.gif", (3, -3, -3, 3))

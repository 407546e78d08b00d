"""Static figures: files written, grids evaluated where they should be, clear errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import scoresde as ss
from scoresde.viz import data_limits, density_compare, image_grid, loss_curve, scatter_compare


def test_scatter_compare(tmp_path) -> None:
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    path = scatter_compare(x, {"a": x + 1, "b": x * 2}, tmp_path / "s.png")
    assert Image.open(path).size[0] > 600
    with pytest.raises(ValueError, match=r"needs 2-D points \(N, 2\)"):
        scatter_compare(torch.randn(10), {}, tmp_path / "bad.png")


def test_data_limits_cover_the_central_range() -> None:
    x = torch.stack([torch.linspace(0, 1, 1001), torch.linspace(-10, 10, 1001)], dim=1)
    x0, x1, y0, y1 = data_limits(x, quantile=0.0, pad=0.0)
    assert (x0, x1, y0, y1) == pytest.approx((0.0, 1.0, -10.0, 10.0))


def test_density_compare_evaluates_the_grid(tmp_path) -> None:
    funnel = ss.Funnel(2, 1.5)
    calls = []

    def logp(x):
        calls.append(x.shape[0])
        return funnel.log_prob(x.double())

    path, grids = density_compare(
        {"true": logp}, tmp_path / "d.png", (-4, 4, -3, 3), resolution=30, batch_size=400
    )
    assert path.stat().st_size > 5_000
    assert sum(calls) == 900 and max(calls) <= 400
    g = grids["true"]
    # Row i is y_i, column j is x_j: compare one entry with a direct evaluation.
    x, y = torch.linspace(-4, 4, 30)[7], torch.linspace(-3, 3, 30)[21]
    expected = funnel.log_prob(torch.tensor([[x, y]], dtype=torch.float64))
    assert float(g[21, 7]) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="returned 1 values for 4 points"):
        density_compare({"bad": lambda x: x[:1, 0]}, tmp_path / "b.png", (0, 1, 0, 1), resolution=2)


def test_image_grid_layout_and_values(tmp_path) -> None:
    x = -torch.ones(5, 3, 4, 6)
    x[1] = 1.0
    path = image_grid(x, tmp_path / "g.png", nrow=3, padding=1, scale=2)
    img = torch.tensor(list(Image.open(path).convert("RGB").get_flattened_data())).reshape(
        2 * (2 * 5 + 1), 2 * (3 * 7 + 1), 3
    )
    assert img.shape == (22, 44, 3)
    assert img[2, 2].tolist() == [0, 0, 0]  # first image: -1 -> black
    assert img[2, 2 + 14].tolist() == [255, 255, 255]  # second image: +1 -> white
    gray = image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "gray.png")
    assert Image.open(gray).mode == "L" and Image.open(gray).getpixel((3, 3)) == 128
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) with C = 1 or 3"):
        image_grid(torch.zeros(4, 2, 8, 8), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="NaN"):
        image_grid(torch.full((1, 1, 2, 2), float("nan")), tmp_path / "nan.png")


def test_loss_curve(tmp_path) -> None:
    path = loss_curve({"vp": [1.0 / (i + 1) for i in range(300)], "ve": [0.5] * 300}, tmp_path / "l.png")
    assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="non-empty"):
        loss_curve([], tmp_path / "e.png")

"""Trajectory animations as GIFs, drawn directly with Pillow (small files, no matplotlib).

:func:`animate_trajectories` puts several samplers' trajectories side by side, one panel each,
over a faint backdrop of the data; :func:`animate_trajectory` is the one-panel case.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["animate_trajectories", "animate_trajectory"]

Limits = tuple[float, float, float, float]

_BACKGROUND = (255, 255, 255)
_DATA = (205, 205, 205)
_POINTS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
_TEXT = (30, 30, 30)
_OUTLINE = (160, 160, 160)
_PALETTE = [_BACKGROUND, _DATA, _TEXT, _OUTLINE, (110, 110, 110), *_POINTS]


def _palette_image():
    """A palette image with exactly the colours drawn, so quantising keeps them exact."""
    from PIL import Image

    pal = Image.new("P", (1, 1))
    flat = [c for rgb in _PALETTE for c in rgb]
    pal.putpalette(flat + flat[:3] * (256 - len(_PALETTE)))
    return pal


def _check_traj(name: str, traj: Tensor) -> Tensor:
    if traj.ndim != 3 or traj.shape[2] < 2:
        raise ValueError(f"trajectory {name!r} must have shape (R, B, 2), got {tuple(traj.shape)}")
    return traj[:, :, :2].detach().cpu().double()


def _to_pixels(pts: Tensor, limits: Limits, size: int) -> Tensor:
    """Map points ``(B, 2)`` to integer pixel coordinates ``(B, 2)`` (y axis pointing up)."""
    x0, x1, y0, y1 = limits
    px = (pts[:, 0] - x0) / (x1 - x0) * (size - 1)
    py = (1 - (pts[:, 1] - y0) / (y1 - y0)) * (size - 1)
    return torch.stack([px, py], dim=1).round()


def _draw_points(
    draw, pix: Tensor, size: int, offset: tuple[int, int], color: tuple[int, int, int], radius: int
) -> None:
    """Draw the pixels ``pix: (B, 2)`` that fall inside a ``size``-square panel at ``offset``."""
    ok = torch.isfinite(pix).all(1) & (pix >= 0).all(1) & (pix < size).all(1)
    for px, py in (pix[ok] + torch.tensor(offset, dtype=pix.dtype)).tolist():
        if radius <= 0:
            draw.point((px, py), fill=color)
        else:
            draw.rectangle((px - radius, py - radius, px + radius, py + radius), fill=color)


def animate_trajectories(
    trajectories: Mapping[str, Tensor],
    path: str | Path,
    limits: Limits,
    times: Mapping[str, Tensor] | None = None,
    data: Tensor | None = None,
    size: int = 220,
    max_points: int = 800,
    frames: int = 40,
    duration_ms: int = 90,
    hold_ms: int = 1200,
    radius: int = 1,
) -> Path:
    """Write a GIF of sampling trajectories, one panel per sampler.

    Args:
        trajectories: name -> states ``(R, B, 2)`` from the first (noise) to the last (sample),
            e.g. ``sample(..., record=True).trajectory``.  Panels with different ``R`` are
            resampled to the same number of frames.
        path: the GIF to write.
        limits: ``(xmin, xmax, ymin, ymax)`` of every panel; points outside are not drawn.
        times: name -> the time of each state ``(R,)``, shown under each panel.
        data: points ``(N, 2)`` drawn faintly behind every frame.
        size: panel width and height in pixels.
        max_points: the first ``max_points`` of each batch are drawn.
        frames: number of frames (fewer if the trajectories are shorter).
        duration_ms: time per frame; the last frame is held for ``hold_ms``.
        radius: half-size of each point in pixels (0 for single pixels).

    Returns:
        The GIF path.  With the defaults a 3-panel GIF is well under 1 MB.
    """
    from PIL import Image, ImageDraw

    if not trajectories:
        raise ValueError("animate_trajectories needs at least one trajectory")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if not (limits[1] > limits[0] and limits[3] > limits[2]):
        raise ValueError(
            f"limits must be (xmin, xmax, ymin, ymax) with xmin < xmax, ymin < ymax, got {limits}"
        )
    trajs = {k: _check_traj(k, v)[:, :max_points] for k, v in trajectories.items()}
    n_frames = min(frames, max(t.shape[0] for t in trajs.values()))
    label_h = 30
    pad = 6
    width = len(trajs) * (size + pad) + pad
    height = size + label_h + pad
    backdrop = Image.new("RGB", (width, height), _BACKGROUND)
    bdraw = ImageDraw.Draw(backdrop)
    for j in range(len(trajs)):
        left = pad + j * (size + pad)
        bdraw.rectangle((left - 1, pad - 1, left + size, pad + size), outline=_OUTLINE)
    if data is not None:
        d = data[: max(4 * max_points, 2000), :2].detach().cpu().double()
        pix = _to_pixels(d, limits, size)
        for j in range(len(trajs)):
            _draw_points(bdraw, pix, size, (pad + j * (size + pad), pad), _DATA, 0)

    palette = _palette_image()
    images = []
    for f in range(n_frames):
        frame = backdrop.copy()
        draw = ImageDraw.Draw(frame)
        for j, (name, traj) in enumerate(trajs.items()):
            r = round(f * (traj.shape[0] - 1) / (n_frames - 1))
            left = pad + j * (size + pad)
            pix = _to_pixels(traj[r], limits, size)
            _draw_points(draw, pix, size, (left, pad), _POINTS[j % len(_POINTS)], radius)
            label = name
            if times is not None and name in times:
                label = f"{name}\nt = {float(times[name][r]):.3f}"
            draw.multiline_text((left + 2, pad + size + 2), label, fill=_TEXT, spacing=1)
        images.append(frame.quantize(palette=palette, dither=Image.Dither.NONE))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (n_frames - 1) + [hold_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return path


def animate_trajectory(traj: Tensor, path: str | Path, limits: Limits, **kwargs) -> Path:
    """One trajectory ``traj: (R, B, 2)`` as a GIF; see :func:`animate_trajectories`."""
    title = kwargs.pop("title", "")
    times = kwargs.pop("times", None)
    return animate_trajectories(
        {title: traj}, path, limits, times=None if times is None else {title: times}, **kwargs
    )

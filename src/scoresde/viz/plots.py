"""Static figures.  matplotlib is imported inside each function so ``import scoresde`` stays fast.

- :func:`scatter_compare`: 2-D point clouds side by side (data, then each sampler);
- :func:`density_compare`: heat maps of log-density functions on a grid (a model's likelihood
  beside the true density);
- :func:`image_grid`: a batch of images ``(B, C, H, W)`` in ``[-1, 1]`` as one PNG (Pillow only);
- :func:`loss_curve`: training losses, raw and smoothed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["data_limits", "density_compare", "image_grid", "loss_curve", "scatter_compare"]

Limits = tuple[float, float, float, float]


def data_limits(data: Tensor, quantile: float = 0.005, pad: float = 0.15) -> Limits:
    """``(xmin, xmax, ymin, ymax)``: the central range of ``data: (N, 2)`` plus a margin.

    The range runs from the ``quantile`` to the ``1 - quantile`` quantile of each coordinate.
    """
    d = data[:, :2].detach().cpu().double()
    lo = d.quantile(quantile, dim=0)
    hi = d.quantile(1 - quantile, dim=0)
    m = pad * (hi - lo)
    return (float(lo[0] - m[0]), float(hi[0] + m[0]), float(lo[1] - m[1]), float(hi[1] + m[1]))


def _save(fig, plt, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_compare(
    data: Tensor,
    samples: Mapping[str, Tensor],
    path: str | Path,
    limits: tuple[float, float, float, float] | None = None,
    max_points: int = 4000,
    title: str | None = None,
) -> Path:
    """Side-by-side 2-D scatter plots: the data, then each named sample set.

    Args:
        data: reference points ``(N, 2)``.
        samples: name -> points ``(M, 2)``.
        path: PNG to write.
        limits: ``(xmin, xmax, ymin, ymax)``; defaults to the data's 0.5-99.5% range with a margin.
    """
    plt = _pyplot()
    panels = {"data": data, **samples}
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"scatter_compare needs 2-D points (N, 2), got data of shape {tuple(data.shape)}")
    if limits is None:
        limits = data_limits(data)
    n = len(panels)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, (name, pts) in zip(axes.flat, panels.items()):
        ax.set_visible(True)
        p = pts[:max_points].detach().cpu().double()
        color = "tab:gray" if name == "data" else "tab:blue"
        ax.scatter(p[:, 0], p[:, 1], s=1.5, alpha=0.5, color=color, linewidths=0)
        ax.set_xlim(limits[0], limits[1])
        ax.set_ylim(limits[2], limits[3])
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("auto")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path, dpi=120)


def _grid_points(limits: Limits, resolution: int) -> Tensor:
    """The ``resolution**2`` points ``(N, 2)`` of a regular grid, row by row from the bottom."""
    xs = torch.linspace(limits[0], limits[1], resolution, dtype=torch.float64)
    ys = torch.linspace(limits[2], limits[3], resolution, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (res_y, res_x)
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


@torch.no_grad()
def density_compare(
    log_densities: Mapping[str, Callable[[Tensor], Tensor]],
    path: str | Path,
    limits: Limits,
    resolution: int = 100,
    batch_size: int = 4096,
    floor: float = 12.0,
    dtype: torch.dtype = torch.float32,
    title: str | None = None,
) -> tuple[Path, dict[str, Tensor]]:
    """Heat maps of log-densities on a regular grid, side by side.

    Use it for a likelihood map: ``{"true": funnel.log_prob, "PF-ODE": lambda x:
    log_likelihood(model, sde, x).logp}``.  Each panel shows ``log p`` clipped to
    ``[max - floor, max]`` over the grid, so tails and modes are both visible.

    Args:
        log_densities: name -> ``fn(x: (N, 2)) -> (N,)`` log-density.
        path: PNG to write.
        limits: ``(xmin, xmax, ymin, ymax)``.
        resolution: grid points per axis (``resolution**2`` evaluations per panel).
        batch_size: points per call of each function.
        floor: the colour range below each panel's maximum, in nats.
        dtype: dtype of the points passed to the functions.
        title: figure title.

    Returns:
        The PNG path and name -> the evaluated grid ``(resolution, resolution)`` (rows are y).
    """
    if not log_densities:
        raise ValueError("density_compare needs at least one log-density function")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    pts = _grid_points(limits, resolution)
    grids: dict[str, Tensor] = {}
    for name, fn in log_densities.items():
        vals = [fn(chunk.to(dtype)).detach().double().cpu().reshape(-1) for chunk in pts.split(batch_size)]
        v = torch.cat(vals)
        if v.numel() != pts.shape[0]:
            raise ValueError(f"log-density {name!r} returned {v.numel()} values for {pts.shape[0]} points")
        grids[name] = v.reshape(resolution, resolution)
    plt = _pyplot()
    n = len(grids)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), squeeze=False)
    for ax, (name, g) in zip(axes.flat, grids.items()):
        finite = g[torch.isfinite(g)]
        top = float(finite.max()) if finite.numel() else 0.0
        im = ax.imshow(
            g.clamp(min=top - floor).numpy(),
            origin="lower",
            extent=limits,
            aspect="auto",
            cmap="viridis",
            vmin=top - floor,
            vmax=top,
        )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="log p")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path), grids


def image_grid(
    x: Tensor, path: str | Path, nrow: int | None = None, padding: int = 2, scale: int = 1
) -> Path:
    """Tile images ``x: (B, C, H, W)`` with values in ``[-1, 1]`` (C = 1 or 3) into one PNG.

    Pillow only (no matplotlib).  ``nrow`` images per row (default ``ceil(sqrt(B))``); each
    pixel is repeated ``scale`` times for small images.
    """
    from PIL import Image

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"image_grid needs images (B, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("image_grid: the images contain NaN or inf")
    b, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    img = ((x.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    canvas = torch.full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding), 255, dtype=torch.uint8
    )
    for i in range(b):
        r, q = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        canvas[:, top : top + h, left : left + w] = img[i]
    if scale > 1:
        canvas = canvas.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    arr = canvas.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path


def loss_curve(
    losses: Sequence[float] | Mapping[str, Sequence[float]],
    path: str | Path,
    smooth: int = 50,
    log_scale: bool = True,
    title: str | None = None,
) -> Path:
    """Training loss against step: each run faint, its moving average (window ``smooth``) solid."""
    runs = dict(losses) if isinstance(losses, Mapping) else {"loss": losses}
    if not runs or any(len(v) == 0 for v in runs.values()):
        raise ValueError("loss_curve needs at least one non-empty sequence of losses")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for i, (name, vals) in enumerate(runs.items()):
        v = torch.as_tensor(list(vals), dtype=torch.float64)
        color = f"C{i}"
        ax.plot(v.numpy(), color=color, alpha=0.25, linewidth=0.6)
        k = max(1, min(smooth, len(v)))
        avg = torch.nn.functional.avg_pool1d(v[None, None], k, stride=1)[0, 0]
        ax.plot(torch.arange(k - 1, len(v)).numpy(), avg.numpy(), color=color, label=name, linewidth=1.4)
    if log_scale and all(min(v) > 0 for v in runs.values()):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, plt, path)

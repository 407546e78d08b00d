"""Static figures.  matplotlib is imported inside each function so ``import scoresde`` stays fast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

__all__ = ["scatter_compare"]


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
    if limits is None:
        d = data[:, :2].double()
        lo = d.quantile(0.005, dim=0)
        hi = d.quantile(0.995, dim=0)
        pad = 0.15 * (hi - lo)
        limits = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""``DEFAULT_SAMPLING``: the one default sampling configuration.

What ``scoresde sample`` draws with, what ``scoresde eval`` measures and what training's
evaluation grids (``TrainConfig.sample_method`` / ``sample_steps``) use when nothing is chosen:
declared once here, so that an evaluation scores the sampler users sample with.  Euler-Maruyama
on the reverse SDE (Song et al. 2021, Eq. 6), 100 steps, on the SDE's own default grid
(:func:`~scoresde.sampling.grids.default_grid`: ``edm`` under EDM's ``sigma(t) = t``, the
paper's ``uniform`` otherwise), with the final Tweedie denoising step.  It lives in the leaf
layer, free of torch, so that ``scoresde sample --help`` shows it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoresde.sde.base import SDE

__all__ = ["AUTO_GRID", "DEFAULT_SAMPLING", "SamplingDefaults"]

AUTO_GRID = "auto"
"""The grid name that means the SDE's own default grid (:func:`SamplingDefaults.grid_for`)."""


@dataclass(frozen=True)
class SamplingDefaults:
    """A sampling configuration: sampler, steps, grid and the final denoising step.

    Attributes:
        method: a key of :data:`scoresde.SAMPLERS`.
        steps: sampler steps.
        grid: a grid name of :data:`scoresde.GRIDS`, or ``"auto"``: the SDE's default grid.
        denoise: finish with the Tweedie denoising step.
    """

    method: str = "euler_maruyama"
    steps: int = 100
    grid: str = AUTO_GRID
    denoise: bool = True

    def grid_for(self, sde: SDE) -> str:
        """The grid name under ``sde`` (``"auto"``: the SDE's ``default_grid``, as
        :func:`scoresde.sampling.grids.default_grid` answers it)."""
        return sde.default_grid if self.grid == AUTO_GRID else self.grid


DEFAULT_SAMPLING = SamplingDefaults()
"""The default of ``scoresde sample``, ``scoresde eval`` and training's evaluation grids."""

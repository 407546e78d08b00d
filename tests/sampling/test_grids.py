"""Time grids: the default grid per SDE."""

from __future__ import annotations

import scoresde as ss


def test_default_grid_is_edm_under_edm_only() -> None:
    """The grid taken when none is named: Karras et al.'s under sigma(t) = t, the paper's otherwise."""
    from scoresde.sampling.grids import default_grid

    assert default_grid(ss.EDMSDE()) == "edm"
    for sde in (ss.VPSDE(), ss.VESDE(), ss.SubVPSDE()):
        assert default_grid(sde) == "uniform"
    # Under EDM the uniform grid's last step spans sigma ~ T / steps; the edm grid's is tiny.
    sde = ss.EDMSDE()
    last = {g: float(ss.sampling.grids.time_grid(sde, 100, g)[-2]) for g in ("uniform", "edm")}
    assert last["edm"] < 0.05 * last["uniform"]

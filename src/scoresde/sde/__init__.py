"""Forward SDEs with linear drift: VE, VP, sub-VP, EDM and the straight (flow-matching) path."""

from scoresde.sde.base import SDE, ReverseSDE
from scoresde.sde.flow import StraightSDE
from scoresde.sde.ve import EDMSDE, VESDE
from scoresde.sde.vp import VPSDE, SubVPSDE

SDES: dict[str, type[SDE]] = {
    "ve": VESDE,
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "edm": EDMSDE,
    "straight": StraightSDE,
}


def make_sde(name: str, **kwargs) -> SDE:
    """Build an SDE from its short name (``ve``, ``vp``, ``subvp``, ``edm``, ``straight``)."""
    try:
        cls = SDES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown SDE {name!r}; choose one of {sorted(SDES)}") from None
    return cls(**kwargs)


__all__ = ["SDE", "SDES", "EDMSDE", "ReverseSDE", "StraightSDE", "SubVPSDE", "VESDE", "VPSDE", "make_sde"]

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


def sde_from_dict(data: dict) -> SDE:
    """Rebuild an SDE from :meth:`SDE.to_dict`'s ``{"name", "kwargs"}``, or from the older flat
    form ``{"name", **kwargs}`` of classifier files.

    Raises:
        ValueError: no name, an unknown name, or arguments the SDE does not take.
    """
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"an SDE description needs a 'name', got {data!r}")
    kwargs = data["kwargs"] if "kwargs" in data else {k: v for k, v in data.items() if k != "name"}
    try:
        return make_sde(data["name"], **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for the {data['name']!r} SDE: {err}") from None


__all__ = [
    "SDE",
    "SDES",
    "EDMSDE",
    "ReverseSDE",
    "StraightSDE",
    "SubVPSDE",
    "VESDE",
    "VPSDE",
    "make_sde",
    "sde_from_dict",
]

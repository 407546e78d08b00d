"""Forward SDEs with linear drift: VE, VP, sub-VP, EDM, the straight (flow-matching) path and
VP SDEs from any noise schedule (a tabulated ``alphas_cumprod``, the continuous cosine schedule).
"""

from scoresde.sde.base import SDE, ReverseSDE
from scoresde.sde.cosine import CosineVPSDE
from scoresde.sde.discrete import BETA_SCHEDULES, DiscreteVPSDE, make_betas, paper_ddpm_betas
from scoresde.sde.flow import StraightSDE
from scoresde.sde.logalpha import LogAlphaVPSDE
from scoresde.sde.ve import EDMSDE, VESDE
from scoresde.sde.vp import VPSDE, SubVPSDE

PAPER_LIKELIHOOD_EPS = 1e-5
"""The time at which Song et al. 2021 start the probability-flow ODE for likelihoods and bits/dim
(App. D; score_sde_pytorch's ``likelihood.py`` default ``eps=1e-5``).  :func:`scoresde.log_likelihood`
starts at ``sde.eps``, so pass ``eps=PAPER_LIKELIHOOD_EPS`` to the SDE (e.g. ``VPSDE(eps=1e-5)``)
to report bits/dim in the paper's convention; the VP default ``eps = 1e-3`` is its sampling end."""

SDES: dict[str, type[SDE]] = {
    "ve": VESDE,
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "edm": EDMSDE,
    "straight": StraightSDE,
    "discrete": DiscreteVPSDE,
    "cosine": CosineVPSDE,
}


def make_sde(name: str, **kwargs) -> SDE:
    """Build an SDE from its short name (a key of :data:`SDES`)."""
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
    "BETA_SCHEDULES",
    "PAPER_LIKELIHOOD_EPS",
    "SDE",
    "SDES",
    "EDMSDE",
    "CosineVPSDE",
    "DiscreteVPSDE",
    "LogAlphaVPSDE",
    "ReverseSDE",
    "StraightSDE",
    "SubVPSDE",
    "VESDE",
    "VPSDE",
    "make_betas",
    "make_sde",
    "paper_ddpm_betas",
    "sde_from_dict",
]

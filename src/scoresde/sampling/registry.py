"""``SAMPLERS``: the one explicit dict from method name to sampler.

A new sampler is a new function in its module plus one line here; nothing registers itself
as an import side effect.
"""

from __future__ import annotations

from scoresde.sampling.ode import euler
from scoresde.sampling.predictors import euler_maruyama
from scoresde.sampling.types import Sampler

SAMPLERS: dict[str, Sampler] = {
    "euler_maruyama": Sampler(
        euler_maruyama,
        order=1,
        stochastic=True,
        description="Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6)",
    ),
    "euler": Sampler(
        euler,
        order=1,
        stochastic=False,
        description="Euler on the probability-flow ODE (Song et al. 2021, Eq. 13)",
    ),
}

__all__ = ["SAMPLERS", "get_sampler"]


def get_sampler(method: str) -> Sampler:
    """Look up ``method`` in :data:`SAMPLERS`, with an error that lists the choices."""
    try:
        return SAMPLERS[method]
    except KeyError:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {sorted(SAMPLERS)}") from None

"""Types shared by all samplers: the uniform signature, its registry entry and the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from scoresde.models.base import ScoreFunction
from scoresde.sampling.noise import NoiseSource
from scoresde.sde.base import SDE

__all__ = ["Callback", "SampleResult", "Sampler", "SamplerFn"]

Callback = Callable[[int, Tensor, Tensor], None]
"""``callback(i, t, x)``: called after step ``i`` with the new time ``t`` (a 0-d tensor) and ``x``."""


class SamplerFn(Protocol):
    """The one sampler signature.

    ``fn(model, sde, x, ts, *, noise, y=None, callback=None, **options) -> x``: integrate
    from ``x`` at ``ts[0]`` through the decreasing times ``ts`` to ``ts[-1]``; stochastic
    samplers draw every random number from ``noise``.  A sampler's own ``options`` are extra
    keyword arguments with defaults (not part of the protocol, so that a checker accepts
    every sampler: a function without ``**options`` could not match one that declares it).
    """

    def __call__(
        self,
        model: ScoreFunction,
        sde: SDE,
        x: Tensor,
        ts: Tensor,
        *,
        noise: NoiseSource,
        y: Tensor | None = None,
        callback: Callback | None = None,
    ) -> Tensor: ...


@dataclass(frozen=True)
class Sampler:
    """A registry entry: the function and what it declares about itself.

    Attributes:
        fn: the sampler function.
        order: order of convergence (pathwise for ODE solvers, weak for SDE solvers).
        stochastic: whether it draws noise.
        description: one line, with the paper it implements.
        required: the options it cannot run without (``ss.sample`` names the missing ones).
        uses_grid: whether it steps on the given grid (``False`` for an adaptive solver, which
            only takes the grid's ends: a tuned grid means nothing to it).
    """

    fn: SamplerFn
    order: int
    stochastic: bool
    description: str
    required: tuple[str, ...] = ()
    uses_grid: bool = True

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the :attr:`required` options missing from ``options``."""
        missing = [k for k in self.required if options.get(k) is None]
        if missing:
            raise ValueError(
                f"method {name!r} needs the option{'s' if len(missing) > 1 else ''} "
                f"{', '.join(f'{k}=' for k in missing)} (see scoresde.SAMPLERS[{name!r}].fn)"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.fn(*args, **kwargs)


@dataclass
class SampleResult:
    """What :func:`scoresde.sample` returns.

    Attributes:
        x: the samples ``(B, *D)``.
        nfe: number of model evaluations (batched calls), the final denoising step included.
        times: the time grid used, ``(steps + 1,)``.
        trajectory: recorded states ``(R, B, *D)`` when ``record`` was set, else ``None``.
        trajectory_times: the time of each recorded state ``(R,)``.
    """

    x: Tensor
    nfe: int
    times: Tensor
    trajectory: Tensor | None = None
    trajectory_times: Tensor | None = None

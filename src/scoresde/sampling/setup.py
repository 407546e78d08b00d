"""The one setup of every sampler run: the start, and the bookkeeping around the steps.

:func:`scoresde.sample` (and through it :func:`scoresde.guidance.dps_sample`) and
:func:`scoresde.guidance.conditional_sample` are built from the two pieces here, so they agree
on what a grid name means, how the prior is drawn, how evaluations are counted and guarded,
and what progress, trajectories and the final denoising step look like:

- :func:`start_sampling` checks a :class:`~scoresde.sampling.spec.SampleSpec` and returns a
  :class:`SamplingStart`: the SDE, the time grid, the noise source (a ``torch.Generator``, or
  per-sample noise keyed by ``seed``) and the starting point (a prior draw, or ``x_T``);
- :class:`SamplingRun` wraps the model in a :class:`~scoresde.models.CountingModel` (NFE and
  the non-finite guard), and gives the samplers the one step callback (state guard, trajectory,
  progress, the user's callback), the final Tweedie step and the :class:`SampleResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor

from scoresde._core.checks import (
    all_finite,
    check_batch,
    check_finite,
    check_float_dtype,
    check_real_tensor,
    check_seed,
    check_state_finite,
)
from scoresde._core.progress import Progress, make_progress
from scoresde._core.tensors import as_shape
from scoresde.models.base import CountingModel, ScoreFunction, check_model_sde
from scoresde.sampling.grids import check_grid, time_grid
from scoresde.sampling.noise import NoiseSource, make_noise
from scoresde.sampling.spec import GridTuner, SampleSpec
from scoresde.sampling.types import SampleResult
from scoresde.sde.base import SDE

__all__ = ["SamplingRun", "SamplingStart", "check_model_sde", "start_sampling"]


@dataclass
class SamplingStart:
    """``sde`` (checked against the model's), the time grid ``ts``, the ``noise`` source, the
    starting point ``x: (B, *D)`` and the run's :class:`~scoresde.sampling.spec.SampleSpec`."""

    sde: SDE
    ts: Tensor
    noise: NoiseSource
    x: Tensor
    spec: SampleSpec


def start_sampling(
    model: ScoreFunction,
    sde: SDE | None,
    spec: SampleSpec,
    method: str | None = None,
    options: dict[str, Any] | None = None,
) -> SamplingStart:
    """Check the arguments shared by every sampler and draw the starting point.

    The start is ``spec.x_T`` (cloned) when given, else a draw of the prior
    ``N(0, prior_std^2 I)`` from the noise source (``spec.generator``, or per-sample noise keyed
    by ``spec.seed``).  A :class:`~scoresde.sampling.spec.GridTuner` grid is asked for its times
    once the sample shape is known; it needs the sampler ``method`` (and its ``options``).

    Raises:
        ValueError: the SDE disagrees with the model's, no shape and no ``x_T``, a grid that
            starts before ``T`` without ``x_T``, mismatched shapes or labels, non-finite ``x_T``.
    """
    sde = check_model_sde(model, sde)
    check_float_dtype(spec.dtype, "dtype")
    if spec.seed is not None:
        check_seed(spec.seed, "seed")
    grid, t_start, t_end = spec.grid, spec.t_start, spec.t_end
    tuner: GridTuner | None = None
    ts: Tensor | None
    if isinstance(grid, str):
        if grid == "optimized":
            raise ValueError(
                "grid='optimized' is a tuned grid: pass grid=scoresde.sampling.GridOptimizer() "
                "(it optimises the grid on a pilot batch and keeps its own cache)"
            )
        ts = time_grid(sde, spec.steps, grid, t_start=t_start, t_end=t_end)
    elif isinstance(grid, Tensor) or not isinstance(grid, GridTuner):
        ts = check_grid(grid, sde)  # a tensor, or anything torch.as_tensor takes
    else:
        if method is None:
            raise ValueError("a tuned grid needs the sampler's name: use it through scoresde.sample")
        tuner = grid
        ts = None  # asked of the tuner once the sample shape is known
    noise = make_noise(spec.generator, spec.seed, spec.first_index)
    x_T, shape = spec.x_T, spec.shape
    if x_T is None:
        if shape is None:
            raise ValueError("give shape=(B, *D) or a starting point x_T")
        t0 = float(ts[0]) if ts is not None else (sde.T if t_start is None else t_start)
        if t0 < sde.T - 1e-12:
            raise ValueError("a grid that starts before T needs an explicit starting point x_T")
        x = noise(torch.empty(as_shape(shape), device=spec.device, dtype=spec.dtype)) * sde.prior_std()
    else:
        check_real_tensor(x_T, "x_T")
        check_batch(x_T, "x_T")
        check_finite(x_T, "x_T")
        if shape is not None and tuple(x_T.shape) != as_shape(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was given")
        x = x_T.clone()
    y = spec.y
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for a batch of {x.shape[0]}")
    if ts is None:
        assert tuner is not None and method is not None  # checked above
        ts = tuner.times(
            model,
            sde,
            spec.steps,
            method,
            tuple(x.shape[1:]),
            t_start=t_start,
            t_end=t_end,
            options=dict(options or {}),
            dtype=x.dtype,
        )
    return SamplingStart(sde, ts, noise, x, spec)


_CHECK_EVERY = 8
"""The deferred guard's state check: every this many steps (see :class:`SamplingRun`)."""
_HELD_ENTRIES = 2**17
"""The largest state (entries) whose check the deferred guard spaces out (it holds the states)."""


class SamplingRun:
    """The bookkeeping around a sampler's steps over ``start.ts``, for every entry point.

    Pass :attr:`model` (the counting, guarded model) and :meth:`after_step` (as the sampler's
    ``callback``) to the sampler; finish with :meth:`denoise` and :meth:`result`.  Use it as a
    context manager so that a progress bar it made is closed however the run ends.

    The labels ``y``, the user's ``callback``, ``record`` / ``record_stride`` and ``progress``
    (an existing :class:`Progress` is advanced, not closed) come from ``start.spec``.

    Args:
        model: the score model.
        start: from :func:`start_sampling`.
        label: names the run in error messages (``"sample (euler)"``, ``"dps_sample"``, ...).
        desc: the progress label (default ``label``).
        defer_guard: the sampler calls :meth:`after_step` after every step: the model's
            outputs on the fixed-time path are held and checked only where a state is not
            finite (:meth:`CountingModel.defer_guard
            <scoresde.models.CountingModel.defer_guard>`), and without a user callback or
            trajectory, on states of at most 2^17 entries, the state is checked every
            :attr:`check_every` = 8 steps and at the last (the states in between are held).  The
            error is the one the check of every output and state would raise first: it names
            the same output or state, step and time, only some steps later.

    Attributes:
        model: the :class:`~scoresde.models.CountingModel` (its ``nfe``, its ``step``).
        check_every: the state is checked after every this many steps (and after the last).
        ts: the grid on the device of the samples.
    """

    def __init__(
        self,
        model: ScoreFunction,
        start: SamplingStart,
        label: str,
        desc: str | None = None,
        defer_guard: bool = False,
    ) -> None:
        spec = start.spec
        record_stride = spec.record_stride
        if isinstance(record_stride, bool) or not isinstance(record_stride, int) or record_stride < 1:
            raise ValueError(f"record_stride must be an integer >= 1, got {record_stride!r}")
        self.times = start.ts
        self.ts = start.ts.to(start.x.device)
        self.steps = len(self.ts) - 1
        self.label = label
        self.y = spec.y
        self.callback = spec.callback
        self.record = spec.record
        self.record_stride = record_stride
        self.model = CountingModel(model, label=label, steps=self.steps)
        self.check_every = 1
        self._unchecked: list[tuple[int, Tensor, Tensor, int]] = []
        self._last_end = 0
        if defer_guard:
            self.model.defer_guard(before_error=self._first_error)
            if self.callback is None and not self.record and start.x.numel() <= _HELD_ENTRIES:
                self.check_every = _CHECK_EVERY
        self._traj: list[Tensor] = [start.x.clone()] if self.record else []
        self._traj_t: list[Tensor] = [self.ts[0]] if self.record else []
        self._own_bar = not isinstance(spec.progress, Progress)
        self.bar = make_progress(spec.progress, self.steps, label if desc is None else desc)

    def __enter__(self) -> SamplingRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._own_bar:
            self.bar.close()

    def after_step(self, i: int, t: Tensor, x: Tensor) -> None:
        """After step ``i`` (now at time ``t``): guard the state, record, report, call back."""
        model = self.model
        pending = model.pending
        if pending is None:
            # The non-finite guard: the model outputs are checked by `model`, the state here.
            if not all_finite(x):  # (the message is built only when it raises)
                self._state_error(i, t, x)
        else:
            # The deferred guard: the held outputs and the states are checked every
            # `check_every` steps (and at the last); a finite state there is finite at every
            # step before it (each step combines the state before, and 0 * NaN is NaN), and it
            # has followed the outputs held up to the step before.  Else the steps since the
            # last check are checked in order, outputs first, and the first non-finite one named.
            end = model._first + len(pending)  # model.mark()
            unchecked = self._unchecked
            unchecked.append((i, t, x, end))
            if len(unchecked) >= self.check_every or i + 1 == self.steps:
                if not all_finite(x):
                    self._first_error()
                model.release(self._last_end)
                unchecked.clear()
            self._last_end = end
        model.step = i + 2
        if self.record and ((i + 1) % self.record_stride == 0 or i + 1 == self.steps):
            self._traj.append(x.clone())
            self._traj_t.append(t)
        bar = self.bar
        if bar.mode == "off":  # Progress.update's count, without its call (every step comes here)
            bar.postfix["nfe"] = model.nfe
            bar.n += 1
        else:
            bar.update(1, nfe=model.nfe)
        if self.callback is not None:
            self.callback(i, t, x)

    def _state_error(self, i: int, t: Tensor, x: Tensor) -> None:
        check_state_finite(x, f"{self.label}: the samples", f"step {i + 1} of {self.steps}", t)

    def _first_error(self) -> None:
        """Raise the error of the first non-finite output or state the deferred guard holds (the
        steps since the last check, in order, outputs before states), if any."""
        model = self.model
        start = 0  # every output still held (those of the last checked step included)
        for i, t, x, end in self._unchecked:
            model.check_held(start, end)
            if not all_finite(x):
                self._state_error(i, t, x)
            start = end
        model.check_held(start, model.mark())

    def _check_rest(self) -> None:
        """The end of the run: check what the deferred guard has not checked yet."""
        if self.model.pending is not None:
            self._first_error()
            self._unchecked.clear()
            self.model.flush()

    def denoise(self, x: Tensor) -> Tensor:
        """The final denoising step: Tweedie's ``E[x_0 | x_{t_end}]`` (one more NFE)."""
        self._check_rest()
        self.model.step = "the final denoising step"
        return self.model.denoise(x, self.ts[-1].to(x.dtype).expand(x.shape[0]), self.y)

    def result(self, x: Tensor) -> SampleResult:
        """The :class:`SampleResult` of the final samples ``x``."""
        self._check_rest()
        return SampleResult(
            x=x,
            nfe=self.model.nfe,
            times=self.times,
            trajectory=torch.stack(self._traj) if self.record else None,
            trajectory_times=torch.stack(self._traj_t).cpu() if self.record else None,
        )

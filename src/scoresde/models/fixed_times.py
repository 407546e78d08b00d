"""A score model evaluated at a table of times fixed for one run (a sampler's time grid).

A fixed-step sampler evaluates its model at times known before the first step, one time for
the whole batch.  :func:`fixed_times` does once per run what every call of
:meth:`ScoreFunction.predict <scoresde.models.ScoreFunction.predict>` does again: the argument
and time checks, the time input of the network and the input scaling at each time (built the
first time a time is used), the conversion coefficients of each requested prediction, the
network's dtype and the autocast state.  A call is then the input scaling, the network and the
conversion: the tensor operations of the general path, in the same order on the same values,
so the results are equal bit for bit (``tests/models/test_fixed_times.py``).

The fast path is taken only where it is exactly the general one: a plain
:class:`~scoresde.models.ScoreModel` (not a subclass, no module hooks), bare or inside a
:class:`~scoresde.models.CountingModel` (whose count and non-finite guard it keeps).  Any other
model (guidance, conditioning wrappers, exact oracles, custom score functions, a score model
compiled in place) is evaluated through its own methods (``model.eps(x, t, y)``, ...) at the
table's times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from scoresde._core.checks import check_output_shape, check_times
from scoresde._core.tensors import scalars
from scoresde.models.base import CountingModel, ScoreFunction
from scoresde.models.parameterization import (
    apply_conversion,
    check_prediction,
    conversion_coefficients,
    convert_at,
)
from scoresde.models.wrapper import ScoreModel, _tensor_output, time_input_value
from scoresde.sde.base import SDE

__all__ = ["FixedTimes", "fixed_times"]

T = TypeVar("T")

_METHODS = {"eps": "eps", "x0": "denoise", "score": "score", "v": "v", "velocity": "velocity"}
"""The :class:`~scoresde.models.ScoreFunction` method of each prediction."""


def _call_of(net: nn.Module):
    """What ``net(...)`` runs: ``net.forward`` itself where ``nn.Module.__call__`` would only
    dispatch to it (no hooks, not compiled in place, not traced, ``__call__`` not overridden), else
    ``net`` (its ``__call__``).  Checked once per run."""
    direct = (
        type(net).__call__ is nn.Module.__call__
        and getattr(net, "_compiled_call_impl", None) is None
        and not isinstance(net, torch.jit.ScriptModule)
        and not _hooked(net)
        and not torch._C._get_tracing_state()
    )
    return net.forward if direct else net


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run hooks (its own or the global ones)."""
    hooks = nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


def _grid_table(sde: SDE, key: tuple, make: Callable[[], T]) -> T:
    """``make()``, memoised per SDE under ``key`` (a grid's times and what else the table
    depends on), as :meth:`SDE.coefficients_at <scoresde.sde.SDE.coefficients_at>` memoises its
    floats: a sampler run on the same grid (every batch of a run, every run of a benchmark)
    reuses the tables of Python floats instead of rebuilding them time by time.  At most 64
    tables per SDE; an SDE's parameters are fixed at construction, so a table never goes stale."""
    cache: dict[tuple, object] = sde.__dict__.setdefault("_fixed_time_tables", {})
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 64:
            cache.clear()
        hit = cache[key] = make()
    return hit  # type: ignore[return-value]


class FixedTimes:
    """``model`` at the times ``times`` of one run, for states shaped like ``like``.

    ``predict(kind, x, i)`` equals ``model.predict(kind, x, times[i], y)`` (bit for bit) for
    ``x`` of ``like``'s shape, dtype and device.  Build it with :func:`fixed_times`.

    Attributes:
        model: the model given.
        times: the times ``(N,)`` in ``like``'s dtype, on its device.
        fast: whether calls skip the wrapper stack (see the module doc).
    """

    def __init__(
        self, model: ScoreFunction, times: Tensor, like: Tensor, y: Tensor | None = None, fast: bool = True
    ) -> None:
        times = times.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
        self.model = model
        self.y = y
        self.times = times
        counter = model if type(model) is CountingModel else None
        inner = counter.inner if counter is not None else model
        self.fast = (
            bool(fast)
            and type(inner) is ScoreModel
            and not _hooked(inner)
            and getattr(inner, "_compiled_call_impl", None) is None  # ScoreModel.compile() in place
        )
        if not self.fast:
            self._times = times.unbind()  # the 0-d times the general path passes
            return
        assert isinstance(inner, ScoreModel)
        # The checks of ScoreFunction._checked_times, once for the whole table.
        if len(times):
            inner.checked_inputs(like, times[0])
        check_times(times, inner.sde.T, "t")
        self._counter = counter
        self._per_call = inner.nfe_per_call
        self._inner = inner
        self._native = inner.prediction
        self._net = _call_of(inner.net)
        self._dtype = like.dtype
        self._at = times.tolist()  # the one time of each call, as ScoreFunction.predict reads it
        net_dtype = inner._net_dtype()
        self._cast = (
            net_dtype
            if net_dtype is not None
            and like.dtype != net_dtype
            and not torch.is_autocast_enabled(like.device.type)
            else None
        )
        n, b = len(times), like.shape[0]
        self._batch = b
        # The network's time input at each time: for time input t, t_i.expand(B) (in the
        # network's dtype) for the whole table in one operation; any other time input is computed
        # the first time a time is used.
        self._t_in: list[Tensor | None] = [None] * n
        if inner.time_input == "t":
            table = times if self._cast is None else times.to(self._cast)
            self._t_in = list(table[:, None].expand(n, b).unbind(0))
        # The input scale of each time, as ScoreModel.forward computes it from the SDE's floats;
        # None where it is exactly 1 in the state's dtype (x / 1 is x: a VP SDE with unit data
        # scale in float32, mostly), where the network then takes the state itself, as it does
        # without input scaling.
        self._scales: list[Tensor | float | None] | None = None
        if inner.scale_input:
            values, ones = _grid_table(
                inner.sde, ("scale", tuple(self._at), like.dtype, inner.sigma_data), self._scale_table
            )
            scales: list[Tensor | float | None] = [None] * n
            keep = [j for j in range(n) if not ones[j]]
            for j, v in zip(keep, scalars([values[j] for j in keep], like.dtype)):
                scales[j] = v
            self._scales = scales
        self._conversions: dict[str, list[tuple[float, float] | ValueError | None]] = {}

    def _scale_table(self) -> tuple[list[float], list[bool]]:
        """The input scale at every time, and where it is exactly 1 in the state's dtype (only
        float32 / float64: half precisions keep every scale)."""
        inner, dtype = self._inner, self._dtype
        sd = inner.sigma_data
        values = []
        for t in self._at:
            s_at, sigma_at = inner.sde.coefficients_at(t, dtype)
            values.append(math.sqrt((s_at * sd) ** 2 + sigma_at**2))
        ones = [False] * len(values)
        if dtype in (torch.float32, torch.float64):
            ones = torch.tensor(values, dtype=dtype).eq(1.0).tolist()
        return values, ones

    def _time_input(self, i: int) -> Tensor:
        """The network's time input at time ``i`` (a time input other than ``t``)."""
        inner = self._inner
        t = self.times[i].expand(self._batch)  # the broadcast time of ScoreFunction.predict
        t_in = time_input_value(inner.time_input, inner.sde, t, inner.time_scale)
        if self._cast is not None:
            t_in = t_in.to(self._cast)
        self._t_in[i] = t_in
        return t_in

    def _conversion_table(self, kind: str) -> list[tuple[float, float] | ValueError | None]:
        """The coefficients of ``kind`` from the native prediction at every time: ``(a, b)``;
        ``None`` where the conversion divides by zero (:func:`~scoresde.models.parameterization.
        convert_at` gives its inf / NaN there); the error ``predict`` raises at a time where the
        conversion is undefined (raised when that time is used)."""
        inner = self._inner
        key = ("conversion", tuple(self._at), self._dtype, str(self.times.device), inner.prediction, kind)
        table = _grid_table(inner.sde, key, lambda: self._conversion_entries(kind))
        self._conversions[kind] = table
        return table

    def _conversion_entries(self, kind: str) -> list[tuple[float, float] | ValueError | None]:
        inner = self._inner
        check_prediction(kind)
        velocity = "velocity" in (kind, inner.prediction)
        table: list[tuple[float, float] | ValueError | None] = []
        for t in self._at:
            try:
                inner._check_conversion(kind, t, self.times)
            except ValueError as err:
                table.append(err)
                continue
            coefs = inner.sde.coefficients_at(t, self._dtype, velocity)
            table.append(conversion_coefficients(inner.prediction, kind, *coefs))
        return table

    def predict(self, kind: str, x: Tensor, i: int) -> Tensor:
        """The prediction of kind ``kind`` at ``x`` and the ``i``-th time."""
        if not self.fast:
            return self._general(kind, x, i)
        return self._call(kind, x, i, True)[0]

    def linear(self, kind: str, x: Tensor, i: int) -> tuple[Tensor, float, float]:
        """``(out, a, b)`` with the prediction of kind ``kind`` equal to ``a out + b x``.

        On the fast path ``out`` is the network's own output and ``a, b`` the conversion's
        coefficients (:func:`~scoresde.models.parameterization.conversion_coefficients`): a
        sampler whose step is linear in the prediction folds them into its own coefficients and
        saves the conversion's two tensor operations (its result then differs from the
        prediction's by float rounding).  Elsewhere ``out`` is the prediction and ``(a, b) =
        (1, 0)``, which folds into the same operations as the prediction itself.  The
        non-finite guard checks ``out``.
        """
        if not self.fast:
            return self._general(kind, x, i), 1.0, 0.0
        return self._call(kind, x, i, False)

    def _general(self, kind: str, x: Tensor, i: int) -> Tensor:
        """The general path: the model's own method of that prediction (``model.eps(x, t, y)``,
        ``model.denoise``, ...), as the samplers called it."""
        name = _METHODS.get(kind)
        if name is None:  # not a prediction: predict names the choices
            return self.model.predict(kind, x, self._times[i], self.y)
        return getattr(self.model, name)(x, self._times[i], self.y)

    def _call(self, kind: str, x: Tensor, i: int, convert: bool) -> tuple[Tensor, float, float]:
        counter = self._counter
        if counter is not None:
            counter.nfe += self._per_call
        ab: tuple[float, float] | None = None
        if kind != self._native:
            table = self._conversions.get(kind)
            entry = (table if table is not None else self._conversion_table(kind))[i]
            if isinstance(entry, ValueError):
                raise entry
            ab = entry
        t_in = self._t_in[i]
        if t_in is None:
            t_in = self._time_input(i)
        scales = self._scales
        scale = None if scales is None else scales[i]
        x_in = x if scale is None else x / scale
        cast = self._cast
        if cast is not None:
            x_in = x_in.to(cast)
        y = self.y
        out = self._net(x_in, t_in) if y is None else self._net(x_in, t_in, y)
        if type(out) is not Tensor:
            out = _tensor_output(out)
        if cast is not None:
            out = out.to(x.dtype)
        if out.shape != x.shape:
            check_output_shape(out, x, "ScoreModel.forward")
        a, b = 1.0, 0.0
        if kind != self._native:
            if ab is None:
                out = self._diverging(kind, out, x, i)
            elif convert:
                out = apply_conversion(out, x, *ab)
            else:
                a, b = ab
        if counter is not None:  # the non-finite guard: CountingModel.hold, its deferred case inline
            pending = counter.pending
            if pending is None or len(pending) >= 64:
                counter.hold(out, x, self.times, i)
            else:
                pending.append((out, x, self.times, i, counter.step))
        return out, a, b

    def _diverging(self, kind: str, out: Tensor, x: Tensor, i: int) -> Tensor:
        """:func:`~scoresde.models.parameterization.convert_at` where a coefficient divides by zero."""
        inner = self._inner
        velocity = "velocity" in (kind, inner.prediction)
        return convert_at(
            inner.prediction, kind, out, x, *inner.sde.coefficients_at(self._at[i], self._dtype, velocity)
        )

    def eps(self, x: Tensor, i: int) -> Tensor:
        """Predicted noise at the ``i``-th time."""
        return self.predict("eps", x, i)

    def score(self, x: Tensor, i: int) -> Tensor:
        """Predicted score at the ``i``-th time."""
        return self.predict("score", x, i)

    def denoise(self, x: Tensor, i: int) -> Tensor:
        """Predicted clean data at the ``i``-th time."""
        return self.predict("x0", x, i)

    def velocity(self, x: Tensor, i: int) -> Tensor:
        """The probability-flow ODE drift at the ``i``-th time."""
        return self.predict("velocity", x, i)


def fixed_times(
    model: ScoreFunction, times: Tensor, like: Tensor, y: Tensor | None = None, fast: bool = True
) -> FixedTimes:
    """``model`` at the times ``times: (N,)`` of one run, for states shaped like ``like``.

    Args:
        model: the score model (a :class:`~scoresde.models.CountingModel` keeps counting and
            guarding).
        times: the times (any float dtype; taken in ``like``'s dtype, as samplers pass them).
        like: a state of the run (its shape, dtype and device; not kept).
        y: the run's labels.
        fast: ``False`` forces the general path (for tests and comparisons).
    """
    return FixedTimes(model, times, like, y, fast)

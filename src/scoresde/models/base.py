"""The interface every score model answers: one raw prediction, every other one derived."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from scoresde._core.checks import (
    all_finite,
    check_batch,
    check_output_shape,
    check_real_tensor,
    check_times,
    guard_output,
)
from scoresde._core.tensors import append_dims, batch_time
from scoresde.models.parameterization import check_prediction, convert, convert_at
from scoresde.sde.base import SDE

__all__ = ["ScoreFunction", "check_model_sde"]


class ScoreFunction(nn.Module):
    """A model of ``grad log p_t(x)`` for a given :class:`~scoresde.sde.SDE`.

    Subclasses implement :meth:`forward` returning their native ``prediction`` (one of
    ``score``, ``eps``, ``x0``, ``v``, ``velocity``); :meth:`eps`, :meth:`score`,
    :meth:`denoise`, :meth:`v` and :meth:`velocity` convert consistently through the SDE's
    marginal (see :mod:`scoresde.models.parameterization`).  Samplers, losses and the
    likelihood only ever call these five methods.

    ``nfe_per_call`` is the number of network evaluations one call costs (2 for
    classifier-free guidance, which evaluates the conditional and unconditional model);
    :class:`CountingModel` counts it.

    Args:
        sde: the forward SDE whose marginals the model describes.
        prediction: what :meth:`forward` returns.
    """

    nfe_per_call: int = 1

    def __init__(self, sde: SDE, prediction: str) -> None:
        super().__init__()
        self.sde = sde
        self.prediction = check_prediction(prediction)

    @abstractmethod
    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The native prediction at ``x: (B, *D)``, ``t: (B,)``, optional labels ``y: (B,)``."""

    def evaluations(self, t: Tensor | float) -> int:
        """Network evaluations that a call at ``t`` costs (``nfe_per_call``; a wrapper that answers
        some times without its network, e.g. :class:`~scoresde.sampling.first_step.AnalyticFirstStep`,
        says 0 there)."""
        return self.nfe_per_call

    def checked_inputs(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Check ``x`` (a non-empty real floating batch) and ``t`` (finite, in ``[0, T]``).

        Returns ``t`` as a ``(B,)`` tensor.  Costs one reduction of ``t``.
        """
        return self._checked_times(x, t)[0]

    def _checked_times(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, float]:
        """:meth:`checked_inputs` and the smallest time (from the same one reduction)."""
        check_real_tensor(x, "x")
        check_batch(x, "x")
        if isinstance(t, Tensor) and t.ndim == 0 and t.dtype == x.dtype and t.device == x.device:
            # One time for the whole batch (every sampler step): one read, checked in Python.
            span = check_times(t, self.sde.T, "t")
            return t.expand(x.shape[0]), (span[0] if span is not None else self.sde.T)
        if torch.is_tensor(t) and (t.is_complex() or t.dtype == torch.bool):
            raise TypeError(f"t must be a real tensor, got dtype {t.dtype}")
        t = batch_time(t, x)
        span = check_times(t, self.sde.T, "t")
        return t, (span[0] if span is not None else self.sde.T)

    def _check_conversion(self, kind: str, t_min: float, t_like: Tensor) -> None:
        """Refuse a conversion that the marginal makes undefined at the smallest time ``t_min``.

        Where ``sigma(t) = 0`` (``t = 0`` under the exact VE/VP/sub-VP kernels) the noisy input is
        the data itself: epsilon and the score are then not defined by the other predictions
        (``eps = -sigma * score`` would be a silent 0, ``x0 -> eps`` and ``eps -> score`` divide
        by 0); the denoiser ``x0`` stays defined (``x / s``).  Evaluate such conversions at
        ``t >= sde.eps``, where sampling stops and likelihoods are evaluated.  One scalar
        evaluation of the marginal (on ``t_like``'s device and dtype), only below ``sde.eps``.
        """
        if t_min >= self.sde.eps and t_min > 0:
            return
        native = self.prediction
        if not (kind == "score" or native == "x0" or (native == "score" and kind != "x0")):
            return  # eps from v / velocity, x0 from anything but x0 stay defined at sigma = 0
        sigma = float(self.sde.marginal(t_like.new_full((1,), t_min))[1].reshape(-1)[0])
        if sigma == 0.0:
            raise ValueError(
                f"t = {t_min:g} gives sigma(t) = 0 under the {type(self.sde).__name__}, where the {kind} "
                f"of a model predicting {self.prediction} is not defined (the noisy input is the data "
                f"itself); evaluate at t >= sde.eps = {self.sde.eps:g}"
            )

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The prediction of kind ``kind`` (``score``, ``eps``, ``x0``, ``v``, ``velocity``).

        Raises:
            TypeError: ``x`` is not a real floating tensor.
            ValueError: an empty batch, ``t`` outside ``[0, T]`` or NaN, a model output whose
                shape differs from ``x``'s, or a conversion undefined at ``t`` (``sigma(t) = 0``,
                e.g. the eps or score of a score- or x0-predicting model at ``t = 0``: use
                ``t >= sde.eps``).
        """
        check_prediction(kind)
        t, t_min = self._checked_times(x, t)
        if kind != self.prediction:
            self._check_conversion(kind, t_min, t)
        # One time for the whole batch (every fixed-step sampler): its coefficients are floats.
        at = t_min if t.numel() == 1 or t.stride(0) == 0 else None
        out = self._native(x, t, y, at)
        check_output_shape(out, x, f"{type(self).__name__}.forward")
        if kind == self.prediction:
            return out
        velocity = "velocity" in (kind, self.prediction)
        if at is not None:
            return convert_at(self.prediction, kind, out, x, *self.sde.coefficients_at(at, t.dtype, velocity))
        s, sigma = (append_dims(c, x.ndim) for c in self.sde.marginal(t))
        ds = dsigma = None
        if velocity:
            ds, dsigma = (append_dims(c, x.ndim) for c in self.sde.marginal_derivatives(t))
        return convert(self.prediction, kind, out, x, s, sigma, ds, dsigma)

    def _native(self, x: Tensor, t: Tensor, y: Tensor | None, at: float | None) -> Tensor:
        """The native prediction, ``self(x, t, y)``; ``at`` is the one time of a broadcast ``t``
        (``None`` otherwise), which a subclass may use to compute its input scaling in floats."""
        return self(x, t, y)

    def eps(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted noise ``E[n | x_t]``."""
        return self.predict("eps", x, t, y)

    def score(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted score ``grad_x log p_t(x)``."""
        return self.predict("score", x, t, y)

    def denoise(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted clean data ``E[x_0 | x_t]`` (Tweedie's formula)."""
        return self.predict("x0", x, t, y)

    def v(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Predicted ``v`` (Salimans & Ho 2022, generalised to any linear SDE)."""
        return self.predict("v", x, t, y)

    def velocity(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The probability-flow ODE drift ``dx/dt`` (Song et al. 2021, Eq. 13)."""
        return self.predict("velocity", x, t, y)

    def score_fn(self, y: Tensor | None = None):
        """A plain ``(x, t) -> score`` closure, e.g. for :meth:`SDE.reverse`."""
        return lambda x, t: self.score(x, t, y)


class CountingModel(ScoreFunction):
    """Wraps a :class:`ScoreFunction` and counts its evaluations (the NFE).

    One batched call of the underlying network counts as one function evaluation,
    whatever is derived from it; a wrapped model that evaluates its network several times
    per call (e.g. classifier-free guidance) declares so in ``nfe_per_call``.

    It is also the non-finite guard of the samplers: every output is checked (one
    ``isfinite`` reduction) and the first non-finite one raises
    :class:`~scoresde._core.checks.NonFiniteError` naming ``label``, the step (``step`` of
    ``steps``, which the caller advances) and the time.
    """

    def __init__(self, model: ScoreFunction, label: str = "model", steps: int | None = None) -> None:
        super().__init__(model.sde, model.prediction)
        self.inner = model
        self.nfe_per_call = model.nfe_per_call
        self.nfe = 0
        self.label = label
        self.steps = steps
        self.step: int | str = 1
        self.pending: list[tuple[Tensor, Tensor, Tensor, int, int | str]] | None = None
        self._first = 0  # the number of held outputs dropped so far (the index of pending[0])
        self.before_error: Callable[[], None] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # The counters change on every evaluation and step: skip nn.Module's registry checks.
        if name in ("nfe", "step", "pending", "_first", "before_error"):
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def position(self, step: int | str | None = None) -> str:
        """Where the caller is (or was at ``step``): ``step i of n`` (or the text set in ``step``)."""
        step = self.step if step is None else step
        if isinstance(step, str):
            return step
        return f"step {step}" + (f" of {self.steps}" if self.steps is not None else "")

    # The deferred guard of the fixed-step samplers (scoresde.models.fixed_times).  A sampler's
    # state is a linear combination of the model outputs it has received, each with a
    # coefficient, in the step that receives it or the next, and of the state before (even a
    # zero coefficient keeps a NaN or infinite entry: 0 * inf is NaN).  So where the run checks
    # its state (scoresde.sampling.setup.SamplingRun), each output need not be checked on its
    # own: it is held (a reference) until a finite state has followed the step after it, and
    # checked only when a state is not finite, so that the error still names the output that
    # went first, with the step and time of its evaluation.

    def defer_guard(self, before_error: Callable[[], None] | None = None) -> None:
        """Hold the outputs that :class:`~scoresde.models.fixed_times.FixedTimes` passes to
        :meth:`hold` for the caller's state checks (:meth:`release`, :meth:`check_held`,
        :meth:`flush`) instead of checking each at once.  ``before_error`` is called before an
        output checked at once (any other path) raises: the caller's checks of what came
        before it (held states and outputs), so that the first error is the one raised."""
        self.pending = []
        self._first = 0
        self.before_error = before_error

    def hold(self, out: Tensor, x: Tensor, times: Tensor, i: int) -> None:
        """The output ``out`` of the evaluation at ``x`` and ``times[i]``: checked at once where
        the guard is not deferred, else held (the oldest is checked once 64 pile up: a caller
        that does not check its states)."""
        pending = self.pending
        if pending is None:
            if not (out.is_floating_point() and all_finite(out)):
                self._output_error(out, x, times[i])
            return
        pending.append((out, x, times, i, self.step))
        if len(pending) > 64:
            self._check(pending[:1])
            del pending[:1]
            self._first += 1

    def mark(self) -> int:
        """The index the next held output will get (indices count every output held so far)."""
        return self._first + len(self.pending or ())

    def release(self, upto: int) -> None:
        """Drop the held outputs of index below ``upto``: a finite state has followed them."""
        pending = self.pending
        n = min(upto - self._first, len(pending or ()))
        if pending is not None and n > 0:
            del pending[:n]
            self._first += n

    def check_held(self, start: int, end: int) -> None:
        """Raise the error of the first non-finite held output of index in ``[start, end)``."""
        pending = self.pending or []
        first = self._first
        self._check(pending[max(0, start - first) : max(0, end - first)])

    def flush(self) -> None:
        """Check and drop every held output (the end of a run)."""
        pending = self.pending
        if pending:
            self.pending = []
            self._first += len(pending)
            self._check(pending)

    def _output_error(self, out: Tensor, x: Tensor, t: Tensor | float) -> None:
        """The error of the non-finite output ``out`` (after the caller's earlier checks)."""
        if self.before_error is not None:
            self.before_error()
        guard_output(out, x, t, self.label, self.position())

    def _check(self, entries: list[tuple[Tensor, Tensor, Tensor, int, int | str]]) -> None:
        for out, x, times, i, step in entries:
            if not (out.is_floating_point() and all_finite(out)):
                guard_output(out, x, times[i], self.label, self.position(step))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        self.nfe += self.inner.evaluations(t)
        out = self.inner(x, t, y)
        if not (out.is_floating_point() and all_finite(out)):  # the message only when it raises
            self._output_error(out, x, t)
        return out

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        self.nfe += self.inner.evaluations(t)
        out = self.inner.predict(kind, x, t, y)
        if not (out.is_floating_point() and all_finite(out)):
            self._output_error(out, x, t)
        return out


def check_model_sde(model: ScoreFunction, sde: SDE | None) -> SDE:
    """Return the SDE to use, raising if ``sde`` disagrees with the one the model was built for."""
    if not isinstance(model, ScoreFunction):
        raise TypeError(
            "model must be a scoresde ScoreFunction (ScoreModel, AnalyticScore, ...), "
            f"got {type(model).__name__}"
        )
    if sde is None:
        return model.sde
    if model.sde != sde:
        raise ValueError(f"the model was built for {model.sde!r} but was asked to run under {sde!r}")
    return sde

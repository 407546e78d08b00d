"""Frozen inference execution: ``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference``.

:class:`FrozenForward` runs a network ``net(x, t[, y])`` through a TorchScript graph traced from
it at the first call of each input signature (shapes, dtypes, device, which inputs are given),
frozen (parameters inlined as constants) and optimised for inference (on the CPU: oneDNN
convolutions with their bias, activation and add fused, weights pre-packed; Conv-BatchNorm
folding).  Unlike ``torch.compile`` it needs no C++ compiler and sets up in seconds (trace plus
three check forwards) instead of minutes.  What it gains is small and depends on the network and
the moment: 0.81-1.11x of eager's time per forward for the 28x28 UNets on a 2-core AVX2 CPU
(benchmarks/network_modes.py, docs/bench_network_modes.md), so it is an option, never a default.
TorchScript is deprecated in recent torch (its warnings are silenced here); the traces are an
implementation detail that can move to ``torch.export`` without changing this API.

What it refuses, and what it leaves to the eager network:

- **Data-dependent control flow.**  A trace records the operations of one call; a Python branch
  on a tensor's value (``if t.max() > 0.5``) would be frozen into one branch and silently change
  results for other inputs.  Each trace is therefore checked against the eager network on three
  other inputs of the same shape (other ``x``, labels, and times set to 0 and scaled by 100; see
  :func:`_other_inputs`; one outside the network's domain, where it raises, is skipped); a
  difference beyond float tolerance makes :class:`FrozenForward` fall back to the eager network
  for good, with a warning naming the reason (:func:`freeze_network` raises
  :class:`FreezeError`).  Branches on shapes are safe: one trace per input signature.  A branch
  that none of these inputs takes is not caught: do not freeze a network whose Python code
  branches on tensor values.
- **Gradients.**  A frozen graph is for inference: a call with gradients enabled and an input
  that requires them (likelihood divergences, DPS guidance), or with the network in training
  mode, runs the eager network.
- **Weights that change.**  Freezing copies the weights into the graph: load new weights into
  the eager network, then freeze again (training never freezes).

:func:`freeze_model` does this, in place, for every network of a score model (the same networks
:func:`scoresde.models.compile.compile_model` compiles); :func:`channels_last_model` runs them in
``channels_last`` memory format (no trace).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "EXECUTION_MODES",
    "FreezeError",
    "FrozenForward",
    "channels_last_model",
    "freeze_model",
    "freeze_network",
    "prepare_model",
    "unfreeze_model",
]

EXECUTION_MODES = ("off", "on", "freeze")
"""How :func:`prepare_model` runs a network: ``off`` eager, ``on`` ``torch.compile``
(:func:`~scoresde.models.compile.compile_model`), ``freeze`` frozen traces (:func:`freeze_model`)."""

_RTOL = 1e-4
"""Relative tolerance of the trace check, on the output's scale (float32 fusion and reordering
of convolutions differs from eager by ~1e-6 of the scale; a wrong branch by O(1))."""


class FreezeError(RuntimeError):
    """The network cannot be frozen safely (data-dependent control flow, an untraceable op)."""


def _signature(args: tuple[Any, ...], channels_last: bool) -> tuple[Any, ...]:
    return (
        channels_last,
        *((tuple(a.shape), a.dtype, a.device) if isinstance(a, Tensor) else a for a in args),
    )


def _other_inputs(args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Three more inputs of the same signature with other values, to check that a trace did not
    freeze a branch: (1) every tensor reversed along the batch, floats rescaled and shifted;
    (2) ``x`` scaled by 1.3 and the other float inputs (times, noise levels) zero; (3) ``x``
    scaled by 0.5 and the others by 100 (a branch on ``t.max()`` or ``(t > c).all()`` then
    goes the other way for any threshold between 0 and 100 times the example's values)."""
    cases: list[list[Any]] = [[], [], []]
    for i, a in enumerate(args):
        if not isinstance(a, Tensor) or a.numel() == 0:
            vals = [a, a, a]
        elif not a.is_floating_point():  # labels: other valid labels of the same set
            b = a.flip(0) if a.ndim else a
            vals = [b, a, b]
        elif i == 0:
            vals = [0.7 * (a.flip(0) if a.ndim else a), 1.3 * a, 0.5 * a]
        else:
            b = a.flip(0) if a.ndim else a
            vals = [0.7 * b + 0.1 * b.abs().amax(), torch.zeros_like(a), 100.0 * a]
        for case, v in zip(cases, vals, strict=True):
            case.append(v)
    return [tuple(c) for c in cases]


def _allclose(a: Tensor, b: Tensor) -> bool:
    """Equal within ``_RTOL`` of ``b``'s scale (at least 1), non-finite values in the same places."""
    if a.shape != b.shape:
        return False
    finite = b.isfinite()
    if not bool((a.isfinite() == finite).all()) or not bool((a[~finite] == b[~finite]).all()):
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    scale = max(float(b[finite].abs().amax()), 1.0) if bool(finite.any()) else 1.0
    return bool(((a[finite] - b[finite]).abs() <= _RTOL * scale).all())


def freeze_network(
    net: nn.Module, example: tuple[Any, ...], *, channels_last: bool = False, strict: bool = True
) -> nn.Module:
    """A frozen, inference-optimised TorchScript module of ``net`` for inputs like ``example``.

    Args:
        net: the network ``net(*example)`` returning one tensor; put in eval mode.
        example: its positional inputs (``(x, t)`` or ``(x, t, y)``); the trace holds for
            inputs of the same shapes, dtypes and device.
        channels_last: convert the network and a 4-D first input to ``channels_last`` first.
        strict: check the trace against the eager network on three other inputs and raise
            :class:`FreezeError` where they differ (data-dependent control flow); ``False``
            returns the trace unchecked.

    Raises:
        FreezeError: ``strict`` and the trace is unsafe, or tracing failed (the cause chained).
    """
    net.eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    args = tuple(example)
    if channels_last and isinstance(args[0], Tensor) and args[0].ndim == 4:
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    with warnings.catch_warnings():
        # Shape checks (``assert x.shape[1] == c``) warn too; shapes are fixed per trace.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch >= 2.10 marks TorchScript deprecated (FutureWarning / DeprecationWarning).
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        try:
            with torch.no_grad():
                traced = torch.jit.trace(net, args, check_trace=False)
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        except Exception as err:
            raise FreezeError(
                f"{type(net).__name__} could not be traced ({type(err).__name__}: {err})"
            ) from err
    if strict:
        for other in _other_inputs(args):
            with torch.inference_mode():
                try:
                    want = net(*other)
                except Exception:
                    continue
                got = frozen(*other)
            if not isinstance(want, Tensor) or not _allclose(got, want):
                raise FreezeError(
                    f"the trace of {type(net).__name__} gives other outputs than the network itself on "
                    "another input of the same shape: its result depends on input values through Python "
                    "control flow, which a trace freezes into one branch"
                )
    return frozen


class FrozenForward:
    """The ``forward`` of a network run through frozen traces, one per input signature.

    Installed by :func:`freeze_model` as the network's own ``forward`` (an instance attribute),
    so the module, its parameters and its ``state_dict`` keys stay as they are (checkpoints and
    ``.to()`` keep working).  Traces lazily at the first call of each signature (shapes, dtypes,
    device, which inputs are given); runs the eager ``forward`` for calls with gradients, in
    training mode, beyond ``max_traces`` signatures, or for good once a trace proved unsafe
    (with a ``RuntimeWarning`` naming why).

    Args:
        net: the network.
        channels_last: trace and run 4-D inputs in ``channels_last`` memory format (a copy of
            the network in that format is traced; the output comes back contiguous).
        max_traces: traces kept (e.g. one more for a last, smaller batch).
    """

    def __init__(self, net: nn.Module, *, channels_last: bool = False, max_traces: int = 4) -> None:
        self.net = net
        self.channels_last = channels_last
        self.max_traces = max_traces
        self.traces: dict[tuple[Any, ...], Any] = {}
        self.unsafe: str | None = None

    def eager(self, *args: Any, **kwargs: Any) -> Any:
        """The network's own (class) ``forward``."""
        return type(self.net).forward(self.net, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if (
            kwargs
            or self.unsafe is not None
            or self.net.training
            or (torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args))
        ):
            return self.eager(*args, **kwargs)
        key = _signature(args, self.channels_last)
        trace = self.traces.get(key)
        if trace is None:
            if len(self.traces) >= self.max_traces:
                return self.eager(*args)
            try:
                trace = self.traces[key] = self._trace(args)
            except FreezeError as err:
                self.unsafe = str(err)
                warnings.warn(f"freeze: running the network eagerly: {err}", RuntimeWarning, stacklevel=2)
                return self.eager(*args)
        if self.channels_last and isinstance(args[0], Tensor) and args[0].ndim == 4:
            out = trace(args[0].contiguous(memory_format=torch.channels_last), *args[1:])
            return out.contiguous() if isinstance(out, Tensor) else out
        return trace(*args)

    def _trace(self, args: tuple[Any, ...]) -> Any:
        import copy

        net = self.net
        del net.forward  # trace the class's forward, not this one
        try:
            target = copy.deepcopy(net) if self.channels_last else net
            return freeze_network(target, args, channels_last=self.channels_last)
        finally:
            net.forward = self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenForward:
        """A copy for the copied network, without traces (they hold the old weights)."""
        import copy

        return FrozenForward(
            copy.deepcopy(self.net, memo), channels_last=self.channels_last, max_traces=self.max_traces
        )


def _networks(model: Any) -> list[nn.Module]:
    """The networks of ``model`` (:func:`~scoresde.models.compile.compiled_networks`), through a
    holder's ``.model``; ``ValueError`` when there is none."""
    from scoresde.models.compile import compiled_networks

    inner = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        model = inner
    nets = compiled_networks(model) if isinstance(model, nn.Module) else []
    if not nets:
        raise ValueError(f"{type(model).__name__} has no network (the `net` of a score model inside it)")
    return nets


def freeze_model(model: Any, *, channels_last: bool = False) -> Any:
    """Run the network(s) of ``model`` through frozen traces (:class:`FrozenForward`), in place.

    The networks are those :func:`scoresde.models.compile.compiled_networks` finds (the ``net`` of
    every score model inside ``model``).  Outputs equal the eager network's within float
    tolerance; a network whose trace would change results runs eagerly (with a warning).  For
    inference only: the traces hold the weights of their first call; :func:`unfreeze_model`
    before changing weights.

    Args:
        model: a score model, a wrapper around one, a holder of one in ``.model``
            (:class:`~scoresde.io.loaded.LoadedModel`, :class:`~scoresde.interop.diffusers.DiffusersModel`),
            or a bare network.
        channels_last: run the traces in ``channels_last`` memory format.

    Returns:
        ``model``.

    Raises:
        ValueError: ``model`` holds no network.
    """
    for net in _networks(model):
        if isinstance(net.__dict__.get("forward"), FrozenForward):
            continue
        net.forward = FrozenForward(net, channels_last=channels_last)
    return model


def unfreeze_model(model: Any) -> Any:
    """Undo :func:`freeze_model`: the networks run their own ``forward`` again; returns ``model``."""
    for net in _networks(model):
        if isinstance(net.__dict__.get("forward"), FrozenForward):
            del net.forward
    return model


def _to_channels_last(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    x = args[0] if args else None
    if isinstance(x, Tensor) and x.ndim == 4:
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def _to_contiguous(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
    return out.contiguous() if isinstance(out, Tensor) and out.ndim == 4 else None


def channels_last_model(model: Any) -> Any:
    """Run the convolutions of ``model``'s network(s) in ``channels_last`` memory format, in place.

    Converts each network's 4-D weights to ``channels_last`` (NHWC strides; the values, the
    parameters and their ``state_dict`` keys are unchanged), and adds hooks that convert a 4-D
    image input to ``channels_last`` and the 4-D output back to contiguous, so the caller sees
    the usual layout.  oneDNN's NHWC convolutions are faster on x86 CPUs for the small channel
    counts of these UNets, while GroupNorm is slower in NHWC: measured per network in
    benchmarks/network_modes.py (docs/bench_network_modes.md).  Outputs equal the contiguous
    ones within float tolerance (other summation order).  Networks without 2-D convolutions are
    left as they are.

    Returns:
        ``model``.

    Raises:
        ValueError: ``model`` holds no network.
    """
    for net in _networks(model):
        if getattr(net, "_scoresde_channels_last", False):
            continue
        if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
            continue
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        net.register_forward_pre_hook(_to_channels_last)
        net.register_forward_hook(_to_contiguous)
        net._scoresde_channels_last = True  # type: ignore[assignment]
    return model


def prepare_model(
    model: Any, compile: str = "off", *, compile_mode: str = "default", channels_last: bool = False
) -> Any:
    """Set how the network(s) of ``model`` run for inference, in place; returns ``model``.

    The one entry the CLI's ``--compile`` / ``--compile-mode`` / ``--channels-last`` use.

    Args:
        model: a score model, a wrapper around one, or a holder of one in ``.model``.
        compile: one of :data:`EXECUTION_MODES`: ``off`` (eager), ``on`` (``torch.compile`` with
            ``compile_mode``; :class:`~scoresde.models.compile.CompilerUnavailableError` where
            no compiler works), ``freeze`` (:func:`freeze_model`).
        compile_mode: the ``torch.compile`` mode of ``compile="on"``.
        channels_last: :func:`channels_last_model` first.

    Raises:
        ValueError: an unknown ``compile`` value, or a model without a network.
    """
    if compile not in EXECUTION_MODES:
        raise ValueError(f"unknown compile value {compile!r}; choose one of {list(EXECUTION_MODES)}")
    if channels_last:
        channels_last_model(model)
    if compile == "on":
        from scoresde.models.compile import compile_model

        compile_model(model, compile_mode)
    elif compile == "freeze":
        freeze_model(model)
    return model

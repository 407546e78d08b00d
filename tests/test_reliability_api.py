"""Reliability of the public API: a bad-input battery, dtypes, empty batches, non-finite guards.

Every case of :data:`BATTERY` must raise an exception of the given type whose message names
the problem (the regex).  ``summarise_battery`` classifies each case as ``clear`` (the right
error, the right words), ``raw`` (another exception) or ``silent`` (no exception); it makes
the table in docs/reliability.md (``python -m tests.test_reliability_api``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.guidance import ClassifierFreeGuidance, MatrixOperator, conditional_sample, dps_sample

F64 = torch.float64


def _gmm() -> ss.GaussianMixture:
    return ss.GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.1 * torch.eye(2)
    )


def _oracle(sde: ss.SDE | None = None) -> ss.AnalyticScore:
    return ss.AnalyticScore(_gmm(), sde or ss.VPSDE())


def _mlp_model() -> ss.ScoreModel:
    torch.manual_seed(0)
    return ss.ScoreModel(ss.MLP(2, hidden=16, depth=2), ss.VPSDE(), prediction="eps").eval()


class _Broadcasting(torch.nn.Module):
    """A buggy network returning ``(1, D)`` for any batch."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x.mean(0, keepdim=True)


class _NaNBelow(torch.nn.Module):
    """Zero prediction, NaN once ``t < t_bad`` (a network that breaks late in sampling)."""

    def __init__(self, t_bad: float) -> None:
        super().__init__()
        self.t_bad = t_bad
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        bad = (t < self.t_bad).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return x * self.w + torch.where(bad > 0, torch.nan, 0.0)


def _nan_model(t_bad: float = 0.5, sde: ss.SDE | None = None) -> ss.ScoreModel:
    return ss.ScoreModel(_NaNBelow(t_bad), sde or ss.VPSDE(), prediction="eps")


@dataclass
class Case:
    category: str
    name: str
    call: Callable[[], object]
    error: type[BaseException]
    match: str


def _x(n: int = 4, d: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(dtype)


BATTERY: list[Case] = [
    # Times.
    *[
        Case("time", f"{fn} t={tv}", (lambda fn=fn, tv=tv: getattr(_oracle(), fn)(_x(), tv)), ValueError, pat)
        for fn in ("score", "eps", "denoise")
        for tv, pat in (
            (-0.5, r"t must lie in \[0, 1\]"),
            (1.5, r"t must lie in \[0, 1\]"),
            (math.nan, "t contains NaN"),
        )
    ],
    Case(
        "time",
        "dsm_loss t > T",
        lambda: ss.dsm_loss(_oracle(), _x(), t=torch.full((4,), 2.0)),
        ValueError,
        r"t must lie in",
    ),
    Case(
        "time",
        "dsm_loss t < 0",
        lambda: ss.dsm_loss(_oracle(), _x(), t=torch.full((4,), -1.0)),
        ValueError,
        r"t must lie in",
    ),
    Case(
        "time",
        "dsm_loss NaN t",
        lambda: ss.dsm_loss(_oracle(), _x(), t=torch.full((4,), math.nan)),
        ValueError,
        "t contains NaN",
    ),
    Case(
        "time",
        "dsm_loss t shape",
        lambda: ss.dsm_loss(_oracle(), _x(), t=torch.rand(3)),
        ValueError,
        r"t must have shape \(4,\)",
    ),
    Case(
        "noise",
        "dsm_loss NaN noise",
        lambda: ss.dsm_loss(_oracle(), _x(), noise=torch.full((4, 2), math.nan)),
        ValueError,
        "noise contains",
    ),
    Case(
        "noise",
        "dsm_loss noise shape",
        lambda: ss.dsm_loss(_oracle(), _x(), noise=torch.randn(1, 2)),
        ValueError,
        "noise must have x0's shape",
    ),
    # Shapes.
    Case(
        "shape",
        "model output (1, D) for (B, D)",
        lambda: ss.ScoreModel(_Broadcasting(), ss.VPSDE()).eps(_x(), 0.5),
        ValueError,
        r"returned shape \(1, 2\) for an input of shape \(4, 2\)",
    ),
    Case(
        "shape",
        "sample with a broadcasting net",
        lambda: ss.sample(ss.ScoreModel(_Broadcasting(), ss.VPSDE()), shape=(4, 2), steps=2),
        ValueError,
        "no broadcasting",
    ),
    Case(
        "shape",
        "sample shape (4,)",
        lambda: ss.sample(_oracle(), shape=(4,), steps=2),
        ValueError,
        "shape must be",
    ),
    # Dtypes.
    Case(
        "dtype",
        "sample(dtype=int64)",
        lambda: ss.sample(_oracle(), shape=(4, 2), dtype=torch.int64),
        TypeError,
        "dtype must be a real floating",
    ),
    Case(
        "dtype",
        "sample(dtype=complex64)",
        lambda: ss.sample(_oracle(), shape=(4, 2), dtype=torch.complex64),
        TypeError,
        "dtype must be a real floating",
    ),
    Case(
        "dtype",
        "sample(dtype=bool)",
        lambda: ss.sample(_oracle(), shape=(4, 2), dtype=torch.bool),
        TypeError,
        "dtype must be a real floating",
    ),
    Case(
        "dtype",
        "complex x_T",
        lambda: ss.sample(_oracle(), x_T=_x().to(torch.complex64), steps=2),
        TypeError,
        "x_T must be a real floating",
    ),
    Case(
        "dtype",
        "bool x_T",
        lambda: ss.sample(_oracle(), x_T=_x() > 0, steps=2),
        TypeError,
        "x_T must be a real floating",
    ),
    Case(
        "dtype",
        "complex data to score",
        lambda: _oracle().score(_x().to(torch.complex64), 0.5),
        TypeError,
        "x must be a real floating",
    ),
    Case(
        "dtype",
        "bool data to dsm_loss",
        lambda: ss.dsm_loss(_oracle(), _x() > 0),
        TypeError,
        "x0 must be a real floating",
    ),
    Case(
        "dtype",
        "int data to dsm_loss",
        lambda: ss.dsm_loss(_oracle(), torch.ones(4, 2, dtype=torch.int64)),
        TypeError,
        "x0 must be a real floating",
    ),
    Case(
        "dtype",
        "complex data to log_likelihood",
        lambda: ss.log_likelihood(_oracle(), ss.VPSDE(), _x().to(torch.complex64)),
        TypeError,
        "x must be a real floating",
    ),
    Case(
        "dtype",
        "complex t",
        lambda: _oracle().score(_x(), torch.zeros(4, dtype=torch.complex64)),
        TypeError,
        "t must be a real",
    ),
    # Empty batches.
    Case(
        "empty", "score of (0, 2)", lambda: _oracle().score(torch.zeros(0, 2), 0.5), ValueError, "empty batch"
    ),
    Case(
        "empty",
        "dsm_loss of (0, 2)",
        lambda: ss.dsm_loss(_oracle(), torch.zeros(0, 2)),
        ValueError,
        "empty batch",
    ),
    Case(
        "empty",
        "sample x_T (0, 2)",
        lambda: ss.sample(_oracle(), x_T=torch.zeros(0, 2), steps=2),
        ValueError,
        "empty batch",
    ),
    Case(
        "empty",
        "sample shape (0, 2)",
        lambda: ss.sample(_oracle(), shape=(0, 2), steps=2),
        ValueError,
        "positive sizes",
    ),
    Case(
        "empty",
        "log_likelihood (0, 2)",
        lambda: ss.log_likelihood(_oracle(), ss.VPSDE(), torch.zeros(0, 2)),
        ValueError,
        "empty batch",
    ),
    Case(
        "empty",
        "encode (0, 2)",
        lambda: ss.encode(_oracle(), ss.VPSDE(), torch.zeros(0, 2)),
        ValueError,
        "empty batch",
    ),
    Case(
        "empty",
        "decode (0, 2)",
        lambda: ss.decode(_oracle(), ss.VPSDE(), torch.zeros(0, 2)),
        ValueError,
        "empty batch",
    ),
    # Tolerances.
    Case(
        "tolerance",
        "log_likelihood rtol=-1",
        lambda: ss.log_likelihood(_oracle(), ss.VPSDE(), _x(), integrator=ss.AdaptiveIntegrator(rtol=-1.0)),
        ValueError,
        "rtol must be finite and > 0",
    ),
    Case(
        "tolerance",
        "log_likelihood rtol=0 atol=0",
        lambda: ss.log_likelihood(
            _oracle(), ss.VPSDE(), _x(), integrator=ss.AdaptiveIntegrator(rtol=0.0, atol=0.0)
        ),
        ValueError,
        "rtol must be finite and > 0",
    ),
    Case(
        "tolerance",
        "log_likelihood atol=-1",
        lambda: ss.log_likelihood(_oracle(), ss.VPSDE(), _x(), integrator=ss.AdaptiveIntegrator(atol=-1.0)),
        ValueError,
        "atol must be finite and >= 0",
    ),
    Case(
        "tolerance",
        "log_likelihood rtol=nan",
        lambda: ss.log_likelihood(
            _oracle(), ss.VPSDE(), _x(), integrator=ss.AdaptiveIntegrator(rtol=math.nan)
        ),
        ValueError,
        "rtol must be finite",
    ),
    Case(
        "tolerance",
        "encode rtol=0",
        lambda: ss.encode(_oracle(), ss.VPSDE(), _x(), integrator=ss.AdaptiveIntegrator(rtol=0.0)),
        ValueError,
        "rtol must be finite and > 0",
    ),
    # Seeds.
    Case(
        "seed",
        "sample seed 2**70",
        lambda: ss.sample(_oracle(), shape=(4, 2), steps=2, seed=2**70),
        ValueError,
        r"seed must lie in \[0, 2\*\*63 - 1\]",
    ),
    Case(
        "seed",
        "sample seed -1",
        lambda: ss.sample(_oracle(), shape=(4, 2), steps=2, seed=-1),
        ValueError,
        "seed must lie in",
    ),
    Case(
        "seed",
        "sample seed 1.5",
        lambda: ss.sample(_oracle(), shape=(4, 2), steps=2, seed=1.5),
        TypeError,
        "seed must be an integer",
    ),
    # Non-finite model outputs.
    Case(
        "non-finite",
        "sample, NaN model below t=0.5",
        lambda: ss.sample(_nan_model(0.5), shape=(4, 2), steps=10, method="euler"),
        NonFiniteError,
        r"sample \(euler\): the model output stopped being finite at step 7 of 10 \(t = 0\.4006",
    ),
    Case(
        "non-finite",
        "log_likelihood, NaN model",
        lambda: ss.log_likelihood(_nan_model(0.5), ss.VPSDE(), _x()),
        NonFiniteError,
        r"log_likelihood: the model output stopped being finite at ODE evaluation \d+ \(t = ",
    ),
    Case(
        "non-finite",
        "dps_sample, NaN model",
        lambda: dps_sample(
            _nan_model(0.5), MatrixOperator(torch.eye(2)), torch.zeros(2), shape=(4, 2), steps=10
        ),
        NonFiniteError,
        r"dps_sample: the model output stopped being finite at step 7 of 10",
    ),
    Case(
        "non-finite",
        "conditional_sample, NaN model",
        lambda: conditional_sample(
            _nan_model(0.5), MatrixOperator(torch.eye(2)), torch.zeros(2), shape=(4, 2), steps=10
        ),
        NonFiniteError,
        r"conditional_sample: the model output stopped being finite at step 7 of 10",
    ),
    Case(
        "non-finite",
        "classifier-free guidance scale 1e38 in float32",
        lambda: ss.sample(
            ClassifierFreeGuidance(
                ss.ScoreModel(ss.MLP(2, hidden=8, depth=1, num_classes=2), ss.VPSDE()), scale=1e38
            ),
            shape=(4, 2),
            steps=5,
            y=torch.tensor([0, 1, 0, 1]),
        ),
        NonFiniteError,
        r"stopped being finite at step 1 of 5",
    ),
    Case(
        "non-finite",
        "NaN sigma_data",
        lambda: ss.sample(
            ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), sigma_data=math.nan),
            shape=(4, 2),
            steps=3,
        ),
        NonFiniteError,
        r"at step 1 of 3 \(t = 1\).*for a finite input",
    ),
]


@pytest.mark.parametrize("case", BATTERY, ids=[c.name for c in BATTERY])
def test_bad_input_battery(case: Case) -> None:
    with pytest.raises(case.error, match=case.match):
        case.call()


def summarise_battery() -> dict[str, dict[str, int]]:
    """``{category: {"tried", "clear", "raw", "silent"}}`` over :data:`BATTERY`."""
    table: dict[str, dict[str, int]] = {}
    for case in BATTERY:
        row = table.setdefault(case.category, {"tried": 0, "clear": 0, "raw": 0, "silent": 0})
        row["tried"] += 1
        try:
            case.call()
        except case.error as err:
            row["clear" if re.search(case.match, str(err)) else "raw"] += 1
        except Exception:
            row["raw"] += 1
        else:
            row["silent"] += 1
    return table


# ---------------------------------------------------------------------- #
# Property tests (hypothesis) over values and shapes.
# ---------------------------------------------------------------------- #
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    t=st.one_of(
        st.floats(max_value=-1e-3, allow_nan=False),
        st.floats(min_value=1.001, allow_nan=False, allow_infinity=True),
    )
)
def test_times_outside_the_interval_are_refused(t: float) -> None:
    with pytest.raises(ValueError, match="t must lie in"):
        _oracle().score(_x(), t)


@FAST
@given(t=st.floats(min_value=1e-3, max_value=1.0))
def test_times_inside_the_interval_work(t: float) -> None:
    assert torch.isfinite(_oracle().eps(_x(dtype=F64), t)).all()


@FAST
@given(
    batch=st.integers(1, 5),
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
)
def test_any_float_dtype_runs_through_a_float32_model(
    batch: int, dims: list[int], dtype: torch.dtype
) -> None:
    """Half-precision (or double) inputs to a float32 network run in its dtype, come back in theirs."""
    d = math.prod(dims)
    model = ss.ScoreModel(_Flat(ss.MLP(d, hidden=8, depth=1)), ss.VPSDE()).eval()
    x = torch.randn(batch, *dims).to(dtype)
    out = model.eps(x, 0.5)
    assert out.dtype == dtype and out.shape == x.shape and torch.isfinite(out.float()).all()


class _Flat(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1), t).reshape(x.shape)


@FAST
@given(
    dtype=st.sampled_from([torch.int8, torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint8])
)
def test_non_float_dtypes_are_refused_everywhere(dtype: torch.dtype) -> None:
    x = torch.ones(3, 2, dtype=dtype)
    with pytest.raises(TypeError, match="real floating"):
        ss.sample(_oracle(), shape=(3, 2), dtype=dtype)
    with pytest.raises(TypeError, match="real floating"):
        _oracle().score(x, 0.5)
    with pytest.raises(TypeError, match="real floating"):
        ss.dsm_loss(_oracle(), x)


def test_sampling_in_half_precision_with_a_float32_model() -> None:
    res = ss.sample(_mlp_model(), shape=(8, 2), steps=4, method="euler", dtype=torch.float16, seed=0)
    assert res.x.dtype == torch.float16 and torch.isfinite(res.x).all()


def test_guard_tells_a_diverged_input_from_a_broken_model() -> None:
    """A finite model fed an infinite state reports the divergence, not a broken model."""
    model = _mlp_model()
    x = torch.full((2, 2), math.inf)
    with pytest.raises(NonFiniteError, match="input had already stopped being finite"):
        from scoresde.models.base import CountingModel

        CountingModel(model, label="probe").eps(x, 0.5)


def test_finite_runs_are_unchanged_by_the_guards() -> None:
    """The guards add no arithmetic: exact-oracle samples match a hand-run Euler loop bitwise."""
    oracle = _oracle()
    x_T = _x(8, dtype=F64)
    res = ss.sample(oracle, x_T=x_T, steps=5, method="euler", denoise=False)
    ts = ss.time_grid(oracle.sde, 5).to(F64)
    x = x_T.clone()
    for i in range(5):
        x = torch.add(x, oracle.velocity(x, ts[i].expand(8)), alpha=float(ts[i + 1] - ts[i]))
    # Bit equality: the hand loop is the sampler's own Euler update (x + dt v as one fused
    # torch.add), run again on this machine.
    torch.testing.assert_close(res.x, x, rtol=0, atol=0)


def test_underflow_of_the_ode_solver_is_a_clear_error(monkeypatch) -> None:
    """torchdiffeq's ``AssertionError: underflow in dt`` becomes a RuntimeError naming the tolerances."""
    import torchdiffeq

    def underflow(*args, **kwargs):
        raise AssertionError("underflow in dt 0.0")

    monkeypatch.setattr(torchdiffeq, "odeint", underflow)
    with pytest.raises(RuntimeError, match=r"step size underflowed .* rtol=\(1e-05, 0\.0\), atol=1e-05"):
        # dopri8 goes to torchdiffeq (dopri5 and bosh3 run on the library's own loop).
        ss.log_likelihood(_oracle(), ss.VPSDE(), _x(dtype=F64), integrator=ss.AdaptiveIntegrator("dopri8"))


if __name__ == "__main__":  # pragma: no cover - prints the table for docs/reliability.md
    rows = summarise_battery()
    print("| category | tried | clear error | raw traceback | silent |")
    print("|---|---|---|---|---|")
    for cat, r in rows.items():
        print(f"| {cat} | {r['tried']} | {r['clear']} | {r['raw']} | {r['silent']} |")

"""``fixed_times``: the fast path of a model at a run's times equals the general path exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.models.base import CountingModel
from scoresde.models.fixed_times import _call_of, fixed_times

KINDS = ("score", "eps", "x0", "v", "velocity")


def _net(dim: int = 3, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return ss.MLP(dim, hidden=32, depth=2).to(dtype)


def _state(dtype: torch.dtype = torch.float64, batch: int = 6) -> torch.Tensor:
    return torch.randn(batch, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _both(model: ss.ScoreFunction, times: torch.Tensor, x: torch.Tensor):
    fast, general = fixed_times(model, times, x), fixed_times(model, times, x, fast=False)
    assert fast.fast and not general.fast
    return fast, general


CASES = [
    (ss.VPSDE(), {"prediction": "eps"}),
    (ss.VPSDE(), {"prediction": "v", "time_input": "scaled_t"}),
    (ss.SubVPSDE(), {"prediction": "x0", "scale_input": False}),
    (ss.VESDE(), {"prediction": "score", "time_input": "sigma"}),
    (ss.VESDE(), {"prediction": "eps", "time_input": "log_sigma", "sigma_data": 0.5}),
    (
        ss.DiscreteVPSDE.from_betas(torch.linspace(1e-4, 0.02, 50)),
        {"prediction": "eps", "time_input": "timestep"},
    ),
]


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_predict_equals_the_general_path_bit_for_bit(case: int, dtype: torch.dtype) -> None:
    sde, kwargs = CASES[case]
    model = CountingModel(ss.ScoreModel(_net(dtype=dtype), sde, **kwargs))
    times = torch.linspace(sde.T, 0.05, 7, dtype=torch.float64)
    x = _state(dtype)
    fast, general = _both(model, times, x)
    for kind in KINDS:
        for i in range(len(times)):
            want = model.inner.predict(kind, x, times.to(dtype)[i], None)
            assert torch.equal(fast.predict(kind, x, i), want)
            assert torch.equal(general.predict(kind, x, i), want)


@torch.no_grad()
@pytest.mark.parametrize("kind", KINDS)
def test_linear_is_the_prediction_up_to_rounding(kind: str) -> None:
    sde = ss.VPSDE()
    model = ss.ScoreModel(_net(), sde, prediction="v")
    times = torch.linspace(1.0, 0.01, 5, dtype=torch.float64)
    x = _state()
    fast, general = _both(model, times, x)
    for i in range(len(times)):
        out, a, b = fast.linear(kind, x, i)
        want = fast.predict(kind, x, i)
        torch.testing.assert_close(a * out + b * x, want, rtol=1e-12, atol=1e-12 * want.abs().max().item())
        out_g, a_g, b_g = general.linear(kind, x, i)
        assert (a_g, b_g) == (1.0, 0.0) and torch.equal(out_g, want)


def test_a_network_in_another_dtype_and_labels() -> None:
    """float64 states through a float32 network (cast both ways), labels passed to the network."""

    class Labelled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x, t, y):
            return self.lin(torch.cat([x, (t + y)[:, None]], dim=1))

    model = ss.ScoreModel(Labelled(), ss.VPSDE(), prediction="x0")
    times = torch.linspace(1.0, 0.05, 4)
    x, y = _state(torch.float64, 4), torch.arange(4.0)
    fast, general = fixed_times(model, times, x, y), fixed_times(model, times, x, y, fast=False)
    assert fast.fast
    for i in range(len(times)):
        got = fast.predict("eps", x, i)
        assert got.dtype == torch.float64 and torch.equal(got, general.predict("eps", x, i))


def test_counts_and_guards_as_the_counting_model() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            return torch.full_like(x, float("nan"))

    messages = []
    for fast in (True, False):
        model = CountingModel(ss.ScoreModel(Bad(), ss.VPSDE()), label="my run", steps=4)
        at = fixed_times(model, torch.linspace(1.0, 0.1, 4), _state(torch.float32), fast=fast)
        with pytest.raises(NonFiniteError) as err:
            at.denoise(_state(torch.float32), 2)
        assert model.nfe == 1
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "my run" in messages[0]


def test_an_undefined_conversion_raises_only_where_it_is_used() -> None:
    """The eps of an x0 model at sigma = 0 (t = 0): refused at that time, as predict refuses it."""
    model = ss.ScoreModel(_net(), ss.VPSDE(), prediction="x0")
    times = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    x = _state()
    fast, general = _both(model, times, x)
    assert torch.equal(fast.eps(x, 1), general.eps(x, 1))
    for at in (fast, general):
        with pytest.raises(ValueError, match="sigma\\(t\\) = 0"):
            at.eps(x, 2)
    assert torch.equal(fast.denoise(x, 2), general.denoise(x, 2))


def test_the_general_path_for_everything_but_a_plain_score_model() -> None:
    sde, x, times = ss.VPSDE(), _state(), torch.linspace(1.0, 0.1, 3)

    class Sub(ss.ScoreModel):
        pass

    hooked = ss.ScoreModel(_net(), sde)
    hooked.register_forward_hook(lambda m, a, out: out)
    gmm = ss.GaussianMixture(torch.ones(1), torch.zeros(1, 3), torch.eye(3)[None])
    for model in (Sub(_net(), sde), hooked, ss.AnalyticScore(gmm, sde), CountingModel(hooked)):
        assert not fixed_times(model, times, x).fast


def test_the_network_is_called_through_its_hooks_and_compiled_form() -> None:
    """``forward`` directly only where ``__call__`` would do nothing else."""
    net = _net()
    assert _call_of(net) == net.forward
    seen = []
    handle = net.register_forward_pre_hook(lambda m, a: seen.append(1))
    assert _call_of(net) is net
    handle.remove()
    net.compile()  # in place: the call goes to the compiled form (compiled lazily, never run here)
    assert _call_of(net) is net


def test_a_score_model_compiled_in_place_and_overridden_methods_keep_their_path() -> None:
    sde, x, times = ss.VPSDE(), _state(), torch.linspace(1.0, 0.1, 3, dtype=torch.float64)
    compiled = ss.ScoreModel(_net(), sde)
    compiled.compile()  # its __call__ goes to the compiled form: never skipped
    assert not fixed_times(compiled, times, x).fast

    class Shifted(ss.AnalyticScore):
        def eps(self, x, t, y=None):  # a model that overrides a method, not predict
            return super().eps(x, t, y) + 1.0

    gmm = ss.GaussianMixture(torch.ones(1), torch.zeros(1, 3), torch.eye(3)[None])
    model = Shifted(gmm, sde)
    at = fixed_times(model, times, x)
    torch.testing.assert_close(at.eps(x, 1), model.predict("eps", x, times[1]) + 1.0)

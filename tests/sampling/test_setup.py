"""The shared sampling setup: ``start_sampling`` + ``SamplingRun`` are what ``ss.sample`` is made of."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.sampling import SampleSpec, SamplingRun, start_sampling
from tests.sampling.test_fast_path import METHODS


def test_a_run_built_from_the_parts_is_ss_sample(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    kw = {"steps": 8, "record": True, "record_stride": 3}
    ref = ss.sample(oracle, shape=(6, 2), method="euler_maruyama", seed=4, **kw)
    start = start_sampling(oracle, None, SampleSpec(shape=(6, 2), seed=4, **kw))
    with SamplingRun(oracle, start, "mine") as run:
        x = ss.SAMPLERS["euler_maruyama"](
            run.model, start.sde, start.x, run.ts, noise=start.noise, callback=run.after_step
        )
    res = run.result(run.denoise(x))
    # Bit equality: ss.sample runs these same parts; the same code twice on this machine.
    assert torch.equal(res.x, ref.x) and res.nfe == ref.nfe == 9
    assert torch.equal(res.trajectory, ref.trajectory) and res.trajectory.shape == (4, 6, 2)
    assert torch.equal(res.trajectory_times, ref.trajectory_times)


def test_run_errors_name_the_run(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    with pytest.raises(ValueError, match="record_stride must be an integer >= 1, got 0"):
        ss.sample(oracle, shape=(2, 2), steps=3, record=True, record_stride=0)
    start = start_sampling(oracle, None, SampleSpec(shape=(2, 2), steps=3, seed=0))
    run = SamplingRun(oracle, start, "my run")
    with pytest.raises(NonFiniteError, match=r"my run: the samples stopped being finite at step 2 of 3"):
        run.after_step(1, run.ts[2], torch.full((2, 2), float("nan")))


class _BadBelow(torch.nn.Module):
    """Returns ``value`` (NaN or inf) below the time ``t_bad``, else zeros."""

    def __init__(self, t_bad: float, value: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.t_bad, self.value = t_bad, value

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value) if float(t[0]) < self.t_bad else torch.zeros_like(x)


@pytest.mark.parametrize(
    "method", ["euler", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc", "deis", "ancestral", "heun"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_deferred_guard_names_the_output_the_immediate_one_names(method: str, value: float) -> None:
    """ss.sample checks the model outputs of the fixed-time path only when the state stops being
    finite (CountingModel.defer_guard): the error is the one the immediate check of the general
    path (forced by a hook) raises, naming the same step and time."""
    messages = []
    for general in (False, True):
        model = ss.ScoreModel(_BadBelow(0.45, value), ss.VPSDE(), prediction="eps")
        if general:
            model.register_forward_pre_hook(lambda m, args: None)
        with pytest.raises(NonFiniteError, match="the model output stopped being finite at step") as err:
            ss.sample(model, shape=(4, 2), steps=10, method=method, seed=0)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_a_deferred_guard_checks_what_is_left_at_the_end(gmm2d: ss.GaussianMixture) -> None:
    """Outputs no state followed are checked when the run ends (and pile up no further than 64)."""
    model = ss.ScoreModel(_BadBelow(2.0, float("nan")), ss.VPSDE(), prediction="eps")
    start = start_sampling(model, None, SampleSpec(shape=(2, 2), steps=3, seed=0))
    run = SamplingRun(model, start, "my run", defer_guard=True)
    x = ss.SAMPLERS["euler"](run.model, start.sde, start.x, run.ts)  # no callback: nothing settles
    assert run.model.nfe == 3 and len(run.model.pending) == 3
    with pytest.raises(NonFiniteError, match=r"my run: the model output stopped being finite at step 1 of 3"):
        run.result(x)


class _Huge(torch.nn.Module):
    """Finite outputs that make the state overflow float32 within a few steps below ``t_bad``."""

    def __init__(self, t_bad: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.t_bad = t_bad

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x * 1e12 if float(t[0]) < self.t_bad else torch.zeros_like(x)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("net", ["nan", "overflow"])
def test_the_spaced_state_check_names_the_step_the_check_of_every_step_names(method: str, net: str) -> None:
    """Without a callback ss.sample checks the state every SamplingRun.check_every steps and
    holds the states in between: the error names the same step (and output) as the check of
    every step (which a callback turns on), on every path and for every grid sampler (one that
    updated its state in place would alias the held states and name another step)."""
    messages = []
    for callback in (None, lambda i, t, x: None):
        for general in (False, True):
            inner = _BadBelow(0.33, float("nan")) if net == "nan" else _Huge(0.33)
            model = ss.ScoreModel(inner, ss.VPSDE(), prediction="eps")
            if general:
                model.register_forward_pre_hook(lambda m, args: None)
            with pytest.raises(NonFiniteError, match="stopped being finite at step") as err:
                ss.sample(model, shape=(4, 2), steps=20, method=method, seed=0, callback=callback)
            messages.append(str(err.value))
    assert len(set(messages)) == 1, messages


def test_the_spaced_state_check_is_off_where_the_user_sees_the_states(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    for kw, every in (({}, 8), ({"record": True}, 1), ({"callback": lambda i, t, x: None}, 1)):
        start = start_sampling(oracle, None, SampleSpec(shape=(2, 2), steps=3, seed=0, **kw))
        assert SamplingRun(oracle, start, "r", defer_guard=True).check_every == every
        assert SamplingRun(oracle, start, "r").check_every == 1
    big = start_sampling(oracle, None, SampleSpec(shape=(2**16 + 1, 2), steps=3, seed=0))
    assert SamplingRun(oracle, big, "r", defer_guard=True).check_every == 1

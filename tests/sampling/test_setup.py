"""The shared sampling setup: ``start_sampling`` + ``SamplingRun`` are what ``ss.sample`` is made of."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde._core.checks import NonFiniteError
from scoresde.sampling import SampleSpec, SamplingRun, start_sampling


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

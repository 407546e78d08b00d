"""The sample() API, Euler-Maruyama and Euler on the exact oracle; reproducibility; bad input."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss


def _mode_stats(gmm: ss.GaussianMixture, x: torch.Tensor):
    """Assign samples to their most likely component of p_0; return weights, means, covs."""
    oracle = ss.AnalyticScore(gmm, ss.VPSDE())
    r = oracle.gmm.perturbed_responsibilities(x.double(), torch.ones(len(x)), torch.zeros(len(x)))
    labels = r.argmax(1)
    w = torch.bincount(labels, minlength=gmm.n_components).double() / len(x)
    means = torch.stack([x[labels == k].double().mean(0) for k in range(gmm.n_components)])
    covs = torch.stack([torch.cov(x[labels == k].double().T) for k in range(gmm.n_components)])
    return w, means, covs


@pytest.mark.parametrize("method", ["euler_maruyama", "euler"])
def test_reverse_sde_reproduces_mixture(sde: ss.SDE, gmm2d: ss.GaussianMixture, method: str) -> None:
    """Mode weights within 0.015, means within 0.03, covariances within 0.012 (n = 20k, seed 0).

    The tolerances cover Monte-Carlo error (about 0.004 for weights, 0.003 for means) plus
    the discretisation bias of 400 steps.
    """
    oracle = ss.AnalyticScore(gmm2d, sde)
    res = ss.sample(oracle, sde, shape=(20_000, 2), method=method, steps=400, seed=0, dtype=torch.float64)
    assert res.nfe == 401
    w, means, covs = _mode_stats(gmm2d, res.x)
    torch.testing.assert_close(w, gmm2d.weights, atol=0.015, rtol=0)
    torch.testing.assert_close(means, gmm2d.means, atol=0.03, rtol=0)
    torch.testing.assert_close(covs, gmm2d.covs, atol=0.012, rtol=0)


def test_seed_gives_same_samples_whatever_the_batch(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    big = ss.sample(oracle, shape=(12, 2), steps=20, seed=7).x
    small = ss.sample(oracle, shape=(5, 2), steps=20, seed=7).x
    torch.testing.assert_close(big[:5], small)
    other = ss.sample(oracle, shape=(5, 2), steps=20, seed=8).x
    assert not torch.allclose(other, small)


def test_generator_reproducibility_and_trajectory(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VESDE(sigma_max=10.0))
    a = ss.sample(oracle, shape=(6, 2), steps=10, generator=torch.Generator().manual_seed(1), record=True)
    b = ss.sample(oracle, shape=(6, 2), steps=10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.x, b.x)
    assert a.trajectory.shape == (11, 6, 2)
    torch.testing.assert_close(a.trajectory_times, a.times.float(), check_dtype=False)
    c = ss.sample(oracle, shape=(6, 2), steps=10, seed=1, record=True, record_stride=4)
    assert c.trajectory.shape[0] == 1 + 3  # start, steps 4 and 8, and the last
    calls = []
    ss.sample(oracle, shape=(6, 2), steps=5, seed=1, callback=lambda i, t, x: calls.append(i))
    assert calls == [0, 1, 2, 3, 4]


def test_denoise_flag_counts_one_evaluation(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    assert ss.sample(oracle, shape=(4, 2), steps=7, seed=0, denoise=False).nfe == 7
    assert ss.sample(oracle, shape=(4, 2), steps=7, seed=0, denoise=True).nfe == 8


def test_per_sample_noise_is_standard_normal() -> None:
    z = ss.PerSampleNoise(3)(torch.empty(400, 500, dtype=torch.float64))
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.var()) - 1) < 0.01
    assert abs(float((z**4).mean()) - 3) < 0.05
    # Successive draws and neighbouring samples are uncorrelated.
    z2 = ss.PerSampleNoise(3)
    a, b = z2(torch.empty(1000, 50)), z2(torch.empty(1000, 50))
    assert abs(float((a * b).mean())) < 0.01
    assert abs(float((a[1:] * a[:-1]).mean())) < 0.01


def test_bad_arguments(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    with pytest.raises(ValueError, match="unknown sampling method 'heun3'"):
        ss.sample(oracle, shape=(4, 2), method="heun3")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        ss.sample(oracle, shape=(4, 2), steps=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ss.sample(oracle, shape=(4, 2), grid=torch.tensor([1.0, 0.5, 0.7, 0.1]))
    with pytest.raises(ValueError, match="unknown grid"):
        ss.sample(oracle, shape=(4, 2), grid="cosine")
    with pytest.raises(ValueError, match=r"grid must lie in \[0, 1\]"):
        ss.sample(oracle, shape=(4, 2), grid=torch.tensor([2.0, 0.5]))
    with pytest.raises(ValueError, match="x_T contains 1 non-finite"):
        ss.sample(oracle, x_T=torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="give shape"):
        ss.sample(oracle)
    with pytest.raises(ValueError, match="shape must be"):
        ss.sample(oracle, shape=(4,))
    with pytest.raises(ValueError, match="built for VPSDE"):
        ss.sample(oracle, ss.VESDE(), shape=(4, 2))
    with pytest.raises(ValueError, match="either generator or seed"):
        ss.sample(oracle, shape=(4, 2), seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="ScoreFunction"):
        ss.sample(lambda x, t: x, shape=(4, 2))


@pytest.mark.parametrize("kind", list(ss.GRIDS))
def test_grids_are_decreasing_and_hit_the_ends(sde: ss.SDE, kind: str) -> None:
    ts = ss.time_grid(sde, 10, kind)
    assert ts.shape == (11,)
    assert float(ts[0]) == sde.T and float(ts[-1]) == sde.eps
    assert bool((ts[1:] < ts[:-1]).all())

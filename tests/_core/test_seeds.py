"""Per-sample seeds: sample i depends on (seed, i) only, whatever the batch size; no duplicates."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.parallel.sharding import sample_batches, shard_range
from scoresde.sampling.noise import per_sample_normal, sample_keys


@pytest.mark.parametrize("method", ["euler_maruyama", "edm_stochastic", "euler"])
def test_batch_8_4_1_give_identical_samples(gmm2d, method) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    kw = {"method": method, "steps": 6, "dtype": torch.float64}
    runs = [
        sample_batches(ss.sample, oracle, (2,), range(8), seed=5, batch_size=b, **kw) for b in (8, 4, 1, 3)
    ]
    for other in runs[1:]:
        assert torch.equal(other, runs[0])
    # A shard starting at index 4 reproduces samples 4..7.
    assert torch.equal(
        sample_batches(ss.sample, oracle, (2,), range(4, 8), seed=5, batch_size=2, **kw), runs[0][4:]
    )


def test_seeds_that_differ_by_the_batch_size_do_not_duplicate(gmm2d) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    kw = {"method": "euler_maruyama", "steps": 4, "dtype": torch.float64}
    a = sample_batches(ss.sample, oracle, (2,), range(8), seed=0, batch_size=4, **kw)
    b = sample_batches(ss.sample, oracle, (2,), range(8), seed=4, batch_size=4, **kw)
    assert torch.cdist(a, b).min() > 1e-6  # no sample of seed 4 repeats one of seed 0
    z0 = per_sample_normal(0, (4096, 8), dtype=torch.float64)
    z4 = per_sample_normal(4, (4096, 8), dtype=torch.float64)
    assert torch.cdist(z0, z4).min() > 1e-3 and torch.cdist(z0[:2048], z0[2048:]).min() > 1e-3


def test_sample_keys_have_no_collisions() -> None:
    idx = torch.arange(100_000)
    keys = torch.cat([sample_keys(seed, idx) for seed in (0, 1, 2, 4, 2**32, -1)])
    assert torch.unique(keys).numel() == keys.numel()


def test_first_index_matches_one_big_batch(gmm2d) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    kw = {"method": "euler_maruyama", "steps": 5, "seed": 3, "dtype": torch.float64}
    big = ss.sample(oracle, shape=(6, 2), **kw).x
    tail = ss.sample(oracle, shape=(2, 2), first_index=4, **kw).x
    assert torch.equal(big[4:], tail)
    with pytest.raises(ValueError, match="first_index applies to per-sample noise"):
        ss.sample(oracle, shape=(2, 2), first_index=4)


def test_shard_range_partitions() -> None:
    for n in (0, 1, 7, 10):
        for w in (1, 2, 3, 4):
            parts = [shard_range(n, r, w) for r in range(w)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard_range(5, 2, 2)

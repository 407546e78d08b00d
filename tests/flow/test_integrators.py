"""Integrators as objects: the same answers as the older flags, parts that can be swapped."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from scoresde.data.images import bits_per_dim, dequantize
from scoresde.flow import (
    DOPRI5,
    AdaptiveIntegrator,
    ButcherTableau,
    FixedStepIntegrator,
    PerSample,
    PIController,
    Torchdiffeq,
    make_integrator,
)
from scoresde.flow.dequantization import Quantization


@pytest.fixture
def oracle(gmm2d) -> ss.AnalyticScore:
    return ss.AnalyticScore(gmm2d, ss.VPSDE())


def test_flags_name_the_integrator_objects() -> None:
    assert make_integrator("dopri5", norm="independent") == PerSample()
    assert make_integrator("dopri5", norm="batch") == AdaptiveIntegrator("dopri5", norm="batch")
    assert make_integrator("rk4", steps=8) == FixedStepIntegrator("rk4", steps=8)
    assert Torchdiffeq("rk4", steps=8) == FixedStepIntegrator("rk4", steps=8)  # the former name
    with pytest.raises(ValueError, match="dopri5' only"):
        make_integrator("bosh3", norm="independent")
    with pytest.raises(ValueError, match="unknown norm"):
        Torchdiffeq(norm="independent")
    with pytest.raises(ValueError, match="unknown norm"):
        AdaptiveIntegrator(norm="independent")


@pytest.mark.parametrize(
    ("flags", "integrator"),
    [
        ({"norm": "independent"}, PerSample()),
        ({"norm": "per_sample"}, AdaptiveIntegrator()),
        ({"method": "rk4", "steps": 20}, FixedStepIntegrator("rk4", steps=20)),
    ],
    ids=["per_sample_steps", "torchdiffeq", "fixed"],
)
def test_object_and_flags_give_the_same_likelihood(oracle, gmm2d, flags, integrator) -> None:
    x = gmm2d.sample(6, generator=torch.Generator().manual_seed(0))
    a = ss.log_likelihood(oracle, oracle.sde, x, integrator=make_integrator(**flags))
    b = ss.log_likelihood(oracle, oracle.sde, x, integrator=integrator)
    # Bit equality: flags and object select the same integrator, run twice on this machine.
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=0)
    assert a.nfe == b.nfe


def test_controller_is_a_part(oracle, gmm2d) -> None:
    # A more cautious controller takes more steps to the same answer.
    x = gmm2d.sample(4, generator=torch.Generator().manual_seed(1))
    base = ss.log_likelihood(oracle, oracle.sde, x, integrator=PerSample())
    slow = ss.log_likelihood(oracle, oracle.sde, x, integrator=PerSample(controller=PIController(safety=0.5)))
    assert slow.nfe > base.nfe
    torch.testing.assert_close(slow.logp, base.logp, rtol=0, atol=1e-3)
    z = ss.encode(oracle, oracle.sde, x, integrator=PerSample(rtol=1e-7, atol=1e-7)).x
    back = ss.decode(oracle, oracle.sde, z, integrator=AdaptiveIntegrator(rtol=1e-7, atol=1e-7)).x
    torch.testing.assert_close(back, x, rtol=0, atol=1e-4)


def test_tableau_checks_its_shape() -> None:
    assert DOPRI5.stages == 7 and DOPRI5.order == 5
    # Consistency: each row of a sums to its node, and the error weights sum to 0.
    for ci, row in zip(DOPRI5.c, DOPRI5.a, strict=True):
        assert sum(row) == pytest.approx(ci)
    assert sum(DOPRI5.b_error) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="rows of length"):
        ButcherTableau("bad", (0.0, 1.0), ((), (1.0, 2.0)), (0.0, 0.0), 1, 0)


def test_one_dequantization_convention() -> None:
    levels, g = 17, torch.Generator().manual_seed(3)
    k = torch.randint(0, levels, (5, 1, 4, 4), generator=g).double()
    x = 2 * k / (levels - 1) - 1  # the training data's scaling
    q = Quantization(levels, -1.0, 1.0)
    torch.testing.assert_close(q.levels_of(x), k)
    z = dequantize(x, levels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, q.dequantize_data(x, torch.Generator().manual_seed(0)))
    assert bool(
        ((z >= q.dequantize(k, torch.zeros_like(k))) & (z < q.dequantize(k, torch.ones_like(k)))).all()
    )
    logp = torch.tensor([-3.0, 1.0])
    torch.testing.assert_close(bits_per_dim(logp, 16, levels), q.bits_per_dim(logp, 16))

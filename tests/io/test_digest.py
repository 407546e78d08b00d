"""The weights' fingerprint (:func:`scoresde.io.digest.weights_digest`)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from scoresde.io.digest import weights_digest


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 1))


def test_digest_is_of_the_weights_only() -> None:
    net = _net()
    d = weights_digest(net)
    assert len(d) == 64 and int(d, 16) >= 0
    assert weights_digest(copy.deepcopy(net)) == d  # the same bytes
    # A memory format and a torch.compile wrapper's name segment do not change it.
    assert weights_digest(copy.deepcopy(net).to(memory_format=torch.channels_last)) == d

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

    assert weights_digest(Wrapped(net)) == d
    # Any change of a value, a dtype or a name does.
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[2].bias[0] += 1e-7
    assert weights_digest(other) != d
    assert weights_digest(copy.deepcopy(net).double()) != d
    assert weights_digest(nn.Sequential(nn.Identity(), *copy.deepcopy(net))) != d


def test_digest_needs_a_module() -> None:
    with pytest.raises(TypeError, match=r"needs an nn\.Module"):
        weights_digest(torch.zeros(3))  # type: ignore[arg-type]

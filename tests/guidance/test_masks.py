"""Inpainting masks: named regions, random pixels, and the checks on them."""

from __future__ import annotations

import pytest
import torch

from scoresde.guidance.masks import make_mask


def test_make_mask_shapes() -> None:
    shape = (1, 8, 8)
    center = make_mask("center", shape)
    assert int((~center).sum()) == 16 and not center[0, 2:6, 2:6].any() and center[0, :2].all()
    assert not make_mask("top", shape)[0, :4].any() and make_mask("top", shape)[0, 4:].all()
    assert not make_mask("bottom", shape)[0, 4:].any() and make_mask("right", shape)[0, :, :4].all()
    rand = make_mask("random", shape, fraction=0.5, seed=1)
    assert torch.equal(rand, make_mask("random", shape, fraction=0.5, seed=1)) and 10 < int(rand.sum()) < 54
    with pytest.raises(ValueError, match="mask-fraction must lie in"):
        make_mask("random", shape, fraction=1.0)

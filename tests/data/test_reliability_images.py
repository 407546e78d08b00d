"""Resource limits of the data loaders: decompression bombs, absurd class labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scoresde.data.images import MAX_CLASSES, load_image_folder, load_npz


def test_decompression_bombs_are_refused_naming_the_file(tmp_path, monkeypatch) -> None:
    """PIL's limit, lowered so that a small file stands in for a 20000 x 20000 PNG."""
    Image.new("L", (64, 64)).save(tmp_path / "ok.png")
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    message = r"bomb\.png: image too large to decode safely .*MAX_IMAGE_PIXELS = 4096"
    with pytest.raises(ValueError, match=message):
        load_image_folder(tmp_path)
    # Above the warning threshold but below PIL's hard error (2x): refused too.
    (tmp_path / "bomb.png").unlink()
    Image.new("L", (70, 70)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"big\.png: image too large"):
        load_image_folder(tmp_path)


def test_huge_labels_are_refused_before_allocating(tmp_path) -> None:
    x = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 10**9]))
    with pytest.raises(ValueError, match=f"labels go up to 1000000000, but at most {MAX_CLASSES} classes"):
        load_npz(tmp_path / "d.npz")
    # The largest label passes this check (and is then refused for the classes it skips).
    np.savez(tmp_path / "ok.npz", x=x, y=np.array([0, 1, 2, MAX_CLASSES - 1]))
    with pytest.raises(ValueError, match=f"3-{MAX_CLASSES - 2} of the {MAX_CLASSES} have no training image"):
        load_npz(tmp_path / "ok.npz", test_fraction=0.0)

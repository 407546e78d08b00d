"""Image loaders (digits, .npy/.npz, folders), scaling, dequantization and bits/dim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.data.images import (
    bits_per_dim,
    dequantize,
    from_unit_range,
    load_array,
    load_dataset,
    load_digits,
    load_image_folder,
    random_hflip,
    save_image_grid,
    to_uint8,
    to_unit_range,
)


def test_digits_split_range_levels_and_labels() -> None:
    d = load_digits(test_fraction=0.2, seed=1)
    assert d.train.shape[1:] == d.test.shape[1:] == (1, 8, 8)
    assert d.train.shape[0] + d.test.shape[0] == 1797
    assert d.test.shape[0] == round(0.2 * 1797)
    assert d.levels == 17 and d.num_classes == 10
    both = torch.cat([d.train, d.test])
    assert float(both.min()) == -1.0 and float(both.max()) == 1.0
    k = (both + 1) * 8  # 17 levels: integers 0..16
    torch.testing.assert_close(k, torch.round(k))
    assert set(torch.cat([d.train_labels, d.test_labels]).tolist()) == set(range(10))
    again = load_digits(test_fraction=0.2, seed=1)
    assert torch.equal(again.test, d.test)
    assert not torch.equal(load_digits(test_fraction=0.2, seed=2).test, d.test)


def test_npz_uint8_with_labels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 6, 6, 3), dtype=np.uint8)
    y = np.arange(20) % 4
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    d = load_array(tmp_path / "d.npz", test_fraction=0.25)
    assert d.train.shape == (15, 3, 6, 6) and d.test.shape == (5, 3, 6, 6)
    assert d.levels == 256 and d.num_classes == 4
    # Every image comes back, channels first, exactly scaled.
    got = torch.cat([d.train, d.test])
    labels = torch.cat([d.train_labels, d.test_labels])
    back = to_uint8(got).permute(0, 2, 3, 1).numpy()
    order = {tuple(img.ravel()): i for i, img in enumerate(x)}
    idx = [order[tuple(img.ravel())] for img in back]
    assert sorted(idx) == list(range(20))
    assert labels.tolist() == [int(y[i]) for i in idx]


def test_npy_float_grayscale(tmp_path) -> None:
    x = np.linspace(0, 1, 10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4)
    np.save(tmp_path / "d.npy", x)
    d = load_dataset(tmp_path / "d.npy", test_fraction=0.1)
    assert d.train.shape == (9, 1, 4, 4) and d.levels is None and d.train_labels is None
    got = torch.cat([d.train, d.test])
    torch.testing.assert_close(from_unit_range(got).sum(), torch.tensor(float(x.sum())))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 5, 5, 2), np.uint8), "shape"),
        (np.zeros((4, 5), np.uint8), "shape"),
        (np.zeros((4, 5, 5), np.complex64), "dtype"),
        (np.zeros((4, 5, 5), bool), "dtype"),
        (np.full((4, 5, 5), 2.0, np.float32), r"float images must lie in \[0, 1\]"),
        (np.full((4, 5, 5), 300, np.int32), r"\[0, 255\]"),
        (np.zeros((0, 5, 5), np.uint8), "no images"),
    ],
)
def test_bad_arrays_are_clear_errors(tmp_path, array, message) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=message):
        load_array(tmp_path / "bad.npy")


def test_bad_npz_files(tmp_path) -> None:
    np.savez(tmp_path / "nokey.npz", foo=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="no image array"):
        load_array(tmp_path / "nokey.npz")
    np.savez(tmp_path / "badlab.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        load_array(tmp_path / "badlab.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        load_array(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        load_array(tmp_path / "missing.npz")


def _write_png(path, value: int, size: int = 5, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size) if mode == "L" else (size, size, 3), value, np.uint8)
    Image.fromarray(arr, mode=None).save(path)


def test_image_folder_with_classes(tmp_path) -> None:
    for i in range(3):
        _write_png(tmp_path / "cats" / f"{i}.png", 10)
        _write_png(tmp_path / "dogs" / f"{i}.png", 250)
    d = load_image_folder(tmp_path, test_fraction=0.0)
    assert d.train.shape == (6, 1, 5, 5) and d.num_classes == 2 and d.levels == 256
    for img, label in zip(d.train, d.train_labels):
        assert int(to_uint8(img)[0, 0, 0]) == (10 if label == 0 else 250)


def test_image_folder_resize_and_rgb(tmp_path) -> None:
    _write_png(tmp_path / "a.png", 100, size=4, mode="RGB")
    _write_png(tmp_path / "b.png", 50, size=7)
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(tmp_path)
    d = load_image_folder(tmp_path, image_size=8, test_fraction=0.0)
    assert d.train.shape == (2, 3, 8, 8) and d.train_labels is None


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "nowhere")
    _write_png(tmp_path / "good.png", 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError, match=r"broken\.png: cannot read this image"):
        load_image_folder(tmp_path)


def test_unknown_source() -> None:
    with pytest.raises(FileNotFoundError, match="unknown data set 'cifar'"):
        load_dataset("cifar")


def test_dequantize_and_bits_per_dim() -> None:
    levels, d = 17, 64
    x = load_digits().test[:50]
    z = dequantize(x, levels, torch.Generator().manual_seed(0))
    assert float(z.min()) >= -1.0 and float(z.max()) < 1.0
    # z lies in the cell of its integer: floor((z + 1) K / 2) = k.
    k = torch.round((x + 1) * 0.5 * (levels - 1))
    torch.testing.assert_close(torch.floor((z.double() + 1) * levels / 2), k.double())
    # A uniform density on [-1, 1]^D (log p = -D log 2) puts mass 1/K^D on each integer: log2 K bits/dim.
    bpd = bits_per_dim(torch.tensor([-d * math.log(2.0)]), d, levels)
    torch.testing.assert_close(bpd, torch.tensor([math.log2(levels)]))
    torch.testing.assert_close(bits_per_dim(torch.tensor([-d * math.log(2.0)]), d, 256), torch.tensor([8.0]))


def test_scaling_round_trip_and_flips(tmp_path) -> None:
    k = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_unit_range(k, 255.0)), k)
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    flipped = random_hflip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0), x)
    path = save_image_grid(torch.zeros(5, 1, 8, 8), tmp_path / "g.png", nrow=3, padding=1, scale=2)
    with Image.open(path) as im:
        assert im.size == (2 * (3 * 9 + 1), 2 * (2 * 9 + 1))

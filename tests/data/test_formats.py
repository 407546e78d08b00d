"""Data as people have it: keras .npz, CIFAR python batches and binary, 16-bit PNGs, resizing."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.data.cifar import find_cifar, load_cifar
from scoresde.data.images import DATA_LAYOUTS, load_dataset, load_npz, resize_images, to_uint8
from scoresde.data.safe_pickle import UnsafePickleError, safe_loads


def _keras(tmp_path, labels: bool = True, test: bool = True, label_shape: str = "flat"):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (30, 6, 6), dtype=np.uint8)}
    y_tr = np.arange(30) % 3
    if labels:
        arrays["y_train"] = y_tr[:, None] if label_shape == "column" else y_tr
    if test:
        arrays["x_test"] = rng.integers(0, 256, (7, 6, 6), dtype=np.uint8)
        if labels:
            arrays["y_test"] = (np.arange(7) % 3).astype(np.uint8)
    np.savez(tmp_path / "mnist.npz", **arrays)
    return tmp_path / "mnist.npz", arrays


@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_keras_npz_uses_its_own_split_and_labels(tmp_path, label_shape) -> None:
    path, a = _keras(tmp_path, label_shape=label_shape)
    d = load_dataset(path, test_fraction=0.5, seed=3)
    assert d.train.shape == (30, 1, 6, 6) and d.test.shape == (7, 1, 6, 6)
    # The file's own order and split, exactly scaled.
    assert np.array_equal(to_uint8(d.train)[:, 0].numpy(), a["x_train"])
    assert np.array_equal(to_uint8(d.test)[:, 0].numpy(), a["x_test"])
    assert d.train_labels.tolist() == (np.arange(30) % 3).tolist()
    assert d.test_labels.tolist() == (np.arange(7) % 3).tolist()
    assert d.num_classes == 3 and d.levels == 256


def test_keras_npz_without_labels_or_test_split(tmp_path) -> None:
    path, _ = _keras(tmp_path, labels=False)
    d = load_dataset(path)
    assert d.train_labels is None and d.num_classes is None and d.test.shape[0] == 7
    path, a = _keras(tmp_path, test=False)
    d = load_dataset(path, test_fraction=0.2, seed=0)
    assert d.train.shape[0] == 24 and d.test.shape[0] == 6 and d.num_classes == 3
    # The split is a permutation of x_train with labels following their images.
    both = torch.cat([d.train, d.test])
    assert sorted(map(bytes, to_uint8(both)[:, 0].numpy())) == sorted(map(bytes, a["x_train"]))
    for img, lab in zip(to_uint8(d.test)[:, 0].numpy(), d.test_labels.tolist()):
        i = next(j for j in range(30) if np.array_equal(a["x_train"][j], img))
        assert lab == a["y_train"][i]


def test_keras_npz_inconsistent_files(tmp_path) -> None:
    x = np.zeros((4, 5, 5), np.uint8)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(4), x_test=x)
    with pytest.raises(ValueError, match="labels for one split only"):
        load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=x, x_test=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="does not match"):
        load_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", foo=x)
    with pytest.raises(ValueError, match="keras keys"):
        load_npz(tmp_path / "c.npz")


def test_image_size_resizes_arrays_onto_the_level_grid(tmp_path) -> None:
    path, _ = _keras(tmp_path)
    d = load_dataset(path, image_size=12)
    assert d.train.shape == (30, 1, 12, 12) and d.test.shape == (7, 1, 12, 12)
    k = (d.train + 1) * 127.5
    torch.testing.assert_close(k, torch.round(k))
    # A constant image stays constant; the digits can be upsampled too.
    flat = torch.full((1, 1, 4, 4), 0.2)
    torch.testing.assert_close(resize_images(flat, 9), torch.full((1, 1, 9, 9), 0.2))
    assert load_dataset("digits", image_size=16).train.shape[1:] == (1, 16, 16)
    with pytest.raises(ValueError, match="positive integer"):
        resize_images(flat, 0)


# ---------------------------------------------------------------------- #
# CIFAR.
# ---------------------------------------------------------------------- #
def _batch(
    n: int,
    seed: int,
    label_key: str = "labels",
    num_classes: int = 10,
    byte_keys: bool = True,
    first: int = 0,
):
    """A python batch of ``n`` images labelled ``first, first + 1, ...`` (mod ``num_classes``)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in (first + np.arange(n)) % num_classes]
    d = {"batch_label": "batch", "data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        d["coarse_labels"] = [v // 5 for v in labels]
    if byte_keys:  # as Python 2 wrote them
        d = {k.encode(): v for k, v in d.items()}
    return d, data, labels


def _write_cifar10(root, byte_keys: bool = True):
    root.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        d, x, y = _batch(4, i, byte_keys=byte_keys, first=4 * (i - 1))  # every class in training
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(d, protocol=2))
        xs.append(x)
        ys += y
    d, xt, yt = _batch(3, 9, byte_keys=byte_keys)
    (root / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    names = [f"class{i}" for i in range(10)]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}))
    return np.concatenate(xs), ys, xt, yt


@pytest.mark.parametrize("byte_keys", [True, False])
def test_cifar10_python_batches(tmp_path, byte_keys) -> None:
    x, y, xt, yt = _write_cifar10(tmp_path / "cifar-10-batches-py", byte_keys)
    assert find_cifar(tmp_path) == "cifar10-python"
    d = load_dataset(tmp_path)  # the parent folder, as torchvision's root
    assert d.train.shape == (20, 3, 32, 32) and d.test.shape == (3, 3, 32, 32)
    assert np.array_equal(to_uint8(d.train).reshape(20, -1).numpy(), x)
    assert np.array_equal(to_uint8(d.test).reshape(3, -1).numpy(), xt)
    assert d.train_labels.tolist() == y and d.test_labels.tolist() == yt
    assert d.levels == 256 and d.class_names == [f"class{i}" for i in range(10)]
    # The .tar.gz itself reads the same.
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    t = load_dataset(tmp_path / "cifar-10-python.tar.gz")
    assert torch.equal(t.train, d.train) and torch.equal(t.test_labels, d.test_labels)


def test_cifar100_python_fine_and_coarse(tmp_path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    tr, x, y = _batch(100, 1, "fine_labels", 100)  # every class in training
    assert tuple(x.shape) == (100, 3072)
    te, _, yt = _batch(2, 2, "fine_labels", 100, first=37)
    (root / "train").write_bytes(pickle.dumps(tr))
    (root / "test").write_bytes(pickle.dumps(te))
    meta = {b"fine_label_names": [f"f{i}" for i in range(100)], b"coarse_label_names": ["c"] * 20}
    (root / "meta").write_bytes(pickle.dumps(meta))
    d = load_cifar(root)
    assert d.train_labels.tolist() == y and d.test_labels.tolist() == yt and d.class_names[3] == "f3"
    assert load_cifar(root, labels="coarse").train_labels.tolist() == [v // 5 for v in y]


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned > hostile.txt",))


def test_hostile_pickle_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_cifar10(tmp_path / "c")
    d, _, _ = _batch(4, 3)
    d[b"data"] = _Hostile()
    (tmp_path / "c" / "data_batch_3").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"data_batch_3: refusing to load (posix|nt)\.system"):
        load_dataset(tmp_path / "c")
    assert not (tmp_path / "hostile.txt").exists()
    with pytest.raises(UnsafePickleError, match=r"collections\.OrderedDict"):
        import collections

        safe_loads(pickle.dumps(collections.OrderedDict(a=1)), "x")
    with pytest.raises(ValueError, match="not a readable data pickle"):
        safe_loads(b"\x80\x04 junk", "x")
    # Plain containers and arrays of every numpy pickle protocol pass.
    arr = np.arange(6, dtype=np.int16).reshape(2, 3)
    for protocol in (2, 4, 5):
        back = safe_loads(pickle.dumps({"a": [arr, b"xy", 3, 1.5]}, protocol=protocol))
        assert np.array_equal(back["a"][0], arr) and back["a"][1:] == [b"xy", 3, 1.5]


def test_cifar_binary_versions(tmp_path) -> None:
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        r = rng.integers(0, 256, (3, 3073), dtype=np.uint8)
        r[:, 0] = (3 * len(rows) + np.arange(3)) % 10  # every class in training
        rows[name] = r
        (root / name).write_bytes(r.tobytes())
    (root / "batches.meta.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n\n")
    d = load_dataset(root)
    assert (
        d.train.shape == (15, 3, 32, 32) and d.test_labels.tolist() == rows["test_batch.bin"][:, 0].tolist()
    )
    assert np.array_equal(to_uint8(d.test).reshape(3, -1).numpy(), rows["test_batch.bin"][:, 1:])
    assert d.class_names == [f"n{i}" for i in range(10)]
    root100 = tmp_path / "cifar-100-binary"
    root100.mkdir()
    r = rng.integers(0, 256, (4, 3074), dtype=np.uint8)
    r[:, 0] = [0, 1, 0, 1]  # coarse; no names file: the classes are those of the training split
    r[:, 1] = [0, 1, 2, 3]
    (root100 / "train.bin").write_bytes(r.tobytes())
    (root100 / "test.bin").write_bytes(r[:2].tobytes())
    d = load_dataset(root100)
    assert d.train_labels.tolist() == r[:, 1].tolist()
    assert load_cifar(root100, labels="coarse").train_labels.tolist() == r[:, 0].tolist()
    (root100 / "test.bin").write_bytes(r[:2].tobytes()[:-1])
    with pytest.raises(ValueError, match="not a multiple of the 3074-byte"):
        load_dataset(root100)


# ---------------------------------------------------------------------- #
# 16-bit PNGs.
# ---------------------------------------------------------------------- #
def test_sixteen_bit_png_folder_keeps_its_levels(tmp_path) -> None:
    values = np.array([0, 1000, 20000, 40000, 65535], dtype=np.uint16)
    for i, v in enumerate(values):
        Image.fromarray(np.full((4, 4), v, np.uint16)).save(tmp_path / f"{i}.png")
    assert Image.open(tmp_path / "1.png").mode in ("I;16", "I")
    d = load_dataset(tmp_path, test_fraction=0.0)
    assert d.levels == 65536 and d.train.shape == (5, 1, 4, 4)
    got = sorted(((d.train[:, 0, 0, 0].double() + 1) * 65535 / 2).round().long().tolist())
    assert got == values.tolist()  # 5 distinct values, exactly (clipping at 255 gave 3)
    r = load_dataset(tmp_path, test_fraction=0.0, image_size=8)
    assert r.train.shape == (5, 1, 8, 8)
    assert sorted(((r.train[:, 0, 3, 3].double() + 1) * 65535 / 2).round().long().tolist()) == values.tolist()


def test_layouts_help_names_every_format() -> None:
    for word in (
        "keras",
        "x_train",
        "cifar-10-batches-py",
        "cifar-100-python",
        "binary",
        "16-bit",
        "--image-size",
    ):
        assert word in DATA_LAYOUTS


def test_load_dataset_error_lists_layouts(tmp_path) -> None:
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match="Accepted data sources"):
        load_dataset(tmp_path / "data.csv")

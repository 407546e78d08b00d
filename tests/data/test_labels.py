"""Labels: classes from the metadata, else from training; every disagreement named (issue 24)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from scoresde.data.cifar import find_cifar
from scoresde.data.images import load_dataset, load_image_folder, load_npz
from scoresde.data.labels import check_classes


def test_check_classes_rules() -> None:
    y = torch.tensor([0, 1, 2, 0])
    assert check_classes(y, torch.tensor([2, 1]), "d") == 3
    assert check_classes(y, torch.tensor([2]), "d", declared=3, source="meta") == 3
    assert check_classes(None, None, "d") is None
    with pytest.raises(ValueError, match=r"label\(s\) 99 outside the 3 classes that meta lists"):
        check_classes(y, torch.tensor([99]), "d", declared=3, source="meta")
    with pytest.raises(ValueError, match=r"test label\(s\) 100-109 never occur in the training split"):
        check_classes(y, torch.arange(100, 110), "d")
    with pytest.raises(ValueError, match=r"class\(es\) 3 \('cat'\) of the 4 have no training image"):
        check_classes(y, None, "d", declared=4, names=["a", "b", "c", "cat"])
    with pytest.raises(ValueError, match=r"class\(es\) 1 of the 3 have no training image"):
        check_classes(torch.tensor([0, 2]), None, "d")


def test_keras_test_labels_outside_the_training_classes(tmp_path) -> None:
    x = np.zeros((10, 4, 4), np.uint8)
    np.savez(tmp_path / "k.npz", x_train=x, y_train=np.arange(10), x_test=x, y_test=np.arange(100, 110))
    with pytest.raises(
        ValueError, match=r"k\.npz: test label\(s\) 100-109 never occur.*training classes: 0-9"
    ):
        load_npz(tmp_path / "k.npz")


def test_npz_with_two_image_arrays_is_ambiguous(tmp_path) -> None:
    x = np.zeros((4, 4, 4), np.uint8)
    np.savez(tmp_path / "two.npz", x=x, images=x + 1)
    with pytest.raises(ValueError, match=r"ambiguous image arrays \['x', 'images'\].*keep one"):
        load_npz(tmp_path / "two.npz")
    np.savez(tmp_path / "lab.npz", x=x, y=np.arange(4), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"ambiguous label arrays \['y', 'labels'\]"):
        load_npz(tmp_path / "lab.npz")


def test_image_folder_class_only_in_the_held_out_split(tmp_path) -> None:
    from PIL import Image

    for cls, n in (("cat", 6), ("dog", 1)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("L", (4, 4), 10 * i).save(tmp_path / cls / f"{i}.png")
    # 7 images (the dog last), 3 held out: a seed whose permutation holds the dog out.
    seed = next(
        s for s in range(50) if 6 in torch.randperm(7, generator=torch.Generator().manual_seed(s))[:3]
    )
    with pytest.raises(ValueError, match=r"test label\(s\) 1 \('dog'\) never occur in the training split"):
        load_image_folder(tmp_path, test_fraction=0.4, seed=seed)


def _cifar10(root, label: int = 0, files=None) -> None:
    root.mkdir(parents=True)
    names = files or [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        labels = [(2 * k + j) % 10 for j in range(2)]
        if name == "test_batch":
            labels = [label, 0]
        d = {"data": np.zeros((2, 3072), np.uint8), "labels": labels}
        (root / name).write_bytes(pickle.dumps(d, protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar_label_outside_batches_meta(tmp_path) -> None:
    _cifar10(tmp_path / "c", label=99)
    with pytest.raises(ValueError, match=r"label\(s\) 99 outside the 10 classes that batches.meta lists"):
        load_dataset(tmp_path / "c")
    _cifar10(tmp_path / "ok", label=3)
    assert load_dataset(tmp_path / "ok").num_classes == 10


@pytest.mark.parametrize(
    "files, missing",
    [
        (["data_batch_3", "data_batch_4", "test_batch"], "data_batch_1, data_batch_2, data_batch_5 missing"),
        ([f"data_batch_{i}" for i in range(1, 6)], "test_batch missing"),
    ],
)
def test_incomplete_cifar_folder_names_the_missing_files(tmp_path, files, missing) -> None:
    _cifar10(tmp_path / "c", files=files)
    assert find_cifar(tmp_path / "c") == "cifar10-python"
    with pytest.raises(ValueError, match=f"incomplete cifar10-python folder: {missing}"):
        load_dataset(tmp_path / "c")

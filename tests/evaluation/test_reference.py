"""The cached reference classifier for any labelled data, and PNG folder output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import scoresde.evaluation.reference as ref
from scoresde.data.images import load_digits, save_image_folder, to_uint8
from scoresde.evaluation import classifier_report, reference_classifier


@pytest.fixture(scope="module")
def digits():
    d = load_digits(test_fraction=0.2, seed=0)
    return d.train, d.train_labels, d.test, d.test_labels


def test_reference_classifier_learns_caches_and_reports(tmp_path, digits, monkeypatch) -> None:
    x, y, xt, yt = digits
    clf = reference_classifier(x, y, epochs=8, seed=0, cache_dir=tmp_path)
    rep = classifier_report(clf, xt, xt, yt, floor_images=x)
    assert rep["accuracy"] > 0.85  # held-out digits recognised
    noise = torch.rand_like(xt) * 2 - 1
    bad = classifier_report(clf, noise, xt, yt)
    assert bad["frechet"] > 5 * rep["frechet_floor"] and bad["accuracy"] < 0.5
    assert rep["frechet"] == pytest.approx(0.0, abs=1e-6)  # a set against itself
    assert len(list(tmp_path.glob("*.safetensors"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1

    # The second call loads the cache: no training, identical weights.
    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(ref, "train_reference_classifier", no_training)
    again = reference_classifier(x, y, epochs=8, seed=0, cache_dir=tmp_path)
    for p, q in zip(clf.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    # Other data (or settings) is another key.
    with pytest.raises(AssertionError, match="trained again"):
        reference_classifier(x[:-1], y[:-1], epochs=8, seed=0, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="trained again"):
        reference_classifier(x, y, epochs=9, seed=0, cache_dir=tmp_path)


def test_reference_classifier_shapes_and_errors() -> None:
    for size in (8, 28, 32):
        clf = ref.ReferenceClassifier(3, size, 7)
        assert clf(torch.zeros(2, 3, size, size)).shape == (2, 7)
        assert clf.features(torch.zeros(2, 3, size, size)).shape == (2, 128)
    with pytest.raises(ValueError, match="square"):
        reference_classifier(torch.zeros(4, 1, 8, 6), torch.zeros(4, dtype=torch.long), cache_dir=False)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        reference_classifier(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), cache_dir=False)


def test_save_image_folder_numbered_pngs(tmp_path) -> None:
    x = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(0)) * 2 - 1
    paths = save_image_folder(x, tmp_path / "png", first_index=10)
    assert [p.name for p in paths] == ["000010.png", "000011.png", "000012.png"]
    back = np.asarray(Image.open(paths[1]))
    assert back.shape == (5, 5) and np.array_equal(back, to_uint8(x[1])[0].numpy())
    rgb = save_image_folder(torch.zeros(2, 3, 4, 4), tmp_path / "rgb", digits=3, prefix="s")
    assert rgb[1].name == "s001.png" and Image.open(rgb[1]).mode == "RGB"
    with pytest.raises(ValueError, match="C in 1, 3"):
        save_image_folder(torch.zeros(2, 2, 4, 4), tmp_path)

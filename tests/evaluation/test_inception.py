"""The FID Inception-v3: the public file's state-dict format, loading, and the FID/KID/IS code path."""

from __future__ import annotations

import pickle

import pytest
import torch

from scoresde.evaluation import (
    FID_WEIGHTS_NAME,
    FIDInceptionV3,
    inception_features,
    inception_metrics,
    load_fid_inception,
    standin_inception_state,
)
from scoresde.evaluation.inception import _avg_pool_tf
from scoresde.evaluation.metrics import frechet_distance_features
from scoresde.evaluation.scores import feature_stats, fid_from_features

# Names and shapes of pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID weights).
_KNOWN = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / FID_WEIGHTS_NAME
    torch.save(standin_inception_state(0), path)
    return path


def test_state_dict_has_the_public_files_names() -> None:
    state = FIDInceptionV3().state_dict()
    for name, shape in _KNOWN.items():
        assert tuple(state[name].shape) == shape, name
    assert not any("AuxLogits" in k for k in state)
    convs = [k for k in state if k.endswith("conv.weight")]
    assert len(convs) == 94  # Inception-v3's 94 convolutions (no auxiliary head)
    # torchvision's Inception-v3 has 27,161,264 parameters; less its auxiliary head (3,326,696)
    # and plus 8 more classes (8 * 2049) that is the FID network's 23,850,960.
    learned = [v for k, v in state.items() if "running" not in k and "num_batches" not in k]
    assert sum(v.numel() for v in learned) == 27_161_264 - 3_326_696 + 8 * 2049


def test_load_and_features_at_299(standin) -> None:
    net = load_fid_inception(standin)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert tuple(net.prepare(x).shape) == (2, 3, 299, 299)
    out = net(x)
    assert out.features.shape == (2, 2048) and out.logits.shape == (2, 1008)
    assert torch.isfinite(out.features).all() and float(out.features.std()) > 1e-3
    assert not torch.allclose(out.features[0], out.features[1])


def test_bad_weight_files(tmp_path, standin) -> None:
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        load_fid_inception(tmp_path / "nope.pth")
    state = torch.load(standin, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"1 missing \(e.g. \['fc.bias'\]\), 1 unexpected"):
        load_fid_inception(tmp_path / "wrong.pth")
    del state["extra.weight"]
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"fc.bias has shape \(1000,\)"):
        load_fid_inception(tmp_path / "shape.pth")
    (tmp_path / "code.pth").write_bytes(pickle.dumps(FIDInceptionV3))  # a pickled class: refused
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        load_fid_inception(tmp_path / "code.pth")


def test_tensorflow_average_pool_ignores_padding() -> None:
    x = torch.ones(1, 1, 4, 4)
    torch.testing.assert_close(_avg_pool_tf(x), x)


def test_fid_code_path_agrees_with_the_library_frechet_distance(standin) -> None:
    net = load_fid_inception(standin, resize_to=None)  # 80x80 inputs: the same network, cheaper
    g = torch.Generator().manual_seed(1)
    a = torch.rand(48, 3, 80, 80, generator=g) * 2 - 1
    b = (torch.rand(48, 3, 80, 80, generator=g) * 1.4 - 0.9).clamp(-1, 1)
    fa, la = inception_features(net, a, batch_size=16)
    fb, _ = inception_features(net, b, batch_size=16)
    assert fa.shape == (48, 2048) and la.shape == (48, 1008)
    # Same features, two implementations (scipy sqrtm of S_a S_b vs. the symmetric eigen form);
    # 32 of the 2048 dimensions keep the covariances full-rank and the test fast.
    fid = fid_from_features(fa[:, :32], fb[:, :32])
    assert fid > 0
    assert fid == pytest.approx(frechet_distance_features(fa[:, :32], fb[:, :32]), rel=1e-6)


class _TinyNet(torch.nn.Module):
    """A stand-in with the Inception interface (features + fc) and 6-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(12, 6)
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x):
        from scoresde.evaluation import InceptionOutput

        f = torch.tanh(self.proj(x.reshape(x.shape[0], -1)[:, :12]))
        return InceptionOutput(features=f, logits=self.fc(f))


def test_inception_metrics_plumbing() -> None:
    net = _TinyNet()
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(40, 3, 2, 2, generator=g) * 2 - 1, torch.rand(30, 3, 2, 2, generator=g)
    fa, la = inception_features(net, a, batch_size=7)
    fb, _ = inception_features(net, b, batch_size=7)
    torch.testing.assert_close(la, (fa @ net.fc.weight.T.double()), rtol=1e-5, atol=1e-6)  # no bias
    m = inception_metrics(net, a, b, batch_size=7, kid_subsets=5, kid_subset_size=20, is_splits=4)
    assert m.fid == pytest.approx(frechet_distance_features(fa, fb), rel=1e-6)
    assert m.kid_mean > 0 and m.is_mean >= 1.0 and (m.num_samples, m.num_reference) == (40, 30)
    from_stats = inception_metrics(net, a, feature_stats(fb), batch_size=7, is_splits=4)
    assert from_stats.fid == pytest.approx(m.fid, rel=1e-9) and from_stats.is_mean == m.is_mean


@pytest.mark.slow
def test_standard_path_full_features(standin) -> None:
    net = load_fid_inception(standin)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(12, 1, 28, 28, generator=g) * 2 - 1, torch.rand(12, 1, 28, 28, generator=g) - 1
    m = inception_metrics(net, a, b, kid_subsets=3, kid_subset_size=12, is_splits=3)
    fa, _ = inception_features(net, a)
    fb, _ = inception_features(net, b)
    assert m.fid == pytest.approx(frechet_distance_features(fa, fb), rel=1e-3)

"""Sample-quality evaluation: FID / KID / IS with the FID Inception-v3, and a reference classifier.

- :mod:`scoresde.evaluation.inception`: the FID Inception-v3 network (needs a local weights
  file: ``pt_inception-2015-12-05-6726825d.pth`` for standard numbers).
- :mod:`scoresde.evaluation.scores`: FID, KID and the Inception Score from features / logits.
- :mod:`scoresde.evaluation.reference`: a classifier trained (once, cached) on the user's own
  labelled data, for class accuracy and a feature Frechet distance on any image size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from scoresde.evaluation.inception import (
    FID_WEIGHTS_NAME,
    FIDInceptionV3,
    InceptionOutput,
    load_fid_inception,
    standin_inception_state,
)
from scoresde.evaluation.reference import (
    ReferenceClassifier,
    classifier_report,
    reference_classifier,
    train_reference_classifier,
)
from scoresde.evaluation.scores import (
    FeatureStats,
    feature_stats,
    fid_from_features,
    fid_from_stats,
    inception_logits,
    inception_score,
    kernel_inception_distance,
)

__all__ = [
    "FID_WEIGHTS_NAME",
    "FIDInceptionV3",
    "FeatureStats",
    "InceptionMetrics",
    "InceptionOutput",
    "ReferenceClassifier",
    "classifier_report",
    "feature_stats",
    "fid_from_features",
    "fid_from_stats",
    "inception_features",
    "inception_logits",
    "inception_metrics",
    "inception_score",
    "kernel_inception_distance",
    "load_fid_inception",
    "reference_classifier",
    "standin_inception_state",
    "train_reference_classifier",
]


@dataclass
class InceptionMetrics:
    """FID, KID (mean, std) and Inception Score (mean, std) of samples against reference images."""

    fid: float
    kid_mean: float
    kid_std: float
    is_mean: float
    is_std: float
    num_samples: int
    num_reference: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def inception_features(
    net: FIDInceptionV3, images: Tensor, batch_size: int = 50, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Pool features ``(N, 2048)`` and bias-free logits ``(N, 1008)`` of ``images`` in ``[-1, 1]``."""
    dev = device if device is not None else next(net.parameters()).device
    feats, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        out = net(images[i : i + batch_size].to(dev))
        feats.append(out.features.double().cpu())
        logits.append(inception_logits(out.features, net.fc).double().cpu())
    return torch.cat(feats), torch.cat(logits)


def inception_metrics(
    net: FIDInceptionV3,
    samples: Tensor,
    reference: Tensor | FeatureStats,
    batch_size: int = 50,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> InceptionMetrics:
    """FID, KID and IS of ``samples`` (``(N, C, H, W)`` in ``[-1, 1]``) against ``reference``.

    ``reference`` is real images, or their precomputed :class:`FeatureStats` (FID only; KID is
    then ``nan``).  Standard numbers need the real FID weights (:func:`load_fid_inception`) and
    tens of thousands of samples; FID is biased upwards at small ``N``.
    """
    f_s, logits = inception_features(net, samples, batch_size, device)
    is_mean, is_std = inception_score(logits, min(is_splits, samples.shape[0]))
    if isinstance(reference, FeatureStats):
        fid = fid_from_stats(feature_stats(f_s), reference)
        kid_mean = kid_std = float("nan")
        n_ref = reference.n
    else:
        f_r, _ = inception_features(net, reference, batch_size, device)
        fid = fid_from_features(f_s, f_r)
        g = torch.Generator().manual_seed(seed)
        kid_mean, kid_std = kernel_inception_distance(f_s, f_r, kid_subsets, kid_subset_size, g)
        n_ref = reference.shape[0]
    return InceptionMetrics(fid, kid_mean, kid_std, is_mean, is_std, samples.shape[0], n_ref)

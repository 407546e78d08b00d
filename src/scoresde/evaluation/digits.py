"""Sample-quality measures for the bundled 8x8 digits: a reference classifier and its Frechet distance.

The Frechet distance of Heusel et al. (2017) compares Gaussian fits of classifier features of
two sets of images: ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})``.
FID uses an ImageNet Inception network; 8x8 digits need their own feature network, so
:func:`train_digits_classifier` fits a small CNN on the *training* split only (never on the
held-out images that samples are compared with).  Numbers are comparable only between runs that
use the same classifier (same seed and epochs); always report the floor (held-out vs. training
images) beside them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.train.optim import optimize

__all__ = ["DigitsClassifier", "classifier_accuracy", "frechet_distance", "train_digits_classifier"]


class DigitsClassifier(nn.Module):
    """Two strided convolutions and a 64-d feature layer for ``(B, 1, 8, 8)`` images in ``[-1, 1]``."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # 8x8 -> 4x4
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 64),
            nn.SiLU(),
        )
        self.head = nn.Linear(64, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features ``(B, 64)`` used by :func:`frechet_distance`."""
        return self.body(x.reshape(-1, 1, 8, 8))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.features(x))


def train_digits_classifier(
    images: Tensor, labels: Tensor, epochs: int = 15, seed: int = 0, batch_size: int = 64
) -> DigitsClassifier:
    """Fit :class:`DigitsClassifier` on ``images: (N, 1, 8, 8)``, ``labels: (N,)`` (the training split).

    Random one-pixel shifts augment the data so that the features do not key on exact pixels.
    All randomness (initialisation, order, shifts) comes from ``seed``.
    """
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clf = DigitsClassifier(num_classes=int(labels.max()) + 1)
    x, y = images.float(), labels.long()
    per_epoch = -(-x.shape[0] // batch_size)
    order = torch.empty(0, dtype=torch.long)

    def loss(step: int) -> Tensor:
        nonlocal order
        i = (step % per_epoch) * batch_size
        if i == 0:
            order = torch.randperm(x.shape[0], generator=g)
        idx = order[i : i + batch_size]
        dy, dx = (int(s) for s in torch.randint(-1, 2, (2,), generator=g))
        xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
        return F.cross_entropy(clf(xb), y[idx])

    optimize(clf.parameters(), loss, epochs * per_epoch, lr=2e-3, weight_decay=1e-4, cosine=False)
    return clf.eval()


@torch.no_grad()
def classifier_accuracy(clf: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` that ``clf`` assigns to ``labels``."""
    from scoresde.evaluation.metrics import classifier_accuracy as accuracy

    return accuracy(clf, images.float(), labels)


@torch.no_grad()
def frechet_distance(clf: DigitsClassifier, a: Tensor, b: Tensor) -> float:
    """Frechet distance between the Gaussian fits of ``clf.features`` of image sets ``a`` and ``b``.

    Computed in float64 through the symmetric form ``tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})`` of
    the cross term, whose eigenvalues are real and non-negative.
    """
    from scoresde.evaluation.metrics import frechet_distance_features

    return frechet_distance_features(clf.features(a.float()), clf.features(b.float()))

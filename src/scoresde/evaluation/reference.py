"""A reference classifier for any labelled image set: class accuracy and a feature Frechet distance.

FID's ImageNet network says little about 8x8 digits or 28x28 strokes; the library instead trains
a small CNN on the user's own *training* split once (never on the held-out images samples are
compared with) and uses it twice:

- class accuracy of class-conditional samples (does a sample of label ``y`` look like ``y``?);
- the Frechet distance (Heusel et al. 2017, Eq. 6) between Gaussian fits of its penultimate
  features, reported beside its floor (held-out vs. training images).

Training is deterministic given ``seed``, and the weights are cached (safetensors + JSON) under
a key hashing the training images, labels and settings, so every later evaluation of the same
data reuses the same classifier and its numbers stay comparable.  This generalises
:mod:`scoresde.evaluation.digits`'s 8x8 digits classifier to any ``(C, H, W)`` and number of classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.evaluation.metrics import frechet_distance_features

__all__ = [
    "ReferenceClassifier",
    "classifier_report",
    "data_key",
    "default_cache_dir",
    "reference_classifier",
    "train_reference_classifier",
]

_VERSION = 1  # bump when the architecture or training changes (invalidates caches)


class ReferenceClassifier(nn.Module):
    """Strided 3x3 convolutions down to at most 4x4, then a dense feature layer.

    Args:
        in_channels, image_size: the images ``(C, H, H)``.
        num_classes: the number of classes.
        width: channels of the first convolution (doubling per stride, at most ``4 width``).
        feature_dim: size of the feature layer used by the Frechet distance.
    """

    def __init__(
        self, in_channels: int, image_size: int, num_classes: int, width: int = 32, feature_dim: int = 128
    ) -> None:
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "image_size": image_size,
            "num_classes": num_classes,
            "width": width,
            "feature_dim": feature_dim,
        }
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU()]
        size, ch = image_size, width
        while size > 4:
            out = min(2 * ch, 4 * width)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.SiLU()]
            size, ch = (size + 1) // 2, out
        layers += [nn.Flatten(), nn.Linear(ch * size * size, feature_dim), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)`` of images ``(B, C, H, W)`` in ``[-1, 1]``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.features(x))


def _check(images: Tensor, labels: Tensor) -> None:
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square (N, C, H, H), got {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")


def train_reference_classifier(
    images: Tensor,
    labels: Tensor,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 128,
    width: int = 32,
    num_classes: int | None = None,
) -> ReferenceClassifier:
    """Fit :class:`ReferenceClassifier` on ``images: (N, C, H, H)`` in ``[-1, 1]``, ``labels: (N,)``.

    AdamW, random shifts of up to ``H / 8`` pixels (so the features do not key on exact
    pixels); every random draw comes from ``seed``.
    """
    _check(images, labels)
    n, c, h, _ = images.shape
    num_classes = num_classes or int(labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clf = ReferenceClassifier(c, h, num_classes, width)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    shift = max(1, h // 8)
    x, y = images.float(), labels.long()
    clf.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            dy, dx = (int(s) for s in torch.randint(-shift, shift + 1, (2,), generator=g))
            xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(clf(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf.eval()


def data_key(images: Tensor, labels: Tensor, **settings: object) -> str:
    """A SHA-256 hex key of the images' and labels' bytes, shapes and ``settings``."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": _VERSION, "shape": list(images.shape), **settings}, sort_keys=True).encode())
    h.update(images.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().long().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$SCORESDE_CACHE/reference_classifiers``, else ``~/.cache/scoresde/reference_classifiers``."""
    root = os.environ.get("SCORESDE_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "scoresde"
    return base / "reference_classifiers"


def reference_classifier(
    images: Tensor,
    labels: Tensor,
    epochs: int = 10,
    seed: int = 0,
    cache_dir: str | Path | bool | None = None,
    width: int = 32,
    num_classes: int | None = None,
) -> ReferenceClassifier:
    """The reference classifier of a training split: loaded from the cache, else trained and cached.

    Args:
        images, labels: the *training* split ``(N, C, H, H)`` in ``[-1, 1]`` and ``(N,)``.
        epochs, seed, width: training settings (part of the cache key).
        cache_dir: where to cache (default :func:`default_cache_dir`); ``False`` disables it.
        num_classes: the number of classes (default ``labels.max() + 1``).
    """
    from safetensors.torch import load_file, save_file

    _check(images, labels)
    num_classes = num_classes or int(labels.max()) + 1
    settings = {"epochs": epochs, "seed": seed, "width": width, "num_classes": num_classes}
    if cache_dir is False:
        return train_reference_classifier(images, labels, epochs, seed, width=width, num_classes=num_classes)
    folder = Path(cache_dir) if isinstance(cache_dir, (str, os.PathLike)) else default_cache_dir()
    key = data_key(images, labels, **settings)
    weights, meta = folder / f"{key[:24]}.safetensors", folder / f"{key[:24]}.json"
    if weights.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("key") == key:
            clf = ReferenceClassifier(**info["config"])
            clf.load_state_dict(load_file(str(weights)))
            return clf.eval()
    clf = train_reference_classifier(images, labels, epochs, seed, width=width, num_classes=num_classes)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    meta.write_text(json.dumps({"key": key, "config": clf.config, "settings": settings}, indent=2))
    return clf


@torch.no_grad()
def classifier_report(
    clf: ReferenceClassifier,
    samples: Tensor,
    reference: Tensor,
    sample_labels: Tensor | None = None,
    floor_images: Tensor | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Class accuracy and feature Frechet distance of ``samples`` against ``reference`` images.

    Args:
        clf: a classifier with ``features`` (e.g. :func:`reference_classifier`'s).
        samples: generated images ``(N, C, H, W)`` in ``[-1, 1]``.
        reference: held-out real images.
        sample_labels: the labels the samples were drawn for (gives ``accuracy``).
        floor_images: other real images (e.g. the training split): gives ``frechet_floor``,
            the distance real data attains against ``reference``.
    """

    def feats(x: Tensor) -> Tensor:
        return torch.cat(
            [clf.features(x[i : i + batch_size].float()) for i in range(0, x.shape[0], batch_size)]
        )

    out = {"frechet": frechet_distance_features(feats(samples), feats(reference))}
    if floor_images is not None:
        out["frechet_floor"] = frechet_distance_features(feats(floor_images), feats(reference))
    if sample_labels is not None:
        pred = torch.cat(
            [
                clf(samples[i : i + batch_size].float()).argmax(1)
                for i in range(0, samples.shape[0], batch_size)
            ]
        )
        out["accuracy"] = float((pred.cpu() == sample_labels.cpu()).double().mean())
    return out

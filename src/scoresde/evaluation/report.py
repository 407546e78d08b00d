"""The sample-quality report of a model: distances to held-out data, classifier and Inception scores.

Every number comes with its floor: the same measure between held-out data and an equal number
of other data points (training images, or fresh draws of a toy set), which is what a perfect
model would score.  Inputs are flat points or images ``(N, C, H, W)`` in ``[-1, 1]``.

- :func:`distances`: sliced Wasserstein-2, MMD^2 (RBF kernel, median bandwidth) and energy
  distance in the data space (:mod:`scoresde.evaluation.metrics`);
- :func:`digits_metrics`: the bundled digits' reference classifier (:mod:`scoresde.evaluation.digits`);
- :func:`reference_metrics`: a classifier trained once on any labelled images and cached
  (:func:`scoresde.evaluation.reference_classifier`): feature Frechet distance and accuracy;
- :func:`inception_report`: FID, KID and Inception Score with local FID Inception weights;
- :func:`report_markdown`: the table of all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["digits_metrics", "distances", "inception_report", "reference_metrics", "report_markdown"]


def distances(a: Tensor, b: Tensor, seed: int) -> dict[str, float]:
    """Sliced W2, MMD^2 and energy distance between ``a: (N, *D)`` and ``b: (M, *D)``."""
    from scoresde.evaluation.metrics import energy_distance, mmd_rbf, sliced_wasserstein

    a, b = a.flatten(1).double(), b.flatten(1).double()
    return {
        "sliced_w2": sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed)),
        "mmd2": mmd_rbf(a, b),
        "energy": energy_distance(a, b),
    }


def digits_metrics(
    samples: Tensor,
    labels: Tensor | None,
    num: int,
    test_fraction: float,
    data_seed: int,
    epochs: int,
    seed: int,
) -> dict[str, float]:
    """Reference-classifier scores of 8x8 digit ``samples`` (``(N, 64)`` or ``(N, 1, 8, 8)``).

    The classifier of :func:`scoresde.evaluation.digits.train_digits_classifier` is trained on the digits'
    training split (``test_fraction``, ``data_seed``); ``num`` held-out digits are compared.
    ``labels``: the classes the samples were drawn with, for their accuracy.
    """
    from scoresde.data.images import load_digits
    from scoresde.evaluation.digits import classifier_accuracy, frechet_distance, train_digits_classifier

    split = load_digits(test_fraction, data_seed)
    assert split.train_labels is not None and split.test_labels is not None  # the digits are labelled
    clf = train_digits_classifier(split.train, split.train_labels, epochs, seed)
    imgs = samples.reshape(-1, 1, 8, 8).clamp(-1, 1)
    test_imgs = split.test[:num]
    out = {
        "classifier_heldout_accuracy": classifier_accuracy(clf, split.test, split.test_labels),
        "frechet": frechet_distance(clf, imgs, test_imgs),
        "frechet_floor": frechet_distance(clf, split.train[: test_imgs.shape[0]], test_imgs),
    }
    with torch.no_grad():
        out["mean_confidence"] = float(clf(imgs).softmax(1).max(1).values.mean())
    if labels is not None:
        out["sample_accuracy"] = classifier_accuracy(clf, imgs, labels)
    return out


def reference_metrics(
    samples: Tensor,
    held: Tensor,
    held_labels: Tensor,
    train: Tensor,
    train_labels: Tensor,
    labels: Tensor | None = None,
    num_classes: int | None = None,
    epochs: int = 15,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, float]:
    """Frechet distance of reference-classifier features and class accuracy, for any labelled images.

    The classifier (:func:`scoresde.evaluation.reference_classifier`) is trained once on
    ``train`` / ``train_labels`` and cached in ``cache_dir`` (default: the library's cache).

    Args:
        samples: the model's images ``(N, C, H, W)`` in ``[-1, 1]``.
        held: ``N`` held-out images; ``held_labels`` their classes.
        train: the training images (the floor uses the first ``N``).
        labels: the classes the samples were drawn with, for their accuracy.
        num_classes: the number of classes (default: the largest label + 1).
    """
    from scoresde.evaluation.reference import classifier_report, reference_classifier

    n = held.shape[0]
    k = num_classes or int(max(int(train_labels.max()), int(held_labels.max()))) + 1
    clf = reference_classifier(
        train, train_labels, epochs=epochs, seed=seed, cache_dir=cache_dir, num_classes=k
    )
    rep = classifier_report(clf, samples, held, sample_labels=labels, floor_images=train[:n])
    held_rep = classifier_report(clf, held, held, sample_labels=held_labels)
    out = {"frechet": rep["frechet"], "frechet_floor": rep["frechet_floor"]}
    out["classifier_heldout_accuracy"] = held_rep["accuracy"]
    with torch.no_grad():
        out["mean_confidence"] = float(clf(samples).softmax(1).max(1).values.mean())
    if labels is not None:
        out["sample_accuracy"] = rep["accuracy"]
    return out


def inception_report(
    weights: str | Path, samples: Tensor, held: Tensor, seed: int = 0, device: Any = None
) -> dict[str, Any]:
    """FID, KID and Inception Score of ``samples`` against ``held`` (images in ``[-1, 1]``) with
    the FID Inception network of the local ``weights`` file."""
    from scoresde.evaluation import inception_metrics, load_fid_inception

    net = load_fid_inception(weights, device=device)
    m = inception_metrics(
        net, samples, held, kid_subset_size=min(1000, held.shape[0]), seed=seed, device=device
    )
    return {
        "fid": m.fid,
        "kid_mean": m.kid_mean,
        "kid_std": m.kid_std,
        "is_mean": m.is_mean,
        "is_std": m.is_std,
        "fid_weights": str(weights),
    }


def report_markdown(metrics: dict[str, Any], title: str, description: str) -> str:
    """The markdown table of a report: ``metrics["samples_vs_heldout"]`` beside ``metrics["floor"]``,
    then the classifier and Inception rows that ``metrics`` holds."""
    lines = [f"# {title}", "", description, "", "| measure | samples | floor |", "|---|---:|---:|"]
    for k, v in metrics["samples_vs_heldout"].items():
        lines.append(f"| {k} | {v:.4g} | {metrics['floor'][k]:.4g} |")
    if "frechet" in metrics:
        lines.append(
            f"| Frechet (reference classifier) | {metrics['frechet']:.4g} | {metrics['frechet_floor']:.4g} |"
        )
        lines.append(f"| classifier confidence | {metrics['mean_confidence']:.4f} | |")
        if "sample_accuracy" in metrics:
            lines.append(f"| accuracy of conditional samples | {metrics['sample_accuracy']:.4f} | |")
        lines.append(f"| classifier accuracy on held-out | | {metrics['classifier_heldout_accuracy']:.4f} |")
    if "fid" in metrics:
        lines.append(f"| FID (Inception, {metrics['fid_weights']}) | {metrics['fid']:.4g} | |")
        lines.append(f"| KID | {metrics['kid_mean']:.4g} +- {metrics['kid_std']:.2g} | |")
        lines.append(f"| Inception Score | {metrics['is_mean']:.4g} +- {metrics['is_std']:.2g} | |")
    return "\n".join(lines) + "\n"

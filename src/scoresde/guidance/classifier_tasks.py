"""Labelled data for a noise-conditional classifier (Song et al. 2021, Sec. 5, App. I.1).

:func:`classifier_task` makes the training draws and the held-out set of one of
:data:`CLASSIFIER_DATASETS`: a 2-D ring or a random Gaussian mixture (each component a class,
with the exact Bayes classifier of the perturbed mixture for comparison) or the bundled 8x8
digits.  :func:`accuracy_by_time` scores a classifier at several noise levels;
:func:`classifier_sde` picks the SDE it trains under (that of the score model it will guide).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scoresde.guidance.classifier import classifier_accuracy
from scoresde.guidance.exact import AnalyticClassifier
from scoresde.io.info import read_checkpoint_info
from scoresde.models.analytic import AnalyticScore, GaussianMixture
from scoresde.sde import SDES, make_sde

__all__ = ["CLASSIFIER_DATASETS", "ClassifierTask", "accuracy_by_time", "classifier_sde", "classifier_task"]

CLASSIFIER_DATASETS = ("ring", "gmm", "digits", "digits-color")


@dataclass
class ClassifierTask:
    """What training and scoring a classifier on one data set needs.

    Attributes:
        shape: the shape ``(*D)`` of one input.
        classes: the number of classes.
        draw: ``draw(batch, generator) -> (x, y)``, a training batch.
        x_test: held-out inputs ``(M, *D)``; ``y_test`` their labels ``(M,)``.
        std: the data's standard deviation (the classifier's ``sigma_data``).
        bayes: the exact Bayes classifier of a mixture, else ``None``.
        images: whether the data are images.
    """

    shape: tuple[int, ...]
    classes: int
    draw: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
    x_test: Tensor
    y_test: Tensor
    std: float
    bayes: Any
    images: bool


def classifier_task(
    data: str,
    sde: Any,
    generator: torch.Generator,
    classes: int = 8,
    dim: int = 2,
    seed: int = 0,
    item_shape: tuple[int, ...] | None = None,
) -> ClassifierTask:
    """The task of ``data`` (one of :data:`CLASSIFIER_DATASETS`) under ``sde``.

    Args:
        data: ``ring``, ``gmm`` (``classes`` components in ``dim`` dimensions), ``digits`` or
            ``digits-color``.
        sde: the forward SDE (of the Bayes classifier of a mixture).
        generator: draws the random mixture and its std sample.
        seed: the digits' split seed; the mixtures' held-out set uses ``seed + 1``.
        item_shape: the input shape of the score model to be guided, checked if given.

    Raises:
        ValueError: ``item_shape`` does not fit the data.
    """

    if data.startswith("digits"):
        from scoresde.data.images import load_digits

        split = load_digits(seed=seed, colored=data == "digits-color")
        shape = tuple(split.shape)
        if item_shape is not None and item_shape != shape:
            raise ValueError(
                f"the checkpoint's model takes inputs {item_shape} but --data {data} images are "
                f"{shape}; give a checkpoint trained on {data}"
            )
        x_train, y_train, test_labels = split.train, split.train_labels, split.test_labels
        if y_train is None or test_labels is None or split.num_classes is None:
            raise ValueError(f"--data {data} has no class labels; a classifier needs labelled images")

        def draw_images(batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
            idx = torch.randint(0, x_train.shape[0], (batch,), generator=gen)
            return x_train[idx], y_train[idx]

        std = float(x_train.std())
        k = int(split.num_classes)
        return ClassifierTask(shape, k, draw_images, split.test, test_labels, std, None, True)
    if item_shape is not None and item_shape != (dim if data == "gmm" else 2,):
        raise ValueError("--checkpoint's model does not take the mixture's points; use --sde for mixtures")
    if data == "ring":
        gmm = GaussianMixture.ring(classes, radius=2.0, std=0.3)
    else:
        gmm = GaussianMixture.random(
            dim, classes, eig_min=0.01, eig_max=0.1, mean_scale=1.5, generator=generator
        )
    bayes = AnalyticClassifier(AnalyticScore(gmm, sde))
    std = float(gmm.sample(10_000, generator=generator).std())
    x_test, y_test = gmm.sample(4000, generator=torch.Generator().manual_seed(seed + 1), return_labels=True)

    def draw_points(batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = gmm.sample(batch, generator=gen, return_labels=True)
        return x.float(), y

    return ClassifierTask((gmm.dim,), classes, draw_points, x_test, y_test, std, bayes, False)


def accuracy_by_time(clf: Any, sde: Any, task: ClassifierTask) -> dict[str, dict[str, float]]:
    """Held-out accuracy at ``t = eps, 0.1 T, 0.3 T, 0.5 T, 0.8 T`` (and the Bayes classifier's)."""

    times = [sde.eps, 0.1 * sde.T, 0.3 * sde.T, 0.5 * sde.T, 0.8 * sde.T]
    acc: dict[str, dict[str, float]] = {}
    for t in times:
        g = torch.Generator().manual_seed(7)
        acc[f"{t:.4g}"] = {
            "classifier": classifier_accuracy(clf, sde, task.x_test.float(), task.y_test, t, g)
        }
        if task.bayes is not None:
            acc[f"{t:.4g}"]["bayes_optimal"] = classifier_accuracy(
                task.bayes, sde, task.x_test, task.y_test, t, torch.Generator().manual_seed(7)
            )
    return acc


def classifier_sde(checkpoint: str = "", sde: str = "") -> tuple[Any, Any]:
    """The SDE to train a classifier under, and the score-model checkpoint's info (or ``None``).

    A classifier must be trained under the SDE of the score model it will guide: the SDE of
    ``checkpoint`` when given, else the SDE named ``sde`` (default ``vp``).

    Raises:
        ValueError: an unknown SDE name, or one that disagrees with the checkpoint's.
    """

    if sde and sde not in SDES:
        raise ValueError(f"unknown SDE {sde!r} for --sde; choose one of {sorted(SDES)}")
    if not checkpoint:
        return make_sde(sde or "vp"), None
    info = read_checkpoint_info(checkpoint)
    if sde and sde != info.config["sde"]["name"]:
        raise ValueError(
            f"--sde {sde} disagrees with the checkpoint's SDE {info.sde!r}"
            "; drop --sde to use the checkpoint's"
        )
    return info.sde, info

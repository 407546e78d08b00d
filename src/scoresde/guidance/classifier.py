"""Noise-conditional classifiers: input scaling, training on noised data, safetensors checkpoints.

Song et al. 2021 (Sec. 5, App. I.1) train a time-dependent classifier ``p_t(y | x_t)`` on
perturbed data ``x_t = s(t) x_0 + sigma(t) n`` at random ``t`` with the cross-entropy loss, and
guide the reverse SDE with its gradient (:class:`~scoresde.guidance.ClassifierGuidance`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from scoresde._core.checks import check_data
from scoresde._core.tensors import append_dims, batch_time
from scoresde.nets.classifier import TimeClassifier
from scoresde.sde import sde_from_dict
from scoresde.sde.base import SDE
from scoresde.train.optim import optimize

__all__ = [
    "ClassifierFitResult",
    "NoiseConditionalClassifier",
    "classifier_accuracy",
    "load_classifier",
    "save_classifier",
    "train_classifier",
]


class NoiseConditionalClassifier(nn.Module):
    """``classifier(x_t, t) -> logits``: a network of noisy inputs under ``sde``.

    The network sees ``x_t / sqrt(s^2 sigma_data^2 + sigma^2)`` (unit scale at every ``t``, as
    :class:`~scoresde.ScoreModel` does for score networks) and ``t``.

    Args:
        net: ``net(x, t) -> (B, C)`` logits, e.g. :class:`~scoresde.nets.TimeClassifier`.
        sde: the forward SDE that noises the data.
        sigma_data: standard deviation of the data.
        scale_input: apply the input scaling.
    """

    def __init__(self, net: nn.Module, sde: SDE, sigma_data: float = 1.0, scale_input: bool = True) -> None:
        super().__init__()
        self.net = net
        self.sde = sde
        self.sigma_data = float(sigma_data)
        self.scale_input = bool(scale_input)

    @property
    def num_classes(self) -> int:
        return int(self.net.num_classes)  # type: ignore[arg-type]  # Module.__getattr__: Tensor | Module

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = batch_time(t, x)
        x_in = x
        if self.scale_input:
            s, sigma = self.sde.marginal(t)
            x_in = x / append_dims(torch.sqrt((s * self.sigma_data) ** 2 + sigma**2), x.ndim)
        return self.net(x_in, t)


@dataclass
class ClassifierFitResult:
    """Cross-entropy per step and wall time of :func:`train_classifier`."""

    losses: list[float]
    seconds: float
    steps: int


def train_classifier(
    classifier: NoiseConditionalClassifier,
    data: Tensor | Callable[[int, torch.Generator], tuple[Tensor, Tensor]],
    labels: Tensor | None = None,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ClassifierFitResult:
    """Train ``p_t(y | x_t)`` by cross-entropy on data perturbed at ``t ~ U(eps, T)``.

    Song et al. 2021, App. I.1: the noise-conditional classifier of class-conditional sampling.

    Args:
        classifier: updated in place.
        data: ``(N, *D)`` with ``labels: (N,)``, or ``fn(batch, generator) -> (x, y)``.
        labels: integer classes of ``data`` in ``[0, num_classes)``.
        steps, batch_size, lr, weight_decay: AdamW with cosine decay.
        generator: RNG for minibatches, times and noise.
        progress: show a progress bar.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    if not callable(data):
        check_data(data, "data")
        if labels is None or labels.shape != (data.shape[0],) or labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor of shape ({data.shape[0]},)")
        if bool(((labels < 0) | (labels >= classifier.num_classes)).any()):
            raise ValueError(f"labels must lie in [0, {classifier.num_classes})")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    sde = classifier.sde
    dev = next(iter(p for p in classifier.parameters() if p.requires_grad)).device

    def loss(step: int) -> Tensor:
        if callable(data):
            x0, y = data(batch_size, g)
        else:
            assert labels is not None  # checked above for tensor data
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=g)
            x0, y = data[idx], labels[idx]
        x0, y = x0.to(dev, torch.float32), y.to(dev).long()
        t = sde.eps + (sde.T - sde.eps) * torch.rand(batch_size, generator=g).to(dev)
        n = torch.randn(x0.shape, generator=g).to(dev)
        return nn.functional.cross_entropy(classifier(sde.perturb(x0, t, n), t), y)

    classifier.train()
    run = optimize(
        classifier.parameters(), loss, steps, lr, weight_decay, progress=progress, desc="train-classifier"
    )
    classifier.eval()
    return ClassifierFitResult(run.losses, run.seconds, steps)


@torch.no_grad()
def classifier_accuracy(
    classifier: nn.Module,
    sde: SDE,
    x0: Tensor,
    labels: Tensor,
    t: float,
    generator: torch.Generator | None = None,
) -> float:
    """Accuracy of ``classifier`` on ``x_t`` drawn from clean ``x0: (N, *D)`` at time ``t``."""
    from scoresde.evaluation.metrics import classifier_accuracy as accuracy

    tt = torch.full((x0.shape[0],), float(t), dtype=x0.dtype)
    x_t = sde.perturb(x0, tt, torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
    return accuracy(lambda x: classifier(x, tt), x_t, labels)


def save_classifier(classifier: NoiseConditionalClassifier, path: str | Path) -> tuple[Path, Path]:
    """Write ``path.safetensors`` (weights) and ``path.json`` (configuration); never pickle.

    Returns:
        The two paths written.
    """
    from safetensors.torch import save_file

    if not isinstance(classifier.net, TimeClassifier):
        raise TypeError(
            "save_classifier saves TimeClassifier networks; save others with safetensors directly"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.net.state_dict().items()}
    save_file(state, str(weights))
    config = {
        "kind": "noise_conditional_classifier",
        "net": classifier.net.config(),
        "sde": classifier.sde.to_dict(),
        "sigma_data": classifier.sigma_data,
        "scale_input": classifier.scale_input,
    }
    meta.write_text(json.dumps(config, indent=2))
    return weights, meta


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> NoiseConditionalClassifier:
    """Rebuild a classifier written by :func:`save_classifier`."""
    from safetensors.torch import load_file

    path = Path(path)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for p in (weights, meta):
        if not p.exists():
            raise FileNotFoundError(f"classifier file {p} not found")
    config = json.loads(meta.read_text())
    if config.get("kind") != "noise_conditional_classifier":
        raise ValueError(f"{meta} is not a noise-conditional classifier configuration")
    sde = sde_from_dict(config["sde"])  # also the older flat form {"name", **kwargs}
    net = TimeClassifier(**config["net"])
    net.load_state_dict(load_file(str(weights), device=str(device)))
    clf = NoiseConditionalClassifier(net.to(device), sde, config["sigma_data"], config["scale_input"])
    return clf.eval()

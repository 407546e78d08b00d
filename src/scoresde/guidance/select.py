"""The guided model of a sampling run: classifier-free or classifier guidance, checked against the model.

:func:`guided_model` wraps a score model for classifier-free guidance (Ho & Salimans 2022: a
conditional model trained with label dropout) or for classifier guidance (Song et al. 2021,
Sec. 5: a noise-conditional classifier trained under the same SDE), after checking that the
two fit together (label dropout, input shape, SDE, number of classes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scoresde.guidance.cfg import ClassifierFreeGuidance
from scoresde.guidance.classifier import load_classifier
from scoresde.guidance.likelihood import ClassifierGuidance

__all__ = ["MAX_GUIDANCE", "check_guidance_weight", "guided_model", "resolve_classifier_path"]

MAX_GUIDANCE = 1000.0
"""The largest classifier-free guidance weight ``w`` accepted up front (Ho & Salimans 2022 use
``w <= 4``): beyond it the guided prediction ``(1 + w) eps(x, y) - w eps(x)`` is ``w`` times the
difference of two network outputs, which in float32 is mostly their rounding error."""


def check_guidance_weight(w: float) -> float:
    """``w`` as a float, or ``ValueError`` with the reason for a weight that is not finite, or
    above :data:`MAX_GUIDANCE` in size."""
    w = float(w)
    if not math.isfinite(w) or abs(w) > MAX_GUIDANCE:
        raise ValueError(
            f"--guidance {w:g} is out of range: the weight must be finite with |w| <= {MAX_GUIDANCE:g} "
            "(Ho & Salimans 2022 use w <= 4; a larger w amplifies the difference of the conditional and "
            "unconditional predictions, i.e. their float32 rounding error, into the samples)"
        )
    return w


def resolve_classifier_path(path: str | Path) -> Path:
    """A classifier written by ``train-classifier``: its folder, ``.safetensors`` or ``.json`` file."""
    p = Path(path)
    if p.is_dir():
        p = p / "classifier"
    p = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    if not p.with_suffix(".safetensors").is_file():
        raise FileNotFoundError(
            f"classifier not found: {p.with_suffix('.safetensors')} (give the folder or file written by "
            "`scoresde train-classifier`)"
        )
    return p


def guided_model(
    model: Any,
    info: Any,
    guidance: float | None = None,
    classifier: str | Path = "",
    classifier_scale: float = 1.0,
    device: Any = "cpu",
) -> tuple[Any, int | None]:
    """``model`` wrapped for guidance, and the number of classes to sample.

    Args:
        model: the score model; ``info`` its :class:`~scoresde.io.info.CheckpointInfo`.
        guidance: the classifier-free guidance weight ``w`` (``None``: none).
        classifier: a classifier written by ``train-classifier`` (``""``: none).
        classifier_scale: the classifier-guidance scale (1 = Bayes' rule).
        device: where the classifier goes.

    Raises:
        ValueError: both kinds of guidance, a guidance weight out of range
            (:func:`check_guidance_weight`), or a model / classifier that does not fit.
        FileNotFoundError: no classifier at ``classifier``.
    """
    classes = info.num_classes
    if guidance is not None and classifier:
        raise ValueError("give --guidance (classifier-free) or --classifier (classifier guidance), not both")
    if guidance is not None:
        guidance = check_guidance_weight(guidance)
        if not classes:
            raise ValueError(
                "--guidance needs a class-conditional checkpoint trained with label dropout; this model is "
                "unconditional (train with --conditional --label-dropout 0.1, or use --classifier)"
            )
        if info.label_dropout <= 0:
            raise ValueError(
                "--guidance needs a model trained with label dropout (its null token was never trained); "
                "this checkpoint has label_dropout = 0: retrain with --label-dropout 0.1"
            )
        return ClassifierFreeGuidance(model, scale=guidance), classes
    if classifier:
        if classes and info.label_dropout <= 0:
            raise ValueError(
                "classifier guidance needs an unconditional score; this class-conditional model was trained "
                "without label dropout, so it has none (use --class alone, or an unconditional model)"
            )
        clf = load_classifier(resolve_classifier_path(classifier), device=device)
        want = info.item_shape
        in_shape = tuple(clf.net.in_shape)  # type: ignore[arg-type]  # Module.__getattr__: Tensor | Module
        if in_shape != want:
            raise ValueError(f"the classifier takes inputs {in_shape}, the model makes {want}")
        if clf.sde != model.sde:
            raise ValueError(
                f"the classifier was trained under {clf.sde!r} but the model uses {model.sde!r}; "
                "train it with `scoresde train-classifier --checkpoint` on this model"
            )
        if classes and clf.num_classes != classes:
            raise ValueError(f"the classifier has {clf.num_classes} classes, the model {classes}")
        return ClassifierGuidance(model, clf, scale=classifier_scale), clf.num_classes
    return model, classes

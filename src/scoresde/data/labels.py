"""The classes of a labelled data set: from its metadata where it has some, else from training.

A conditional model learns one class per label seen in training; a label it never saw is noise
to it.  So the class count is taken from the source's own list of classes (CIFAR's
``batches.meta``, the class sub-folders of an image folder) when it has one, else from the
training split (labels ``0 .. max``), and every disagreement is an error that names the labels:
a label outside the listed classes, a test label that no training image carries, a class with no
training image.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["check_classes"]

_SHOWN = 8


def _show(labels: Sequence[int]) -> str:
    labels = list(labels)
    if len(labels) > 2 and labels == list(range(labels[0], labels[-1] + 1)):
        return f"{labels[0]}-{labels[-1]}"
    text = ", ".join(map(str, labels[:_SHOWN]))
    return text + (f", ... ({len(labels)} labels)" if len(labels) > _SHOWN else "")


def _named(labels: Sequence[int], names: Sequence[str] | None) -> str:
    if not names:
        return _show(labels)
    shown = [f"{i} ({names[i]!r})" for i in list(labels)[:_SHOWN]]
    return ", ".join(shown) + (f", ... ({len(labels)} classes)" if len(labels) > _SHOWN else "")


def check_classes(
    train_labels: Tensor | None,
    test_labels: Tensor | None,
    where: str,
    declared: int | None = None,
    source: str = "",
    names: Sequence[str] | None = None,
) -> int | None:
    """The number of classes of a labelled split, after checking its labels against it.

    Args:
        train_labels, test_labels: ``(N,)`` non-negative integer labels (``None``: unlabelled).
        where: the data source, for messages.
        declared: the number of classes the source's metadata lists (``None``: no metadata;
            the classes are then ``0 .. max`` of the training labels).
        source: where ``declared`` comes from (``"batches.meta"``), for messages.
        names: the classes' names, for messages.

    Returns:
        ``declared``, else ``max(train_labels) + 1``; ``None`` for unlabelled data.

    Raises:
        ValueError: a label outside the ``declared`` classes, a test label absent from the
            training split, or a class in ``[0, classes)`` without a training image; the message
            names the labels.
    """
    if train_labels is None:
        return None
    train = {int(v) for v in train_labels.unique().tolist()}
    test = {int(v) for v in test_labels.unique().tolist()} if test_labels is not None else set()
    if declared is not None:
        outside = sorted(v for v in train | test if v >= declared)
        if outside:
            raise ValueError(
                f"{where}: label(s) {_show(outside)} outside the {declared} classes that "
                f"{source or 'the metadata'} lists (labels 0-{declared - 1})"
            )
        classes = declared
    else:
        classes = max(train) + 1 if train else 0
    only_test = sorted(test - train)
    if only_test:
        raise ValueError(
            f"{where}: test label(s) {_named(only_test, names)} never occur in the training split "
            f"(training classes: {_show(sorted(train))}); a model cannot learn a class it never sees"
        )
    absent = sorted(set(range(classes)) - train)
    if absent:
        raise ValueError(
            f"{where}: class(es) {_named(absent, names)} of the {classes} have no training image "
            "(labels must be 0 .. classes-1, each one trained); relabel the data or give more images "
            "of those classes"
        )
    return classes

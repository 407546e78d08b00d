"""Up-front checks of the runtime and sampler settings every subcommand shares, one rule per key.

:func:`check_settings` runs on the resolved settings of every subcommand before its body (see
:meth:`scoresde.cli.command.Command.run`), so a bad ``--device``, seed, step count, batch size,
tolerance or class count is refused with a :class:`~scoresde.settings.ConfigError` naming the
flag and the value (exit status 2) before any model is loaded or any step is taken.  A rule
applies to every command that has the key; per-command extras stay in the commands.

How the CLI maps failures to exit statuses (:func:`exit_status`): usage errors (bad values,
unknown names, missing files given as options: ``ValueError``, ``TypeError``,
``FileNotFoundError``) exit 2; runtime failures (:class:`~scoresde._core.checks.NonFiniteError`,
``RuntimeError`` such as a busy run folder or an ODE step-size underflow, ``OSError`` such as
a failed checkpoint write, ``ArithmeticError``, ``AssertionError``, ``MemoryError``) exit 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from scoresde._core.checks import MAX_SEED, NonFiniteError
from scoresde.settings import ConfigError

__all__ = [
    "MAX_MIXTURE_CLASSES",
    "MAX_FRAMES",
    "MAX_ODE_ELEMENTS",
    "MAX_TEMPERATURE",
    "RULES",
    "check_ode_batch",
    "check_settings",
    "exit_status",
]

MAX_MIXTURE_CLASSES = 1000
"""The most mixture components (``--classes``) ``train-classifier`` builds: refused up front, not
after minutes of building a mixture.  (Not the label limit of data sets:
:data:`scoresde.data.images.MAX_CLASSES`.)"""

MAX_FRAMES = 10_000
"""The most ``--frames``: points ``interpolate`` decodes along one path (in one ODE solve),
frames of an animation of ``demo``."""

MAX_TEMPERATURE = 10.0
"""The largest ``decode --temperature``: the decoded values grow with it (``tau z`` has ``tau``
times the prior's spread), and far beyond a few they lie orders of magnitude outside any data."""

MAX_ODE_ELEMENTS = 2**25
"""The most numbers (points x dimensions) ``encode`` / ``decode`` / ``interpolate`` solve in their
one probability-flow ODE batch (about 128 MiB per float32 copy; the adaptive solver holds about
ten copies): more is refused before any work, with the largest count that fits."""

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_flag(key)}: must be an integer >= 1, got {value!r}")


def _seed(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{_flag(key)}: must be an integer in [0, 2**63 - 1], got {value!r}")


def _threads(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{_flag(key)}: must be >= 1 (or 0 for torch's default), got {value!r}")


def _finite(key: str, value: Any) -> None:
    if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
        raise ConfigError(f"{_flag(key)}: must be a finite number, got {value!r}")


def _rtol(key: str, value: Any) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{_flag(key)}: the relative tolerance must be > 0, got {value!r}")


def _atol(key: str, value: Any) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{_flag(key)}: the absolute tolerance must be >= 0, got {value!r}")


def _classes(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_MIXTURE_CLASSES:
        raise ConfigError(f"{_flag(key)}: must be an integer in [2, {MAX_MIXTURE_CLASSES}], got {value!r}")


def _frames(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_FRAMES:
        raise ConfigError(f"{_flag(key)}: must be an integer in [2, {MAX_FRAMES}], got {value!r}")


def _temperature(key: str, value: Any) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= MAX_TEMPERATURE):
        raise ConfigError(
            f"{_flag(key)}: must lie in (0, {MAX_TEMPERATURE:g}], got {value!r}: it scales the latents (and "
            "so the decoded values); beyond a few the samples leave the data range by orders of magnitude"
        )


def check_ode_batch(n: int, item_shape: tuple[int, ...], flag: str) -> None:
    """Refuse, before any work, ``n`` points of ``item_shape`` in one PF-ODE batch beyond
    :data:`MAX_ODE_ELEMENTS` (a :class:`~scoresde.settings.ConfigError` naming ``flag``)."""
    size = math.prod(item_shape)
    if n * size > MAX_ODE_ELEMENTS:
        raise ConfigError(
            f"{flag}: {n} points of shape {tuple(item_shape)} ({n * size:,} numbers) exceed the "
            f"{MAX_ODE_ELEMENTS:,} that one probability-flow ODE batch holds here; use at most "
            f"{MAX_ODE_ELEMENTS // size} (and run several times with other --seed values for more)"
        )


def _device(key: str, value: Any) -> None:
    import torch

    text = str(value).strip().lower()
    if not _DEVICE.match(text):
        raise ConfigError(f"{_flag(key)}: unknown device {value!r}; use auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{_flag(key)}: {value!r} asked for but CUDA is not available here")
        index = int(text.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{_flag(key)}: {value!r} asked for but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if text == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"{_flag(key)}: 'mps' asked for but MPS is not available here")


def _name(key: str, value: Any) -> None:
    if value and ("/" in value or "\\" in value or value in (".", "..")):
        raise ConfigError(f"{_flag(key)}: {value!r} must be a plain folder name (no '/', not '.' or '..')")


RULES: dict[str, Callable[[str, Any], None]] = {
    "device": _device,
    "threads": _threads,
    "seed": _seed,
    "steps": _positive_int,
    "sample_steps": _positive_int,
    "num": _positive_int,
    "batch_size": _positive_int,
    "samples": _positive_int,
    "guidance": _finite,
    "classifier_scale": _finite,
    "rtol": _rtol,
    "reference_tol": _rtol,
    "atol": _atol,
    "classes": _classes,
    "frames": _frames,
    "temperature": _temperature,
    "name": _name,
}
"""One rule per setting key, for every command that has the key."""


def check_settings(cfg: Mapping[str, Any]) -> None:
    """Apply :data:`RULES` to the resolved settings ``cfg``.

    Raises:
        ConfigError: the first bad value, naming its flag and the value.
    """
    for key, rule in RULES.items():
        if key in cfg:
            rule(key, cfg[key])


def exit_status(err: BaseException) -> int:
    """2 for a usage error, 1 for a runtime failure (see the module docstring)."""
    if isinstance(err, NonFiniteError | ArithmeticError | MemoryError | AssertionError):
        return 1
    if isinstance(err, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return 2
    if isinstance(err, OSError | RuntimeError):
        return 1
    if isinstance(err, ValueError | TypeError):
        return 2
    return 1

"""A typed setting (:class:`Option`) and the options of a dataclass's fields.

An :class:`Option` declares one setting: its key, default, help line, type and checks
(choices, minimum, nullable, tuple or ``{str: float}`` values).  The CLI turns options into
flags (:mod:`scoresde.cli.config`); :func:`dataclass_options` makes them from a dataclass
such as :class:`scoresde.train.TrainConfig`, so a new field is a new setting everywhere.
"""

from __future__ import annotations

import builtins
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALARS", "ConfigError", "Option", "dataclass_options"]

SCALARS = (bool, int, float, str)
"""The value types of an option (of each element, for tuple options)."""


class ConfigError(ValueError):
    """A setting is unknown, has a bad value, or its file cannot be read."""


@dataclass(frozen=True)
class Option:
    """One setting of a subcommand.

    Args:
        key: the name, in ``snake_case`` (the flag is ``--key-with-dashes``).
        default: the default value; its type (``bool``, ``int``, ``float`` or ``str``) is the
            option's type unless ``type`` is given.
        help: one line for ``--help``.
        choices: the allowed values, if limited.
        minimum: the smallest allowed value of a number.
        type: the value type (of each element, for ``multiple``), when ``default`` does not say.
        short: an extra short flag such as ``-o``.
        metavar: the value's name in ``--help``.
        nullable: ``None`` (written ``none``) is allowed too.
        multiple: the value is a tuple of ``type``.
        mapping: the value is a ``{str: float}`` dict, given as ``KEY=VALUE`` items.
        flag_name: the flag without ``--``, when not the key with dashes (e.g. ``sde-option``).
        what: the noun for a value not among the choices ("unknown sampler 'x'").
        const: the value of the bare flag given without a value (then the value is optional).
        elsewhere: values not among the choices that another command or option offers, each
            with the sentence that says where (``{"dps": "use scoresde inpaint ..."}``).
    """

    key: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    type: type | None = None
    short: str | None = None
    metavar: str | None = field(default=None)
    nullable: bool = False
    multiple: bool = False
    mapping: bool = False
    flag_name: str | None = None
    what: str | None = None
    const: Any = None
    elsewhere: dict[str, str] | None = None

    @property
    def value_type(self) -> builtins.type:  # (`type` alone would name the field above)
        if self.mapping:
            return float
        t = self.type if self.type is not None else type(self.default)
        if t not in SCALARS:
            raise TypeError(f"option {self.key!r}: type must be one of bool/int/float/str, got {t}")
        return t

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.key.replace("_", "-"))


def dataclass_options(cls: type, exclude: Sequence[str] = ()) -> list[Option]:
    """One :class:`Option` per field of the dataclass ``cls`` (types from its annotations).

    A field's ``metadata`` may hold ``help``, ``minimum``, ``choices``, ``flag`` (the flag name
    without ``--``), ``metavar`` and ``const`` (the value of the bare flag).  Supported
    annotations: ``bool``, ``int``, ``float``, ``str``, ``X | None``, ``tuple[X, ...]`` and
    ``dict[str, float]``.
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        hint, nullable, multiple, mapping = hints[f.name], False, False, False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint, nullable = args[0], True
        if typing.get_origin(hint) is tuple:
            hint, multiple = typing.get_args(hint)[0], True
        elif typing.get_origin(hint) is dict:
            hint, mapping = float, True
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        meta = f.metadata
        out.append(
            Option(
                f.name,
                default,
                meta.get("help", f.name.replace("_", " ")),
                choices=meta.get("choices"),
                minimum=meta.get("minimum"),
                type=hint,
                metavar=meta.get("metavar"),
                nullable=nullable,
                multiple=multiple,
                mapping=mapping,
                flag_name=meta.get("flag"),
                const=meta.get("const"),
            )
        )
    return out

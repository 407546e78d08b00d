"""Read the pickles that data sets ship (CIFAR's python batches) without executing code.

``pickle.load`` calls whatever the file names: a pickle is a program, and a hostile one can run
any function (``os.system``, ...).  :func:`safe_load` runs the same opcodes but resolves global
names through an allow-list holding only what plain containers and numpy arrays need: numpy's
own array and dtype reconstructors.  Dicts, lists, tuples, strings, bytes, ints and floats need
no global at all.  Anything else is refused with :class:`UnsafePickleError` naming the class.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import IO, Any

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load", "safe_loads"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # numpy arrays: ndarray.__reduce__ -> _reconstruct(ndarray, shape, dtype) + __setstate__.
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol 5 pickles of arrays rebuild them from a buffer.
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Python 3 writes bytes as _codecs.encode(str, "latin1") in protocols 0-2.
        ("_codecs", "encode"),
    }
)
"""The ``(module, name)`` globals a data pickle may reference."""


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global that is not on :data:`ALLOWED_GLOBALS`."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], where: str) -> None:
        # latin1 turns Python 2 ``str`` (CIFAR's keys and raw array bytes) into text that
        # numpy decodes back to its bytes, as torchvision reads these files.
        super().__init__(file, encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.where}: refusing to load {module}.{name}: a data pickle may hold only dicts, "
                "lists, strings, bytes, numbers and numpy arrays (this file would run code)"
            )
        if module.startswith("numpy"):
            import numpy as np

            if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
                return getattr(np, name)
            # numpy's private pickle helpers (numpy >= 2: numpy._core; before: numpy.core).
            sub = "multiarray" if name == "_reconstruct" else "numeric"
            try:
                helpers = importlib.import_module(f"numpy._core.{sub}")
            except ImportError:  # numpy < 2
                helpers = importlib.import_module(f"numpy.core.{sub}")
            return getattr(helpers, name)
        import _codecs

        return _codecs.encode

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.where}: refusing a persistent id ({pid!r}) in a data pickle")


def safe_load(file: IO[bytes], where: str = "pickle") -> Any:
    """Unpickle ``file`` admitting only containers, scalars and numpy arrays.

    Args:
        file: a binary file object.
        where: a name for error messages (e.g. the file's path).

    Raises:
        UnsafePickleError: the pickle names a class or function outside :data:`ALLOWED_GLOBALS`.
        ValueError: the bytes are not a pickle.
    """
    try:
        return _RestrictedUnpickler(file, where).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{where}: not a readable data pickle ({err})") from None


def safe_loads(data: bytes, where: str = "pickle") -> Any:
    """:func:`safe_load` of an in-memory pickle."""
    return safe_load(io.BytesIO(data), where)

"""The exception hierarchy shared by every asyncsnn engine.

Every error that asyncsnn raises on bad input is an :class:`AsyncSNNError`; the
Rust engine, the pure-Python reference engine and the torch engine raise the same
class for the same mistake. Each error carries the offending ``field`` and ``value``
(and, where it applies, a ``location`` such as ``"layer 2 (Conv2d)"`` or
``"sample 3"``), so that callers can react programmatically.

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> try:
...     asyncsnn.Network.sequential(input_shape=(4,), layers=[asyncsnn.Dense(np.ones((2, 4)))],
...                                 threshold=-1.0, beta=0.9)
... except asyncsnn.ModelError as err:
...     print(err.field, err.value)
threshold -1.0
"""

from __future__ import annotations

__all__ = [
    "AsyncSNNError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "EngineError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "ParameterError",
    "SpecVersionError",
]


class AsyncSNNError(Exception):
    """Base class of every error raised by asyncsnn.

    Parameters
    ----------
    message
        Human-readable description.
    field
        Name of the offending argument or field (``"threshold"``, ``"inputs"``...).
    value
        The offending value, as given (or a short description of it).
    location
        Where the field lives (``"layer 1 (Dense)"``, ``"sample 0"``), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.location = location


class ModelError(AsyncSNNError, ValueError):
    """Invalid network description or model file (shapes, weights, LIF parameters)."""


class SpecVersionError(ModelError):
    """A model or golden file was written for a newer execution-semantics version."""


class InputError(AsyncSNNError, ValueError):
    """Invalid input data or labels (shape, dtype, NaN, negative values...)."""


class ParameterError(AsyncSNNError, ValueError):
    """Invalid run option (unknown scheduler, ``forward_group_size`` < 1, ...)."""


class EngineError(AsyncSNNError, RuntimeError):
    """An engine failed for a reason other than bad input (overflow, internal error)."""


class DatasetNotFoundError(AsyncSNNError, FileNotFoundError):
    """The files of a dataset are not on disk (the message names the paths searched and how to get them)."""


class DatasetFormatError(InputError):
    """A dataset file is truncated or corrupt, or not in the expected format (``value`` is the file's path)."""


class MissingDependencyError(AsyncSNNError, ImportError):
    """An optional dependency is missing (the message names the ``pip install`` command)."""


def _describe(value: object) -> str:
    """Short description of ``value`` for an error message."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def invalid(
    cls: type[AsyncSNNError],
    field: str,
    value: object,
    reason: str,
    location: str | None = None,
) -> AsyncSNNError:
    """Build an error of class ``cls`` with a uniform message.

    The message reads ``"<location>: invalid <field> = <value>: <reason>"``.
    """
    prefix = f"{location}: " if location else ""
    return cls(
        f"{prefix}invalid {field} = {_describe(value)}: {reason}",
        field=field,
        value=value,
        location=location,
    )

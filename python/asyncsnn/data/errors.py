"""Typed errors of the dataset loaders.

Every class here is an :class:`asyncsnn.exceptions.AsyncSNNError`, and also a standard
Python exception of the matching kind, so both ``except AsyncSNNError`` and the usual
``except FileNotFoundError`` / ``except ImportError`` / ``except ValueError`` work.

Examples
--------
>>> from asyncsnn.exceptions import AsyncSNNError, invalid
>>> err = invalid(DatasetNotFoundError, "root", "/nowhere", "no idx files there")
>>> isinstance(err, AsyncSNNError), isinstance(err, FileNotFoundError), err.field
(True, True, 'root')
"""

from __future__ import annotations

from asyncsnn.exceptions import AsyncSNNError, InputError

__all__ = ["DatasetFormatError", "DatasetNotFoundError", "MissingDependencyError"]


class DatasetNotFoundError(AsyncSNNError, FileNotFoundError):
    """The files of a dataset are not on disk (the message names the paths searched and how to get them)."""


class DatasetFormatError(InputError):
    """A dataset file is truncated or corrupt, or not in the expected format (``value`` is the file's path)."""


class MissingDependencyError(AsyncSNNError, ImportError):
    """An optional dependency is missing (the message names the ``pip install`` command)."""

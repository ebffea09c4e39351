"""Typed errors of the dataset loaders (defined in :mod:`asyncsnn.exceptions`).

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

from asyncsnn.exceptions import DatasetFormatError, DatasetNotFoundError, MissingDependencyError

__all__ = ["DatasetFormatError", "DatasetNotFoundError", "MissingDependencyError"]

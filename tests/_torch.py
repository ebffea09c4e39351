"""torch for the tests that use it when the ``[train]`` extra is installed (and skip without it).

``torch`` and ``asyncsnn_torch`` are None when torch is missing; ``needs_torch`` marks a
test that needs it; ``ONE_THREAD`` is the environment for torch subprocesses;
``one_torch_thread`` runs a test module's tests with torch on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

torch: Any
asyncsnn_torch: Any
try:
    import torch

    import asyncsnn.torch as asyncsnn_torch
except ImportError:  # pragma: no cover - the [train] extra is not installed
    torch = None
    asyncsnn_torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install asyncsnn[train])")
# Torch subprocesses run on one thread: tiny models gain nothing from more, and spinning
# worker threads make them several times slower on a small shared machine.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def one_torch_thread() -> Iterator[None]:
    """Body of a module-scoped autouse fixture: torch on one thread for the module's tests."""
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Shared fixtures: the ``engine`` fixture runs a behavioural test on every engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch
from asyncsnn.result import InferenceResult

Engine = Callable[..., InferenceResult]

ENGINES: dict[str, Engine] = {
    "reference": asyncsnn.reference.infer,
    "rust": asyncsnn.infer,
    "torch": asyncsnn.torch.infer,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: Any) -> Engine:
    """Each engine's ``infer`` (same signature, same semantics)."""
    return ENGINES[request.param]

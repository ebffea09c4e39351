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


#: The message of an engine that refuses synaptic currents (R4.12) until it runs them
#: (the torch engine, for now). Tests skip such a refusal, and only it: once the engine
#: runs synaptic networks, the same tests check it.
SYNAPTIC_REFUSAL = "does not run synaptic currents (R4.12) yet"


def skip_if_refuses_synaptic(exc: Exception) -> None:
    """``pytest.skip`` when ``exc`` is an engine's refusal of synaptic currents; else nothing."""
    if isinstance(exc, asyncsnn.ModelError) and SYNAPTIC_REFUSAL in str(exc):
        pytest.skip(f"the engine refuses synaptic currents (R4.12): {exc}")

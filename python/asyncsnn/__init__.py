"""asyncsnn: asynchronous (event-driven) spiking neural networks.

A Rust engine runs networks the way event-driven neuromorphic hardware does: a neuron
fires as soon as its membrane crosses threshold, and a scheduler decides in which order
pending spikes are delivered. ``asyncsnn.infer`` evaluates a network this way and counts
spikes, synaptic operations and latency to decision exactly; ``asyncsnn.reference``
is a slow, readable engine of the same semantics (``docs/semantics.md``).
"""

from __future__ import annotations

from typing import Any

from asyncsnn import cost, data, exceptions, nir, reference, streaming, testing
from asyncsnn._prepare import RunOptions, Scheduler, StopMode
from asyncsnn._spec import SPEC_VERSION
from asyncsnn.engine import infer
from asyncsnn.exceptions import (
    AsyncSNNError,
    EngineError,
    InputError,
    ModelError,
    ParameterError,
    SpecVersionError,
)
from asyncsnn.model_file import load, save
from asyncsnn.network import (
    AvgPool2d,
    Conv2d,
    Dense,
    Network,
    Population,
    Projection,
    SumPool2d,
    beta_from_tau,
)
from asyncsnn.nir import from_nir, to_nir
from asyncsnn.result import InferenceResult
from asyncsnn.streaming import infer_iter


def __getattr__(name: str) -> Any:
    """``__version__`` comes from the compiled engine; the training API needs torch, so it loads lazily."""
    if name == "__version__":
        from asyncsnn._engine import __version__

        return __version__
    if name in ("train", "History", "AsyncSNN"):
        import asyncsnn.torch as _torch_api

        return getattr(_torch_api, name)
    raise AttributeError(f"module 'asyncsnn' has no attribute {name!r}")


__all__ = [
    "SPEC_VERSION",
    "AsyncSNNError",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "EngineError",
    "InferenceResult",
    "InputError",
    "ModelError",
    "Network",
    "ParameterError",
    "Population",
    "Projection",
    "RunOptions",
    "Scheduler",
    "SpecVersionError",
    "StopMode",
    "SumPool2d",
    "__version__",
    "beta_from_tau",
    "cost",
    "data",
    "exceptions",
    "from_nir",
    "infer",
    "infer_iter",
    "load",
    "nir",
    "reference",
    "save",
    "streaming",
    "testing",
    "to_nir",
]

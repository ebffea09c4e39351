"""torch for the tests that use it when the ``[train]`` extra is installed (and skip without it).

``torch`` and ``asyncsnn_torch`` are None when torch is missing; ``needs_torch`` marks a
test that needs it; ``ONE_THREAD`` is the environment for torch subprocesses;
``one_torch_thread`` runs a test module's tests with torch on one thread;
``bptt_counts`` is plain layer-by-layer BPTT, the gradient oracle of ``layered``.
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


def bptt_counts(net: Any, weights: list[Any], x: Any, surrogate: Any) -> Any:
    """Plain layer-by-layer BPTT (R4.5): U = beta V + W s; s = H(U - theta); V = U (1 - s)."""
    pops = net.populations
    v = [torch.zeros(x.shape[0], p.size) for p in pops]
    out = []
    for t in range(x.shape[1]):
        inp = x[:, t]
        for i, (pop, w) in enumerate(zip(pops, weights)):
            u = torch.tensor(pop.beta.reshape(-1)) * v[i] + inp @ w.t()
            s = asyncsnn_torch.surrogate.spike(u - torch.tensor(pop.threshold.reshape(-1)), surrogate)
            v[i] = u * (1 - s)
            inp = s
        out.append(inp)
    return torch.stack(out, 1)


def assert_grad_run_matches(out: Any, res: Any, labels: Any, model: Any) -> None:
    """A grad-mode run ``out`` equals the inference result ``res`` and gives finite gradients.

    Its result and per-timestep output counts are ``res``'s, and back-propagating the
    counts gives every parameter of ``model`` a finite gradient.
    """
    from asyncsnn.testing import assert_results_equal

    assert_results_equal(out.result(labels), res)
    torch.testing.assert_close(out.counts.detach(), torch.tensor(res.timestep_output_counts, dtype=torch.float32))
    out.counts.sum().backward()
    for p in model.parameters():
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()

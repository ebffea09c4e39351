"""Hardening of the torch engine and of the shared input conversion (issue 15).

* Item 1: batches whose samples' activity differs end their timesteps at different
  forward steps; the torch engine sets finished rows aside and merges them back
  (``torch/engine.py::_merge``), and must do so whatever step each row stopped at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import select_samples, spread_samples
from asyncsnn.testing import assert_results_equal, grid_weights


# ------------------------------------------------------------------------- item 1
def _mixed_activity_case() -> tuple[asyncsnn.Network, np.ndarray, np.ndarray]:
    """32 samples of a dense 64-64-10 network, input density drawn per sample in 0.02-0.6, T = 4.

    With F = 1 some rows end a timestep before forward step 32 and others after it
    (the torch engine computes the random function's states 32 steps at a time), and
    more than half of the rows end early, so the late ones run as a set of their own.
    """
    rng = np.random.default_rng(10)
    net = asyncsnn.Network.sequential(
        (64,),
        [asyncsnn.Dense(grid_weights(rng, (64, 64), 1.0, 0.1)), asyncsnn.Dense(grid_weights(rng, (10, 64), 1.0, 0.1))],
        threshold=1.0,
        beta=0.875,
        refractory_dropout=0.5,
    )
    density = rng.uniform(0.02, 0.6, 32)
    x = (rng.random((32, 4, 64)) < density[:, None, None]).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    return net, x, labels


MIXED_OPTIONS: list[dict[str, Any]] = [
    {"scheduler": "random"},
    {"scheduler": "momentum", "jitter": 0.5},
    {"scheduler": "fifo", "refractory_dropout": "network"},
    {"scheduler": "random", "refractory_dropout": "network"},
]


def test_mixed_activity_case_has_rows_on_both_sides_of_step_32() -> None:
    """The regression case below exercises what it claims (rows ending before and after step 32)."""
    net, x, _ = _mixed_activity_case()
    steps = asyncsnn.infer(net, x, scheduler="random", forward_group_size=1, seed=5).timestep_forward_steps
    assert (((steps <= 32).sum(0) >= 16) & (steps > 32).any(0)).any()


@pytest.mark.parametrize("opts", MIXED_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_torch_infer_on_a_batch_of_mixed_activity(opts: dict[str, Any]) -> None:
    net, x, labels = _mixed_activity_case()
    kw = {"forward_group_size": 1, "seed": 5, **opts}
    rust = asyncsnn.infer(net, x, labels=labels, **kw)
    assert_results_equal(at.infer(net, x, labels=labels, **kw), rust)
    # The reference engine (slow) on a few rows, from the quietest to the busiest.
    rows = spread_samples(rust, 3)
    ref = asyncsnn.reference.infer(net, x[rows], labels=labels[rows], sample_ids=rows, **kw)
    assert_results_equal(select_samples(rust, rows), ref)


@pytest.mark.parametrize("opts", MIXED_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_one_training_step_on_a_batch_of_mixed_activity(opts: dict[str, Any]) -> None:
    """The differentiable forward (grad mode) and one optimiser step of ``train``."""
    net, x, labels = _mixed_activity_case()
    kw = {"forward_group_size": 1, "seed": 5, **opts}
    model = at.AsyncSNN.from_network(net)
    out = model(torch.from_numpy(x), labels=torch.from_numpy(labels), **kw)
    assert_results_equal(out.result(labels), asyncsnn.infer(net, x, labels=labels, **kw))
    at.rate_loss(out.counts, torch.from_numpy(labels)).backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in model.weights)
    dropout = kw.pop("refractory_dropout", 0.0)
    trained, history = at.train(
        net, (x, labels), epochs=1, batch_size=32, progress=False, refractory_dropout=dropout, **kw
    )
    assert history.epochs == 1
    assert all(np.isfinite(p.layer.weight).all() for p in trained.projections)

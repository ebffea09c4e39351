"""Differential tests: the Rust engine equals the reference engine exactly.

Hypothesis draws small random networks with grid weights (R8.2: bit-exact agreement)
and integer count inputs biased toward ties and exact thresholds, on every scheduler,
forward group size, stop mode and dropout setting, and compares all counters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsnn
import asyncsnn.reference
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network

SCHEDULERS = ["layered", "fifo", "random", "momentum"]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dense", "conv", "skip"]))
    net = random_grid_network(rng, kind)
    batch = draw(st.integers(1, 3))
    timesteps = draw(st.integers(1, 5))
    x = random_count_input(rng, net, batch, timesteps, density=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    stop = draw(st.sampled_from(["drain", "first_output", "max_steps"]))
    opts: dict[str, Any] = {
        "scheduler": scheduler,
        "forward_group_size": draw(st.sampled_from([1, 2, 3, 8, 1000])),
        "stop": stop,
        "extra_steps": draw(st.integers(0, 3)),
        "max_steps": draw(st.integers(1, 6)) if stop == "max_steps" or draw(st.booleans()) else None,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "jitter": draw(st.sampled_from([0.0, 0.25, 1.0])) if scheduler == "momentum" else 0.0,
        "refractory_dropout": draw(st.sampled_from(["off", "network", 0.5])),
    }
    labels = rng.integers(0, net.n_outputs, batch) if draw(st.booleans()) else None
    return {"net": net, "x": x, "opts": opts, "labels": labels}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_rust_engine_equals_reference_on_random_grid_networks(case: dict[str, Any]) -> None:
    a = asyncsnn.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    b = asyncsnn.reference.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    assert_results_equal(a, b)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_engines_agree_on_every_scheduler(scheduler: str, kind: str) -> None:
    rng = np.random.default_rng(hash((scheduler, kind)) % 2**32)
    for _ in range(3):
        net = random_grid_network(rng, kind)
        x = random_count_input(rng, net, batch=4, timesteps=6, density=0.4)
        for f in (1, 4):
            a = asyncsnn.infer(net, x, scheduler=scheduler, forward_group_size=f, seed=7)
            b = asyncsnn.reference.infer(net, x, scheduler=scheduler, forward_group_size=f, seed=7)
            assert_results_equal(a, b)


def test_threshold_ties_are_exact() -> None:
    """Inputs that land exactly on the threshold (R4.3.2 strict >) agree across engines."""
    w = np.full((3, 2), 0.5, dtype=np.float32)
    net = asyncsnn.Network.sequential(
        input_shape=(2,), layers=[asyncsnn.Dense(w), asyncsnn.Dense(np.eye(2, 3) * 2)], threshold=1.0, beta=1.0
    )
    x = np.array([[[1, 1], [2, 0], [1, 0], [0, 2]]], dtype=np.float32)
    a = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1)
    b = asyncsnn.reference.infer(net, x, scheduler="fifo", forward_group_size=1)
    assert_results_equal(a, b)
    # t0: V = 1.0 == threshold, no spike; t1: 1 + 1 = 2 > 1 spikes; t2: 0.5; t3: 0.5 + 1 = 1.5 spikes.
    np.testing.assert_array_equal(a.spikes[0], [6, 4])

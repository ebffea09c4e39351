"""Differential tests: the Rust engine equals the reference engine exactly.

Hypothesis draws small random networks with grid weights (R8.2: bit-exact agreement)
and integer count inputs biased toward ties and exact thresholds, on every scheduler,
forward group size, stop mode and dropout setting, and compares all counters; half of
its networks settle (SPEC_VERSION 2: biases and reset modes, R1.6, R4.7, R4.8). A second
strategy draws batches of up to 64 samples whose activity differs from sample to sample
(input density per sample, ``F = 1`` often, wide dense networks), on which the torch
engine -- the one engine that runs a batch in lock step -- must equal the other two.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch
from _strategies import (
    SCHEDULERS,
    engine_cases,
    mixed_batch_cases,
    select_samples,
    spread_samples,
    with_recurrence,
    with_settling,
)
from asyncsnn.rng import STREAM_SPIKE_DROPOUT, uniform
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.trace import Trace


def cases() -> st.SearchStrategy[dict[str, Any]]:
    return engine_cases(max_batch=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_rust_engine_equals_reference_on_random_grid_networks(case: dict[str, Any]) -> None:
    a = asyncsnn.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    b = asyncsnn.reference.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    assert_results_equal(a, b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mixed_batch_cases(settling=True), st.sampled_from(["host", "torch"]))
def test_torch_rust_and_reference_agree_on_batches_of_mixed_activity(case: dict[str, Any], backend: str) -> None:
    """Batches of up to 64 samples whose timesteps end at different forward steps.

    Half the networks settle (biases and reset modes, R4.7, R4.8).

    The torch engine sets the rows whose timestep has ended aside and merges them back
    (issue 15, item 1: it crashed when some rows ran past forward step 32 and others
    did not). ``backend`` picks its CPU code: the Rust kernels and numpy of the host
    backend, or the torch backend used off the CPU.
    """
    kw = {"labels": case["labels"], **case["opts"]}
    rust = asyncsnn.infer(case["net"], case["x"], **kw)
    # The slow reference engine on up to 6 samples, spread from the quietest to the busiest
    # (a sample's result does not depend on the rest of its batch, R5.5).
    rows = spread_samples(rust)
    labels = None if case["labels"] is None else case["labels"][rows]
    ref_kw = {**kw, "labels": labels, "sample_ids": rows}
    assert_results_equal(select_samples(rust, rows), asyncsnn.reference.infer(case["net"], case["x"][rows], **ref_kw))
    torch_res = asyncsnn.torch.infer(case["net"], case["x"], backend=backend, **kw)
    assert_results_equal(torch_res, rust)


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


@pytest.mark.parametrize("how", ["bias", "reset", "both"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_engines_agree_on_settling_networks(scheduler: str, kind: str, how: str) -> None:
    """Biases and reset modes (R4.7, R4.8): counters and R7.10 traces are identical.

    The trace pins the forward step of every spike, so a population settled in another
    step than the reference's (R4.7) or a missing settle-only step (R4.3.4) shows even
    where the counters happen to agree. Early stops leave populations unsettled (R6.4).
    """
    rng = np.random.default_rng(
        ["bias", "reset", "both"].index(how) * 100 + SCHEDULERS.index(scheduler) * 10 + len(kind)
    )
    stops: list[dict[str, Any]] = [{}, {"stop": "first_output", "extra_steps": 1}, {"max_steps": 3}]
    for n in range(3):
        net = with_settling(rng, random_grid_network(rng, kind), how)
        x = random_count_input(rng, net, batch=3, timesteps=6, density=[0.0, 0.2, 0.4][n])
        for f in (1, 4):
            opts: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 7, **stops[(n + f) % 3]}
            a = asyncsnn.infer(net, x, trace=True, **opts)
            b = asyncsnn.reference.infer(net, x, trace=True, **opts)
            assert_results_equal(a, b)
            assert a.trace == b.trace, f"{net.summary()}\n{opts}"


@pytest.mark.parametrize("how", ["synaptic", "all"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_engines_agree_on_synaptic_networks(scheduler: str, kind: str, how: str) -> None:
    """Synaptic currents (R4.12), alone or with biases and reset modes, also recurrent:
    counters and R7.10 traces are identical.

    Deliveries after a settle charge ``S`` and ``V`` (skips, asynchronous schedulers),
    refractory neurons charge ``S``, early stops skip a decay (R6.4), and under
    ``layered`` recurrent currents are carried into ``S`` (R4.9).
    """
    rng = np.random.default_rng(["synaptic", "all"].index(how) * 100 + SCHEDULERS.index(scheduler) * 10 + len(kind))
    stops: list[dict[str, Any]] = [{}, {"stop": "first_output", "extra_steps": 1}, {"max_steps": 3}]
    for n in range(3):
        net = with_settling(rng, random_grid_network(rng, kind), how)
        if n == 2:
            net = with_recurrence(rng, net, "all")
        x = random_count_input(rng, net, batch=3, timesteps=6, density=[0.2, 0.4, 0.3][n])
        for f in (1, 4):
            opts: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 7, **stops[(n + f) % 3]}
            a = asyncsnn.infer(net, x, trace=True, **opts)
            b = asyncsnn.reference.infer(net, x, trace=True, **opts)
            assert_results_equal(a, b)
            assert a.trace == b.trace, f"{net.summary()}\n{opts}"


@pytest.mark.parametrize("how", ["self", "lateral", "backward", "all"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_engines_agree_on_recurrent_networks(scheduler: str, kind: str, how: str) -> None:
    """Recurrent projections (R4.9): counters and R7.10 traces are identical.

    Under ``layered`` their current is carried to the target's next settle, under the
    other schedulers delivered in the timestep; the second network also has biases and
    reset modes, and early stops leave carried currents waiting (R6.4).
    """
    rng = np.random.default_rng(
        ["self", "lateral", "backward", "all"].index(how) * 100 + SCHEDULERS.index(scheduler) * 10 + len(kind)
    )
    stops: list[dict[str, Any]] = [{}, {"stop": "first_output", "extra_steps": 1}, {"max_steps": 3}]
    for n in range(2):
        net = with_recurrence(rng, with_settling(rng, random_grid_network(rng, kind), ["v1", "both"][n]), how)
        assert net.recurrent
        x = random_count_input(rng, net, batch=3, timesteps=5, density=[0.2, 0.4][n])
        for f in (1, 4):
            opts: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 7, **stops[(n + f) % 3]}
            a = asyncsnn.infer(net, x, trace=True, **opts)
            b = asyncsnn.reference.infer(net, x, trace=True, **opts)
            assert_results_equal(a, b)
            assert a.trace == b.trace, f"{net.summary()}\n{opts}"


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


def _refired_after_a_kept_spike_and_dropped(trace: Trace, net: asyncsnn.Network, seed: int, p: float) -> int:
    """Spikes that spike dropout dropped (R4.11) while the neuron was pending from a kept one."""
    offsets = np.cumsum([0, 0, *[pop.size for pop in net.populations]])  # ids of R5.5: inputs have none
    pending: dict[tuple[int, int, int, int], bool] = {}
    found = 0
    for e in trace.rows():
        key = (e["sample"], e["timestep"], e["population"], e["neuron"])
        if e["kind"] == "delivery":
            pending[key] = False
        elif e["kind"] == "spike" and 0 < e["population"] < len(net.populations):  # enqueued populations
            q = int(offsets[e["population"]] + e["neuron"])
            dropped = uniform(seed, e["sample"], e["timestep"], e["step"], q, STREAM_SPIKE_DROPOUT) < p
            found += dropped and pending.get(key, False)
            pending[key] = pending.get(key, False) or not dropped
    return found


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_a_dropped_spike_of_a_pending_neuron_moves_its_momentum_key(jitter: float) -> None:
    """R4.11 with refractory dropout (R4.6) under ``momentum``: a pending neuron that fires
    again has a new ``v_pre``, also when spike dropout drops that spike, and R5.4 orders by
    the latest ``v_pre``. The Rust engine once kept the old key in its heap, where the
    entry then counted as stale: the neuron was never delivered (a later neuron went
    first, and without ``max_steps`` the timestep never ended)."""
    rng = np.random.default_rng(12)
    sizes = [8, 6, 6, 2]
    pops = [asyncsnn.Population.create((n,), 1.0, 0.75, refractory_dropout=0.5) for n in sizes[1:]]
    layers = [asyncsnn.Dense(grid_weights(rng, (m, n), 0.4, 0.45)) for n, m in itertools.pairwise(sizes)]
    projs = [asyncsnn.Projection(i, i + 1, layer) for i, layer in enumerate(layers)]
    net = asyncsnn.Network((sizes[0],), pops, projs)
    x = (rng.random((1, 2, 8)) < 0.6) * rng.integers(1, 3, (1, 2, 8)).astype(np.float32)
    kw: dict[str, Any] = {"scheduler": "momentum", "forward_group_size": 1, "refractory_dropout": "network"}
    kw |= {"spike_dropout": 0.5, "seed": 3, "jitter": jitter, "max_steps": 100}
    ref = asyncsnn.reference.infer(net, x, trace=True, **kw)
    assert _refired_after_a_kept_spike_and_dropped(ref.trace, net, 3, 0.5) > 0  # the case is drawn
    rust = asyncsnn.infer(net, x, trace=True, **kw)
    assert_results_equal(rust, ref)
    assert rust.trace == ref.trace
    assert_results_equal(asyncsnn.torch.infer(net, x, **kw), ref)


@pytest.mark.parametrize("scheduler", ["layered", "fifo", "momentum"])
def test_dense_rows_and_a_conv_into_one_population_sum_in_group_order(scheduler: str) -> None:
    """Off the grid, a population fed by dense rows and a conv in one step sums in group order.

    Two dense rows (1 and -1) and then a conv term of 2^-30 reach the output in one
    forward step: summed in group order, ``(1 - 1) + 2^-30`` fires; with the conv term
    added before the second row, ``(1 + 2^-30) - 1`` would be 0. The random scheduler's
    group is delivered in key order by the reference engine and in pending-list order by
    the Rust engine (R8.2 leaves the order of a step's sum open), so it is not compared here.
    """
    tiny = 2.0**-30
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    net = asyncsnn.Network(
        (1,),
        [
            asyncsnn.Population((2,), f32(1.0), f32(0.5)),
            asyncsnn.Population((1, 1, 1), f32(1.0), f32(0.5)),
            asyncsnn.Population((1, 1, 1), f32(tiny / 2), f32(0.5)),
        ],
        [
            asyncsnn.Projection(0, 1, asyncsnn.Dense(f32([[2.0], [2.0]]))),
            asyncsnn.Projection(0, 2, asyncsnn.Dense(f32([[2.0]]))),
            asyncsnn.Projection(1, 3, asyncsnn.Dense(f32([[1.0, -1.0]]))),
            asyncsnn.Projection(2, 3, asyncsnn.Conv2d(np.full((1, 1, 1, 1), tiny, np.float32))),
        ],
    )
    x = np.ones((1, 1, 1), np.float32)
    a = asyncsnn.infer(net, x, scheduler=scheduler, forward_group_size=64)
    b = asyncsnn.reference.infer(net, x, scheduler=scheduler, forward_group_size=64)
    assert_results_equal(a, b)
    np.testing.assert_array_equal(a.spikes[0], [2, 1, 1])


def _off_grid(rng: np.random.Generator, net: asyncsnn.Network) -> asyncsnn.Network:
    """``net`` with every dense and conv weight moved off the grid (arbitrary float32)."""
    projections = []
    for p in net.projections:
        layer = p.layer
        if isinstance(layer, (asyncsnn.Dense, asyncsnn.Conv2d)):
            w = np.asarray(layer.weight, np.float32)
            w = (w * (1 + 0.3 * rng.standard_normal(w.shape)) + 0.01 * rng.standard_normal(w.shape)).astype(np.float32)
            layer = (
                asyncsnn.Dense(w)
                if isinstance(layer, asyncsnn.Dense)
                else asyncsnn.Conv2d(w, stride=layer.stride, padding=layer.padding)
            )
        projections.append(asyncsnn.Projection(p.source, p.target, layer))
    return asyncsnn.Network(net.input_shape, net.populations, projections)


@pytest.mark.parametrize("kind", ["dense", "conv", "skip", "conv_wide"])
def test_rust_engine_equals_reference_off_the_grid(kind: str) -> None:
    """The Rust engine performs the reference engine's float operations in its order.

    R8.2 leaves the order of a step's sum open, so engines need only agree on grid
    weights. The Rust engine keeps the reference's order anyway for the schedulers whose
    group both deliver in the same order (all but ``random``), so they agree bit for bit
    on arbitrary float32 weights and inputs.
    """
    rng = np.random.default_rng(["dense", "conv", "skip", "conv_wide"].index(kind))
    for _ in range(8):
        net = _off_grid(rng, random_grid_network(rng, kind))
        x = random_count_input(rng, net, batch=3, timesteps=5, density=0.4)
        x = (x * rng.uniform(0.5, 1.5, x.shape)).astype(np.float32)
        for scheduler in ("layered", "fifo", "momentum"):
            for f in (1, 3, 64):
                opts: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 3}
                assert_results_equal(asyncsnn.infer(net, x, **opts), asyncsnn.reference.infer(net, x, **opts))
                if scheduler != "momentum":  # R4.13: input entries delivered in the same order
                    opts["prioritize_input"] = False
                    assert_results_equal(asyncsnn.infer(net, x, **opts), asyncsnn.reference.infer(net, x, **opts))


@pytest.mark.parametrize("how", ["v1", "both", "all", "recurrent"])
@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random"])
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_engines_agree_with_non_prioritised_input(scheduler: str, kind: str, how: str) -> None:
    """Non-prioritised input (R4.13): counters and R7.10 traces are identical.

    Input entries compete with spikes for the ``F`` slots (fifo: first; random: keys of
    stream 5), settle the input's targets when delivered, are dropped uncounted by early
    stops, and are drawn by input dropout at the enqueue; on plain, settling, synaptic
    and recurrent networks.
    """
    rng = np.random.default_rng(
        ["v1", "both", "all", "recurrent"].index(how) * 100 + SCHEDULERS.index(scheduler) * 10 + len(kind)
    )
    stops: list[dict[str, Any]] = [{}, {"stop": "first_output", "extra_steps": 1}, {"max_steps": 3}]
    for n in range(3):
        net = random_grid_network(rng, kind)
        if how != "v1":
            net = with_settling(rng, net, "both" if how == "recurrent" else how)
        if how == "recurrent":
            net = with_recurrence(rng, net, "all")
        x = random_count_input(rng, net, batch=3, timesteps=5, density=[0.0, 0.2, 0.4][n])
        for f in (1, 4):
            opts: dict[str, Any] = {
                "scheduler": scheduler,
                "forward_group_size": f,
                "seed": 7 + n,
                "prioritize_input": False,
                "input_dropout": [0.0, 0.3][f == 4],
                **stops[(n + f) % 3],
            }
            a = asyncsnn.infer(net, x, trace=True, **opts)
            b = asyncsnn.reference.infer(net, x, trace=True, **opts)
            assert_results_equal(a, b)
            assert a.trace == b.trace, f"{net.summary()}\n{opts}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_rust_engine_equals_reference_without_prioritised_input(case: dict[str, Any]) -> None:
    """The drawn cases of the first test with ``prioritize_input=False`` (R4.13) wherever
    the scheduler takes it (not ``momentum``), traces included."""
    opts = {**case["opts"], "prioritize_input": case["opts"]["scheduler"] == "momentum"}
    a = asyncsnn.infer(case["net"], case["x"], labels=case["labels"], trace=True, **opts)
    b = asyncsnn.reference.infer(case["net"], case["x"], labels=case["labels"], trace=True, **opts)
    assert_results_equal(a, b)
    assert a.trace == b.trace

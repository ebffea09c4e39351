"""Tests of the pure-Python reference engine alone (docs/semantics.md).

Every rule is pinned on a tiny hand-built network whose expected numbers are worked out
in the test, independently of the golden vectors; the layered-equivalence invariant R4.5
is checked against a plain numpy layer-by-layer LIF network; and the golden vectors must
be exactly what ``tests/golden/generate.py`` generates.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn.reference
from asyncsnn._dictform import network_from_dict, network_to_dict
from asyncsnn.exceptions import InputError, ParameterError
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.rng import (
    STREAM_DROPOUT,
    STREAM_JITTER,
    STREAM_RANDOM,
    hash32,
    hash32_np,
    mix32,
    uniform,
    uniform_np,
)

ROOT = Path(__file__).resolve().parents[2]
infer = asyncsnn.reference.infer


def pop(size: Any, threshold: Any = 1.0, beta: Any = 1.0, dropout: float = 0.0) -> Population:
    return Population.create(size if isinstance(size, tuple) else (size,), threshold, beta, dropout)


def dense(w: Any) -> Dense:
    return Dense(np.asarray(w, dtype=np.float32))


def x_of(*frames: Any) -> np.ndarray:
    """One sample ``[1, T, n_in]`` from its frames."""
    return np.asarray([frames], dtype=np.float32)


def relay_net(n: int, out_w: Any, out_beta: float = 0.0, relay_w: Any = 2.0) -> Network:
    """``n`` inputs -> ``n`` relays (diagonal weights, each fires on input 1) -> outputs."""
    out_w = np.asarray(out_w, dtype=np.float32)
    return Network(
        (n,),
        [pop(n, 1.0, 1.0), pop(out_w.shape[0], 1.0, out_beta)],
        [Projection(0, 1, dense(np.diag(np.broadcast_to(relay_w, (n,))))), Projection(1, 2, dense(out_w))],
    )


def delivery_steps(net: Network, x: np.ndarray, **kw: Any) -> list[int]:
    """Forward step at which each output neuron first fires in timestep 0 (via labels, R7.7)."""
    n_out = net.n_outputs
    xs = np.repeat(x, n_out, axis=0)
    res = infer(net, xs, labels=list(range(n_out)), sample_ids=[0] * n_out, **kw)
    return [int(res.first_correct_step[c, 0]) for c in range(n_out)]


# ----------------------------------------------------------------------------- R5.5 rng
RNG_VECTORS = [
    (0, 0, 0, 0, 0, 0, 3433141362, 0.7993404865264893),
    (0, 0, 0, 0, 0, 1, 3422389651, 0.7968371510505676),
    (1, 0, 0, 0, 0, 0, 2498379101, 0.5816991925239563),
    (42, 3, 7, 2, 100, 0, 643818531, 0.1499006748199463),
    (2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2, 1525704551, 0.35523074865341187),
    (123456789012345, 17, 5, 11, 65, 1, 3783100989, 0.8808218240737915),
]


@pytest.mark.parametrize(("seed", "sample", "t", "k", "neuron", "stream", "h", "u"), RNG_VECTORS)
def test_rng_matches_the_spec_test_vectors(
    seed: int, sample: int, t: int, k: int, neuron: int, stream: int, h: int, u: float
) -> None:
    assert hash32(seed, sample, t, k, neuron, stream) == h
    assert uniform(seed, sample, t, k, neuron, stream) == u
    assert int(hash32_np(seed, sample, t, k, np.array([neuron]), stream)[0]) == h
    assert float(uniform_np(seed, sample, t, k, np.array([neuron]), stream)[0]) == u


def test_rng_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(0)
    neurons = rng.integers(0, 2**32, 200, dtype=np.uint64)
    for seed in (0, 5, 2**63 + 11):
        for stream in (STREAM_RANDOM, STREAM_DROPOUT, STREAM_JITTER):
            h = hash32_np(seed, 9, 3, 4, neurons, stream)
            assert h.dtype == np.uint32
            assert h.tolist() == [hash32(seed, 9, 3, 4, int(n), stream) for n in neurons]
            u = uniform_np(seed, 9, 3, 4, neurons, stream)
            assert u.dtype == np.float32
            assert (u >= 0).all()
            assert (u < 1).all()
            assert u.astype(np.float64).tolist() == [uniform(seed, 9, 3, 4, int(n), stream) for n in neurons]


def test_rng_mix32_is_a_bijection_on_a_sample() -> None:
    xs = list(range(0, 2**32, 2**32 // 4099))
    assert len({mix32(x) for x in xs}) == len(xs)
    assert all(0 <= mix32(x) < 2**32 for x in xs)


def test_rng_rejects_out_of_range_arguments() -> None:
    with pytest.raises(ValueError, match="seed"):
        hash32(2**64, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="neuron"):
        hash32(0, 0, 0, 0, 2**32, 0)


# ----------------------------------------------------------------------------- R4.3 / R4.2
def test_exact_threshold_does_not_fire() -> None:
    # R4.3.2: V > threshold strictly. w = 1: V = 1.0 == 1.0 -> no spike; t1: V = 2 -> spike.
    net = Network((1,), [pop(1, 1.0, 1.0)], [Projection(0, 1, dense([[1.0]]))])
    res = infer(net, x_of([1.0], [1.0], [1.0]))
    assert res.timestep_output_counts[0].tolist() == [[0], [1], [0]]


def test_input_values_sum_within_forward_step_zero() -> None:
    # R4.2 / R2.3: the whole frame is delivered in step 0, whatever F: 0.5 * 3 = 1.5 > 1.
    net = Network((3,), [pop(1, 1.0, 0.0)], [Projection(0, 1, dense([[0.5, 0.5, 0.5]]))])
    res = infer(net, x_of([1, 1, 1]), forward_group_size=1)
    assert res.first_output_step.tolist() == [[0]]
    assert res.timestep_forward_steps.tolist() == [[1]]
    two = infer(net, x_of([1, 1, 0]))
    assert two.output_counts.tolist() == [[0]]  # 1.0 is not > 1.0


def test_currents_of_separate_steps_accumulate_in_the_membrane() -> None:
    # Two relays delivered one per step (F = 1): 0.75 at step 1, + 0.75 at step 2 -> spike at 2.
    net = relay_net(2, [[0.75, 0.75]])
    res = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1)
    assert res.first_output_step.tolist() == [[2]]
    assert res.timestep_forward_steps.tolist() == [[3]]


def test_graded_and_count_inputs_multiply_the_weight() -> None:
    # R2.1: inputs are not binarised: 3 * 0.375 = 1.125 > 1; 2.5 * 0.375 = 0.9375 < 1.
    net = Network((1,), [pop(1, 1.0, 0.0)], [Projection(0, 1, dense([[0.375]]))])
    res = infer(net, x_of([3.0], [2.5], [1.0]))
    assert res.timestep_output_counts[0].tolist() == [[1], [0], [0]]
    assert res.input_events.tolist() == [3]


# ----------------------------------------------------------------------------- R4.6 refractoriness
def test_refractory_neuron_discards_current() -> None:
    # Relays h0 (+2) and h1 (-3) delivered one per step (fifo, F = 1): out fires at step 1 on
    # h0; h1's -3 reaches a refractory neuron and is discarded, so V stays 0 and the +1.5 of
    # h2 at t1 makes it fire again (with the -3 integrated it would reach only -1.5).
    net = relay_net(3, [[2.0, -3.0, 1.5]], out_beta=1.0)
    res = infer(net, x_of([1, 1, 0], [0, 0, 1]), scheduler="fifo", forward_group_size=1)
    assert res.timestep_output_counts[0].tolist() == [[1], [1]]
    assert res.spikes.tolist() == [[3, 2]]


def test_neuron_fires_at_most_once_per_timestep_without_dropout() -> None:
    net = relay_net(4, [[2.0, 2.0, 2.0, 2.0]])
    res = infer(net, x_of([1, 1, 1, 1]), scheduler="fifo", forward_group_size=1)
    assert res.output_counts.tolist() == [[1]]


def test_inhibitory_last_group_is_integrated_and_carried_to_next_timestep() -> None:
    # t0: V = 0.75 (step 1), then 0.75 - 0.625 = 0.125 (step 2, last group, all inhibitory).
    # t1: 0.125 + 0.75 = 0.875 (no spike; 1.5 if the last group had been dropped).
    # t2: 0.875 + 0.75 = 1.625 -> spike.
    net = relay_net(2, [[0.75, -0.625]], out_beta=1.0)
    res = infer(net, x_of([1, 1], [1, 0], [1, 0]), scheduler="fifo", forward_group_size=1)
    assert res.timestep_forward_steps.tolist() == [[3, 2, 2]]
    assert res.timestep_output_counts[0].tolist() == [[0], [0], [1]]


def _dropout_net() -> Network:
    # in -> relays a (id 0), b (id 1) -> h (id 2, w = 2 from each) -> out (id 3, w = 0.75, beta 0)
    return Network(
        (2,),
        [pop(2), pop(1), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[2.0, 2.0]])),
            Projection(2, 3, dense([[0.75]])),
        ],
    )


def test_refractory_dropout_multiplicity_grows_while_pending() -> None:
    # fifo, F = 1: a delivered at step 0 -> h fires at step 1. It stays non-refractory when
    # u(seed, 0, 0, 1, 2, 1) < p; then b's current (step 2) makes it fire again while pending:
    # multiplicity 2, delivered once as 2 * 0.75 = 1.5 > 1 (one synop), so the output fires.
    net = _dropout_net()
    outcomes = set()
    for seed in range(16):
        open_ = uniform(seed, 0, 0, 1, 2, STREAM_DROPOUT) < 0.5
        outcomes.add(open_)
        res = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1, refractory_dropout=0.5, seed=seed)
        assert res.spikes[0].tolist() == [2, 2 if open_ else 1, 1 if open_ else 0], seed
        # synops: inputs 2 * 2 (dense fan-out), a and b 1 each, h once (fan-out 1) whatever m
        assert res.synops.tolist() == [4 + 1 + 1 + 1]
        assert res.timestep_forward_steps.tolist() == [[4]]
    assert outcomes == {True, False}
    off = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1)
    assert off.spikes[0].tolist() == [2, 1, 0]


def test_refractory_dropout_network_uses_population_values() -> None:
    net = Network(
        (2,),
        [pop(2, 1.0, 1.0, dropout=0.0), pop(1, 1.0, 1.0, dropout=0.75), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[2.0, 2.0]])),
            Projection(2, 3, dense([[0.75]])),
        ],
    )
    for seed in range(8):
        a = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1, refractory_dropout="network", seed=seed)
        b = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1, refractory_dropout=0.75, seed=seed)
        open_ = uniform(seed, 0, 0, 1, 2, STREAM_DROPOUT) < 0.75
        assert a.spikes[0, 1] == (2 if open_ else 1)
        assert a.spikes[0, 1] == b.spikes[0, 1]


# ----------------------------------------------------------------------------- R4.1 leak
def test_leak_multiplies_membrane_once_per_timestep() -> None:
    # w = 0.75, beta 0.5: 0.75, 0.375 + 0.75 = 1.125 (spike), 0.75, 1.125 (spike).
    # beta 0.25: 0.75, 0.9375, 0.984375, 0.99609375: never above 1.
    net = Network((1,), [pop(2, 1.0, [0.5, 0.25])], [Projection(0, 1, dense([[0.75], [0.75]]))])
    res = infer(net, x_of([1], [1], [1], [1]))
    assert res.timestep_output_counts[0].tolist() == [[0, 0], [1, 0], [0, 0], [1, 0]]


def test_leak_is_one_float32_multiply() -> None:
    # R4.1 / R8.1: V1 = w; V2 = float32(float32(0.9) * V1) + w in float32. With the threshold
    # exactly V2 there is no spike; one float32 ulp below, there is.
    w = np.float32(0.53125)
    v2 = np.float32(np.float32(np.float32(0.9) * w) + w)
    assert float(v2) != 0.9 * 0.53125 + 0.53125  # float32 rounding matters here
    for th, spikes in ((v2, 0), (np.nextafter(v2, np.float32(0)), 1)):
        net = Network((1,), [pop(1, float(th), 0.9)], [Projection(0, 1, dense([[float(w)]]))])
        res = infer(net, x_of([1], [1]))
        assert res.output_counts.tolist() == [[spikes]]


def test_per_neuron_threshold_and_beta() -> None:
    # R1.4: thresholds [0.5, 1.0] and betas [1.0, 0.5], w = 0.375, input 1 per timestep.
    # n0: 0.375, 0.75 (spike), 0.375, 0.75 (spike). n1 (beta 0.5): 0.375, 0.5625, 0.65625, ...
    net = Network((1,), [pop(2, [0.5, 1.0], [1.0, 0.5])], [Projection(0, 1, dense([[0.375], [0.375]]))])
    res = infer(net, x_of([1], [1], [1], [1]))
    assert res.timestep_output_counts[0].tolist() == [[0, 0], [1, 0], [0, 0], [1, 0]]


# ----------------------------------------------------------------------------- R5 schedulers
def test_layered_delivers_lowest_population_and_ignores_group_size() -> None:
    # pop1 = a (from in0), pop2 = b (from in1 via skip) and b2 (from a); out: b +2, b2 -4.
    # layered: step 0 delivers {a} (pop 1, lowest), b2 fires at step 1; step 1 delivers {b, b2}
    # together (pop 2, F ignored) -> out gets -2, no spike; 3 forward steps.
    net = Network(
        (2,),
        [pop(1), pop(2), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(0, 2, dense([[0.0, 2.0], [0.0, 0.0]])),
            Projection(1, 2, dense([[0.0], [2.0]])),
            Projection(2, 3, dense([[2.0, -4.0]])),
        ],
    )
    res = infer(net, x_of([1, 1]), scheduler="layered", forward_group_size=1)
    assert res.timestep_forward_steps.tolist() == [[3]]
    assert res.output_counts.tolist() == [[0]]
    # fifo F = 1: a (seq 0), b (seq 1), b2 (seq 2): b's +2 arrives alone -> spike
    fifo = infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1)
    assert fifo.output_counts.tolist() == [[1]]
    assert fifo.timestep_forward_steps.tolist() == [[4]]


def test_fifo_orders_by_sequence_number_and_enqueue_by_id() -> None:
    # Relays fire together at step 0 and are enqueued in id order: fifo delivers 0, 1, 2, 3.
    net = relay_net(4, np.eye(4) * 2, relay_w=[1.25, 3.0, 2.0, 3.0])
    assert delivery_steps(net, x_of([1, 1, 1, 1]), scheduler="fifo", forward_group_size=1) == [1, 2, 3, 4]
    assert delivery_steps(net, x_of([1, 1, 1, 1]), scheduler="fifo", forward_group_size=3) == [1, 1, 1, 2]


def test_fifo_sequence_number_beats_smaller_id() -> None:
    # c (id 2) enqueued at step 0 goes before b (id 1) enqueued at step 1.
    net = Network(
        (2,),
        [pop(1), pop(1), pop(1), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(0, 3, dense([[0.0, 2.0]])),
            Projection(1, 2, dense([[2.0]])),
            Projection(2, 4, dense([[-4.0]])),
            Projection(3, 4, dense([[2.0]])),
        ],
    )
    assert infer(net, x_of([1, 1]), scheduler="fifo", forward_group_size=1).output_counts.tolist() == [[1]]
    # momentum: b and c both have v_pre 2.0: the tie goes to the smaller id b (inhibitory)
    assert infer(net, x_of([1, 1]), scheduler="momentum", forward_group_size=1).output_counts.tolist() == [[0]]


def test_momentum_delivers_largest_vpre_first_ties_to_smaller_id() -> None:
    # v_pre = [1.25, 3, 2, 3]: order 1 (3, smaller id of the tie), 3, 2, 0.
    net = relay_net(4, np.eye(4) * 2, relay_w=[1.25, 3.0, 2.0, 3.0])
    assert delivery_steps(net, x_of([1, 1, 1, 1]), scheduler="momentum", forward_group_size=1) == [4, 1, 3, 2]
    assert delivery_steps(net, x_of([1, 1, 1, 1]), scheduler="momentum", forward_group_size=2) == [2, 1, 2, 1]


def _expected_order(keys_at_step: Any, n: int, largest: bool) -> list[int]:
    """Delivery step of each neuron 0..n-1 with F = 1, keys recomputed at every step."""
    remaining = list(range(n))
    step = [0] * n
    k = 0
    while remaining:
        keys = {j: keys_at_step(k, j) for j in remaining}
        j = sorted(remaining, key=lambda j: ((-keys[j]) if largest else keys[j], j))[0]
        step[j] = k + 1
        remaining.remove(j)
        k += 1
    return step


def test_random_scheduler_draws_fresh_keys_at_every_step() -> None:
    # R5.3: at step k the pending neuron with the smallest h(seed, sample, 0, k, j, 0) goes.
    net = relay_net(5, np.eye(5) * 2)
    x = x_of([1] * 5)
    seen = set()
    for seed in range(6):
        want = _expected_order(lambda k, j, s=seed: hash32(s, 0, 0, k, j, STREAM_RANDOM), 5, largest=False)
        assert delivery_steps(net, x, scheduler="random", forward_group_size=1, seed=seed) == want
        seen.add(tuple(want))
    assert len(seen) > 1


def test_momentum_jitter_key_is_rounded_to_float32() -> None:
    # R5.4: key = float32(v_pre + float32(jitter * u(seed, sample, t, k, j, 2))).
    net = relay_net(4, np.eye(4) * 2, relay_w=[1.25, 3.0, 2.0, 3.0])
    vpre = np.array([1.25, 3.0, 2.0, 3.0], dtype=np.float32)
    for seed, jitter in [(0, 1.0), (1, 2.5), (2, 0.75), (3, 1e-9)]:
        j32 = np.float32(jitter)

        def key(k: int, j: int, s: int = seed, j32: np.float32 = j32) -> float:
            return float(np.float32(vpre[j] + np.float32(j32 * np.float32(uniform(s, 0, 0, k, j, STREAM_JITTER)))))

        want = _expected_order(key, 4, largest=True)
        got = delivery_steps(
            net, x_of([1, 1, 1, 1]), scheduler="momentum", forward_group_size=1, jitter=jitter, seed=seed
        )
        assert got == want, (seed, jitter)
    # a jitter below half an ulp of v_pre vanishes: the tie of neurons 1 and 3 stays a tie
    tiny = delivery_steps(net, x_of([1, 1, 1, 1]), scheduler="momentum", forward_group_size=1, jitter=2.0**-30)
    assert tiny == [4, 1, 3, 2]


def test_forward_steps_are_one_plus_delivered_groups() -> None:
    # R4.4: 5 relays, F = 2 -> groups of 2, 2, 1: 4 forward steps.
    net = relay_net(5, np.zeros((1, 5)))
    for f, steps in ((1, 6), (2, 4), (5, 2), (100, 2)):
        res = infer(net, x_of([1] * 5), scheduler="fifo", forward_group_size=f)
        assert res.timestep_forward_steps.tolist() == [[steps]]
        assert res.forward_steps.tolist() == [steps]


# ----------------------------------------------------------------------------- R6 stop modes
def _skip_net() -> Network:
    # inputs -> 2 relays; inputs -> out directly (0.75 each): out fires at step 0 on [1, 1].
    return Network(
        (2,),
        [pop(2), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[0.25, 0.25]])),
            Projection(0, 2, dense([[0.75, 0.75]])),
        ],
    )


def test_first_output_stop_drops_pending_spikes() -> None:
    net = _skip_net()
    x = x_of([1, 1], [1, 1])
    drain = infer(net, x)
    assert drain.dropped_spikes.tolist() == [0]
    assert drain.timestep_forward_steps.tolist() == [[2, 2]]
    # R6.2 M = 0: stop at step 0 right after the output spike; both relays are dropped (R6.4)
    res = infer(net, x, stop="first_output", extra_steps=0)
    assert res.timestep_forward_steps.tolist() == [[1, 1]]
    assert res.dropped_spikes.tolist() == [4]
    assert res.synops.tolist() == [2 * (2 * 3)]  # inputs only: fan-out 2 + 1 per input
    assert res.queue_peak.tolist() == [2]
    # M = 1: one more step; the pending set is empty after it, nothing is dropped
    res1 = infer(net, x, stop="first_output", extra_steps=1)
    assert res1.timestep_forward_steps.tolist() == [[2, 2]]
    assert res1.dropped_spikes.tolist() == [0]


def test_first_output_without_output_spike_drains() -> None:
    net = _skip_net()
    res = infer(net, x_of([1, 0]), stop="first_output")
    assert res.timestep_forward_steps.tolist() == [[2]]
    assert res.dropped_spikes.tolist() == [0]


def test_max_steps_caps_the_forward_steps() -> None:
    # chain in -> r1 -> r2 -> out (w = 2): r1 at step 0, r2 at step 1, out at step 2.
    net = Network.sequential((1,), [dense([[2.0]]), dense([[2.0]]), dense([[2.0]])], threshold=1.0, beta=1.0)
    full = infer(net, x_of([1]))
    assert full.timestep_forward_steps.tolist() == [[3]]
    assert full.output_counts.tolist() == [[1]]
    res = infer(net, x_of([1]), stop="max_steps", max_steps=2)  # R6.3: stop at k + 1 >= 2
    assert res.timestep_forward_steps.tolist() == [[2]]
    assert res.dropped_spikes.tolist() == [1]
    assert res.output_counts.tolist() == [[0]]
    capped = infer(net, x_of([1]), stop="drain", max_steps=1)
    assert capped.timestep_forward_steps.tolist() == [[1]]
    assert capped.dropped_spikes.tolist() == [1]
    both = infer(net, x_of([1]), stop="first_output", extra_steps=5, max_steps=3)
    assert both.timestep_forward_steps.tolist() == [[3]]
    assert both.output_counts.tolist() == [[1]]


def test_stop_starts_next_timestep_from_current_state() -> None:
    # R6.4: after a stop the membranes keep their values (beta 1): the relays' spikes are
    # dropped, but the output's membrane (0.5 per input, threshold 1.5) carries over.
    net = Network(
        (2,),
        [pop(2), pop(1, 1.5, 1.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[0.0, 0.0]])),
            Projection(0, 2, dense([[0.5, 0.5]])),
        ],
    )
    res = infer(net, x_of([1, 1], [1, 1]), stop="max_steps", max_steps=1)
    # t0: V = 1.0; t1: 2.0 > 1.5 -> spike
    assert res.timestep_output_counts[0].tolist() == [[0], [1]]
    assert res.dropped_spikes.tolist() == [4]


# ----------------------------------------------------------------------------- R7 counters
def test_synops_count_fan_out_per_projection_including_zero_weights() -> None:
    # R1.3 / R7.4: conv 2x2 on 3x3 (no padding): the corner reaches one position, the centre
    # four; both output channels; zero weights count.
    k = np.zeros((2, 1, 2, 2), dtype=np.float32)
    k[0, 0, 0, 0] = 1.5
    net = Network(
        (1, 3, 3),
        [pop((2, 2, 2), 1.0, 1.0), pop(2, 1.0, 1.0)],
        [Projection(0, 1, Conv2d(k)), Projection(1, 2, dense(np.zeros((2, 8))))],
    )
    x = np.zeros((1, 2, 9), dtype=np.float32)
    x[0, 0, 0] = 1.0
    x[0, 1, 4] = 1.0
    res = infer(net, x)
    assert res.synops_per_projection.tolist() == [[2 + 8, 2 * 2]]
    assert res.synops.tolist() == [14]
    assert net.fan_out_counts(0).reshape(3, 3).tolist() == [[2, 4, 2], [4, 8, 4], [2, 4, 2]]


def test_spikes_of_dead_end_and_output_populations_are_counted_not_enqueued() -> None:
    # R4.3.2 / R7.2 / R7.6: pop 2 has no outgoing projection.
    net = Network(
        (2,),
        [pop(2), pop(2), pop(2)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[2.0, 0.0], [2.0, 2.0]])),
            Projection(1, 3, dense([[2.0, 0.0], [0.0, 2.0]])),
        ],
    )
    res = infer(net, x_of([1, 1]), scheduler="layered")
    assert res.spikes.tolist() == [[2, 2, 2]]
    assert res.spikes_total.tolist() == [6]
    assert res.queue_peak.tolist() == [2]
    assert res.timestep_forward_steps.tolist() == [[2]]


def test_latency_records_first_output_and_first_correct() -> None:
    # in -> r1 (w 2) -> r2 (w 2); r1 -> out [2, 0.5]; r2 -> out [0, 0.75].
    # step 0: r1 (1 spike, 1 synop). step 1: r2 and out0 fire (3 spikes; synops 1 + 3 = 4).
    # step 2: out1 = 0.5 + 0.75 fires (4 spikes; synops 4 + 2 = 6).
    net = Network(
        (1,),
        [pop(1), pop(1), pop(2, 1.0, 0.0)],
        [
            Projection(0, 1, dense([[2.0]])),
            Projection(1, 2, dense([[2.0]])),
            Projection(1, 3, dense([[2.0], [0.5]])),
            Projection(2, 3, dense([[0.0], [0.75]])),
        ],
    )
    res = infer(net, x_of([1], [0]), labels=[1], scheduler="fifo")
    assert res.first_output_step.tolist() == [[1, -1]]
    assert res.first_output_class.tolist() == [[0, -1]]
    assert res.first_output_spikes.tolist() == [[3, -1]]
    assert res.first_output_synops.tolist() == [[4, -1]]
    assert res.first_correct_step.tolist() == [[2, -1]]
    assert res.first_correct_spikes.tolist() == [[4, -1]]
    assert res.first_correct_synops.tolist() == [[6, -1]]
    no_label = infer(net, x_of([1], [0]), scheduler="fifo")
    assert (no_label.first_correct_step == -1).all()
    assert (no_label.first_correct_synops == -1).all()


def test_prediction_is_argmax_with_ties_to_smallest_index() -> None:
    net = Network((3,), [pop(3, 1.0, 0.0)], [Projection(0, 1, dense(np.eye(3) * 2))])
    x = np.array([[[0, 1, 1], [0, 1, 1]], [[1, 0, 1], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]]], dtype=np.float32)
    res = infer(net, x)
    assert res.predictions.tolist() == [1, 2, -1]
    assert res.first_output_class.tolist() == [[1, 1], [0, 2], [-1, -1]]


def test_input_events_count_nonzero_values() -> None:
    net = Network((3,), [pop(1)], [Projection(0, 1, dense([[0.0, 0.0, 0.0]]))])
    res = infer(net, np.array([[[0, 2, 0.5], [0, 0, 0]]], dtype=np.float32))
    assert res.input_events.tolist() == [2]
    assert res.timestep_forward_steps.tolist() == [[1, 1]]


# ----------------------------------------------------------------------------- R2 input forms
def test_sparse_input_equals_dense_input() -> None:
    rng = np.random.default_rng(4)
    net = _random_chain(rng, "conv")
    x = _counts(rng, (3, 4, net.input_size), 0.3)
    sparse = []
    for b in range(3):
        t, i = np.nonzero(x[b])
        ev = [[tt, ii, x[b, tt, ii]] for tt, ii in zip(t, i, strict=True)]
        # split every value into two events (R2.2: repeated (t, i) are summed)
        ev = [[tt, ii, v / 2] for tt, ii, v in ev] * 2
        rng.shuffle(ev)
        sparse.append(np.asarray(ev, dtype=np.float64).reshape(-1, 3))
    for scheduler in ("fifo", "random", "momentum"):
        from_dense = infer(net, x, scheduler=scheduler, forward_group_size=2)
        from_sparse = infer(net, sparse, timesteps=4, scheduler=scheduler, forward_group_size=2)
        _assert_same(from_dense, from_sparse)


def test_sparse_duplicate_events_sum_in_float32_list_order() -> None:
    net = Network((2,), [pop(1, 1.0, 0.0)], [Projection(0, 1, dense([[1.0, 0.0]]))])
    ev = np.array([[0, 0, 0.5], [0, 0, 0.25], [0, 0, 0.375], [1, 1, 5.0]])
    res = infer(net, [ev])
    assert res.input_events.tolist() == [2]  # (0, 0) once, (1, 1) once
    assert res.output_counts.tolist() == [[1]]  # 1.125 > 1
    assert res.timestep_forward_steps.shape == (1, 2)


# ----------------------------------------------------------------------------- R5.5 sample ids
def test_explicit_sample_ids_replace_the_batch_index() -> None:
    net = relay_net(5, np.eye(5) * 2)
    x = np.repeat(x_of([1] * 5), 3, axis=0)
    batch = infer(net, x, scheduler="random", forward_group_size=1, seed=3)
    for b in range(3):
        alone = infer(net, x[b : b + 1], scheduler="random", forward_group_size=1, seed=3, sample_ids=[b])
        for name in COUNTER_FIELDS:
            assert np.array_equal(getattr(alone, name)[0], getattr(batch, name)[b])
    big = infer(net, x[:1], scheduler="random", forward_group_size=1, seed=3, sample_ids=[2**32 - 1])
    assert big.batch_size == 1


def test_threads_argument_is_accepted_and_ignored() -> None:
    net = relay_net(2, [[0.75, 0.75]])
    _assert_same(infer(net, x_of([1, 1]), threads=4), infer(net, x_of([1, 1])))


def test_result_metadata() -> None:
    net = relay_net(2, [[0.75, 0.75]])
    res = infer(net, x_of([1, 1]), scheduler="random", forward_group_size=3, seed=5, stop="first_output", extra_steps=2)
    assert isinstance(res, InferenceResult)
    assert res.engine == "reference"
    assert res.options == {
        "scheduler": "random",
        "forward_group_size": 3,
        "stop": "first_output",
        "extra_steps": 2,
        "max_steps": None,
        "seed": 5,
        "jitter": 0.0,
        "refractory_dropout": None,
        "input_dropout": 0.0,
        "spike_dropout": 0.0,
        "prioritize_input": True,
    }
    for name, dims in COUNTER_FIELDS.items():
        assert getattr(res, name).dtype == np.int64
        assert getattr(res, name).ndim == 1 + len(dims)


def test_invalid_options_and_inputs_raise_typed_errors() -> None:
    net = relay_net(2, [[0.75, 0.75]])
    with pytest.raises(ParameterError):
        infer(net, x_of([1, 1]), scheduler="lifo")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        infer(net, x_of([1, 1]), forward_group_size=0)
    with pytest.raises(ParameterError):
        infer(net, x_of([1, 1]), stop="max_steps")
    with pytest.raises(InputError):
        infer(net, x_of([1, -1]))
    with pytest.raises(InputError):
        infer(net, x_of([1, 1]), labels=[5])


# ----------------------------------------------------------------------------- R4.5 layered equivalence
def _counts(rng: np.random.Generator, shape: tuple[int, ...], density: float) -> np.ndarray:
    return ((rng.random(shape) < density) * rng.integers(1, 4, shape)).astype(np.float32)


def _grid(rng: np.random.Generator, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    return (rng.integers(lo, hi, shape) / 256.0).astype(np.float32)


def _random_chain(rng: np.random.Generator, kind: str) -> Network:
    """A chain network (no skip connections) with grid weights (R8.2)."""
    if kind == "dense":
        sizes = [int(v) for v in rng.integers(3, 12, 4)]
        layers: list[Any] = [Dense(_grid(rng, (b, a), -96, 320)) for a, b in itertools.pairwise(sizes)]
        return Network.sequential((sizes[0],), layers, threshold=1.0, beta=[0.875, 0.75, 0.9])
    c_in, h = int(rng.integers(1, 3)), int(rng.integers(5, 8))
    stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    conv = Conv2d(_grid(rng, (3, c_in, 3, 3), -64, 256), stride=stride, padding=pad)
    s1 = conv.output_shape((c_in, h, h))
    pool = AvgPool2d(2) if kind == "conv" else SumPool2d(2, stride=1)
    s2 = pool.output_shape(s1)
    n_out = int(rng.integers(2, 5))
    return Network.sequential(
        (c_in, h, h),
        [conv, pool, Dense(_grid(rng, (n_out, math.prod(s2)), -96, 384))],
        threshold=[1.0, 0.375 if kind == "conv" else 1.5, 1.0],
        beta=[0.875, 0.75, 0.9375],
    )


def _apply(layer: Any, src_shape: tuple[int, ...], s: np.ndarray) -> np.ndarray:
    """Plain layer-synchronous current of one projection for source activity ``s``."""
    if isinstance(layer, Dense):
        cur: np.ndarray = (layer.weight @ s.reshape(-1)).astype(np.float32)
        return cur
    c, h, w = src_shape
    a = s.reshape(c, h, w)
    if isinstance(layer, Conv2d):
        k = layer.weight
        c_out, _, kh, kw = k.shape
        (sh, sw), (ph, pw) = layer.stride, layer.padding
        ap = np.pad(a, ((0, 0), (ph, ph), (pw, pw)))
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        out = np.zeros((c_out, oh, ow), dtype=np.float32)
        for i in range(oh):
            for j in range(ow):
                patch = ap[:, i * sh : i * sh + kh, j * sw : j * sw + kw]
                out[:, i, j] = np.tensordot(k, patch, axes=([1, 2, 3], [0, 1, 2]))
        return out.reshape(-1)
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    weight = np.float32(1.0) / np.float32(kh * kw) if isinstance(layer, AvgPool2d) else np.float32(1.0)
    out = np.zeros((c, oh, ow), dtype=np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = a[:, i * sh : i * sh + kh, j * sw : j * sw + kw].sum(axis=(1, 2)) * weight
    return out.reshape(-1)


def _layer_synchronous(net: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``U_t = beta V_{t-1} + W s_t^{l-1}; s = H(U - theta); V = U (1 - s)``: spikes [B, P], outputs [B, T, n_out]."""
    shapes = net.population_shapes
    n_pop = len(net.populations)
    spikes = np.zeros((x.shape[0], n_pop), dtype=np.int64)
    outs = np.zeros((x.shape[0], x.shape[1], net.n_outputs), dtype=np.int64)
    for b in range(x.shape[0]):
        v = [np.zeros(p.size, dtype=np.float32) for p in net.populations]
        for t in range(x.shape[1]):
            act: list[np.ndarray] = [x[b, t].astype(np.float32)]
            for p in range(1, n_pop + 1):
                pp = net.populations[p - 1]
                cur = np.zeros(pp.size, dtype=np.float32)
                for proj in net.projections:
                    if proj.target == p:
                        cur = cur + _apply(proj.layer, shapes[proj.source], act[proj.source])
                u = (pp.beta.reshape(-1) * v[p - 1]).astype(np.float32) + cur
                s = u > pp.threshold.reshape(-1)
                v[p - 1] = np.where(s, np.float32(0), u).astype(np.float32)
                act.append(s.astype(np.float32))
                spikes[b, p - 1] += int(s.sum())
            outs[b, t] = act[-1].astype(np.int64)
    return spikes, outs


@pytest.mark.parametrize("kind", ["dense", "conv", "conv_sum"])
@pytest.mark.parametrize("seed", range(4))
def test_layered_scheduler_equals_layer_synchronous_lif(kind: str, seed: int) -> None:
    # R4.5: scheduler layered (or any scheduler with F >= the widest population, in a network
    # without skip connections), no dropout, drain == the layer-synchronous LIF network.
    rng = np.random.default_rng(100 * seed + len(kind))
    net = _random_chain(rng, kind)
    x = _counts(rng, (3, 5, net.input_size), 0.35)
    spikes, outs = _layer_synchronous(net, x)
    assert spikes.sum() > 0
    widest = max(net.population_sizes[1:])
    runs = [
        infer(net, x, scheduler="layered"),
        infer(net, x, scheduler="fifo", forward_group_size=widest),
        infer(net, x, scheduler="momentum", forward_group_size=widest, jitter=0.5),
        infer(net, x, scheduler="random", forward_group_size=widest + 3, seed=seed),
    ]
    for res in runs:
        assert res.spikes.tolist() == spikes.tolist()
        assert res.timestep_output_counts.tolist() == outs.tolist()
        assert res.dropped_spikes.sum() == 0
        # every spike of a population with outgoing projections is delivered once (R7.4)
        fan = [net.fan_out_counts(n) for n in range(len(net.projections))]
        assert res.synops_per_projection[:, 0].tolist() == [
            int(sum(fan[0][i] for i in np.flatnonzero(x[b]) % net.input_size)) for b in range(3)
        ]


# ----------------------------------------------------------------------------- R4.5 with bias and reset modes
RESET_MODES = ("zero", "subtract", "subtract_delayed", "none")


def _dense_chain(rng: np.random.Generator, resets: list[str], with_bias: bool) -> Network:
    """A dense chain (no skips) with grid weights, grid biases and the given reset modes."""
    sizes = [int(v) for v in rng.integers(3, 10, len(resets) + 1)]
    layers: list[Any] = [Dense(_grid(rng, (b, a), -128, 320)) for a, b in itertools.pairwise(sizes)]
    biases: list[Any] = [
        _grid(rng, (n,), -96, 160) * (rng.random(n) < 0.7) if with_bias and rng.random() < 0.8 else 0.0
        for n in sizes[1:]
    ]
    return Network.sequential(
        (sizes[0],),
        layers,
        threshold=[float(v) for v in rng.integers(192, 384, len(resets)) / 256],
        beta=[float(v) for v in rng.integers(160, 257, len(resets)) / 256],
        bias=biases,
        reset=resets,
    )


def _layer_synchronous_v2(net: Network, frames: np.ndarray) -> np.ndarray:
    """R4.5 by layers: spikes ``[T, n_neurons]`` of one sample, every population every timestep.

    ``U_t = beta V_{t-1} + (W s_t + b) - theta d_t``, ``s_t = H(U_t - theta)``, then
    ``V_t = U_t (1 - s)`` ("zero"), ``U_t - theta s`` ("subtract"), ``U_t`` ("none"; and
    "subtract_delayed" with ``d_t = s_{t-1}``, ``d_t = 0`` otherwise). float32 throughout.
    """
    pops = net.populations
    v = [np.zeros(p.size, np.float32) for p in pops]
    d = [np.zeros(p.size, np.float32) for p in pops]
    rows = []
    for x in frames:
        s = x.astype(np.float32).reshape(-1)
        row = []
        for n, (p, proj) in enumerate(zip(pops, net.projections, strict=True)):
            assert (proj.source, proj.target) == (n, n + 1)  # a chain
            th, beta = p.threshold.reshape(-1), p.beta.reshape(-1)
            current = (proj.layer.weight @ s).astype(np.float32) + np.asarray(p.bias).reshape(-1)  # type: ignore[union-attr]
            u = ((beta * v[n]).astype(np.float32) + current.astype(np.float32)).astype(np.float32)
            u = (u - th * d[n]).astype(np.float32)
            fired = (u > th).astype(np.float32)
            v[n] = {
                "zero": u * (1 - fired),
                "subtract": u - th * fired,
                "subtract_delayed": u,
                "none": u,
            }[p.reset].astype(np.float32)
            d[n] = fired if p.reset == "subtract_delayed" else np.zeros_like(fired)
            row.append(fired)
            s = fired
        rows.append(np.concatenate(row))
    return np.asarray(rows, dtype=bool)


def _spikes_per_timestep(net: Network, res: InferenceResult, sample: int) -> np.ndarray:
    """Spikes ``[T, n_neurons]`` of one sample from the R7.10 trace (global ids)."""
    assert res.trace is not None
    col = res.trace.columns()
    offsets = np.cumsum([0, 0] + [p.size for p in net.populations])
    out = np.zeros((res.timestep_forward_steps.shape[1], int(offsets[-1])), dtype=np.int64)
    mine = (col["sample"] == sample) & (col["kind"] == "spike")
    np.add.at(out, (col["timestep"][mine], offsets[col["population"][mine]] + col["neuron"][mine]), 1)
    return out


def test_debt_is_paid_after_the_current_in_float32() -> None:
    # R4.3.1 / R4.8: a debtor computes (V + I) - threshold, two float32 operations in this
    # order. t0: V = 1 + 2^-23 fires (debt). t1: (V + 2^-24) rounds to 1 + 2^-22, minus 1 is
    # 2^-22 ((V - 1) + 2^-24 would be 1.5 * 2^-23). t2: + (1 - 2^-23) gives 1 + 2^-23 > 1,
    # a spike (1 + 2^-24 would round to 1.0: none).
    w = np.array([[1 + 2**-23, 2**-24, 1 - 2**-23]], dtype=np.float32)
    net = Network((3,), [Population.create((1,), 1.0, 1.0, reset="subtract_delayed")], [Projection(0, 1, Dense(w))])
    res = infer(net, x_of([1, 0, 0], [0, 1, 0], [0, 0, 1]))
    assert res.timestep_output_counts[0, :, 0].tolist() == [1, 0, 1]


def test_settling_population_fires_only_when_it_settles() -> None:
    # R4.3.2 / R4.7: with reset "none" the membrane stays above the threshold; in the next
    # timestep the neuron is not checked at step 0 (its population is due, not settled)
    # but at the step its population settles (a settle-only step when nothing arrives).
    net = Network(
        (1,),
        [pop(1), Population.create((1,), 1.0, 1.0, reset="none")],
        [Projection(0, 1, dense([[2.0]])), Projection(1, 2, dense([[1.5]]))],
    )
    res = infer(net, x_of([1], [0], [0]), scheduler="fifo", forward_group_size=1)
    assert res.timestep_output_counts[0, :, 0].tolist() == [1, 1, 1]
    assert res.timestep_forward_steps[0].tolist() == [2, 2, 2]
    # first_output_step: step 1 each time (the delivery at t0, settle-only steps after).
    assert res.first_output_step[0].tolist() == [1, 1, 1]
    # A population that does not settle (reset "zero", no bias) has no settle-only step.
    v1 = Network((1,), [pop(1), pop(1)], [Projection(0, 1, dense([[2.0]])), Projection(1, 2, dense([[1.5]]))])
    assert infer(v1, x_of([1], [0], [0])).timestep_forward_steps[0].tolist() == [2, 1, 1]


def test_bias_with_refractory_dropout_on_reset_zero() -> None:
    # R4.6 allows dropout with a bias (reset "zero"); the run option is refused for other resets.
    net = Network.sequential((2,), [Dense(np.eye(2) * 2), Dense([[0.75, 0.75]])], bias=[0.5, 0.0])
    res = infer(net, np.ones((2, 4, 2), np.float32), refractory_dropout=0.5, scheduler="fifo", forward_group_size=1)
    assert res.spikes[:, 0].sum() > 0
    sub = Network.sequential((2,), [Dense(np.eye(2) * 2), Dense([[0.75, 0.75]])], reset=["zero", "subtract"])
    with pytest.raises(ParameterError, match="population 2"):
        infer(sub, np.ones((1, 1, 2), np.float32), refractory_dropout=0.5)
    assert infer(sub, np.ones((1, 1, 2), np.float32), refractory_dropout="network").spikes.sum() > 0


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("reset", RESET_MODES)
@pytest.mark.parametrize("seed", range(3))
def test_layered_equals_layer_synchronous_with_bias_and_reset_modes(reset: str, with_bias: bool, seed: int) -> None:
    """R4.5/R4.7/R4.8: ``layered`` computes every population every timestep, spike for spike.

    An independent numpy implementation of the layer-synchronous formula on dense chains
    with grid weights and biases (R8.2: exact sums), one reset mode for all populations
    and mixed modes, compared per timestep and neuron with the reference's trace.
    """
    rng = np.random.default_rng(1000 * seed + 10 * RESET_MODES.index(reset) + with_bias)
    n_pop = int(rng.integers(2, 5))
    checked = 0
    for resets in ([reset] * n_pop, [reset, *(str(m) for m in rng.choice(RESET_MODES, n_pop - 1))]):
        net = _dense_chain(rng, resets, with_bias)
        x = _counts(rng, (2, 8, net.input_size), float(rng.choice([0.1, 0.3, 0.6])))
        res = infer(net, x, scheduler="layered", trace=True)
        for b in range(x.shape[0]):
            want = _layer_synchronous_v2(net, x[b])
            got = _spikes_per_timestep(net, res, b)
            assert got.max(initial=0) <= 1  # at most one spike per neuron and timestep (R4.6)
            np.testing.assert_array_equal(got.astype(bool), want, err_msg=f"sample {b}, resets {resets}")
            per_pop = np.split(want, np.cumsum(net.population_sizes[1:-1]), axis=1)
            assert res.spikes[b].tolist() == [int(w.sum()) for w in per_pop]
            checked += int(want.sum())
        assert res.dropped_spikes.sum() == 0
    assert checked > 0


# ----------------------------------------------------------------------------- R4.5 / R4.9 recurrent
def _with_recurrent(rng: np.random.Generator, net: Network) -> Network:
    """``net`` (a chain) plus recurrent projections (R1.2) with grid weights.

    Population 1 to itself (a same-size Conv2d on a channel population, dense
    otherwise), lateral inhibition in the output, and the output back to population 1.
    """
    shapes, sizes = net.population_shapes, net.population_sizes
    n_pop = len(net.populations)
    first: Any
    if len(shapes[1]) == 3:
        c = shapes[1][0]
        first = Conv2d(_grid(rng, (c, c, 3, 3), -64, 80), stride=1, padding=1)
    else:
        first = Dense(_grid(rng, (sizes[1], sizes[1]), -96, 128))
    lateral = -_grid(rng, (sizes[n_pop], sizes[n_pop]), 32, 256)
    np.fill_diagonal(lateral, 0.0)
    back = Dense(_grid(rng, (sizes[1], sizes[n_pop]), -64, 192))
    extra = [Projection(1, 1, first), Projection(n_pop, n_pop, Dense(lateral)), Projection(n_pop, 1, back)]
    return Network(net.input_shape, list(net.populations), [*net.projections, *extra])


def _layer_synchronous_rec(net: Network, frames: np.ndarray) -> np.ndarray:
    """R4.5 with recurrent projections: spikes ``[T, n_neurons]`` of one sample.

    ``U_t = beta V_{t-1} + (W s_t + b + R s_{t-1}) - theta d_t`` per population in
    order, the recurrent projections (R4.9) taking their sources' spikes of the
    previous timestep; resets as in :func:`_layer_synchronous_v2`. float32 throughout.
    """
    pops, shapes = net.populations, net.population_shapes
    v = [np.zeros(p.size, np.float32) for p in pops]
    d = [np.zeros(p.size, np.float32) for p in pops]
    prev = [np.zeros(math.prod(sh), np.float32) for sh in shapes]  # s_{t-1}, population 0 unused
    rows = []
    for x in frames:
        act = [x.astype(np.float32).reshape(-1)]
        for n, p in enumerate(pops, 1):
            th, beta = p.threshold.reshape(-1), p.beta.reshape(-1)
            current = np.zeros(p.size, np.float32)
            for proj in net.projections:
                if proj.target == n and not proj.recurrent:
                    current = (current + _apply(proj.layer, shapes[proj.source], act[proj.source])).astype(np.float32)
            current = (current + np.asarray(p.bias, np.float32).reshape(-1)).astype(np.float32)
            for proj in net.projections:
                if proj.target == n and proj.recurrent:
                    current = (current + _apply(proj.layer, shapes[proj.source], prev[proj.source])).astype(np.float32)
            u = ((beta * v[n - 1]).astype(np.float32) + current).astype(np.float32)
            u = (u - th * d[n - 1]).astype(np.float32)
            fired = (u > th).astype(np.float32)
            v[n - 1] = {"zero": u * (1 - fired), "subtract": u - th * fired}.get(p.reset, u).astype(np.float32)
            d[n - 1] = fired if p.reset == "subtract_delayed" else np.zeros_like(fired)
            act.append(fired)
        prev = act
        rows.append(np.concatenate(act[1:]))
    return np.asarray(rows, dtype=bool)


@pytest.mark.parametrize("kind", ["dense", "dense_v2", "conv", "conv_sum"])
@pytest.mark.parametrize("seed", range(3))
def test_layered_equals_layer_synchronous_with_recurrent_projections(kind: str, seed: int) -> None:
    """R4.5/R4.9: under ``layered`` a recurrent projection brings ``R s_{t-1}``, spike for spike.

    Chains with a recurrent projection of population 1 to itself (dense, or a Conv2d),
    lateral inhibition in the output and a backward projection from the output to
    population 1; ``dense_v2`` adds biases and mixed reset modes. Delivered in the
    timestep instead (every other scheduler), the result differs.
    """
    rng = np.random.default_rng(7000 + 10 * seed + len(kind))
    if kind.startswith("dense"):
        resets = [str(m) for m in rng.choice(RESET_MODES, 3)] if kind == "dense_v2" else ["zero"] * 3
        chain = _dense_chain(rng, resets, with_bias=kind == "dense_v2")
    else:
        chain = _random_chain(rng, kind)
    net = _with_recurrent(rng, chain)
    x = _counts(rng, (2, 8, net.input_size), float(rng.choice([0.2, 0.4])))
    res = infer(net, x, scheduler="layered", trace=True)
    checked = 0
    for b in range(x.shape[0]):
        want = _layer_synchronous_rec(net, x[b])
        got = _spikes_per_timestep(net, res, b)
        np.testing.assert_array_equal(got.astype(bool), want, err_msg=f"sample {b}")
        assert got.max(initial=0) <= 1  # at most one spike per neuron and timestep (R4.6, R4.9)
        checked += int(want.sum())
    assert checked > 0
    assert res.spikes[:, 0].sum() > 0
    assert res.spikes[:, -1].sum() > 0
    without = _layer_synchronous_rec(chain, x[0])
    assert not np.array_equal(without, _layer_synchronous_rec(net, x[0])), "the recurrence changes nothing"


# ----------------------------------------------------------------------------- dict form, golden
def test_network_dict_form_round_trips_exactly() -> None:
    rng = np.random.default_rng(1)
    for kind in ("dense", "conv", "conv_sum"):
        net = _random_chain(rng, kind)
        d = network_to_dict(net)
        back = network_from_dict(d)
        assert network_to_dict(back) == d
        for a, b in zip(net.projections, back.projections, strict=True):
            if isinstance(a.layer, (Dense, Conv2d)):
                assert np.array_equal(a.layer.weight, b.layer.weight)  # type: ignore[union-attr]
    odd = Network(
        (2,), [pop(1, np.float32(0.1), np.float32(0.9))], [Projection(0, 1, dense([[np.float32(1 / 3), 0.7]]))]
    )
    back = network_from_dict(network_to_dict(odd))
    assert back.populations[0].threshold.tobytes() == odd.populations[0].threshold.tobytes()
    assert back.projections[0].layer.weight.tobytes() == odd.projections[0].layer.weight.tobytes()  # type: ignore[union-attr]


def test_golden_vectors_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "golden" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _assert_same(a: InferenceResult, b: InferenceResult) -> None:
    for name in COUNTER_FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name

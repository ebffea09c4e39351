#!/usr/bin/env python3
"""Regenerate the golden vectors in ``tests/golden/`` from the reference engine.

This script is the ONLY writer of ``tests/golden/*.json``. Every case is small and
hand-designed (or a seeded random grid network) so that the rule it names actually
matters; each case has a ``check`` that asserts so on the reference result and its
event trace (a real tie for a tie-break case, ``dropped_spikes > 0`` for a stop case,
a result that differs from the contrasting setting...). Generation fails when a check
does not hold.

Usage::

    python tests/golden/generate.py            # rewrite tests/golden/*.json
    python tests/golden/generate.py --check    # regenerate in memory; exit 1 listing drifted files

The JSON format (``generator_version`` 1; ``spec_version`` is the network's
``Network.spec_version``: 1 without settling populations, 2 with a bias, a synaptic
current (R4.12), a reset other than ``"zero"`` or a recurrent projection, R1.6)::

    {"spec_version", "generator_version", "name", "rules", "description",
     "network": asyncsnn._dictform.network_to_dict(...),
     "inputs": {"dense": [B][T][n_in]} or {"sparse": [[[t, i, v], ...] per sample], "timesteps": T},
     "labels": [...] | null, "sample_ids": [...] | null,
     "options": {"scheduler", "forward_group_size", "stop", "extra_steps", "max_steps",
                 "seed", "jitter", "refractory_dropout"} plus "input_dropout" and
                "spike_dropout" where a case sets them (absent: 0, R4.10, R4.11) and
                "prioritize_input" where a case sets it (absent: true, R4.13),
     "expected": {field: nested lists, for every field of asyncsnn.result.COUNTER_FIELDS}}
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
try:
    import asyncsnn.reference  # noqa: F401 - the installed package, when there is one
except ImportError:  # pragma: no cover - running from a bare checkout
    sys.path.insert(0, str(ROOT / "python"))

from asyncsnn import reference  # noqa: E402
from asyncsnn._dictform import network_to_dict  # noqa: E402
from asyncsnn._spec import SPEC_VERSION  # noqa: E402
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d  # noqa: E402
from asyncsnn.reference import _infer  # noqa: E402
from asyncsnn.result import COUNTER_FIELDS, InferenceResult  # noqa: E402
from asyncsnn.rng import (  # noqa: E402
    STREAM_DROPOUT,
    STREAM_INPUT_DROPOUT,
    STREAM_JITTER,
    STREAM_RANDOM,
    STREAM_RANDOM_INPUT,
    STREAM_SPIKE_DROPOUT,
    hash32,
    uniform,
)

GOLDEN = ROOT / "tests" / "golden"
GENERATOR_VERSION = 1
MAX_FILE_BYTES = 200_000
MAX_DIR_BYTES = 2_000_000

Trace = list[list[dict[str, Any]]]
Check = Callable[[InferenceResult, Trace], None]

DEFAULT_OPTIONS: dict[str, Any] = {
    "scheduler": "momentum",
    "forward_group_size": 8,
    "stop": "drain",
    "extra_steps": 0,
    "max_steps": None,
    "seed": 0,
    "jitter": 0.0,
    "refractory_dropout": "off",
}


@dataclass
class Case:
    """One golden vector: network, inputs, options and the check that its rule matters."""

    name: str
    rules: list[str]
    description: str
    network: Network
    inputs: Any  # dense array [B, T, n_in] or list of per-sample event lists [[t, i, v], ...]
    options: dict[str, Any] = field(default_factory=dict)
    timesteps: int | None = None  # sparse inputs only
    labels: list[int] | None = None
    sample_ids: list[int] | None = None
    check: Check | None = None

    def full_options(self) -> dict[str, Any]:
        opts = dict(DEFAULT_OPTIONS)
        opts.update(self.options)
        return opts


# ----------------------------------------------------------------------------- helpers
def pop(shape: Any, threshold: Any = 1.0, beta: Any = 1.0, dropout: float = 0.0) -> Population:
    return Population.create(shape if isinstance(shape, tuple) else (shape,), threshold, beta, dropout)


def dense(w: Any) -> Dense:
    return Dense(np.asarray(w, dtype=np.float32))


def frames(*batches: Any) -> np.ndarray:
    """Dense inputs ``[B, T, n_in]``: the concatenation of nested lists ``[b][T][n_in]``."""
    return np.concatenate([np.asarray(b, dtype=np.float32) for b in batches], axis=0)


def run(case: Case, **override: Any) -> tuple[InferenceResult, Trace]:
    """Run the reference on a case (optionally with other options), with a trace."""
    opts = case.full_options()
    opts.update(override)
    trace: Trace = []
    inputs = case.inputs
    if isinstance(inputs, list):
        inputs = [np.asarray(ev, dtype=np.float64).reshape(-1, 3) for ev in inputs]
    res = _infer(
        case.network,
        inputs,
        labels=case.labels,
        sample_ids=case.sample_ids,
        timesteps=case.timesteps,
        trace=trace,
        **opts,
    )
    return res, trace


def events(trace: Trace, kind: str, sample: int | None = None) -> list[dict[str, Any]]:
    samples = trace if sample is None else [trace[sample]]
    return [e for tr in samples for e in tr if e["event"] == kind]


def differs(a: InferenceResult, b: InferenceResult) -> bool:
    return any(not np.array_equal(getattr(a, f), getattr(b, f)) for f in COUNTER_FIELDS)


def grid(rng: np.random.Generator, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Random weights ``k / 256`` with integer ``k`` in ``[lo, hi)`` (R8.2 grid, |k| < 2**12)."""
    assert -(2**12) < lo < hi <= 2**12
    return (rng.integers(lo, hi, shape) / 256.0).astype(np.float32)


def counts(rng: np.random.Generator, shape: tuple[int, ...], density: float, max_count: int = 3) -> np.ndarray:
    mask = rng.random(shape) < density
    return (mask * rng.integers(1, max_count + 1, shape)).astype(np.float32)


# ----------------------------------------------------------------------------- cases
def case_exact_threshold() -> Case:
    # out0: w = 1.0, V = 1.0 == threshold at t0 (no spike), 2.0 at t1 (spike), 1.0 at t2.
    # out1: w = 1 + 1/256, V > threshold at every timestep.
    net = Network((1,), [pop(2, 1.0, 1.0)], [Projection(0, 1, dense([[1.0], [1.00390625]]))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.timestep_output_counts[0].tolist() == [[0, 1], [1, 1], [0, 1]]

    return Case(
        "r4_3_exact_threshold_does_not_fire",
        ["R4.3", "R2.1", "R7.1"],
        "A membrane exactly at threshold (V == 1.0) does not fire (strict >); one grid step above does.",
        net,
        frames([[[1.0], [1.0], [1.0]]]),
        check=check,
    )


def case_two_inputs_sum() -> Case:
    # pop1 = two relays (w = 2); out0 sums the two relay spikes delivered in two forward
    # steps (F = 1); out1 sums the two input values within the input group of step 0.
    net = Network(
        (2,),
        [pop(2, 1.0, 0.0), pop(2, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[0.75, 0.75], [0.0, 0.0]])),
            Projection(0, 2, dense([[0.0, 0.0], [0.75, 0.75]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        # Sample 0: out1 at step 0 (0.75 + 0.75 from the input group), out0 at step 2
        # (0.75 at step 1, + 0.75 at step 2). Sample 1: one input, nothing crosses.
        assert res.first_output_step[0, 0] == 0
        assert res.first_output_class[0, 0] == 1
        fires = [(e["k"], e["neuron"]) for e in events(trace, "fire", 0) if e["population"] == 2]
        assert fires == [(0, 3), (2, 2)], fires
        assert res.output_counts[1].tolist() == [0, 0]

    return Case(
        "r4_3_two_inputs_sum_across_threshold",
        ["R4.2", "R4.3", "R2.3", "R1.2"],
        "Two currents of 0.75 each reach threshold 1 only together: in one input group (step 0) "
        "and over two forward steps of one timestep (F = 1).",
        net,
        frames([[[1, 1]]], [[[1, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_refractory_discards() -> Case:
    # Relays h0, h1, h2 (w = 2). out weights [2, -3, 1.5], beta_out = 1.
    # t0: h0 delivered at step 0 -> out fires at step 1; h1's -3 reaches a refractory out
    # at step 2 and is discarded (V stays 0). t1: h2 gives 1.5 -> fires (V would be -1.5
    # if the -3 had been integrated).
    net = Network(
        (3,),
        [pop(3, 1.0, 1.0), pop(1, 1.0, 1.0)],
        [Projection(0, 1, dense(np.eye(3) * 2)), Projection(1, 2, dense([[2.0, -3.0, 1.5]]))],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        disc = events(trace, "discard")
        assert disc
        assert disc[0]["t"] == 0
        assert disc[0]["neurons"] == [3]
        assert disc[0]["current"] == [-3.0]
        assert res.timestep_output_counts[0].tolist() == [[1], [1]]

    return Case(
        "r4_6_refractory_neuron_discards_current",
        ["R4.6", "R4.3", "R5.2"],
        "An inhibitory current that reaches a neuron after its spike in the same timestep is "
        "discarded, so the neuron fires again in the next timestep.",
        net,
        frames([[[1, 1, 0], [0, 0, 1]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_inhibitory_last_group() -> Case:
    # out weights [0.75, -0.625], beta_out = 1. t0: V = 0.75 then 0.125 (the last group is
    # all inhibitory and is integrated). t1: 0.875, no spike (1.5 if the group had been
    # dropped). t2: 1.625, spike.
    net = Network(
        (2,),
        [pop(2, 1.0, 1.0), pop(1, 1.0, 1.0)],
        [Projection(0, 1, dense(np.eye(2) * 2)), Projection(1, 2, dense([[0.75, -0.625]]))],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        dl = [e for e in events(trace, "deliver") if e["t"] == 0]
        assert dl[-1]["neuron"] == 1  # the last group of t0 is the inhibitory relay
        assert res.timestep_forward_steps[0].tolist() == [3, 2, 2]
        assert res.timestep_output_counts[0].tolist() == [[0], [0], [1]]

    return Case(
        "r10_1_inhibitory_last_group_integrated",
        ["R4.3", "R4.4", "R4.1"],
        "The currents of the last group of a timestep are integrated even when all inhibitory, "
        "and the membrane carries them into the next timestep (section 10, item 1).",
        net,
        frames([[[1, 1], [1, 0], [1, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_leak() -> Case:
    # Four output neurons, w = 17/32 each, betas 0.25, 0.5, 0.5625, 0.9; input 1 at every
    # timestep. beta = 0.25 converges below threshold, the others fire 1, 2 and 4 times.
    net = Network((1,), [pop(4, 1.0, [0.25, 0.5, 0.5625, 0.9])], [Projection(0, 1, dense([[0.53125]] * 4))])

    def check(res: InferenceResult, trace: Trace) -> None:
        c = res.output_counts[0].tolist()
        assert c == [0, 1, 2, 4], c
        assert res.output_counts[1].tolist() == [0, 0, 0, 0]

    return Case(
        "r4_1_leak_across_timesteps",
        ["R4.1", "R1.4", "R8.1", "R3.3"],
        "The membrane leaks by beta (one float32 multiply) at the start of every timestep; "
        "different betas give different firing rates for the same input.",
        net,
        frames([[[1.0]] * 8], [[[1.0]] + [[0.0]] * 7]),
        check=check,
    )


def _dropout_net() -> Network:
    # in -> a, b (relays, w = 2) -> h (w = 2 from each) -> out (w = 0.75, beta 0).
    return Network(
        (2,),
        [pop(2, 1.0, 1.0), pop(1, 1.0, 1.0), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[2.0, 2.0]])),
            Projection(2, 3, dense([[0.75]])),
        ],
    )


def case_dropout_multiplicity() -> Case:
    # fifo, F = 1: a delivered (step 0) -> h fires at step 1; if the dropout draw keeps it
    # non-refractory, b's delivery makes it fire again at step 2 while still pending:
    # multiplicity 2, delivered as 2 * 0.75 = 1.5 (one synop).
    def check(res: InferenceResult, trace: Trace) -> None:
        mult = [e for e in events(trace, "deliver") if e["multiplicity"] >= 2]
        assert mult, "no multiplicity >= 2"
        assert any(not e["refractory"] for e in events(trace, "fire"))
        assert any(e["refractory"] for e in events(trace, "fire") if e["population"] == 2)
        base, _ = run(case, refractory_dropout="off")
        assert differs(res, base)

    case = Case(
        "r4_6_refractory_dropout_multiplicity",
        ["R4.6", "R3.2", "R7.4", "R5.5", "R1.5"],
        "With refractory_dropout = 0.5 a neuron can stay non-refractory after a spike and fire "
        "again while its first spike is still pending: its multiplicity grows to 2 and it is "
        "delivered once with m * w (synops counted once).",
        _dropout_net(),
        frames([[[1, 1]] * 4] * 3),
        options={"scheduler": "fifo", "forward_group_size": 1, "refractory_dropout": 0.5, "seed": 3},
        check=check,
    )
    return case


def case_dropped_multiplicity() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        stops = events(trace, "stop")
        assert any(e["dropped"] >= 2 for e in stops)
        # a stop that drops a neuron pending with multiplicity 2 drops 2 spikes
        found = False
        for tr in trace:
            for n, e in enumerate(tr):
                if e["event"] == "stop" and n > 0:
                    prev = [x for x in tr[:n] if x["event"] == "fire" and x["t"] == e["t"]]
                    fired_h = [x for x in prev if x["population"] == 2]
                    if len(fired_h) >= 2 and e["dropped"] >= 2:
                        found = True
        assert found
        assert res.dropped_spikes.sum() > 0

    return Case(
        "r6_4_dropped_spikes_count_multiplicity",
        ["R6.4", "R6.3", "R4.6", "R3.2"],
        "An early stop (max_steps = 3) drops a neuron pending with multiplicity 2: dropped_spikes "
        "adds the multiplicity.",
        _dropout_net(),
        frames([[[1, 1]] * 4] * 3),
        options={
            "scheduler": "fifo",
            "forward_group_size": 1,
            "refractory_dropout": 0.5,
            "seed": 3,
            "stop": "max_steps",
            "max_steps": 3,
        },
        check=check,
    )


def _input_dropout_net() -> Network:
    # in (6) -> h (4, relays with threshold 0.5) -> out (2).
    w1 = np.array([[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1], [1, 1, 1, 0, 0, 0]], dtype=np.float32)
    w2 = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32) * 0.75
    return Network(
        (6,), [pop(4, 0.5, 0.5), pop(2, 1.0, 0.5)], [Projection(0, 1, dense(w1)), Projection(1, 2, dense(w2))]
    )


INPUT_DROPOUT_FRAMES = frames([[[1, 2, 0, 1, 1, 0.5], [0, 1, 1, 1, 0, 2], [3, 0, 1, 0, 1, 1]]] * 2)


def case_input_dropout() -> Case:
    p, seed, ids = 0.5, 5, [0, 9]

    def check(res: InferenceResult, trace: Trace) -> None:
        x = INPUT_DROPOUT_FRAMES
        for b, sid in enumerate(ids):
            # R4.10: exactly the non-zero values with u(seed, sample, t, 0, i, 3) >= p are
            # delivered, with their own (not rescaled) values.
            want = [
                (t, i, float(x[b, t, i]))
                for t in range(x.shape[1])
                for i in range(x.shape[2])
                if x[b, t, i] != 0 and uniform(seed, sid, t, 0, i, STREAM_INPUT_DROPOUT) >= p
            ]
            got = [(e["t"], e["neuron"], e["value"]) for e in events(trace, "input", b)]
            assert got == want, (got, want)
            assert 0 < len(want) < int(np.count_nonzero(x[b]))
            assert res.input_events[b] == len(want)
        base, _ = run(case, input_dropout=0.0)
        assert differs(res, base)
        assert (res.input_events < base.input_events).all()

    case = Case(
        "r4_10_input_dropout",
        ["R4.10", "R5.5", "R7.3", "R7.4", "R7.10"],
        "input_dropout = 0.5: a non-zero input value x_i(t) is dropped when u(seed, sample, t, 0, i, 3) "
        "< p (per sample id): it delivers nothing, counts no input event and no synops; the kept "
        "values are delivered unscaled.",
        _input_dropout_net(),
        INPUT_DROPOUT_FRAMES,
        sample_ids=ids,
        options={"scheduler": "fifo", "forward_group_size": 2, "seed": seed, "input_dropout": p},
        check=check,
    )
    return case


def case_input_dropout_sparse() -> Case:
    p, seed = 0.5, 2
    ev = [[[0, 0, 0.5], [0, 0, 0.5], [0, 3, 1.0], [1, 1, 2.0], [1, 4, 1.0], [1, 4, 0.25], [2, 2, 1.5], [2, 5, 1.0]]]

    def check(res: InferenceResult, trace: Trace) -> None:
        # The events of one (t, i) are one value x_i(t) (R2.2): one draw keeps or drops them all.
        cells = sorted({(int(t), int(i)) for t, i, _ in ev[0]})
        kept = [(t, i) for t, i in cells if uniform(seed, 0, t, 0, i, STREAM_INPUT_DROPOUT) >= p]
        assert [(e["t"], e["neuron"]) for e in events(trace, "input")] == kept
        assert 0 < len(kept) < len(cells)
        assert (0, 0) in kept or (1, 4) in kept  # a summed duplicate is kept whole
        base, _ = run(case, input_dropout=0.0)
        assert differs(res, base)

    case = Case(
        "r4_10_input_dropout_sparse_duplicates",
        ["R4.10", "R2.2", "R7.3"],
        "input_dropout with sparse events: repeated (t, i) events form one value x_i(t), kept or dropped by one draw.",
        _input_dropout_net(),
        ev,
        timesteps=3,
        options={"scheduler": "momentum", "forward_group_size": 2, "seed": seed, "input_dropout": p},
        check=check,
    )
    return case


def case_spike_dropout() -> Case:
    p, seed = 0.5, 4

    def check(res: InferenceResult, trace: Trace) -> None:
        for b in range(len(trace)):
            fired = [e for e in events(trace, "fire", b) if e["population"] == 1]
            delivered = {(e["t"], e["neuron"]) for e in events(trace, "deliver", b)}
            # R4.11: a hidden spike is delivered exactly when u(seed, sample, t, k, q, 4) >= p.
            for e in fired:
                keep = uniform(seed, b, e["t"], e["k"], e["neuron"], STREAM_SPIKE_DROPOUT) >= p
                assert ((e["t"], e["neuron"]) in delivered) == keep, e
            assert any(uniform(seed, b, e["t"], e["k"], e["neuron"], STREAM_SPIKE_DROPOUT) < p for e in fired), (
                "no dropped spike"
            )
        # Dropped spikes still count; the output's spikes (never enqueued) are not dropped.
        assert res.spikes[:, 0].sum() == len([e for e in events(trace, "fire") if e["population"] == 1])
        assert res.output_counts.sum() > 0
        base, _ = run(case, spike_dropout=0.0)
        assert differs(res, base)
        assert res.synops.sum() < base.synops.sum()

    case = Case(
        "r4_11_spike_dropout",
        ["R4.11", "R5.5", "R7.2", "R7.4", "R7.10"],
        "spike_dropout = 0.5: a hidden spike is not enqueued when u(seed, sample, t, k, q, 4) < p; it "
        "still counts as a spike and resets, has no delivery; output spikes are not affected.",
        _input_dropout_net(),
        INPUT_DROPOUT_FRAMES,
        options={"scheduler": "fifo", "forward_group_size": 1, "seed": seed, "spike_dropout": p},
        check=check,
    )
    return case


def case_spike_dropout_multiplicity() -> Case:
    seed = 4

    def check(res: InferenceResult, trace: Trace) -> None:
        # h (population 2) fires twice in a timestep (refractory dropout); one of its spikes is
        # dropped by spike dropout, the other delivered with multiplicity 1.
        found = False
        for b, tr in enumerate(trace):
            for t in range(4):
                fires = [e for e in tr if e["event"] == "fire" and e["t"] == t and e["population"] == 2]
                kept = [e for e in fires if uniform(seed, b, t, e["k"], e["neuron"], STREAM_SPIKE_DROPOUT) >= 0.5]
                dels = [e["multiplicity"] for e in tr if e["event"] == "deliver" and e["t"] == t and e["neuron"] == 2]
                assert sum(dels) == len(kept)
                found |= len(fires) >= 2 and len(kept) == 1 and dels == [1]
        assert found
        base, _ = run(case, spike_dropout=0.0)
        assert differs(res, base)

    case = Case(
        "r4_11_spike_dropout_with_refractory_dropout",
        ["R4.11", "R4.6", "R3.2"],
        "spike_dropout with refractory dropout: each spike of a neuron that fires twice in a timestep "
        "is kept or dropped by its own draw; a dropped one adds nothing to the pending multiplicity.",
        _dropout_net(),
        frames([[[1, 1]] * 4] * 3),
        options={
            "scheduler": "fifo",
            "forward_group_size": 1,
            "refractory_dropout": 0.5,
            "seed": seed,
            "spike_dropout": 0.5,
        },
        check=check,
    )
    return case


def case_momentum_latest_vpre() -> Case:
    # Relays a, b, c (ids 0-2) fire at step 0 with v_pre 4, 3, 1.5. momentum, F = 1: a goes
    # first, h (id 3) fires at step 1 with v_pre 1.25; the dropout draw keeps it open, b's
    # 2.5 makes it fire again at step 2 with v_pre 2.5 (multiplicity 2). Its key is now 2.5
    # (latest spike), so it goes before c (1.5): the output gets 2 * 0.75 = 1.5 and fires
    # before c's -4 arrives. With the key of its first spike (1.25), c would go first and
    # the output would not fire.
    seed = 3
    net = Network(
        (3,),
        [pop(3), pop(1), pop(1, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.diag([4.0, 3.0, 1.5]))),
            Projection(1, 2, dense([[1.25, 2.5, 0.0]])),
            Projection(1, 3, dense([[0.0, 0.0, -4.0]])),
            Projection(2, 3, dense([[0.75]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert uniform(seed, 0, 0, 1, 3, STREAM_DROPOUT) < 0.5
        sel = events(trace, "select", 0)
        assert sel[2]["pending"] == {2: (1, 2), 3: (2, 3)}
        assert sel[2]["keys"] == {2: 1.5, 3: 2.5}
        assert sel[2]["group"] == [3]
        assert res.output_counts[0].tolist() == [1]

    return Case(
        "r5_4_momentum_key_uses_latest_vpre",
        ["R5.4", "R3.1", "R4.6", "R3.2"],
        "momentum with refractory dropout: a pending neuron that fires again gets the v_pre of its "
        "latest spike as key (2.5 instead of 1.25), which moves it ahead of another pending neuron.",
        net,
        frames([[[1, 1, 1]]]),
        options={"scheduler": "momentum", "forward_group_size": 1, "refractory_dropout": 0.5, "seed": seed},
        check=check,
    )


def _order_net() -> Network:
    # Four relays with v_pre 1.25, 2, 1.5, 3 (input 1 each). out0 = [+2, -4, 0, 0] fires only
    # when h0 is delivered before h1; out1 = [0, 0, -4, +2] only when h3 comes before h2.
    return Network(
        (4,),
        [pop(4, 1.0, 0.5), pop(2, 1.0, 0.0)],
        [
            Projection(0, 1, dense(np.diag([1.25, 2.0, 1.5, 3.0]))),
            Projection(1, 2, dense([[2.0, -4.0, 0.0, 0.0], [0.0, 0.0, -4.0, 2.0]])),
        ],
    )


ORDER_INPUT = frames([[[1, 1, 1, 1], [1, 1, 0, 1]]], [[[1, 1, 1, 1], [0, 1, 1, 1]]])
RANDOM_ORDER_SEED = 0  # checked: its order differs from every deterministic scheduler's
# timestep_output_counts worked out by hand (sample 1, t1: only out1's pair h2 / h3 is active).
ORDER_EXPECTED = {
    "layered": [[[0, 0], [0, 1]], [[0, 0], [0, 0]]],
    "fifo": [[[1, 0], [1, 1]], [[1, 0], [0, 0]]],
    "momentum": [[[0, 1], [0, 1]], [[0, 1], [0, 1]]],
}


def _order_check(scheduler: str) -> Check:
    def check(res: InferenceResult, trace: Trace) -> None:
        got = res.timestep_output_counts.tolist()
        if scheduler in ORDER_EXPECTED:
            assert got == ORDER_EXPECTED[scheduler], got
        else:  # random: an order that none of the deterministic schedulers produce
            assert got not in ORDER_EXPECTED.values(), got
            # fresh keys at every step: some pair of neurons swaps its key order between steps
            sel = events(trace, "select", 0)
            swapped = False
            for e1, e2 in itertools.pairwise(sel):
                if e1["t"] != e2["t"]:
                    continue
                common = sorted(set(e1["keys"]) & set(e2["keys"]))
                for a in common:
                    for b in common:
                        if a < b and (e1["keys"][a] < e1["keys"][b]) != (e2["keys"][a] < e2["keys"][b]):
                            swapped = True
            assert swapped

    return check


def case_scheduler_order(scheduler: str, rule: str, seed: int = 0) -> Case:
    desc = {
        "layered": "layered delivers all relays of the lowest population in one group (F ignored): "
        "the inhibition and excitation cancel, no output spike at t0.",
        "fifo": "fifo with F = 1 delivers the relays in enqueue order (increasing id within a fire "
        "phase): h0 before h1 (out0 fires), h2 before h3 (out1 does not).",
        "momentum": "momentum with F = 1 delivers the largest v_pre first: h3 (3.0), h1 (2.0), h2 "
        "(1.5), h0 (1.25): at t0 out1 fires, out0 does not.",
        "random": "random with F = 1 draws fresh keys h(seed, sample, t, k, j, 0) at every step; this "
        "seed gives an order no deterministic scheduler gives.",
    }[scheduler]
    extra_rules = {"random": ["R5.5", "R1.5"], "momentum": ["R3.1"]}.get(scheduler, [])
    return Case(
        f"r5_{rule[3]}_{scheduler}_order",
        [rule, "R4.3", *extra_rules],
        desc,
        _order_net(),
        ORDER_INPUT,
        options={"scheduler": scheduler, "forward_group_size": 1, "seed": seed},
        check=_order_check(scheduler),
    )


def _fifo_net() -> Network:
    # pop1 a, pop2 b, pop3 c, pop4 out. in0 -> a, in1 -> c (skip), a -> b, b -> out (-4),
    # c -> out (+2). Step 0: a (seq 0) and c (seq 1) fire; a is delivered, b fires at step 1
    # (seq 2). Pending: c (seq 1, id 2) and b (seq 2, id 1), both with v_pre 2.
    return Network(
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


def case_fifo_sequence() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        sel = [e for e in events(trace, "select", 0) if e["t"] == 0]
        assert sel[1]["pending"] == {1: (1, 2), 2: (1, 1)}
        assert sel[1]["group"] == [2]
        assert res.output_counts[0].tolist() == [1]

    return Case(
        "r5_2_fifo_sequence_number_not_id",
        ["R5.2", "R3.2", "R1.2"],
        "fifo orders by sequence number, not by id: c (id 2) enqueued at step 0 goes before b "
        "(id 1) enqueued at step 1, so the excitation reaches the output first.",
        _fifo_net(),
        frames([[[1, 1]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_momentum_tie() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        sel = [e for e in events(trace, "select", 0) if e["t"] == 0]
        assert sel[1]["keys"] == {1: 2.0, 2: 2.0}
        assert sel[1]["group"] == [1]
        assert res.output_counts[0].tolist() == [0]

    return Case(
        "r5_4_momentum_tie_goes_to_smaller_id",
        ["R5.4", "R4.3", "R3.1"],
        "momentum with equal v_pre (2.0 and 2.0): the smaller id (b, inhibitory) is delivered "
        "first, so the output does not fire.",
        _fifo_net(),
        frames([[[1, 1]]]),
        options={"scheduler": "momentum", "forward_group_size": 1},
        check=check,
    )


JITTER_TINY = 2.0**-30


def case_momentum_jitter_rounding_tie() -> Case:
    seed = 0

    # v_pre = 2.0 for b and c: jitter * u < 2**-30 is below half an ulp of 2.0, so the
    # float32 keys tie and the smaller id wins; in float64 the larger u would win.
    def check(res: InferenceResult, trace: Trace) -> None:
        sel = [e for e in events(trace, "select", 0) if e["t"] == 0]
        assert sel[1]["keys"] == {1: 2.0, 2: 2.0}
        assert sel[1]["group"] == [1]
        ub = uniform(seed, 0, 0, 1, 1, STREAM_JITTER)
        uc = uniform(seed, 0, 0, 1, 2, STREAM_JITTER)
        assert 2.0 + JITTER_TINY * uc > 2.0 + JITTER_TINY * ub  # float64 would pick c
        assert res.output_counts[0].tolist() == [0]

    return Case(
        "r5_4_momentum_jitter_float32_rounding_tie",
        ["R5.4", "R5.5", "R8.1"],
        "momentum key v_pre + jitter * u is rounded to float32: a jitter of 2**-30 vanishes "
        "against v_pre = 2.0, the keys tie and the smaller id goes first (a float64 key would "
        "order by u instead).",
        _fifo_net(),
        frames([[[1, 1]]]),
        options={"scheduler": "momentum", "forward_group_size": 1, "jitter": JITTER_TINY, "seed": seed},
        check=check,
    )


def case_momentum_jitter() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        # some selection does not take the largest v_pre
        reordered = False
        for e in events(trace, "select"):
            fires = {(f["t"], f["neuron"]): f["v"] for f in events(trace, "fire") if f["t"] == e["t"]}
            vp = {j: fires.get((e["t"], j), 0.0) for j in e["pending"]}
            top = max(vp.values())
            if vp[e["group"][0]] < top:
                reordered = True
        assert reordered
        base, _ = run(case, jitter=0.0)
        assert differs(res, base)

    case = Case(
        "r5_4_momentum_jitter_reorders",
        ["R5.4", "R5.5"],
        "momentum with jitter 4.0: the key v_pre + jitter * u(seed, sample, t, k, j, 2) can put a "
        "smaller v_pre first, changing the outputs relative to jitter 0.",
        _order_net(),
        ORDER_INPUT,
        options={"scheduler": "momentum", "forward_group_size": 1, "jitter": 4.0, "seed": 1},
        check=check,
    )
    return case


def case_group_size(f: int) -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        other, _ = run(case, forward_group_size=16 if f == 1 else 1)
        assert differs(res, other)
        if f == 1:
            assert all(len(e["group"]) == 1 for e in events(trace, "select"))
        else:
            assert max(len(e["group"]) for e in events(trace, "select")) >= 3

    case = Case(
        f"r5_forward_group_size_{f}",
        ["R5.4", "R4.3", "R4.4"],
        f"momentum with F = {f}: "
        + (
            "one relay per forward step (out1 fires at t0)." if f == 1 else "all relays in one group (no output at t0)."
        ),
        _order_net(),
        ORDER_INPUT,
        options={"scheduler": "momentum", "forward_group_size": f},
        check=check,
    )
    return case


def _deep_net() -> Network:
    # A 6-8-8-3 network with an input -> output skip (seed chosen so that every stop-mode
    # and latency check below holds: outputs fire at various steps, some timesteps have none).
    rng = np.random.default_rng(3)
    return Network(
        (6,),
        [pop(8, 1.0, 0.875), pop(8, 1.0, 0.875), pop(3, 1.0, 0.75)],
        [
            Projection(0, 1, Dense(grid(rng, (8, 6), -32, 288))),
            Projection(1, 2, Dense(grid(rng, (8, 8), -128, 256))),
            Projection(2, 3, Dense(grid(rng, (3, 8), -160, 256))),
            Projection(0, 3, Dense(grid(rng, (3, 6), -128, 128))),
        ],
    )


def _deep_input() -> np.ndarray:
    return counts(np.random.default_rng(7), (3, 4, 6), 0.6)


def case_stop(stop: str, extra: int = 0, max_steps: int | None = None) -> Case:
    opts = {
        "scheduler": "momentum",
        "forward_group_size": 2,
        "stop": stop,
        "extra_steps": extra,
        "max_steps": max_steps,
    }
    if stop == "first_output":
        name = f"r6_2_first_output_extra_{extra}" + (f"_max_steps_{max_steps}" if max_steps else "")
        rules = ["R6.2", "R6.4", "R7.6", "R7.7"] + (["R6.3"] if max_steps else [])
        desc = f"stop = first_output with extra_steps = {extra}" + (
            f" and a max_steps = {max_steps} cap" if max_steps else ""
        )
    elif stop == "max_steps":
        name, rules, desc = (
            f"r6_3_max_steps_{max_steps}",
            ["R6.3", "R6.4", "R7.6"],
            f"stop = max_steps, K = {max_steps}",
        )
    else:
        name = "r6_1_drain" + (f"_capped_max_steps_{max_steps}" if max_steps else "")
        rules = ["R6.1"] + (["R6.3", "R6.4"] if max_steps else [])
        desc = "stop = drain" + (f" with a max_steps = {max_steps} cap" if max_steps else "")

    def check(res: InferenceResult, trace: Trace) -> None:
        drain, _ = run(case, stop="drain", max_steps=None, extra_steps=0)
        if stop == "drain" and max_steps is None:
            assert res.dropped_spikes.sum() == 0
            assert res.output_counts.sum() > 0
            assert res.timestep_forward_steps.max() > 4
            return
        assert res.dropped_spikes.sum() > 0
        assert differs(res, drain)
        fos, tfs = res.first_output_step, res.timestep_forward_steps
        if stop == "first_output":
            has = fos >= 0
            assert has.any()
            # timesteps with an output spike end exactly extra steps after it (unless capped)
            ends = (tfs[has] == fos[has] + extra + 1) | ((max_steps is not None) & (tfs[has] == (max_steps or 0)))
            assert ends.all()
            assert (tfs[has] < drain.timestep_forward_steps[has]).any()
        if max_steps is not None:
            assert tfs.max() <= max_steps
            assert (tfs == max_steps).any()

    case = Case(
        name,
        rules,
        desc + " on a 6-8-8-3 network with an input -> output skip; pending spikes are dropped (R6.4).",
        _deep_net(),
        _deep_input(),
        options=opts,
        check=check,
    )
    return case


def case_latency_labels() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        fo, fc = res.first_output_step, res.first_correct_step
        assert ((fc > fo) & (fo >= 0)).any()  # the first output is not the label
        assert ((fc == -1) & (fo >= 0)).any()  # label silent while another class fires
        assert ((fc == fo) & (fo >= 0)).any()
        assert (fo == -1).any()
        assert (res.first_correct_synops[fc > fo] > res.first_output_synops[fc > fo]).all()

    return Case(
        "r7_7_latency_records_with_labels",
        ["R7.7", "R7.1"],
        "Latency to the first output spike and to the first spike of the labelled class, per "
        "timestep, with spikes and synops up to and including that step.",
        _deep_net(),
        counts(np.random.default_rng(11), (4, 5, 6), 0.45),
        options={"scheduler": "fifo", "forward_group_size": 1},
        labels=[0, 1, 2, 1],
        check=check,
    )


def case_conv_padding_stride() -> Case:
    # input (1, 5, 5), kernel (2, 1, 3, 3), stride 2, padding 1 -> (2, 3, 3) output. Kernel
    # entries above threshold: channel 0 at (0, 0) and (0, 1); channel 1 at (1, 0) and (2, 1),
    # so a flipped or transposed kernel gives other outputs. One sample per input position.
    k = np.zeros((2, 1, 3, 3), dtype=np.float32)
    k[0, 0] = np.array([[1.5, 1.25, 0.5], [0.0, 0.75, 0.0], [0.5, 0.25, 0.25]])
    k[1, 0] = np.array([[0.0, 0.25, 0.0], [1.125, 0.5, 0.25], [0.0, 2.5, 0.0]])

    def make(kernel: np.ndarray) -> Network:
        return Network((1, 5, 5), [pop((2, 3, 3), 1.0, 0.5)], [Projection(0, 1, Conv2d(kernel, stride=2, padding=1))])

    net = make(k)
    x = np.eye(25, dtype=np.float32).reshape(25, 1, 25)

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.synops.tolist() == net.fan_out_counts(0).tolist()
        assert sorted(set(res.synops.tolist())) == [2, 4, 8]
        for other in (k[:, :, ::-1, ::-1], k.transpose(0, 1, 3, 2)):
            alt, _ = run(Case(case.name, [], "", make(np.ascontiguousarray(other)), x))
            assert differs(res, alt)

    case = Case(
        "r1_2_conv_padding_edges_and_stride",
        ["R1.2", "R1.3", "R7.4"],
        "Conv2d 3x3, stride 2, padding 1 on a 5x5 input, one input event per position (one sample "
        "each): corners, edges and centre reach different outputs with fan-outs 2, 4 or 8.",
        net,
        x,
        check=check,
    )
    return case


def case_conv_asymmetric() -> Case:
    rng = np.random.default_rng(5)
    conv = Conv2d(grid(rng, (3, 2, 2, 3), -128, 512), stride=(2, 1), padding=(1, 0))
    net = Network(
        (2, 4, 6),
        [pop((3, 3, 4), 1.0, 0.875), pop(2, 1.0, 0.875)],
        [Projection(0, 1, conv), Projection(1, 2, Dense(grid(rng, (2, 36), -160, 160)))],
    )
    x = counts(np.random.default_rng(6), (3, 3, 2 * 4 * 6), 0.3)

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.spikes[:, 0].sum() > 0
        assert res.output_counts.sum() > 0
        assert (res.output_counts < 3).any()  # not saturated
        fan = net.fan_out_counts(0)
        assert len(set(fan.tolist())) >= 3

    return Case(
        "r1_2_conv_asymmetric_stride_padding",
        ["R1.2", "R1.3", "R7.4"],
        "Conv2d with kernel (2, 3), stride (2, 1), padding (1, 0) on a (2, 4, 6) input, then Dense.",
        net,
        x,
        options={"scheduler": "fifo", "forward_group_size": 3},
        check=check,
    )


def case_pool(kind: str) -> Case:
    rng = np.random.default_rng(21 if kind == "avg" else 22)
    pool: AvgPool2d | SumPool2d
    if kind == "avg":
        pool, th = AvgPool2d(2), 0.5  # a 2x2 window needs a sum > 2 of counts
    else:
        pool, th = SumPool2d(2, stride=1), 2.5  # overlapping windows: fan-outs 1, 2 and 4
    shape = pool.output_shape((2, 4, 4))
    n_pool = int(np.prod(shape))
    w_out = grid(rng, (3, n_pool), -256 if kind == "avg" else -128, 320 if kind == "avg" else 256)

    def make(p: AvgPool2d | SumPool2d) -> Network:
        return Network(
            (2, 4, 4),
            [pop(shape, th, 0.75), pop(3, 1.0, 0.75)],
            [Projection(0, 1, p), Projection(1, 2, Dense(w_out))],
        )

    net = make(pool)
    x = counts(np.random.default_rng(23), (3, 3, 32), 0.35)

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.spikes[:, 0].sum() > 0
        assert res.output_counts.sum() > 0
        assert (res.output_counts < 3).any()  # not saturated
        if kind == "sum":
            assert sorted(set(net.fan_out_counts(0).tolist())) == [1, 2, 4]
        else:  # the 1/(kh*kw) weight matters: a sum pool gives other results
            alt, _ = run(Case(case.name, [], "", make(SumPool2d(2)), x), **case.options)
            assert differs(res, alt)

    case = Case(
        f"r1_2_{kind}pool",
        ["R1.2", "R1.3", "R7.4"],
        ("AvgPool2d 2x2 (weight 0.25)" if kind == "avg" else "SumPool2d 2x2 with stride 1 (weight 1, overlapping)")
        + " on a (2, 4, 4) count input, then Dense.",
        net,
        x,
        options={"scheduler": "momentum", "forward_group_size": 2},
        check=check,
    )
    return case


def case_skip() -> Case:
    rng = np.random.default_rng(31)
    net = Network.sequential(
        (6,),
        [Dense(grid(rng, (5, 6), 0, 320)), Dense(grid(rng, (4, 5), -64, 320)), Dense(grid(rng, (3, 4), -192, 256))],
        threshold=1.0,
        beta=0.875,
        skips=[(0, 3, Dense(grid(rng, (3, 6), -96, 96))), (1, 3, Dense(grid(rng, (3, 5), -192, 192)))],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        spp = res.synops_per_projection
        assert (spp[:, 3] > 0).any()
        assert (spp[:, 4] > 0).any()
        assert res.output_counts.sum() > 0
        assert (res.output_counts < 4).any()
        layered, _ = run(case, scheduler="layered")
        assert differs(res, layered)

    case = Case(
        "r1_2_skip_connections",
        ["R1.2", "R7.4", "R5.4"],
        "Skip projections 0 -> 3 and 1 -> 3 add to the output population's currents; synops are split per projection.",
        net,
        counts(np.random.default_rng(32), (3, 4, 6), 0.5),
        options={"scheduler": "momentum", "forward_group_size": 2},
        check=check,
    )
    return case


def case_empty() -> Case:
    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.spikes_total.sum() == 0
        assert res.synops.sum() == 0
        assert res.timestep_forward_steps.tolist() == [[1, 1, 1]] * 2
        assert (res.predictions == -1).all()

    return Case(
        "r7_empty_input",
        ["R7.1", "R7.5", "R7.7", "R4.4"],
        "All-zero input: no spikes, no synops, one forward step per timestep, prediction -1.",
        _deep_net(),
        np.zeros((2, 3, 6), dtype=np.float32),
        labels=[1, 2],
        check=check,
    )


def case_sparse_duplicates() -> Case:
    net = Network((3,), [pop(2, 1.0, 0.5)], [Projection(0, 1, dense([[1.0, 0.5, 0.0], [0.0, 0.75, 1.25]]))])
    ev = [
        [[2, 1, 0.75], [0, 0, 0.5], [0, 0, 0.5], [0, 2, 0.0], [2, 1, 0.25], [1, 1, 0.75], [0, 0, 0.125]],
        [[0, 0, 1.0], [3, 2, 0.5], [3, 2, 0.5], [3, 2, 0.25]],
    ]

    def check(res: InferenceResult, trace: Trace) -> None:
        # sample 0: x0(0) = 1.125 (3 events) -> out0 fires; x1(2) = 1.0 (2 events) -> out1
        # gets 0.75; the zero-valued event is no input event.
        assert res.input_events.tolist() == [3, 2]
        assert res.timestep_output_counts[0, 0].tolist() == [1, 0]
        assert res.timestep_output_counts[1, 3].tolist() == [0, 1]

    return Case(
        "r2_2_sparse_input_duplicate_events",
        ["R2.2", "R7.3"],
        "Sparse input: repeated (t, i) events are summed in list order, unsorted t is fine, a "
        "zero value is no event, and timesteps extends past the last event.",
        net,
        ev,
        timesteps=5,
        check=check,
    )


def case_sample_ids() -> Case:
    ids = [0, 1, 4294967295, 1]

    def check(res: InferenceResult, trace: Trace) -> None:
        tc = res.timestep_output_counts
        assert np.array_equal(tc[1], tc[3])  # same id, same draws
        assert len({tuple(tc[b].ravel().tolist()) for b in range(3)}) == 3  # ids change the draws
        plain, _ = run(Case(case.name, [], "", case.network, case.inputs), **case.options)  # ids 0, 1, 2, 3
        assert np.array_equal(plain.timestep_output_counts[:2], tc[:2])
        assert not np.array_equal(plain.timestep_output_counts[2], tc[2])

    case = Case(
        "r5_5_explicit_sample_ids",
        ["R5.5", "R5.3", "R3.3"],
        "random scheduler on four identical samples with explicit sample ids [0, 1, 2**32-1, 1]: "
        "the random keys depend on the id, not on the position in the batch.",
        _order_net(),
        np.repeat(ORDER_INPUT[:1], 4, axis=0),
        options={"scheduler": "random", "forward_group_size": 1, "seed": 1},
        sample_ids=ids,
        check=check,
    )
    return case


def case_graded_inputs() -> Case:
    net = Network(
        (3,),
        [pop(3, 1.0, 0.75), pop(2, 1.0, 0.75)],
        [
            Projection(0, 1, dense([[0.375, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 0.5]])),
            Projection(1, 2, dense([[0.75, 0.75, 0.0], [0.0, 0.5, 0.75]])),
        ],
    )
    x = frames([[[3, 0, 0], [0, 5, 2], [1, 1, 1]]], [[[0.5, 4.5, 2.25], [2, 0, 0.5], [0, 0, 3]]])

    def check(res: InferenceResult, trace: Trace) -> None:
        binar, _ = run(Case(case.name, [], "", case.network, (case.inputs > 0).astype(np.float32)))
        assert differs(res, binar)
        assert res.spikes[:, 0].sum() > 0

    case = Case(
        "r2_1_graded_and_count_inputs",
        ["R2.1", "R4.2"],
        "Inputs are not binarised: counts > 1 and graded values multiply the weights (x * w in float32).",
        net,
        x,
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )
    return case


def case_per_neuron_params() -> Case:
    th = np.array([0.5, 1.0, 1.5, 2.0], dtype=np.float32)
    beta = np.array([0.5, 0.75, 0.875, 1.0], dtype=np.float32)
    net = Network(
        (2,),
        [pop(4, th, beta), pop(2, [1.0, 0.75], [0.9, 0.25])],
        [
            Projection(0, 1, dense([[0.375, 0.25]] * 4)),
            Projection(1, 2, dense([[0.5, 0.5, 0.5, 0.5], [0.25, -0.25, 0.5, 1.0]])),
        ],
    )
    x = frames([[[1, 1]] * 6], [[[2, 0]] * 6])

    def check(res: InferenceResult, trace: Trace) -> None:
        fired = {e["neuron"] for e in events(trace, "fire") if e["population"] == 1}
        assert len(fired) >= 3
        c = res.spikes[:, 0]
        assert (c > 0).all()

    return Case(
        "r1_4_per_neuron_threshold_and_beta",
        ["R1.4", "R4.1", "R4.3"],
        "Per-neuron thresholds [0.5, 1, 1.5, 2] and betas [0.5, 0.75, 0.875, 1] in the hidden "
        "population, per-neuron values in the output.",
        net,
        x,
        options={"scheduler": "fifo", "forward_group_size": 2},
        check=check,
    )


def case_zero_weight_synapses() -> Case:
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

    def check(res: InferenceResult, trace: Trace) -> None:
        # input 0 has fan-out 2 (one position, two channels, one weight zero), input 4 fan-out 8;
        # the two conv spikes reach both outputs through zero weights.
        assert res.synops_per_projection[0].tolist() == [2 + 8, 2 * 2]
        assert res.output_counts.sum() == 0

    return Case(
        "r1_3_zero_weight_synapses_count",
        ["R1.3", "R7.4"],
        "Zero weights are synapses: they count as synops although they carry no current.",
        net,
        x,
        check=check,
    )


def case_dead_end() -> Case:
    # 0 -> 1, 1 -> 2 (dead end: no outgoing projection), 1 -> 3 (output).
    net = Network(
        (2,),
        [pop(2), pop(2), pop(2)],
        [
            Projection(0, 1, dense(np.eye(2) * 2)),
            Projection(1, 2, dense([[2.0, 0.0], [2.0, 2.0]])),
            Projection(1, 3, dense([[2.0, 0.0], [0.0, 2.0]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.spikes[0].tolist() == [2, 2, 2]
        assert res.queue_peak[0] == 2  # only the two pop-1 neurons were ever pending
        assert res.timestep_forward_steps[0].tolist() == [2]

    return Case(
        "r4_3_dead_end_spikes_counted_not_enqueued",
        ["R4.3", "R7.2", "R7.6", "R1.1"],
        "Spikes of a population without outgoing projections (and of the output) are counted but "
        "never enter the pending set.",
        net,
        frames([[[1, 1]]]),
        options={"scheduler": "layered"},
        check=check,
    )


def case_prediction_ties() -> Case:
    net = Network((3,), [pop(3, 1.0, 0.0)], [Projection(0, 1, dense(np.eye(3) * 2))])
    x = frames([[[0, 1, 1], [0, 1, 1]]], [[[1, 0, 1], [0, 0, 1]]], [[[0, 0, 0], [0, 0, 0]]])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.predictions.tolist() == [1, 2, -1]
        assert res.output_counts[0].tolist() == [0, 2, 2]

    return Case(
        "r7_1_prediction_ties_to_smallest_index",
        ["R7.1", "R7.7", "R1.1"],
        "The prediction is the argmax of output counts with ties to the smallest index, -1 "
        "without output spikes; first_output_class is the smallest index in the first step.",
        net,
        x,
        check=check,
    )


def case_stable_decision() -> Case:
    # input (3) -> hidden (3) -> output (3), identity weights 2: with fifo F = 1 each
    # hidden spike reaches its output neuron in a forward step of its own, in id order.
    net = Network(
        (3,),
        [pop(3, 1.0, 0.0), pop(3, 1.0, 0.0)],
        [Projection(0, 1, dense(np.eye(3) * 2)), Projection(1, 2, dense(np.eye(3) * 2))],
    )
    changing = [[1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0]]
    x = frames([changing], [[[0, 0, 0]] * 5], [[[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]])

    def check(res: InferenceResult, trace: Trace) -> None:
        # Sample 0, counts after each output spike (global step): [1,0,0] 0 (1), [1,1,0]
        # tie, still 0 (2), [1,2,0] 1 (4), [1,2,1] (5), [2,2,1] tie -> 0 (7), [2,2,2]
        # (8), [2,2,3] 2 (10), [3,2,3] tie -> 0 (12), [3,3,3] (13): decided at step 12.
        assert res.timestep_forward_steps[0].tolist() == [3, 3, 3, 2, 3]
        assert res.predictions.tolist() == [0, -1, 2]
        assert res.decision_step.tolist() == [12, -1, 1]
        assert res.decision_timestep.tolist() == [4, -1, 0]
        # Spikes 4 + 4 + 4 + 2 + (2 hidden + 1 output); synops (fan-out 3, zero weights
        # count, R1.3) 12 + 12 + 12 + 6 + (input 6 + one group 3).
        assert res.decision_spikes.tolist() == [17, -1, 2]
        assert res.decision_synops.tolist() == [51, -1, 6]
        assert (res.timestep_spikes.sum(1) == res.spikes_total).all()
        assert (res.timestep_synops.sum(1) == res.synops).all()

    return Case(
        "r7_9_stable_decision_changes_and_ties",
        ["R7.9", "R7.1", "R5.2"],
        "The running prediction changes several times, also through ties (to the smallest "
        "index); the stable decision is the global forward step of its last change, with the "
        "spikes and synops up to it; a silent sample has -1.",
        net,
        x,
        options={"scheduler": "fifo", "forward_group_size": 1},
        labels=[0, 1, 2],
        check=check,
    )


# ----------------------------------------------------------------------------- version 2: bias, reset, settling
def spop(shape: Any, threshold: Any = 1.0, beta: Any = 1.0, bias: Any = 0.0, reset: str = "zero") -> Population:
    """A population with a bias and a reset mode (R1.4, R1.6)."""
    return Population.create(shape if isinstance(shape, tuple) else (shape,), threshold, beta, bias=bias, reset=reset)


def per_layer(*values: Any) -> list[Any]:
    """One parameter per layer for ``Network.sequential`` (scalars and arrays mixed)."""
    return list(values)


def fires(trace: Trace, population: int, sample: int = 0) -> list[tuple[int, int, int]]:
    """``(t, k, neuron)`` of every spike of ``population`` (neuron: global id) in ``sample``."""
    return [(e["t"], e["k"], e["neuron"]) for e in events(trace, "fire", sample) if e["population"] == population]


def settles(trace: Trace, sample: int = 0) -> list[tuple[int, int, int]]:
    """``(t, k, population)`` of every settle (R4.7) in ``sample``."""
    return [(e["t"], e["k"], e["population"]) for e in events(trace, "settle", sample)]


def relays(n: int, weights: Any = 2.0) -> tuple[Population, Projection]:
    """``n`` relay neurons (threshold 1, beta 1) fed one to one from ``n`` inputs with weight 2."""
    return pop(n, 1.0, 1.0), Projection(0, 1, dense(np.diag(np.broadcast_to(np.float32(weights), (n,)))))


def case_bias_settles_with_first_delivery() -> Case:
    # in (2) -> relays (w = 2) -> out (bias 0.25, weights 0.375 each, threshold 1, beta 1);
    # fifo, F = 1. t0: the relays fire at step 0; out settles at step 1 with the first
    # relay's 0.375 + 0.25 = 0.625 (not at step 0: no input projection reaches it), then
    # integrates 0.375 more at step 2: V = 1.0, no spike (a bias added with every
    # delivery, as asynctorch does, would give 1.25). t1: silent input, nothing pending,
    # out is due: a settle-only step 1 adds the bias alone: 1.25 > 1, it fires.
    r, rp = relays(2)
    net = Network((2,), [r, spop(1, bias=0.25)], [rp, Projection(1, 2, dense([[0.375, 0.375]]))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert settles(trace) == [(0, 1, 2), (1, 1, 2)], settles(trace)
        assert fires(trace, 2) == [(1, 1, 2)], fires(trace, 2)
        assert res.timestep_forward_steps[0].tolist() == [3, 2]
        assert res.synops[0] == 4 + 2  # the bias counts no synop (R1.4)

    return Case(
        "r4_7_bias_settles_with_first_delivery",
        ["R4.7", "R4.3", "R1.4", "R1.6", "R10.6"],
        "A bias is added once per timestep, together with the first delivery into its "
        "population (step 1 here), not with every delivery; with silent sources it is added "
        "alone in a settle-only step.",
        net,
        frames([[[1, 1], [0, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_settle_only_steps() -> Case:
    # in (1) -> relay (w = 2) -> h (bias 0.375, w 0.5) -> out (bias 0.25, beta 0.5, w 2).
    # Sample 0 has silent input: every timestep runs step 0, a settle-only step 1 for h
    # (the lowest due population) and a settle-only step 2 for out; h reaches 1.125 at
    # t2 and fires at step 1, so out settles with its delivery at step 2 instead.
    # Sample 1: the relay fires at t0, h settles with its delivery at step 1.
    r, rp = relays(1)
    net = Network(
        (1,),
        [r, spop(1, bias=0.375), spop(1, beta=0.5, bias=0.25)],
        [rp, Projection(1, 2, dense([[0.5]])), Projection(2, 3, dense([[2.0]]))],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        only = [(e["t"], e["k"], e["population"]) for e in events(trace, "settle_only", 0)]
        assert only[:6] == [(0, 0, 2), (0, 1, 3), (1, 0, 2), (1, 1, 3), (2, 0, 2), (3, 0, 2)], only
        assert fires(trace, 2) == [(2, 1, 1)], fires(trace, 2)
        assert fires(trace, 3) == [(2, 2, 2)], fires(trace, 3)
        assert res.timestep_forward_steps.tolist() == [[3, 3, 3, 3], [3, 3, 3, 3]]
        assert res.forward_steps.tolist() == [12, 12]
        assert res.input_events.tolist() == [0, 1]
        assert (0, 1, 2) in settles(trace, 1)
        assert not [e for e in events(trace, "settle_only", 1) if e["t"] == 0 and e["population"] == 2]

    return Case(
        "r4_7_settle_only_step_when_sources_silent",
        ["R4.7", "R4.3", "R4.4", "R7.5"],
        "With nothing pending and populations still due, settle-only forward steps settle "
        "them one by one, lowest index first; they count as forward steps.",
        net,
        frames([[[0.0]] * 4], [[[1.0]] + [[0.0]] * 3]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def layer_synchronous(net: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R4.5 on a dense chain: spikes ``[B, P]`` and output spikes ``[B, T, n_out]``.

    ``U = beta V + (W s + b) - theta d; s = H(U - theta)``; ``V`` per reset mode.
    """
    pops = net.populations
    spikes = np.zeros((x.shape[0], len(pops)), dtype=np.int64)
    outs = np.zeros((x.shape[0], x.shape[1], net.n_outputs), dtype=np.int64)
    for b in range(x.shape[0]):
        v = [np.zeros(p.size, np.float32) for p in pops]
        d = [np.zeros(p.size, np.float32) for p in pops]
        for t in range(x.shape[1]):
            s = x[b, t].astype(np.float32)
            for n, (p, proj) in enumerate(zip(pops, net.projections, strict=True)):
                th = p.threshold.reshape(-1)
                cur = (proj.layer.weight @ s).astype(np.float32) + p.bias.reshape(-1)  # type: ignore[union-attr]
                u = ((p.beta.reshape(-1) * v[n]).astype(np.float32) + cur).astype(np.float32)
                u = (u - th * d[n]).astype(np.float32)
                s = (u > th).astype(np.float32)
                v[n] = {"zero": u * (1 - s), "subtract": u - th * s}.get(p.reset, u).astype(np.float32)
                d[n] = s if p.reset == "subtract_delayed" else 0 * s
                spikes[b, n] += int(s.sum())
            outs[b, t] = s.astype(np.int64)
    return spikes, outs


def case_layered_every_population() -> Case:
    # A dense chain whose populations all settle (biases, every reset mode): under
    # layered each one settles exactly once per timestep, with its sources' spikes or in
    # a settle-only step, which is the layer-synchronous network of R4.5.
    rng = np.random.default_rng(2024)
    net = Network.sequential(
        (6,),
        [
            Dense(grid(rng, (5, 6), -64, 256)),
            Dense(grid(rng, (5, 5), -96, 288)),
            Dense(grid(rng, (3, 5), -96, 320)),
        ],
        threshold=[1.0, 0.75, 1.25],
        beta=[0.875, 0.75, 0.9375],
        bias=per_layer(grid(rng, (5,), -32, 64), 0.125, np.asarray([0.25, 0.0, -0.125], np.float32)),
        reset=["subtract_delayed", "subtract", "none"],
    )
    x = counts(np.random.default_rng(7), (3, 6, 6), 0.25)
    x[2] = 0  # a silent sample: every population still computes every timestep

    def check(res: InferenceResult, trace: Trace) -> None:
        spikes, outs = layer_synchronous(net, x)
        assert res.spikes.tolist() == spikes.tolist()
        assert res.timestep_output_counts.tolist() == outs.tolist()
        for b in range(3):
            s = settles(trace, b)
            assert sorted(s) == sorted({(t, k, p) for t, k, p in s}), s
            assert [sum(1 for e in s if e[0] == t) for t in range(6)] == [3] * 6
        assert events(trace, "settle_only", 2)
        assert res.spikes[2].sum() > 0  # biases alone drive the silent sample

    return Case(
        "r4_7_layered_computes_every_population",
        ["R4.5", "R4.7", "R5.1", "R4.8"],
        "Under layered every settling population settles once per timestep, with its "
        "sources' spikes or in a settle-only step when they are silent: the result is the "
        "layer-synchronous network U = beta V + (W s + b) - theta d of R4.5.",
        net,
        x,
        options={"scheduler": "layered"},
        check=check,
    )


def case_reset_subtract() -> Case:
    # in (1) -> out (2 neurons, reset "subtract", threshold 1, beta 1), w = [0.75, 2.5].
    # out0: 0.75, 1.5 (fires, -> 0.5), 0.5, 0.5, 0.5: "zero" would leave 0.
    # out1: 2.5 (fires, -> 1.5: still above threshold but refractory), 4.0 (-> 3.0), then
    # silent input: out settles at step 0 anyway (a projection from the input reaches
    # it) and out1 fires from its membrane alone, 3.0 (-> 2.0), 2.0 (-> 1.0), 1.0 (no).
    net = Network((1,), [spop(2, reset="subtract")], [Projection(0, 1, dense([[0.75], [2.5]]))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.timestep_output_counts[0].tolist() == [[0, 1], [1, 1], [0, 1], [0, 1], [0, 0]]
        assert [e["v"] for e in events(trace, "fire") if e["neuron"] == 1] == [2.5, 4.0, 3.0, 2.0]
        assert res.timestep_forward_steps[0].tolist() == [1] * 5
        zero = Network((1,), [spop(2)], [Projection(0, 1, dense([[0.75], [2.5]]))])
        other, _ = run(Case("", [], "", zero, case.inputs))
        assert other.output_counts[0].tolist() == [1, 2]

    case = Case(
        "r4_8_reset_subtract",
        ["R4.8", "R4.7", "R4.3", "R4.6"],
        "Reset 'subtract' takes the threshold off at the spike; a membrane left above the "
        "threshold fires again in the next timestep (once per timestep), also without input, "
        "when its population settles at step 0.",
        net,
        frames([[[1.0], [1.0], [0.0], [0.0], [0.0]]]),
        check=check,
    )
    return case


def case_reset_subtract_delayed() -> Case:
    # in (2) -> relays -> out (reset "subtract_delayed", beta 0.5, w [0.75, 0.5]); fifo F = 1.
    # t0: out settles at step 1 (0.75), 1.25 at step 2: spike, debt. t1: leak 0.625;
    # out settles at step 1: (0.625 + 0.75) - 1 = 0.375, +0.5 = 0.875. t2: 0.4375 + 0.75
    # = 1.1875: spike; relay 1's 0.5 is discarded. t3: (0.59375 + 0.75) - 1 = 0.34375.
    # With "subtract" (the threshold taken at once, before the leak) out fires at t1.
    r, rp = relays(2)
    net = Network((2,), [r, spop(1, beta=0.5, reset="subtract_delayed")], [rp, Projection(1, 2, dense([[0.75, 0.5]]))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert fires(trace, 2) == [(0, 2, 2), (2, 1, 2)], fires(trace, 2)
        assert settles(trace) == [(0, 1, 2), (1, 1, 2), (2, 1, 2), (3, 1, 2)]
        now = Network((2,), [r, spop(1, beta=0.5, reset="subtract")], [rp, Projection(1, 2, dense([[0.75, 0.5]]))])
        _, tr = run(Case("", [], "", now, case.inputs, case.options))
        assert fires(tr, 2)[:2] == [(0, 2, 2), (1, 2, 2)], fires(tr, 2)

    case = Case(
        "r4_8_reset_subtract_delayed_debt_after_current",
        ["R4.8", "R4.3", "R4.7", "R3.1"],
        "Reset 'subtract_delayed' leaves the membrane and owes the threshold: it is paid when "
        "the population next settles, after that step's current (and after the leak), "
        "(beta V + I) - threshold as snnTorch's delayed reset.",
        net,
        frames([[[1, 1], [1, 1], [1, 1], [1, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )
    return case


def case_reset_none() -> Case:
    # in (2) -> relays -> out (reset "none", beta 0.875, w [1.25, 0.25]); fifo F = 1.
    # t0: 1.25 at step 1: spike; relay 1's 0.25 at step 2 is discarded (refractory).
    # t1: silent input, out is due: it does not fire at step 0 (not integrated, R4.3.2)
    # but in the settle-only step 1: 1.09375. t2: 0.95703125 + 0.25 = 1.20703125 at step
    # 1. t3: 1.05615234375 at the settle-only step 1. t4: 0.924133..., no spike.
    r, rp = relays(2)
    net = Network((2,), [r, spop(1, beta=0.875, reset="none")], [rp, Projection(1, 2, dense([[1.25, 0.25]]))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert fires(trace, 2) == [(0, 1, 2), (1, 1, 2), (2, 1, 2), (3, 1, 2)], fires(trace, 2)
        assert [e["v"] for e in events(trace, "fire") if e["population"] == 2] == [
            1.25,
            1.09375,
            1.20703125,
            1.05615234375,
        ]
        assert res.timestep_forward_steps[0].tolist() == [3, 2, 2, 2, 2]

    return Case(
        "r4_8_reset_none_fires_next_timestep",
        ["R4.8", "R4.3", "R4.6", "R4.7"],
        "Reset 'none' leaves the membrane above the threshold: the neuron is refractory for "
        "the rest of the timestep and fires again only in a later timestep, when its "
        "population settles (a settle-only step here), never before.",
        net,
        frames([[[1, 1], [0, 0], [0, 1], [0, 0], [0, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )


def case_early_stop_unsettled() -> Case:
    # in0 -> relay (w 2) -> h (bias 0.5, "subtract_delayed", w 0.75) -> out (w 2); in1 -> out (w 2).
    # stop first_output, extra 0. t0: relay fires; h settles at step 1: 1.25, spike, debt;
    # out fires at step 2. t1: in1 makes out fire at step 0: the timestep stops, h is still
    # due: its bias is lost and its debt waits. t2: h settles in a settle-only step:
    # (1.25 + 0.5) - 1 = 0.75. t3: 1.25, spike, out fires at step 2.
    # Draining instead, h settles at t1 (0.75) and fires at t2.
    net = Network(
        (2,),
        [pop(1), spop(1, bias=0.5, reset="subtract_delayed"), pop(1)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(0, 3, dense([[0.0, 2.0]])),
            Projection(1, 2, dense([[0.75]])),
            Projection(2, 3, dense([[2.0]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert settles(trace) == [(0, 1, 2), (2, 1, 2), (3, 1, 2)], settles(trace)
        assert fires(trace, 2) == [(0, 1, 1), (3, 1, 1)], fires(trace, 2)
        assert res.timestep_forward_steps[0].tolist() == [3, 1, 2, 3]
        drained, tr = run(case, stop="drain")
        assert fires(tr, 2) == [(0, 1, 1), (2, 1, 1)], fires(tr, 2)
        assert differs(res, drained)

    case = Case(
        "r6_4_early_stop_leaves_population_unsettled",
        ["R6.4", "R4.7", "R6.2", "R4.8"],
        "A timestep ended by an early stop before a due population settled leaves it "
        "unsettled: its bias for that timestep is lost and its subtract_delayed debt waits "
        "for its next settle.",
        net,
        frames([[[1, 0], [0, 1], [0, 0], [0, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1, "stop": "first_output", "extra_steps": 0},
        check=check,
    )
    return case


def case_async_bias(scheduler: str) -> Case:
    # in (2) -> relays (w [2, 3]) -> out (bias 0.25, beta 0), F = 1; out weights
    # [0.875, -0.5] for fifo and [-0.5, 0.875] for momentum, so that the first group each
    # delivers (fifo: relay 0, the smaller sequence number; momentum: relay 1, v_pre 3)
    # is the excitatory one. out settles with it: 0.875 + 0.25 = 1.125 fires at step 1
    # and the inhibitory -0.5 arrives while it is refractory. Under layered out settles
    # with both relays at once: 0.875 - 0.5 + 0.25 = 0.625, no spike. Without the bias
    # 0.875 alone would not fire either.
    w = [[0.875, -0.5]] if scheduler == "fifo" else [[-0.5, 0.875]]
    r, rp = relays(2, [2.0, 3.0])
    net = Network((2,), [r, spop(1, beta=0.0, bias=0.25)], [rp, Projection(1, 2, dense(w))])

    def check(res: InferenceResult, trace: Trace) -> None:
        layered, tr = run(case, scheduler="layered")
        assert fires(tr, 2) == []
        assert settles(tr) == [(t, 1, 2) for t in range(3)]
        assert settles(trace) == [(t, 1, 2) for t in range(3)]
        first = events(trace, "deliver")[0]["neuron"]
        assert first == (0 if scheduler == "fifo" else 1)
        assert fires(trace, 2) == [(t, 1, 2) for t in range(3)], fires(trace, 2)
        assert differs(res, layered)
        assert [e["neurons"] for e in events(trace, "discard")] == [[2]] * 3

    case = Case(
        f"r4_7_{scheduler}_bias_settles_with_first_group",
        ["R4.7", "R5.2" if scheduler == "fifo" else "R5.4", "R4.5", "R4.6"],
        "With F = 1 the bias settles with the first group delivered into the population "
        f"({'fifo: the first enqueued relay' if scheduler == 'fifo' else 'momentum: the relay with the larger v_pre'}, "
        "excitatory here), and the neuron fires on it before the inhibitory group arrives; "
        "under layered both arrive with the bias in one step and it stays silent.",
        net,
        frames([[[1, 1]] * 3]),
        options={"scheduler": scheduler, "forward_group_size": 1},
        check=check,
    )
    return case


def case_random_settling(n: int, kind: str, options: dict[str, Any], rules: list[str]) -> Case:
    """Seeded random grid networks whose populations settle (biases, every reset mode)."""
    rng = np.random.default_rng(3000 + n)
    if kind == "dense_settling":
        net = Network.sequential(
            (12,),
            [
                Dense(grid(rng, (10, 12), -96, 256)),
                Dense(grid(rng, (8, 10), -96, 288)),
                Dense(grid(rng, (4, 8), -192, 288)),
            ],
            threshold=[1.0, 0.875, 1.25],
            beta=[0.875, 0.9375, 0.75],
            bias=per_layer(grid(rng, (10,), -48, 64), 0.0, grid(rng, (4,), -32, 96)),
            reset=["zero", "subtract", "subtract_delayed"],
            refractory_dropout=[0.5, 0.0, 0.0],
        )
    elif kind == "skip_settling":
        net = Network.sequential(
            (10,),
            [
                Dense(grid(rng, (8, 10), -96, 288)),
                Dense(grid(rng, (6, 8), -96, 320)),
                Dense(grid(rng, (4, 6), -224, 288)),
            ],
            threshold=[1.0, 0.75, 1.25],
            beta=0.875,
            bias=per_layer(0.0, grid(rng, (6,), -32, 80), 0.0625),
            reset=["none", "subtract_delayed", "subtract"],
            skips=[(0, 2, Dense(grid(rng, (6, 10), -64, 192))), (1, 3, Dense(grid(rng, (4, 8), -64, 192)))],
        )
    else:
        conv = Conv2d(grid(rng, (3, 2, 3, 3), -128, 192), stride=1, padding=1)
        s1 = conv.output_shape((2, 6, 6))
        pool = SumPool2d(2)
        s2 = pool.output_shape(s1)
        net = Network.sequential(
            (2, 6, 6),
            [conv, pool, Dense(grid(rng, (4, int(np.prod(s2))), -256, 320))],
            threshold=[1.0, 1.5, 1.0],
            beta=[0.875, 0.75, 0.875],
            bias=per_layer(grid(rng, s1, -32, 48), 0.0, grid(rng, (4,), -16, 64)),
            reset=["subtract", "zero", "none"],
        )
    x = counts(np.random.default_rng(4000 + n), (3, 4, net.input_size), 0.3)
    x[0, 1] = 0  # a silent frame
    labels = [int(v) for v in rng.integers(0, net.n_outputs, 3)]

    def check(res: InferenceResult, trace: Trace) -> None:
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()
        assert res.output_counts.sum() > 0
        assert events(trace, "settle")
        layered, _ = run(case, scheduler="layered", jitter=0.0)
        assert differs(res, layered)
        if options.get("stop", "drain") != "drain" or options.get("max_steps"):
            assert res.dropped_spikes.sum() > 0

    case = Case(
        f"random_{n}_{kind}_{options['scheduler']}",
        [*rules, "R4.7", "R4.8", "R8.2"],
        f"Seeded random {kind.replace('_', ' ')} network (biases k/256, reset modes "
        f"{', '.join(p.reset for p in net.populations)}) with integer count inputs; options {options}.",
        net,
        x,
        options=options,
        labels=labels,
        check=check,
    )
    return case


def case_random_network(n: int, kind: str, options: dict[str, Any], rules: list[str]) -> Case:
    rng = np.random.default_rng(1000 + n)
    if kind == "dense":
        net = Network.sequential(
            (12,),
            [
                Dense(grid(rng, (10, 12), -96, 256)),
                Dense(grid(rng, (8, 10), -96, 320)),
                Dense(grid(rng, (4, 8), -224, 288)),
            ],
            threshold=1.0,
            beta=[0.875, 0.9, 0.75],
            refractory_dropout=[0.5, 0.25, 0.0],
        )
    elif kind == "skip":
        net = Network.sequential(
            (10,),
            [
                Dense(grid(rng, (8, 10), -96, 288)),
                Dense(grid(rng, (6, 8), -96, 320)),
                Dense(grid(rng, (4, 6), -224, 288)),
            ],
            threshold=[1.0, 0.75, 1.25],
            beta=0.875,
            skips=[(0, 2, Dense(grid(rng, (6, 10), -64, 192))), (1, 3, Dense(grid(rng, (4, 8), -64, 192)))],
            refractory_dropout=0.25,
        )
    else:
        pool: AvgPool2d | SumPool2d = AvgPool2d(2) if kind == "conv_avg" else SumPool2d(2)
        conv = Conv2d(grid(rng, (3, 2, 3, 3), -128, 192), stride=1, padding=1)
        s1 = conv.output_shape((2, 6, 6))
        s2 = pool.output_shape(s1)
        net = Network.sequential(
            (2, 6, 6),
            [
                conv,
                pool,
                Dense(
                    grid(
                        rng,
                        (4, int(np.prod(s2))),
                        -96 if kind == "conv_avg" else -256,
                        512 if kind == "conv_avg" else 320,
                    )
                ),
            ],
            threshold=[1.0, 0.375 if kind == "conv_avg" else 1.5, 1.0],
            beta=[0.875, 0.75, 0.875],
        )
    x = counts(np.random.default_rng(2000 + n), (3, 4, net.input_size), 0.35)
    labels = [int(v) for v in rng.integers(0, net.n_outputs, 3)]

    def check(res: InferenceResult, trace: Trace) -> None:
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()  # every population is active
        assert res.output_counts.sum() > 0
        assert (res.timestep_output_counts == 0).any()
        if options.get("stop", "drain") != "drain" or options.get("max_steps"):
            assert res.dropped_spikes.sum() > 0
        if options.get("refractory_dropout", "off") != "off":
            assert any(not e["refractory"] for e in events(trace, "fire"))

    return Case(
        f"random_{n}_{kind}_{options['scheduler']}",
        [*rules, "R8.2"],
        f"Seeded random {kind} network with grid weights k/256 and integer count inputs; options {options}.",
        net,
        x,
        options=options,
        labels=labels,
        check=check,
    )


# ----------------------------------------------------------------------------- R4.9
@contextlib.contextmanager
def recurrent_delivery(carried: bool) -> Iterator[None]:
    """Run the reference with every recurrent delivery carried (``True``) or none.

    The contrast a check uses to show that R4.9's choice (carried under ``layered``,
    delivered in the timestep otherwise) decides its case.
    """
    saved = reference._carried
    reference._carried = lambda opts, proj: carried and proj.recurrent
    try:
        yield
    finally:
        reference._carried = saved


def run_carried(case: Case, carried: bool, **override: Any) -> tuple[InferenceResult, Trace]:
    """:func:`run` with every recurrent delivery carried, or none (see :func:`recurrent_delivery`)."""
    with recurrent_delivery(carried):
        return run(case, **override)


def layer_synchronous_rec(net: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R4.5 with recurrent projections, on a dense chain with dense recurrent projections.

    ``U = beta V + (W s_t + b + R s_{t-1}) - theta d; s = H(U - theta)`` (R4.9: the
    recurrent projections into a population bring its sources' spikes of the previous
    timestep). Returns spikes ``[B, P]`` and output spikes ``[B, T, n_out]``.
    """
    pops = net.populations
    forward = [p for p in net.projections if not p.recurrent]
    recurrent = [p for p in net.projections if p.recurrent]
    assert [(p.source, p.target) for p in forward] == [(n, n + 1) for n in range(len(pops))]
    spikes = np.zeros((x.shape[0], len(pops)), dtype=np.int64)
    outs = np.zeros((x.shape[0], x.shape[1], net.n_outputs), dtype=np.int64)
    for b in range(x.shape[0]):
        v = [np.zeros(p.size, np.float32) for p in pops]
        d = [np.zeros(p.size, np.float32) for p in pops]
        prev = [np.zeros(p.size, np.float32) for p in pops]  # s_{t-1} of every population
        for t in range(x.shape[1]):
            s = x[b, t].astype(np.float32)
            now: list[np.ndarray] = []
            for n, (p, proj) in enumerate(zip(pops, forward, strict=True)):
                th = p.threshold.reshape(-1)
                cur = ((proj.layer.weight @ s).astype(np.float32) + p.bias.reshape(-1)).astype(np.float32)  # type: ignore[union-attr]
                for r in recurrent:
                    if r.target == n + 1:
                        cur = (cur + (r.layer.weight @ prev[r.source - 1]).astype(np.float32)).astype(np.float32)  # type: ignore[union-attr]
                u = ((p.beta.reshape(-1) * v[n]).astype(np.float32) + cur).astype(np.float32)
                u = (u - th * d[n]).astype(np.float32)
                s = (u > th).astype(np.float32)
                v[n] = {"zero": u * (1 - s), "subtract": u - th * s}.get(p.reset, u).astype(np.float32)
                d[n] = s if p.reset == "subtract_delayed" else 0 * s
                spikes[b, n] += int(s.sum())
                now.append(s)
            prev = now
            outs[b, t] = s.astype(np.int64)
    return spikes, outs


def case_layered_self_recurrence() -> Case:
    # in (1) -> h (2 neurons, threshold 1, beta 1; w [2, 0]); recurrent h -> h with
    # W = [[0.75, 0], [1.5, 0]] (h0 to itself 0.75, h0 to h1 1.5). layered.
    # t0: h0 fires at step 0 (2.0); its delivery is carried: C = [0.75, 1.5], 2 synops
    # counted in t0. t1: h settles at step 0 (input projection): h0 = 2 + 0.75 fires,
    # h1 = 1.5 fires. t2: silent input, h0 = 0.75 does not fire, h1 = 1.5 does. t3: h0
    # stays at 0.75. Delivered in the timestep instead, h0's self-current reaches it
    # while refractory (discarded) and h1 fires at t0 step 1.
    net = Network.sequential(
        (1,),
        [dense([[2.0], [0.0]])],
        threshold=1.0,
        beta=1.0,
        recurrent=[(1, 1, dense([[0.75, 0.0], [1.5, 0.0]]))],
    )
    x = frames([[[1.0], [1.0], [0.0], [0.0]]])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.timestep_output_counts[0].tolist() == [[1, 0], [1, 1], [0, 1], [0, 0]]
        assert res.timestep_synops[0].tolist() == [2 + 2, 2 + 2 + 2, 2, 0]
        assert res.timestep_forward_steps[0].tolist() == [2, 2, 2, 1]
        assert settles(trace) == [(t, 0, 1) for t in range(4)], settles(trace)
        spikes, outs = layer_synchronous_rec(net, x)
        assert res.spikes.tolist() == spikes.tolist()
        assert res.timestep_output_counts.tolist() == outs.tolist()
        now, _ = run_carried(case, carried=False)
        assert now.timestep_output_counts[0].tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]

    case = Case(
        "r4_9_layered_self_recurrence_carried",
        ["R4.9", "R4.3", "R4.5", "R7.4", "R7.9", "R1.2"],
        "Under layered a recurrent projection of a population to itself carries its current "
        "to the population's next settle (the next timestep): U = beta V + W x_t + R s_{t-1} "
        "as snnTorch's RLeaky. Its synops count in the timestep of the delivery.",
        net,
        x,
        options={"scheduler": "layered"},
        check=check,
    )
    return case


def _lateral_net() -> Network:
    # in (2) -> relays r0, r1 (w 2, 3: v_pre 2, 3) ; r1 -> m (w 4: v_pre 4);
    # r0 -> h0 (w 2.5) and m -> h1 (w 2.5); lateral inhibition h -> h, W = [[0, -3], [-3, 0]].
    return Network(
        (2,),
        [pop(2), pop(1), pop(2)],
        [
            Projection(0, 1, dense(np.diag([2.0, 3.0]))),
            Projection(1, 2, dense([[0.0, 4.0]])),
            Projection(1, 3, dense([[2.5, 0.0], [0.0, 0.0]])),
            Projection(2, 3, dense([[0.0], [2.5]])),
            Projection(3, 3, dense([[0.0, -3.0], [-3.0, 0.0]])),
        ],
    )


LATERAL_RANDOM_SEED = 7  # checked: h0 wins in sample 0, h1 in sample 1


def case_lateral_inhibition(scheduler: str, rule: str, seed: int = 0) -> Case:
    # F = 1. fifo: r0, r1 fire at step 0; r0 is delivered first: h settles at step 1 and
    # h0 fires (2.5); then r1 (m fires at step 2), then h0's -3 reaches h1 (step 3) before
    # m's 2.5 (step 4): h1 = -0.5, h0 alone wins. momentum: r1 (v_pre 3), then m (4): h1
    # fires at step 2 with v_pre 2.5 > 2 (r0), so its -3 reaches h0 before r0's 2.5: h1
    # alone wins. Carried (as under layered), the inhibition arrives only in the next
    # timestep and both fire.
    # The single winner of t0 in each sample (ids 3, 4 are h0, h1); random draws
    # another order for each sample (R5.5: the sample id is in the key).
    winners = {"fifo": [3, 3], "momentum": [4, 4], "random": [3, 4]}[scheduler]

    def check(res: InferenceResult, trace: Trace) -> None:
        for b in range(2):
            t0 = [q for t, _, q in fires(trace, 3, b) if t == 0]
            assert t0 == [winners[b]], (b, t0)
            # the loser integrated the inhibition within the timestep (R4.9), not refractory
            assert [e for e in events(trace, "integrate", b) if e["t"] == 0 and 7 - winners[b] in e["neurons"]]
        carried, tr = run_carried(case, carried=True)
        for b in range(2):
            assert sorted(q for t, _, q in fires(tr, 3, b) if t == 0) == [3, 4]
        assert differs(res, carried)

    desc = {
        "fifo": "fifo delivers r0's group first: h0 fires and its inhibition reaches h1 before h1's excitation.",
        "momentum": "momentum delivers the largest v_pre first: h1 fires first and inhibits h0.",
        "random": "random (this seed) draws an order in which h0 wins in sample 0 and h1 in sample 1.",
    }[scheduler]
    case = Case(
        f"r4_9_lateral_inhibition_{scheduler}",
        ["R4.9", rule, "R1.2", "R4.7", "R4.3"],
        "Lateral inhibition within a population (a recurrent projection of a population to "
        "itself) is delivered in the same timestep under every scheduler but layered, so the "
        "delivery order decides which neuron wins: " + desc,
        _lateral_net(),
        frames([[[1, 1], [1, 1]]], [[[1, 1], [0, 1]]]),
        options={"scheduler": scheduler, "forward_group_size": 1, "seed": seed},
        check=check,
    )
    return case


def _backward_net() -> Network:
    # in (1) -> a (2; w [2, 0]) -> b (2; identity w 2); backward b -> a, W = [[0, 0], [1.5, 0]]
    # (b0 drives a1, whose spike drives b1).
    return Network(
        (1,),
        [pop(2), pop(2)],
        [
            Projection(0, 1, dense([[2.0], [0.0]])),
            Projection(1, 2, dense(np.eye(2) * 2)),
            Projection(2, 1, dense([[0.0, 0.0], [1.5, 0.0]])),
        ],
    )


def case_backward(scheduler: str) -> Case:
    # layered: t0: a0 (step 0), b0 (step 1); b0's delivery to a is carried. t1: a settles
    # at step 0 with C: a1 fires (1.5), b1 at step 1. fifo: a1 fires at step 2 of t0 and
    # b1 at step 3: b gets both spikes in t0.
    expected = {
        "layered": [[1, 0], [0, 1], [0, 0]],
        "fifo": [[1, 1], [0, 0], [0, 0]],
    }[scheduler]

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.timestep_output_counts[0].tolist() == expected, res.timestep_output_counts[0].tolist()
        # R7.4: input, a0, b0 (carried or not: counted in t0), and under fifo a1, b1
        assert res.timestep_synops[0, 0] == {"layered": 6, "fifo": 10}[scheduler]
        other, _ = run_carried(case, carried=scheduler != "layered")
        assert differs(res, other)
        if scheduler == "layered":
            assert fires(trace, 1)[1] == (1, 0, 1), fires(trace, 1)

    case = Case(
        f"r4_9_backward_projection_{scheduler}",
        ["R4.9", "R1.2", "R4.7", "R7.4"] + (["R5.1"] if scheduler == "layered" else ["R5.2"]),
        "A backward projection (source > target) under "
        + (
            "layered: its current is carried to the target's settle in the next timestep."
            if scheduler == "layered"
            else "fifo: its current is delivered in the same timestep, like a forward projection."
        ),
        _backward_net(),
        frames([[[1.0], [0.0], [0.0]]]),
        options={"scheduler": scheduler, "forward_group_size": 1},
        check=check,
    )
    return case


def case_layered_carry_into_due_population() -> Case:
    # in (2): in0 -> r (w 2) -> a (w 2) -> out (w 0.5); skip in1 -> out (w 2); backward
    # out -> a (w 1.5). layered, t0 with input [0, 1]: r is silent, out fires at step 0;
    # its delivery to a is carried (C = 1.5) and settles nothing; the pending set empties
    # with a still due, so a settles in the settle-only step 2 and takes C (R4.3.1): it
    # fires in t0. a's 0.5 then reaches out (refractory).
    net = Network(
        (2,),
        [pop(1), pop(1), pop(1)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(1, 2, dense([[2.0]])),
            Projection(2, 3, dense([[0.5]])),
            Projection(0, 3, dense([[0.0, 2.0]])),
            Projection(3, 2, dense([[1.5]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert fires(trace, 3) == [(0, 0, 2), (1, 0, 2)], fires(trace, 3)
        assert fires(trace, 2) == [(0, 2, 1), (1, 2, 1)], fires(trace, 2)
        assert settles(trace) == [(0, 2, 2), (1, 2, 2)], settles(trace)
        assert events(trace, "settle_only")
        now, tr = run_carried(case, carried=False)
        assert settles(tr)[0] == (0, 1, 2), settles(tr)
        assert differs(res, now)

    case = Case(
        "r4_9_layered_carry_taken_by_later_settle",
        ["R4.9", "R4.3", "R4.7", "R5.1", "R1.2"],
        "Under layered a carried current is taken when its target next settles (R4.3.1): a "
        "backward delivery that reaches a population still due in this timestep (its "
        "sources silent, a skip drove the output first) does not settle it, but the "
        "settle-only step that follows adds it.",
        net,
        frames([[[0, 1], [0, 1]]]),
        options={"scheduler": "layered"},
        check=check,
    )
    return case


def case_recurrent_conv() -> Case:
    # in (1, 3, 3) -> h (1, 3, 3) one to one (w 2); recurrent Conv2d 3x3, padding 1, with
    # 1.5 to the four direct neighbours. layered, the centre pixel at t0 only: a wave
    # spreads one ring per timestep: t0 the centre, t1 the 4 edges, t2 the 4 corners
    # (2 * 1.5) and the centre (4 * 1.5), t3 the edges (1.5 + 2 * 1.5). Delivered in the
    # timestep (fifo) all 9 fire in t0.
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0] = [[0.0, 1.5, 0.0], [1.5, 0.0, 1.5], [0.0, 1.5, 0.0]]
    net = Network(
        (1, 3, 3),
        [pop((1, 3, 3))],
        [Projection(0, 1, dense(np.eye(9) * 2)), Projection(1, 1, Conv2d(kernel, stride=1, padding=1))],
    )
    x = np.zeros((1, 4, 9), np.float32)
    x[0, 0, 4] = 1.0

    def check(res: InferenceResult, trace: Trace) -> None:
        assert res.timestep_output_counts[0].sum(axis=1).tolist() == [1, 4, 5, 4]
        # R7.4 fan-outs of the recurrent Conv2d (R1.3: zero weights count): centre 9,
        # edge 6, corner 4; spikes: centre, 4 edges, 4 corners + centre, 4 edges.
        assert res.synops_per_projection[0].tolist() == [9, 9 + 24 + 16 + 9 + 24]
        fifo, _ = run(case, scheduler="fifo")
        assert fifo.timestep_output_counts[0].sum(axis=1).tolist() == [9, 0, 0, 0]
        now, _ = run_carried(case, carried=False)
        assert differs(res, now)

    case = Case(
        "r4_9_recurrent_conv2d_wave",
        ["R4.9", "R1.2", "R5.1", "R7.4"],
        "A recurrent Conv2d (lateral excitation to the four neighbours) under layered: each "
        "ring of the wave fires one timestep after the previous one.",
        net,
        x,
        options={"scheduler": "layered"},
        check=check,
    )
    return case


def case_early_stop_carry_waits() -> Case:
    # in (2): in0 -> r (w 2) -> h (w 2; self w 1.5) -> out (w 2); skip in1 -> out (w 2).
    # layered, stop first_output, extra 0. t0: r fires; h settles at step 1 (2.0), fires;
    # its group gives out 2 (fires at step 2, stop) and carries 1.5 to h. t1: in1 makes
    # out fire at step 0: the timestep stops with h still due and C = 1.5 waiting (R6.4).
    # t2: h settles in the settle-only step 1 and takes C: 1.5 fires. t3 the same.
    # Draining, h settles and fires at t1 already.
    net = Network(
        (2,),
        [pop(1), pop(1), pop(1)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(1, 2, dense([[2.0]])),
            Projection(2, 3, dense([[2.0]])),
            Projection(0, 3, dense([[0.0, 2.0]])),
            Projection(2, 2, dense([[1.5]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert fires(trace, 2) == [(0, 1, 1), (2, 1, 1), (3, 1, 1)], fires(trace, 2)
        assert settles(trace) == [(0, 1, 2), (2, 1, 2), (3, 1, 2)], settles(trace)
        assert res.timestep_forward_steps[0].tolist() == [3, 1, 3, 3]
        drained, tr = run(case, stop="drain")
        assert fires(tr, 2) == [(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 1, 1)], fires(tr, 2)
        assert differs(res, drained)
        _, tr = run_carried(case, carried=False)
        assert fires(tr, 2) == [(0, 1, 1)], fires(tr, 2)

    case = Case(
        "r6_4_early_stop_carried_current_waits",
        ["R6.4", "R4.9", "R4.7", "R6.2"],
        "A timestep ended by an early stop before a recurrent target settled leaves its "
        "carried current waiting: it is added at the target's next settle, a timestep later.",
        net,
        frames([[[1, 0], [0, 1], [0, 0], [0, 0]]]),
        options={"scheduler": "layered", "stop": "first_output", "extra_steps": 0},
        check=check,
    )
    return case


def _recurrent_chain(rng: np.random.Generator) -> Network:
    return Network.sequential(
        (6,),
        [Dense(grid(rng, (5, 6), -64, 288)), Dense(grid(rng, (3, 5), -96, 320))],
        threshold=[1.0, 0.875],
        beta=[0.875, 0.75],
        bias=per_layer(grid(rng, (5,), -32, 64), 0.125),
        reset=["subtract_delayed", "zero"],
        recurrent=[
            (1, 1, Dense(grid(rng, (5, 5), -128, 192))),
            (2, 2, Dense(np.asarray(-np.ones((3, 3)) + np.eye(3), np.float32) * 0.5)),
            (2, 1, Dense(grid(rng, (5, 3), -64, 128))),
        ],
    )


def case_recurrent_bias_delayed(scheduler: str) -> Case:
    # A dense chain whose first population has a bias, reset subtract_delayed and a
    # recurrent projection to itself; the output inhibits itself laterally and projects
    # back to the first population.
    rng = np.random.default_rng(4242)
    net = _recurrent_chain(rng)
    x = counts(np.random.default_rng(17), (3, 6, 6), 0.3)
    x[2, 3:] = 0  # silent frames: the populations still settle, with C and bias

    def check(res: InferenceResult, trace: Trace) -> None:
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()
        assert any(e["neuron"] < 5 for e in events(trace, "fire") if e["t"] >= 3 and e["population"] == 1)
        if scheduler == "layered":
            spikes, outs = layer_synchronous_rec(net, x)
            assert res.spikes.tolist() == spikes.tolist()
            assert res.timestep_output_counts.tolist() == outs.tolist()
        other, _ = run_carried(case, carried=scheduler != "layered")
        assert differs(res, other)

    case = Case(
        f"r4_9_recurrent_bias_subtract_delayed_{scheduler}",
        ["R4.9", "R4.8", "R4.7", "R4.3", "R1.6"] + (["R4.5", "R5.1"] if scheduler == "layered" else ["R5.4"]),
        "A recurrent target with a bias and reset subtract_delayed (self, lateral and backward "
        "projections): it adds bias and carried current when it settles, then pays its debt"
        + (
            "; under layered this is U = beta V + (W s_t + b + R s_{t-1}) - theta d (R4.5)."
            if scheduler == "layered"
            else "; momentum delivers the recurrent currents within the timestep."
        ),
        net,
        x,
        options={"scheduler": scheduler, "forward_group_size": 2},
        check=check,
    )
    return case


def case_random_recurrent(n: int, kind: str, options: dict[str, Any], rules: list[str]) -> Case:
    """Seeded random grid networks with recurrent projections (self, lateral, backward)."""
    rng = np.random.default_rng(5000 + n)
    if kind == "skip_recurrent":
        net = Network.sequential(
            (10,),
            [
                Dense(grid(rng, (8, 10), -96, 288)),
                Dense(grid(rng, (6, 8), -96, 320)),
                Dense(grid(rng, (4, 6), -224, 288)),
            ],
            threshold=[1.0, 0.75, 1.25],
            beta=0.875,
            bias=per_layer(0.0, grid(rng, (6,), -32, 80), 0.0),
            reset=["zero", "subtract", "zero"],
            skips=[(0, 2, Dense(grid(rng, (6, 10), -64, 192))), (1, 3, Dense(grid(rng, (4, 8), -64, 192)))],
            recurrent=[
                (2, 2, Dense(grid(rng, (6, 6), -160, 160))),
                (3, 1, Dense(grid(rng, (8, 4), -64, 160))),
                (3, 3, Dense(grid(rng, (4, 4), -256, 0))),
            ],
            refractory_dropout=[0.0, 0.0, 0.0],
        )
    else:
        conv = Conv2d(grid(rng, (3, 2, 3, 3), -128, 192), stride=1, padding=1)
        s1 = conv.output_shape((2, 6, 6))
        pool = SumPool2d(2)
        s2 = pool.output_shape(s1)
        net = Network.sequential(
            (2, 6, 6),
            [conv, pool, Dense(grid(rng, (4, int(np.prod(s2))), -256, 320))],
            threshold=[1.0, 1.5, 1.0],
            beta=[0.875, 0.75, 0.875],
            recurrent=[(1, 1, Conv2d(grid(rng, (3, 3, 3, 3), -96, 96), stride=1, padding=1))],
        )
    x = counts(np.random.default_rng(6000 + n), (3, 4, net.input_size), 0.3)
    labels = [int(v) for v in rng.integers(0, net.n_outputs, 3)]

    def check(res: InferenceResult, trace: Trace) -> None:
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()
        assert res.output_counts.sum() > 0
        other, _ = run_carried(case, carried=options["scheduler"] != "layered")
        assert differs(res, other)
        if options.get("stop", "drain") != "drain" or options.get("max_steps"):
            assert res.dropped_spikes.sum() > 0

    case = Case(
        f"random_{n}_{kind}_{options['scheduler']}",
        [*rules, "R4.9", "R1.2", "R8.2"],
        f"Seeded random {kind.replace('_', ' ')} network (recurrent projections "
        f"{[(p.source, p.target) for p in net.projections if p.recurrent]}) with integer count "
        f"inputs; options {options}.",
        net,
        x,
        options=options,
        labels=labels,
        check=check,
    )
    return case


def all_cases() -> list[Case]:
    cases = [
        case_exact_threshold(),
        case_two_inputs_sum(),
        case_refractory_discards(),
        case_inhibitory_last_group(),
        case_leak(),
        case_dropout_multiplicity(),
        case_dropped_multiplicity(),
        case_input_dropout(),
        case_input_dropout_sparse(),
        case_spike_dropout(),
        case_spike_dropout_multiplicity(),
        case_scheduler_order("layered", "R5.1"),
        case_scheduler_order("fifo", "R5.2"),
        case_scheduler_order("random", "R5.3", seed=RANDOM_ORDER_SEED),
        case_scheduler_order("momentum", "R5.4"),
        case_fifo_sequence(),
        case_momentum_tie(),
        case_momentum_jitter_rounding_tie(),
        case_momentum_latest_vpre(),
        case_momentum_jitter(),
        case_group_size(1),
        case_group_size(16),
        case_stop("drain"),
        case_stop("drain", max_steps=3),
        case_stop("first_output", extra=0),
        case_stop("first_output", extra=2),
        case_stop("first_output", extra=1, max_steps=4),
        case_stop("max_steps", max_steps=2),
        case_latency_labels(),
        case_conv_padding_stride(),
        case_conv_asymmetric(),
        case_pool("avg"),
        case_pool("sum"),
        case_skip(),
        case_empty(),
        case_sparse_duplicates(),
        case_sample_ids(),
        case_graded_inputs(),
        case_per_neuron_params(),
        case_zero_weight_synapses(),
        case_dead_end(),
        case_prediction_ties(),
        case_stable_decision(),
    ]
    random_specs: list[tuple[str, dict[str, Any], list[str]]] = [
        ("dense", {"scheduler": "layered"}, ["R4.5", "R5.1"]),
        (
            "dense",
            {"scheduler": "fifo", "forward_group_size": 2, "refractory_dropout": "network", "seed": 9},
            ["R5.2", "R4.6"],
        ),
        ("skip", {"scheduler": "random", "forward_group_size": 3, "seed": 2**64 - 1}, ["R5.3", "R5.5"]),
        (
            "skip",
            {
                "scheduler": "momentum",
                "forward_group_size": 2,
                "jitter": 0.5,
                "seed": 77,
                "stop": "first_output",
                "extra_steps": 1,
            },
            ["R5.4", "R6.2"],
        ),
        (
            "conv_avg",
            {"scheduler": "momentum", "forward_group_size": 12, "stop": "max_steps", "max_steps": 6},
            ["R1.2", "R6.3"],
        ),
        (
            "conv_sum",
            {"scheduler": "fifo", "forward_group_size": 1, "refractory_dropout": 0.25, "seed": 123456789012345},
            ["R1.2", "R4.6", "R5.2"],
        ),
        (
            "conv_sum",
            {"scheduler": "random", "forward_group_size": 8, "stop": "first_output", "max_steps": 6, "seed": 4},
            ["R5.3", "R6.2", "R6.3"],
        ),
        (
            "dense",
            {
                "scheduler": "momentum",
                "forward_group_size": 1,
                "refractory_dropout": 0.5,
                "seed": 31,
                "stop": "drain",
                "max_steps": 12,
            },
            ["R5.4", "R4.6", "R6.3"],
        ),
    ]
    for n, (kind, opts, rules) in enumerate(random_specs):
        cases.append(case_random_network(n, kind, opts, rules))
    # SPEC_VERSION 2: bias, reset modes and settling populations (R1.6, R4.7, R4.8).
    cases += [
        case_bias_settles_with_first_delivery(),
        case_settle_only_steps(),
        case_layered_every_population(),
        case_reset_subtract(),
        case_reset_subtract_delayed(),
        case_reset_none(),
        case_early_stop_unsettled(),
        case_async_bias("fifo"),
        case_async_bias("momentum"),
    ]
    settling_specs: list[tuple[str, dict[str, Any], list[str]]] = [
        (
            "dense_settling",
            {"scheduler": "fifo", "forward_group_size": 2, "refractory_dropout": "network", "seed": 5},
            ["R5.2", "R4.6"],
        ),
        (
            "skip_settling",
            {"scheduler": "momentum", "forward_group_size": 2, "jitter": 0.25, "seed": 8, "stop": "first_output"},
            ["R5.4", "R6.2", "R6.4"],
        ),
        (
            "conv_settling",
            {"scheduler": "random", "forward_group_size": 6, "seed": 11, "max_steps": 7},
            ["R5.3", "R6.3"],
        ),
    ]
    for n, (kind, opts, rules) in enumerate(settling_specs, start=len(random_specs)):
        cases.append(case_random_settling(n, kind, opts, rules))
    # R4.9: recurrent projections (self, lateral, backward), carried under layered.
    cases += [
        case_layered_self_recurrence(),
        case_lateral_inhibition("fifo", "R5.2"),
        case_lateral_inhibition("momentum", "R5.4"),
        case_lateral_inhibition("random", "R5.3", seed=LATERAL_RANDOM_SEED),
        case_backward("layered"),
        case_backward("fifo"),
        case_layered_carry_into_due_population(),
        case_recurrent_conv(),
        case_early_stop_carry_waits(),
        case_recurrent_bias_delayed("layered"),
        case_recurrent_bias_delayed("momentum"),
    ]
    recurrent_specs: list[tuple[str, dict[str, Any], list[str]]] = [
        ("skip_recurrent", {"scheduler": "layered"}, ["R5.1"]),
        (
            "skip_recurrent",
            {"scheduler": "random", "forward_group_size": 3, "seed": 21, "stop": "first_output", "extra_steps": 2},
            ["R5.3", "R6.2"],
        ),
        ("conv_recurrent", {"scheduler": "layered"}, ["R5.1"]),
        ("conv_recurrent", {"scheduler": "fifo", "forward_group_size": 4}, ["R5.2"]),
    ]
    start = len(random_specs) + len(settling_specs)
    for n, (kind, opts, rules) in enumerate(recurrent_specs, start=start):
        cases.append(case_random_recurrent(n, kind, opts, rules))
    # R4.12: synaptic currents.
    cases += [
        case_layered_synaptic(),
        case_late_delivery_charges("fifo"),
        case_late_delivery_charges("momentum"),
        case_refractory_charges(),
        case_per_neuron_alpha(),
        case_early_stop_keeps_s(),
        case_recurrent_synaptic("layered"),
        case_recurrent_synaptic("momentum"),
    ]
    synaptic_specs: list[tuple[str, dict[str, Any], list[str]]] = [
        ("skip_synaptic", {"scheduler": "fifo", "forward_group_size": 2}, ["R5.2"]),
        ("conv_synaptic", {"scheduler": "momentum", "forward_group_size": 4, "jitter": 0.25, "seed": 3}, ["R5.4"]),
    ]
    start += len(recurrent_specs)
    for n, (kind, opts, rules) in enumerate(synaptic_specs, start=start):
        cases.append(case_random_synaptic(n, kind, opts, rules))
    # R4.13: non-prioritised input.
    start += len(synaptic_specs)
    cases.append(
        case_random_recurrent(
            start,
            "skip_recurrent",
            {"scheduler": "random", "forward_group_size": 2, "seed": 7, "prioritize_input": False},
            ["R4.13", "R5.3"],
        )
    )
    cases.append(
        case_random_synaptic(
            start + 1,
            "conv_synaptic",
            {"scheduler": "fifo", "forward_group_size": 3, "prioritize_input": False},
            ["R4.13", "R5.2"],
        )
    )
    cases += [
        case_input_queue_fifo(),
        case_input_queue_random(),
        case_input_queue_layered(),
        case_input_queue_early_stop(),
    ]
    return cases


# ----------------------------------------------------------------------------- R4.13
def _input_queue_weights() -> tuple[np.ndarray, np.ndarray]:
    w1 = np.full((3, 4), 0.5, dtype=np.float32)
    w1[2] = [0.75, 0.0, 0.0, 0.75]
    w2 = np.array([[0.75, 0.75, 0.0], [0.0, 0.75, 0.75]], dtype=np.float32)
    return w1, w2


def _input_queue_net() -> Network:
    """in (4) -> h (3, threshold 1, beta 0.5) -> out (2, threshold 1, beta 0.5).

    h's first two neurons take 0.5 from every input, so they need three inputs of a
    frame; the third takes 0.75 from inputs 0 and 3. The order of delivery decides when
    h fires; out (w 0.75) needs two of h.
    """
    w1, w2 = _input_queue_weights()
    return Network(
        (4,), [pop(3, 1.0, 0.5), pop(2, 1.0, 0.5)], [Projection(0, 1, dense(w1)), Projection(1, 2, dense(w2))]
    )


INPUT_QUEUE_FRAMES = frames(
    [[[1, 1, 1, 1], [0, 2, 0, 1], [0, 0, 0, 0], [1, 0, 1, 1]]], [[[2, 0, 0, 2], [1, 1, 1, 1]] * 2]
)


def _input_deliveries(trace: Trace, sample: int) -> list[tuple[int, int, int]]:
    """``(t, k, input index)`` of every input entry delivered (R4.13) in ``sample``."""
    return [(e["t"], e["k"], e["neuron"]) for e in events(trace, "deliver_input", sample)]


def case_input_queue_fifo() -> Case:
    # fifo, F = 1: the inputs of a frame take the first sequence numbers, so they are
    # delivered one per step in index order before any spike; h fires on part of the
    # frame (after its second input at step 2 in t0), before the rest of it arrives.
    def check(res: InferenceResult, trace: Trace) -> None:
        base, base_trace = run(case, prioritize_input=True)
        x = INPUT_QUEUE_FRAMES
        for b in range(x.shape[0]):
            got = _input_deliveries(trace, b)
            nz = [(t, int(i)) for t in range(x.shape[1]) for i in np.flatnonzero(x[b, t])]
            assert [(t, i) for t, _, i in got] == nz, got  # every input delivered, in index order
            for t in range(x.shape[1]):
                ks = [k for tt, k, _ in got if tt == t]
                assert ks == list(range(len(ks))), ks  # one per step from step 0, before any spike
            assert not events(trace, "settle", b)
        # h fires in step 3 of t0, while the last input of the frame is still pending (it is
        # selected at the end of that step): on part of the frame.
        first_h = min(k for t, k, _ in fires(trace, 1) if t == 0)
        assert first_h <= max(k for t, k, _ in _input_deliveries(trace, 0) if t == 0), first_h
        assert (res.input_events == base.input_events).all()
        assert differs(res, base)
        assert (res.forward_steps > base.forward_steps).all()
        assert res.queue_peak[0] >= 4  # the four pending inputs of t0 count (R7.6)
        assert not _input_deliveries(base_trace, 0)

    case = Case(
        "r4_13_input_queue_fifo",
        ["R4.13", "R2.3", "R5.2", "R3.2", "R7.3", "R7.6", "R7.10"],
        "prioritize_input = false, fifo, F = 1: the non-zero inputs of a frame enter the pending set "
        "in index order with the first sequence numbers and are delivered one per forward step "
        "before any spike; neurons fire on part of the frame.",
        _input_queue_net(),
        INPUT_QUEUE_FRAMES,
        options={"scheduler": "fifo", "forward_group_size": 1, "prioritize_input": False},
        check=check,
    )
    return case


def case_input_queue_random() -> Case:
    seed, f = 3, 2

    def check(res: InferenceResult, trace: Trace) -> None:
        mixed = False
        for b, tr in enumerate(trace):
            for e in (e for e in tr if e["event"] == "select"):
                t, k = e["t"], e["k"]
                # R4.13 / R5.3: the F smallest keys, inputs keyed by stream 5, neurons by stream 0.
                keyed = [(hash32(seed, b, t, k, i, STREAM_RANDOM_INPUT), 0, i) for i in e.get("pending_inputs", {})]
                keyed += [(hash32(seed, b, t, k, j, STREAM_RANDOM), 1, j) for j in e["pending"]]
                want = [f"{'input' if kind == 0 else 'neuron'} {j}" for _, kind, j in sorted(keyed)[:f]]
                group = e["group"] if "pending_inputs" in e else [f"neuron {j}" for j in e["group"]]
                assert group == want, (e, want)
                kinds = {g.split()[0] for g in group}
                mixed |= kinds == {"input", "neuron"}
        assert mixed, "no group mixed an input entry and a spike"
        # Input dropout is drawn at the enqueue, as with prioritised input (R4.10).
        kept = [(e["t"], e["neuron"]) for e in events(trace, "input", 0)]
        assert kept == [(e[0], e[2]) for e in _input_deliveries(trace, 0)]
        assert res.input_events.sum() < np.count_nonzero(INPUT_QUEUE_FRAMES)
        base, _ = run(case, prioritize_input=True)
        assert differs(res, base)
        assert (res.input_events == base.input_events).all()

    case = Case(
        "r4_13_input_queue_random",
        ["R4.13", "R5.3", "R5.5", "R4.10"],
        "prioritize_input = false, random, F = 2, input dropout 0.25: an input entry i is keyed "
        "h(seed, sample, t, k, i, 5) and competes with the pending spikes (keys of stream 0) for "
        "the F slots; groups mix inputs and spikes.",
        _input_queue_net(),
        INPUT_QUEUE_FRAMES,
        options={
            "scheduler": "random",
            "forward_group_size": f,
            "seed": seed,
            "input_dropout": 0.25,
            "prioritize_input": False,
        },
        check=check,
    )
    return case


def case_input_queue_layered() -> Case:
    # layered: the inputs are population 0, one group delivered at the end of step 0. The
    # spikes are those of prioritised input, each timestep one step longer when its frame
    # has a non-zero value; a settling population fed by the input (bias, subtract
    # reset) settles with that group at step 1, and in a silent frame in a settle-only step.
    net = Network(
        (4,),
        [spop(3, 1.0, 0.5, bias=0.125, reset="subtract"), pop(2, 1.0, 0.5)],
        [Projection(0, 1, dense(_input_queue_weights()[0])), Projection(1, 2, dense(_input_queue_weights()[1]))],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        base, _ = run(case, prioritize_input=True)
        for name in ("spikes", "output_counts", "timestep_output_counts", "synops", "input_events", "timestep_spikes"):
            assert np.array_equal(getattr(res, name), getattr(base, name)), name
        silent = ~INPUT_QUEUE_FRAMES.any(axis=2)
        # One step more per timestep: the input group's, or (silent frame) h's settle-only step.
        want = base.timestep_forward_steps + 1
        assert np.array_equal(res.timestep_forward_steps, want), (res.timestep_forward_steps, want)
        assert silent.any()
        for b in range(INPUT_QUEUE_FRAMES.shape[0]):
            for t in range(INPUT_QUEUE_FRAMES.shape[1]):
                ks = {k for tt, k, _ in _input_deliveries(trace, b) if tt == t}
                assert ks == (set() if silent[b, t] else {0})  # one group at the end of step 0
                # h settles at step 1: with the input group, or in a settle-only step.
                assert (t, 1, 1) in settles(trace, b)
        assert [(e["t"], e["k"]) for e in events(trace, "settle_only", 0)][:1] == [(2, 0)]

    case = Case(
        "r4_13_input_queue_layered",
        ["R4.13", "R5.1", "R4.5", "R4.7"],
        "prioritize_input = false, layered: the inputs are population 0 and form the group "
        "selected at the end of step 0; a population fed by the input settles with it at "
        "step 1 (in a settle-only step when the frame is silent); the spikes equal those of "
        "prioritised input, one forward step later.",
        net,
        INPUT_QUEUE_FRAMES,
        options={"scheduler": "layered", "prioritize_input": False},
        check=check,
    )
    return case


def case_input_queue_early_stop() -> Case:
    # fifo, F = 1, max_steps = 3: a frame of four inputs cannot be delivered in the two
    # groups the timestep has; the pending inputs are dropped at the stop and are not
    # counted in dropped_spikes, but stay counted in input_events.
    def check(res: InferenceResult, trace: Trace) -> None:
        stops = events(trace, "stop", 0)
        assert any(e["dropped_inputs"] > 0 for e in stops), stops
        assert res.dropped_spikes[0] == sum(e["dropped"] for e in stops)
        delivered = len(_input_deliveries(trace, 0))
        assert res.input_events[0] == int(np.count_nonzero(INPUT_QUEUE_FRAMES[0])) > delivered
        base, _ = run(case, prioritize_input=True)
        assert differs(res, base)

    case = Case(
        "r4_13_input_queue_early_stop",
        ["R4.13", "R6.3", "R6.4", "R7.3", "R7.6"],
        "prioritize_input = false with max_steps = 3: an early stop drops the pending input "
        "entries with the spikes; they are not spikes (not in dropped_spikes) and stay counted "
        "in input_events.",
        _input_queue_net(),
        INPUT_QUEUE_FRAMES[:1],
        options={"scheduler": "fifo", "forward_group_size": 1, "max_steps": 3, "prioritize_input": False},
        check=check,
    )
    return case


# ----------------------------------------------------------------------------- R4.12
def sypop(
    shape: Any, threshold: Any = 1.0, beta: Any = 1.0, alpha: Any = 0.5, bias: Any = 0.0, reset: str = "zero"
) -> Population:
    """A population with a synaptic current (R4.12): decay ``alpha``, a bias and a reset mode."""
    shp = shape if isinstance(shape, tuple) else (shape,)
    return Population.create(shp, threshold, beta, bias=bias, reset=reset, alpha=alpha)


def without_alpha(net: Network) -> Network:
    """``net`` with every ``alpha`` 0: the same network of LIF neurons (the contrast of R4.12)."""
    pops = [
        Population.create(p.shape, p.threshold, p.beta, p.refractory_dropout, bias=p.bias, reset=p.reset)
        for p in net.populations
    ]
    return Network(net.input_shape, pops, list(net.projections))


@contextlib.contextmanager
def uncharged(refractory_only: bool) -> Iterator[None]:
    """Run the reference with deliveries after the settle not charging ``S`` (R4.12).

    With ``refractory_only`` only the charge of refractory neurons is dropped. The
    contrast a check uses to show that R4.12's charge outside the settle decides its case.
    """
    saved = reference.integrate_fire

    def integrate_fire(s: Any, t: int, k: int) -> list[int]:
        keep = np.ones(s.model.n_neurons, dtype=bool)
        for p in s.settle_now:
            keep[s.model.neurons(p)] = False
        if refractory_only:
            keep &= s.refractory
        before = s.syn.copy()
        out = saved(s, t, k)
        s.syn[keep] = before[keep]
        return out

    reference.integrate_fire = integrate_fire
    try:
        yield
    finally:
        reference.integrate_fire = saved


@contextlib.contextmanager
def decay_unsettled() -> Iterator[None]:
    """Run the reference with ``S`` of a population left due by an early stop decaying anyway.

    The contrast of R4.7 / R4.12: a synaptic current decays only when its population settles.
    """
    saved = reference.end_timestep

    def end_timestep(s: Any, t: int, k: int) -> None:
        for p in range(1, s.model.n_populations + 1):
            if s.due[p]:
                nrn = s.model.neurons(p)
                s.syn[nrn] = (s.model.alpha[nrn] * s.syn[nrn]).astype(np.float32)
        saved(s, t, k)

    reference.end_timestep = end_timestep
    try:
        yield
    finally:
        reference.end_timestep = saved


def layer_synchronous_syn(net: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R4.5 / R4.12 on a dense chain, optionally with dense recurrent projections.

    snnTorch's ``Synaptic`` / ``RSynaptic`` in float32: ``S = alpha S + (W s_t + b + R s_{t-1})``
    (multiply, then add), ``U = beta V + S - theta d``, ``s = H(U - theta)``, ``V`` per reset
    mode. Returns spikes ``[B, P]`` and output spikes ``[B, T, n_out]``.
    """
    pops = net.populations
    forward = [p for p in net.projections if not p.recurrent]
    recurrent = [p for p in net.projections if p.recurrent]
    assert [(p.source, p.target) for p in forward] == [(n, n + 1) for n in range(len(pops))]
    spikes = np.zeros((x.shape[0], len(pops)), dtype=np.int64)
    outs = np.zeros((x.shape[0], x.shape[1], net.n_outputs), dtype=np.int64)
    for b in range(x.shape[0]):
        v = [np.zeros(p.size, np.float32) for p in pops]
        d = [np.zeros(p.size, np.float32) for p in pops]
        syn = [np.zeros(p.size, np.float32) for p in pops]
        prev = [np.zeros(p.size, np.float32) for p in pops]
        for t in range(x.shape[1]):
            s = x[b, t].astype(np.float32)
            now: list[np.ndarray] = []
            for n, (p, proj) in enumerate(zip(pops, forward, strict=True)):
                th = p.threshold.reshape(-1)
                cur = ((proj.layer.weight @ s).astype(np.float32) + p.bias.reshape(-1)).astype(np.float32)  # type: ignore[union-attr]
                for r in recurrent:
                    if r.target == n + 1:
                        cur = (cur + (r.layer.weight @ prev[r.source - 1]).astype(np.float32)).astype(np.float32)  # type: ignore[union-attr]
                decayed = (p.alpha.reshape(-1) * syn[n]).astype(np.float32)  # type: ignore[union-attr]
                syn[n] = (decayed + cur).astype(np.float32)
                u = ((p.beta.reshape(-1) * v[n]).astype(np.float32) + syn[n]).astype(np.float32)
                u = (u - th * d[n]).astype(np.float32)
                s = (u > th).astype(np.float32)
                v[n] = {"zero": u * (1 - s), "subtract": u - th * s}.get(p.reset, u).astype(np.float32)
                d[n] = s if p.reset == "subtract_delayed" else 0 * s
                spikes[b, n] += int(s.sum())
                now.append(s)
            prev = now
            outs[b, t] = s.astype(np.int64)
    return spikes, outs


def case_layered_synaptic() -> Case:
    # A dense chain of synaptic populations (alpha per layer, one per neuron with zeros;
    # biases; every reset mode): under layered each settles once per timestep and the
    # result is snnTorch's Synaptic written out in float32 (layer_synchronous_syn).
    rng = np.random.default_rng(4112)
    net = Network.sequential(
        (6,),
        [
            Dense(grid(rng, (5, 6), -64, 224)),
            Dense(grid(rng, (5, 5), -96, 256)),
            Dense(grid(rng, (3, 5), -96, 288)),
        ],
        threshold=[1.0, 0.75, 1.25],
        beta=[0.875, 0.75, 0.9375],
        bias=per_layer(0.0, 0.0625, np.asarray([0.125, 0.0, -0.0625], np.float32)),
        reset=["zero", "subtract_delayed", "subtract"],
        alpha=per_layer(0.5, np.asarray([0.0, 0.25, 0.75, 0.0, 0.875], np.float32), 0.875),
    )
    x = counts(np.random.default_rng(11), (3, 8, 6), 0.25)
    x[2, 3:] = 0  # the synaptic currents keep driving the membranes after the input stops

    def check(res: InferenceResult, trace: Trace) -> None:
        spikes, outs = layer_synchronous_syn(net, x)
        assert res.spikes.tolist() == spikes.tolist()
        assert res.timestep_output_counts.tolist() == outs.tolist()
        lif, _ = run(Case("", [], "", without_alpha(net), x, case.options))
        assert differs(res, lif)
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()

    case = Case(
        "r4_12_layered_is_snntorch_synaptic",
        ["R4.12", "R4.5", "R4.7", "R5.1", "R4.8"],
        "Under layered a chain of synaptic populations (alpha per layer and per neuron, some 0; "
        "biases; reset modes) is snnTorch's Synaptic in float32: S = alpha S + (W s + b), "
        "U = beta V + S - theta d; the result differs from the same network with alpha 0.",
        net,
        x,
        options={"scheduler": "layered"},
        check=check,
    )
    return case


def case_late_delivery_charges(scheduler: str) -> Case:
    # in (2) -> relays (w [2, 3]) -> out (alpha 0.5, beta 0.5, threshold 1), F = 1; out's
    # weights put 0.5 on the relay each scheduler delivers first (fifo: relay 0; momentum:
    # relay 1, the larger v_pre) and 0.25 on the other. t0: out settles at step 1 with
    # 0.5 (S = V = 0.5); step 2 delivers 0.25 after the settle: S = V = 0.75. t1 (silent):
    # a settle-only step, S = 0.375, V = 0.375 + 0.375 = 0.75. t2: S = 0.6875 and
    # V = 1.0625 at step 1: spike. Were the late 0.25 not charged into S, out would fire
    # only at step 2 of t2.
    w = [[0.5, 0.25]] if scheduler == "fifo" else [[0.25, 0.5]]
    r, rp = relays(2, [2.0, 3.0])
    net = Network((2,), [r, sypop(1, beta=0.5, alpha=0.5)], [rp, Projection(1, 2, dense(w))])

    def check(res: InferenceResult, trace: Trace) -> None:
        assert settles(trace) == [(0, 1, 2), (1, 1, 2), (2, 1, 2)], settles(trace)
        assert fires(trace, 2) == [(2, 1, 2)], fires(trace, 2)
        with uncharged(refractory_only=False):
            other, tr = run(case)
        assert fires(tr, 2) == [(2, 2, 2)], fires(tr, 2)
        assert differs(res, other)

    case = Case(
        f"r4_12_{scheduler}_late_delivery_charges_s_and_v",
        ["R4.12", "R4.7", "R4.3", "R5.2" if scheduler == "fifo" else "R5.4"],
        "A delivery after its population settled (the second group with F = 1) adds to the "
        "membrane and charges the synaptic current, which brings it again, decayed, at the "
        "next settles (a settle-only step here).",
        net,
        frames([[[1, 1], [0, 0], [1, 1]]]),
        options={"scheduler": scheduler, "forward_group_size": 1},
        check=check,
    )
    return case


def case_refractory_charges() -> Case:
    # in (2) -> relays (w 2) -> out (alpha 0.5, beta 0, threshold 0.875, w [1.5, 0.5]);
    # fifo F = 1. t0: out settles at step 1 with 1.5: spike (the spike leaves S = 1.5).
    # Relay 1's 0.5 at step 2 is discarded by the refractory membrane but charges
    # S = 2.0. t1 (silent): the settle-only step gives S = 1.0, V = 1.0 > 0.875: spike.
    # Without the refractory charge S would be 0.75 and out silent. t2: S = 0.5.
    r, rp = relays(2)
    net = Network(
        (2,), [r, sypop(1, threshold=0.875, beta=0.0, alpha=0.5)], [rp, Projection(1, 2, dense([[1.5, 0.5]]))]
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert fires(trace, 2) == [(0, 1, 2), (1, 1, 2)], fires(trace, 2)
        assert [e["v"] for e in events(trace, "fire") if e["population"] == 2] == [1.5, 1.0]
        assert [(e["t"], e["k"], e["neurons"]) for e in events(trace, "discard")] == [(0, 2, [2])]
        with uncharged(refractory_only=True):
            other, tr = run(case)
        assert fires(tr, 2) == [(0, 1, 2)], fires(tr, 2)
        assert differs(res, other)

    case = Case(
        "r4_12_refractory_neuron_charges_s",
        ["R4.12", "R4.6", "R4.8", "R4.3"],
        "A refractory neuron discards a delivery from its membrane but its synaptic current is "
        "charged (a spike never resets S): the charge reaches the membrane, decayed, at the next "
        "timestep's settle and makes it fire.",
        net,
        frames([[[1, 1], [0, 0], [0, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1},
        check=check,
    )
    return case


def case_per_neuron_alpha() -> Case:
    # One synaptic population with alpha per neuron, two of them 0: those two are LIF
    # neurons (they spike as in the same network without synaptic currents), the others
    # keep integrating their decaying synaptic current.
    rng = np.random.default_rng(412)
    alpha = np.asarray([0.0, 0.25, 0.5, 0.0, 0.75, 0.875], np.float32)
    net = Network(
        (4,),
        [sypop(6, threshold=1.0, beta=0.75, alpha=alpha, reset="subtract")],
        [Projection(0, 1, dense(grid(rng, (6, 4), -32, 160)))],
    )
    x = counts(np.random.default_rng(5), (2, 8, 4), 0.3)

    def check(res: InferenceResult, trace: Trace) -> None:
        lif, _ = run(Case("", [], "", without_alpha(net), x, case.options))
        zero = alpha == 0
        assert res.output_counts[:, zero].tolist() == lif.output_counts[:, zero].tolist()
        assert res.output_counts[:, ~zero].tolist() != lif.output_counts[:, ~zero].tolist()
        assert res.output_counts[:, zero].sum() > 0
        assert differs(res, lif)

    case = Case(
        "r4_12_per_neuron_alpha_with_zeros",
        ["R4.12", "R1.4", "R1.6"],
        "alpha per neuron: a neuron with alpha 0 in a synaptic population is a LIF neuron (its "
        "spikes are those of the network without synaptic currents); the others are not.",
        net,
        x,
        options={"scheduler": "momentum", "forward_group_size": 2},
        check=check,
    )
    return case


def case_early_stop_keeps_s() -> Case:
    # in0 -> relay (w 2) -> h (alpha 0.5, beta 1, w 0.75) -> out (w 2); in1 -> out (w 2).
    # fifo F = 1, stop first_output, extra 0. t0: h settles at step 1, S = V = 0.75.
    # t1: in1 makes out fire at step 0 and the timestep stops with h still due: S does
    # not decay. t2: the settle-only step gives S = 0.375, V = 1.125: spike. Had S decayed
    # in t1, h would reach 0.9375 at t2 and fire only at t3.
    net = Network(
        (2,),
        [pop(1), sypop(1, alpha=0.5), pop(1)],
        [
            Projection(0, 1, dense([[2.0, 0.0]])),
            Projection(0, 3, dense([[0.0, 2.0]])),
            Projection(1, 2, dense([[0.75]])),
            Projection(2, 3, dense([[2.0]])),
        ],
    )

    def check(res: InferenceResult, trace: Trace) -> None:
        assert settles(trace) == [(0, 1, 2), (2, 1, 2), (3, 1, 2)], settles(trace)
        assert fires(trace, 2) == [(2, 1, 1)], fires(trace, 2)
        with decay_unsettled():
            other, tr = run(case)
        assert fires(tr, 2) == [(3, 1, 1)], fires(tr, 2)
        assert differs(res, other)

    case = Case(
        "r4_12_early_stop_skips_decay",
        ["R4.12", "R6.4", "R4.7", "R6.2"],
        "A synaptic current decays only when its population settles: a timestep ended by an "
        "early stop before the settle leaves S as it was.",
        net,
        frames([[[1, 0], [0, 1], [0, 0], [0, 0]]]),
        options={"scheduler": "fifo", "forward_group_size": 1, "stop": "first_output", "extra_steps": 0},
        check=check,
    )
    return case


def case_recurrent_synaptic(scheduler: str) -> Case:
    # A dense chain of synaptic populations with a self-recurrent hidden layer and a
    # backward projection. Under layered it is snnTorch's RSynaptic (the recurrent
    # currents carried into the next timestep's S); under momentum the recurrent
    # currents arrive in the timestep and, after the settle, charge S and V.
    rng = np.random.default_rng(4129)
    net = Network.sequential(
        (5,),
        [Dense(grid(rng, (6, 5), -64, 256)), Dense(grid(rng, (4, 6), -96, 288)), Dense(grid(rng, (3, 4), -64, 320))],
        threshold=[1.0, 1.0, 1.25],
        beta=[0.875, 0.75, 0.875],
        alpha=per_layer(0.75, np.asarray([0.5, 0.0, 0.875, 0.25], np.float32), 0.5),
        reset=["subtract", "zero", "subtract_delayed"],
        recurrent=[(1, 1, Dense(grid(rng, (6, 6), -128, 96))), (2, 1, Dense(grid(rng, (6, 4), -64, 128)))],
    )
    x = counts(np.random.default_rng(13), (2, 8, 5), 0.3)

    def check(res: InferenceResult, trace: Trace) -> None:
        if scheduler == "layered":
            spikes, outs = layer_synchronous_syn(net, x)
            assert res.spikes.tolist() == spikes.tolist()
            assert res.timestep_output_counts.tolist() == outs.tolist()
        lif, _ = run(Case("", [], "", without_alpha(net), x, case.options))
        assert differs(res, lif)
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()

    case = Case(
        f"r4_12_recurrent_synaptic_{scheduler}",
        ["R4.12", "R4.9", "R1.2"] + (["R4.5", "R5.1"] if scheduler == "layered" else ["R5.4"]),
        "Synaptic populations with self-recurrent and backward projections: "
        + (
            "under layered snnTorch's RSynaptic, S = alpha S + (W s_t + R s_{t-1})."
            if scheduler == "layered"
            else "under momentum the recurrent currents arrive in the timestep and charge S and V."
        ),
        net,
        x,
        options={"scheduler": scheduler, "forward_group_size": 3},
        check=check,
    )
    return case


def case_random_synaptic(n: int, kind: str, options: dict[str, Any], rules: list[str]) -> Case:
    """Seeded random grid networks with synaptic currents (R4.12), skips or conv."""
    rng = np.random.default_rng(5000 + n)
    if kind == "skip_synaptic":
        net = Network.sequential(
            (10,),
            [
                Dense(grid(rng, (8, 10), -96, 160)),
                Dense(grid(rng, (6, 8), -128, 160)),
                Dense(grid(rng, (4, 6), -192, 192)),
            ],
            threshold=[1.5, 1.25, 1.5],
            beta=[0.875, 0.9375, 0.75],
            alpha=per_layer(0.5, np.where(rng.random(6) < 0.3, 0.0, 0.5).astype(np.float32), 0.25),
            reset=["zero", "subtract", "subtract_delayed"],
            skips=[(0, 2, Dense(grid(rng, (6, 10), -64, 96))), (1, 3, Dense(grid(rng, (4, 8), -64, 96)))],
        )
    else:
        conv = Conv2d(grid(rng, (3, 2, 3, 3), -128, 96), stride=1, padding=1)
        s1 = conv.output_shape((2, 6, 6))
        net = Network.sequential(
            (2, 6, 6),
            [conv, Dense(grid(rng, (4, int(np.prod(s1))), -48, 72))],
            threshold=[1.5, 1.5],
            beta=[0.875, 0.75],
            alpha=per_layer(np.where(rng.random(s1) < 0.25, 0.0, 0.5).astype(np.float32), 0.5),
            reset=["subtract", "zero"],
            skips=[(0, 2, Dense(grid(rng, (4, 72), -32, 32)))],
        )
    x = counts(np.random.default_rng(6000 + n), (3, 5, net.input_size), 0.3)
    labels = [int(v) for v in rng.integers(0, net.n_outputs, 3)]

    def check(res: InferenceResult, trace: Trace) -> None:
        assert (res.spikes.sum(axis=0) > 0).all(), res.spikes.tolist()
        assert res.output_counts.sum() > 0
        with uncharged(refractory_only=False):
            other, _ = run(case)
        assert differs(res, other)
        lif, _ = run(Case("", [], "", without_alpha(net), x, case.options))
        assert differs(res, lif)

    case = Case(
        f"random_{n}_{kind}_{options['scheduler']}",
        [*rules, "R4.12", "R4.7", "R8.2"],
        f"Seeded random {kind.replace('_', ' ')} network (alpha per layer or per neuron, reset modes "
        f"{', '.join(p.reset for p in net.populations)}) with integer count inputs; options {options}.",
        net,
        x,
        options=options,
        labels=labels,
        check=check,
    )
    return case


# ----------------------------------------------------------------------------- output
def _nested(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def case_to_json(case: Case) -> dict[str, Any]:
    res, trace = run(case)
    if case.check is not None:
        try:
            case.check(res, trace)
        except AssertionError as exc:
            raise AssertionError(f"golden case {case.name}: its check failed: {exc}") from exc
    if isinstance(case.inputs, list):
        inputs: dict[str, Any] = {
            "sparse": [[[int(t), int(i), float(v)] for t, i, v in ev] for ev in case.inputs],
            "timesteps": case.timesteps if case.timesteps is not None else res.timestep_forward_steps.shape[1],
        }
    else:
        arr = np.asarray(case.inputs, dtype=np.float32)
        inputs = {"dense": arr.reshape(arr.shape[0], arr.shape[1], -1).astype(np.float64).tolist()}
    opts = case.full_options()
    opts["jitter"] = float(opts["jitter"])
    # The lowest version that runs the network: version-1 files stay byte-identical.
    assert 1 <= case.network.spec_version <= SPEC_VERSION
    return {
        "spec_version": case.network.spec_version,
        "generator_version": GENERATOR_VERSION,
        "name": case.name,
        "rules": case.rules,
        "description": case.description,
        "network": network_to_dict(case.network),
        "inputs": inputs,
        "labels": case.labels,
        "sample_ids": case.sample_ids,
        "options": opts,
        "expected": {name: _nested(getattr(res, name)) for name in COUNTER_FIELDS},
    }


def dumps(obj: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys; top-level and ``expected`` one entry per line."""

    def compact(v: Any) -> str:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), allow_nan=False)

    lines = []
    for key in sorted(obj):
        val = obj[key]
        if key in ("expected", "options", "network") and isinstance(val, dict):
            inner = ",\n".join(f"  {json.dumps(k)}: {compact(val[k])}" for k in sorted(val))
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {compact(val)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def generate() -> dict[str, str]:
    """File name -> content for every golden case."""
    out: dict[str, str] = {}
    for case in all_cases():
        text = dumps(case_to_json(case))
        fname = f"{case.name}.json"
        assert fname not in out, f"duplicate case name {case.name}"
        assert len(text.encode()) < MAX_FILE_BYTES, f"{fname} is too large ({len(text)} bytes)"
        out[fname] = text
    total = sum(len(t.encode()) for t in out.values())
    assert total < MAX_DIR_BYTES, f"golden directory too large ({total} bytes)"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with tests/golden/ instead of writing")
    args = parser.parse_args(argv)
    files = generate()
    existing = {p.name: p for p in GOLDEN.glob("*.json")}
    if args.check:
        bad = sorted(
            [name for name, text in files.items() if name not in existing or existing[name].read_text() != text]
            + [name for name in existing if name not in files]
        )
        if bad:
            print("golden vectors differ from the reference engine's output (run tests/golden/generate.py):")
            for name in bad:
                state = "missing" if name not in existing else ("stale file" if name not in files else "differs")
                print(f"  {name} ({state})")
            return 1
        print(f"{len(files)} golden vectors up to date")
        return 0
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, path in existing.items():
        if name not in files:
            path.unlink()
    for name, text in files.items():
        (GOLDEN / name).write_text(text)
    print(f"wrote {len(files)} golden vectors to {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

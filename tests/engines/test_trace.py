"""The event trace of R7.10: the Rust engine records what the reference engine records.

Hypothesis draws the networks and options of the differential tests; the traces of the
two engines must be equal event for event, the results must be those of the untraced
run, and the events must agree with the counters of R7 (one input event per non-zero
input, one spike event per spike, every enqueued spike delivered once unless an early
stop drops it). Then the file formats (CSV, Parquet: exact round trips, written whole or
not at all), bad columns, and the raster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import asyncsnn
import asyncsnn.reference
from _strategies import engine_cases
from asyncsnn.exceptions import InputError, MissingDependencyError, ParameterError
from asyncsnn.rng import STREAM_SPIKE_DROPOUT, uniform
from asyncsnn.testing import assert_results_equal
from asyncsnn.trace import COLUMNS, Trace, draw_raster


def _kept_spikes(res: asyncsnn.InferenceResult, net: asyncsnn.Network, b: int, sources: set[int]) -> int:
    """The spikes of sample ``b`` that enter the pending set: those of a source population
    that spike dropout keeps (R4.11: ``u(seed, sample, t, k, q, 4) >= p``, ``q`` the global id)."""
    tr = res.trace
    assert tr is not None
    p_drop = float(res.options["spike_dropout"])
    sizes = net.population_sizes
    offset = np.concatenate([[0, 0], np.cumsum(sizes[1:])])  # offset[p]: first id of population p (p >= 1)
    spikes = tr.of_sample(b).of_kind("spike")
    kept = 0
    for t, k, pop, i in zip(spikes.timestep, spikes.step, spikes.population, spikes.neuron, strict=True):
        if int(pop) in sources:
            q = int(offset[int(pop)] + int(i))
            kept += p_drop == 0 or uniform(res.options["seed"], b, int(t), int(k), q, STREAM_SPIKE_DROPOUT) >= p_drop
    return int(kept)


def _check_against_counters(res: asyncsnn.InferenceResult, net: asyncsnn.Network) -> None:
    tr = res.trace
    assert tr is not None
    out_pop = len(net.populations)
    for b in range(res.batch_size):
        ev = tr.of_sample(b)
        assert len(ev.of_kind("input")) == res.input_events[b]
        spikes = ev.of_kind("spike")
        per_pop = np.bincount(spikes.population, minlength=out_pop + 1)[1:]
        assert per_pop.tolist() == res.spikes[b].tolist()
        # Enqueued spikes (those of populations with an outgoing projection) are delivered
        # once each (a multiplicity counts several) or dropped by an early stop (R6.4).
        sources = {p.source for p in net.projections}
        enqueued = int(sum(res.spikes[b][p - 1] for p in sources if p > 0))
        if res.options["spike_dropout"] > 0:  # R4.11: only the kept spikes are enqueued
            enqueued = _kept_spikes(res, net, b, sources)
        deliveries = ev.of_kind("delivery")
        of_input = deliveries.population == 0  # input entries (R4.13): value x, not a multiplicity
        delivered = int(deliveries.value[~of_input].sum())
        assert delivered + res.dropped_spikes[b] == enqueued
        # Each input entry is delivered at most once (an early stop drops the rest, R6.4).
        assert of_input.sum() <= res.input_events[b]
        if res.options["prioritize_input"]:
            assert not of_input.any()
        steps = res.timestep_forward_steps[b]
        assert (ev.step < steps[ev.timestep]).all()
        assert (ev.step[ev.kind == "input"] == 0).all()
        before = np.concatenate([[0], np.cumsum(steps)[:-1]])
        assert (ev.global_step == before[ev.timestep] + ev.step).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine_cases(max_batch=3))
def test_rust_trace_equals_reference_trace(case: dict[str, Any]) -> None:
    kw = {"labels": case["labels"], **case["opts"]}
    plain = asyncsnn.infer(case["net"], case["x"], **kw)
    rust = asyncsnn.infer(case["net"], case["x"], trace=True, **kw)
    ref = asyncsnn.reference.infer(case["net"], case["x"], trace=True, **kw)
    assert_results_equal(rust, plain)
    assert_results_equal(ref, plain)
    assert plain.trace is None
    assert rust.trace == ref.trace
    _check_against_counters(rust, case["net"])


def _chain(rng: np.random.Generator) -> asyncsnn.Network:
    """A 12-10-4 chain with grid weights (multiples of 1/16: float sums in any order are
    exact, so the membranes of spike events agree bit for bit, R8.2)."""
    return asyncsnn.Network.sequential(
        input_shape=(12,),
        layers=[asyncsnn.Dense(rng.integers(0, 10, (10, 12)) / 16), asyncsnn.Dense(rng.integers(0, 8, (4, 10)) / 16)],
        threshold=1.0,
        beta=0.9,
    )


def test_layered_delivers_one_population_per_step_and_async_at_most_f() -> None:
    rng = np.random.default_rng(3)
    net = _chain(rng)
    x = (rng.random((4, 8, 12)) < 0.4).astype(np.float32)
    lay = asyncsnn.infer(net, x, scheduler="layered", trace=True).trace
    mom = asyncsnn.infer(net, x, scheduler="momentum", forward_group_size=2, trace=True).trace
    assert lay is not None
    assert mom is not None
    for tr, most in ((lay, None), (mom, 2)):
        d = tr.of_kind("delivery")
        keys = np.stack([d.sample, d.global_step], axis=1)
        groups, sizes = np.unique(keys, axis=0, return_counts=True)
        assert len(groups) > 5, "the network must spike for this test to mean anything"
        for (b, g), n in zip(groups, sizes, strict=True):
            pops = d.population[(d.sample == b) & (d.global_step == g)]
            if most is None:
                assert len(set(pops.tolist())) == 1
            else:
                assert n <= most
    # The same spikes are delivered, in more forward steps asynchronously.
    assert len(mom.of_kind("delivery")) >= len(lay.of_kind("delivery")) > 0
    assert mom.global_step.max() > lay.global_step.max()


def test_sparse_inputs_and_sample_ids_are_traced_like_dense() -> None:
    rng = np.random.default_rng(5)
    net = _chain(rng)
    x = (rng.random((2, 5, 12)) < 0.5).astype(np.float32) * 2
    events = [np.array([(t, i, x[b, t, i]) for t in range(5) for i in np.flatnonzero(x[b, t])]) for b in range(2)]
    kw: dict[str, Any] = {"scheduler": "random", "forward_group_size": 3, "sample_ids": [7, 9], "trace": True}
    dense = asyncsnn.infer(net, x, **kw)
    sparse = asyncsnn.infer(net, events, timesteps=5, **kw)
    ref = asyncsnn.reference.infer(net, events, timesteps=5, **kw)
    assert dense.trace == sparse.trace == ref.trace
    assert dense.trace is not None
    assert set(dense.trace.sample.tolist()) == {0, 1}


def test_trace_flag_is_checked() -> None:
    net = _chain(np.random.default_rng(0))
    for engine in (asyncsnn.infer, asyncsnn.reference.infer):
        with pytest.raises(ParameterError) as err:
            engine(net, np.ones((1, 2, 12), np.float32), trace="yes")
        assert err.value.field == "trace"


def _some_trace() -> Trace:
    rng = np.random.default_rng(1)
    net = _chain(rng)
    res = asyncsnn.infer(net, (rng.random((3, 4, 12)) < 0.5).astype(np.float32), scheduler="fifo", trace=True)
    assert res.trace is not None
    assert len(res.trace) > 20
    return res.trace


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    tr = _some_trace()
    path = tmp_path / "events.csv"
    tr.to_csv(path)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    back = Trace.read_csv(path)
    assert back == tr
    assert back.value.dtype == np.float64
    assert back.sample.dtype == np.int64
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left behind"


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    tr = _some_trace()
    path = tmp_path / "events.parquet"
    tr.to_parquet(path)
    assert Trace.read_parquet(path) == tr
    with pytest.raises(InputError):
        Trace.read_parquet(_write_text(tmp_path / "not.parquet", "sample,timestep\n"))


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_parquet_without_pyarrow_is_a_typed_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    path = tmp_path / "events.parquet"
    with pytest.raises(MissingDependencyError, match="asyncsnn\\[trace\\]"):
        _some_trace().to_parquet(path)
    assert not path.exists()


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.csv"
    path.write_text("precious")
    tr = _some_trace()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        tr.to_csv(path)
    assert path.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": ["input", "spike", "fire"]}, "kind"),
        ({"neuron": [0, -1, 2]}, "neuron"),
        ({"step": [0.0, 1.5, 2.0]}, "step"),
        ({"value": [1.0, float("nan"), 1.0]}, "value"),
        ({"sample": [0, 0]}, "columns"),
        ({"extra": [1, 2, 3]}, "columns"),
    ],
)
def test_bad_columns_are_input_errors_naming_the_column(change: dict[str, Any], field: str) -> None:
    good: dict[str, Any] = {c: [0, 0, 0] for c in COLUMNS}
    good["kind"] = ["input", "spike", "delivery"]
    good["value"] = [1.0, 2.0, 1.0]
    Trace.from_columns(good)  # the base case is valid
    with pytest.raises(InputError) as err:
        Trace.from_columns({**good, **change})
    assert err.value.field == field


def test_read_csv_refuses_a_file_that_is_not_a_trace(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        Trace.read_csv(_write_text(tmp_path / "x.csv", "a,b\n1,2\n"))
    assert err.value.field == "columns"
    header = ",".join(COLUMNS)
    with pytest.raises(InputError) as err:
        Trace.read_csv(_write_text(tmp_path / "y.csv", f"{header}\n0,0,0,0,spike,1,x,1.0\n"))
    assert err.value.field == "neuron"


def test_of_kind_and_of_sample_select() -> None:
    tr = _some_trace()
    assert len(tr.of_kind("input", "spike")) + len(tr.of_kind("delivery")) == len(tr)
    assert (tr.of_sample(2).sample == 2).all()
    assert len(tr.of_sample(5)) == 0
    with pytest.raises(ParameterError):
        tr.of_kind("fire")


def test_raster_draws_both_runs_with_a_computed_caption(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    net = _chain(rng)
    x = (rng.random((1, 6, 12)) < 0.4).astype(np.float32)
    runs = {s: asyncsnn.infer(net, x, scheduler=s, forward_group_size=1, trace=True) for s in ("layered", "fifo")}
    traces = {s: r.trace.of_sample(0) for s, r in runs.items() if r.trace is not None}
    path = tmp_path / "raster.png"
    caption = draw_raster(traces, path, network=net, results=runs, title="one sample")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for s, r in runs.items():
        assert f"{s}: {int(r.forward_steps[0])} forward steps, {int(r.spikes_total[0])} spikes" in caption
    with pytest.raises(ParameterError):
        draw_raster({"two samples": _some_trace()}, tmp_path / "bad.png")

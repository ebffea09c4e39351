"""The output records of a forward step (R7.7, R7.9): the host backend's Rust kernel
(``_engine.record_outputs``) against the torch engine's ``record_latency`` and
``record_decision`` on the same row sets, value for value.

The engine-level tests compare whole runs with the reference engine; these draw the
row states that runs rarely reach: many rows open and closed at once, ties in the output
counts, labels on and off, refractory dropout's spike counts, rows whose timestep has
ended.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncsnn import _engine
from asyncsnn.exceptions import ParameterError
from asyncsnn.torch.engine.counters import CounterColumns, record_decision, record_latency
from asyncsnn.torch.engine.rows import RowSet

N_POP, N_PROJ = 3, 2


def _rows(rng: np.random.Generator, n: int, n_neu: int, n_out: int, labels: bool, dropout: bool) -> RowSet:
    """Rows part-way through a timestep, with consistent records (running = argmax of totals)."""
    col = CounterColumns(N_POP, N_PROJ, n_out)
    cnt = np.zeros((n, col.n))
    cnt[:, col.synops] = rng.integers(0, 20, (n, N_PROJ))
    totals = rng.integers(0, 3, (n, n_out)).astype(np.float64)
    cnt[:, col.totals] = totals
    cnt[:, col.running] = np.where(totals.max(1) > 0, totals.argmax(1), -1)
    open_out = rng.random(n) < 0.5
    open_correct = rng.random(n) < 0.5
    cnt[:, col.latency] = rng.integers(0, 5, (n, 7))
    cnt[open_out, col.first_output_step : col.first_output_synops + 1] = -1
    cnt[open_correct, col.first_correct_step : col.first_correct_synops + 1] = -1
    cnt[:, col.decision] = np.where(rng.random((n, 1)) < 0.5, -1.0, rng.integers(0, 5, (n, 3)))
    latency_open = (open_out | (open_correct & labels)).astype(np.float32)
    live = (rng.random((n, n_neu)) < 0.7).astype(np.float32)
    f32 = torch.float32
    return RowSet(
        batch_rows=torch.arange(n),
        v=torch.zeros(n, n_neu),
        live=torch.from_numpy(live),
        q=torch.zeros(n, n_neu),
        fired=torch.from_numpy(rng.integers(0, 3, (n, n_neu)).astype(np.float32)) if dropout else None,
        delivered=torch.from_numpy(rng.integers(0, 3, (n, n_neu)).astype(np.float32)),
        steps=torch.zeros(n, dtype=f32),
        queue_peak=torch.zeros(n, dtype=f32),
        done=torch.from_numpy(rng.random(n) < 0.3),
        counters=torch.from_numpy(cnt),
        vpre=None,
        settled=None,
        seq=None,
        next_seq=None,
        labels=torch.from_numpy(rng.integers(0, n_out, n)) if labels else None,
        hash_t=None,
        hash_k=None,
        latency_open=torch.from_numpy(latency_open),
    )


def _copy(rows: RowSet) -> RowSet:
    return rows.take(torch.arange(rows.size))  # every tensor copied


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 7),
    n_out=st.integers(1, 4),
    labels=st.booleans(),
    dropout=st.booleans(),
    latency=st.booleans(),
    k=st.integers(0, 40),
    spike_p=st.sampled_from([0.0, 0.2, 0.6]),
)
def test_the_rust_records_equal_the_torch_records(
    seed: int, n: int, n_out: int, labels: bool, dropout: bool, latency: bool, k: int, spike_p: float
) -> None:
    rng = np.random.default_rng(seed)
    n_neu = 5 + n_out
    out_offset = n_neu - n_out
    rows = _rows(rng, n, n_neu, n_out, labels, dropout)
    col = CounterColumns(N_POP, N_PROJ, n_out)
    spikes = torch.from_numpy((rng.random((n, n_neu)) < spike_p).astype(np.float32))
    spikes[rows.done] = 0.0  # a row whose timestep ended does not fire
    fanout = rng.integers(0, 9, n_neu).astype(np.float64)
    pt = {"fanout_total_f64": torch.from_numpy(fanout)}

    # The torch engine: both records only when an output spiked (as the driver did).
    want = _copy(rows)
    want_open = latency
    out_spikes = spikes[:, out_offset:]
    if bool(out_spikes.any()):
        if latency:
            want_open = record_latency(want, col, pt, k, out_spikes)
        record_decision(want, col, pt, k, out_spikes)

    got = _copy(rows)
    spent = {"live": got.live.numpy()} if got.fired is None else {"spikes": got.fired.numpy()}
    got_open = _engine.record_outputs(
        got.counters.numpy(),
        col.record_layout,
        got.latency_open.numpy(),
        got.done.numpy(),
        torch.nonzero(spikes.reshape(-1)).reshape(-1).numpy(),
        out_offset,
        got.delivered.numpy(),  # type: ignore[union-attr]
        fanout,
        k,
        latency,
        labels=None if got.labels is None else got.labels.numpy(),
        **spent,
    )
    assert got_open == want_open
    assert torch.equal(got.counters, want.counters)
    if latency:
        assert torch.equal(got.latency_open, want.latency_open)


def test_the_records_kernel_checks_its_input() -> None:
    rng = np.random.default_rng(0)
    rows = _rows(rng, 2, 6, 2, labels=True, dropout=False)
    col = CounterColumns(N_POP, N_PROJ, 2)
    columns = col.record_layout

    def call(**change: object) -> bool:
        args: dict[str, object] = {
            "counters": rows.counters.numpy(),
            "columns": columns,
            "latency_open": rows.latency_open.numpy(),
            "done": rows.done.numpy(),
            "fired": np.array([4, 11]),
            "out_offset": 4,
            "delivered": rows.delivered.numpy(),  # type: ignore[union-attr]
            "fanout": np.ones(6),
            "k": 0,
            "latency": True,
            "live": rows.live.numpy(),
            "labels": rows.labels.numpy(),  # type: ignore[union-attr]
        }
        args.update(change)
        return _engine.record_outputs(**args)  # type: ignore[arg-type]

    with pytest.raises(ParameterError, match="fired"):
        call(fired=np.array([12]))  # 2 rows of 6 neurons
    with pytest.raises(ParameterError, match="fired"):
        call(fired=np.array([11, 4]))  # unsorted
    with pytest.raises(ParameterError, match="labels"):
        call(labels=np.array([0, 2]))  # 2 output neurons
    with pytest.raises(ParameterError, match="fanout"):
        call(fanout=np.ones(5))
    with pytest.raises(ParameterError, match="totals"):
        call(columns=(*columns[:5], col.n - 1))
    with pytest.raises(ParameterError, match="out_offset"):
        call(out_offset=6)
    with pytest.raises(ParameterError, match="live"):
        call(spikes=rows.live.numpy())  # both
    before = rows.counters.clone()
    call()
    assert not torch.equal(rows.counters, before)  # the records were written in place

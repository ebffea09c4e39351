"""Non-prioritised input (R4.13): input entries in the pending set.

With ``prioritize_input = False`` forward step 0 delivers nothing: the kept non-zero
values of the frame become **input entries**, held per row in ``rows.xin`` (float32
``[n, n_in]``, the value ``x_i(t)`` while input ``i`` is pending, 0 otherwise; the
values are > 0, so a non-zero value marks a pending entry). The bookkeepings count
them as pending entries (R7.6, the end of the timestep, R6), drop them at an early
stop without counting them in ``dropped_spikes`` (R6.4), block every population's
silent spikes while one is pending (section 9: population 0 is below every other) and
schedule them with the neurons:

* ``layered``: all of them form the group at the end of step 0 (population 0);
* ``fifo`` / ``random``: one ``topk`` over the row's input and neuron entries
  (:func:`select_with_inputs`), the inputs keyed before every neuron (fifo: the first
  sequence numbers of the timestep) or by ``h(seed, sample, t, k, i, 5)`` (random).

A delivered input entry adds ``x_i w`` through the input projections as the step-0
delivery of R4.2 does (:meth:`~asyncsnn.torch.engine.delivery.Delivery.frame`, so the
weights' gradients flow the same way), counts its synops at the delivery (R7.4) and
settles the due populations that the input reaches (R4.7). An input without a non-zero
value delivers nothing; the driver still gives its projections' weights a zero gradient,
as prioritised input does.
"""

from __future__ import annotations

import torch

from asyncsnn._prepare import Scheduler
from asyncsnn.rng import STREAM_RANDOM, STREAM_RANDOM_INPUT
from asyncsnn.torch._rng import hash_neurons
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet

__all__ = ["deliver_inputs", "input_pending", "select_with_inputs", "top_with_inputs"]

_MAX_KEY = torch.iinfo(torch.int64).max


def input_pending(rows: RowSet) -> torch.Tensor | None:
    """int64 ``[n]``: the pending input entries of each row, or ``None`` (prioritised input)."""
    if rows.xin is None:
        return None
    return (rows.xin != 0).sum(1)


def top_with_inputs(run: RunContext, rows: RowSet, top: torch.Tensor) -> torch.Tensor:
    """``top`` (silent-spike ranks, float32 ``[n]``) raised to ``P + 1`` in rows with a pending input.

    Population 0 is below every population: while an input entry is pending no
    population has its final membrane (section 9).
    """
    n_in = input_pending(rows)
    if n_in is None:
        return top
    blocked = torch.full_like(top, run.plan.n_populations + 1.0)
    return torch.where(n_in > 0, blocked, top)


def drop_inputs_stopped(rows: RowSet, stop: torch.Tensor) -> None:
    """R6.4: a stopped row (bool ``[n]``) drops its pending input entries (not counted as spikes)."""
    if rows.xin is not None:
        rows.xin = torch.where(
            stop.unsqueeze(1), torch.zeros((), dtype=rows.xin.dtype, device=rows.xin.device), rows.xin
        )


def deliver_inputs(run: RunContext, rows: RowSet, in_rows: torch.Tensor, in_idx: torch.Tensor) -> None:
    """Deliver the input entries ``(in_rows[s], in_idx[s])``: their currents join ``rows.cur``.

    They leave ``rows.xin``; ``I[q] += x_i w`` for every synapse ``i -> q`` (R4.2,
    R4.13); their synops are counted now (R7.4). ``rows.cur`` must be set (the
    neurons' currents of the same group, zeros when none).
    """
    xin = rows.xin
    assert xin is not None
    assert rows.cur is not None
    if not in_rows.numel():
        return
    mask = torch.zeros(xin.shape, dtype=torch.bool, device=xin.device)
    mask[in_rows, in_idx] = True
    zero = torch.zeros((), dtype=xin.dtype, device=xin.device)
    x_sel = torch.where(mask, xin, zero)
    rows.xin = torch.where(mask, zero, xin)
    rows.cur = rows.cur + run.delivery.frame(x_sel, run.input_risk)
    rows.counters[:, run.columns.synops].index_add_(0, in_rows, run.pt["fanout_in_f64"].index_select(0, in_idx))


def select_with_inputs(
    run: RunContext,
    rows: RowSet,
    pend_rows: torch.Tensor,
    pend_neurons: torch.Tensor,
    hash_k: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The group of every row (R5.2, R5.3, R4.13) from its pending inputs and neurons.

    ``(pend_rows[e], pend_neurons[e])``: the pending neurons (sorted by row); the
    pending inputs are the non-zero entries of ``rows.xin``. Each row's group is its
    ``F`` smallest entries of the key ``primary * M + v`` with ``M = n_in + N`` and
    ``v = i`` for input ``i``, ``n_in + j`` for neuron ``j`` (so on equal primary keys
    an input goes first, then the smaller index): fifo's primary key is 0 for an
    input and ``seq + 1`` for a neuron (the inputs hold the first sequence numbers of
    the timestep); random's is ``h(seed, sample, t, k, i, 5)`` for an input and
    ``h(seed, sample, t, k, j, 0)`` for a neuron.

    Returns ``(in_rows, in_idx, rows, neurons)``: the selected inputs and the selected
    neurons, each sorted by row.
    """
    assert rows.xin is not None
    n_in = rows.xin.shape[1]
    n_neu = run.plan.n_neurons
    m = n_in + n_neu
    f = run.opts.forward_group_size
    in_rows, in_idx = (rows.xin != 0).nonzero(as_tuple=True)
    if run.opts.scheduler is Scheduler.FIFO:
        assert rows.seq is not None
        p_in = torch.zeros_like(in_idx)
        p_neu = rows.seq.view(-1).index_select(0, pend_rows * n_neu + pend_neurons) + 1
    elif run.opts.scheduler is Scheduler.RANDOM:
        assert hash_k is not None
        p_in = hash_neurons(hash_k.index_select(0, in_rows), in_idx, STREAM_RANDOM_INPUT)
        p_neu = hash_neurons(hash_k.index_select(0, pend_rows), pend_neurons, STREAM_RANDOM)
    else:  # pragma: no cover - refused by RunOptions (R4.13)
        raise AssertionError(f"no input entries under {run.opts.scheduler}")
    entry_rows = torch.cat([in_rows, pend_rows])
    keys = torch.cat([p_in * m + in_idx, p_neu * m + n_in + pend_neurons])
    entry_rows, order = torch.sort(entry_rows, stable=True)
    keys = keys.index_select(0, order)
    counts = torch.bincount(entry_rows, minlength=rows.size)
    max_pending = int(counts.max()) if counts.numel() else 0
    if max_pending <= f:
        sel_rows, sel_keys = entry_rows, keys
    else:
        # Entry e goes to column e - (first entry of its row) of its row in the table.
        dev = entry_rows.device
        start = torch.cumsum(counts, 0) - counts
        base = torch.arange(0, counts.numel() * max_pending, max_pending, device=dev) - start
        table = torch.full((counts.numel(), max_pending), _MAX_KEY, dtype=torch.int64, device=dev)
        table.view(-1).index_copy_(
            0, torch.arange(entry_rows.numel(), device=dev) + base.index_select(0, entry_rows), keys
        )
        vals, _ = torch.topk(table, f, dim=1, largest=False, sorted=False)
        valid = vals != _MAX_KEY
        sel_rows, sel_keys = valid.nonzero()[:, 0], torch.masked_select(vals, valid)
    v = sel_keys % m
    is_in = v < n_in
    return sel_rows[is_in], v[is_in], sel_rows[~is_in], v[~is_in] - n_in

"""The torch backend of the bookkeeping (every device), and the layered scheduler's.

See :mod:`asyncsnn.torch.engine.bookkeeping` for the interface. Everything here is
torch operations on the row tensors: :class:`TorchBookkeeping` keeps the unlayered
pending set as a list of ``(row, neuron)`` entries found with ``nonzero`` and selects
with one ``topk`` (:func:`select`); :class:`LayeredBookkeeping` keeps a dense 0/1
mask of the pending neurons and delivers every pending neuron of the lowest pending
population (R5.1), on both backends.
"""

from __future__ import annotations

import torch

from asyncsnn._prepare import Scheduler
from asyncsnn.rng import STREAM_JITTER, STREAM_RANDOM
from asyncsnn.torch._rng import hash_neurons, uniform24
from asyncsnn.torch.engine.bookkeeping import MIN_SET_ASIDE, Bookkeeping, stop_rule
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.counters import record_decision, record_latency
from asyncsnn.torch.engine.inputs import (
    deliver_inputs,
    drop_inputs_stopped,
    input_pending,
    select_with_inputs,
    top_with_inputs,
)
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.engine.settling import any_due, next_settle, stop_due
from asyncsnn.torch.engine.silent import emit_settled

__all__ = ["LayeredBookkeeping", "TorchBookkeeping", "select"]

_MAX_KEY = torch.iinfo(torch.int64).max


class _TorchRows(Bookkeeping):
    """What the torch bookkeepings share: step counts, latency records, stop, set-aside.

    The pending set is rebuilt from ``Q`` at every step (:meth:`enqueue`); the rows'
    pending counts are :attr:`n_pending` (float32 ``[n]``), and :attr:`ended` marks
    the rows whose timestep ends at this step's stop check.
    """

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.n_pending = torch.zeros(0, dtype=torch.float32)
        self.ended = torch.zeros(0, dtype=torch.bool)

    def start_timestep(self) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.start_timestep`."""
        # Nothing to empty: the pending set is read from Q at every step.

    def count_step(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.count_step`."""
        rows.steps = torch.where(rows.done, rows.steps, float(k + 1))

    def record_outputs(
        self, rows: RowSet, k: int, spikes: torch.Tensor, fired: torch.Tensor | None, latency_open: bool
    ) -> bool:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.record_outputs`."""
        run = self.run
        out_spikes = spikes[:, run.out_slice]
        if latency_open:
            latency_open = record_latency(rows, run.columns, run.pt, k, out_spikes)  # R7.7
        record_decision(rows, run.columns, run.pt, k, out_spikes)  # R7.9
        return latency_open

    def _stop(self, rows: RowSet, k: int) -> torch.Tensor | None:
        """R6 on the rows: sets :attr:`ended` and returns the stopped rows (bool ``[n]``, or ``None``).

        A stopped row's pending spikes are dropped and counted (R6.4); the caller
        removes them from its own pending set.
        """
        self.ended = self.n_pending == 0
        if rows.due is not None:  # R4.3.4: a due population keeps the timestep going
            self.ended = self.ended & ~any_due(rows)
        rule = stop_rule(self.run.opts, k, rows.counters, self.run.columns.first_output_step)
        if rule is None:
            return None
        stop: torch.Tensor = torch.ones_like(self.ended) if rule is True else rule
        has_out = self.run.pt["has_out_f"]
        stop_f = stop.to(torch.float32)
        if rows.due is not None:
            stop_due(rows, stop_f)
        rows.counters[:, self.run.columns.dropped] += ((rows.q.detach() * has_out).sum(1) * stop_f).to(torch.float64)
        rows.q = rows.q * (1.0 - stop_f.unsqueeze(1) * has_out)
        drop_inputs_stopped(rows, stop)  # R4.13: not counted as dropped spikes
        self.n_pending = self.n_pending * (1.0 - stop_f)
        self.ended = self.ended | stop
        return stop

    def _set_aside(self, rows: RowSet, retired: list[RowSet]) -> tuple[bool, torch.Tensor | None]:
        """Mark the ended rows done; set them aside when all have ended or half of them.

        Returns ``(running, keep)``: ``running`` is False when every row has ended
        (``rows`` then joins ``retired``); ``keep`` holds the positions of the rows
        that keep running when the ended ones were set aside now (the caller takes
        them and compacts its own per-row state; ``rows.done`` still tells which
        ones), else ``None``.
        """
        rows.done = rows.done | self.ended
        n_done = int(rows.done.sum())
        n_rows = rows.size
        if n_done == n_rows:
            retired.append(rows)
            return False, None
        if 2 * n_done >= n_rows >= MIN_SET_ASIDE:
            retired.append(rows.take(rows.done.nonzero().squeeze(1)))
            keep = (~rows.done).nonzero().squeeze(1)
            self.n_pending = self.n_pending[keep]
            return True, keep
        return True, None


class TorchBookkeeping(_TorchRows):
    """Unlayered schedulers (R5.2-R5.4) in torch: the pending entries from ``nonzero``.

    Synops are added to the counters as the deliveries happen (R7.4).
    """

    tracks_deliveries = False

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.pend_rows = torch.zeros(0, dtype=torch.int64)
        self.pend_neurons = torch.zeros(0, dtype=torch.int64)

    def enqueue(self, rows: RowSet, fired: torch.Tensor | None) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.enqueue`."""
        plan = self.run.plan
        qd = rows.q.detach()
        # The pending neurons as a list of (row, neuron) entries, sorted by row.
        q_src = qd[:, : plan.src_prefix] if plan.src_prefix is not None else qd * self.run.pt["has_out_f"]
        self.pend_rows, self.pend_neurons = q_src.nonzero(as_tuple=True)
        self.n_pending = torch.bincount(self.pend_rows, minlength=qd.shape[0]).to(torch.float32)
        n_in = input_pending(rows)
        if n_in is not None:  # R4.13: input entries are pending entries
            self.n_pending = self.n_pending + n_in.to(torch.float32)
        rows.queue_peak = torch.maximum(rows.queue_peak, self.n_pending)  # R7.6

    def stop(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.stop`."""
        stop = self._stop(rows, k)
        if stop is not None:
            kept = (~stop)[self.pend_rows]
            self.pend_rows, self.pend_neurons = self.pend_rows[kept], self.pend_neurons[kept]

    def set_aside(self, rows: RowSet, retired: list[RowSet]) -> RowSet | None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.set_aside`."""
        running, keep = self._set_aside(rows, retired)
        if not running:
            return None
        if keep is not None:
            kept = (~rows.done)[self.pend_rows]
            new_row = torch.cumsum(~rows.done, 0) - 1
            self.pend_rows, self.pend_neurons = new_row[self.pend_rows[kept]], self.pend_neurons[kept]
            rows = rows.take(keep)
        return rows

    def settle(self, rows: RowSet) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.settle`."""
        # The largest (silent-spike) rank of a pending neuron of each row (0: none).
        ranks = self.run.silent_rank.index_select(0, self.pend_neurons)
        top = torch.zeros_like(self.n_pending).scatter_reduce_(0, self.pend_rows, ranks, "amax")
        emit_settled(self.run, rows, top_with_inputs(self.run, rows, top))

    def select_and_deliver(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.select_and_deliver`."""
        run = self.run
        n_neu, f = run.plan.n_neurons, run.opts.forward_group_size
        hash_k = rows.step_hash(k) if rows.hash_t is not None else None
        if rows.xin is not None and bool((rows.xin != 0).any()):
            self._select_with_inputs(rows, hash_k)
            return
        counts = self.n_pending.to(torch.int64)
        group_rows, group_neurons = select(
            run.opts.scheduler, rows, self.pend_rows, self.pend_neurons, counts, hash_k, run.jitter, f, n_neu
        )
        n_sel = counts.clamp(max=f)
        offsets = torch.cumsum(n_sel, 0) - n_sel
        flat = group_rows * n_neu + group_neurons
        run.delivery.deliver_group(rows, group_rows, group_neurons, flat, offsets, run.grad)
        if rows.due is not None:  # R4.7: the populations these groups settle
            next_settle(run, rows, group_rows, run.pt["pop_of"].index_select(0, group_neurons))
        # R7.4: the synops of the delivered neurons, per projection.
        rows.counters[:, run.columns.synops].index_add_(
            0, group_rows, run.pt["fanout_f64"].index_select(0, group_neurons)
        )

    def _select_with_inputs(self, rows: RowSet, hash_k: torch.Tensor | None) -> None:
        """:meth:`select_and_deliver` while some row has a pending input entry (R4.13)."""
        run = self.run
        n_neu = run.plan.n_neurons
        in_rows, in_idx, group_rows, group_neurons = select_with_inputs(
            run, rows, self.pend_rows, self.pend_neurons, hash_k
        )
        if group_rows.numel():
            counts = torch.bincount(group_rows, minlength=rows.size)
            offsets = torch.cumsum(counts, 0) - counts
            flat = group_rows * n_neu + group_neurons
            run.delivery.deliver_group(rows, group_rows, group_neurons, flat, offsets, run.grad)
            rows.counters[:, run.columns.synops].index_add_(
                0, group_rows, run.pt["fanout_f64"].index_select(0, group_neurons)
            )
        else:
            rows.cur = torch.zeros_like(rows.v)
        deliver_inputs(run, rows, in_rows, in_idx)
        if rows.due is not None:  # R4.7: an input entry settles the populations the input reaches
            pops = run.pt["pop_of"].index_select(0, group_neurons)
            next_settle(run, rows, torch.cat([group_rows, in_rows]), torch.cat([pops, torch.zeros_like(in_rows)]))


class LayeredBookkeeping(_TorchRows):
    """R5.1 in torch on every backend: every pending neuron of the lowest pending population.

    The pending set is a dense 0/1 mask ``[n, N]`` (multiplicities are integers);
    ``top`` is the largest rank ``P + 1 - p`` of a pending neuron of each row (0: none),
    so the row's group is the pending neurons of rank ``top``.
    """

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.pending = torch.zeros(0, 0, dtype=torch.float32)
        self.top = torch.zeros(0, dtype=torch.float32)

    def enqueue(self, rows: RowSet, fired: torch.Tensor | None) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.enqueue`."""
        self.pending = (rows.q.detach() * self.run.pt["has_out_f"]).clamp_(max=1.0)  # 1.0 for pending neurons
        self.n_pending = self.pending.sum(1)
        n_in = input_pending(rows)
        if n_in is not None:  # R4.13: input entries are pending entries
            self.n_pending = self.n_pending + n_in.to(torch.float32)
        rows.queue_peak = torch.maximum(rows.queue_peak, self.n_pending)  # R7.6

    def stop(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.stop`."""
        stop = self._stop(rows, k)
        if stop is not None:
            self.pending = self.pending * (1.0 - stop.to(torch.float32).unsqueeze(1))

    def set_aside(self, rows: RowSet, retired: list[RowSet]) -> RowSet | None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.set_aside`."""
        running, keep = self._set_aside(rows, retired)
        if not running:
            return None
        if keep is not None:
            self.pending = self.pending[keep]
            rows = rows.take(keep)
        # The lowest population with a pending neuron is n_pop + 1 - top (top = 0: none).
        self.top = top_with_inputs(self.run, rows, (self.pending * self.run.pt["rank_f"]).amax(1))
        return rows

    def settle(self, rows: RowSet) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.settle`."""
        emit_settled(self.run, rows, self.top)

    def select_and_deliver(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.select_and_deliver`."""
        run, top = self.run, self.top
        plan = run.plan
        assert rows.delivered is not None
        group = self.pending * (run.pt["rank_f"] == top.unsqueeze(1))
        emitted = rows.q * group
        rows.q = rows.q - emitted
        rows.delivered = rows.delivered + group
        present = [p for p in plan.source_populations if bool((top == plan.n_populations + 1 - p).any())]
        forward = False if run.carry else None
        rows.cur, carried = run.delivery.dense_carried(emitted, present, run.carry)
        if run.delivery.lif_risk:
            rows.cur = run.delivery.mark_overflow(rows.cur, emitted, present, forward)
        if carried is not None:  # R4.9: a recurrent projection's current is carried to the next timestep
            assert rows.carry is not None
            if run.delivery.lif_risk:
                carried = run.delivery.mark_overflow(carried, emitted, present, True)
            rows.carry = rows.carry + carried
        if rows.xin is not None and bool((top > plan.n_populations).any()):
            # R4.13: every pending input entry (population 0) is the group of its row.
            in_rows, in_idx = (rows.xin != 0).nonzero(as_tuple=True)
            deliver_inputs(run, rows, in_rows, in_idx)
        if rows.due is not None:  # R4.7: the populations these groups settle
            with_group = (top > 0).nonzero().squeeze(1)
            group_pops = (plan.n_populations + 1 - top.index_select(0, with_group)).to(torch.int64)
            next_settle(run, rows, with_group, group_pops)


def select(
    sched: Scheduler,
    rows: RowSet,
    pend_rows: torch.Tensor,
    pend_neurons: torch.Tensor,
    counts: torch.Tensor,
    hash_k: torch.Tensor | None,
    jitter: float,
    f: int,
    n_neu: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The group of every row (R5.2-R5.4) from its pending neurons.

    ``(pend_rows[e], pend_neurons[e])`` are the pending neurons, sorted by row and,
    within a row, by id; ``counts[b]`` is the pending count of row ``b``. Returns the
    selected entries ``(rows, neurons)``, still sorted by row: every pending neuron of
    a row with at most ``f``, otherwise the ``f`` smallest of a key ``primary * N +
    neuron`` (unique within the row), laid out in a ``[rows, largest count]`` table
    for one ``topk``; the neuron is the key modulo ``N``.
    """
    max_pending = int(counts.max())
    if max_pending <= f:  # every pending neuron is delivered
        return pend_rows, pend_neurons
    flat = pend_rows * n_neu + pend_neurons
    if sched is Scheduler.FIFO:
        # R5.2: the sequence number.
        assert rows.seq is not None
        primary = rows.seq.view(-1).index_select(0, flat)
    elif sched is Scheduler.RANDOM:
        # R5.3: h(seed, sample, t, k, j, 0), ties to the smaller id (h * N + j < 2**53).
        assert hash_k is not None
        primary = hash_neurons(hash_k.index_select(0, pend_rows), pend_neurons, STREAM_RANDOM)
    else:
        # R5.4: the largest v_pre + float32(jitter * u(..., 2)), rounded to float32, ties to
        # the smaller id. The bits of a positive float32 (+inf included) order like its value.
        assert rows.vpre is not None
        kf = rows.vpre.view(-1).index_select(0, flat)
        if jitter > 0:
            assert hash_k is not None
            u = uniform24(hash_neurons(hash_k.index_select(0, pend_rows), pend_neurons, STREAM_JITTER))
            kf = kf + torch.tensor(jitter, dtype=torch.float32, device=u.device) * u
        primary = (1 << 31) - kf.view(torch.int32).to(torch.int64)
    key = primary * n_neu + pend_neurons
    # Entry e goes to column e - (first entry of its row) of its row in the table.
    start = torch.cumsum(counts, 0) - counts
    device = pend_rows.device
    base = torch.arange(0, counts.numel() * max_pending, max_pending, device=device) - start
    table = torch.full((counts.numel(), max_pending), _MAX_KEY, dtype=torch.int64, device=device)
    table.view(-1).index_copy_(0, torch.arange(pend_rows.numel(), device=device) + base.index_select(0, pend_rows), key)
    vals, _ = torch.topk(table, f, dim=1, largest=False, sorted=False)
    valid = vals != _MAX_KEY
    return valid.nonzero()[:, 0], torch.masked_select(vals, valid) % n_neu

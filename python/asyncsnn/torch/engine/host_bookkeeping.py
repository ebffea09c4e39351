"""The host backend of the bookkeeping: numpy and the Rust kernels, on CPU tensors.

See :mod:`asyncsnn.torch.engine.bookkeeping` for the interface. The unlayered
schedulers' bookkeeping -- the pending set, pending counts, queue peaks, the stop
check, the rows' retirement, the settled populations, the selection and the synops --
works on small integer arrays; here it runs in numpy on zero-copy views of the row
tensors (:meth:`~asyncsnn.torch.engine.rows.RowSet.np`), whose per-call cost is a
fraction of a torch kernel launch. The pending set is kept as the sorted keys ``row *
N + neuron``: the neurons with outgoing projections among the spikes of a step join
it (``_engine.merge_pending``), the delivered ones leave it (``_engine.select_pending``,
which also selects each row's group; within a row the group is then delivered in id
order). It computes what :class:`~asyncsnn.torch.engine.torch_bookkeeping.TorchBookkeeping`
computes; the tests run both against the reference engine.
"""

from __future__ import annotations

import numpy as np
import torch

from asyncsnn import _engine
from asyncsnn._prepare import Scheduler
from asyncsnn.torch._kernels import host_array, host_tensor
from asyncsnn.torch.engine.bookkeeping import MIN_SET_ASIDE, Bookkeeping, stop_rule
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.inputs import deliver_inputs, drop_inputs_stopped, input_pending, select_with_inputs
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.engine.settling import any_due, next_settle, stop_due
from asyncsnn.torch.engine.silent import emit_settled_host

__all__ = ["HostBookkeeping"]

_NO_KEYS = np.empty(0, dtype=np.int64)


class HostBookkeeping(Bookkeeping):
    """Unlayered schedulers (R5.2-R5.4) in numpy and Rust (CPU tensors).

    Between the calls of a step, :attr:`keys` are the pending keys ``row * N +
    neuron`` (sorted), :attr:`counts` the pending count of each row and :attr:`first`
    its lowest pending neuron (-1: none). Deliveries are counted per neuron and turned
    into synops at the end of the timestep (R7.4).
    """

    needs_fired = True

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.host = run.plan.host_arrays()
        self.keys = _NO_KEYS
        self.counts = _NO_KEYS
        self.first = _NO_KEYS
        self.in_counts: np.ndarray | None = None  # pending input entries per row (R4.13)

    def start_timestep(self) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.start_timestep`."""
        self.keys = _NO_KEYS

    def count_step(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.count_step`."""
        rows.np("steps")[~rows.np("done")] = k + 1

    def record_outputs(
        self, rows: RowSet, k: int, spikes: torch.Tensor, fired: torch.Tensor | None, latency_open: bool
    ) -> bool:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.record_outputs`.

        One Rust call (``_engine.record_outputs``) that reads the output neurons' among
        the spikes' positions ``fired`` and touches only the rows with an output spike.
        """
        assert fired is not None
        run = self.run
        spent = {"live": rows.np("live")} if rows.fired is None else {"spikes": rows.np("fired")}
        return _engine.record_outputs(
            rows.np("counters"),
            run.columns.record_layout,
            rows.np("latency_open"),
            rows.np("done"),
            host_array(fired),
            run.plan.out_offset,
            rows.np("delivered"),
            self.host["fanout_total_f64"],
            k,
            latency_open,
            labels=None if rows.labels is None else rows.np("labels"),
            **spent,
        )

    def enqueue(self, rows: RowSet, fired: torch.Tensor | None) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.enqueue`."""
        # R4.3.2: a neuron already pending (refractory dropout) keeps its entry.
        assert fired is not None
        self.keys, self.counts, self.first = _engine.merge_pending(
            self.keys, host_array(fired), self.host["has_out"], rows.size
        )
        queue_peak = rows.np("queue_peak")
        n_in = input_pending(rows)
        if n_in is None:
            np.maximum(queue_peak, self.counts, out=queue_peak)  # R7.6
        else:  # R4.13: input entries are pending entries
            self.in_counts = n_in.numpy()
            np.maximum(queue_peak, self.counts + self.in_counts, out=queue_peak)

    def stop(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.stop`."""
        run = self.run
        plan, pt = run.plan, run.pt
        cnt = rows.np("counters")
        rule = stop_rule(run.opts, k, cnt, run.columns.first_output_step)
        if rule is None:
            return
        stop = np.ones(rows.size, dtype=bool) if rule is True else rule
        if stop.any():
            # R6.4: the pending spikes of a stopped row are dropped.
            qd = rows.q.detach()
            q_src = qd[:, : plan.src_prefix] if plan.src_prefix is not None else qd * pt["has_out_f"]
            cnt[:, run.columns.dropped] += q_src.numpy().sum(1, dtype=np.float64) * stop
            stop_f = torch.from_numpy(stop.astype(np.float32))
            rows.q = rows.q * (1.0 - stop_f.unsqueeze(1) * pt["has_out_f"])
            if rows.due is not None:
                stop_due(rows, stop_f)
            self.keys = self.keys[~stop[self.keys // plan.n_neurons]]
            self.counts[stop] = 0
            self.first[stop] = -1
            if self.in_counts is not None:  # R4.13: dropped, not counted as spikes
                drop_inputs_stopped(rows, torch.from_numpy(stop))
                self.in_counts = self.in_counts * ~stop

    def set_aside(self, rows: RowSet, retired: list[RowSet]) -> RowSet | None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.set_aside`."""
        done = self.counts == 0
        if self.in_counts is not None:
            done &= self.in_counts == 0
        if rows.due is None:
            n_active = int(np.count_nonzero(~done))
        else:  # R4.3.4: a due population keeps the timestep going
            done &= ~any_due(rows).numpy()
            n_active = int(np.count_nonzero(~done))
        rows.np("done")[:] = done
        if n_active == 0:
            retired.append(rows)
            return None
        n_rows = rows.size
        if 2 * (n_rows - n_active) >= n_rows >= MIN_SET_ASIDE:
            # Rows whose timestep ended are set aside (they have no pending entries).
            retired.append(rows.take(torch.from_numpy(np.flatnonzero(done))))
            keep = np.flatnonzero(~done)
            n_neu = self.run.plan.n_neurons
            key_rows, neurons = np.divmod(self.keys, n_neu)
            self.keys = (np.cumsum(~done) - 1)[key_rows] * n_neu + neurons
            self.counts, self.first = self.counts[keep], self.first[keep]
            if self.in_counts is not None:
                self.in_counts = self.in_counts[keep]
            rows = rows.take(torch.from_numpy(keep))
        return rows

    def settle(self, rows: RowSet) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.settle`."""
        if self.run.silent_ranks_monotone:
            # A row's first entry is its lowest pending neuron, of the lowest pending population.
            top = np.where(self.first >= 0, self.host["rank_f"][self.first], np.float32(0.0))
        else:  # recurrent projections (R4.9): the largest rank of a pending neuron of each row
            n_neu = self.run.plan.n_neurons
            top = np.zeros(rows.size, dtype=np.float32)
            np.maximum.at(top, self.keys // n_neu, self.host["silent_rank_f"][self.keys % n_neu])
        if self.in_counts is not None:  # R4.13: a pending input entry blocks every population
            top = np.where(self.in_counts > 0, np.float32(self.run.plan.n_populations + 1), top)
        emit_settled_host(self.run, rows, top)

    def select_and_deliver(self, rows: RowSet, k: int) -> None:
        """See :meth:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping.select_and_deliver`."""
        run = self.run
        if self.in_counts is not None and self.in_counts.any():
            self._select_with_inputs(rows, k)
            return
        state = None if rows.hash_t is None else np.ascontiguousarray(rows.step_hash(k).numpy())
        group_rows, group_neurons, flat, offsets, self.keys = self._select(rows, state)
        run.delivery.deliver_group(
            rows,
            host_tensor(group_rows),
            host_tensor(group_neurons),
            host_tensor(flat),
            host_tensor(offsets),
            run.grad,
        )
        if rows.due is not None:  # R4.7: the populations these groups settle
            run_pop = torch.from_numpy(self.host["pop_of"][group_neurons])
            next_settle(run, rows, torch.from_numpy(group_rows), run_pop)
        # R7.4: deliveries per neuron (their synops are summed at the end of the timestep).
        rows.np("delivered").reshape(-1)[flat] += 1.0

    def _select_with_inputs(self, rows: RowSet, k: int) -> None:
        """:meth:`select_and_deliver` while some row has a pending input entry (R4.13), in torch."""
        run = self.run
        n_neu = run.plan.n_neurons
        key_rows, neurons = np.divmod(self.keys, n_neu)
        hash_k = rows.step_hash(k) if rows.hash_t is not None else None
        in_rows, in_idx, group_rows, group_neurons = select_with_inputs(
            run, rows, torch.from_numpy(key_rows), torch.from_numpy(neurons), hash_k
        )
        flat = group_rows * n_neu + group_neurons
        if group_rows.numel():
            counts = torch.bincount(group_rows, minlength=rows.size)
            offsets = torch.cumsum(counts, 0) - counts
            run.delivery.deliver_group(rows, group_rows, group_neurons, flat, offsets, run.grad)
            self.keys = np.setdiff1d(self.keys, flat.numpy(), assume_unique=True)
            # R7.4: deliveries per neuron (their synops are summed at the end of the timestep).
            rows.np("delivered").reshape(-1)[flat.numpy()] += 1.0
        else:
            rows.cur = torch.zeros_like(rows.v)
        deliver_inputs(run, rows, in_rows, in_idx)
        if rows.due is not None:  # R4.7: an input entry settles the populations the input reaches
            pops = torch.from_numpy(self.host["pop_of"][group_neurons.numpy()])
            next_settle(run, rows, torch.cat([group_rows, in_rows]), torch.cat([pops, torch.zeros_like(in_rows)]))

    def _select(self, rows: RowSet, state: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Each row's group (R5.2-R5.4) and the split of the pending keys, in one Rust call.

        ``state`` holds the rows' hash states after ``(seed, sample, t, k)``. Returns
        the selected entries' rows, neurons and keys (sorted by key), the index of each
        row's first selected entry, and the pending keys left.
        """
        opts, n_neu = self.run.opts, self.run.plan.n_neurons
        f = opts.forward_group_size
        if opts.scheduler is Scheduler.FIFO:
            return _engine.select_pending(self.keys, self.counts, f, n_neu, "fifo", seq=rows.np("seq"))
        if opts.scheduler is Scheduler.RANDOM:
            return _engine.select_pending(self.keys, self.counts, f, n_neu, "random", state=state)
        jitter = opts.jitter
        return _engine.select_pending(
            self.keys,
            self.counts,
            f,
            n_neu,
            "momentum",
            state=state if jitter > 0 else None,
            vpre=np.ascontiguousarray(rows.np("vpre")),
            jitter=jitter,
        )

"""The counters of docs/semantics.md section 7, as the torch engine keeps them.

Each row set holds a float64 table ``[rows, C]`` of the counters of the running
timestep (:class:`CounterColumns`); the latency records (R7.7) are written into it as
the first output spikes happen (:func:`record_latency` in torch; the host backend's
is one Rust call, ``_engine.record_outputs``), and so is the step of the timestep in
which the running prediction last changed (R7.9, :func:`record_decision`), the
per-neuron counts are
reduced into it when the timestep ends (:func:`reduce_timestep`), and the tables of
every timestep become the arrays of :data:`asyncsnn.result.COUNTER_FIELDS`
(:func:`finish_counters`).
"""

from __future__ import annotations

import torch

from asyncsnn.result import COUNTER_FIELDS
from asyncsnn.torch.engine.rows import RowSet

__all__ = [
    "CounterColumns",
    "finish_counters",
    "record_decision",
    "record_latency",
    "reduce_timestep",
]


class CounterColumns:
    """Column layout of the per-timestep counter table ``[rows, C]`` (section 7).

    ``spikes``, ``synops`` and ``outputs`` are slices (per population, per projection,
    per output neuron); the other attributes are single columns named after the
    counter they hold; ``latency`` spans the seven latency records (R7.7).

    The stable decision (R7.9) is kept per timestep: ``decision`` spans
    ``decision_k``, ``decision_spikes`` and ``decision_synops``, the forward step of the
    timestep in which the running prediction last changed and the spikes and synops of
    the timestep up to it (-1: it did not change in this timestep); ``running`` is the
    running prediction and ``totals`` (per output neuron) the output counts of the
    sample so far, both carried from one timestep to the next. ``record_layout`` is
    ``(synops start, synops stop, first_output_step, decision_k, running, totals
    start)``, the columns argument of ``_engine.record_outputs``.
    """

    def __init__(self, n_pop: int, n_proj: int, n_out: int) -> None:
        c = 0
        self.spikes = slice(c, c + n_pop)
        c += n_pop
        self.synops = slice(c, c + n_proj)
        c += n_proj
        self.outputs = slice(c, c + n_out)
        c += n_out
        (
            self.first_output_step,
            self.first_output_class,
            self.first_output_spikes,
            self.first_output_synops,
            self.first_correct_step,
            self.first_correct_spikes,
            self.first_correct_synops,
            self.dropped,
            self.queue_peak,
            self.forward_steps,
            self.decision_k,
            self.decision_spikes,
            self.decision_synops,
            self.running,
        ) = range(c, c + 14)
        self.latency = slice(self.first_output_step, self.first_correct_synops + 1)
        self.decision = slice(self.decision_k, self.decision_synops + 1)
        c += 14
        self.totals = slice(c, c + n_out)
        self.n = c + n_out
        # The layout that the host backend's records kernel reads (_engine.record_outputs).
        self.record_layout = (
            self.synops.start,
            self.synops.stop,
            self.first_output_step,
            self.decision_k,
            self.running,
            self.totals.start,
        )


def record_latency(
    rows: RowSet, columns: CounterColumns, pt: dict[str, torch.Tensor], k: int, out_spikes: torch.Tensor
) -> bool:
    """R7.7: record the first output (and first correct) spike of the timestep.

    ``out_spikes`` is the float ``[n, n_out]`` spike vector of the output population at
    forward step ``k``. Updates ``rows.latency_open`` and returns whether some row whose
    timestep is running may still record one (False once every such row has its first
    output spike and, with labels, its first correct one).
    """
    if float((out_spikes.amax(1) * rows.latency_open).amax()) <= 0:  # nothing to record in this step
        return True
    f64 = torch.float64
    cnt, col = rows.counters, columns
    new = (out_spikes.amax(1) > 0) & (cnt[:, col.first_output_step] < 0)
    hit = None
    if rows.labels is not None:
        hit = (out_spikes.gather(1, rows.labels.unsqueeze(1)).squeeze(1) > 0) & (cnt[:, col.first_correct_step] < 0)
    spk_t = rows.spikes().sum(1).to(f64)  # spikes of steps 0..k (this step included)
    # synops of the deliveries integrated in steps 0..k: input + deliveries made so far.
    syn_t = cnt[:, col.synops].sum(1)
    if rows.delivered is not None:
        syn_t = syn_t + rows.delivered.to(f64) @ pt["fanout_total_f64"]
    step_k = torch.full_like(spk_t, k)
    first_class = out_spikes.argmax(1).to(f64)  # the first (smallest) index spiking
    fo = slice(col.first_output_step, col.first_output_synops + 1)
    cnt[:, fo] = torch.where(new.unsqueeze(1), torch.stack([step_k, first_class, spk_t, syn_t], 1), cnt[:, fo])
    still = cnt[:, col.first_output_step] < 0
    if hit is not None:
        fc = slice(col.first_correct_step, col.first_correct_synops + 1)
        cnt[:, fc] = torch.where(hit.unsqueeze(1), torch.stack([step_k, spk_t, syn_t], 1), cnt[:, fc])
        still = still | (cnt[:, col.first_correct_step] < 0)
    rows.latency_open = still.to(torch.float32)
    return bool((still & ~rows.done).any())  # rows whose timestep ended spike no more


def record_decision(
    rows: RowSet, columns: CounterColumns, pt: dict[str, torch.Tensor], k: int, out_spikes: torch.Tensor
) -> None:
    """R7.9: re-evaluate the running prediction after the fire phase of step ``k``.

    ``out_spikes`` is the float ``[n, n_out]`` spike vector of the output population at
    forward step ``k``; it is added to the ``totals`` columns. Where the argmax of the
    totals (ties to the smallest index) differs from the ``running`` column, the step,
    and the spikes and synops of the timestep so far (counted as by
    :func:`record_latency`), replace the timestep's ``decision`` columns.
    """
    f64 = torch.float64
    cnt, col = rows.counters, columns
    tot = cnt[:, col.totals] + out_spikes.detach().to(f64)
    cnt[:, col.totals] = tot
    now = torch.where(tot.amax(1) > 0, tot.argmax(1).to(f64), -1.0)  # argmax: the first maximum
    changed = now != cnt[:, col.running]
    if not bool(changed.any()):
        return
    spk_t = rows.spikes().sum(1).to(f64)  # spikes of steps 0..k (this step included)
    syn_t = cnt[:, col.synops].sum(1)  # synops of the deliveries integrated in steps 0..k
    if rows.delivered is not None:
        syn_t = syn_t + rows.delivered.to(f64) @ pt["fanout_total_f64"]
    rec = torch.stack([torch.full_like(spk_t, k), spk_t, syn_t], 1)
    cnt[:, col.decision] = torch.where(changed.unsqueeze(1), rec, cnt[:, col.decision])
    cnt[:, col.running] = now


def reduce_timestep(rows: RowSet, columns: CounterColumns, pt: dict[str, torch.Tensor], out_slice: slice) -> None:
    """Reduce the per-neuron counts of the timestep into ``rows.counters`` (R7.1, R7.2, R7.4-R7.6)."""
    f64 = torch.float64
    fired = rows.spikes()
    cnt = rows.counters
    cnt[:, columns.spikes] = fired.to(f64) @ pt["pop_onehot_f64"]
    cnt[:, columns.outputs] = fired[:, out_slice].to(f64)
    if rows.delivered is not None:
        cnt[:, columns.synops] += rows.delivered.to(f64) @ pt["fanout_f64"]
    cnt[:, columns.forward_steps] = rows.steps.to(f64)
    cnt[:, columns.queue_peak] = rows.queue_peak.to(f64)


def finish_counters(rec: torch.Tensor, input_events: torch.Tensor, columns: CounterColumns) -> dict[str, torch.Tensor]:
    """Section 7 arrays from the per-timestep counter tables ``rec [T, B, C]``."""
    col = columns
    per_t = rec.transpose(0, 1)  # [B, T, C]
    ts_out = per_t[:, :, col.outputs]
    out_counts = ts_out.sum(1)
    best = out_counts.max(1)
    spikes = per_t[:, :, col.spikes].sum(1)
    syn = per_t[:, :, col.synops].sum(1)
    steps = per_t[:, :, col.forward_steps]
    ts_spikes = per_t[:, :, col.spikes].sum(2)
    ts_synops = per_t[:, :, col.synops].sum(2)
    # R7.9: the last timestep in which the running prediction changed, and the step,
    # spikes and synops of that change counted from the start of the sample.
    changed = per_t[:, :, col.decision_k] >= 0
    t_index = torch.arange(per_t.shape[1], device=per_t.device)
    last = torch.where(changed, t_index, -1).amax(1)  # T >= 1
    at = last.clamp(min=0).unsqueeze(1)

    def decided(before: torch.Tensor, column: int) -> torch.Tensor:
        earlier = (before.cumsum(1) - before).gather(1, at).squeeze(1)
        return torch.where(last >= 0, earlier + per_t[:, :, column].gather(1, at).squeeze(1), -1)

    res = {
        "predictions": torch.where(best.values > 0, out_counts.argmax(1), -1),
        "output_counts": out_counts,
        "timestep_output_counts": ts_out,
        "spikes": spikes,
        "spikes_total": spikes.sum(1),
        "input_events": input_events,
        "synops": syn.sum(1),
        "synops_per_projection": syn,
        "forward_steps": steps.sum(1),
        "timestep_forward_steps": steps,
        "dropped_spikes": per_t[:, :, col.dropped].sum(1),
        "queue_peak": per_t[:, :, col.queue_peak].amax(1),
        "first_output_step": per_t[:, :, col.first_output_step],
        "first_output_class": per_t[:, :, col.first_output_class],
        "first_output_spikes": per_t[:, :, col.first_output_spikes],
        "first_output_synops": per_t[:, :, col.first_output_synops],
        "first_correct_step": per_t[:, :, col.first_correct_step],
        "first_correct_spikes": per_t[:, :, col.first_correct_spikes],
        "first_correct_synops": per_t[:, :, col.first_correct_synops],
        "timestep_spikes": ts_spikes,
        "timestep_synops": ts_synops,
        "decision_step": decided(steps, col.decision_k),
        "decision_timestep": last,
        "decision_spikes": decided(ts_spikes, col.decision_spikes),
        "decision_synops": decided(ts_synops, col.decision_synops),
    }
    assert set(res) == set(COUNTER_FIELDS)
    return {k: v.contiguous() for k, v in res.items()}

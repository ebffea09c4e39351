"""The state of a set of rows (samples) within one timestep, and the merge of row sets.

The batch runs in lock step, one forward step at a time; the rows whose timestep has
ended are set aside (:meth:`RowSet.take`) and merged back into batch order when the
timestep ends (:func:`merge_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from asyncsnn.torch._kernels import host_array
from asyncsnn.torch._rng import mix32_t

__all__ = ["RowSet", "merge_rows"]


@dataclass
class RowSet:
    """State of a set of rows (samples) within one timestep; :meth:`take` keeps a subset.

    Masks and counts are float tensors (0/1 masks and small integer counts are exact),
    since float arithmetic is much cheaper than boolean and int64 kernels. Spikes are
    counted per neuron and reduced to the per-population counters once, when the
    timestep ends: without refractory dropout a neuron fires at most once per timestep,
    so the spikes are ``1 - live`` and need no tensor of their own. The torch
    backend's unlayered deliveries add their synops to ``counters`` as they happen; the
    others are counted per neuron (``delivered``) and reduced at the end.
    """

    batch_rows: torch.Tensor  # int64 [n] positions of the rows in the batch
    v: torch.Tensor  # float32 [n, N] membrane (graph)
    live: torch.Tensor  # float32 [n, N] 1.0 = not refractory
    q: torch.Tensor  # float32 [n, N] spikes not delivered yet (graph): pending multiplicities, output spikes
    fired: torch.Tensor | None  # float32 [n, N] spikes of each neuron in this timestep (dropout only)
    delivered: torch.Tensor | None  # float32 [n, N] deliveries of each neuron in this timestep
    steps: torch.Tensor  # float32 [n] forward steps run in this timestep
    queue_peak: torch.Tensor  # float32 [n] largest pending count so far (R7.6)
    done: torch.Tensor  # bool [n] the timestep of the row has ended (state frozen)
    counters: torch.Tensor  # float64 [n, C] other counters of this timestep (CounterColumns)
    vpre: torch.Tensor | None  # float32 [n, N] membrane at the latest spike (momentum)
    settled: torch.Tensor | None  # float32 [n] (grad): n_pop + 1 - (last population whose silent spikes left)
    seq: torch.Tensor | None  # int64 [n, N] fifo sequence numbers
    next_seq: torch.Tensor | None  # int64 [n] next sequence number
    labels: torch.Tensor | None  # int64 [n]
    hash_t: torch.Tensor | None  # int64 [n] hash state after (seed, sample, t)
    hash_k: torch.Tensor | None  # int64 [n, K] hash states after (seed, sample, t, k) for k < K
    latency_open: torch.Tensor  # float32 [n] 1.0 = a first (correct) output spike may still be recorded
    cur: torch.Tensor | None = None  # float32 [n, N] currents of the next integration
    output_counts: torch.Tensor | None = None  # float32 [n, n_out] differentiable output counts (end of timestep)
    # Settling (R4.7, R4.8), only when some population settles:
    due: torch.Tensor | None = None  # float32 [n, P] 1.0 = the population is due (R3.1)
    settle: torch.Tensor | None = None  # float32 [n, P] 1.0 = the population settles at the next integration
    debt: torch.Tensor | None = None  # float32 [n, N] 1.0 = a "subtract_delayed" neuron owes its threshold
    carry: torch.Tensor | None = None  # float32 [n, N] carried current C (layered, recurrent, R4.9; graph)
    syn: torch.Tensor | None = None  # float32 [n, N] synaptic current S (R4.12; graph), 0 where none
    syn_in: torch.Tensor | None = None  # float32 [n, N] silent currents awaiting the settle (R4.12, grad)
    out_spikes: torch.Tensor | None = None  # float32 [n, n_out] output spikes (graph), when the output is a source
    xin: torch.Tensor | None = None  # float32 [n, n_in] pending input entries' values, 0 = none (R4.13)
    # surrogate_terms="every_step" (section 9), only under autograd:
    open_terms: torch.Tensor | None = None  # float32 [n, N] 1.0 = the membrane has no surrogate term yet
    views: dict[str, tuple[torch.Tensor, np.ndarray]] = field(default_factory=dict, repr=False)

    def take(self, idx: torch.Tensor) -> RowSet:
        """The rows ``idx`` (int64 positions within this set)."""
        # index_select: the same copy as x[idx], at a third of the cost on small tensors.
        parts: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        taken: dict[str, Any] = {name: None if x is None else x.index_select(0, idx) for name, x in parts.items()}
        return RowSet(**taken)

    @property
    def size(self) -> int:
        """The number of rows."""
        return self.batch_rows.numel()

    def np(self, name: str) -> np.ndarray:
        """A numpy view of the CPU tensor ``name`` (cached while the attribute holds that tensor)."""
        tensor = getattr(self, name)
        cached = self.views.get(name)
        if cached is None or cached[0] is not tensor:
            cached = (tensor, host_array(tensor))
            self.views[name] = cached
        return cached[1]

    def spikes(self) -> torch.Tensor:
        """float32 ``[n, N]``: the spikes of each neuron so far in this timestep."""
        return 1.0 - self.live if self.fired is None else self.fired

    def step_hash(self, k: int) -> torch.Tensor:
        """int64 ``[n]``: the hash state after ``(seed, sample, t, k)`` (R5.5)."""
        assert self.hash_t is not None
        assert self.hash_k is not None
        n_k = self.hash_k.shape[1]
        if k >= n_k:  # computed for a block of steps at a time
            self.extend_hash(2 * n_k + k)
        return self.hash_k[:, k]

    def extend_hash(self, width: int) -> None:
        """Compute the hash states of the steps ``k < width`` (``hash_k`` then has ``width`` columns)."""
        assert self.hash_t is not None
        assert self.hash_k is not None
        n_k = self.hash_k.shape[1]
        if width > n_k:
            more = torch.arange(n_k, width, dtype=torch.int64, device=self.hash_t.device)
            self.hash_k = torch.cat([self.hash_k, mix32_t(self.hash_t.unsqueeze(1) ^ more)], 1)


_FIELDS = tuple(f.name for f in fields(RowSet) if f.name != "views")


def merge_rows(parts: list[RowSet]) -> RowSet:
    """Concatenate row sets that were set aside back into batch order.

    The row sets were set aside at different forward steps, so the per-step scratch
    state may have different widths: the hash states ``hash_k`` grow in blocks while a
    set runs past the steps computed so far. Every set is brought to the widest one
    first (the states are a pure function of the row and ``k``, R5.5), so that the
    merged rows are one consistent set; a field that is ``None`` in one set must be
    ``None`` in all.
    """
    if len(parts) == 1:
        return parts[0]
    if parts[0].hash_k is not None:
        width = max(p.hash_k.shape[1] for p in parts if p.hash_k is not None)
        for p in parts:
            p.extend_hash(width)
    order = torch.cat([p.batch_rows for p in parts])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    merged: dict[str, Any] = {}
    for name in _FIELDS:
        vals = [getattr(p, name) for p in parts]
        present = [v is not None for v in vals]
        if not any(present):
            merged[name] = None
            continue
        if not all(present):  # pragma: no cover - a bug: the row sets disagree on what they hold
            raise AssertionError(f"merge_rows: field {name} is set in some row sets only")
        merged[name] = torch.cat(vals).index_select(0, inv)
    return RowSet(**merged)

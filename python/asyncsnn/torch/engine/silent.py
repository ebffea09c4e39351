"""Silent spikes: the surrogate gradient of the neurons that do not fire (section 9).

A neuron that does not fire must still pass a surrogate gradient (as ``s = 0`` does in
BPTT). The engine gives each non-refractory neuron one **silent spike** per timestep:
a spike of value exactly 0 whose backward is that of ``H(V - theta)`` and of the reset
``V (1 - s)``, emitted when the neuron's population is *settled* -- at the end of the
first fire phase after which no neuron of a lower population is pending and neither it
nor a lower population is due (R4.7), so that no current can reach it any more and
``V`` is its final membrane of the timestep -- or at the end of the timestep. Its (zero) currents go straight into the targets' membranes,
population by population, before the targets emit theirs; output neurons add theirs
to the differentiable output counts. The forward is unchanged (every value added is
0), so the silent spikes are one autograd node with an identity forward
(:func:`~asyncsnn.torch._kernels.settle`).

Population ``p`` is settled in a row when no neuron of a population below ``p`` is
pending. With ranks ``r_p = P + 1 - p`` and ``top`` the largest rank of a pending
neuron (0 if none), that is ``top <= r_p``; ``rows.settled`` is the smallest rank
flushed so far (``P + 1``: none). With the ``layered`` scheduler a population settles
exactly when its group is delivered, so training is layered BPTT (R4.5).
"""

from __future__ import annotations

import numpy as np
import torch

from asyncsnn.torch._kernels import settle
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.engine.settling import due_rank

__all__ = ["emit_at_end", "emit_settled", "emit_settled_host"]


def emit_settled(run: RunContext, rows: RowSet, top: torch.Tensor) -> None:
    """Silent spikes of the populations that became settled during the step loop (torch).

    ``top`` is float32 ``[n]``: the largest rank of a pending neuron of each row (0 if
    none). The non-refractory neurons of each newly settled population emit a
    zero-valued spike: the surrogate gradient of ``H(V - theta)`` and of the reset
    ``V (1 - 0)``, with (zero) currents into the targets' membranes (refractory
    targets discard them), in population order, so that a target population settled
    at the same time emits after receiving them.
    """
    assert rows.settled is not None
    if rows.due is not None:
        top = torch.maximum(top, _due_top(run, rows))
    # Some population settles when a source rank r has top <= r < settled.
    if bool((torch.clamp(top, min=run.min_source_rank) < rows.settled).any()):
        _emit(run, rows, top)


def _due_top(run: RunContext, rows: RowSet) -> torch.Tensor:
    """float32 ``[n]``: one more than the largest rank of a due population (R4.7), 0 if none.

    A due population has yet to settle (its bias and debts, R4.7, R4.8) and may still
    fire; neither it nor a population above it has its final membrane.
    """
    rank = due_rank(run, rows)
    return torch.where(rank > 0, rank + 1.0, rank)


def emit_at_end(run: RunContext, rows: RowSet) -> None:
    """Silent spikes at the end of the timestep.

    Every population that has not emitted does, and the output neurons' silent spikes
    join the differentiable output counts ``rows.output_counts``.
    """
    _emit(run, rows, None)


def _emit(run: RunContext, rows: RowSet, top: torch.Tensor | None) -> None:
    assert rows.settled is not None
    assert run.surrogate is not None
    top_ = torch.zeros_like(rows.settled) if top is None else top
    ranks = run.pt["src_rank_f"]
    need = (top_.unsqueeze(1) <= ranks) & (rows.settled.unsqueeze(1) > ranks)  # [n, source populations]
    emits = need.any(0).tolist()
    rows.settled = torch.minimum(rows.settled, top_.clamp(min=1.0))
    pops = tuple(p for p, e in zip(run.plan.source_populations, emits) if e)
    if not pops and top is not None:
        return
    emitting = [need[:, i].nonzero().squeeze(1) for i, e in enumerate(emits) if e]
    spec = run.delivery.settle_spec(pops, top is None, run.surrogate)
    if top is None:
        rows.v, rows.output_counts = settle(spec, rows.v, rows.live, emitting, rows.output_counts)
    else:
        rows.v = settle(spec, rows.v, rows.live, emitting)


def emit_settled_host(run: RunContext, rows: RowSet, top: np.ndarray) -> None:
    """:func:`emit_settled` with the bookkeeping in numpy (the host backend)."""
    assert rows.settled is not None
    assert run.surrogate is not None
    settled = rows.np("settled")
    if rows.due is not None:
        top = np.maximum(top, _due_top(run, rows).numpy())
    # Some population settles when a source rank r has top <= r < settled.
    if not (np.maximum(top, np.float32(run.min_source_rank)) < settled).any():
        return
    ranks = run.plan.host_arrays()["src_rank_f"]
    need = (top[:, None] <= ranks) & (settled[:, None] > ranks)  # [n, source populations]
    np.minimum(settled, np.maximum(top, np.float32(1.0)), out=settled)
    pops, emitting = [], []
    for i, p in enumerate(run.plan.source_populations):
        idx = np.flatnonzero(need[:, i])
        if idx.size:
            pops.append(p)
            emitting.append(torch.from_numpy(idx))
    if pops:
        rows.v = settle(run.delivery.settle_spec(tuple(pops), False, run.surrogate), rows.v, rows.live, emitting)

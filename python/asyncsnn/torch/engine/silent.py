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
(:func:`~asyncsnn.torch._kernels.settle`). Currents into a population with a synaptic
current (R4.12) pass through its ``S`` instead (:func:`_synaptic_silent`), and carried
recurrent currents under ``layered`` go into ``C`` (:func:`_carry_silent`).

Population ``p`` is settled in a row when no neuron of a population below ``p`` is
pending. With ranks ``r_p = P + 1 - p`` and ``top`` the largest rank of a pending
neuron (0 if none), that is ``top <= r_p``; ``rows.settled`` is the smallest rank
flushed so far (``P + 1``: none). With the ``layered`` scheduler a population settles
exactly when its group is delivered, so training is layered BPTT (R4.5).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from asyncsnn.torch._kernels import settle
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.engine.settling import due_rank
from asyncsnn.torch.surrogate import spike

__all__ = ["emit_at_end", "emit_settled", "emit_settled_host"]


def emit_settled(run: RunContext, rows: RowSet, top: torch.Tensor) -> None:
    """Silent spikes of the populations that became settled during the step loop (torch).

    ``top`` is float32 ``[n]``: the largest rank of a pending neuron of each row (0 if
    none). The non-refractory neurons of each newly settled population emit a
    zero-valued spike: the surrogate gradient of ``H(V - theta)`` and of the reset
    ``V (1 - 0)``, with (zero) currents into the targets' membranes (refractory
    targets discard them), in population order, so that a target population settled
    at the same time emits after receiving them. (With synaptic currents a row whose
    timestep has ended emits at the end, see :func:`_finished_rows_wait`.)
    """
    assert rows.settled is not None
    if rows.due is not None:
        top = torch.maximum(top, due_rank(run, rows))
    if rows.syn is not None:
        top = torch.where(rows.done, torch.full_like(top, _finished_rows_wait(run)), top)
    # Some population settles when a source rank r has top <= r < settled.
    if bool((torch.clamp(top, min=run.min_source_rank) < rows.settled).any()):
        _emit(run, rows, top)


def _finished_rows_wait(run: RunContext) -> float:
    """A rank above every population's: the rows given it emit nothing before the end.

    A row whose timestep has ended but that runs on in lock step with the batch (not set
    aside) takes its silent spikes at the end of the timestep, as it would alone or set
    aside. It matters with synaptic currents only: the silent spikes of one emission
    send their currents into synaptic currents before any of them is taken
    (:func:`_synaptic_silent`), so which populations emit together changes the graph.
    """
    return float(run.plan.n_populations + 2)


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
    out = run.plan.n_populations  # a recurrent source: it emits at the end only, with its counts
    emits = [e and p != out for p, e in zip(run.plan.source_populations, need.any(0).tolist())]
    rows.settled = torch.minimum(rows.settled, top_.clamp(min=1.0))
    pops = tuple(p for p, e in zip(run.plan.source_populations, emits) if e)
    if not pops and top is not None:
        return
    emitting = [need[:, i].nonzero().squeeze(1) for i, e in enumerate(emits) if e]
    spec = run.delivery.settle_spec(pops, top is None, run.surrogate, run.carry)
    if rows.syn is not None:
        _synaptic_silent(run, rows, list(zip(pops, emitting)), top is None)
    v = rows.v
    if top is None:
        rows.v, rows.output_counts = settle(spec, v, rows.live, emitting, rows.output_counts)
    else:
        rows.v = settle(spec, v, rows.live, emitting)
    if run.carry:
        _carry_silent(run, rows, v, list(zip(pops, emitting)), top is None)


def _carry_silent(
    run: RunContext, rows: RowSet, v: torch.Tensor, emitting: list[tuple[int, torch.Tensor]], end: bool
) -> None:
    """The silent spikes' zero currents through the recurrent projections, into ``rows.carry``.

    Under ``layered`` a recurrent projection's current is carried to the next timestep
    (R4.9), so the silent spikes of its source (section 9) go into ``C`` too, as the
    term ``R s_{t-1}`` of R4.5 in BPTT: ``c = H(V - theta)`` (exactly 0, at the membrane
    ``v`` before the settle) with the surrogate backward, times the non-refractory mask.
    ``emitting``: the populations that emit with their rows; ``end``: the output
    population emits too, in every row.
    """
    assert rows.carry is not None
    plan, theta = run.plan, run.pt["theta"]
    sources: list[tuple[int, torch.Tensor | None]] = list(emitting)
    if end:
        sources.append((plan.n_populations, None))
    for p, idx in sources:
        if p not in plan.recurrent_sources:
            continue
        sl = slice(plan.offsets[p], plan.offsets[p] + plan.sizes[p])
        v_p, live_p = (v, rows.live) if idx is None else (v.index_select(0, idx), rows.live.index_select(0, idx))
        c = spike(v_p[:, sl] - theta[sl], run.surrogate) * live_p[:, sl]  # value 0
        cur = run.delivery.dense_of([(p, c)], c.shape[0], True)
        rows.carry = rows.carry + cur if idx is None else rows.carry.index_add(0, idx, cur)


def _synaptic_silent(run: RunContext, rows: RowSet, emitting: list[tuple[int, torch.Tensor]], end: bool) -> None:
    """The silent spikes' zero currents into populations with a synaptic current (R4.12).

    A current into such a population passes through ``S`` (section 9): into a target
    population that is still due it joins the current of its settle (``rows.syn_in``,
    added before ``S <- alpha S + I``, like ``C``), so that under ``layered`` it is the
    ``W s_t`` of ``S_t = alpha S_{t-1} + W s_t`` in BPTT; into a target that has settled
    it is a later delivery, ``S <- S + I`` and ``V <- V + I`` unless refractory. The
    spike is ``c = H(V - theta)`` (exactly 0) with the surrogate backward, times the
    non-refractory mask; the populations emit in increasing order, each after receiving
    the currents of the lower ones. ``emitting``: the populations that emit with their
    rows; ``end``: the output population emits too, in every row. (Carried recurrent
    currents go to ``C``, see :func:`_carry_silent`; :func:`~asyncsnn.torch._kernels.settle`
    sends the others to the membranes.) Every value added is 0, so this is one autograd
    node with an identity forward (:class:`_SynapticSilent`).
    """
    plan, pt = run.plan, run.pt
    assert rows.due is not None
    entries: list[tuple[int, torch.Tensor | None]] = list(emitting)
    if end:
        entries.append((plan.n_populations, None))
    sources: list[tuple[slice, torch.Tensor, Any]] = []
    idxs: list[torch.Tensor] = []
    for p, idx in entries:
        targets = run.delivery.synaptic_targets(p, run.carry)
        if not targets:
            continue
        sl = slice(plan.offsets[p], plan.offsets[p] + plan.sizes[p])
        sources.append((sl, pt["theta"][sl], targets))
        idxs.append(torch.arange(rows.size, device=rows.v.device) if idx is None else idx)
    if not sources:
        return
    waits = rows.due.index_select(1, pt["pop_idx"]) > 0  # the neuron's population has not settled
    rows.v, rows.syn, rows.syn_in = _SynapticSilent.apply(
        tuple(sources), run.surrogate, rows.v, rows.syn, rows.syn_in, rows.live, waits, *idxs
    )


class _SynapticSilent(torch.autograd.Function):
    """:func:`_synaptic_silent`: ``V``, ``S`` and the waiting currents pass unchanged forward.

    Backward, in reverse order of emission, a source's zero spikes ``c`` (in its rows
    ``idx``) get ``dc = sum_targets g_I W``, the gradient of the current ``I = c W`` into
    each target neuron being ``g_wait`` where its population waits for its settle and
    ``g_S + g_V live`` where it has settled; the source's membrane then gets
    ``dc * sigma'(V - theta) * live``. ``S`` and the waiting currents pass their
    gradients on unchanged. (The same float32 terms as the torch operations it replaces,
    ``c W`` added to ``S``, ``V`` and the waiting currents, up to summation order.)
    """

    @staticmethod
    def forward(
        ctx: Any,
        sources: tuple[tuple[slice, torch.Tensor, Any], ...],
        surrogate: Any,
        v: torch.Tensor,
        syn: torch.Tensor,
        syn_in: torch.Tensor,
        live: torch.Tensor,
        waits: torch.Tensor,
        *idxs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx.sources = sources
        ctx.surrogate = surrogate
        ctx.save_for_backward(v, live, waits, *idxs)
        return v, syn, syn_in

    @staticmethod
    def backward(ctx: Any, g_v: torch.Tensor, g_syn: torch.Tensor, g_in: torch.Tensor) -> tuple[Any, ...]:
        v, live, waits, *idxs = ctx.saved_tensors
        g = g_v.clone(memory_format=torch.contiguous_format)
        n_rows = g.shape[0]
        for (sl, theta, targets), idx in zip(reversed(ctx.sources), reversed(idxs)):
            # The gradient of a current into each neuron (only the targets' columns are read).
            g_cur = torch.where(waits, g_in, g_syn + g * live)
            whole = idx.numel() == n_rows  # every row emits (idx is then 0..n-1)
            if not whole:
                g_cur = g_cur.index_select(0, idx)
            g_c: torch.Tensor | None = None
            for t_sl, transposed in targets:
                gc = transposed(g_cur[:, t_sl])
                g_c = gc if g_c is None else g_c + gc
            assert g_c is not None
            v_s, live_s = v[:, sl], live[:, sl]
            if not whole:
                v_s, live_s = v_s.index_select(0, idx), live_s.index_select(0, idx)
            term = g_c * (ctx.surrogate.derivative(v_s - theta) * live_s)
            if whole:
                g[:, sl] += term
            else:
                g[:, sl].index_add_(0, idx, term)
        return (None, None, g, g_syn, g_in, None, None, *([None] * len(idxs)))


def emit_settled_host(run: RunContext, rows: RowSet, top: np.ndarray) -> None:
    """:func:`emit_settled` with the bookkeeping in numpy (the host backend)."""
    assert rows.settled is not None
    assert run.surrogate is not None
    settled = rows.np("settled")
    if rows.due is not None:
        top = np.maximum(top, due_rank(run, rows).numpy())
    if rows.syn is not None:
        top = np.where(rows.np("done"), np.float32(_finished_rows_wait(run)), top)
    # Some population settles when a source rank r has top <= r < settled.
    if not (np.maximum(top, np.float32(run.min_source_rank)) < settled).any():
        return
    ranks = run.plan.host_arrays()["src_rank_f"]
    need = (top[:, None] <= ranks) & (settled[:, None] > ranks)  # [n, source populations]
    np.minimum(settled, np.maximum(top, np.float32(1.0)), out=settled)
    pops, emitting = [], []
    out = run.plan.n_populations  # a recurrent source: it emits at the end only, with its counts
    for i, p in enumerate(run.plan.source_populations):
        idx = np.flatnonzero(need[:, i])
        if idx.size and p != out:
            pops.append(p)
            emitting.append(torch.from_numpy(idx))
    if pops:
        if rows.syn is not None:
            _synaptic_silent(run, rows, list(zip(pops, emitting)), False)
        rows.v = settle(run.delivery.settle_spec(tuple(pops), False, run.surrogate), rows.v, rows.live, emitting)

"""Forward step ``k`` of the running rows: integrate and fire (R4.3.1-R4.3.2, R4.6, R8.3).

``U = V + I * live`` (``live`` = 0 for refractory neurons, whose membrane is 0 and
whose current is discarded); fire ``U > theta`` (strict), reset to 0 in the graph,
refractory unless dropout (R4.6: ``u(seed, sample, t, k, q, 1) < p`` compared in
float64, drawn for the fired neurons only), ``Q += s`` (``Q`` keeps the autograd link
to the spike that produced it); fifo sequence numbers by a cumulative sum over ids, so
enqueues happen in increasing id order (R3.2); the momentum key ``v_pre`` of the
neurons that fire (R5.4). Integrate, fire, reset and enqueue are one fused autograd
node (:func:`asyncsnn.torch._kernels.step`, or one Rust call,
:func:`~asyncsnn.torch._kernels.step_fused`, on the host backend).

A network with settling populations (biases, reset modes, R4.7, R4.8) runs
:func:`~asyncsnn.torch.engine.settling.settling_step` instead, in torch on both backends.

A step whose membranes are not all finite is recomputed with exact selects (``inf *
0`` would be NaN): the current of a refractory neuron is discarded whatever it is, and
a non-refractory membrane that is not finite fails its sample (R8.3). The batch runs
in lock step, so each sample's first failure (timestep, forward step, lowest neuron) is
recorded and the run raises for the lowest failing sample once no earlier sample can
fail.
"""

from __future__ import annotations

import math

import torch

from asyncsnn.rng import STREAM_DROPOUT, STREAM_SPIKE_DROPOUT
from asyncsnn.torch._kernels import fused_step_applies, step, step_exact, step_fused
from asyncsnn.torch._rng import hash_neurons, uniform24
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.engine.settling import settling_step
from asyncsnn.torch.surrogate import spike

__all__ = ["drop_spikes", "forward_step", "open_terms"]


def forward_step(
    run: RunContext, rows: RowSet, t: int, k: int, with_fired: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integrate and fire the rows' neurons at forward step ``k`` of timestep ``t``.

    Consumes ``rows.cur`` and updates the membranes, ``Q``, the refractory mask and
    the per-scheduler state of ``rows`` in place.

    Returns
    -------
    spikes, fired
        float32 ``[n, N]`` 0/1 spikes of the step (no graph), and their int64 flat
        positions ``row * N + neuron``, ascending (``None`` unless ``with_fired``).

    Raises
    ------
    EngineError
        When the first row of the batch has a non-refractory membrane that is not
        finite (R8.3; later rows' failures are raised by the driver at the end).
    """
    integ = open_terms(run, rows) if run.every_step else None
    if run.plan.any_settling:
        sd, fired = _settling_forward_step(run, rows, t, k, with_fired)
    else:
        sd, fired = _plain_forward_step(run, rows, t, k, with_fired)
    if integ is not None:  # the membranes integrated now and not fired still owe their term
        assert rows.open_terms is not None
        rows.open_terms = torch.maximum(rows.open_terms, integ) * (1.0 - sd)
    return sd, fired


def open_terms(run: RunContext, rows: RowSet) -> torch.Tensor:
    """``surrogate_terms="every_step"``: the surrogate terms of the membranes about to change.

    Section 9: a non-refractory neuron takes a surrogate term of ``H(V - theta)`` at every
    forward step in which it is integrated with a non-zero current or its population
    settles, also when it does not fire. The term of the spike that fires, and the term
    of the final membrane of the timestep (the silent spike, :mod:`~asyncsnn.torch.engine.silent`),
    are those of ``"fired"``; every other membrane of the timestep is one that the
    neuron leaves by a further integration. So, just before the integration, each
    integrated neuron whose current membrane has no term yet (``rows.open_terms``)
    takes one: a zero-valued spike ``s = H(V - theta)`` with the surrogate backward,
    which joins the reset (``V (1 - s)``, or ``V - theta s``) and the pending
    multiplicity ``Q`` (so the output counts, and the delivery if the neuron fires
    later in the timestep). The forward values are unchanged.

    Returns float32 ``[n, N]``: 1.0 = integrated in this step (non-refractory).
    """
    cur = rows.cur
    assert cur is not None
    assert rows.open_terms is not None
    integ = (cur != 0) & (rows.live > 0)
    if rows.settle is not None and bool(rows.settle.any()):
        integ = integ | ((rows.settle.index_select(1, run.pt["pop_idx"]) > 0) & (rows.live > 0))
    integ_f = integ.to(torch.float32)
    again = rows.open_terms * integ_f
    if bool(again.any()):
        theta = run.pt["theta"]
        s = spike(rows.v - theta, run.surrogate) * again  # value 0: these neurons did not fire
        if run.plan.any_settling:
            pt = run.pt
            rows.v = rows.v - s * (rows.v * pt["reset_zero"] + theta * pt["reset_sub"])
        else:
            rows.v = rows.v - rows.v * s
        rows.q = rows.q + s
        if rows.out_spikes is not None:
            rows.out_spikes = rows.out_spikes + s[:, run.out_slice]
    return integ_f


def _plain_forward_step(
    run: RunContext, rows: RowSet, t: int, k: int, with_fired: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`forward_step` of a network without settling populations."""
    theta, sur = run.pt["theta"], run.surrogate
    cur = rows.cur
    assert cur is not None
    v_before, q_before = rows.v, rows.q
    live_new: torch.Tensor | None = None
    u: torch.Tensor | None = None
    if run.rust_kernels and fused_step_applies(rows.v, cur, rows.live, rows.q, theta, rows.vpre):
        # The same step in one Rust call, with the refractory mask and momentum keys.
        # (The momentum keys of the neurons that fire are set in place.)
        rows.v, rows.q, sd, _, fired, live_new, finite = step_fused(
            rows.v, cur, rows.live, rows.q, theta, sur, with_fired, rows.vpre
        )
        exact = not finite
    else:
        rows.v, rows.q, sd, u, fired = step(rows.v, cur, rows.live, rows.q, theta, sur, with_fired, run.rust_kernels)
        exact = not math.isfinite(float(u.sum()))  # some membrane overflowed float32 (or a false alarm)
    if exact:
        rows.v, rows.q, sd, u, fired = step_exact(v_before, cur, rows.live, q_before, theta, sur, with_fired)
        live_new = None
        # R8.3: a non-refractory membrane that is not finite fails its sample.
        bad = ~torch.isfinite(u) & (rows.live > 0)
        if bool(bad.any()):
            run.record_overflow(rows.batch_rows, bad, t, k)
            if 0 in run.failures:  # no sample comes before this one
                raise run.overflow_error()
            rows.v = torch.where(bad, torch.zeros((), dtype=torch.float32, device=bad.device), rows.v)  # void
    rows.cur = None
    hash_k = rows.step_hash(k) if rows.hash_t is not None else None
    if rows.vpre is not None and live_new is None:
        # R5.4 key: the membrane at the latest spike (read for pending neurons only).
        assert u is not None
        if exact:
            rows.vpre = torch.where(sd > 0, u, rows.vpre)
        elif run.drop_p is None:  # at most one spike per timestep: v_pre was 0
            rows.vpre = torch.addcmul(rows.vpre, u, sd)
        else:
            rows.vpre = torch.addcmul(rows.vpre * (1.0 - sd), u, sd)
    rows.live = _refractory(run, rows, sd, live_new, hash_k)
    if run.fifo:
        _sequence_numbers(run, rows, sd, q_before)
    if rows.fired is not None:
        rows.fired = rows.fired + sd
    return sd, fired


def _settling_forward_step(
    run: RunContext, rows: RowSet, t: int, k: int, with_fired: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`forward_step` of a network with settling populations (:mod:`~asyncsnn.torch.engine.settling`)."""
    q_before = rows.q
    u, sd, fired = settling_step(run, rows, t, k, with_fired)
    hash_k = rows.step_hash(k) if rows.hash_t is not None else None
    if rows.vpre is not None:  # R5.4 key: the membrane at the latest spike
        rows.vpre = torch.where(sd > 0, u, rows.vpre)
    rows.live = _refractory(run, rows, sd, None, hash_k)
    if run.fifo:
        _sequence_numbers(run, rows, sd, q_before)
    if rows.fired is not None:
        rows.fired = rows.fired + sd
    return sd, fired


def _sequence_numbers(run: RunContext, rows: RowSet, sd: torch.Tensor, q_before: torch.Tensor) -> None:
    """R3.2: a sequence number for each neuron entering the pending set, in id order."""
    assert rows.seq is not None
    assert rows.next_seq is not None
    new = (sd * run.pt["has_out_f"] > 0) & (q_before.detach() == 0)
    csum = new.cumsum(1)
    rows.seq = torch.where(new, rows.next_seq.unsqueeze(1) + csum - 1, rows.seq)
    rows.next_seq = rows.next_seq + csum[:, -1]


def _refractory(
    run: RunContext, rows: RowSet, sd: torch.Tensor, live_new: torch.Tensor | None, hash_k: torch.Tensor | None
) -> torch.Tensor:
    """The non-refractory mask after the step's spikes ``sd`` (R4.6, with refractory dropout)."""
    live = rows.live - sd if live_new is None else live_new
    drop_p = run.drop_p
    if drop_p is not None:
        r_f, c_f = sd.nonzero(as_tuple=True)
        if r_f.numel():
            assert hash_k is not None
            u = uniform24(hash_neurons(hash_k[r_f], c_f, STREAM_DROPOUT), torch.float64)
            stays = u < drop_p[c_f]
            live = live.index_put((r_f[stays], c_f[stays]), torch.ones((), dtype=torch.float32, device=live.device))
    return live


def drop_spikes(
    run: RunContext,
    rows: RowSet,
    sd: torch.Tensor,
    fired: torch.Tensor | None,
    q_before: torch.Tensor,
    k: int,
) -> torch.Tensor | None:
    """R4.11: the spikes ``sd`` of step ``k`` that spike dropout keeps out of the pending set.

    A spike of a neuron with an outgoing projection is dropped when
    ``u(seed, sample, t, k, q, 4) < p``: its pending multiplicity goes back to
    ``q_before`` (the value before the step; in the graph, the spike no longer reaches
    ``Q``), while its reset, refractoriness and ``v_pre`` stay. Returns ``fired`` (the flat
    positions ``row * N + neuron`` of the spikes, or None) without the dropped ones.
    (The fused step kernels add every spike to ``Q`` before its draw is known, so the
    dropped ones' ``Q`` is selected back here.)
    """
    n_neu = sd.shape[1]
    if fired is None:
        r_f, c_f = (sd * run.pt["has_out_f"]).nonzero(as_tuple=True)
    else:  # the positions of the spikes are known (host bookkeeping, on the CPU): no dense pass
        src = fired[run.pt["has_out"][fired % n_neu]]
        r_f, c_f = src // n_neu, src % n_neu
    if not r_f.numel():
        return fired
    hash_k = rows.step_hash(k)
    u = uniform24(hash_neurons(hash_k[r_f], c_f, STREAM_SPIKE_DROPOUT), torch.float64)
    gone = u < run.opts.spike_dropout
    if not bool(gone.any()):
        return fired
    drop = torch.zeros_like(sd, dtype=torch.bool)
    drop[r_f, c_f] = gone
    rows.q = torch.where(drop, q_before, rows.q)  # the dropped spikes' Q as before the step
    return None if fired is None else fired[~drop.view(-1)[fired]]

"""Settling populations (R1.6, R4.7) and the reset modes (R4.8), for the torch engine.

Only networks with a settling population (a bias, a synaptic current, a reset other
than ``"zero"`` or a recurrent projection into it) run this code; the others run the
version-1 code unchanged. The rows then carry:

* ``due [n, P]``: the populations that have not settled in this timestep (R3.1);
  every settling population becomes due at the timestep start (R4.1 (3));
* ``settle [n, P]``: the due populations that settle at the next integration (R4.7):
  at step 0 those targeted by a projection from the input, at step ``k + 1`` those
  targeted by a population with a neuron in the group selected at the end of step
  ``k``, and in a row whose pending set is empty the lowest due population (the
  settle-only step, R4.3.4);
* ``debt [n, N]``: the ``"subtract_delayed"`` neurons that owe their threshold, kept
  from one timestep to the next like the membranes (R4.8);
* ``carry [n, N]`` (``layered`` with recurrent projections only): the carried current
  ``C`` of R4.9, kept across timesteps like the membranes, added to the current of a
  population when it settles and then zeroed (R4.3.1). It is in the graph: a recurrent
  delivery's ``m w`` and the silent spikes' zero currents reach it, so layered training
  of a recurrent network is its BPTT (section 9).
* ``syn [n, N]`` (a population with ``alpha != 0``): the synaptic current ``S`` of
  R4.12, kept across timesteps like the membranes and in the graph; 0 for the neurons
  of other populations. After the bias and ``C``, the step's current passes through it:
  at the settle ``S <- alpha S + I`` and the membrane integrates ``S``; in a later step
  of the timestep ``S <- S + I`` (also for a refractory neuron) and the membrane
  integrates ``I``. ``syn_in [n, N]`` (under autograd) holds the silent spikes' zero
  currents into a population that has not settled yet, added to its settle's current
  (:mod:`~asyncsnn.torch.engine.silent`).

Recurrent projections (R1.2) make their targets settling (R1.6). Under an unlayered
scheduler their deliveries are ordinary deliveries into ``I`` and settle a due target
(``targets_f``); under ``layered`` they go into ``carry`` and settle nothing
(``targets_layered_f``, :class:`~asyncsnn.torch.engine.context.RunContext.targets`).

The integration of a settling population adds its bias to the summed current, then
``V += I`` and a debtor's ``V -= theta`` (R4.3.1); the fire phase checks the integrated
non-refractory neurons only (R4.3.2): a neuron of a due population waits for its
population to settle, and a refractory neuron whose reset left its membrane above the
threshold does not fire again (R4.6). All of it is per row, so samples settle
independently, at their own forward steps. The forward step is :func:`settling_step`,
in torch on both backends (the Rust kernels implement the version-1 step only); under
autograd its bias and its fire-and-reset are two custom nodes that save the settling
flags ``[n, P]`` and the values at the neurons that fire, not dense ``[n, N]`` tensors
(the same float32 operations in the same order, so the same gradients).

Gradients (section 9): the bias is part of the current (trainable like the weights);
``S`` stays in the graph with ``alpha`` a constant (snnTorch's ``Synaptic``);
the resets ``"zero"`` (``U (1 - s)``) and ``"subtract"`` (``U - theta s``) keep the spike
in the graph; the debt of ``"subtract_delayed"`` is a constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.surrogate import Surrogate, spike

__all__ = ["due_rank", "next_settle", "settling_step", "start_due", "stop_due"]


def start_due(run: RunContext, rows: RowSet) -> None:
    """R4.1 (3): every settling population is due; step 0 settles those the input reaches (R4.7).

    With non-prioritised input (R4.13) step 0 settles nothing: the input entries
    settle them when they are delivered.
    """
    pt = run.pt
    due = pt["settling_f"].expand(rows.size, -1)
    rows.settle = due * pt["targets_f"][0] if run.opts.prioritize_input else torch.zeros_like(due)
    rows.due = due - rows.settle


def stop_due(rows: RowSet, stop_f: torch.Tensor) -> None:
    """Rows stopped by R6 end their timestep with their due populations unsettled (R4.7, R6.4).

    (Every settling population is due again at the next timestep start, so the flags
    are simply cleared.)
    """
    assert rows.due is not None
    rows.due = rows.due * (1.0 - stop_f.unsqueeze(1))


def any_due(rows: RowSet) -> torch.Tensor:
    """Bool ``[n]``: the rows with a due population."""
    assert rows.due is not None
    return rows.due.amax(1) > 0


def due_rank(run: RunContext, rows: RowSet) -> torch.Tensor:
    """float32 ``[n]``: the largest blocking rank of a due population of each row, 0 if none.

    The rank of a due population ``p`` is ``P + 2 - p``: neither it nor a population above
    it has its final membrane (section 9); under an unlayered scheduler a recurrent
    projection makes it ``P + 2 - first``, ``first`` the lowest population that ``p`` can
    reach in the timestep (:meth:`~asyncsnn.torch.engine.plan.Plan._silent_ranks`).
    """
    assert rows.due is not None
    if run.silent_ranks_monotone:
        rank = (rows.due * run.pt["pop_rank_f"]).amax(1)
        return torch.where(rank > 0, rank + 1.0, rank)
    return (rows.due * run.pt["due_silent_rank_f"]).amax(1)


def next_settle(run: RunContext, rows: RowSet, group_rows: torch.Tensor, group_pops: torch.Tensor) -> None:
    """The populations that settle at the next integration (R4.7), out of ``rows.due``.

    ``(group_rows[s], group_pops[s])``: the rows of the entries of the selected groups
    and their populations (any order, repetitions allowed). A due population settles
    when a population of its row's group projects into it; a row without a group whose
    pending set is empty settles its lowest due population (the settle-only step,
    R4.3.4; the driver has ended the rows with neither).
    """
    pt = run.pt
    due = rows.due
    assert due is not None
    reach = torch.zeros_like(due)
    has_group = torch.zeros(due.shape[0], dtype=due.dtype, device=due.device)
    if group_rows.numel():
        reach.index_add_(0, group_rows, run.targets.index_select(0, group_pops))
        has_group.index_add_(0, group_rows, torch.ones_like(group_rows, dtype=due.dtype))
    settle = due * (reach > 0)
    # Settle-only rows: the lowest due population (the largest rank).
    lone = (has_group == 0) & (due.amax(1) > 0)
    if bool(lone.any()):
        lowest = (due * pt["pop_rank_f"]).argmax(1)
        settle = settle.index_put(
            (lone.nonzero().squeeze(1), lowest[lone]), torch.ones((), dtype=due.dtype, device=due.device)
        )
    rows.settle = settle
    rows.due = due - settle


def settling_step(
    run: RunContext, rows: RowSet, t: int, k: int, with_fired: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Integrate and fire with biases, debts, synaptic currents, reset modes and due populations (R4.3.1-R4.3.2).

    Consumes ``rows.cur`` and ``rows.settle``; updates ``rows.v``, ``rows.q``,
    ``rows.debt``, ``rows.syn`` (R4.12), the momentum keys and records R8.3 overflows
    of a membrane or a synaptic current (the caller raises).
    Returns ``(u, sd, fired)``: the membranes before the reset (no graph), the 0/1
    spikes (no graph) and their flat positions (``None`` unless ``with_fired``).
    """
    pt = run.pt
    theta = pt["theta"]
    pop_idx = pt["pop_idx"]
    cur = rows.cur
    assert cur is not None
    assert rows.due is not None
    assert rows.debt is not None
    live = rows.live
    settle = rows.settle
    pay: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    if settle is not None and bool(settle.any()):
        cols = settle.index_select(1, pop_idx)  # [n, N] 1.0 = the neuron's population settles now
        assert run.bias is not None
        if torch.is_grad_enabled() and (cur.requires_grad or run.bias.requires_grad):
            cur = _BiasCurrent.apply(cur, run.bias, settle, pop_idx)  # keeps settle [n, P], not cols
        else:
            cur = cur + run.bias * cols  # R4.3.1: the bias joins the summed current
        if rows.carry is not None:  # R4.3.1, R4.9: then the carried current, C <- 0
            cur = cur + rows.carry * cols
            rows.carry = rows.carry * (1.0 - cols)
        if rows.syn_in is not None:  # section 9: the silent currents that waited for the settle
            cur = cur + rows.syn_in * cols
            rows.syn_in = rows.syn_in * (1.0 - cols)
        pay = rows.debt * cols  # R4.8: the debtors among them pay their threshold
    if rows.syn is not None:  # R4.12: the current passes through S
        cur = _synaptic_current(run, rows, cur, cols)
    # R4.3.1: V + I for the non-refractory neurons (a select: a discarded current may be
    # anything, R4.6), then a debtor's V - theta.
    u = torch.where(live > 0, rows.v + cur, rows.v)
    if pay is not None:
        u = u - theta * pay
        rows.debt = rows.debt - pay
    u_d = u.detach()
    total = u_d.sum() if rows.syn is None else u_d.sum() + rows.syn.detach().sum()
    if not math.isfinite(float(total)):  # some membrane or S overflowed float32 (or a false alarm)
        bad = ~torch.isfinite(u_d) & (live > 0)
        if rows.syn is not None:  # R8.3: also a refractory neuron's S
            bad = bad | ~torch.isfinite(rows.syn.detach())
        if bool(bad.any()):
            run.record_overflow(rows.batch_rows, bad, t, k)
            if 0 in run.failures:  # no sample comes before this one
                raise run.overflow_error()
            zero = torch.zeros((), dtype=u.dtype, device=u.device)
            u = torch.where(bad, zero, u)  # the failing rows are void
            u_d = u.detach()
            if rows.syn is not None:
                rows.syn = torch.where(bad, zero, rows.syn)
    # R4.3.2: only integrated, non-refractory neurons fire; a due population waits, and
    # so does a row whose timestep has ended (an early stop cleared its due flags, R6.4,
    # and it may still run on in lock step with the batch).
    gate = live * (1.0 - rows.due.index_select(1, pop_idx)) * (~rows.done).to(live.dtype).unsqueeze(1)
    fire = (u_d > theta) & (gate > 0)
    sd = fire.to(u.dtype)
    in_graph = run.surrogate is not None and u.requires_grad
    flat = fire.reshape(-1).nonzero().squeeze(1) if with_fired or in_graph else None
    # R4.8: "zero" U - U s, "subtract" U - theta s, "subtract_delayed" and "none" U.
    if in_graph:
        assert flat is not None
        assert run.surrogate is not None
        rows.v, s = _FireReset.apply(u, sd, flat, theta, pt["reset_zero"], pt["reset_sub"], run.surrogate)
    else:
        s = spike(u - theta, run.surrogate) * sd if run.surrogate is not None else sd
        rows.v = u - s * (u * pt["reset_zero"] + theta * pt["reset_sub"])
    rows.debt = rows.debt + sd * pt["reset_delayed"]
    rows.q = rows.q + s
    if rows.out_spikes is not None:  # a recurrent projection leaves the output: Q is delivered
        rows.out_spikes = rows.out_spikes + s[:, run.out_slice]
    rows.cur = None
    rows.settle = None
    fired = flat if with_fired else None
    return u_d, sd, fired


def _synaptic_current(run: RunContext, rows: RowSet, cur: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
    """R4.12: charge the synaptic currents ``S`` with ``cur``; returns the current the membranes integrate.

    ``cols [n, N]``: 1.0 where the neuron's population settles now (``None``: none). A
    neuron with a synaptic current whose population settles decays and takes the
    current, ``S <- alpha S + I`` (a float32 multiply, then an addition), and its
    membrane integrates ``S``; any other neuron with one adds the current, ``S <- S + I``
    (also when refractory: the refractory mask is applied to the membrane only), and
    its membrane integrates ``I``. Neurons without a synaptic current keep ``S = 0``.
    ``S`` stays in the graph with ``alpha`` a constant (section 9): under autograd one
    node, :class:`_SynapticCurrent`.
    """
    pt = run.pt
    syn = rows.syn
    assert syn is not None
    has = pt["synaptic_f"] > 0
    decay = None if cols is None else (cols > 0) & has
    if torch.is_grad_enabled() and (cur.requires_grad or syn.requires_grad):
        rows.syn, out = _SynapticCurrent.apply(syn, cur, pt["alpha"], has, decay)
        return out  # type: ignore[no-any-return]
    rows.syn, out = _synaptic_forward(syn, cur, pt["alpha"], has, decay)
    return out


def _synaptic_forward(
    syn: torch.Tensor, cur: torch.Tensor, alpha: torch.Tensor, has: torch.Tensor, decay: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S', I')`` of :func:`_synaptic_current` (``decay``: bool ``[n, N]``, ``None`` = none decays)."""
    charged = torch.where(has, syn + cur, syn)
    if decay is None:
        return charged, cur
    new = torch.where(decay, alpha * syn + cur, charged)
    return new, torch.where(decay, new, cur)


class _SynapticCurrent(torch.autograd.Function):
    """:func:`_synaptic_forward` as one autograd node (it saves the bool ``decay`` mask only).

    Backward, with ``t = g_S' + g_I'``: ``g_I = t`` where the neuron has a synaptic
    current, else ``g_I'``; ``g_S = alpha t`` where it decays, else ``g_S'`` (the
    gradients of the torch operations it replaces: ``S' = alpha S + I = I'`` at the
    settle, ``S' = S + I`` with ``I' = I`` in a later step, ``S' = S`` without one).
    """

    @staticmethod
    def forward(
        ctx: Any,
        syn: torch.Tensor,
        cur: torch.Tensor,
        alpha: torch.Tensor,
        has: torch.Tensor,
        decay: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(alpha, has, decay)
        return _synaptic_forward(syn, cur, alpha, has, decay)

    @staticmethod
    def backward(ctx: Any, g_syn: torch.Tensor, g_cur: torch.Tensor) -> tuple[Any, ...]:
        alpha, has, decay = ctx.saved_tensors
        t = g_syn + g_cur
        d_cur = torch.where(has, t, g_cur)
        d_syn = g_syn if decay is None else torch.where(decay, alpha * t, g_syn)
        return d_syn, d_cur, None, None, None


class _BiasCurrent(torch.autograd.Function):
    """``cur + bias * cols`` with ``cols = settle[:, pop_idx]``, saving ``settle [n, P]`` only.

    The gradients are those of the two torch operations it replaces: ``g`` for ``cur``
    and ``sum_0(g * cols)`` for ``bias`` (the same float32 operations, so the same bits).
    """

    @staticmethod
    def forward(
        ctx: Any, cur: torch.Tensor, bias: torch.Tensor, settle: torch.Tensor, pop_idx: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(settle, pop_idx)
        ctx.set_materialize_grads(False)
        return cur + bias * settle.index_select(1, pop_idx)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor | None) -> tuple[Any, ...]:
        if g is None:
            return None, None, None, None
        g_bias = None
        if ctx.needs_input_grad[1]:
            settle, pop_idx = ctx.saved_tensors
            g_bias = (g * settle.index_select(1, pop_idx)).sum(0)
        return g if ctx.needs_input_grad[0] else None, g_bias, None, None


class _FireReset(torch.autograd.Function):
    """Fire and reset of a settling step: ``s = H(U - theta) sd``, ``V' = U - s (U z + theta b)``.

    ``fired``: the flat positions where ``sd`` is 1, ascending.

    (``z``, ``b``: the 0/1 ``"zero"`` and ``"subtract"`` reset columns.) One autograd node
    for the seven torch operations it replaces, saving the values at the neurons that
    fire (a few per row) instead of five dense ``[n, N]`` tensors. The backward computes
    the same float32 operations in the same order as those nodes did: at a neuron that
    fires, ``dU = (gV + (-gV s) z) + ((gS + (-gV) (U z + theta b)) sd) sigma'(U - theta)``;
    elsewhere (``s = sd = 0``) every term but ``gV`` is a signed zero, so ``dU`` is ``gV``
    with ``-0`` made ``+0`` (and NaN where a term is not finite), written as
    ``(gV - 0 gV) + 0 gS``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        u: torch.Tensor,
        sd: torch.Tensor,
        fired: torch.Tensor,
        theta: torch.Tensor,
        reset_zero: torch.Tensor,
        reset_sub: torch.Tensor,
        surrogate: Surrogate,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = u - theta
        s = (x > 0).to(u.dtype) * sd
        inner = u * reset_zero + theta * reset_sub
        v_new = u - s * inner
        col = fired % u.shape[1]
        ctx.save_for_backward(
            fired,
            x.reshape(-1).index_select(0, fired),
            s.reshape(-1).index_select(0, fired),
            sd.reshape(-1).index_select(0, fired),
            inner.reshape(-1).index_select(0, fired),
            reset_zero.index_select(0, col),
        )
        ctx.surrogate = surrogate
        ctx.set_materialize_grads(False)
        return v_new, s

    @staticmethod
    def backward(ctx: Any, g_v: torch.Tensor | None, g_s: torch.Tensor | None) -> tuple[Any, ...]:
        none = (None, None, None, None, None, None)
        if g_v is None and g_s is None:
            return (None, *none)
        fired, x_f, s_f, sd_f, inner_f, z_f = ctx.saved_tensors
        # The neurons that do not fire.
        g_u: torch.Tensor | None = None
        if g_v is not None:
            g_u = g_v - g_v * 0.0
        if g_s is not None:
            g_u = g_s * 0.0 if g_u is None else g_u + g_s * 0.0
        assert g_u is not None
        g_u = g_u.contiguous()
        if fired.numel():
            # The neurons that fire, in the order of the replaced nodes.
            d_f = ctx.surrogate.derivative(x_f)
            buf: torch.Tensor | None = None
            gs_f: torch.Tensor | None = None
            if g_v is not None:
                gv_f = g_v.reshape(-1).index_select(0, fired)
                ngv = -gv_f
                buf = gv_f + (ngv * s_f) * z_f
                gs_f = ngv * inner_f
            if g_s is not None:
                gq_f = g_s.reshape(-1).index_select(0, fired)
                gs_f = gq_f if gs_f is None else gq_f + gs_f
            assert gs_f is not None
            b_f = (gs_f * sd_f) * d_f
            g_u.view(-1).index_copy_(0, fired, b_f if buf is None else buf + b_f)
        return (g_u, *none)

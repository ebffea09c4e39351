"""Fused, differentiable pieces of a forward step (docs/semantics.md R4.3 and section 9).

A forward step of the torch engine is a handful of elementwise operations on
``[rows, N]`` tensors; on the CPU their cost is dominated by per-kernel and
per-autograd-node overhead, not by arithmetic. These functions fuse each phase into one
autograd node with a hand-written backward, using float arithmetic on 0/1 masks (exact,
and much cheaper than boolean kernels):

* :func:`step` -- integrate, fire, reset and enqueue (R4.3.1, R4.3.2);
* :func:`take` -- remove the selected group from the pending multiplicities (R4.3.4);
* :class:`TableGrad` / :func:`table_read` -- the currents of the selected neurons from a
  weight table laid out by source neuron, with the table gradient accumulated in place;
* :func:`silent` -- the zero-valued spike of neurons that did not fire.

Every backward formula is the exact gradient of the composed primitive operations it
replaces (``tests/test_training.py`` checks them against autograd).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from asyncsnn.torch.surrogate import Surrogate, spike

__all__ = ["TableGrad", "fire_values", "silent", "step", "step_exact", "table_read", "take"]


def fire_values(u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``u > theta``, else ``0.0`` (float, same shape as ``u``).

    ``sign(u - theta)`` is 1 exactly when ``u > theta``: the float32 difference of two
    different floats is never 0 (gradual underflow). Refractory neurons need no mask:
    their membrane was reset to 0 and they discard all current, so ``u = 0 < theta``.
    """
    return torch.sign(u - theta).clamp_(min=0.0)


def _step_values(
    v: torch.Tensor, cur: torch.Tensor, live: torch.Tensor, q: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    u = torch.addcmul(v, cur, live)  # V + I on live neurons: one float32 addition (I * 1 = I)
    s = fire_values(u, theta)
    v_new = torch.addcmul(u, u, s, value=-1.0)  # U - U s: 0 where s = 1, U exactly elsewhere
    return u, s, v_new, q + s


class _Step(torch.autograd.Function):
    """One integrate-fire-reset-enqueue step; see :func:`step`."""

    @staticmethod
    def forward(
        ctx: Any,
        v: torch.Tensor,
        cur: torch.Tensor,
        live: torch.Tensor,
        q: torch.Tensor,
        theta: torch.Tensor,
        surrogate: Surrogate,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        u, s, v_new, q_new = _step_values(v, cur, live, q, theta)
        ctx.save_for_backward(u, s, live, theta)
        ctx.surrogate = surrogate
        ctx.mark_non_differentiable(s, u)
        return v_new, q_new, s, u

    @staticmethod
    def backward(
        ctx: Any, g_v: torch.Tensor, g_q: torch.Tensor, _g_s: torch.Tensor, _g_u: torch.Tensor
    ) -> tuple[Any, ...]:
        u, s, live, theta = ctx.saved_tensors
        # s = H(U - theta) with surrogate d = sigma'(U - theta); V' = U (1 - s); Q' = Q + s:
        # dU = gV (1 - s) + (gQ - gV U) d s  =  gV + s ((gQ - gV U) d - gV).
        t = torch.addcmul(g_q, g_v, u, value=-1.0)
        t = t * ctx.surrogate.derivative(u - theta) - g_v
        g_u = torch.addcmul(g_v, s, t)
        return g_u, g_u * live, None, g_q, None, None


def step(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    surrogate: Surrogate | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate, fire, reset and enqueue (R4.3.1-R4.3.2).

    ``U = V + I * live``; ``s = H(U - theta)``; ``V' = U (1 - s)``; ``Q' = Q + s``.

    Parameters
    ----------
    v, cur
        Membrane and summed current ``[rows, N]``.
    live
        1.0 for non-refractory neurons, 0.0 for refractory ones (their current is
        discarded; their membrane is 0).
    q
        Spikes not delivered yet ``[rows, N]``.
    theta
        Thresholds ``[N]`` (> 0).
    surrogate
        Surrogate derivative for the backward pass, or ``None`` (no graph).

    Returns
    -------
    v_new, q_new
        Membrane after the reset and ``Q + s`` (differentiable).
    s
        The spikes (0/1 floats, no graph).
    u
        The membrane before the reset (no graph; ``v_pre`` of the neurons that fired).
    """
    if surrogate is None:
        u, s, v_new, q_new = _step_values(v, cur, live, q, theta)
        return v_new, q_new, s, u
    v_new, q_new, s, u = _Step.apply(v, cur, live, q, theta, surrogate)
    return v_new, q_new, s, u


def step_exact(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    surrogate: Surrogate | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`step` with selects instead of 0/1 arithmetic, exact for non-finite values.

    ``inf * 0`` is NaN, so the arithmetic of :func:`step` would turn an infinite current
    reaching a refractory neuron, or the reset of an infinite membrane, into NaN where
    the semantics discard the current or reset to 0 (float32 overflow is part of the
    arithmetic, R8.1). The engine reruns a step with this version when its membranes
    are not all finite. Gradients: the spike's surrogate as in :func:`step`; the reset
    is a select (no ``-U sigma'`` term; an overflowing membrane has no useful gradient).
    """
    u = torch.where(live > 0, v + cur, v)
    fired = u > theta
    s = fired.to(u.dtype)
    if surrogate is not None:
        s = spike(u - theta, surrogate) * s
    v_new = torch.where(fired, torch.zeros_like(u), u)
    return v_new, q + s, s.detach(), u.detach()


class _Take(torch.autograd.Function):
    """Remove the selected slots from the pending multiplicities; see :func:`take`."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, sel: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mult, q_new = _take_values(q, sel, valid)
        ctx.save_for_backward(sel, valid)
        return mult, q_new

    @staticmethod
    def backward(ctx: Any, g_mult: torch.Tensor, g_q: torch.Tensor) -> tuple[Any, ...]:
        sel, valid = ctx.saved_tensors
        # mult = Q[sel] valid; Q' = Q except 0 at the valid selected slots.
        at_sel = torch.addcmul(g_q.gather(1, sel) * (1.0 - valid), g_mult, valid)
        return g_q.scatter(1, sel, at_sel), None, None


def _take_values(q: torch.Tensor, sel: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q_sel = q.gather(1, sel)
    mult = q_sel * valid
    return mult, q.scatter(1, sel, q_sel - mult)


def take(q: torch.Tensor, sel: torch.Tensor, valid: torch.Tensor, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The multiplicities of the selected neurons, and ``Q`` without them (R4.3.4).

    Parameters
    ----------
    q
        Spikes not delivered yet ``[rows, N]``.
    sel
        int64 ``[rows, F]`` selected neuron ids (distinct within a row).
    valid
        float ``[rows, F]``: 1.0 for selected pending neurons, 0.0 for padding slots
        (which keep their value in ``Q``).
    grad
        Record the graph.

    Returns
    -------
    mult, q_new
        ``Q[sel] * valid`` ``[rows, F]`` and ``Q`` with the valid selected entries 0.
    """
    if not grad:
        return _take_values(q, sel, valid)
    mult, q_new = _Take.apply(q, sel, valid)
    return mult, q_new


class TableGrad:
    """A weight table laid out by source neuron, whose gradient is accumulated in place.

    Each forward step reads a few rows of the table; differentiating each read through
    autograd would materialise a dense ``[rows, cols]`` gradient per step. Instead the
    steps' backward passes add their row gradients into :attr:`grad`, and the table's
    root node -- which autograd runs after all of them, because every read depends on
    its :attr:`token` -- hands the sums to the weights once.

    Parameters
    ----------
    table
        ``[rows, cols]`` float32, no graph.
    blocks
        ``(first row, first column)`` of ``W.T`` in the table, one per weight.
    weights
        The weights ``W [n_target, n_source]`` the blocks were copied from.
    """

    def __init__(self, table: torch.Tensor, blocks: list[tuple[int, int]], weights: list[torch.Tensor]) -> None:
        self.table = table
        self.blocks = blocks
        self.grad: torch.Tensor | None = None
        self.token: torch.Tensor = _TableRoot.apply(self, *weights)


class _TableRoot(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, holder: TableGrad, *weights: torch.Tensor) -> torch.Tensor:
        ctx.holder = holder
        ctx.shapes = [w.shape for w in weights]
        return torch.empty(0, dtype=holder.table.dtype, device=holder.table.device)

    @staticmethod
    def backward(ctx: Any, _g_token: torch.Tensor) -> tuple[Any, ...]:
        holder: TableGrad = ctx.holder
        grads: list[torch.Tensor | None] = []
        for (r0, c0), shape in zip(holder.blocks, ctx.shapes):
            if holder.grad is None:
                grads.append(None)
            else:
                grads.append(holder.grad[r0 : r0 + shape[1], c0 : c0 + shape[0]].t().contiguous())
        holder.grad = None  # a second backward pass accumulates afresh
        return (None, *grads)


class _TableRead(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, _token: torch.Tensor, holder: TableGrad, sel: torch.Tensor, mult: torch.Tensor
    ) -> torch.Tensor:
        ctx.holder = holder
        ctx.save_for_backward(sel, mult)
        return F.embedding_bag(sel, holder.table, mode="sum", per_sample_weights=mult)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        holder: TableGrad = ctx.holder
        sel, mult = ctx.saved_tensors
        table = holder.table
        if holder.grad is None:
            holder.grad = torch.zeros_like(table)
        n_rows, f_eff = sel.shape
        flat = sel.reshape(-1)
        # d/d mult[b, f] = <g[b], table[sel[b, f]]>;  d/d table[sel[b, f]] += mult[b, f] g[b].
        rows = table.index_select(0, flat).reshape(n_rows, f_eff, -1)
        g_mult = (rows * g.unsqueeze(1)).sum(2)  # much cheaper than a bmm of tiny matrices on the CPU
        holder.grad.index_add_(0, flat, (mult.unsqueeze(2) * g.unsqueeze(1)).reshape(n_rows * f_eff, -1))
        return g.new_zeros(0), None, None, g_mult


def table_read(holder: TableGrad | None, table: torch.Tensor, sel: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """``sum_f mult[b, f] * table[sel[b, f]]`` ``[rows, cols]``, differentiable through ``holder``.

    Without a holder (no graph) this is a plain ``embedding_bag``.
    """
    if holder is None:
        return F.embedding_bag(sel, table, mode="sum", per_sample_weights=mult)
    out: torch.Tensor = _TableRead.apply(holder.token, holder, sel, mult)
    return out


class _Silent(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, surrogate: Surrogate
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(v, theta, mask)
        ctx.surrogate = surrogate
        return torch.zeros_like(v), v.clone()

    @staticmethod
    def backward(ctx: Any, g_c: torch.Tensor, g_v: torch.Tensor) -> tuple[Any, ...]:
        v, theta, mask = ctx.saved_tensors
        # c = H(V - theta) (= 0) with surrogate d; V' = V (1 - c):  dV = gV + (gc - gV V) d mask.
        d = ctx.surrogate.derivative(v - theta) * mask
        return torch.addcmul(g_v, torch.addcmul(g_c, g_v, v, value=-1.0), d), None, None, None


def silent(
    v: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, surrogate: Surrogate
) -> tuple[torch.Tensor, torch.Tensor]:
    """Silent spike: ``(c, V (1 - c))`` with ``c = 0`` forward and surrogate gradients on ``mask``.

    The value of ``c`` is exactly 0 because every masked neuron has ``V <= theta`` (it
    was checked at the last fire phase and has received no current since).

    Parameters
    ----------
    v
        Membrane ``[rows, n]``.
    theta
        Thresholds, broadcastable to ``v``.
    mask
        float, broadcastable to ``v``: 1.0 for the neurons that carry a silent spike.
    surrogate
        The surrogate derivative used backward.
    """
    c, v_new = _Silent.apply(v, theta, mask, surrogate)
    return c, v_new

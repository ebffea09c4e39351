"""Fused, differentiable pieces of a forward step (docs/semantics.md R4.3 and section 9).

A forward step of the torch engine is a handful of elementwise operations on
``[rows, N]`` tensors; on the CPU their cost is dominated by per-kernel and
per-autograd-node overhead, not by arithmetic. These functions fuse each phase into one
autograd node with a hand-written backward, using float arithmetic on 0/1 masks (exact,
and much cheaper than boolean kernels):

* :func:`step` -- integrate, fire, reset and enqueue (R4.3.1, R4.3.2);
* :func:`take` -- remove the selected group from the pending multiplicities (R4.3.4);
* :class:`TableGrad` / :func:`deliver` -- :func:`take` and the currents of the selected
  neurons from a weight table laid out by source neuron, in one node, with the table
  gradient accumulated in place;
* :func:`settle` -- the zero-valued (silent) spikes of the neurons that did not fire,
  identity forward, surrogate gradients backward.

Every backward formula is the exact gradient of the composed primitive operations it
replaces (``tests/training/test_training.py`` checks them against autograd).

On float32 CPU tensors, :func:`step_fused` and, with ``rust=True``, :func:`step`'s
backward pass and :func:`deliver` (forward and backward) run the Rust kernels of
``rust/train_kernels/`` (through ``asyncsnn._engine``): the same float32 operations as
the torch code, in one pass each. The torch engine's host backend asks for them; its
torch backend, and every other device and dtype, run the torch code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from asyncsnn import _engine
from asyncsnn.torch.surrogate import Surrogate, spike

__all__ = [
    "SettleSpec",
    "TableGrad",
    "TablePart",
    "deliver",
    "fire_values",
    "fused_step_applies",
    "host_array",
    "host_tensor",
    "settle",
    "step",
    "step_exact",
    "step_fused",
    "take",
    "zeros_f32",
]


def _rust_applies(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a Rust kernel can read ``a`` (float32 on the CPU) and ``b`` (float32, C-contiguous)."""
    return a.is_cpu and a.dtype is torch.float32 and b.dtype is torch.float32 and b.is_contiguous()


_HOST = "_asyncsnn_host"  # the attribute of a tensor made by host_tensor: its numpy array


def host_tensor(a: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy(a)``, remembering ``a`` on the tensor for :func:`host_array`.

    The host backend hands the same tensors to several Rust calls of a forward step and
    of its backward pass; ``Tensor.numpy()`` costs about as much as a small kernel (a
    few microseconds), the remembered array nothing. The tensor already holds ``a``
    (it shares its memory), so this adds no reference cycle and keeps nothing alive.
    """
    t = torch.from_numpy(a)
    setattr(t, _HOST, a)
    return t


def zeros_f32(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """float32 zeros; on the CPU made by :func:`host_tensor` (for the Rust kernels)."""
    if device.type == "cpu":
        return host_tensor(np.zeros(shape, dtype=np.float32))
    return torch.zeros(shape, dtype=torch.float32, device=device)


def host_array(t: torch.Tensor) -> np.ndarray:
    """``t.detach().numpy()`` of a CPU tensor (the array remembered by :func:`host_tensor`)."""
    a = getattr(t, _HOST, None)
    return t.detach().numpy() if a is None else a


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


def _fired_entries(
    u: torch.Tensor, s: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat positions of the spikes in ``s``, with ``u`` and ``theta`` there."""
    fired = s.reshape(-1).nonzero().squeeze(1)
    n_col = u.shape[-1]
    if theta.dim() == 1 and theta.shape[0] == n_col:
        theta_f = theta.index_select(0, fired % n_col)
    else:
        theta_f = theta.expand_as(u).reshape(-1).index_select(0, fired)
    return fired, u.reshape(-1).index_select(0, fired), theta_f


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
        sparse: bool,
        rust: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        u, s, v_new, q_new = _step_values(v, cur, live, q, theta)
        if sparse:
            # Only the neurons that fired (a few per row) have a surrogate term: keep those.
            fired, u_f, theta_f = _fired_entries(u, s, theta)
            _save_step(ctx, surrogate, rust, live, (fired, u_f, theta_f))
        else:
            fired = torch.empty(0, dtype=torch.int64, device=u.device)
            _save_step(ctx, surrogate, rust, live, None, u, s, theta)
        ctx.mark_non_differentiable(s, u, fired)
        return v_new, q_new, s, u, fired

    @staticmethod
    def backward(ctx: Any, g_v: torch.Tensor | None, g_q: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
        return (*_step_backward(ctx, g_v, g_q), None, None, None)


def _save_step(
    ctx: Any,
    surrogate: Surrogate,
    rust: bool,
    live: torch.Tensor,
    fired: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    u: torch.Tensor | None = None,
    s: torch.Tensor | None = None,
    theta: torch.Tensor | None = None,
) -> None:
    """Save what :func:`_step_backward` needs.

    That is the spikes' ``(positions, U, theta)`` (sparse), or the dense ``U``, ``s``
    and ``theta``; ``rust``: the sparse backward may run the Rust kernel.
    """
    ctx.sparse = fired is not None
    ctx.surrogate = surrogate
    ctx.rust = rust
    ctx.save_for_backward(live, *(fired if fired is not None else (u, s, theta)))
    ctx.set_materialize_grads(False)


def _step_backward(ctx: Any, g_v: torch.Tensor | None, g_q: torch.Tensor | None) -> tuple[Any, ...]:
    """Gradients of ``(v, cur, live, q, theta)`` of a step node (:class:`_Step`, :class:`_StepFused`)."""
    live, *saved = ctx.saved_tensors
    if g_v is None:
        g_v = torch.zeros_like(live)
    if g_q is None:
        g_q = torch.zeros_like(live)
    # s = H(U - theta) with surrogate d = sigma'(U - theta); V' = U (1 - s); Q' = Q + s:
    # dU = gV (1 - s) + (gQ - gV U) d s  =  gV + s ((gQ - gV U) d - gV).
    if not ctx.sparse:
        u, s, theta = saved
        t = torch.addcmul(g_q, g_v, u, value=-1.0)
        t = t * ctx.surrogate.derivative(u - theta) - g_v
        g_u = torch.addcmul(g_v, s, t)
        return g_u, g_u * live, None, g_q, None
    # Sparse: dU differs from gV at the neurons that fired only.
    fired, u_f, theta_f = saved
    rust = ctx.rust and _rust_applies(g_v, g_v) and _rust_applies(g_q, g_q) and _rust_applies(live, live)
    if rust and not torch.is_grad_enabled():
        u_np = host_array(u_f)
        d_f = ctx.surrogate._derivative_np(u_np - host_array(theta_f))
        g_u_np, g_cur_np = _engine.step_backward(
            host_array(g_v), host_array(g_q), host_array(live), host_array(fired), u_np, d_f
        )
        return host_tensor(g_u_np), host_tensor(g_cur_np), None, g_q, None
    g_u = g_v.clone(memory_format=torch.contiguous_format)
    if fired.numel():
        gv_f = g_u.view(-1).index_select(0, fired)
        gq_f = g_q.reshape(-1).index_select(0, fired)
        t = torch.addcmul(gq_f, gv_f, u_f, value=-1.0)
        t = t * ctx.surrogate.derivative(u_f - theta_f) - gv_f
        g_u.view(-1).index_copy_(0, fired, gv_f + t)
    return g_u, g_u * live, None, g_q, None


class _StepFused(torch.autograd.Function):
    """:class:`_Step` with its forward in one Rust call (``_engine.step_forward``).

    The call also computes the refractory mask ``live - s`` and updates the momentum
    keys in place; whether every membrane is finite is appended to ``info``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        v: torch.Tensor,
        cur: torch.Tensor,
        live: torch.Tensor,
        q: torch.Tensor,
        theta: torch.Tensor,
        surrogate: Surrogate,
        sparse: bool,
        vpre: torch.Tensor | None,
        info: list[Any],
    ) -> tuple[torch.Tensor, ...]:
        v_new, q_new, s, u, live_new, fired, u_f, theta_f, finite = _step_fused_values(
            v, cur, live, q, theta, vpre, not sparse
        )
        info.append(finite)
        info.append(u)
        _save_step(ctx, surrogate, True, live, (fired, u_f, theta_f) if sparse else None, u, s, theta)
        ctx.mark_non_differentiable(s, live_new, fired)
        return v_new, q_new, s, live_new, fired

    @staticmethod
    def backward(ctx: Any, g_v: torch.Tensor | None, g_q: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
        return (*_step_backward(ctx, g_v, g_q), None, None, None, None)


def _step_fused_values(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    vpre: torch.Tensor | None,
    want_u: bool,
) -> tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor | None,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    torch.Tensor,
    bool,
]:
    # Every output has its own storage: the next step's node saves live'. (numpy buffers
    # wrapped by torch cost less per step than torch.empty_like(...).numpy().)
    shape = tuple(v.shape)
    v_np, q_np, s_np, live_np = (np.empty(shape, dtype=np.float32) for _ in range(4))
    u_np = np.empty(shape, dtype=np.float32) if want_u else None
    fired, u_f, theta_f, finite = _engine.step_forward(
        host_array(v),
        host_array(cur),
        host_array(live),
        host_array(q),
        host_array(theta),
        v_np,
        q_np,
        s_np,
        live_np,
        u_np,
        None if vpre is None else host_array(vpre),
    )
    return (
        host_tensor(v_np),
        host_tensor(q_np),
        host_tensor(s_np),
        None if u_np is None else host_tensor(u_np),
        host_tensor(live_np),
        host_tensor(fired),
        host_tensor(u_f),
        host_tensor(theta_f),
        finite,
    )


def fused_step_applies(*tensors: torch.Tensor | None) -> bool:
    """Whether :func:`step_fused` can run: float32 C-contiguous CPU tensors (``None`` is skipped)."""
    for t in tensors:  # a loop, not all(...): this runs at every forward step
        if t is not None and not (t.is_cpu and t.dtype is torch.float32 and t.is_contiguous()):
            return False
    return True


def step_fused(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    surrogate: Surrogate | None,
    with_fired: bool,
    vpre: torch.Tensor | None = None,
    want_u: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor, bool]:
    """:func:`step` in one Rust call, with the refractory mask and momentum keys (CPU).

    Same values and gradients as :func:`step`, plus ``live' = live - s``; when ``vpre``
    is given, the momentum keys of the neurons that fire are set to ``U`` in place
    (R5.4: ``v_pre + U s``, and ``v_pre (1 - s) + U s`` with refractory dropout, are
    exactly that). All tensors float32, C-contiguous, on the CPU
    (:func:`fused_step_applies`).

    Returns
    -------
    v_new, q_new, s, u, fired, live_new, finite
        As :func:`step`, except that ``u`` is ``None`` unless ``want_u`` or the backward
        pass needs it (a graph without ``with_fired``); ``finite`` is false when some
        membrane is not finite, and the step must then be redone with
        :func:`step_exact` (``inf * 0`` is NaN).
    """
    if surrogate is None:
        with torch.no_grad():
            v_new, q_new, s, u, live_new, fired, _, _, finite = _step_fused_values(v, cur, live, q, theta, vpre, want_u)
    else:
        info: list[Any] = []
        v_new, q_new, s, live_new, fired = _StepFused.apply(v, cur, live, q, theta, surrogate, with_fired, vpre, info)
        finite, u = info
    return v_new, q_new, s, u, fired if with_fired else None, live_new, finite


def step(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    surrogate: Surrogate | None,
    with_fired: bool = False,
    rust: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
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
    with_fired
        Also return the positions of the spikes. With a graph, the step then keeps the
        surrogate terms of the neurons that fired only (their positions, membranes
        and thresholds) for its backward pass, which is cheaper when few neurons fire
        per step (unlayered schedulers); otherwise it keeps the dense membranes and
        spikes.
    rust
        Let the backward pass of the sparse case run the Rust kernel when its tensors
        are float32 on the CPU (the same values as the torch code).

    Returns
    -------
    v_new, q_new
        Membrane after the reset and ``Q + s`` (differentiable).
    s
        The spikes (0/1 floats, no graph).
    u
        The membrane before the reset (no graph; ``v_pre`` of the neurons that fired).
    fired
        int64 flat positions ``row * N + neuron`` of the spikes, ascending (``None``
        unless ``with_fired``).
    """
    if surrogate is None:
        u, s, v_new, q_new = _step_values(v, cur, live, q, theta)
        fired = s.reshape(-1).nonzero().squeeze(1) if with_fired else None
        return v_new, q_new, s, u, fired
    v_new, q_new, s, u, fired = _Step.apply(v, cur, live, q, theta, surrogate, with_fired, rust)
    return v_new, q_new, s, u, fired if with_fired else None


def step_exact(
    v: torch.Tensor,
    cur: torch.Tensor,
    live: torch.Tensor,
    q: torch.Tensor,
    theta: torch.Tensor,
    surrogate: Surrogate | None,
    with_fired: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`step` with selects instead of 0/1 arithmetic, exact for non-finite values.

    ``inf * 0`` is NaN, so the arithmetic of :func:`step` would turn an infinite current
    reaching a refractory neuron into NaN where the semantics discard it (R4.6). The
    engine reruns a step with this version when its membranes are not all finite, and
    then fails the samples whose non-refractory membranes are not finite (R8.3).
    Gradients: the spike's surrogate as in :func:`step`; the reset is a select (no
    ``-U sigma'`` term).
    """
    u = torch.where(live > 0, v + cur, v)
    fired = u > theta
    s = fired.to(u.dtype)
    if surrogate is not None:
        s = spike(u - theta, surrogate) * s
    v_new = torch.where(fired, torch.zeros_like(u), u)
    positions = fired.reshape(-1).nonzero().squeeze(1) if with_fired else None
    return v_new, q + s, s.detach(), u.detach(), positions


class _TakeFlat(torch.autograd.Function):
    """Remove the selected entries from the pending multiplicities; see :func:`take`."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mult = _take_values(q, flat)
        ctx.mark_dirty(q)
        ctx.save_for_backward(flat)
        return mult, q

    @staticmethod
    def backward(ctx: Any, g_mult: torch.Tensor, g_q: torch.Tensor) -> tuple[Any, ...]:
        (flat,) = ctx.saved_tensors
        return _put(g_q, flat, g_mult), None


def _take_values(q: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``Q`` at the flat positions ``flat``, which are then set to 0 in place (``q`` contiguous)."""
    q_flat = q.view(-1)
    mult = q_flat.index_select(0, flat)
    q_flat.index_fill_(0, flat, 0.0)
    return mult


def _put(g_q: torch.Tensor, flat: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``g_q`` (copied) with the flat positions ``flat`` set to ``values``."""
    g = g_q.clone(memory_format=torch.contiguous_format)
    g.view(-1).index_copy_(0, flat, values)
    return g


def take(q: torch.Tensor, flat: torch.Tensor, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The multiplicities of the selected neurons, and ``Q`` without them (R4.3.4).

    Parameters
    ----------
    q
        Spikes not delivered yet ``[rows, N]``, contiguous; modified in place (no
        other node of the graph may have saved it).
    flat
        int64 ``[S]`` flat positions ``row * N + neuron`` of the selected pending
        neurons (distinct).
    grad
        Record the graph.

    Returns
    -------
    mult, q_new
        ``Q`` at the selected positions ``[S]``, and ``Q`` with them set to 0 (``q``
        itself).
    """
    if not grad:
        return _take_values(q, flat), q
    mult, q_new = _TakeFlat.apply(q, flat)
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
        if holder.grad is None:  # nothing was delivered: every weight's gradient is 0
            holder.grad = torch.zeros_like(holder.table)
        for (r0, c0), shape in zip(holder.blocks, ctx.shapes):
            grads.append(holder.grad[r0 : r0 + shape[1], c0 : c0 + shape[0]].t().contiguous())
        holder.grad = None  # a second backward pass accumulates afresh
        return (None, *grads)


@dataclass(frozen=True)
class TablePart:
    """A block of a weight table: the rows of one or more source neurons, some columns.

    Attributes
    ----------
    row0
        First table row (= global id of the first source neuron) of the block.
    lo, hi
        Its columns ``[lo, hi)`` in the table.
    table
        ``table[row0 : row0 + rows, lo:hi]``, contiguous (no graph).
    """

    row0: int
    lo: int
    hi: int
    table: torch.Tensor


def _deliver_values(
    parts: list[TablePart],
    q: torch.Tensor,
    flat: torch.Tensor,
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None],
    col0: int,
    rust: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    part = parts[0]
    if rust and len(parts) == 1 and groups[0] is not None and q.is_contiguous() and _rust_applies(q, part.table):
        # Take and deliver in one Rust call (the same products and sums, in entry order).
        rows, local, _ = groups[0]
        cur_np, mult_np = _engine.deliver_forward(
            host_array(q), host_array(flat), host_array(rows), host_array(local), host_array(part.table), col0 + part.lo
        )
        return host_tensor(cur_np), host_tensor(mult_np)
    q_flat = q.view(-1)
    mult = q_flat.index_select(0, flat)
    q_flat.index_fill_(0, flat, 0.0)
    if len(parts) == 1 and part.lo == 0 and col0 + part.hi == q.shape[1] and groups[0] is not None:
        # One block covering every column from col0 on: the currents are one embedding_bag.
        _, local, offsets = groups[0]
        cur = F.embedding_bag(local, part.table, offsets, mode="sum", per_sample_weights=mult)
        return (F.pad(cur, (col0, 0)) if col0 else cur), mult
    cur = q.new_zeros(q.shape)
    s0 = 0
    for part, group in zip(parts, groups):
        if group is None:
            continue
        rows, local, offsets = group
        s1 = s0 + rows.numel()
        emb = F.embedding_bag(local, part.table, offsets, mode="sum", per_sample_weights=mult[s0:s1])
        cur[:, col0 + part.lo : col0 + part.hi] += emb
        s0 = s1
    return cur, mult


class _Deliver(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        _token: torch.Tensor,
        holder: TableGrad,
        parts: list[TablePart],
        q: torch.Tensor,
        flat: torch.Tensor,
        groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None],
        col0: int,
        rust: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cur, mult = _deliver_values(parts, q, flat, groups, col0, rust)
        ctx.mark_dirty(q)
        ctx.holder, ctx.parts, ctx.col0, ctx.rust = holder, parts, col0, rust
        ctx.present = [group is not None for group in groups]
        ctx.save_for_backward(flat, mult, *[t for group in groups if group is not None for t in group[:2]])
        return q, cur

    @staticmethod
    def backward(ctx: Any, g_q: torch.Tensor, g_cur: torch.Tensor) -> tuple[Any, ...]:
        holder: TableGrad = ctx.holder
        flat, mult, *saved = ctx.saved_tensors
        if holder.grad is None:
            holder.grad = (
                zeros_f32(tuple(holder.table.shape), holder.table.device)
                if holder.table.dtype is torch.float32
                else torch.zeros_like(holder.table)
            )
        g_mults = []
        s0 = 0
        for part, present in zip(ctx.parts, ctx.present):
            if not present:
                continue
            rows, local = saved[0], saved[1]
            saved = saved[2:]
            s1 = s0 + rows.numel()
            # d/d mult[s] = <g[rows[s]], table[s]>;  d/d table[s] += mult[s] g[rows[s]].
            if ctx.rust and not torch.is_grad_enabled() and _rust_applies(g_cur, holder.grad):
                g_mults.append(
                    torch.from_numpy(
                        _engine.deliver_backward(
                            host_array(g_cur.contiguous()),
                            ctx.col0 + part.lo,
                            host_array(rows),
                            host_array(local),
                            host_array(mult if s0 == 0 and s1 == mult.numel() else mult[s0:s1].contiguous()),
                            host_array(part.table),
                            host_array(holder.grad),
                            part.row0,
                            part.lo,
                        )
                    )
                )
                s0 = s1
                continue
            g = g_cur[:, ctx.col0 + part.lo : ctx.col0 + part.hi]
            g_rows = g.index_select(0, rows)  # the current gradient of each entry's row
            g_mults.append((part.table.index_select(0, local) * g_rows).sum(1))
            block = holder.grad[part.row0 : part.row0 + part.table.shape[0], part.lo : part.hi]
            block.index_add_(0, local, g_rows * mult[s0:s1].unsqueeze(1))
            s0 = s1
        g_mult = g_mults[0] if len(g_mults) == 1 else torch.cat(g_mults)
        # Q' = Q except 0 at the selected entries, whose values went into the currents.
        return None, None, None, _put(g_q, flat, g_mult), None, None, None, None


def deliver(
    holder: TableGrad | None,
    parts: list[TablePart],
    q: torch.Tensor,
    flat: torch.Tensor,
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None],
    col0: int,
    rust: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Take the selected neurons out of ``Q`` and deliver them through a weight table (R4.3.4).

    The table (rows = source neurons) is given as blocks (:class:`TablePart`). The
    selected entries are listed block after block: ``flat`` holds their positions
    ``row * N + neuron`` in ``Q``, and ``groups[p]`` is ``(rows, local, offsets)``
    for the entries of block ``p`` (``None`` if it has none): their rows in ``Q``
    (sorted), their rows in the block's table, and ``offsets[b]``, the first entry of
    row ``b`` within the block's entries. Returns ``Q`` with the selected entries set
    to 0 (``q`` itself, contiguous, modified in place: no other node of the graph may
    have saved it), and the currents ``[rows, N]``: ``cur[b, col0 + lo + j] = sum``
    over the entries of row ``b`` in each block of ``Q[entry] * table[local, j]``.
    Differentiable in ``Q`` and, through ``holder`` (whose table the blocks were cut
    from), in the weights of the table; without a holder (no graph) the same values
    are computed directly. With ``rust``, a delivery through one block and its backward
    pass run the Rust kernels when the tensors are float32 on the CPU.
    """
    if holder is None:
        cur, _ = _deliver_values(parts, q, flat, groups, col0, rust)
        return q, cur
    q_new, cur = _Deliver.apply(holder.token, holder, parts, q, flat, groups, col0, rust)
    return q_new, cur


@dataclass(frozen=True)
class SettleSpec:
    """Which populations emit silent spikes in one :func:`settle` call, and how.

    Attributes
    ----------
    sources
        One entry per emitting population, in increasing population order:
        ``(columns of the population, thresholds, targets)`` with ``targets`` a tuple
        of ``(columns of the target population, transposed projection)``; the
        transposed projection maps a current gradient ``[rows, n_target]`` to the
        spike gradient ``[rows, n_source]``.
    output
        ``(columns, thresholds, targets)`` of the output population when its neurons emit
        too (the end of the timestep), else ``None``; ``targets`` as for a source (empty
        unless a recurrent projection leaves the output population).
    surrogate
        The surrogate derivative.
    anchors
        Tensors that receive a zero gradient (the weights through which the silent
        spikes travel, or the token of their weight table), so that every weight of the
        network is part of the graph even when no spike is ever delivered.
    resets
        The reset mode (R4.8) of each emitting population, then of the output
        population when it emits; empty: all ``"zero"``.
    """

    sources: tuple[tuple[slice, torch.Tensor, tuple[tuple[slice, Callable[[torch.Tensor], torch.Tensor]], ...]], ...]
    output: tuple[slice, torch.Tensor, tuple[tuple[slice, Callable[[torch.Tensor], torch.Tensor]], ...]] | None
    surrogate: Surrogate
    anchors: tuple[torch.Tensor, ...] = ()
    resets: tuple[str, ...] = ()


class _Settle(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        spec: SettleSpec,
        v: torch.Tensor,
        outd: torch.Tensor | None,
        live: torch.Tensor,
        *rows_and_anchors: torch.Tensor,
    ) -> Any:
        # Every silent spike is 0 and so is every current it sends: the values pass unchanged.
        ctx.spec = spec
        ctx.save_for_backward(v, live, *rows_and_anchors[: len(spec.sources)])
        return v if outd is None else (v, outd)

    @staticmethod
    def backward(ctx: Any, g_v: torch.Tensor, *g_out: torch.Tensor) -> tuple[Any, ...]:
        spec: SettleSpec = ctx.spec
        v, live, *rows = ctx.saved_tensors
        sur = spec.surrogate
        g = g_v.clone(memory_format=torch.contiguous_format)
        resets = spec.resets or ("zero",) * (len(spec.sources) + 1)
        kernel = _silent_kernel(sur, g, v, live)
        # In reverse order of emission: a population's membrane gradient is complete once
        # every later emission (its own included) has been differentiated.
        if spec.output is not None:
            sl, theta, out_targets = spec.output
            g_o = g_out[0]
            for t_sl, transposed in out_targets:  # recurrent projections from the output
                g_o = g_o + transposed(g[:, t_sl] * live[:, t_sl])
            reset = resets[len(spec.sources)]
            if kernel is not None:
                kernel(sl, theta, g_o, reset, None)
            else:
                g[:, sl] = _silent_grad(g[:, sl], g_o, v[:, sl], theta, live[:, sl], sur, reset)
        for (sl, theta, targets), idx, reset in zip(
            reversed(spec.sources), reversed(rows), reversed(resets[: len(spec.sources)])
        ):
            # Only the emitting rows: the others' silent spikes of this population come later.
            g_r, live_r = g.index_select(0, idx), live.index_select(0, idx)
            g_c: torch.Tensor | None = None
            for t_sl, transposed in targets:
                gc = transposed(g_r[:, t_sl] * live_r[:, t_sl])  # refractory targets discard the current
                g_c = gc if g_c is None else g_c + gc
            if g_c is None:  # only carried (recurrent, layered) projections leave it
                g_c = torch.zeros_like(g_r[:, sl])
            if kernel is not None:
                kernel(sl, theta, g_c, reset, idx)
                continue
            v_r = v.index_select(0, idx)[:, sl]
            g[:, sl].index_copy_(0, idx, _silent_grad(g_r[:, sl], g_c, v_r, theta, live_r[:, sl], sur, reset))
        zeros = [torch.zeros_like(a) for a in spec.anchors]
        return (None, g, g_out[0] if g_out else None, None, *([None] * len(rows)), *zeros)


_KERNEL_RESETS = {"zero": "zero", "subtract": "subtract"}  # any other reset: V' = V


def _silent_kernel(
    sur: Surrogate, g: torch.Tensor, v: torch.Tensor, live: torch.Tensor
) -> Callable[[slice, torch.Tensor, torch.Tensor, str, torch.Tensor | None], None] | None:
    """:func:`_silent_grad` of one population, in place on ``g``, in one Rust call.

    Returns ``f(columns, theta, g_c, reset, rows)``, which sets ``g[rows, columns]`` to
    the gradient of ``V`` (``rows=None``: every row), with the same float32 values as the
    torch code; ``None`` when the kernel cannot run: a graph is being recorded (double
    backward), a tensor is not float32 C-contiguous on the CPU, or the surrogate is not a
    built-in one.
    """
    params = sur._kernel_params()
    if params is None or torch.is_grad_enabled() or not (_rust_applies(g, g) and _rust_applies(v, v)):
        return None
    if not _rust_applies(live, live):
        return None
    name, p, q = params
    g_np, v_np, live_np = g.numpy(), host_array(v), host_array(live)

    def run(sl: slice, theta: torch.Tensor, g_c: torch.Tensor, reset: str, rows: torch.Tensor | None) -> None:
        _engine.silent_grad(
            g_np,
            v_np,
            live_np,
            host_array(theta.contiguous()),
            g_c.detach().to(torch.float32).contiguous().numpy(),
            sl.start,
            name,
            p,
            q,
            _KERNEL_RESETS.get(reset, "keep"),
            rows=None if rows is None else rows.numpy(),
        )

    return run


def _silent_grad(
    g_v: torch.Tensor,
    g_c: torch.Tensor,
    v: torch.Tensor,
    theta: torch.Tensor,
    mask: torch.Tensor,
    sur: Surrogate,
    reset: str = "zero",
) -> torch.Tensor:
    """The gradient of ``V`` through ``c = H(V - theta)`` (= 0) and the reset on ``mask``.

    The reset (R4.8, section 9) is ``V' = V (1 - c)`` for ``"zero"``, ``V' = V - theta c``
    for ``"subtract"`` and ``V' = V`` otherwise (the delayed debt is a constant).
    """
    # dV = gV + (gc - gV R) d mask, with d the surrogate derivative at V - theta and
    # R = dV'/dc: V ("zero"), theta ("subtract"), 0.
    d = sur.derivative(v - theta) * mask
    if reset == "zero":
        return torch.addcmul(g_v, torch.addcmul(g_c, g_v, v, value=-1.0), d)
    if reset == "subtract":
        return torch.addcmul(g_v, g_c - g_v * theta, d)
    return torch.addcmul(g_v, g_c, d)


def settle(
    spec: SettleSpec,
    v: torch.Tensor,
    live: torch.Tensor,
    rows: list[torch.Tensor],
    outd: torch.Tensor | None = None,
) -> Any:
    """Silent spikes of the populations in ``spec`` (``docs/semantics.md`` section 9).

    Each non-refractory neuron of an emitting population, in the given rows, emits
    ``c = H(V - theta)``, exactly 0 (its membrane was checked at the last fire phase
    and has received no current since), resets ``V' = V (1 - c)`` and sends the (zero)
    currents ``c W`` to its targets' membranes, where refractory targets discard them;
    populations emit in increasing order, so a target that emits in the same call does
    so after receiving them. With ``spec.output`` the output neurons of every row emit
    too (last) and their spikes are added to the differentiable output counts ``outd``.

    Forward, every value is unchanged: ``v`` (and ``outd``) are returned as they are.
    Backward, each silent spike has the surrogate derivative of the spike and of the
    reset. Weights receive no gradient from them (the spikes are 0).

    Parameters
    ----------
    spec
        The emitting populations (:class:`SettleSpec`).
    v
        Membranes ``[rows, N]``.
    live
        ``[rows, N]`` 1.0 for non-refractory neurons.
    rows
        One int64 tensor per entry of ``spec.sources``: the (distinct) rows in which
        the population emits.
    outd
        Differentiable output counts ``[rows, n_out]`` (required with ``spec.output``).

    Returns
    -------
    ``v``, or ``(v, outd)`` with ``spec.output``.
    """
    return _Settle.apply(spec, v, outd, live, *rows, *spec.anchors)

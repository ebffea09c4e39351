"""The driver: :func:`run` executes the timesteps of a batch over a bookkeeping backend.

Each timestep ``t`` (R4) is the leak (R4.1), the input frame (R4.2) and forward steps
``k = 0, 1, ...`` (R4.3) until every row's timestep has ended (R6); then its counters
are reduced (section 7) and, under autograd, the silent spikes of the end of the
timestep are emitted (section 9). The phases of a forward step are
:func:`~asyncsnn.torch.engine.step.forward_step` (integrate and fire) and the
:class:`~asyncsnn.torch.engine.bookkeeping.Bookkeeping`'s enqueue, stop check,
set-aside, silent spikes, and selection and delivery.

With ``prioritize_input=False`` (R4.13) step 0 integrates nothing: the frame's kept
values become input entries of the pending set (``RowSet.xin``), which the
bookkeeping schedules with the spikes (:mod:`~asyncsnn.torch.engine.inputs`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from asyncsnn._prepare import PreparedOptions, Scheduler
from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.result import InferenceResult
from asyncsnn.rng import STREAM_INPUT_DROPOUT
from asyncsnn.torch._rng import hash_neurons, mix32_t, prefix, uniform24
from asyncsnn.torch.engine.bookkeeping import Bookkeeping, resolve_backend
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.counters import CounterColumns, finish_counters, reduce_timestep
from asyncsnn.torch.engine.delivery import Delivery
from asyncsnn.torch.engine.host_bookkeeping import HostBookkeeping
from asyncsnn.torch.engine.plan import Plan
from asyncsnn.torch.engine.rows import RowSet, merge_rows
from asyncsnn.torch.engine.settling import start_due
from asyncsnn.torch.engine.silent import emit_at_end
from asyncsnn.torch.engine.step import drop_spikes, forward_step
from asyncsnn.torch.engine.tape import run_taped
from asyncsnn.torch.engine.torch_bookkeeping import LayeredBookkeeping, TorchBookkeeping
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["SURROGATE_TERMS", "RunOutput", "gc_paused", "run"]

SURROGATE_TERMS = ("fired", "every_step")
"""The values of ``surrogate_terms`` (docs/semantics.md section 9)."""

_HASH_STEPS = 32  # forward steps whose hash states are computed at once


@dataclass
class RunOutput:
    """What :func:`run` returns.

    Attributes
    ----------
    counts
        float32 ``[B, T, n_out]`` output spikes per timestep, differentiable when the run
        recorded a graph (the values equal ``counters["timestep_output_counts"]``).
    counters
        Every field of :data:`asyncsnn.result.COUNTER_FIELDS`, int64 tensors on the CPU
        with the batch first.
    """

    counts: torch.Tensor
    counters: dict[str, torch.Tensor]

    def result(self, labels: npt.ArrayLike | None = None, options: dict[str, Any] | None = None) -> InferenceResult:
        """The counters as an :class:`~asyncsnn.result.InferenceResult` (``engine="torch"``)."""
        arrays = {k: v.numpy() for k, v in self.counters.items()}
        lab = None if labels is None else np.asarray(labels, dtype=np.int64)
        return InferenceResult(arrays, labels=lab, engine="torch", options=options or {})


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block (or a function, as a decorator).

    A forward or backward pass creates thousands of short-lived autograd objects (a
    few per forward step); each generation-0 collection then walks them all for
    nothing, since they free themselves by reference counting. The collector's state
    is restored on exit (a collection may follow at the next allocation).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _context(
    plan: Plan,
    pt: dict[str, torch.Tensor],
    weights: Sequence[torch.Tensor | None],
    opts: PreparedOptions,
    host: bool,
    grad: bool,
    surrogate: Surrogate | None,
    sample_offset: int,
    bias: torch.Tensor | None,
    surrogate_terms: str,
) -> RunContext:
    """The run's :class:`RunContext`: the plan's tensors, the delivery and the options."""
    dev = pt["beta"].device
    drop_p: torch.Tensor | None = None
    if opts.refractory_dropout is not None:
        p_pop = torch.tensor((0.0, *opts.refractory_dropout), dtype=torch.float64, device=dev)
        drop_p = p_pop[pt["pop_of"]]  # float64 [N]
    return RunContext(
        plan=plan,
        pt=pt,
        opts=opts,
        columns=CounterColumns(plan.n_populations, len(plan.projections), plan.n_outputs),
        delivery=Delivery(plan, pt, weights, rust=host),
        surrogate=make_surrogate(surrogate) if grad else None,
        drop_p=drop_p,
        rust_kernels=host,
        sample_offset=sample_offset,
        bias=bias,
        surrogate_terms=surrogate_terms,
    )


def _bias_and_grad(
    plan: Plan, pt: dict[str, torch.Tensor], weights: Sequence[torch.Tensor | None], bias: torch.Tensor | None
) -> tuple[torch.Tensor | None, bool]:
    """The run's biases (the network's unless given; ``None`` without settling) and whether it records a graph."""
    if plan.any_settling and bias is None:
        bias = pt["bias"]
    elif not plan.any_settling:
        bias = None
    grad = torch.is_grad_enabled() and (
        any(w is not None and w.requires_grad for w in weights) or (bias is not None and bias.requires_grad)
    )
    return bias, grad


@gc_paused()  # the run creates thousands of autograd objects (see gc_paused)
def run(
    plan: Plan,
    weights: Sequence[torch.Tensor | None],
    frames: torch.Tensor,
    opts: PreparedOptions,
    *,
    labels: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
    surrogate: Surrogate | None = None,
    sample_offset: int = 0,
    backend: str = "auto",
    bias: torch.Tensor | None = None,
    surrogate_terms: str = "fired",
) -> RunOutput:
    """Run a batch through the network, differentiably (see :mod:`asyncsnn.torch.engine`).

    Parameters
    ----------
    plan
        The network geometry (:class:`~asyncsnn.torch.engine.plan.Plan`).
    weights
        One tensor per projection: ``[n_target, n_source]`` for Dense,
        ``[c_out, c_in, kh, kw]`` for Conv2d, ``None`` for pooling. Gradients reach
        them when they require grad and grad mode is on.
    frames
        float32 ``[B, T, n_in]`` input frames (finite, >= 0), on the device to run on.
    opts
        Validated options (:func:`asyncsnn._prepare.prepare_options`).
    labels
        Optional int64 ``[B]`` classes, for the ``first_correct_*`` records (R7.7).
    sample_ids
        Optional int64 ``[B]`` ids in ``[0, 2**32)`` for the random function (R5.5);
        default ``arange(B)``.
    surrogate
        Surrogate derivative of the spike (default ``ATan()``).
    sample_offset
        Position in the caller's batch of the first sample, for the error below.
    backend
        ``"host"``: the forward steps, table deliveries and unlayered bookkeeping in
        the Rust kernels and numpy (CPU tensors only); ``"torch"``: everything in
        torch (any device); ``"auto"`` (default): host on the CPU, torch elsewhere.
        Both give the same counters and output counts, and the same gradients up to
        float32 summation order.
    bias
        float32 ``[N]``: the bias of every neuron (R1.4), differentiable; default the
        network's. Used only when a population settles (R1.6, ``plan.any_settling``):
        a population that does not settle has bias 0.
    surrogate_terms
        Which surrogate terms the gradient keeps (docs/semantics.md section 9):
        ``"fired"`` (default): the spikes that fire, and one zero-valued (silent)
        spike per non-firing neuron and timestep at its final membrane;
        ``"every_step"``: in addition, a term at every other forward step in which a
        non-refractory neuron is integrated (as asynctorch, which takes one at every
        forward step). The forward values are the same under both.

    Returns
    -------
    RunOutput
        Differentiable per-timestep output counts ``[B, T, n_out]`` and the counters.

    Raises
    ------
    EngineError
        When the membrane of a non-refractory neuron stops being finite (float32
        overflow, R8.3). The batch runs in lock step, so each sample's first failure is
        recorded and the error names the lowest failing sample (``sample_offset`` +
        its row), its first failing timestep and forward step, and the lowest neuron.
    ParameterError
        An unknown ``backend``, or ``"host"`` off the CPU.
    """
    if surrogate_terms not in SURROGATE_TERMS:
        raise invalid(ParameterError, "surrogate_terms", surrogate_terms, "must be 'fired' or 'every_step'")
    dev = frames.device
    host = resolve_backend(backend, dev) == "host"
    pt = plan.tensors(dev)
    n_batch, n_t, _ = frames.shape
    bias, grad = _bias_and_grad(plan, pt, weights, bias)
    if grad and host:  # the taped path (asyncsnn.torch.engine.tape), where it applies
        taped = run_taped(plan, weights, frames, opts, labels, sample_ids, surrogate, surrogate_terms, bias)
        if taped is not None:
            return RunOutput(*taped)
    ctx = _context(plan, pt, weights, opts, host, grad, surrogate, sample_offset, bias, surrogate_terms)
    book = _bookkeeping(ctx, host)
    hash0: torch.Tensor | None = None
    if opts.scheduler is Scheduler.RANDOM or ctx.jitter > 0 or ctx.drop_p is not None or _drops(opts):  # R5.5
        ids = torch.arange(n_batch, dtype=torch.int64, device=dev) if sample_ids is None else sample_ids
        hash0 = prefix(opts.seed, ids.to(dev, torch.int64))
        frames = _drop_inputs(frames, opts.input_dropout, hash0)
    if labels is not None:
        labels = labels.to(dev, torch.int64)
    # R7.3 / R7.4: input events and the input deliveries' synops, for every timestep at once.
    # (Non-prioritised input, R4.13: the synops count at each input entry's delivery.)
    nonzero = frames != 0
    input_events = nonzero.sum((1, 2))
    prioritized = opts.prioritize_input
    if prioritized:
        syn_in = nonzero.to(torch.float64) @ pt["fanout_in_f64"]  # [B, T, n_proj]
    else:
        syn_in = torch.zeros(n_batch, n_t, len(plan.projections), dtype=torch.float64, device=dev)
    rec = torch.zeros(n_t, n_batch, ctx.columns.n, dtype=torch.float64, device=dev)
    in_risk = ctx.delivery.input_risk(frames)  # R8.3: can an input product x * w overflow?
    ctx.input_risk = in_risk
    counts_t: list[torch.Tensor] = []
    v = torch.zeros(n_batch, plan.n_neurons, dtype=torch.float32, device=dev)
    totals = torch.zeros(n_batch, plan.n_outputs, dtype=torch.float64, device=dev)  # R7.9: output counts so far
    debt = torch.zeros_like(v) if plan.any_settling else None  # R3.3, R4.8
    carry = torch.zeros_like(v) if ctx.carry else None  # R3.3, R4.9: C = 0
    syn = torch.zeros_like(v) if plan.any_synaptic else None  # R3.3, R4.12: S = 0
    for t in range(n_t):
        v = v * pt["beta"]  # R4.1 (1): leak, one float32 multiply
        rows = _start_timestep(ctx, book, v, t, hash0, labels, syn_in[:, t], totals)
        if debt is not None:
            rows.debt, rows.carry, rows.syn = debt, carry, syn
            if grad and syn is not None:  # section 9: silent currents into S wait for the settle
                rows.syn_in = torch.zeros_like(syn)
            start_due(ctx, rows)  # R4.1 (3)
        if prioritized:
            rows.cur = ctx.delivery.frame(frames[:, t], in_risk)  # R4.2: step 0 integrates the frame
        else:  # R4.13: the frame's values enter the pending set; step 0 integrates nothing
            rows.cur = torch.zeros_like(v)
            rows.xin = frames[:, t]
        rows = _forward_steps(ctx, book, rows, t)
        reduce_timestep(rows, ctx.columns, pt, ctx.out_slice)  # section 7
        rec[t] = rows.counters
        totals = rows.counters[:, ctx.columns.totals]
        if grad:
            rows.output_counts = rows.q[:, ctx.out_slice] if rows.out_spikes is None else rows.out_spikes
            emit_at_end(ctx, rows)  # section 9
            counts_t.append(rows.output_counts)
        v, debt, carry, syn = rows.v, rows.debt, rows.carry, rows.syn
    if ctx.failures:
        raise ctx.overflow_error()
    counters = finish_counters(torch.round(rec).to(torch.int64), input_events, ctx.columns)
    counts = torch.stack(counts_t, 1) if grad else counters["timestep_output_counts"].to(dev, torch.float32)
    if grad and bias is not None and bias.requires_grad:
        # The biases are part of the graph even when no population settled (a zero
        # gradient, like the weights' anchors of the silent spikes; the values are unchanged).
        counts = counts + 0.0 * bias.sum()
    if grad and not prioritized:
        # R4.13: an input without a non-zero value delivers nothing; its projections'
        # weights still get a (zero) gradient, as under prioritised input.
        for pp in plan.outgoing[0]:
            w = weights[pp.index]
            if w is not None and w.requires_grad:
                counts = counts + (w * 0.0).sum()
    return RunOutput(counts=counts, counters={k: t.cpu() for k, t in counters.items()})


def _drops(opts: PreparedOptions) -> bool:
    """Whether input or spike dropout (R4.10, R4.11) draws random numbers."""
    return opts.input_dropout > 0 or opts.spike_dropout > 0


def _drop_inputs(frames: torch.Tensor, p: float, hash0: torch.Tensor) -> torch.Tensor:
    """R4.10: ``frames`` with each non-zero value for which ``u(seed, sample, t, 0, i, 3) < p`` set to 0.

    A constant mask (no graph): the dropped values deliver nothing, count no input event
    and no synops. ``frames`` itself when ``p == 0`` (nothing is drawn).
    """
    if p <= 0:
        return frames
    _, n_t, n_in = frames.shape
    dev = frames.device
    neurons = torch.arange(n_in, dtype=torch.int64, device=dev)
    keep = torch.empty(frames.shape, dtype=torch.bool, device=dev)
    for t in range(n_t):
        state = mix32_t(mix32_t(hash0 ^ t) ^ 0).unsqueeze(1)  # after (seed, sample, t, k = 0)
        keep[:, t] = uniform24(hash_neurons(state, neurons, STREAM_INPUT_DROPOUT), torch.float64) >= p
    return frames * keep.to(frames.dtype)


def _bookkeeping(ctx: RunContext, host: bool) -> Bookkeeping:
    """The bookkeeping of the run's scheduler on its backend."""
    if ctx.layered:
        return LayeredBookkeeping(ctx)
    return HostBookkeeping(ctx) if host else TorchBookkeeping(ctx)


def _start_timestep(
    ctx: RunContext,
    book: Bookkeeping,
    v: torch.Tensor,
    t: int,
    hash0: torch.Tensor | None,
    labels: torch.Tensor | None,
    input_synops: torch.Tensor,
    totals: torch.Tensor,
) -> RowSet:
    """R4.1 (2): every row with no refractory flag, ``v_pre`` or pending neuron; fresh counters.

    The pending multiplicities ``Q`` and the sequence numbers are cleared: the pending
    set is empty at every timestep start (R6), so restarting the fifo counter changes
    no order. ``input_synops`` are the synops of the row's input delivery (R7.4);
    ``totals`` the output counts of the earlier timesteps, which the running prediction
    of R7.9 starts from.
    """
    n_batch, n_neu = v.shape
    dev = v.device
    f32 = torch.float32
    cnt = torch.zeros(n_batch, ctx.columns.n, dtype=torch.float64, device=dev)
    cnt[:, ctx.columns.latency] = -1
    cnt[:, ctx.columns.decision] = -1
    cnt[:, ctx.columns.synops] = input_synops
    cnt[:, ctx.columns.totals] = totals
    cnt[:, ctx.columns.running] = torch.where(totals.amax(1) > 0, totals.argmax(1).to(totals.dtype), -1.0)

    def zeros() -> torch.Tensor:
        return torch.zeros(n_batch, n_neu, dtype=f32, device=dev)

    hash_t = hash_k = None
    if hash0 is not None:  # R5.5: the hash states after (seed, sample, t) and (seed, sample, t, k)
        hash_t = mix32_t(hash0 ^ t)
        hash_k = mix32_t(hash_t.unsqueeze(1) ^ torch.arange(_HASH_STEPS, dtype=torch.int64, device=dev))
    return RowSet(
        batch_rows=torch.arange(n_batch, device=dev),
        v=v,
        live=torch.ones(n_batch, n_neu, dtype=f32, device=dev),
        q=zeros(),
        fired=zeros() if ctx.drop_p is not None else None,
        delivered=zeros() if book.tracks_deliveries else None,
        steps=torch.zeros(n_batch, dtype=f32, device=dev),
        queue_peak=torch.zeros(n_batch, dtype=f32, device=dev),
        done=torch.zeros(n_batch, dtype=torch.bool, device=dev),
        counters=cnt,
        vpre=zeros() if ctx.momentum else None,
        settled=torch.full((n_batch,), ctx.plan.n_populations + 1.0, dtype=f32, device=dev) if ctx.grad else None,
        seq=torch.zeros(n_batch, n_neu, dtype=torch.int64, device=dev) if ctx.fifo else None,
        next_seq=torch.zeros(n_batch, dtype=torch.int64, device=dev) if ctx.fifo else None,
        labels=labels,
        hash_t=hash_t,
        hash_k=hash_k,
        latency_open=torch.ones(n_batch, dtype=f32, device=dev),
        open_terms=zeros() if ctx.every_step else None,
        out_spikes=torch.zeros(n_batch, ctx.plan.n_outputs, dtype=f32, device=dev)
        if ctx.grad and ctx.output_is_source
        else None,
    )


def _forward_steps(ctx: RunContext, book: Bookkeeping, rows: RowSet, t: int) -> RowSet:
    """R4.3: the forward steps of timestep ``t`` until every row's timestep has ended (R6).

    Returns the rows back in batch order, with their state at the end of the timestep.
    """
    retired: list[RowSet] = []
    book.start_timestep()
    latency_open = True  # some row may still record a first (correct) output spike
    k = 0
    while True:
        book.count_step(rows, k)  # R7.5
        q_before = rows.q
        spikes, fired = forward_step(ctx, rows, t, k, book.needs_fired)  # R4.3.1-R4.3.2
        enqueued = fired if ctx.opts.spike_dropout <= 0 else drop_spikes(ctx, rows, spikes, fired, q_before, k)
        latency_open = book.record_outputs(rows, k, spikes, fired, latency_open)  # R7.7, R7.9
        book.enqueue(rows, enqueued)  # R4.3.2 pending set, R7.6 queue peak
        book.stop(rows, k)  # R4.3.3, R6
        running = book.set_aside(rows, retired)
        if running is None:
            break
        rows = running
        if ctx.grad:
            book.settle(rows)  # section 9: silent spikes of the settled populations
        book.select_and_deliver(rows, k)  # R4.3.4, R5
        k += 1
    return merge_rows(retired)

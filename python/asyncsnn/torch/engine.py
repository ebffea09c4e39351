"""The torch engine: ``docs/semantics.md`` vectorised over a batch, differentiable.

:func:`run` executes the forward semantics of sections 3-7 on a batch ``[B, N]`` of
samples (``N`` = all non-input neurons, global ids of R1.5), one Python iteration per
forward step, every sample of the batch advancing its own forward step ``k`` at once.
Under autograd it is the unlayered backpropagation of section 9; under
``torch.no_grad()`` it is an inference engine whose counters equal the reference
engine's exactly (R8.2 grid weights). :func:`infer` is that inference engine behind the
``asyncsnn.infer`` signature.

One timestep ``t`` (R4):

* **Leak** (R4.1) ``V <- beta V``; refractory flags, ``v_pre``, the pending
  multiplicities ``Q`` and the sequence numbers are cleared (the pending set is empty
  at every timestep start, R6, so restarting the fifo counter changes no order).
* **Input** (R4.2): the frame's currents, one matmul/conv per input projection for the
  whole batch.
* **Forward step k** (R4.3), on the *active* rows only (samples whose timestep has not
  ended; finished rows are set aside and stop costing work):

  1. integrate ``V <- where(refractory, V, V + I)``;
  2. fire ``V > theta`` (strict), reset to 0, ``refractory`` unless dropout (R4.6,
     ``u(seed, sample, t, k, q, 1) < p`` compared in float64, drawn for the fired
     neurons only), ``Q += s`` for neurons with outgoing projections (``Q`` is a float
     tensor that keeps the autograd link to the spike that produced it; fifo sequence
     numbers by a cumulative sum over ids, so enqueues happen in increasing id order);
  3. counters (R7) and the stop check (R6); a row whose pending set is empty or whose
     stop check fired is retired (its pending spikes are dropped and counted, R6.4);
  4. select and deliver (R5), below.

**Selection** is one ``topk`` per step over an int64 key ``[B, N]`` (non-pending
neurons get the largest key), smallest ``F_eff = min(F, max pending)`` first:

* ``fifo``: the sequence number (R5.2, unique per sample);
* ``random``: ``h(seed, sample, t, k, j, 0) * N + j`` (R5.3; ties to the smaller id),
  hashed for the pending neurons only;
* ``momentum``: ``(2**31 - bits(key)) * N + j`` with ``key = v_pre + jitter * u`` in
  float32 (R5.4). Every pending neuron fired above a positive threshold, so its key is
  a positive float32 whose bit pattern orders like the value: the largest key, ties to
  the smaller id, comes first;
* ``layered``: no topk: the group is every pending neuron of the lowest pending
  population (R5.1), a masked dense row per source population.

**Delivery** touches the selected neurons only: for a ``Dense`` projection the weight
columns of the selected neurons are gathered (``W.T[index]``, ``[B, F, n_target]``)
and contracted with their multiplicities by one ``bmm``; for ``Conv2d`` and pooling the
multiplicities are scattered into the emitted map and convolved; the layered scheduler
(and any F above a quarter of the population) uses a dense matmul on the emitted rows.
Currents of a step are summed into ``I`` in float32 before they touch ``V`` (R8.2).

**Gradients** (section 9). A spike is ``H(V - theta)`` forward and
``surrogate.derivative(V - theta)`` backward, the reset ``V <- V (1 - s)`` is in the
graph, the leak, masks, selections and random draws are constants; the pending
multiplicity carries the spike's graph to the step that delivers it, so gradients flow
along the realised delivery order through every forward step.

A neuron that does not fire must still pass a surrogate gradient (as ``s = 0`` does in
BPTT). The engine gives each non-refractory neuron one **silent spike** per timestep:
a spike of value exactly 0 whose backward is that of ``H(V - theta)`` and of the reset
``V (1 - s)``, emitted when the neuron's population is *settled* -- at the end of the
first fire phase after which no neuron of a lower population is pending, so that no
current can reach it any more and ``V`` is its final membrane of the timestep -- or at
the end of the timestep. Its (zero) currents go straight into the targets' membranes,
population by population, before the targets emit theirs; output neurons add theirs
to the differentiable output counts. The forward is unchanged (every value added is
0). With the ``layered`` scheduler a population settles exactly when its group is
delivered, so training is layered BPTT (R4.5: each neuron contributes
``s_t = H(U_t - theta)`` once per timestep at its final membrane ``U_t``); any
scheduler with ``F`` at least the widest population gives the same gradients on a
network without skip connections. Spike evaluations of steps in which a neuron neither
fires nor emits its silent spike carry no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from asyncsnn._prepare import (
    DropoutLike,
    RunOptions,
    Scheduler,
    SchedulerLike,
    StopLike,
    StopMode,
    prepare_inputs,
    prepare_options,
)
from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, SumPool2d
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.rng import STREAM_DROPOUT, STREAM_JITTER, STREAM_RANDOM
from asyncsnn.torch._rng import hash_neurons, mix32_t, prefix, uniform24
from asyncsnn.torch.surrogate import Surrogate, fire, make_surrogate, silent

__all__ = ["Plan", "RunOutput", "infer", "network_weights", "run"]

_MAX_KEY = torch.iinfo(torch.int64).max
_INFER_CHUNK = 2048  # samples per batch inside infer (results do not depend on it)


# ---------------------------------------------------------------------------------------
# Geometry (section 1)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectionPlan:
    """One projection of the network, as the torch engine applies it (R1.2)."""

    index: int
    source: int
    target: int
    kind: str  # "dense", "conv" or "pool"
    source_shape: tuple[int, ...]
    stride: tuple[int, int]
    padding: tuple[int, int]
    channels: int  # pool: channels of the source (groups)
    kernel_size: tuple[int, int]  # pool only
    pool_weight: float  # pool only: 1/(kh*kw) in float32, or 1
    trainable: bool  # Dense / Conv2d


class Plan:
    """The network laid out for the torch engine.

    Parameters
    ----------
    network
        The network; only its geometry and LIF parameters are used (weights are passed
        to :func:`run` separately, so that they can be ``nn.Parameter``\\ s).

    Attributes
    ----------
    n_neurons
        ``N``, the number of non-input neurons (global ids ``0..N``, R1.5).
    offsets, sizes
        Global id of the first neuron, and size, of every population (index 0 = input,
        whose offset is unused).
    projections
        One :class:`ProjectionPlan` per projection, in projection order.
    outgoing
        ``outgoing[p]``: the projections whose source is population ``p``.
    source_populations
        Non-input populations with at least one outgoing projection, ascending.
    """

    def __init__(self, network: Network) -> None:
        self.network = network
        self.input_shape = network.input_shape
        self.shapes = network.population_shapes
        self.sizes = network.population_sizes
        self.n_populations = len(network.populations)
        self.offsets = [0] * (self.n_populations + 1)
        acc = 0
        for p in range(1, self.n_populations + 1):
            self.offsets[p] = acc
            acc += self.sizes[p]
        self.n_neurons = acc
        self.n_outputs = self.sizes[-1]
        self.out_offset = self.offsets[-1]
        self.projections: list[ProjectionPlan] = []
        for n, pr in enumerate(network.projections):
            layer = pr.layer
            src_shape = self.shapes[pr.source]
            if isinstance(layer, Dense):
                kind, stride, padding, ks, pw = "dense", (1, 1), (0, 0), (1, 1), 1.0
            elif isinstance(layer, Conv2d):
                kind, stride, padding, ks, pw = "conv", layer.stride, layer.padding, (1, 1), 1.0
            elif isinstance(layer, (AvgPool2d, SumPool2d)):
                kind, stride, padding, ks, pw = "pool", layer.stride, (0, 0), layer.kernel_size, layer.pool_weight
            else:  # pragma: no cover - Network validates
                raise TypeError(f"unknown layer {layer!r}")
            self.projections.append(
                ProjectionPlan(
                    index=n,
                    source=pr.source,
                    target=pr.target,
                    kind=kind,
                    source_shape=tuple(src_shape),
                    stride=tuple(stride),  # type: ignore[arg-type]
                    padding=tuple(padding),  # type: ignore[arg-type]
                    channels=int(src_shape[0]) if kind == "pool" else 0,
                    kernel_size=tuple(ks),  # type: ignore[arg-type]
                    pool_weight=float(pw),
                    trainable=kind != "pool",
                )
            )
        self.outgoing: list[list[ProjectionPlan]] = [[] for _ in self.sizes]
        for pp in self.projections:
            self.outgoing[pp.source].append(pp)
        self.source_populations = [p for p in range(1, self.n_populations + 1) if self.outgoing[p]]
        n_proj = len(self.projections)
        # Fan-out tables (R1.3, R7.4): [N, n_proj] for LIF sources, [n_in, n_proj] for the input.
        fan = np.zeros((self.n_neurons, n_proj), dtype=np.int64)
        fan_in = np.zeros((self.sizes[0], n_proj), dtype=np.int64)
        for pp in self.projections:
            f = network.fan_out_counts(pp.index)
            if pp.source == 0:
                fan_in[:, pp.index] = f
            else:
                o = self.offsets[pp.source]
                fan[o : o + len(f), pp.index] = f
        self._np = {
            "pop_of": np.concatenate(
                [np.full(self.sizes[p], p, dtype=np.int64) for p in range(1, self.n_populations + 1)]
            ),
            "theta": np.concatenate([p.threshold.reshape(-1) for p in network.populations]).astype(np.float32),
            "beta": np.concatenate([p.beta.reshape(-1) for p in network.populations]).astype(np.float32),
            "fanout": fan,
            "fanout_in": fan_in,
        }
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

    def tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The constant tables on ``device`` (built once per device)."""
        key = str(device)
        if key not in self._cache:
            t = {k: torch.from_numpy(v).to(device) for k, v in self._np.items()}
            pop_of = t["pop_of"]
            t["has_out"] = torch.zeros(self.n_neurons, dtype=torch.bool, device=device)
            for p in self.source_populations:
                t["has_out"][self.offsets[p] : self.offsets[p] + self.sizes[p]] = True
            t["has_out_f"] = t["has_out"].to(torch.float32)
            t["pop_onehot"] = (pop_of.unsqueeze(1) == torch.arange(1, self.n_populations + 1, device=device)).to(
                torch.float32
            )
            t["fanout_f64"] = t["fanout"].to(torch.float64)
            t["fanout_in_f64"] = t["fanout_in"].to(torch.float64)
            t["col"] = torch.arange(self.n_neurons, dtype=torch.int64, device=device)
            for pp in self.projections:
                if pp.kind == "pool":
                    kh, kw = pp.kernel_size
                    t[f"pool{pp.index}"] = torch.full(
                        (pp.channels, 1, kh, kw), pp.pool_weight, dtype=torch.float32, device=device
                    )
            self._cache[key] = t
        return self._cache[key]


def network_weights(network: Network, device: torch.device | str | None = None) -> list[torch.Tensor | None]:
    """The float32 weight tensors of a network, one per projection (``None`` for pooling)."""
    out: list[torch.Tensor | None] = []
    for pr in network.projections:
        layer = pr.layer
        if isinstance(layer, (Dense, Conv2d)):
            out.append(torch.tensor(np.asarray(layer.weight), dtype=torch.float32, device=device))
        else:
            out.append(None)
    return out


def _apply(pp: ProjectionPlan, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Currents ``[r, n_target]`` of source activity ``e [r, n_source]`` through one projection."""
    if pp.kind == "dense":
        return F.linear(e, w)
    r = e.shape[0]
    x = e.reshape(r, *pp.source_shape)
    if pp.kind == "conv":
        y = F.conv2d(x, w, stride=pp.stride, padding=pp.padding)
    else:
        y = F.conv2d(x, w, stride=pp.stride, groups=pp.channels)
    return y.reshape(r, -1)


# ---------------------------------------------------------------------------------------
# Per-sample state of the active rows
# ---------------------------------------------------------------------------------------
class _Cols:
    """Column layout of the per-timestep int64 counter table ``[rows, C]`` (section 7)."""

    def __init__(self, n_pop: int, n_proj: int, n_out: int) -> None:
        c = 0
        self.spk = slice(c, c + n_pop)
        c += n_pop
        self.syn = slice(c, c + n_proj)
        c += n_proj
        self.out = slice(c, c + n_out)
        c += n_out
        (
            self.fo_step,
            self.fo_class,
            self.fo_spk,
            self.fo_syn,
            self.fc_step,
            self.fc_spk,
            self.fc_syn,
            self.drop,
            self.qpeak,
            self.fsteps,
        ) = range(c, c + 10)
        self.latency = slice(self.fo_step, self.fc_syn + 1)
        self.n = c + 10


@dataclass
class _Rows:
    """State of a set of rows (samples) within one timestep; ``take`` keeps a subset."""

    rows: torch.Tensor  # int64 [n] positions in the batch
    v: torch.Tensor  # float32 [n, N] membrane (graph)
    refr: torch.Tensor  # bool [n, N]
    vpre: torch.Tensor  # float32 [n, N] (no graph)
    q: torch.Tensor  # float32 [n, N] pending multiplicities (graph)
    cnt: torch.Tensor  # int64 [n, C] counters of this timestep
    outd: torch.Tensor | None  # float32 [n, n_out] differentiable output counts (grad only)
    seq: torch.Tensor | None  # int64 [n, N] fifo sequence numbers
    nseq: torch.Tensor | None  # int64 [n] next sequence number
    flushed: torch.Tensor | None  # bool [n, P + 1] (grad): populations whose silent spikes were emitted
    labels: torch.Tensor | None  # int64 [n]
    hash_t: torch.Tensor | None  # int64 [n] hash state after (seed, sample, t)
    cur: torch.Tensor | None = None  # float32 [n, N] currents of the next integration

    def take(self, idx: torch.Tensor) -> _Rows:
        """The rows ``idx`` (int64 positions within this set)."""
        return _Rows(**{f.name: None if (x := getattr(self, f.name)) is None else x[idx] for f in fields(self)})


def _merge(parts: list[_Rows]) -> _Rows:
    """Concatenate retired row sets back into batch order."""
    if len(parts) == 1:
        return parts[0]
    order = torch.cat([p.rows for p in parts])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    merged: dict[str, Any] = {}
    for f in fields(_Rows):
        vals = [getattr(p, f.name) for p in parts]
        merged[f.name] = None if vals[0] is None else torch.cat(vals)[inv]
    return _Rows(**merged)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
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


def run(
    plan: Plan,
    weights: Sequence[torch.Tensor | None],
    frames: torch.Tensor,
    opts: RunOptions,
    *,
    labels: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
    surrogate: Surrogate | None = None,
) -> RunOutput:
    """Run a batch through the network, differentiably (see the module docstring).

    Parameters
    ----------
    plan
        The network geometry (:class:`Plan`).
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

    Returns
    -------
    RunOutput
        Differentiable per-timestep output counts ``[B, T, n_out]`` and the counters.
    """
    dev = frames.device
    pt = plan.tensors(dev)
    n_batch, n_t, _ = frames.shape
    n_neu, n_pop, n_out = plan.n_neurons, plan.n_populations, plan.n_outputs
    n_proj = len(plan.projections)
    cols = _Cols(n_pop, n_proj, n_out)
    grad = torch.is_grad_enabled() and any(w is not None and w.requires_grad for w in weights)
    sur = make_surrogate(surrogate)
    f32 = torch.float32
    theta, beta = pt["theta"], pt["beta"]
    out_sl = slice(plan.out_offset, plan.out_offset + n_out)
    sched = opts.scheduler
    layered = sched is Scheduler.LAYERED
    fifo = sched is Scheduler.FIFO
    jitter = opts.jitter if sched is Scheduler.MOMENTUM else 0.0
    jitter_t = torch.tensor(jitter, dtype=f32, device=dev)
    drop_p: torch.Tensor | None = None
    if opts.refractory_dropout is not None:
        p_pop = torch.tensor((0.0, *opts.refractory_dropout), dtype=torch.float64, device=dev)
        drop_p = p_pop[pt["pop_of"]]  # float64 [N]
    needs_hash = sched is Scheduler.RANDOM or jitter > 0 or drop_p is not None
    if sample_ids is None:
        sample_ids = torch.arange(n_batch, dtype=torch.int64, device=dev)
    hash0 = prefix(opts.seed, sample_ids.to(dev, torch.int64)) if needs_hash else None
    if labels is not None:
        labels = labels.to(dev, torch.int64)
    wt_cache: dict[int, torch.Tensor] = {}

    def gathered_weights(pp: ProjectionPlan) -> torch.Tensor:
        # W.T, contiguous, once per run: row j = the weights of source neuron j (graph kept).
        if pp.index not in wt_cache:
            w = weights[pp.index]
            assert w is not None
            wt_cache[pp.index] = w.t().contiguous()
        return wt_cache[pp.index]

    def weight(pp: ProjectionPlan) -> torch.Tensor:
        w = weights[pp.index]
        return pt[f"pool{pp.index}"] if w is None else w

    def assemble(parts: dict[int, list[torch.Tensor]], n_rows: int) -> torch.Tensor:
        blocks = []
        for p in range(1, n_pop + 1):
            lst = parts.get(p)
            if lst:
                blk = lst[0]
                for extra in lst[1:]:
                    blk = blk + extra
                blocks.append(blk)
            else:
                blocks.append(torch.zeros(n_rows, plan.sizes[p], dtype=f32, device=dev))
        return torch.cat(blocks, 1)

    # R7.3 / R7.4: input events and the input deliveries' synops, for every timestep at once.
    nonzero = frames != 0
    input_events = nonzero.sum((1, 2))
    syn_in = torch.round(nonzero.to(torch.float64) @ pt["fanout_in_f64"]).to(torch.int64)  # [B, T, n_proj]
    rec = torch.zeros(n_t, n_batch, cols.n, dtype=torch.int64, device=dev)
    counts_t: list[torch.Tensor] = []
    v = torch.zeros(n_batch, n_neu, dtype=f32, device=dev)
    all_rows = torch.arange(n_batch, device=dev)

    for t in range(n_t):
        # R4.1: leak (one float32 multiply); clear refractory flags, v_pre (and the pending set).
        v = v * beta
        # R4.2: forward step 0 integrates the whole input frame.
        in_parts: dict[int, list[torch.Tensor]] = {}
        x_t = frames[:, t]
        for pp in plan.outgoing[0]:
            in_parts.setdefault(pp.target, []).append(_apply(pp, weight(pp), x_t))
        cnt = torch.zeros(n_batch, cols.n, dtype=torch.int64, device=dev)
        cnt[:, cols.latency] = -1
        cnt[:, cols.syn] = syn_in[:, t]
        a = _Rows(
            rows=all_rows,
            v=v,
            refr=torch.zeros(n_batch, n_neu, dtype=torch.bool, device=dev),
            vpre=torch.zeros(n_batch, n_neu, dtype=f32, device=dev),
            q=torch.zeros(n_batch, n_neu, dtype=f32, device=dev),
            cnt=cnt,
            outd=torch.zeros(n_batch, n_out, dtype=f32, device=dev) if grad else None,
            seq=torch.zeros(n_batch, n_neu, dtype=torch.int64, device=dev) if fifo else None,
            nseq=torch.zeros(n_batch, dtype=torch.int64, device=dev) if fifo else None,
            flushed=torch.zeros(n_batch, n_pop + 1, dtype=torch.bool, device=dev) if grad else None,
            labels=labels,
            hash_t=mix32_t(hash0 ^ t) if hash0 is not None else None,
            cur=assemble(in_parts, n_batch),
        )
        retired: list[_Rows] = []
        k = 0
        while True:
            hash_k = mix32_t(a.hash_t ^ k) if a.hash_t is not None else None
            # R4.3.1 integrate: refractory neurons discard their current.
            live = ~a.refr
            assert a.cur is not None
            a.v = torch.where(live, a.v + a.cur, a.v)
            a.cur = None
            # R4.3.2 fire: strict threshold, reset to 0 (in the graph), refractory (R4.6).
            fired = live & (a.v > theta)
            if grad:
                s, v_new = fire(a.v, theta, fired, sur)
            else:
                s, v_new = fired.to(f32), a.v.masked_fill(fired, 0.0)
            a.vpre = torch.where(fired, a.v.detach(), a.vpre)
            a.v = v_new
            refr = a.refr | fired
            if drop_p is not None:
                r_f, c_f = fired.nonzero(as_tuple=True)
                if r_f.numel():
                    assert hash_k is not None
                    u = uniform24(hash_neurons(hash_k[r_f], c_f, STREAM_DROPOUT), torch.float64)
                    stays = u < drop_p[c_f]
                    refr[r_f[stays], c_f[stays]] = False
            a.refr = refr
            # Enqueue (R3.2): multiplicity +1, a new sequence number for neurons not pending.
            enq = fired & pt["has_out"]
            if fifo:
                assert a.seq is not None and a.nseq is not None
                new = enq & (a.q.detach() == 0)
                csum = new.cumsum(1)
                a.seq = torch.where(new, a.nseq.unsqueeze(1) + csum - 1, a.seq)
                a.nseq = a.nseq + csum[:, -1]
            a.q = a.q + s * pt["has_out_f"]
            # R7.1 / R7.2 counters.
            a.cnt[:, cols.spk] += (fired.to(f32) @ pt["pop_onehot"]).to(torch.int64)
            out_fired = fired[:, out_sl]
            a.cnt[:, cols.out] += out_fired
            if a.outd is not None:
                a.outd = a.outd + s[:, out_sl]
            any_out = out_fired.any(1)
            if bool(any_out.any()):
                _latency(a, cols, k, out_fired, any_out)
            # R7.6 queue peak after every fire phase; R6 stop check.
            qd = a.q.detach()
            pending = qd > 0
            n_pending = pending.sum(1)
            a.cnt[:, cols.qpeak] = torch.maximum(a.cnt[:, cols.qpeak], n_pending)
            done = n_pending == 0
            stop: torch.Tensor | None = None
            if opts.stop is StopMode.FIRST_OUTPUT:
                fo = a.cnt[:, cols.fo_step]
                stop = (fo >= 0) & (k - fo >= opts.extra_steps)
            if opts.max_steps is not None and k + 1 >= opts.max_steps:
                stop = torch.ones_like(done)
            if stop is not None:
                # R6.4: the pending spikes of a stopped row are dropped.
                a.cnt[:, cols.drop] += torch.where(stop, torch.round(qd.sum(1)).to(torch.int64), 0)
                done = done | stop
            if bool(done.any()):
                a.cnt[:, cols.fsteps] = k + 1  # R7.5 (read from the rows retired now)
                idx = done.nonzero().squeeze(1)
                retired.append(a.take(idx))
                if idx.numel() == a.rows.numel():
                    break
                keep = (~done).nonzero().squeeze(1)
                a = a.take(keep)
                pending, n_pending = pending[keep], n_pending[keep]
                if hash_k is not None:
                    hash_k = hash_k[keep]
            lowest = torch.where(pending, pt["pop_of"], n_pop + 1).amin(1) if layered or grad else None
            if grad:
                _emit_silent(plan, pt, a, lowest, weight, sur)
            # R4.3.4 select and deliver.
            if layered:
                assert lowest is not None
                parts, syn = _deliver_layered(plan, pt, a, pending, lowest, weight)
            else:
                f_eff = min(opts.forward_group_size, int(n_pending.max()))
                key = _keys(sched, pt, a, pending, hash_k, jitter_t, n_neu)
                vals, sel = torch.topk(key, f_eff, dim=1, largest=False, sorted=False)
                valid = vals != _MAX_KEY
                mult = a.q.gather(1, sel)
                a.q = a.q.masked_fill(torch.zeros_like(pending).scatter_(1, sel, valid), 0.0)
                parts = _deliver_selected(plan, pt, sel, valid, mult, weight, gathered_weights)
                syn = (pt["fanout"][sel] * valid.unsqueeze(-1)).sum(1)
            a.cnt[:, cols.syn] += syn
            a.cur = assemble(parts, a.rows.numel())
            k += 1

        m = _merge(retired)
        rec[t] = m.cnt
        if grad:
            _emit_silent(plan, pt, m, None, weight, sur)
            assert m.outd is not None
            counts_t.append(m.outd)
        v = m.v

    counters = _finish(plan, rec, input_events, cols)
    counts = (
        torch.stack(counts_t, 1) if grad else counters["timestep_output_counts"].to(dev, f32)
    )
    return RunOutput(counts=counts, counters={k: t.cpu() for k, t in counters.items()})


def _latency(a: _Rows, cols: _Cols, k: int, out_fired: torch.Tensor, any_out: torch.Tensor) -> None:
    """R7.7: record the first output (and first correct) spike of the timestep."""
    spk_t = a.cnt[:, cols.spk].sum(1)
    syn_t = a.cnt[:, cols.syn].sum(1)
    new = any_out & (a.cnt[:, cols.fo_step] < 0)
    first_class = out_fired.to(torch.uint8).argmax(1)  # the smallest index spiking (first maximum)
    upd = torch.stack([torch.full_like(spk_t, k), first_class, spk_t, syn_t], 1)
    a.cnt[:, cols.fo_step : cols.fo_syn + 1] = torch.where(
        new.unsqueeze(1), upd, a.cnt[:, cols.fo_step : cols.fo_syn + 1]
    )
    if a.labels is not None:
        hit = out_fired.gather(1, a.labels.unsqueeze(1)).squeeze(1) & (a.cnt[:, cols.fc_step] < 0)
        upd_c = torch.stack([torch.full_like(spk_t, k), spk_t, syn_t], 1)
        a.cnt[:, cols.fc_step : cols.fc_syn + 1] = torch.where(
            hit.unsqueeze(1), upd_c, a.cnt[:, cols.fc_step : cols.fc_syn + 1]
        )


def _keys(
    sched: Scheduler,
    pt: dict[str, torch.Tensor],
    a: _Rows,
    pending: torch.Tensor,
    hash_k: torch.Tensor | None,
    jitter: torch.Tensor,
    n_neu: int,
) -> torch.Tensor:
    """int64 selection keys ``[n, N]``: the F smallest are delivered (R5.2-R5.4)."""
    if sched is Scheduler.FIFO:
        assert a.seq is not None
        return torch.where(pending, a.seq, _MAX_KEY)
    if sched is Scheduler.RANDOM:
        assert hash_k is not None
        r, c = pending.nonzero(as_tuple=True)
        key = torch.full_like(pending, _MAX_KEY, dtype=torch.int64)
        key[r, c] = hash_neurons(hash_k[r], c, STREAM_RANDOM) * n_neu + c
        return key
    kf = a.vpre
    if float(jitter) > 0:
        assert hash_k is not None
        r, c = pending.nonzero(as_tuple=True)
        u = uniform24(hash_neurons(hash_k[r], c, STREAM_JITTER))
        kf = kf.index_put((r, c), kf[r, c] + jitter * u)
    bits = kf.contiguous().view(torch.int32).to(torch.int64)  # positive float32: bits order like values
    return torch.where(pending, ((1 << 31) - bits) * n_neu + pt["col"], _MAX_KEY)


def _deliver_selected(
    plan: Plan,
    pt: dict[str, torch.Tensor],
    sel: torch.Tensor,
    valid: torch.Tensor,
    mult: torch.Tensor,
    weight: Any,
    gathered_weights: Any,
) -> dict[int, list[torch.Tensor]]:
    """Currents of the selected neurons ``sel [n, F]`` with multiplicities ``mult`` (R4.3.4)."""
    n_rows, f_eff = sel.shape
    pop_sel = pt["pop_of"][sel]
    parts: dict[int, list[torch.Tensor]] = {}
    for p in plan.source_populations:
        in_p = valid & (pop_sel == p)
        if not bool(in_p.any()):
            continue
        n_src = plan.sizes[p]
        m_p = mult * in_p
        local = (sel - plan.offsets[p]).clamp_(0, n_src - 1)
        emitted: torch.Tensor | None = None
        for pp in plan.outgoing[p]:
            if pp.kind == "dense" and 4 * f_eff <= n_src:
                # Gather the weight columns of the selected neurons: [n, F, n_target].
                wsel = gathered_weights(pp).index_select(0, local.reshape(-1)).reshape(n_rows, f_eff, -1)
                cur = torch.bmm(m_p.unsqueeze(1), wsel).squeeze(1)
            else:
                if emitted is None:
                    emitted = torch.zeros(n_rows, n_src, dtype=mult.dtype, device=mult.device).scatter_add(
                        1, local, m_p
                    )
                cur = _apply(pp, weight(pp), emitted)
            parts.setdefault(pp.target, []).append(cur)
    return parts


def _deliver_layered(
    plan: Plan, pt: dict[str, torch.Tensor], a: _Rows, pending: torch.Tensor, lowest: torch.Tensor, weight: Any
) -> tuple[dict[int, list[torch.Tensor]], torch.Tensor]:
    """R5.1: deliver every pending neuron of the lowest pending population (dense rows)."""
    group = pending & (pt["pop_of"].unsqueeze(0) == lowest.unsqueeze(1))
    emitted = a.q.masked_fill(~group, 0.0)
    a.q = a.q.masked_fill(group, 0.0)
    parts: dict[int, list[torch.Tensor]] = {}
    for p in plan.source_populations:
        if not bool((lowest == p).any()):
            continue
        e_p = emitted[:, plan.offsets[p] : plan.offsets[p] + plan.sizes[p]]
        for pp in plan.outgoing[p]:
            parts.setdefault(pp.target, []).append(_apply(pp, weight(pp), e_p))
    syn = torch.round(group.to(torch.float64) @ pt["fanout_f64"]).to(torch.int64)
    return parts, syn


def _emit_silent(
    plan: Plan,
    pt: dict[str, torch.Tensor],
    a: _Rows,
    lowest: torch.Tensor | None,
    weight: Any,
    sur: Surrogate,
) -> None:
    """Silent spikes (section 9) of the populations that are settled and not yet flushed.

    Population ``p`` is settled in a row when no neuron of a population below ``p`` is
    pending (``lowest >= p``): its membranes are final for the timestep. Its
    non-refractory neurons emit a zero-valued spike with the surrogate gradient of
    ``H(V - theta)`` and the reset ``V (1 - 0)``; the (zero) currents go straight into
    the targets' membranes (refractory targets discard them), in population order, so
    that a target population settled at the same time emits after receiving them.
    ``lowest=None`` means the end of the timestep: every population is settled, and the
    output population's silent spikes join the differentiable output counts.
    """
    assert a.flushed is not None
    src = plan.source_populations
    n_rows = a.rows.numel()
    if lowest is None:
        need = ~a.flushed[:, src]
    else:
        need = (lowest.unsqueeze(1) >= torch.tensor(src, device=lowest.device)) & ~a.flushed[:, src]
    todo = need.any(0).tolist() if n_rows else [False] * len(src)
    if not any(todo) and lowest is not None:
        return
    sizes = [plan.sizes[p] for p in range(1, plan.n_populations + 1)]
    vs = list(a.v.split(sizes, 1))
    refr = list(a.refr.split(sizes, 1))
    theta = list(pt["theta"].split(sizes))
    for i, p in enumerate(src):
        if not todo[i]:
            continue
        carriers, vs[p - 1] = silent(vs[p - 1], theta[p - 1], ~refr[p - 1] & need[:, i : i + 1], sur)
        for pp in plan.outgoing[p]:
            cur = _apply(pp, weight(pp), carriers).masked_fill(refr[pp.target - 1], 0.0)
            vs[pp.target - 1] = vs[pp.target - 1] + cur
    a.flushed = a.flushed.clone()
    a.flushed[:, src] |= need
    if lowest is None:
        out = plan.n_populations - 1
        carriers, vs[out] = silent(vs[out], theta[out], ~refr[out], sur)
        assert a.outd is not None
        a.outd = a.outd + carriers
    a.v = torch.cat(vs, 1)


def _finish(plan: Plan, rec: torch.Tensor, input_events: torch.Tensor, cols: _Cols) -> dict[str, torch.Tensor]:
    """Section 7 arrays from the per-timestep counter table ``rec [T, B, C]``."""
    per_t = rec.transpose(0, 1)  # [B, T, C]
    ts_out = per_t[:, :, cols.out]
    out_counts = ts_out.sum(1)
    best = out_counts.max(1)
    spikes = per_t[:, :, cols.spk].sum(1)
    syn = per_t[:, :, cols.syn].sum(1)
    steps = per_t[:, :, cols.fsteps]
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
        "dropped_spikes": per_t[:, :, cols.drop].sum(1),
        "queue_peak": per_t[:, :, cols.qpeak].amax(1),
        "first_output_step": per_t[:, :, cols.fo_step],
        "first_output_class": per_t[:, :, cols.fo_class],
        "first_output_spikes": per_t[:, :, cols.fo_spk],
        "first_output_synops": per_t[:, :, cols.fo_syn],
        "first_correct_step": per_t[:, :, cols.fc_step],
        "first_correct_spikes": per_t[:, :, cols.fc_spk],
        "first_correct_synops": per_t[:, :, cols.fc_syn],
    }
    assert set(res) == set(COUNTER_FIELDS)
    return {k: v.contiguous() for k, v in res.items()}


# ---------------------------------------------------------------------------------------
# infer
# ---------------------------------------------------------------------------------------
def infer(
    network: Network,
    inputs: Any,
    *,
    scheduler: SchedulerLike = "momentum",
    forward_group_size: int = 8,
    stop: StopLike = "drain",
    extra_steps: int = 0,
    max_steps: int | None = None,
    seed: int = 0,
    jitter: float = 0.0,
    refractory_dropout: DropoutLike = "off",
    labels: npt.ArrayLike | None = None,
    sample_ids: npt.ArrayLike | None = None,
    timesteps: int | None = None,
    threads: int | None = None,
    device: torch.device | str | None = None,
) -> InferenceResult:
    """Run event-driven inference with the torch engine (no gradients).

    Same arguments, validation, semantics and result as ``asyncsnn.infer`` (the Rust
    engine) and ``asyncsnn.reference.infer``; the result has ``engine="torch"``.

    Parameters
    ----------
    network
        The :class:`~asyncsnn.network.Network`.
    inputs
        Dense array or tensor ``[B, T, *input_shape]`` (or ``[B, T, n_in]``) of finite
        values >= 0, or a list of ``B`` sparse event arrays ``[n_events, 3]`` of
        ``(t, flat input index, value)`` (R2.2).
    scheduler, forward_group_size, stop, extra_steps, max_steps, seed, jitter, refractory_dropout
        As for ``asyncsnn.infer`` (R5, R6, R4.6).
    labels
        Optional classes ``[B]`` (accuracy and ``first_correct_*``, R7.7).
    sample_ids
        Optional ids ``[B]`` in ``[0, 2**32)`` for the random function (R5.5).
    timesteps
        ``T`` for sparse inputs.
    threads
        Validated like the Rust engine's and otherwise ignored (torch's own thread
        setting applies).
    device
        Torch device to run on (default: CPU).

    Returns
    -------
    InferenceResult
        int64 counters, ``engine="torch"``.

    Raises
    ------
    ParameterError, InputError
        On invalid options or inputs (the same errors as the other engines).

    Examples
    --------
    >>> import numpy as np
    >>> from asyncsnn.network import Dense, Network
    >>> net = Network.sequential(input_shape=(2,), layers=[Dense(np.eye(2) * 2), Dense([[1.5, 1.5]])],
    ...                          threshold=1.0, beta=0.5)
    >>> res = infer(net, np.ones((1, 1, 2)), scheduler="fifo", forward_group_size=1)
    >>> res.first_output_step.tolist(), res.timestep_forward_steps.tolist(), res.synops.tolist()
    ([[1]], [[3]], [6])
    """
    opts = prepare_options(
        network,
        scheduler=scheduler,
        forward_group_size=forward_group_size,
        stop=stop,
        extra_steps=extra_steps,
        max_steps=max_steps,
        seed=seed,
        jitter=jitter,
        refractory_dropout=refractory_dropout,
    )
    prepared = prepare_inputs(network, inputs, labels=labels, sample_ids=sample_ids, timesteps=timesteps)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise invalid(ParameterError, "threads", threads, "must be an int in [1, 1024] or None")
    dev = torch.device("cpu") if device is None else torch.device(device)
    if prepared.dense is not None:
        frames_np = prepared.dense
    else:
        frames_np = np.stack([prepared.dense_sample(b) for b in range(prepared.batch)])
    plan = Plan(network)
    weights = network_weights(network, dev)
    ids = torch.from_numpy(prepared.sample_ids.astype(np.int64))
    lab = None if prepared.labels is None else torch.from_numpy(prepared.labels)
    outs: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for lo in range(0, prepared.batch, _INFER_CHUNK):
            hi = min(lo + _INFER_CHUNK, prepared.batch)
            frames = torch.from_numpy(np.ascontiguousarray(frames_np[lo:hi])).to(dev)
            out = run(
                plan,
                weights,
                frames,
                opts,
                labels=None if lab is None else lab[lo:hi],
                sample_ids=ids[lo:hi],
            )
            outs.append(out.counters)
    arrays = {k: torch.cat([o[k] for o in outs]).numpy() for k in COUNTER_FIELDS}
    return InferenceResult(arrays, labels=prepared.labels, engine="torch", options=opts.as_dict())

"""The pure-Python reference engine: the executable form of ``docs/semantics.md``.

This engine is the oracle the golden vectors (``tests/golden/*.json``) are generated
from. It runs one sample at a time with a readable event loop that follows the rules of
``docs/semantics.md`` one by one (comments cite them); speed is not its job, but all
membrane and current arithmetic is done in numpy float32 so that rounding is exactly
the one the rules prescribe (R8.1).

In short, for every timestep ``t`` (section 4):

1. **Start** (R4.1): leak ``V <- beta * V``; refractory flags and ``v_pre`` are cleared;
   every settling population (R1.6: a bias, a synaptic current, a reset other than
   ``"zero"`` or a recurrent projection into it) becomes *due*.
2. **Input** (R4.2, R2.3): forward step 0 delivers the whole input frame; with
   ``prioritize_input=False`` (R4.13) its values enter the pending set as input entries
   instead and are scheduled with the spikes.
3. **Forward step k** (R4.3): *integrate* the summed current of the step (refractory
   neurons discard theirs); a due population that receives a delivery in this step
   (from the input in step 0, R4.7) *settles*: its bias and its carried current ``C``
   (R4.9) are added to its current, a synaptic current decays and takes it
   (``S <- alpha * S + I``, and the membrane integrates ``S``, R4.12), every one of its
   neurons is integrated and pays its ``"subtract_delayed"`` debt
   (``V <- V - threshold``). After the settle a delivery charges ``S`` and ``V`` alike. *Fire* every integrated,
   non-refractory neuron with ``V > threshold`` (reset by the population's mode, R4.8;
   refractory unless refractory dropout R4.6 says otherwise; enqueued in the pending set
   unless it has no outgoing projection); *stop check* (R6); *select* a group of at
   most ``F`` pending neurons with the scheduler (R5) and *deliver* their spikes
   (``multiplicity * weight`` to every synapse), which forward step ``k + 1``
   integrates. Under ``layered`` a recurrent projection's (``source >= target``)
   delivery goes to ``C`` instead, taken when its target next settles (R4.9); under
   the other schedulers it is delivered like a forward one. When the pending set is
   empty and a population is still due, forward step ``k + 1`` delivers nothing and
   settles the lowest due population (a settle-only step, R4.3.4). The timestep ends
   when the pending set is empty and no population is due, or when a stop check ends
   it (the pending spikes are then dropped, R6.4, due populations stay unsettled and
   ``C`` waits for their next settle).

A network without settling populations never has a due population: it runs exactly
as in version 1 of the rules.

Counters and latency records follow section 7. The result is the same
:class:`~asyncsnn.result.InferenceResult` the Rust engine returns, with
``engine="reference"``.

Examples
--------
>>> import numpy as np
>>> from asyncsnn.network import Dense, Network
>>> net = Network.sequential(input_shape=(2,), layers=[Dense([[0.75, 0.75]])], threshold=1.0, beta=1.0)
>>> res = infer(net, np.array([[[1.0, 1.0]], [[1.0, 0.0]]]))
>>> res.output_counts.tolist(), res.predictions.tolist()
([[1], [0]], [0, -1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from asyncsnn._prepare import (
    DropoutLike,
    PreparedInputs,
    PreparedOptions,
    RunOptions,
    Scheduler,
    SchedulerLike,
    StopLike,
    StopMode,
    check_threads,
    prepare_given_options,
    prepare_inputs,
    prepare_options,
)
from asyncsnn.exceptions import EngineError, ParameterError, invalid
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, SumPool2d
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.rng import (
    STREAM_DROPOUT,
    STREAM_INPUT_DROPOUT,
    STREAM_JITTER,
    STREAM_RANDOM,
    STREAM_RANDOM_INPUT,
    STREAM_SPIKE_DROPOUT,
    hash32_np,
    uniform,
    uniform_np,
)

if TYPE_CHECKING:
    from asyncsnn.trace import Trace

__all__ = ["infer"]

_F32 = np.float32


# ---------------------------------------------------------------------------------------
# Network geometry (section 1)
# ---------------------------------------------------------------------------------------
@dataclass
class _Projection:
    """One projection with a lazily built synapse table per source neuron (R1.2, R1.3)."""

    index: int
    source: int  # population index, 0 = input
    target: int  # population index >= 1
    layer: Any
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    target_offset: int  # global id (R1.5) of the first neuron of the target population
    recurrent: bool  # source >= target (R1.2): its current arrives as R4.9 says
    _table: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def synapses(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Synapses of source neuron ``j`` (flat index in its population).

        Returns ``(targets, weights)``: global target ids (int64, distinct) and float32
        weights, one entry per synapse (R1.3: zero weights included, positions outside
        the target excluded). Built directly from the geometry of R1.2.
        """
        if j not in self._table:
            targets, weights = self._build(j)
            self._table[j] = (
                np.asarray(targets, dtype=np.int64) + self.target_offset,
                np.asarray(weights, dtype=np.float32),
            )
        return self._table[j]

    def _build(self, j: int) -> tuple[Any, Any]:
        layer = self.layer
        if isinstance(layer, Dense):
            # R1.2 Dense: source j reaches every target q with weight W[q, j].
            n_target = layer.weight.shape[0]
            return np.arange(n_target), layer.weight[:, j]
        # R1.2: the source is read as (c, h, w) in C order.
        c, y, x = (int(v) for v in np.unravel_index(j, self.source_shape))
        _, oh, ow = layer.output_shape(self.source_shape)
        targets: list[int] = []
        weights: list[float] = []
        if isinstance(layer, Conv2d):
            # R1.2 Conv2d: (c, y, x) reaches (o, i, jj) with K[o, c, ky, kx] for every
            # ky = y + ph - i*sh in [0, kh) and kx = x + pw - jj*sw in [0, kw).
            c_out, _, kh, kw = layer.weight.shape
            (sh, sw), (ph, pw) = layer.stride, layer.padding
            for o in range(c_out):
                for i in range(oh):
                    ky = y + ph - i * sh
                    if not 0 <= ky < kh:
                        continue
                    for jj in range(ow):
                        kx = x + pw - jj * sw
                        if not 0 <= kx < kw:
                            continue
                        targets.append((o * oh + i) * ow + jj)
                        weights.append(float(layer.weight[o, c, ky, kx]))
            return targets, weights
        if isinstance(layer, (AvgPool2d, SumPool2d)):
            # R1.2 pooling, per channel: (c, y, x) reaches (c, i, jj) when
            # 0 <= y - i*sh < kh and 0 <= x - jj*sw < kw; weight 1/(kh*kw) (float32) or 1.
            kh, kw = layer.kernel_size
            sh, sw = layer.stride
            w = _F32(1.0) / _F32(kh * kw) if isinstance(layer, AvgPool2d) else _F32(1.0)
            for i in range(oh):
                if not 0 <= y - i * sh < kh:
                    continue
                for jj in range(ow):
                    if 0 <= x - jj * sw < kw:
                        targets.append((c * oh + i) * ow + jj)
                        weights.append(float(w))
            return targets, weights
        raise TypeError(f"unknown projection layer {layer!r}")  # pragma: no cover - Network validates


@dataclass
class _Model:
    """The network laid out for the event loop: global neuron ids (R1.5) and parameters."""

    n_neurons: int
    offsets: list[int]  # offsets[p] = global id of the first neuron of population p (p >= 1)
    sizes: list[int]  # sizes[p], population 0 = input
    population_of: np.ndarray  # [n_neurons] population index of every neuron
    threshold: np.ndarray  # [n_neurons] float32
    beta: np.ndarray  # [n_neurons] float32
    bias: np.ndarray  # [n_neurons] float32 (R1.4)
    alpha: np.ndarray  # [n_neurons] float32, synaptic decay (R4.12)
    synaptic: np.ndarray  # [n_neurons] bool: the neuron's population has a synaptic current S (R4.12)
    reset: list[str]  # reset[p], the reset mode of population p (R4.8); reset[0] is unused
    settling: list[bool]  # settling[p] (R1.6, recurrent targets included); settling[0] (the input) is False
    outgoing: list[list[_Projection]]  # outgoing[p] = projections with source p, in projection order
    n_projections: int
    n_populations: int  # non-input populations P

    def neurons(self, p: int) -> slice:
        """The global ids (R1.5) of population ``p >= 1``."""
        return slice(self.offsets[p], self.offsets[p] + self.sizes[p])

    @classmethod
    def build(cls, net: Network) -> _Model:
        sizes = net.population_sizes
        offsets = [0] * len(sizes)
        acc = 0
        for p in range(1, len(sizes)):
            offsets[p] = acc
            acc += sizes[p]
        shapes = net.population_shapes
        projs = [
            _Projection(
                n,
                pr.source,
                pr.target,
                pr.layer,
                shapes[pr.source],
                shapes[pr.target],
                offsets[pr.target],
                pr.recurrent,
            )
            for n, pr in enumerate(net.projections)
        ]
        outgoing: list[list[_Projection]] = [[] for _ in sizes]
        for pr in projs:
            outgoing[pr.source].append(pr)
        pop_of = np.concatenate([np.full(sizes[p], p, dtype=np.int64) for p in range(1, len(sizes))])
        return cls(
            n_neurons=acc,
            offsets=offsets,
            sizes=sizes,
            population_of=pop_of,
            threshold=np.concatenate([p.threshold.reshape(-1) for p in net.populations]).astype(np.float32),
            beta=np.concatenate([p.beta.reshape(-1) for p in net.populations]).astype(np.float32),
            bias=np.concatenate([np.asarray(p.bias).reshape(-1) for p in net.populations]).astype(np.float32),
            alpha=np.concatenate([np.asarray(p.alpha).reshape(-1) for p in net.populations]).astype(np.float32),
            synaptic=np.concatenate([np.full(p.size, p.synaptic) for p in net.populations]),
            reset=["zero"] + [p.reset for p in net.populations],
            settling=[False, *net.settling],
            outgoing=outgoing,
            n_projections=len(projs),
            n_populations=len(net.populations),
        )


# ---------------------------------------------------------------------------------------
# Schedulers (section 5)
# ---------------------------------------------------------------------------------------
def _select(
    opts: PreparedOptions,
    model: _Model,
    pending: dict[int, list[int]],
    v_pre: np.ndarray,
    sample_id: int,
    t: int,
    k: int,
    trace: list[dict[str, Any]] | None,
    inputs: dict[int, list[Any]] | None = None,
) -> tuple[list[int], list[int]]:
    """Pick the group G delivered at the end of forward step ``k`` (R4.3.4, R5).

    Returns the input entries (input indices, R4.13) and the neurons (ids) of the group.
    """
    if inputs:
        return _select_with_inputs(opts, model, pending, inputs, sample_id, t, k, trace)
    ids = np.array(sorted(pending), dtype=np.int64)
    f = opts.forward_group_size
    keys: list[Any]
    if opts.scheduler is Scheduler.LAYERED:
        # R5.1: all pending neurons of the lowest population index present; F is ignored.
        lowest = int(model.population_of[ids].min())
        group = [int(j) for j in ids if model.population_of[j] == lowest]
        keys = [int(model.population_of[j]) for j in ids]
    elif opts.scheduler is Scheduler.FIFO:
        # R5.2: the F smallest sequence numbers (sequence numbers are unique).
        keys = [pending[int(j)][1] for j in ids]
        order = sorted(range(len(ids)), key=lambda n: keys[n])
        group = [int(ids[n]) for n in order[:f]]
    elif opts.scheduler is Scheduler.RANDOM:
        # R5.3: the F smallest keys h(seed, sample, t, k, j, 0), fresh at every step;
        # equal keys go to the smaller neuron id.
        h = hash32_np(opts.seed, sample_id, t, k, ids, STREAM_RANDOM)
        keys = [int(v) for v in h]
        order = sorted(range(len(ids)), key=lambda n: (keys[n], int(ids[n])))
        group = [int(ids[n]) for n in order[:f]]
    else:
        # R5.4: the F largest keys v_pre[j] + jitter * u(seed, sample, t, k, j, 2), in
        # float32 (jitter * u rounded, then the sum rounded); ties to the smaller id.
        key_arr = v_pre[ids].astype(np.float32)
        if opts.jitter != 0.0:
            u = uniform_np(opts.seed, sample_id, t, k, ids, STREAM_JITTER)
            key_arr = (key_arr + (_F32(opts.jitter) * u).astype(np.float32)).astype(np.float32)
        keys = [float(v) for v in key_arr]
        order = sorted(range(len(ids)), key=lambda n: (-keys[n], int(ids[n])))
        group = [int(ids[n]) for n in order[:f]]
    if trace is not None:
        trace.append(
            {
                "event": "select",
                "t": t,
                "k": k,
                "pending": {int(j): tuple(pending[int(j)]) for j in ids},
                "keys": {int(j): keys[n] for n, j in enumerate(ids)},
                "group": list(group),
            }
        )
    return [], group


def _select_with_inputs(
    opts: PreparedOptions,
    model: _Model,
    pending: dict[int, list[int]],
    inputs: dict[int, list[Any]],
    sample_id: int,
    t: int,
    k: int,
    trace: list[dict[str, Any]] | None,
) -> tuple[list[int], list[int]]:
    """R4.13: the group when input entries are pending too (``prioritize_input=False``).

    Entries are ``(0, i)`` for input ``i`` and ``(1, j)`` for neuron ``j``, listed inputs
    first, each by index: the order that breaks equal keys.
    """
    entries = [(0, i) for i in sorted(inputs)] + [(1, j) for j in sorted(pending)]
    f = opts.forward_group_size
    chosen: list[tuple[int, int]]
    keys: list[Any]
    if opts.scheduler is Scheduler.LAYERED:
        # R5.1 with the inputs as population 0: all pending input entries, F ignored.
        chosen = [e for e in entries if e[0] == 0]
        keys = [0 if kind == 0 else int(model.population_of[j]) for kind, j in entries]
    elif opts.scheduler is Scheduler.FIFO:
        # R5.2: the F smallest sequence numbers (inputs and neurons share the counter).
        keys = [inputs[j][1] if kind == 0 else pending[j][1] for kind, j in entries]
        order = sorted(range(len(entries)), key=lambda n: keys[n])
        chosen = [entries[n] for n in order[:f]]
    else:
        # R5.3 / R4.13: inputs keyed h(seed, sample, t, k, i, 5), neurons h(..., j, 0); the F
        # smallest keys, equal keys to input entries first, then the smaller index.
        assert opts.scheduler is Scheduler.RANDOM  # momentum refuses prioritize_input=False
        ins = np.array([j for kind, j in entries if kind == 0], dtype=np.int64)
        ids = np.array([j for kind, j in entries if kind == 1], dtype=np.int64)
        keys = [int(v) for v in hash32_np(opts.seed, sample_id, t, k, ins, STREAM_RANDOM_INPUT)]
        keys += [int(v) for v in hash32_np(opts.seed, sample_id, t, k, ids, STREAM_RANDOM)]
        order = sorted(range(len(entries)), key=lambda n: (keys[n], entries[n]))
        chosen = [entries[n] for n in order[:f]]
    if trace is not None:
        trace.append(
            {
                "event": "select",
                "t": t,
                "k": k,
                "pending": {int(j): tuple(pending[j]) for j in sorted(pending)},
                "pending_inputs": {int(i): tuple(inputs[i]) for i in sorted(inputs)},
                "keys": {f"{'input' if kind == 0 else 'neuron'} {j}": keys[n] for n, (kind, j) in enumerate(entries)},
                "group": [f"{'input' if kind == 0 else 'neuron'} {j}" for kind, j in chosen],
            }
        )
    return sorted(j for kind, j in chosen if kind == 0), [j for kind, j in chosen if kind == 1]


# ---------------------------------------------------------------------------------------
# One sample (sections 3, 4, 6, 7)
# ---------------------------------------------------------------------------------------
def _dense_frames(prepared: PreparedInputs, b: int, n_in: int) -> np.ndarray:
    """Frames ``[T, n_in]`` of sample ``b``; sparse events are summed in float32 in list order (R2.2)."""
    if prepared.dense is not None:
        return np.asarray(prepared.dense[b])
    # The shared conversion (a typed EngineError when T * n_in frames do not fit in memory).
    return prepared.dense_sample(b)


def _overflow(model: _Model, sample: int, t: int, k: int, q: int) -> EngineError:
    """The R8.3 error for neuron ``q`` (global id) of the sample at position ``sample``."""
    pop = int(model.population_of[q])
    location = f"sample {sample}, timestep {t}, forward step {k}, population {pop}, neuron {q - model.offsets[pop]}"
    return EngineError(f"{location}: membrane overflows", field="membrane", value=None, location=location)


@dataclass
class _Sample:
    """The state of one sample (R3) and its counters (section 7), shared by the phases.

    The phase functions below take it first and are named after the rules they
    implement; :func:`_run_sample` calls them in the order of section 4.
    """

    model: _Model
    opts: PreparedOptions
    label: int | None
    sample_id: int
    position: int  # the sample's index in the call, named by an overflow error (R8.3)
    trace: list[dict[str, Any]] | None
    n_t: int
    # R3.1 / R3.2 state
    v: np.ndarray = field(init=False)
    refractory: np.ndarray = field(init=False)
    v_pre: np.ndarray = field(init=False)
    current: np.ndarray = field(init=False)  # I, summed within one forward step
    carried: np.ndarray = field(init=False)  # R3.1 / R4.9: C, carried to the target's next settle
    debt: np.ndarray = field(init=False)  # R3.1: "subtract_delayed" threshold owed (R4.8)
    syn: np.ndarray = field(init=False)  # R3.1 / R4.12: synaptic current S (0 where there is none)
    received: np.ndarray = field(init=False)  # neurons some synapse delivered to in this step
    due: list[bool] = field(init=False)  # R3.1: due[p] per population (R4.7); due[0] is False
    settle_now: set[int] = field(default_factory=set)  # due populations that settle in this step (R4.7)
    pending: dict[int, list[int]] = field(default_factory=dict)  # neuron -> [multiplicity, sequence number]
    inputs: dict[int, list[Any]] = field(default_factory=dict)  # R4.13: input index -> [value, sequence number]
    next_seq: int = 0
    # Section 7 counters.
    output_counts: list[int] = field(init=False)
    ts_output_counts: list[list[int]] = field(init=False)
    spikes: list[int] = field(init=False)
    input_events: int = 0
    synops_per_projection: list[int] = field(init=False)
    ts_forward_steps: list[int] = field(init=False)
    dropped: int = 0
    queue_peak: int = 0
    latency: dict[str, list[int]] = field(init=False)  # R7.7 records by counter name
    ts_spikes: list[int] = field(init=False)  # R7.9
    ts_synops: list[int] = field(init=False)
    running: int = -1  # R7.9: the running prediction (-1 before any output spike)
    decision: list[int] = field(default_factory=lambda: [-1, -1, -1, -1])  # R7.9: step, timestep, spikes, synops
    steps_before: int = 0  # forward steps of the earlier timesteps (R7.9)
    synops_before: int = 0  # synops of the earlier timesteps (R7.9)
    spikes_t: int = 0  # spikes fired so far in this timestep (R7.7)
    synops_t: int = 0  # synops delivered so far in this timestep (R7.7)

    def __post_init__(self) -> None:
        # R3.3: start of the sample.
        n, n_t = self.model.n_neurons, self.n_t
        n_out = self.model.sizes[self.model.n_populations]
        self.v = np.zeros(n, dtype=np.float32)  # membrane V (R3.1)
        self.refractory = np.zeros(n, dtype=bool)
        self.v_pre = np.zeros(n, dtype=np.float32)
        self.current = np.zeros(n, dtype=np.float32)
        self.carried = np.zeros(n, dtype=np.float32)  # C = 0 (R3.3)
        self.debt = np.zeros(n, dtype=bool)
        self.syn = np.zeros(n, dtype=np.float32)  # S = 0 (R3.3)
        self.received = np.zeros(n, dtype=bool)
        self.due = [False] * (self.model.n_populations + 1)
        self.output_counts = [0] * n_out
        self.ts_output_counts = [[0] * n_out for _ in range(n_t)]
        self.spikes = [0] * self.model.n_populations
        self.synops_per_projection = [0] * self.model.n_projections
        self.ts_forward_steps = [0] * n_t
        self.latency = {name: [-1] * n_t for name in _LATENCY_FIELDS}
        self.ts_spikes = [0] * n_t
        self.ts_synops = [0] * n_t

    def counters(self) -> dict[str, Any]:
        """The counters by COUNTER_FIELDS name (Python ints / lists)."""
        # R7.1 prediction: argmax of output_counts, ties to the smallest index, -1 without spikes.
        best = max(self.output_counts)
        prediction = self.output_counts.index(best) if best > 0 else -1
        return {
            "predictions": prediction,
            "output_counts": self.output_counts,
            "timestep_output_counts": self.ts_output_counts,
            "spikes": self.spikes,
            "spikes_total": sum(self.spikes),
            "input_events": self.input_events,
            "synops": sum(self.synops_per_projection),
            "synops_per_projection": self.synops_per_projection,
            "forward_steps": sum(self.ts_forward_steps),
            "timestep_forward_steps": self.ts_forward_steps,
            "dropped_spikes": self.dropped,
            "queue_peak": self.queue_peak,
            **self.latency,
            "timestep_spikes": self.ts_spikes,
            "timestep_synops": self.ts_synops,
            "decision_step": self.decision[0],
            "decision_timestep": self.decision[1],
            "decision_spikes": self.decision[2],
            "decision_synops": self.decision[3],
        }


_LATENCY_FIELDS = (
    "first_output_step",
    "first_output_class",
    "first_output_spikes",
    "first_output_synops",
    "first_correct_step",
    "first_correct_spikes",
    "first_correct_synops",
)


def start_timestep(s: _Sample) -> None:
    """R4.1: leak, clear refractory flags and ``v_pre``, make settling populations due.

    (1) One float32 multiply; (2) flags cleared, ``v_pre`` set to 0; (3) every settling
    population becomes due (one left due by an early stop stays due, R6.4).
    """
    s.v = (s.model.beta * s.v).astype(np.float32)
    s.refractory[:] = False
    s.v_pre[:] = 0.0
    for p in range(1, s.model.n_populations + 1):
        if s.model.settling[p]:
            s.due[p] = True
    assert not s.pending  # R4.1: the pending set is always empty here (R6)
    assert not s.inputs
    s.current = np.zeros(s.model.n_neurons, dtype=np.float32)
    s.received[:] = False
    s.settle_now = set()
    s.spikes_t = 0
    s.synops_t = 0


def deliver_input_frame(s: _Sample, frame: np.ndarray, t: int) -> None:
    """R4.2 / R2.3: forward step 0 delivers the whole input frame, no scheduling slot.

    With ``prioritize_input=False`` (R4.13) the kept values are enqueued as input entries
    instead, in input index order, and step 0 delivers and settles nothing.
    """
    prioritized = s.opts.prioritize_input
    if prioritized:
        # R4.7: a due population targeted by a projection from the input settles in step 0,
        # whether or not the frame has non-zero values.
        for proj in s.model.outgoing[0]:
            if s.due[proj.target]:
                s.settle_now.add(proj.target)
    p_in = s.opts.input_dropout
    for i in np.flatnonzero(frame):
        # R4.10: dropped when u(seed, sample, t, 0, i, 3) < p (float64); as if x_i(t) = 0.
        if p_in > 0.0 and uniform(s.opts.seed, s.sample_id, t, 0, int(i), STREAM_INPUT_DROPOUT) < p_in:
            continue
        x = _F32(frame[i])
        s.input_events += 1  # R7.3 (R4.13: at the enqueue)
        if s.trace is not None:
            s.trace.append({"event": "input", "t": t, "k": 0, "neuron": int(i), "value": float(x)})
        if prioritized:
            _deliver_input(s, int(i), x)
        else:
            s.inputs[int(i)] = [x, s.next_seq]  # R4.13: an input entry with the next sequence number
            s.next_seq += 1


def _deliver_input(s: _Sample, i: int, x: np.float32) -> None:
    """``I[q] += x * w`` over every synapse of input neuron ``i`` (R4.2; R4.13 at its delivery)."""
    for proj in s.model.outgoing[0]:
        targets, weights = proj.synapses(i)
        s.current[targets] = s.current[targets] + (x * weights).astype(np.float32)  # float32 product and sum
        s.received[targets] = True
        s.synops_per_projection[proj.index] += len(targets)  # R7.4: fan-out of input neuron i
        s.synops_t += len(targets)


def integrate_fire(s: _Sample, t: int, k: int) -> list[int]:
    """R4.3.1 integrate and R4.3.2 fire; returns the output classes that spiked, in id order."""
    model, trace, refractory, current, v = s.model, s.trace, s.refractory, s.current, s.v
    # R4.3.1 Integrate. First the due populations that settle in this step (R4.7) add
    # their bias, then their carried current C (R4.9), to the current of their neurons,
    # all of which are integrated; C is then 0.
    integrated = s.received.copy()
    settled = np.zeros(model.n_neurons, dtype=bool)
    for p in sorted(s.settle_now):
        nrn = model.neurons(p)
        current[nrn] = (current[nrn] + model.bias[nrn]).astype(np.float32)
        current[nrn] = (current[nrn] + s.carried[nrn]).astype(np.float32)
        s.carried[nrn] = 0.0
        integrated[nrn] = True
        settled[nrn] = True
        s.due[p] = False  # R4.7: settles once per timestep
        if trace is not None:
            trace.append({"event": "settle", "t": t, "k": k, "population": p})
    s.settle_now = set()
    # R4.12: a synaptic current S is charged by the current of the step; at the settle it
    # first decays (S <- alpha*S + I) and the membrane takes S instead of I. In other steps
    # S <- S + I, also for a refractory neuron (its synapses are still charged).
    decay = settled & model.synaptic
    if decay.any():
        s.syn[decay] = (model.alpha[decay] * s.syn[decay] + current[decay]).astype(np.float32)
        current[decay] = s.syn[decay]
    charge = integrated & ~settled & model.synaptic
    if charge.any():
        s.syn[charge] = (s.syn[charge] + current[charge]).astype(np.float32)
    # Refractory neurons discard their current; the other integrated neurons add the
    # summed current of this step in one float32 addition.
    if trace is not None:
        lost = np.flatnonzero(refractory & integrated & (current != 0))
        if lost.size:
            trace.append(
                {"event": "discard", "t": t, "k": k, "neurons": lost.tolist(), "current": current[lost].tolist()}
            )
    live = integrated & ~refractory
    if trace is not None:
        got = np.flatnonzero(live & (current != 0))
        if got.size:
            trace.append({"event": "integrate", "t": t, "k": k, "neurons": got.tolist()})
    v[live] = (v[live] + current[live]).astype(np.float32)
    # R4.3.1 / R4.8: a debtor ("subtract_delayed") then pays the threshold, a second
    # float32 operation, and its debt is cleared. (Debts are only paid when the
    # population settles: a neuron that fired is refractory for the rest of the
    # timestep, and in the next one its population is due until it settles.)
    pay = live & s.debt
    if pay.any():
        v[pay] = (v[pay] - model.threshold[pay]).astype(np.float32)
        s.debt[pay] = False
    current[:] = 0.0
    s.received[:] = False
    # R8.3: a membrane that is not finite (an overflowing product x*w or m*w, sum, or
    # V + I, or the paid debt) ends the run; the lowest neuron id is named. (Membranes of
    # neurons not integrated stay finite: they were finite before.)
    bad = np.flatnonzero((live & ~np.isfinite(v)) | (integrated & ~np.isfinite(s.syn)))
    if bad.size:
        raise _overflow(model, s.position, t, k, int(bad[0]))

    # R4.3.2 Fire: every integrated, non-refractory neuron with V > threshold (strictly),
    # in increasing id order. (A neuron of a due population waits for its settle, R4.7.)
    out_pop = model.n_populations
    dropout = s.opts.refractory_dropout  # None, or p per non-input population (R4.6)
    fired = np.flatnonzero(live & (v > model.threshold))
    output_fired: list[int] = []
    for q in fired.tolist():
        pop = int(model.population_of[q])
        s.v_pre[q] = v[q]
        # R4.8: the population's reset mode.
        mode = model.reset[pop]
        if mode == "zero":
            v[q] = 0.0
        elif mode == "subtract":
            v[q] = _F32(v[q] - model.threshold[q])  # one float32 subtraction, now
        elif mode == "subtract_delayed":
            s.debt[q] = True  # V stays; the threshold is paid at the next settle
        else:
            assert mode == "none"  # V stays
        # R4.6: refractory unless u(seed, sample, t, k, q, 1) < p (compared in float64);
        # p > 0 needs reset "zero" (the model and the run options refuse it otherwise).
        stays_open = (
            dropout is not None
            and dropout[pop - 1] > 0.0
            and uniform(s.opts.seed, s.sample_id, t, k, q, STREAM_DROPOUT) < dropout[pop - 1]
        )
        refractory[q] = not stays_open
        s.spikes[pop - 1] += 1  # R7.2: every spike counts
        s.spikes_t += 1
        if pop == out_pop:  # R7.1
            c = q - model.offsets[out_pop]
            s.output_counts[c] += 1
            s.ts_output_counts[t][c] += 1
            output_fired.append(c)
        # R4.11: a spike that would be enqueued is not when u(seed, sample, t, k, q, 4) < p.
        enqueue = bool(model.outgoing[pop]) and not (
            s.opts.spike_dropout > 0.0
            and uniform(s.opts.seed, s.sample_id, t, k, q, STREAM_SPIKE_DROPOUT) < s.opts.spike_dropout
        )
        if enqueue:
            # R3.2: multiplicity +1 if already pending (keeping the sequence number).
            if q in s.pending:
                s.pending[q][0] += 1
            else:
                s.pending[q] = [1, s.next_seq]
                s.next_seq += 1
        if trace is not None:
            trace.append(
                {
                    "event": "fire",
                    "t": t,
                    "k": k,
                    "neuron": q,
                    "population": pop,
                    "v": float(s.v_pre[q]),
                    "refractory": bool(refractory[q]),
                }
            )
    s.queue_peak = max(s.queue_peak, len(s.pending) + len(s.inputs))  # R7.6 (R4.13): after every fire phase
    return output_fired


def record_latency(s: _Sample, t: int, k: int, output_fired: list[int]) -> None:
    """R7.7 latency records and R7.9 stable decision after the fire phase of step ``k``.

    Spikes of steps 0..k (this step included) and synops of the deliveries integrated
    in steps 0..k (made before this step's delivery).
    """
    lat = s.latency
    if output_fired and lat["first_output_step"][t] < 0:
        lat["first_output_step"][t] = k
        lat["first_output_class"][t] = min(output_fired)
        lat["first_output_spikes"][t] = s.spikes_t
        lat["first_output_synops"][t] = s.synops_t
    if s.label is not None and s.label in output_fired and lat["first_correct_step"][t] < 0:
        lat["first_correct_step"][t] = k
        lat["first_correct_spikes"][t] = s.spikes_t
        lat["first_correct_synops"][t] = s.synops_t
    # R7.9: re-evaluate the running prediction (argmax of the output counts so far,
    # ties to the smallest index); only an output spike can change it.
    if output_fired:
        now = s.output_counts.index(max(s.output_counts))
        if now != s.running:
            s.running = now
            s.decision = [s.steps_before + k, t, sum(s.spikes), s.synops_before + s.synops_t]


def stop_check(s: _Sample, t: int, k: int) -> bool:
    """R4.3.3 stop check (R6); on a stop the pending spikes are dropped (R6.4)."""
    opts = s.opts
    first = s.latency["first_output_step"][t]
    stop_now = False
    if opts.stop is StopMode.FIRST_OUTPUT and first >= 0:
        stop_now = k - first >= opts.extra_steps  # R6.2
    if opts.max_steps is not None and k + 1 >= opts.max_steps:
        stop_now = True  # R6.3 (a stop mode of its own, or a cap)
    if stop_now:
        # R6.4: drop every pending spike (sum of multiplicities).
        lost_spikes = sum(m for m, _ in s.pending.values())
        s.dropped += lost_spikes  # R4.13: pending input entries are dropped too, not counted
        if s.trace is not None:
            s.trace.append({"event": "stop", "t": t, "k": k, "dropped": lost_spikes, "dropped_inputs": len(s.inputs)})
        s.pending.clear()
        s.inputs.clear()
    return stop_now


def select(s: _Sample, t: int, k: int) -> tuple[list[int], list[int]]:
    """R5: the group delivered at the end of forward step ``k`` (the pending set is not empty).

    Returns its input entries (R4.13) and its neurons.
    """
    return _select(s.opts, s.model, s.pending, s.v_pre, s.sample_id, t, k, s.trace, s.inputs)


def _carried(opts: PreparedOptions, proj: _Projection) -> bool:
    """R4.9: whether a delivery over ``proj`` is carried (to ``C``) rather than delivered to ``I``.

    Under ``layered`` a recurrent projection's current is carried; under every other
    scheduler every projection delivers into ``I`` in the same timestep.
    """
    return proj.recurrent and opts.scheduler is Scheduler.LAYERED


def deliver_group(s: _Sample, chosen: tuple[list[int], list[int]], t: int, k: int) -> None:
    """R4.3.4: each member leaves the pending set and delivers ``m * w`` to every synapse.

    An input entry (R4.13) delivers its value ``x * w`` to every synapse of its input
    neuron, and settles the due populations the input projects to.

    A due population with a projection from a member's population settles in step
    ``k + 1`` (R4.7), whether or not one of the member's synapses reaches a given neuron.
    Under ``layered`` a recurrent projection's current is carried instead (R4.9): it is
    added to ``C`` of its targets, integrates nothing and settles nothing in this
    timestep; its synops count now (R7.4).
    """
    model = s.model
    input_group, group = chosen
    if input_group:
        for proj in model.outgoing[0]:
            if s.due[proj.target]:
                s.settle_now.add(proj.target)  # R4.7 / R4.13
    for i in input_group:
        x, _ = s.inputs.pop(i)
        _deliver_input(s, i, x)
        if s.trace is not None:
            s.trace.append({"event": "deliver_input", "t": t, "k": k, "neuron": i, "value": float(x)})
    for j in group:
        m, _ = s.pending.pop(j)
        pop = int(model.population_of[j])
        local = j - model.offsets[pop]
        for proj in model.outgoing[pop]:
            targets, weights = proj.synapses(local)
            if _carried(s.opts, proj):
                # R4.9: C[q] += m * w (float32), taken at the target's next settle.
                s.carried[targets] = s.carried[targets] + (_F32(m) * weights).astype(np.float32)
            else:
                if s.due[proj.target]:
                    s.settle_now.add(proj.target)  # R4.7
                s.current[targets] = s.current[targets] + (_F32(m) * weights).astype(np.float32)
                s.received[targets] = True
            s.synops_per_projection[proj.index] += len(targets)  # R7.4: fan-out, whatever m
            s.synops_t += len(targets)
        if s.trace is not None:
            s.trace.append({"event": "deliver", "t": t, "k": k, "neuron": j, "multiplicity": m})


def settle_only(s: _Sample, t: int, k: int) -> None:
    """R4.3.4: nothing pending but a population due: a settle-only step follows.

    Forward step ``k + 1`` delivers nothing and settles the due population of the
    lowest index (R4.7).
    """
    lowest = s.due.index(True)
    s.settle_now.add(lowest)
    if s.trace is not None:
        s.trace.append({"event": "settle_only", "t": t, "k": k, "population": lowest})


def end_timestep(s: _Sample, t: int, k: int) -> None:
    """R7.5 forward steps and R7.9 spikes and synops of timestep ``t`` (its last step ``k``)."""
    s.ts_forward_steps[t] = k + 1
    s.ts_spikes[t] = s.spikes_t
    s.ts_synops[t] = s.synops_t
    s.steps_before += k + 1
    s.synops_before += s.synops_t


def _run_sample(
    model: _Model,
    frames: np.ndarray,
    label: int | None,
    sample_id: int,
    opts: PreparedOptions,
    trace: list[dict[str, Any]] | None = None,
    position: int = 0,
) -> dict[str, Any]:
    """Run one sample; return its counters by COUNTER_FIELDS name (Python ints / lists).

    ``position`` is the sample's index in the call, which an overflow error names (R8.3).
    The phases of section 4 in order, each a function named after its rule.
    """
    s = _Sample(model, opts, label, sample_id, position, trace, frames.shape[0])
    for t in range(frames.shape[0]):
        start_timestep(s)  # R4.1
        deliver_input_frame(s, frames[t], t)  # R4.2
        k = 0
        while True:
            output_fired = integrate_fire(s, t, k)  # R4.3.1-2
            record_latency(s, t, k, output_fired)  # R7.7, R7.9
            if stop_check(s, t, k):  # R4.3.3, R6 (due populations stay due, R6.4)
                break
            # R4.3.4 Select and deliver.
            if s.pending or s.inputs:
                deliver_group(s, select(s, t, k), t, k)  # R5, R4.3.4 (R4.13: input entries too)
            elif any(s.due):
                settle_only(s, t, k)  # R4.3.4, R4.7: a settle-only step follows
            else:
                break  # R6.1: nothing pending, nothing due: the timestep ends
            k += 1  # R4.4: one more forward step per delivered group or settle-only step
        end_timestep(s, t, k)  # R7.5, R7.9
    return s.counters()


def _infer(
    network: Network,
    inputs: Any,
    *,
    labels: npt.ArrayLike | None = None,
    sample_ids: npt.ArrayLike | None = None,
    timesteps: int | None = None,
    trace: list[list[dict[str, Any]]] | None = None,
    options: RunOptions | None = None,
    **option_keywords: Any,
) -> InferenceResult:
    """:func:`infer` with an optional event trace (one list of events per sample) for tests.

    ``options`` and ``option_keywords`` (the run options of :func:`infer`) are combined
    as by :func:`infer`.
    """
    opts = prepare_given_options(network, options, **option_keywords)
    prepared = prepare_inputs(network, inputs, labels=labels, sample_ids=sample_ids, timesteps=timesteps)
    return _run(network, prepared, opts, trace)


def _run(
    network: Network,
    prepared: PreparedInputs,
    opts: PreparedOptions,
    trace: list[list[dict[str, Any]]] | None = None,
) -> InferenceResult:
    """The reference engine on validated inputs and options (the body of :func:`infer`)."""
    model = _Model.build(network)
    rows: list[dict[str, Any]] = []
    for b in range(prepared.batch):
        frames = _dense_frames(prepared, b, network.input_size)
        label = None if prepared.labels is None else int(prepared.labels[b])
        sample_trace: list[dict[str, Any]] | None = None
        if trace is not None:
            sample_trace = []
            trace.append(sample_trace)
        # float32 overflow to inf (and inf - inf = nan) is checked at each integration (R8.3), not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(_run_sample(model, frames, label, int(prepared.sample_ids[b]), opts, sample_trace, b))
    if rows and list(rows[0]) != list(COUNTER_FIELDS):  # the one list: rust/counters.rs::COUNTERS
        raise AssertionError(f"reference counters {list(rows[0])} are not COUNTER_FIELDS {list(COUNTER_FIELDS)}")
    arrays = {name: np.array([row[name] for row in rows], dtype=np.int64) for name in COUNTER_FIELDS}
    # Shape the per-sample arrays even for degenerate sizes (e.g. zero projections).
    shapes = {
        "T": prepared.timesteps,
        "n_out": network.n_outputs,
        "P": len(network.populations),
        "n_proj": len(network.projections),
    }
    for name, dims in COUNTER_FIELDS.items():
        arrays[name] = arrays[name].reshape((prepared.batch, *(shapes[d] for d in dims)))
    return InferenceResult(arrays, labels=prepared.labels, engine="reference", options=opts.as_dict())


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
    input_dropout: float = 0.0,
    spike_dropout: float = 0.0,
    prioritize_input: bool = True,
    options: RunOptions | None = None,
    labels: npt.ArrayLike | None = None,
    sample_ids: npt.ArrayLike | None = None,
    timesteps: int | None = None,
    threads: int | None = None,
    trace: bool = False,
) -> InferenceResult:
    """Run event-driven inference with the pure-Python reference engine.

    Same arguments, validation and result as the Rust-backed ``asyncsnn.infer``; the
    behaviour is exactly ``docs/semantics.md``. Slow (pure Python event loop): use it as
    an oracle on small networks.

    Parameters
    ----------
    network
        The :class:`~asyncsnn.network.Network`.
    inputs
        Dense array ``[B, T, *input_shape]`` or ``[B, T, n_in]`` of finite values >= 0
        (event counts or graded values, R2.1), or a list of ``B`` sparse event arrays
        ``[n_events, 3]`` with columns ``(t, flat input index, value)`` (R2.2).
        Torch tensors of any real dtype and sparse layout are read as float32
        (``docs/guide.md``, "Torch tensors"); meta and complex tensors are an
        ``InputError``.
    scheduler
        ``"layered"``, ``"fifo"``, ``"random"`` or ``"momentum"`` (R5).
    forward_group_size
        ``F >= 1``: the most pending neurons delivered per forward step (R5).
    stop
        ``"drain"``, ``"first_output"`` or ``"max_steps"`` (R6).
    extra_steps
        ``M >= 0`` forward steps run after the first output spike with
        ``stop="first_output"`` (R6.2).
    max_steps
        ``K >= 1`` forward steps per timestep at most (R6.3); required with
        ``stop="max_steps"``, a cap otherwise.
    seed
        ``0 .. 2**64 - 1``, for the random scheduler, jitter and dropout (R5.5).
    jitter
        Momentum jitter amplitude >= 0 (R5.4; momentum scheduler only).
    refractory_dropout
        ``"off"`` (default, p = 0), ``"network"`` (each population's value) or a
        probability in [0, 1) for every population (R4.6).
    input_dropout
        Probability in [0, 1) that a non-zero input value is dropped (R4.10).
    spike_dropout
        Probability in [0, 1) that a spike is not enqueued (R4.11).
    prioritize_input
        ``True`` (default): each frame is delivered at once in forward step 0 (R2.3);
        ``False``: its values are scheduled with the spikes, one slot each (R4.13; not
        with ``"momentum"``).
    options
        The eleven options above as one :class:`~asyncsnn.RunOptions` value (as for
        ``asyncsnn.infer``: a keyword given with it must agree with it).
    labels
        Optional class per sample ``[B]``, for ``first_correct_*`` (R7.7) and accuracy.
    sample_ids
        Optional ids ``[B]`` in ``[0, 2**32)`` used by the random function instead of the
        sample's index in the call (R5.5).
    timesteps
        ``T`` for sparse inputs (default: last event's ``t`` + 1).
    threads
        Accepted for signature compatibility with the Rust engine and ignored.
    trace
        Also record every input event, spike and delivery (R7.10) in ``result.trace``,
        event for event what the Rust engine records.

    Returns
    -------
    InferenceResult
        int64 counters per sample (shapes in :class:`~asyncsnn.result.InferenceResult`),
        ``engine="reference"``.

    Raises
    ------
    ParameterError, InputError
        On invalid options or inputs (the same as the Rust engine).
    EngineError
        When a membrane stops being finite (float32 overflow, R8.3); ``field`` is
        ``"membrane"`` and ``location`` names the first failing sample (by position in
        the call), timestep, forward step, population and neuron.

    Examples
    --------
    Two hidden neurons fire at forward step 0; with ``F = 1`` the output neuron
    integrates them in two steps and fires at step 1 already:

    >>> import numpy as np
    >>> from asyncsnn.network import Dense, Network
    >>> net = Network.sequential(input_shape=(2,), layers=[Dense(np.eye(2) * 2), Dense([[1.5, 1.5]])],
    ...                          threshold=1.0, beta=0.5)
    >>> res = infer(net, np.ones((1, 1, 2)), scheduler="fifo", forward_group_size=1)
    >>> res.first_output_step.tolist(), res.timestep_forward_steps.tolist(), res.synops.tolist()
    ([[1]], [[3]], [6])
    """
    check_threads(threads)  # validated like every engine; the reference is single-threaded
    opts = prepare_options(
        network,
        options,
        scheduler=scheduler,
        forward_group_size=forward_group_size,
        stop=stop,
        extra_steps=extra_steps,
        max_steps=max_steps,
        seed=seed,
        jitter=jitter,
        refractory_dropout=refractory_dropout,
        input_dropout=input_dropout,
        spike_dropout=spike_dropout,
        prioritize_input=prioritize_input,
    )
    if type(trace) is not bool:
        raise invalid(ParameterError, "trace", trace, "must be True or False")
    prepared = prepare_inputs(network, inputs, labels=labels, sample_ids=sample_ids, timesteps=timesteps)
    if not trace:
        return _run(network, prepared, opts)
    events: list[list[dict[str, Any]]] = []
    result = _run(network, prepared, opts, events)
    result.trace = _r7_10_trace(_Model.build(network), events, result.timestep_forward_steps)
    return result


def _r7_10_trace(model: _Model, samples: list[list[dict[str, Any]]], steps: np.ndarray) -> Trace:
    """The R7.10 trace (input, spike and delivery events) of the reference's event lists."""
    from asyncsnn.trace import Trace

    rows: list[tuple[int, int, int, int, str, int, int, float]] = []
    for b, events in enumerate(samples):
        before = np.concatenate([[0], np.cumsum(steps[b])[:-1]]) if len(steps[b]) else np.zeros(0, dtype=np.int64)
        group: list[tuple[int, int, int, int, str, int, int, float]] = []
        for ev in events:
            kind = {"input": "input", "fire": "spike", "deliver": "delivery", "deliver_input": "delivery"}.get(
                ev["event"]
            )
            if kind is None:
                continue
            t, k = ev["t"], ev["k"]
            if kind == "input" or ev["event"] == "deliver_input":
                pop, neuron, value = 0, ev["neuron"], ev["value"]
            else:
                q = ev["neuron"]
                pop = int(model.population_of[q])
                neuron, value = q - int(model.offsets[pop]), ev["v"] if kind == "spike" else ev["multiplicity"]
            row = (b, t, k, int(before[t]) + k, kind, pop, neuron, float(value))
            if kind == "delivery":
                group.append(row)  # a group is recorded by population and neuron (R7.10)
                continue
            rows.extend(sorted(group, key=lambda r: (r[1], r[2], r[5], r[6])))
            group = []
            rows.append(row)
        rows.extend(sorted(group, key=lambda r: (r[1], r[2], r[5], r[6])))
    names = ("sample", "timestep", "step", "global_step", "kind", "population", "neuron", "value")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return Trace.from_columns({n: np.asarray(c) for n, c in zip(names, columns, strict=True)}, where="reference trace")


def currents_before_spike(network: Network, inputs: Any, **options: Any) -> list[np.ndarray]:
    """How many currents each neuron integrates before it spikes, per population.

    Runs the reference engine with an event trace and, for every spike, counts the
    forward steps of its timestep in which the neuron integrated a non-zero current
    since the start of the timestep (or since its previous spike in that timestep),
    the spiking step included. Under ``layered`` execution of a chain network a
    population receives all its input of a timestep in one forward step, so every count
    is 1; asynchronous schedules split that input over several forward steps, and small
    counts then mean that neurons fire on partial evidence (the paper's "more reactive"
    neurons).

    Parameters
    ----------
    network, inputs
        As for :func:`infer`.
    **options
        Any keyword argument of :func:`infer` (scheduler, forward_group_size, ...).

    Returns
    -------
    list of numpy.ndarray
        One int64 array per non-input population with one entry per spike.

    Examples
    --------
    >>> import numpy as np
    >>> from asyncsnn.network import Dense, Network
    >>> net = Network.sequential(input_shape=(2,), layers=[Dense(np.eye(2) * 2), Dense([[0.75, 0.75]])],
    ...                          threshold=1.0, beta=0.5)
    >>> [c.tolist() for c in currents_before_spike(net, np.ones((1, 1, 2)), scheduler="fifo", forward_group_size=1)]
    [[1, 1], [2]]
    """
    traces: list[list[dict[str, Any]]] = []
    _infer(network, inputs, trace=traces, **options)
    offsets = np.cumsum([0] + [p.size for p in network.populations])
    per_pop: list[list[int]] = [[] for _ in network.populations]
    for events in traces:
        seen: dict[int, int] = {}
        t_now = -1
        for ev in events:
            if ev["t"] != t_now:
                t_now, seen = ev["t"], {}
            if ev["event"] == "integrate":
                for q in ev["neurons"]:
                    seen[q] = seen.get(q, 0) + 1
            elif ev["event"] == "fire":
                q = ev["neuron"]
                pop = int(np.searchsorted(offsets, q, side="right")) - 1
                per_pop[pop].append(seen.pop(q, 0))
    return [np.asarray(v, dtype=np.int64) for v in per_pop]

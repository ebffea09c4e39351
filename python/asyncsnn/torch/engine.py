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
* **Forward step k** (R4.3), on the rows whose timestep is still running:

  1. integrate ``U = V + I * live`` (``live`` = 0 for refractory neurons, whose
     membrane is 0 and whose current is discarded);
  2. fire ``U > theta`` (strict), reset to 0 in the graph, refractory unless dropout
     (R4.6: ``u(seed, sample, t, k, q, 1) < p`` compared in float64, drawn for the
     fired neurons only), ``Q += s`` (``Q`` keeps the autograd link to the spike that
     produced it; fifo sequence numbers by a cumulative sum over ids, so enqueues
     happen in increasing id order). Steps 1-2 are one fused autograd node
     (:func:`asyncsnn.torch._kernels.step`);
  3. counters (R7) and the stop check (R6, a stopped row drops and counts its pending
     spikes, R6.4). A row whose timestep has ended keeps still (nothing pending, no
     current: a few no-op kernels) until half of the rows have ended; the ended rows
     are then set aside and cost no more work;
  4. select and deliver (R5), below.

Masks and counts are float tensors (0/1 and small integers are exact in float32):
boolean and int64 kernels are several times slower on the CPU. A step whose membranes
are not all finite is recomputed with exact selects (``inf * 0`` would be NaN): the
current of a refractory neuron is discarded whatever it is, and a non-refractory
membrane that is not finite fails its sample (R8.3). The batch runs in lock step, so
each sample's first failure (timestep, forward step, lowest neuron) is recorded and
the run raises for the lowest failing sample once no earlier sample can fail, never
returning counters. Matrix products may fuse a product into the running sum (FMA) and
so hide a product ``x * w`` or ``m * w`` that overflows on its own; when the largest
input value (or, with refractory dropout, twice the largest weight) times the largest
weight could reach float32's range, the targets of such products are found exactly
(float64 products of float32 values) and their current is set to NaN.

**Fused CPU kernels.** On the CPU, a forward step's element-wise work costs more in
kernel launches than in arithmetic, so float32 CPU runs use a few Rust kernels
(``rust/fused.rs``, through :mod:`asyncsnn.torch._kernels`): steps 1-2 with the
refractory mask and the momentum keys in one pass, the take-and-deliver of a group
through the weight table and its backward pass, and the unlayered bookkeeping's merge
of the step's spikes into the pending list and its selection. They do the same
float32 operations as the torch code they replace, which stays the path on other
devices and when ``asyncsnn.torch._kernels.FUSED_CPU`` is false; the tests run both
against the reference engine. They are not the Rust inference engine: that one runs
one sample as an event loop, these are the torch engine's batch operations.

**Pending set and selection** (unlayered schedulers). The pending neurons are a list of
``(row, neuron)`` entries sorted by row and id; each row's group is the ``F`` smallest
of a key that is unique within the row, taken from a ``[rows, largest pending count]``
table of the row's keys (one ``topk`` / ``partition``):

* ``fifo``: the sequence number (R5.2);
* ``random``: ``h(seed, sample, t, k, j, 0)``, hashed for the pending neurons only
  (R5.3; ties to the smaller id);
* ``momentum``: the largest ``v_pre`` (R5.4), with jitter ``v_pre + float32(jitter *
  u(.., 2))`` rounded to float32; a positive float32 orders like its bits, so the key is
  ``2**31 - bits``, ties to the smaller id;
* ``layered``: no selection: the group is every pending neuron of the lowest pending
  population (R5.1), a masked dense row per source population.

A row with at most ``F`` pending neurons delivers them all. This bookkeeping (pending
list, counts, queue peak, stop check, settled populations, selection, synops) works
on small integer arrays, and its cost is the number of kernel launches, not their
size: on the CPU it runs in numpy on zero-copy views of the row tensors
(:func:`_host_iteration`; a numpy call costs a fraction of a torch kernel launch), the
pending list kept up to date from the positions of each step's spikes, its merge and
the selection in one fused Rust call each (within a row the group is then delivered
in id order); on other devices the same computation runs in torch, the pending list
from ``nonzero``.

**Delivery** touches the selected neurons only: when all LIF-to-LIF projections are
Dense, their weights form one table ``[N, span]`` (row = source neuron) and a step's
currents are one ``embedding_bag`` -- the multiplicity-weighted sum of the selected
rows, never a matmul over all neurons -- fused with taking the group out of ``Q`` in
one autograd node whose table gradient is accumulated in place across steps
(:func:`~asyncsnn.torch._kernels.deliver`). Otherwise each source population is
handled alone: ``embedding_bag`` over ``W.T`` for Dense, multiplicities scattered into
the emitted map and convolved for Conv2d and pooling. The layered scheduler uses a
dense matmul/conv of the emitted rows. Currents of a step are summed into ``I`` in
float32 before they touch ``V`` (R8.2).

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
0), so the silent spikes are one autograd node with an identity forward
(:func:`~asyncsnn.torch._kernels.settle`). The spike's surrogate term is kept for the
neurons that fired only (their positions, membranes and thresholds), which is also
all the memory a step's node saves besides the refractory mask. With the ``layered`` scheduler a population settles exactly when its group is
delivered, so training is layered BPTT (R4.5: each neuron contributes
``s_t = H(U_t - theta)`` once per timestep at its final membrane ``U_t``); any
scheduler with ``F`` at least the widest population gives the same gradients on a
network without skip connections. Spike evaluations of steps in which a neuron neither
fires nor emits its silent spike carry no gradient.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from asyncsnn import _engine
from asyncsnn._prepare import (
    DropoutLike,
    RunOptions,
    Scheduler,
    SchedulerLike,
    StopLike,
    StopMode,
    check_threads,
    prepare_inputs,
    prepare_options,
)
from asyncsnn.exceptions import EngineError, ParameterError, invalid
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, SumPool2d
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.rng import STREAM_DROPOUT, STREAM_JITTER, STREAM_RANDOM
from asyncsnn.torch import _kernels
from asyncsnn.torch._kernels import (
    SettleSpec,
    TableGrad,
    TablePart,
    deliver,
    fused_step_applies,
    settle,
    step,
    step_exact,
    step_fused,
    take,
)
from asyncsnn.torch._rng import hash_neurons, hash_neurons_np, mix32_t, prefix, uniform24, uniform24_np
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["Plan", "RunOutput", "as_tensor", "infer", "network_weights", "run", "torch_device"]

_MAX_KEY = torch.iinfo(torch.int64).max
_INFER_CHUNK = 2048  # samples per batch inside infer (results do not depend on it)
_MIN_COMPACT = 16  # smaller row sets are never compacted: their finished rows cost next to nothing
_HASH_STEPS = 32  # forward steps whose hash states are computed at once
_HOST = True  # unlayered scheduling bookkeeping in numpy when running on the CPU (see _host_iteration)


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
    r"""The network laid out for the torch engine.

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
        # Neurons with outgoing projections: when they are exactly the first ids, their
        # columns are a prefix of every [rows, N] tensor.
        n_src = sum(self.sizes[p] for p in self.source_populations)
        self.src_prefix: int | None = None
        if self.source_populations == list(range(1, len(self.source_populations) + 1)):
            self.src_prefix = n_src
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
        self._host: dict[str, np.ndarray] | None = None

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
            t["fanout_total_f64"] = t["fanout_f64"].sum(1)
            t["pop_onehot_f64"] = t["pop_onehot"].to(torch.float64)
            t["rank_f"] = (self.n_populations + 1 - pop_of).to(torch.float32)
            t["src_rank_f"] = torch.tensor(
                [self.n_populations + 1.0 - p for p in self.source_populations], dtype=torch.float32, device=device
            )
            t["fanout_in_f64"] = t["fanout_in"].to(torch.float64)
            if self.n_neurons > 1 << 21:  # pragma: no cover - the momentum key needs N <= 2**21
                raise invalid(ParameterError, "network", self.n_neurons, "the torch engine supports <= 2**21 neurons")
            t["tie_f64"] = 1.0 - torch.arange(self.n_neurons, dtype=torch.float64, device=device) * 2.0**-50
            for pp in self.projections:
                if pp.kind == "pool":
                    kh, kw = pp.kernel_size
                    t[f"pool{pp.index}"] = torch.full(
                        (pp.channels, 1, kh, kw), pp.pool_weight, dtype=torch.float32, device=device
                    )
            self._cache[key] = t
        return self._cache[key]


def _host_arrays(plan: Plan) -> dict[str, np.ndarray]:
    """The plan's constant tables on the CPU as numpy arrays (built once)."""
    if plan._host is None:
        plan._host = {k: v.numpy() for k, v in plan.tensors(torch.device("cpu")).items()}
    return plan._host


def torch_device(device: torch.device | str | None) -> torch.device:
    """Validate a device argument (``None``: the CPU).

    Raises
    ------
    ParameterError
        An unknown device string, or a device this torch build cannot use.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
        raise invalid(ParameterError, "device", device, f"not a usable torch device ({exc})") from exc
    return dev


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy``, copying read-only arrays (torch cannot share them)."""
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


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


_F32_OVERFLOW = 2.0**128 - 2.0**103
"""The smallest magnitude that float32 rounds to infinity (half an ulp above the largest float32)."""


def _source_weight_max(pp: ProjectionPlan, w: torch.Tensor | None) -> torch.Tensor | None:
    """float64 ``[n_source]`` (conv: ``[c_in]``): the largest ``|w|`` of each source's synapses."""
    if w is None:  # pooling: weights <= 1, a product never exceeds its (finite) source value
        return None
    wa = w.detach().abs()
    return (wa.amax(0) if pp.kind == "dense" else wa.amax((0, 2, 3))).to(torch.float64)  # the max is exact


def _overflowing_products(
    pp: ProjectionPlan, w: torch.Tensor, e: torch.Tensor, wmax: torch.Tensor
) -> torch.Tensor | None:
    """The targets reached by a product ``e_j * w`` that overflows float32 (R8.3).

    ``e [r, n_source]`` are source values >= 0 (input values or multiplicities) and
    ``wmax`` is :func:`_source_weight_max`. A float32 product of two float32 is exact
    in float64, so the test is exact. Matrix products may fuse a product with the
    running sum (FMA) and so hide its overflow; the engine marks these targets
    instead. Returns bool ``[r, n_target]``, or ``None`` when no product overflows.
    """
    e64 = e.detach().to(torch.float64)
    r = e64.shape[0]
    if pp.kind == "dense":
        emax = e64.amax(0)
        if not bool((emax * wmax >= _F32_OVERFLOW).any()):
            return None
        wa = w.detach().abs().to(torch.float64)
        q_idx, j_idx = (wa * emax >= _F32_OVERFLOW).nonzero(as_tuple=True)  # the candidate synapses
        hit = e64[:, j_idx] * wa[q_idx, j_idx] >= _F32_OVERFLOW  # [r, candidates]
        rows, cand = hit.nonzero(as_tuple=True)
        flags = torch.zeros(r, wa.shape[0], dtype=torch.bool, device=e.device)
        flags[rows, q_idx[cand]] = True
        return flags
    x = e64.reshape(r, *pp.source_shape)
    emax = x.amax((0, 2, 3))
    if not bool((emax * wmax >= _F32_OVERFLOW).any()):
        return None
    ka = w.detach().abs().to(torch.float64)
    c_out, _, kh, kw = ka.shape
    out: torch.Tensor | None = None
    for o, c, ky, kx in (ka * emax[None, :, None, None] >= _F32_OVERFLOW).nonzero().tolist():
        hot = torch.zeros(1, 1, kh, kw, dtype=torch.float64, device=e.device)
        hot[0, 0, ky, kx] = 1.0
        src = (x[:, c : c + 1] * ka[o, c, ky, kx] >= _F32_OVERFLOW).to(torch.float64)
        reached = F.conv2d(src, hot, stride=pp.stride, padding=pp.padding)[:, 0] > 0  # [r, oh, ow]
        if out is None:
            out = torch.zeros(r, c_out, *reached.shape[1:], dtype=torch.bool, device=e.device)
        out[:, o] |= reached
    assert out is not None
    return out.reshape(r, -1)


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
    """State of a set of rows (samples) within one timestep; ``take`` keeps a subset.

    Masks and counts are float tensors (0/1 masks and small integer counts are exact),
    since float arithmetic is much cheaper than boolean and int64 kernels. Spikes are
    counted per neuron and reduced to the per-population counters once, when the
    timestep ends: without refractory dropout a neuron fires at most once per timestep,
    so the spikes are ``1 - live`` and need no tensor of their own. Unlayered deliveries
    add their synops to ``cnt`` as they happen; layered ones are counted per neuron
    (``delivered``) and reduced at the end.
    """

    rows: torch.Tensor  # int64 [n] positions in the batch
    v: torch.Tensor  # float32 [n, N] membrane (graph)
    live: torch.Tensor  # float32 [n, N] 1.0 = not refractory
    q: torch.Tensor  # float32 [n, N] spikes not delivered yet (graph); see run()
    fired: torch.Tensor | None  # float32 [n, N] spikes of each neuron in this timestep (dropout only)
    delivered: torch.Tensor | None  # float32 [n, N] deliveries of each neuron in this timestep (layered only)
    steps: torch.Tensor  # float32 [n] forward steps run in this timestep
    qpeak: torch.Tensor  # float32 [n] largest pending count so far (R7.6)
    done: torch.Tensor  # bool [n] the timestep of the row has ended (state frozen)
    cnt: torch.Tensor  # float64 [n, C] other counters of this timestep (_Cols)
    vpre: torch.Tensor | None  # float32 [n, N] membrane at the latest spike (momentum)
    settled: torch.Tensor | None  # float32 [n] (grad): n_pop + 1 - (last population whose silent spikes left)
    seq: torch.Tensor | None  # int64 [n, N] fifo sequence numbers
    nseq: torch.Tensor | None  # int64 [n] next sequence number
    labels: torch.Tensor | None  # int64 [n]
    hash_t: torch.Tensor | None  # int64 [n] hash state after (seed, sample, t)
    hash_k: torch.Tensor | None  # int64 [n, K] hash states after (seed, sample, t, k) for k < K
    lat_open: torch.Tensor  # float32 [n] 1.0 = a first (correct) output spike may still be recorded
    cur: torch.Tensor | None = None  # float32 [n, N] currents of the next integration
    outd: torch.Tensor | None = None  # float32 [n, n_out] differentiable output counts (end of timestep)
    views: dict[str, tuple[torch.Tensor, np.ndarray]] = field(default_factory=dict, repr=False)

    def take(self, idx: torch.Tensor) -> _Rows:
        """The rows ``idx`` (int64 positions within this set)."""
        parts: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "views"}
        return _Rows(**{name: None if x is None else x[idx] for name, x in parts.items()})  # type: ignore[arg-type]

    def np(self, name: str) -> np.ndarray:
        """A numpy view of the CPU tensor ``name`` (cached while the attribute holds that tensor)."""
        tensor = getattr(self, name)
        cached = self.views.get(name)
        if cached is None or cached[0] is not tensor:
            cached = (tensor, tensor.numpy())
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


def _merge(parts: list[_Rows]) -> _Rows:
    """Concatenate retired row sets back into batch order.

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
    order = torch.cat([p.rows for p in parts])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    merged: dict[str, Any] = {}
    for f in fields(_Rows):
        if f.name == "views":
            continue
        vals = [getattr(p, f.name) for p in parts]
        present = [v is not None for v in vals]
        if not any(present):
            merged[f.name] = None
            continue
        if not all(present):  # pragma: no cover - a bug: the row sets disagree on what they hold
            raise AssertionError(f"_merge: field {f.name} is set in some row sets only")
        merged[f.name] = torch.cat(vals)[inv]
    return _Rows(**merged)


class _Delivery:
    """Turns the selected neurons and their multiplicities into currents ``[n, N]`` (R4.3.4).

    When every source population projects through Dense layers only and the table is
    small, all LIF-to-LIF weights are laid out once per run as one table ``[N, span]``
    (row = source neuron, columns = the global ids from the first target on), and a
    step's currents are one ``embedding_bag``: the weighted sum of the selected rows
    (its gradient is accumulated in place, :class:`~asyncsnn.torch._kernels.TableGrad`).
    Otherwise each source population is handled on its own: ``embedding_bag`` over
    ``W.T`` for Dense, scatter into the emitted map and convolve for Conv2d / pooling.
    """

    TABLE_LIMIT = 1 << 23  # entries of the global table (32 MiB of float32)

    def __init__(self, plan: Plan, pt: dict[str, torch.Tensor], weights: Sequence[torch.Tensor | None]) -> None:
        self.plan, self.pt, self.weights = plan, pt, weights
        lif = [pp for pp in plan.projections if pp.source > 0]
        self.table: torch.Tensor | None = None
        self.holder: TableGrad | None = None
        self.parts: list[TablePart] = []
        self.col0 = min((plan.offsets[pp.target] for pp in lif), default=0)
        span = plan.n_neurons - self.col0
        if lif and all(pp.kind == "dense" for pp in lif) and plan.n_neurons * span <= self.TABLE_LIMIT:
            ws: list[torch.Tensor] = []
            blocks = []
            for pp in lif:
                w = weights[pp.index]
                assert w is not None
                ws.append(w)
                blocks.append((plan.offsets[pp.source], plan.offsets[pp.target] - self.col0))
            table = torch.zeros(plan.n_neurons, span, dtype=torch.float32, device=ws[0].device)
            for w, (r0, c0) in zip(ws, blocks):
                table[r0 : r0 + w.shape[1], c0 : c0 + w.shape[0]] += w.detach().t()
            self.table = table
            if torch.is_grad_enabled() and any(w.requires_grad for w in ws):
                self.holder = TableGrad(table, blocks, ws)
            self.parts = [TablePart(0, 0, span, table)]  # the table as one block
        self._wt: dict[int, torch.Tensor] = {}
        self._specs: dict[tuple[tuple[int, ...], bool], SettleSpec] = {}
        # R8.3: the largest |w| of each source, and whether a spike delivery can overflow
        # float32 at all (only a multiplicity m >= 2, i.e. refractory dropout, makes m * w
        # larger than w).
        self.wmax = [_source_weight_max(pp, weights[pp.index]) for pp in plan.projections]
        lif_max = [float(m.max()) for pp, m in zip(plan.projections, self.wmax) if pp.source > 0 and m is not None]
        self.lif_risk = 2.0 * max(lif_max, default=0.0) >= _F32_OVERFLOW

    def overflow_flags(self, emitted: torch.Tensor, populations: Sequence[int]) -> torch.Tensor | None:
        """Mark the neurons reached by an overflowing product (R8.3): bool ``[n, N]``, or ``None``.

        ``emitted`` holds the source values: the input frame ``[n, n_in]`` for
        ``populations = [0]``, else multiplicities ``[n, N]`` by global id.
        """
        plan = self.plan
        flags: torch.Tensor | None = None
        for p in populations:
            e_p = emitted if p == 0 else emitted[:, plan.offsets[p] : plan.offsets[p] + plan.sizes[p]]
            for pp in plan.outgoing[p]:
                wmax = self.wmax[pp.index]
                if wmax is None:
                    continue
                hit = _overflowing_products(pp, self.weight(pp), e_p, wmax)
                if hit is None:
                    continue
                if flags is None:
                    flags = torch.zeros(emitted.shape[0], plan.n_neurons, dtype=torch.bool, device=emitted.device)
                o = plan.offsets[pp.target]
                flags[:, o : o + plan.sizes[pp.target]] |= hit
        return flags

    def mark_overflow(self, cur: torch.Tensor, emitted: torch.Tensor, populations: Sequence[int]) -> torch.Tensor:
        """``cur`` with NaN at the neurons reached by an overflowing product (R8.3)."""
        flags = self.overflow_flags(emitted, populations)
        if flags is None:
            return cur
        return torch.where(flags, torch.full((), math.nan, dtype=cur.dtype, device=cur.device), cur)

    def mark_overflow_selected(
        self, cur: torch.Tensor, rows: torch.Tensor, neurons: torch.Tensor, mult: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`mark_overflow` for the selected entries ``(rows, neurons)`` with multiplicities ``mult``."""
        if not self.lif_risk:
            return cur
        emitted = torch.zeros(cur.shape[0], self.plan.n_neurons, dtype=torch.float32, device=cur.device)
        emitted[rows, neurons] = mult.detach().to(torch.float32)
        return self.mark_overflow(cur, emitted, self.plan.source_populations)

    def weight(self, pp: ProjectionPlan) -> torch.Tensor:
        """The projection's weight tensor (the fixed kernel for pooling)."""
        w = self.weights[pp.index]
        return self.pt[f"pool{pp.index}"] if w is None else w

    def _transposed(self, pp: ProjectionPlan) -> torch.Tensor:
        if pp.index not in self._wt:
            self._wt[pp.index] = self.weight(pp).t().contiguous()
        return self._wt[pp.index]

    def selected(self, rows: torch.Tensor, cols: torch.Tensor, mult: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Currents of the selected entries ``(rows[s], cols[s])`` (global ids, sorted by row).

        ``mult [S]`` are their multiplicities; rows without entries receive no current.
        (The table case is :func:`~asyncsnn.torch._kernels.deliver`.)
        """
        plan = self.plan
        pop_sel = self.pt["pop_of"][cols] if len(plan.source_populations) > 1 else None
        parts: dict[int, list[torch.Tensor]] = {}
        for p in plan.source_populations:
            r_p, c_p, m_p = rows, cols, mult
            if pop_sel is not None:
                idx = (pop_sel == p).nonzero().squeeze(1)
                if not idx.numel():
                    continue
                r_p, c_p, m_p = rows[idx], cols[idx], mult[idx]
            n_src = plan.sizes[p]
            local = c_p - plan.offsets[p]
            emitted: torch.Tensor | None = None
            offsets: torch.Tensor | None = None
            for pp in plan.outgoing[p]:
                if pp.kind == "dense":
                    if offsets is None:
                        counts = torch.bincount(r_p, minlength=n_rows)
                        offsets = torch.cumsum(counts, 0) - counts
                    cur = F.embedding_bag(local, self._transposed(pp), offsets, mode="sum", per_sample_weights=m_p)
                else:
                    if emitted is None:
                        emitted = torch.zeros(n_rows, n_src, dtype=mult.dtype, device=mult.device)
                        emitted = emitted.index_put((r_p, local), m_p)
                    cur = _apply(pp, self.weight(pp), emitted)
                parts.setdefault(pp.target, []).append(cur)
        return self.assemble(parts, n_rows)

    def dense(self, emitted: torch.Tensor, populations: Sequence[int]) -> torch.Tensor:
        """Currents of dense source activity ``emitted [n, N]`` from the given populations."""
        plan = self.plan
        parts: dict[int, list[torch.Tensor]] = {}
        for p in populations:
            e_p = emitted[:, plan.offsets[p] : plan.offsets[p] + plan.sizes[p]]
            for pp in plan.outgoing[p]:
                parts.setdefault(pp.target, []).append(_apply(pp, self.weight(pp), e_p))
        return self.assemble(parts, emitted.shape[0])

    def assemble(self, parts: dict[int, list[torch.Tensor]], n_rows: int) -> torch.Tensor:
        """Concatenate per-population currents into ``[n, N]`` (zeros where none)."""
        plan = self.plan
        blocks = []
        for p in range(1, plan.n_populations + 1):
            lst = parts.get(p)
            if lst:
                blk = lst[0]
                for extra in lst[1:]:
                    blk = blk + extra
                blocks.append(blk)
            else:
                blocks.append(torch.zeros(n_rows, plan.sizes[p], dtype=torch.float32, device=self.pt["theta"].device))
        return torch.cat(blocks, 1)

    def settle_spec(self, populations: tuple[int, ...], end: bool, surrogate: Surrogate) -> SettleSpec:
        """The :class:`~asyncsnn.torch._kernels.SettleSpec` of silent spikes of ``populations``."""
        key = (populations, end)
        if key not in self._specs:
            plan, theta = self.plan, self.pt["theta"]

            def cols(p: int) -> slice:
                return slice(plan.offsets[p], plan.offsets[p] + plan.sizes[p])

            sources = []
            anchors: list[torch.Tensor] = []
            for p in populations:
                targets = []
                for pp in plan.outgoing[p]:
                    targets.append((cols(pp.target), self._transposed_map(pp)))
                    w = self.weights[pp.index]
                    if self.holder is None and w is not None and w.requires_grad:
                        anchors.append(w)
                sources.append((cols(p), theta[cols(p)], tuple(targets)))
            if self.holder is not None:
                anchors.append(self.holder.token)
            out = plan.n_populations
            output = (cols(out), theta[cols(out)]) if end else None
            self._specs[key] = SettleSpec(tuple(sources), output, surrogate, tuple(anchors))
        return self._specs[key]

    def _transposed_map(self, pp: ProjectionPlan) -> Callable[[torch.Tensor], torch.Tensor]:
        """``g [rows, n_target] -> g W`` for the projection (the transpose of :func:`_apply`)."""
        w = self.weight(pp).detach()
        if pp.kind == "dense":
            return lambda g: g @ w
        n_src = self.plan.sizes[pp.source]

        def transposed(g: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                z = torch.zeros(g.shape[0], n_src, dtype=g.dtype, device=g.device, requires_grad=True)
                (g_z,) = torch.autograd.grad(_apply(pp, w, z), z, g)
            return g_z

        return transposed


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


@gc_paused()  # the run creates thousands of autograd objects (see gc_paused)
def run(
    plan: Plan,
    weights: Sequence[torch.Tensor | None],
    frames: torch.Tensor,
    opts: RunOptions,
    *,
    labels: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
    surrogate: Surrogate | None = None,
    sample_offset: int = 0,
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
    sample_offset
        Position in the caller's batch of the first sample, for the error below.

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
    """
    dev = frames.device
    pt = plan.tensors(dev)
    n_batch, n_t, _ = frames.shape
    n_neu, n_pop, n_out = plan.n_neurons, plan.n_populations, plan.n_outputs
    cols = _Cols(n_pop, len(plan.projections), n_out)
    grad = torch.is_grad_enabled() and any(w is not None and w.requires_grad for w in weights)
    sur = make_surrogate(surrogate) if grad else None
    f32, f64, i64 = torch.float32, torch.float64, torch.int64
    theta, beta, has_out = pt["theta"], pt["beta"], pt["has_out_f"]
    out_sl = slice(plan.out_offset, plan.out_offset + n_out)
    sched = opts.scheduler
    layered = sched is Scheduler.LAYERED
    fifo = sched is Scheduler.FIFO
    momentum = sched is Scheduler.MOMENTUM
    jitter = opts.jitter if momentum else 0.0
    drop_p: torch.Tensor | None = None
    if opts.refractory_dropout is not None:
        p_pop = torch.tensor((0.0, *opts.refractory_dropout), dtype=f64, device=dev)
        drop_p = p_pop[pt["pop_of"]]  # float64 [N]
    needs_hash = sched is Scheduler.RANDOM or jitter > 0 or drop_p is not None
    if sample_ids is None:
        sample_ids = torch.arange(n_batch, dtype=i64, device=dev)
    hash0 = prefix(opts.seed, sample_ids.to(dev, i64)) if needs_hash else None
    hash_steps = torch.arange(_HASH_STEPS, dtype=i64, device=dev)
    if labels is not None:
        labels = labels.to(dev, i64)
    delivery = _Delivery(plan, pt, weights)
    host = _HOST and not layered and dev.type == "cpu"
    min_rank = float(pt["src_rank_f"].min()) if plan.source_populations else math.inf  # see _emit_silent

    # R7.3 / R7.4: input events and the input deliveries' synops, for every timestep at once.
    nonzero = frames != 0
    input_events = nonzero.sum((1, 2))
    syn_in = nonzero.to(f64) @ pt["fanout_in_f64"]  # [B, T, n_proj]
    rec = torch.zeros(n_t, n_batch, cols.n, dtype=f64, device=dev)
    # R8.3: can an input product x * w overflow float32 at all? (Then its targets are marked.)
    in_wmax = [float(m.max()) for pp, m in zip(plan.projections, delivery.wmax) if pp.source == 0 and m is not None]
    in_risk = n_t > 0 and float(frames.amax()) * max(in_wmax, default=0.0) >= _F32_OVERFLOW
    failures: dict[int, tuple[int, int, int]] = {}  # row -> first (t, k, neuron) whose membrane overflowed
    counts_t: list[torch.Tensor] = []
    v = torch.zeros(n_batch, n_neu, dtype=f32, device=dev)
    all_rows = torch.arange(n_batch, device=dev)

    for t in range(n_t):
        # R4.1: leak (one float32 multiply); clear refractory flags, v_pre and the pending set.
        v = v * beta
        # R4.2: forward step 0 integrates the whole input frame.
        x_t = frames[:, t]
        in_parts: dict[int, list[torch.Tensor]] = {}
        for pp in plan.outgoing[0]:
            in_parts.setdefault(pp.target, []).append(_apply(pp, delivery.weight(pp), x_t))
        cnt = torch.zeros(n_batch, cols.n, dtype=f64, device=dev)
        cnt[:, cols.latency] = -1
        cnt[:, cols.syn] = syn_in[:, t]

        def zeros() -> torch.Tensor:
            return torch.zeros(n_batch, n_neu, dtype=f32, device=dev)

        hash_t = mix32_t(hash0 ^ t) if hash0 is not None else None
        a = _Rows(
            rows=all_rows,
            v=v,
            live=torch.ones(n_batch, n_neu, dtype=f32, device=dev),
            q=zeros(),
            fired=zeros() if drop_p is not None else None,
            delivered=zeros() if layered or host else None,
            steps=torch.zeros(n_batch, dtype=f32, device=dev),
            qpeak=torch.zeros(n_batch, dtype=f32, device=dev),
            done=torch.zeros(n_batch, dtype=torch.bool, device=dev),
            cnt=cnt,
            vpre=zeros() if momentum else None,
            settled=torch.full((n_batch,), n_pop + 1.0, dtype=f32, device=dev) if grad else None,
            seq=torch.zeros(n_batch, n_neu, dtype=i64, device=dev) if fifo else None,
            nseq=torch.zeros(n_batch, dtype=i64, device=dev) if fifo else None,
            labels=labels,
            hash_t=hash_t,
            hash_k=mix32_t(hash_t.unsqueeze(1) ^ hash_steps) if hash_t is not None else None,
            lat_open=torch.ones(n_batch, dtype=f32, device=dev),
            cur=delivery.assemble(in_parts, n_batch),
        )
        if in_risk:
            assert a.cur is not None
            a.cur = delivery.mark_overflow(a.cur, x_t, [0])
        retired: list[_Rows] = []
        latency_open = True  # some row may still record a first (correct) output spike
        pend = np.empty(0, dtype=np.int64)  # host bookkeeping: the pending neurons (see _host_iteration)
        k = 0
        while True:
            # R7.5: forward steps of the running rows.
            if host:
                a.np("steps")[~a.np("done")] = k + 1
            else:
                a.steps = torch.where(a.done, a.steps, float(k + 1))
            # R4.3.1 integrate (refractory neurons, live = 0, discard their current); R4.3.2
            # fire (strict threshold), reset to 0 in the graph, enqueue: q += s (R3.2). q holds
            # the spikes not delivered yet, with their graph: the pending multiplicities of
            # neurons with outgoing projections, and the spikes of the others (output
            # neurons: the differentiable output counts), which are never scheduled.
            assert a.cur is not None
            v_before, q_before = a.v, a.q
            live_new: torch.Tensor | None = None
            if fused_step_applies(a.v, a.cur, a.live, a.q, theta, a.vpre):
                # The same step in one Rust call, with the refractory mask and momentum keys.
                # (The momentum keys of the neurons that fire are set in place.)
                a.v, a.q, sd, _, fired, live_new, finite = step_fused(a.v, a.cur, a.live, a.q, theta, sur, host, a.vpre)
                exact = not finite
            else:
                a.v, a.q, sd, u, fired = step(a.v, a.cur, a.live, a.q, theta, sur, host)
                exact = not math.isfinite(float(u.sum()))  # some membrane overflowed float32 (or a false alarm)
            if exact:
                a.v, a.q, sd, u, fired = step_exact(v_before, a.cur, a.live, q_before, theta, sur, host)
                live_new = None
                # R8.3: a non-refractory membrane that is not finite fails its sample.
                bad = ~torch.isfinite(u) & (a.live > 0)
                if bool(bad.any()):
                    _record_overflow(failures, a.rows, bad, t, k)
                    if 0 in failures:  # no sample comes before this one
                        raise _overflow_error(plan, failures, sample_offset)
                    a.v = torch.where(bad, torch.zeros((), dtype=f32, device=dev), a.v)  # the row's result is void
            a.cur = None
            hash_k = a.step_hash(k) if a.hash_t is not None else None
            if a.vpre is not None and live_new is None:
                # R5.4 key: the membrane at the latest spike (read for pending neurons only).
                if exact:
                    a.vpre = torch.where(sd > 0, u, a.vpre)
                elif drop_p is None:  # at most one spike per timestep: v_pre was 0
                    a.vpre = torch.addcmul(a.vpre, u, sd)
                else:
                    a.vpre = torch.addcmul(a.vpre * (1.0 - sd), u, sd)
            live = a.live - sd if live_new is None else live_new  # refractory (R4.6)
            if drop_p is not None:
                r_f, c_f = sd.nonzero(as_tuple=True)
                if r_f.numel():
                    assert hash_k is not None
                    u = uniform24(hash_neurons(hash_k[r_f], c_f, STREAM_DROPOUT), f64)
                    stays = u < drop_p[c_f]
                    live = live.index_put((r_f[stays], c_f[stays]), torch.ones((), dtype=f32, device=dev))
            a.live = live
            if fifo:
                # R3.2: a sequence number for each neuron entering the pending set, in id order.
                assert a.seq is not None
                assert a.nseq is not None
                new = (sd * has_out > 0) & (q_before.detach() == 0)
                csum = new.cumsum(1)
                a.seq = torch.where(new, a.nseq.unsqueeze(1) + csum - 1, a.seq)
                a.nseq = a.nseq + csum[:, -1]
            if a.fired is not None:
                a.fired = a.fired + sd
            if latency_open:
                out_fired = sd[:, out_sl]
                if host:
                    if (out_fired.numpy().max(1) * a.np("lat_open")).max() > 0:
                        latency_open = _latency_host(a, cols, _host_arrays(plan), k, out_fired.numpy())
                elif float((out_fired.amax(1) * a.lat_open).amax()) > 0:
                    latency_open = _latency(a, cols, pt, k, out_fired)
            if host:
                assert fired is not None
                nxt = _host_iteration(plan, pt, opts, a, k, hash_k, fired, pend, cols, delivery, sur, retired)
                if nxt is None:
                    break
                a, pend = nxt
                k += 1
                continue
            # R7.6 queue peak after every fire phase; R6 stop check.
            qd = a.q.detach()
            if layered:
                pending = (qd * has_out).clamp_(max=1.0)  # 1.0 for pending neurons (integer multiplicities)
                n_pending = pending.sum(1)
                pend_rows = pend_cols = None
            else:
                # The pending neurons as a list of (row, neuron) entries, sorted by row.
                q_src = qd[:, : plan.src_prefix] if plan.src_prefix is not None else qd * has_out
                pend_rows, pend_cols = q_src.nonzero(as_tuple=True)
                n_pending = torch.bincount(pend_rows, minlength=qd.shape[0]).to(f32)
            a.qpeak = torch.maximum(a.qpeak, n_pending)
            ended = n_pending == 0
            stop: torch.Tensor | None = None
            if opts.stop is StopMode.FIRST_OUTPUT:
                fo = a.cnt[:, cols.fo_step]
                stop = (fo >= 0) & (k - fo >= opts.extra_steps)
            if opts.max_steps is not None and k + 1 >= opts.max_steps:
                stop = torch.ones_like(ended)
            if stop is not None:
                # R6.4: the pending spikes of a stopped row are dropped.
                stop_f = stop.to(f32)
                a.cnt[:, cols.drop] += ((qd * has_out).sum(1) * stop_f).to(f64)
                a.q = a.q * (1.0 - stop_f.unsqueeze(1) * has_out)
                n_pending = n_pending * (1.0 - stop_f)
                if layered:
                    pending = pending * (1.0 - stop_f.unsqueeze(1))
                else:
                    assert pend_rows is not None
                    assert pend_cols is not None
                    kept = (~stop)[pend_rows]
                    pend_rows, pend_cols = pend_rows[kept], pend_cols[kept]
                ended = ended | stop
            a.done = a.done | ended
            # Rows whose timestep ended keep still (nothing pending, no current: a few
            # cheap no-ops) until half of the rows have ended; then they are set aside.
            n_done = int(a.done.sum())
            n_rows = a.rows.numel()
            if n_done == n_rows:
                retired.append(a)
                break
            if 2 * n_done >= n_rows >= _MIN_COMPACT:
                retired.append(a.take(a.done.nonzero().squeeze(1)))
                keep = (~a.done).nonzero().squeeze(1)
                if layered:
                    pending = pending[keep]
                else:
                    assert pend_rows is not None
                    assert pend_cols is not None
                    kept = (~a.done)[pend_rows]
                    new_row = torch.cumsum(~a.done, 0) - 1
                    pend_rows, pend_cols = new_row[pend_rows[kept]], pend_cols[kept]
                a = a.take(keep)
                n_pending = n_pending[keep]
                if hash_k is not None:
                    hash_k = hash_k[keep]
            top: torch.Tensor | None = None
            if layered:
                # The lowest population with a pending neuron is n_pop + 1 - top (top = 0: none).
                top = (pending * pt["rank_f"]).amax(1)
            elif grad:
                assert pend_rows is not None
                assert pend_cols is not None
                ranks = pt["rank_f"].index_select(0, pend_cols)
                top = torch.zeros_like(n_pending).scatter_reduce_(0, pend_rows, ranks, "amax")
            if grad:
                assert top is not None
                assert sur is not None
                assert a.settled is not None
                # Some population settles when a source rank r has top <= r < settled.
                if bool((torch.clamp(top, min=min_rank) < a.settled).any()):
                    _emit_silent(plan, pt, a, top, delivery, sur)
            # R4.3.4 select and deliver.
            if layered:
                # R5.1: every pending neuron of the lowest pending population.
                assert top is not None
                assert a.delivered is not None
                group = pending * (pt["rank_f"] == top.unsqueeze(1))
                emitted = a.q * group
                a.q = a.q - emitted
                a.delivered = a.delivered + group
                present = [p for p in plan.source_populations if bool((top == n_pop + 1 - p).any())]
                a.cur = delivery.dense(emitted, present)
                if delivery.lif_risk:
                    a.cur = delivery.mark_overflow(a.cur, emitted, present)
            else:
                assert pend_rows is not None
                assert pend_cols is not None
                counts = n_pending.to(i64)
                rows_sel, cols_sel = _select(
                    sched, a, pend_rows, pend_cols, counts, hash_k, jitter, opts.forward_group_size, n_neu
                )
                n_sel = counts.clamp(max=opts.forward_group_size)
                offsets = torch.cumsum(n_sel, 0) - n_sel
                if delivery.table is not None:
                    flat = rows_sel * n_neu + cols_sel
                    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [
                        (rows_sel, cols_sel, offsets)
                    ]
                    mult = a.q.detach().reshape(-1)[flat] if delivery.lif_risk else None
                    a.q, a.cur = deliver(delivery.holder, delivery.parts, a.q, flat, groups, delivery.col0)
                else:
                    mult, a.q = take(a.q, rows_sel * n_neu + cols_sel, grad)
                    a.cur = delivery.selected(rows_sel, cols_sel, mult, n_rows=a.rows.numel())
                if mult is not None:
                    a.cur = delivery.mark_overflow_selected(a.cur, rows_sel, cols_sel, mult)
                # R7.4: the synops of the delivered neurons, per projection.
                a.cnt[:, cols.syn].index_add_(0, rows_sel, pt["fanout_f64"].index_select(0, cols_sel))
            k += 1

        m = _merge(retired)
        # Reduce the per-neuron counts of the timestep (R7.1, R7.2, R7.4-R7.6).
        fired = m.spikes()
        m.cnt[:, cols.spk] = fired.to(f64) @ pt["pop_onehot_f64"]
        m.cnt[:, cols.out] = fired[:, out_sl].to(f64)
        if m.delivered is not None:
            m.cnt[:, cols.syn] += m.delivered.to(f64) @ pt["fanout_f64"]
        m.cnt[:, cols.fsteps] = m.steps.to(f64)
        m.cnt[:, cols.qpeak] = m.qpeak.to(f64)
        rec[t] = m.cnt
        if grad:
            assert sur is not None
            m.outd = m.q[:, out_sl]
            _emit_silent(plan, pt, m, None, delivery, sur)
            counts_t.append(m.outd)
        v = m.v

    if failures:
        raise _overflow_error(plan, failures, sample_offset)
    counters = _finish(plan, torch.round(rec).to(i64), input_events, cols)
    counts = torch.stack(counts_t, 1) if grad else counters["timestep_output_counts"].to(dev, f32)
    return RunOutput(counts=counts, counters={k: t.cpu() for k, t in counters.items()})


def _record_overflow(
    failures: dict[int, tuple[int, int, int]], rows: torch.Tensor, bad: torch.Tensor, t: int, k: int
) -> None:
    """Record the first failure (R8.3) of each row of ``bad [n, N]`` (lowest neuron id first)."""
    r_idx, q_idx = bad.nonzero(as_tuple=True)  # row-major: a row's lowest neuron comes first
    for r, q in zip(r_idx.tolist(), q_idx.tolist()):
        failures.setdefault(int(rows[r]), (t, k, q))


def _overflow_error(plan: Plan, failures: dict[int, tuple[int, int, int]], sample_offset: int) -> EngineError:
    """The R8.3 error of the lowest failing row."""
    row = min(failures)
    t, k, q = failures[row]
    pop = int(plan._np["pop_of"][q])
    location = (
        f"sample {sample_offset + row}, timestep {t}, forward step {k}, population {pop}, "
        f"neuron {q - plan.offsets[pop]}"
    )
    return EngineError(f"{location}: membrane overflows", field="membrane", value=None, location=location)


def _host_iteration(
    plan: Plan,
    pt: dict[str, torch.Tensor],
    opts: RunOptions,
    a: _Rows,
    k: int,
    hash_k: torch.Tensor | None,
    fired: torch.Tensor,
    pend: np.ndarray,
    cols: _Cols,
    delivery: _Delivery,
    sur: Surrogate | None,
    retired: list[_Rows],
) -> tuple[_Rows, np.ndarray] | None:
    """Queue peak, stop check, silent spikes, selection and delivery of forward step ``k`` (CPU).

    The unlayered schedulers' bookkeeping -- the pending set, pending counts, queue
    peaks, the stop check, the rows' retirement, the settled populations, the
    selection and the synops -- works on small integer arrays; on the CPU it runs in
    numpy on zero-copy views of the row tensors, whose per-call cost is a fraction of
    a torch kernel launch. It is the same computation as the torch code of :func:`run`
    (used on other devices). The pending set is kept as the sorted keys
    ``row * N + neuron`` (``pend``): the neurons with outgoing projections among the
    spikes of this step (``fired``, flat positions) join it, the delivered ones leave
    it. Returns the (possibly compacted) running rows and the pending keys left after
    the delivery, or ``None`` when every row's timestep has ended (``a`` then joins
    ``retired``).
    """
    n_neu, f = plan.n_neurons, opts.forward_group_size
    grad = sur is not None
    pt_np = _host_arrays(plan)
    fused = _kernels.FUSED_CPU
    n_rows = a.rows.numel()
    # R4.3.2: enqueue; a neuron already pending (refractory dropout) keeps its entry.
    if fused:
        pend, counts, first = _engine.merge_pending(pend, fired.numpy(), pt_np["has_out"], n_rows)
    else:
        new = fired.numpy()
        new = new[new % n_neu < plan.src_prefix] if plan.src_prefix is not None else new[pt_np["has_out"][new % n_neu]]
        if pend.size and new.size:
            both = np.concatenate((pend, new))
            pend = np.unique(both) if opts.refractory_dropout is not None else np.sort(both, kind="stable")
        elif new.size:
            pend = new
        counts = np.bincount(pend // n_neu, minlength=n_rows)
        first = np.full(n_rows, -1, dtype=np.int64)
        has = counts > 0
        first[has] = pend[(np.cumsum(counts) - counts)[has]] % n_neu  # a row's lowest pending neuron
    qpeak = a.np("qpeak")
    np.maximum(qpeak, counts, out=qpeak)  # R7.6
    cnt = a.np("cnt")
    stop: np.ndarray | None = None
    if opts.stop is StopMode.FIRST_OUTPUT:
        fo = cnt[:, cols.fo_step]
        stop = (fo >= 0) & (k - fo >= opts.extra_steps)
    if opts.max_steps is not None and k + 1 >= opts.max_steps:
        stop = np.ones(n_rows, dtype=bool)
    if stop is not None and stop.any():
        # R6.4: the pending spikes of a stopped row are dropped.
        qd = a.q.detach()
        q_src = qd[:, : plan.src_prefix] if plan.src_prefix is not None else qd * pt["has_out_f"]
        cnt[:, cols.drop] += q_src.numpy().sum(1, dtype=np.float64) * stop
        stop_f = torch.from_numpy(stop.astype(np.float32))
        a.q = a.q * (1.0 - stop_f.unsqueeze(1) * pt["has_out_f"])
        pend = pend[~stop[pend // n_neu]]
        counts[stop] = 0
        first[stop] = -1
    done = counts == 0
    a.np("done")[:] = done
    n_active = int(np.count_nonzero(counts))
    if n_active == 0:
        retired.append(a)
        return None
    hash_np = None if hash_k is None else hash_k.numpy()
    if 2 * (n_rows - n_active) >= n_rows >= _MIN_COMPACT:
        # Rows whose timestep ended are set aside (they have no pending entries).
        retired.append(a.take(torch.from_numpy(np.flatnonzero(done))))
        keep = np.flatnonzero(~done)
        rows, neurons = np.divmod(pend, n_neu)
        pend = (np.cumsum(~done) - 1)[rows] * n_neu + neurons
        counts, first = counts[keep], first[keep]
        a = a.take(torch.from_numpy(keep))
        hash_np = None if hash_np is None else hash_np[keep]
        n_rows = keep.size
    if grad:
        assert sur is not None
        assert a.settled is not None
        # A row's first entry is its lowest pending neuron, of the lowest pending population.
        top = np.where(first >= 0, pt_np["rank_f"][first], np.float32(0.0))
        # Some population settles when a source rank r has top <= r < settled.
        if (np.maximum(top, pt_np["src_rank_f"].min(initial=np.inf)) < a.np("settled")).any():
            _emit_silent_host(plan, pt, a, top, delivery, sur)
    # R4.3.4 select and deliver.
    if fused:
        sel_rows, sel_neurons, sel_flat, offsets_np, pend_left = _select_fused(opts, a, pend, counts, hash_np, n_neu)
    else:
        rows, neurons = np.divmod(pend, n_neu)
        start = np.cumsum(counts) - counts  # first entry of each row
        sel = _select_host(opts.scheduler, a, rows, neurons, counts, start, hash_np, opts.jitter, f, n_neu)
        sel_rows, sel_neurons, sel_flat = rows[sel], neurons[sel], pend[sel]
        left = np.ones(pend.size, dtype=bool)
        left[sel] = False
        pend_left = pend[left]
        n_sel = np.minimum(counts, f)
        offsets_np = np.cumsum(n_sel) - n_sel
    offsets = torch.from_numpy(offsets_np)
    rows_t, neurons_t = torch.from_numpy(sel_rows), torch.from_numpy(sel_neurons)
    mult: torch.Tensor | None = None
    if delivery.table is not None:
        flat = torch.from_numpy(sel_flat)
        if delivery.lif_risk:
            mult = a.q.detach().reshape(-1)[flat]
        a.q, a.cur = deliver(delivery.holder, delivery.parts, a.q, flat, [(rows_t, neurons_t, offsets)], delivery.col0)
    else:
        mult, a.q = take(a.q, torch.from_numpy(sel_flat), grad)
        a.cur = delivery.selected(rows_t, neurons_t, mult, n_rows=n_rows)
    if mult is not None:
        a.cur = delivery.mark_overflow_selected(a.cur, rows_t, neurons_t, mult)
    # R7.4: deliveries per neuron (their synops are summed at the end of the timestep).
    a.np("delivered").reshape(-1)[sel_flat] += 1.0
    return a, pend_left


def _select_fused(
    opts: RunOptions, a: _Rows, pend: np.ndarray, counts: np.ndarray, hash_np: np.ndarray | None, n_neu: int
) -> tuple[np.ndarray, ...]:
    """:func:`_select_host` and the split of the pending keys in one Rust call.

    Returns the selected entries' rows, neurons and keys (sorted by key), the index of
    each row's first selected entry, and the pending keys left.
    """
    sched = opts.scheduler
    state = None if hash_np is None else np.ascontiguousarray(hash_np)
    if sched is Scheduler.FIFO:
        return _engine.select_pending(pend, counts, opts.forward_group_size, n_neu, "fifo", seq=a.np("seq"))
    if sched is Scheduler.RANDOM:
        return _engine.select_pending(pend, counts, opts.forward_group_size, n_neu, "random", state=state)
    jitter = opts.jitter
    return _engine.select_pending(
        pend,
        counts,
        opts.forward_group_size,
        n_neu,
        "momentum",
        state=state if jitter > 0 else None,
        vpre=np.ascontiguousarray(a.np("vpre")),
        jitter=jitter,
    )


def _latency_host(a: _Rows, cols: _Cols, pt_np: dict[str, np.ndarray], k: int, out_fired: np.ndarray) -> bool:
    """:func:`_latency` in numpy (CPU)."""
    cnt = a.np("cnt")
    new = (out_fired.max(1) > 0) & (cnt[:, cols.fo_step] < 0)
    hit = None
    if a.labels is not None:
        hit = (out_fired[np.arange(out_fired.shape[0]), a.np("labels")] > 0) & (cnt[:, cols.fc_step] < 0)
    rec = new if hit is None else new | hit
    if rec.any():
        # Only the rows that record something (a few): spikes and synops so far.
        idx = np.flatnonzero(rec)
        spk_t = np.zeros(rec.size)
        syn_t = np.zeros(rec.size)
        if a.fired is None:  # spikes of steps 0..k (this step included)
            spk_t[idx] = a.live.shape[1] - a.np("live")[idx].sum(1, dtype=np.float64)
        else:
            spk_t[idx] = a.np("fired")[idx].sum(1, dtype=np.float64)
        # synops of the deliveries integrated in steps 0..k: input + deliveries made so far.
        syn_t[idx] = cnt[idx][:, cols.syn].sum(1) + a.np("delivered")[idx] @ pt_np["fanout_total_f64"]
        cnt[new, cols.fo_step] = k
        cnt[new, cols.fo_class] = out_fired.argmax(1)[new]  # the first (smallest) index spiking
        cnt[new, cols.fo_spk] = spk_t[new]
        cnt[new, cols.fo_syn] = syn_t[new]
        if hit is not None:
            cnt[hit, cols.fc_step] = k
            cnt[hit, cols.fc_spk] = spk_t[hit]
            cnt[hit, cols.fc_syn] = syn_t[hit]
    still = cnt[:, cols.fo_step] < 0
    if a.labels is not None:
        still |= cnt[:, cols.fc_step] < 0
    a.np("lat_open")[:] = still
    return bool((still & ~a.np("done")).any())  # rows whose timestep ended spike no more


def _select_host(
    sched: Scheduler,
    a: _Rows,
    rows: np.ndarray,
    neurons: np.ndarray,
    counts: np.ndarray,
    start: np.ndarray,
    hash_k: np.ndarray | None,
    jitter: float,
    f: int,
    n_neu: int,
) -> np.ndarray:
    """:func:`_select` in numpy: the selected entries' positions, sorted by row.

    ``start`` is the first entry of each row. The key of entry ``e`` is ``primary * M +
    slot`` with ``slot = e - start[row]`` (entries of a row are sorted by id, so ties
    go to the smaller id) and ``M`` the largest pending count.
    """
    max_pending = int(counts.max())
    if max_pending <= f:  # every pending neuron is delivered
        return np.arange(rows.size)
    if sched is Scheduler.FIFO:
        assert a.seq is not None
        primary = a.np("seq").reshape(-1)[rows * n_neu + neurons]
    elif sched is Scheduler.RANDOM:
        assert hash_k is not None
        primary = hash_neurons_np(hash_k[rows], neurons, STREAM_RANDOM)
    else:
        assert a.vpre is not None
        kf = a.np("vpre").reshape(-1)[rows * n_neu + neurons]
        if jitter > 0:
            assert hash_k is not None
            u = uniform24_np(hash_neurons_np(hash_k[rows], neurons, STREAM_JITTER))
            kf = kf + np.float32(jitter) * u
        primary = (1 << 31) - kf.view(np.int32).astype(np.int64)
    slot = np.arange(rows.size) - start[rows]
    table = np.full((counts.size, max_pending), _MAX_KEY, dtype=np.int64)
    table[rows, slot] = primary * max_pending + slot
    smallest = np.partition(table, f - 1, axis=1)[:, :f]  # the f smallest keys of each row, unordered
    valid = smallest != _MAX_KEY
    entries: np.ndarray = start[np.nonzero(valid)[0]] + smallest[valid] % max_pending
    return entries


def _latency(a: _Rows, cols: _Cols, pt: dict[str, torch.Tensor], k: int, out_fired: torch.Tensor) -> bool:
    """R7.7: record the first output (and first correct) spike of the timestep.

    ``out_fired`` is the float ``[n, n_out]`` spike vector of the output population.
    Updates ``a.lat_open`` and returns whether some row whose timestep is running may
    still record one (False once every such row has its first output spike and, with
    labels, its first correct one).
    """
    f64 = torch.float64
    new = (out_fired.amax(1) > 0) & (a.cnt[:, cols.fo_step] < 0)
    hit = None
    if a.labels is not None:
        hit = (out_fired.gather(1, a.labels.unsqueeze(1)).squeeze(1) > 0) & (a.cnt[:, cols.fc_step] < 0)
    spk_t = a.spikes().sum(1).to(f64)  # spikes of steps 0..k (this step included)
    # synops of the deliveries integrated in steps 0..k: input + deliveries made so far.
    syn_t = a.cnt[:, cols.syn].sum(1)
    if a.delivered is not None:
        syn_t = syn_t + a.delivered.to(f64) @ pt["fanout_total_f64"]
    step_k = torch.full_like(spk_t, k)
    first_class = out_fired.argmax(1).to(f64)  # the first (smallest) index spiking
    fo = slice(cols.fo_step, cols.fo_syn + 1)
    a.cnt[:, fo] = torch.where(new.unsqueeze(1), torch.stack([step_k, first_class, spk_t, syn_t], 1), a.cnt[:, fo])
    still = a.cnt[:, cols.fo_step] < 0
    if hit is not None:
        fc = slice(cols.fc_step, cols.fc_syn + 1)
        a.cnt[:, fc] = torch.where(hit.unsqueeze(1), torch.stack([step_k, spk_t, syn_t], 1), a.cnt[:, fc])
        still = still | (a.cnt[:, cols.fc_step] < 0)
    a.lat_open = still.to(torch.float32)
    return bool((still & ~a.done).any())  # rows whose timestep ended spike no more


def _select(
    sched: Scheduler,
    a: _Rows,
    rows: torch.Tensor,
    neurons: torch.Tensor,
    counts: torch.Tensor,
    hash_k: torch.Tensor | None,
    jitter: float,
    f: int,
    n_neu: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The group of every row (R5.2-R5.4) from its pending neurons.

    ``(rows[e], neurons[e])`` are the pending neurons, sorted by row and, within a row,
    by id; ``counts[b]`` is the pending count of row ``b``. Returns the selected
    entries ``(rows, neurons)``, still sorted by row: every pending neuron of a row
    with at most ``f``, otherwise the ``f`` smallest of a key ``primary * N + neuron``
    (unique within the row), laid out in a ``[rows, largest count]`` table for one
    ``topk``; the neuron is the key modulo ``N``.
    """
    max_pending = int(counts.max())
    if max_pending <= f:  # every pending neuron is delivered
        return rows, neurons
    flat = rows * n_neu + neurons
    if sched is Scheduler.FIFO:
        # R5.2: the sequence number.
        assert a.seq is not None
        primary = a.seq.view(-1).index_select(0, flat)
    elif sched is Scheduler.RANDOM:
        # R5.3: h(seed, sample, t, k, j, 0), ties to the smaller id (h * N + j < 2**53).
        assert hash_k is not None
        primary = hash_neurons(hash_k.index_select(0, rows), neurons, STREAM_RANDOM)
    else:
        # R5.4: the largest v_pre + float32(jitter * u(..., 2)), rounded to float32, ties to
        # the smaller id. The bits of a positive float32 (+inf included) order like its value.
        assert a.vpre is not None
        kf = a.vpre.view(-1).index_select(0, flat)
        if jitter > 0:
            assert hash_k is not None
            u = uniform24(hash_neurons(hash_k.index_select(0, rows), neurons, STREAM_JITTER))
            kf = kf + torch.tensor(jitter, dtype=torch.float32, device=u.device) * u
        primary = (1 << 31) - kf.view(torch.int32).to(torch.int64)
    key = primary * n_neu + neurons
    # Entry e goes to column e - (first entry of its row) of its row in the table.
    start = torch.cumsum(counts, 0) - counts
    base = torch.arange(0, counts.numel() * max_pending, max_pending, device=rows.device) - start
    table = torch.full((counts.numel(), max_pending), _MAX_KEY, dtype=torch.int64, device=rows.device)
    table.view(-1).index_copy_(0, torch.arange(rows.numel(), device=rows.device) + base.index_select(0, rows), key)
    vals, _ = torch.topk(table, f, dim=1, largest=False, sorted=False)
    valid = vals != _MAX_KEY
    return valid.nonzero()[:, 0], torch.masked_select(vals, valid) % n_neu


def _emit_silent(
    plan: Plan,
    pt: dict[str, torch.Tensor],
    a: _Rows,
    top: torch.Tensor | None,
    delivery: _Delivery,
    sur: Surrogate,
) -> None:
    """Silent spikes (module docstring) of the populations that became settled.

    Population ``p`` is settled in a row when no neuron of a population below ``p`` is
    pending: its membranes are final for the timestep. With ranks ``r_p = P + 1 - p``
    and ``top`` the largest rank of a pending neuron (0 if none), that is ``top <= r_p``;
    ``a.settled`` is the smallest rank flushed so far (``P + 1``: none). The
    non-refractory neurons of each newly settled population emit a zero-valued spike
    (:func:`~asyncsnn.torch._kernels.settle`): the surrogate gradient of
    ``H(V - theta)`` and of the reset ``V (1 - 0)``, with (zero) currents into the
    targets' membranes (refractory targets discard them), in population order, so that
    a target population settled at the same time emits after receiving them.
    ``top=None`` means the end of the timestep: every population is settled, and the
    output neurons' silent spikes join the differentiable output counts ``a.outd``.
    """
    assert a.settled is not None
    top_ = torch.zeros_like(a.settled) if top is None else top
    ranks = pt["src_rank_f"]
    need = (top_.unsqueeze(1) <= ranks) & (a.settled.unsqueeze(1) > ranks)  # [n, source populations]
    emits = need.any(0).tolist()
    a.settled = torch.minimum(a.settled, top_.clamp(min=1.0))
    pops = tuple(p for p, e in zip(plan.source_populations, emits) if e)
    if not pops and top is not None:
        return
    rows = [need[:, i].nonzero().squeeze(1) for i, e in enumerate(emits) if e]
    spec = delivery.settle_spec(pops, top is None, sur)
    if top is None:
        a.v, a.outd = settle(spec, a.v, a.live, rows, a.outd)
    else:
        a.v = settle(spec, a.v, a.live, rows)


def _emit_silent_host(
    plan: Plan, pt: dict[str, torch.Tensor], a: _Rows, top: np.ndarray, delivery: _Delivery, sur: Surrogate
) -> None:
    """:func:`_emit_silent` during the step loop, with the bookkeeping in numpy (CPU)."""
    assert a.settled is not None
    pt_np = _host_arrays(plan)
    settled = a.np("settled")
    ranks = pt_np["src_rank_f"]
    need = (top[:, None] <= ranks) & (settled[:, None] > ranks)  # [n, source populations]
    np.minimum(settled, np.maximum(top, np.float32(1.0)), out=settled)
    pops, rows = [], []
    for i, p in enumerate(plan.source_populations):
        idx = np.flatnonzero(need[:, i])
        if idx.size:
            pops.append(p)
            rows.append(torch.from_numpy(idx))
    if pops:
        a.v = settle(delivery.settle_spec(tuple(pops), False, sur), a.v, a.live, rows)


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
        Torch tensors of any real dtype and sparse layout are read as float32
        (``docs/guide.md``, "Torch tensors"); meta and complex tensors are an
        ``InputError``.
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
    check_threads(threads)
    dev = torch_device(device)
    if prepared.dense is not None:
        frames_np = prepared.dense
    else:
        frames_np = np.stack([prepared.dense_sample(b) for b in range(prepared.batch)])
    plan = Plan(network)
    weights = network_weights(network, dev)
    ids = as_tensor(prepared.sample_ids.astype(np.int64))
    lab = None if prepared.labels is None else as_tensor(prepared.labels)
    outs: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for lo in range(0, prepared.batch, _INFER_CHUNK):
            hi = min(lo + _INFER_CHUNK, prepared.batch)
            frames = as_tensor(np.ascontiguousarray(frames_np[lo:hi])).to(dev)
            out = run(
                plan,
                weights,
                frames,
                opts,
                labels=None if lab is None else lab[lo:hi],
                sample_ids=ids[lo:hi],
                sample_offset=lo,
            )
            outs.append(out.counters)
    arrays = {k: torch.cat([o[k] for o in outs]).numpy() for k in COUNTER_FIELDS}
    return InferenceResult(arrays, labels=prepared.labels, engine="torch", options=opts.as_dict())

r"""The network laid out for the torch engine (docs/semantics.md section 1), devices, weights.

:class:`Plan` holds the geometry and the LIF parameters of a network, and its constant
tables (thresholds, fan-outs, population of every neuron, ...) once per device;
:func:`apply_projection` applies one projection to dense source activity. The
weights are not part of the plan: :func:`~asyncsnn.torch.engine.run` takes them
separately, so that they can be ``nn.Parameter``\\ s (:func:`network_weights` reads
them from a network).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, Projection, SumPool2d

__all__ = ["Plan", "ProjectionPlan", "apply_projection", "as_tensor", "network_weights", "torch_device"]


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
    recurrent: bool = False  # source >= target (R1.2): delivered as R4.9 says


class Plan:
    r"""The network laid out for the torch engine.

    Parameters
    ----------
    network
        The network; only its geometry and LIF parameters are used (weights are passed
        to :func:`~asyncsnn.torch.engine.run` separately, so that they can be
        ``nn.Parameter``\\ s).

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
    src_prefix
        The number of neurons with outgoing projections when they are exactly the first
        ids (their columns are then a prefix of every ``[rows, N]`` tensor), else ``None``.
    settling
        ``settling[p]``: population ``p`` settles every timestep (R1.6: a bias, a reset
        other than ``"zero"`` or a recurrent projection into it; index 0, the input, is
        ``False``). ``settle_also`` adds populations that the run treats as
        settling although their bias is 0 and their reset ``"zero"`` (trainable zero
        biases, :class:`~asyncsnn.torch.AsyncSNN`): they then settle every timestep as
        if their bias were not 0, which changes no spike, only the settle-only steps.
    any_settling
        Some population settles: the runs track due populations, debts and biases
        (R4.7, R4.8); otherwise they run exactly the version-1 code.
    resets
        ``resets[p]``: the reset mode of population ``p`` (R4.8; ``"zero"`` for the input).
    recurrent
        Some projection is recurrent (R1.2, R4.9): its targets settle, and under
        ``layered`` the runs carry its current to the next timestep.
    synaptic, any_synaptic
        ``synaptic[p]``: population ``p`` has a synaptic current ``S`` (R4.12, some
        ``alpha != 0``; such a population settles); ``any_synaptic``: some population
        has one, and the runs keep ``S`` per neuron.
    """

    def __init__(self, network: Network, settle_also: tuple[int, ...] = ()) -> None:
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
        self.projections = [_projection_plan(n, pr, self.shapes) for n, pr in enumerate(network.projections)]
        self.outgoing: list[list[ProjectionPlan]] = [[] for _ in self.sizes]
        for pp in self.projections:
            self.outgoing[pp.source].append(pp)
        self.source_populations = [p for p in range(1, self.n_populations + 1) if self.outgoing[p]]
        #: The populations with a recurrent projection going out (R4.9).
        self.recurrent_sources = frozenset(
            p for p in self.source_populations if any(pr.recurrent for pr in self.outgoing[p])
        )
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
        pops = network.populations
        self.resets = ["zero", *(p.reset for p in pops)]
        self.recurrent = network.recurrent
        self.settling = [False, *(s or i in settle_also for i, s in enumerate(network.settling, 1))]
        self.any_settling = any(self.settling)
        #: Whether each population (0: the input) has a synaptic current ``S`` (R4.12).
        self.synaptic = [False, *(p.synaptic for p in pops)]
        self.any_synaptic = any(self.synaptic)
        self._np["bias"] = np.concatenate([np.asarray(p.bias).reshape(-1) for p in pops]).astype(np.float32)
        if self.any_settling:
            self._settling_tables(network)
        self._cache: dict[str, dict[str, torch.Tensor]] = {}
        self._host: dict[str, np.ndarray] | None = None

    def _settling_tables(self, network: Network) -> None:
        """The constant tables of settling (R4.7) and the reset modes (R4.8)."""
        n_pop = self.n_populations
        per_neuron = [np.full(self.sizes[p], 1.0, dtype=np.float32) for p in range(1, n_pop + 1)]
        for name, mode in (("reset_zero", "zero"), ("reset_sub", "subtract"), ("reset_delayed", "subtract_delayed")):
            self._np[name] = np.concatenate([m * (self.resets[p] == mode) for p, m in enumerate(per_neuron, 1)])
        self._np["settling_f"] = np.array(self.settling[1:], dtype=np.float32)
        # targets_f[s, d - 1] = 1 when a projection s -> d exists (s = 0: the input); the
        # extra last row (s = P + 1) is zeros, for "no group".
        # Under layered a recurrent delivery does not settle its target (R4.7, R4.9): forward.
        targets = np.zeros((n_pop + 2, n_pop), dtype=np.float32)
        forward = np.zeros_like(targets)
        for pr in network.projections:
            targets[pr.source, pr.target - 1] = 1.0
            if not pr.recurrent:
                forward[pr.source, pr.target - 1] = 1.0
        self._np["targets_f"] = targets
        self._np["targets_layered_f"] = forward
        self._np["silent_rank_f"], self._np["due_silent_rank_f"] = self._silent_ranks(network)
        self._np["pop_rank_f"] = np.arange(n_pop, 0, -1, dtype=np.float32)  # rank P + 1 - p of population p
        self._np["pop_idx"] = self._np["pop_of"] - 1
        # R4.12: the decay alpha of every neuron and 1.0 for the neurons with a synaptic current.
        self._np["alpha"] = np.concatenate([np.asarray(p.alpha).reshape(-1) for p in network.populations]).astype(
            np.float32
        )
        self._np["synaptic_f"] = np.concatenate(
            [np.full(self.sizes[p], float(self.synaptic[p]), dtype=np.float32) for p in range(1, n_pop + 1)]
        )

    def _silent_ranks(self, network: Network) -> tuple[np.ndarray, np.ndarray]:
        """The blocking ranks of silent spikes under the unlayered schedulers (section 9).

        A pending neuron of population ``s`` can still change every population from
        ``min(s + 1, low(s))`` on, ``low(s)`` the lowest population that ``s`` reaches
        through one or more projections (a recurrent one reaches ``d <= s`` in the same
        timestep, R4.9); a due population ``d`` every population from ``min(d, low(d))``
        on. As ranks ``P + 2 - first``: ``[N]`` per neuron and ``[P]`` per due
        population. Without recurrent projections they are ``rank_f`` and
        ``pop_rank_f + 1``; under ``layered`` (carried recurrence) the engine uses those.
        """
        n_pop = self.n_populations
        reach = np.zeros((n_pop + 1, n_pop + 1), dtype=bool)
        for pr in network.projections:
            reach[pr.source, pr.target] = True
        for mid in range(n_pop + 1):  # transitive closure (Floyd-Warshall)
            reach |= reach[:, mid : mid + 1] & reach[mid : mid + 1, :]
        big = n_pop + 1
        low = [int(np.flatnonzero(reach[p]).min()) if reach[p].any() else big for p in range(n_pop + 1)]
        pending = np.array([n_pop + 2 - min(p + 1, low[p]) for p in range(1, n_pop + 1)], dtype=np.float32)
        due = np.array([n_pop + 2 - min(p, low[p]) for p in range(1, n_pop + 1)], dtype=np.float32)
        return pending[self._np["pop_of"] - 1], due

    def population_of(self, neuron: int) -> int:
        """The population of a global neuron id."""
        return int(self._np["pop_of"][neuron])

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

    def host_arrays(self) -> dict[str, np.ndarray]:
        """The constant tables on the CPU as numpy arrays (built once; the host backend's)."""
        if self._host is None:
            self._host = {k: v.numpy() for k, v in self.tensors(torch.device("cpu")).items()}
        return self._host


def _projection_plan(index: int, projection: Projection, shapes: list[tuple[int, ...]]) -> ProjectionPlan:
    """The :class:`ProjectionPlan` of projection ``index`` of a network."""
    layer = projection.layer
    src_shape = shapes[projection.source]
    if isinstance(layer, Dense):
        kind, stride, padding, ks, pw = "dense", (1, 1), (0, 0), (1, 1), 1.0
    elif isinstance(layer, Conv2d):
        kind, stride, padding, ks, pw = "conv", layer.stride, layer.padding, (1, 1), 1.0
    elif isinstance(layer, (AvgPool2d, SumPool2d)):
        kind, stride, padding, ks, pw = "pool", layer.stride, (0, 0), layer.kernel_size, layer.pool_weight
    else:  # pragma: no cover - Network validates
        raise TypeError(f"unknown layer {layer!r}")
    return ProjectionPlan(
        index=index,
        source=projection.source,
        target=projection.target,
        kind=kind,
        source_shape=tuple(src_shape),
        stride=tuple(stride),  # type: ignore[arg-type]
        padding=tuple(padding),  # type: ignore[arg-type]
        channels=int(src_shape[0]) if kind == "pool" else 0,
        kernel_size=tuple(ks),  # type: ignore[arg-type]
        pool_weight=float(pw),
        trainable=kind != "pool",
        recurrent=projection.recurrent,
    )


def apply_projection(pp: ProjectionPlan, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
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

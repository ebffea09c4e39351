"""Energy and time of an inference on a neuromorphic hardware profile (a model estimate).

The engines count what an execution does (synaptic operations, spikes, forward steps;
``docs/semantics.md`` §7); this module prices those counts with the published per-event
figures of a chip. A :class:`HardwareProfile` gives the energy of one synaptic operation,
one neuron update, one routed spike and one membrane-state access, and a throughput model
(cores, the time of a synaptic operation and of a neuron update, the cost of one
synchronisation barrier). :func:`estimate` turns an :class:`~asyncsnn.InferenceResult`
into a :class:`CostReport`: energy and time per inference, and the time and energy from
the start of each sample to its first correct output spike and to its stable decision
(the decision latencies of ``docs/guide.md``, :mod:`asyncsnn.latency`), per sample and
their means, for layer-synchronous or asynchronous execution.

Every quantity, formula and shipped number (with its source) is in ``docs/cost.md``. The
counts are exact; the energies and times are a model: no static power, no placement
(routing hops), ideal parallelism over the cores.

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> from asyncsnn.cost import PROFILES, estimate
>>> net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.array([[2.0, 0.0], [0.0, 2.0]]))])
>>> x = np.array([[[0, 0], [0, 1], [1, 1]]], dtype=np.float32)   # 1 sample, T = 3
>>> res = asyncsnn.infer(net, x, scheduler="fifo")
>>> res.synops.tolist(), res.input_events.tolist()
([6], [3])
>>> report = estimate(res, net, PROFILES["loihi"])
>>> report.execution
'asynchronous'
>>> # 6 synops x 23.6 pJ + 2 neurons x 3 timesteps x 81 pJ + 3 routed spikes x 1.7 pJ
>>> round(report.mean_energy_per_inference * 1e12, 6)
632.7
>>> # (6 x 3.5 ns + 6 x 8.4 ns) on 1 core, no barrier
>>> round(report.mean_time_per_inference * 1e9, 6)
71.4
>>> # layered: one 113 ns barrier per forward step (3 of them)
>>> round(estimate(res, net, "loihi", scheduler="layered").mean_time_per_inference * 1e9, 6)
410.4
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from asyncsnn._prepare import SCHEDULER_NAMES, SchedulerLike
from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.latency import decision_latency
from asyncsnn.network import Network
from asyncsnn.result import InferenceResult

__all__ = [
    "ENERGY_FIELDS",
    "PROFILES",
    "TIME_FIELDS",
    "CostReport",
    "HardwareProfile",
    "estimate",
    "resolve_profiles",
]

#: The per-event energies of a profile, in joules (``None``: the source gives no figure).
ENERGY_FIELDS = ("energy_per_synop", "energy_per_neuron_update", "energy_per_spike", "energy_per_membrane_access")
#: The per-event times of a profile, in seconds (``None``: the source gives no figure).
TIME_FIELDS = ("time_per_synop", "time_per_neuron_update", "barrier_time")
_RATE_FIELDS = ("clock_hz", "synops_per_cycle")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")

Execution = Literal["layered", "asynchronous"]


def _number(value: object, name: str, *, positive: bool = False) -> float | None:
    """``value`` as a finite float >= 0 (> 0 with ``positive``), or None; else a ParameterError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(ParameterError, name, value, "must be a finite number >= 0 or None")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise invalid(ParameterError, name, value, f"must be a finite number {'> 0' if positive else '>= 0'} or None")
    return v


def _count(value: object, name: str, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise invalid(ParameterError, name, value, "must be an int >= 1" + (" or None" if optional else ""))
    return int(value)


@dataclass(frozen=True)
class HardwareProfile:
    """Per-event energies and a throughput model of one neuromorphic chip.

    Every energy is in joules per event and every time in seconds; ``None`` says that the
    source gives no figure: the term is left out of the estimate (and listed in
    :attr:`CostReport.omitted`), so the estimate is then a lower bound. Values are checked
    when the profile is built: finite and ``>= 0`` (a :class:`ParameterError` naming the
    field and the value otherwise).

    Parameters
    ----------
    name
        Short name (letters, digits, ``_ . + -``): the key of :data:`PROFILES` and the
        suffix of the ``asyncsnn evaluate`` / ``reproduce`` columns.
    energy_per_synop
        Energy of one synaptic operation (R7.4: one synapse used by a delivery), J.
    energy_per_neuron_update
        Energy of one neuron update (the leak of a neuron at a timestep, R4.1), J.
    energy_per_spike
        Energy of routing one spike to its target core (input events and delivered
        spikes), J.
    energy_per_membrane_access
        Energy of one read-modify-write of a target's membrane state (one per synaptic
        operation), J, where the chip's synop figure does not include it.
    cores
        Cores that work in parallel.
    neurons_per_core
        Neurons one core holds; a network uses ``min(cores, sum over populations of
        ceil(size / neurons_per_core))`` cores. ``None``: all ``cores``.
    time_per_synop
        Time of one synaptic operation in one core, s. Give it, or ``clock_hz`` with
        ``synops_per_cycle``, not both.
    clock_hz, synops_per_cycle
        Clock frequency (Hz, > 0) and synaptic operations per cycle of one core (> 0):
        the synop time is ``1 / (clock_hz * synops_per_cycle)``.
    time_per_neuron_update
        Time of one neuron update in one core, s.
    barrier_time
        Time of one synchronisation barrier of layer-synchronous execution, s.
    source
        Where the numbers come from (a citation; ``docs/cost.md`` has the details).

    Raises
    ------
    ParameterError
        A value that is not a finite number ``>= 0`` (or ``None``), ``cores`` or
        ``neurons_per_core`` not an int ``>= 1``, a bad ``name``, or both
        ``time_per_synop`` and ``clock_hz`` / ``synops_per_cycle`` (or only one of these two).

    Examples
    --------
    >>> from asyncsnn.cost import HardwareProfile
    >>> chip = HardwareProfile("mychip", energy_per_synop=5e-12, cores=4, clock_hz=200e6, synops_per_cycle=1)
    >>> chip.synop_time
    5e-09
    >>> chip.omitted
    ('energy_per_neuron_update', 'energy_per_spike', 'energy_per_membrane_access', 'time_per_neuron_update', 'barrier_time')
    >>> HardwareProfile("bad", energy_per_synop=-1.0)
    Traceback (most recent call last):
    ...
    asyncsnn.exceptions.ParameterError: invalid energy_per_synop = -1.0: must be a finite number >= 0 or None
    """

    name: str
    energy_per_synop: float | None = None
    energy_per_neuron_update: float | None = None
    energy_per_spike: float | None = None
    energy_per_membrane_access: float | None = None
    cores: int = 1
    neurons_per_core: int | None = None
    time_per_synop: float | None = None
    clock_hz: float | None = None
    synops_per_cycle: float | None = None
    time_per_neuron_update: float | None = None
    barrier_time: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise invalid(
                ParameterError, "name", self.name, "must be a non-empty str of letters, digits and _ . + - only"
            )
        if not isinstance(self.source, str):
            raise invalid(ParameterError, "source", self.source, "must be a str")
        for name in (*ENERGY_FIELDS, *TIME_FIELDS):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        for name in _RATE_FIELDS:
            object.__setattr__(self, name, _number(getattr(self, name), name, positive=True))
        object.__setattr__(self, "cores", _count(self.cores, "cores", optional=False))
        object.__setattr__(self, "neurons_per_core", _count(self.neurons_per_core, "neurons_per_core", optional=True))
        rate = (self.clock_hz, self.synops_per_cycle)
        if (rate[0] is None) != (rate[1] is None):
            missing = "synops_per_cycle" if rate[1] is None else "clock_hz"
            raise invalid(ParameterError, missing, None, "clock_hz and synops_per_cycle go together: give both")
        if self.time_per_synop is not None and rate[0] is not None:
            raise invalid(
                ParameterError,
                "time_per_synop",
                self.time_per_synop,
                "give time_per_synop or clock_hz with synops_per_cycle, not both",
            )

    @property
    def synop_time(self) -> float | None:
        """Time of one synaptic operation in one core (s): ``time_per_synop`` or ``1 / (clock * synops per cycle)``."""
        if self.time_per_synop is not None:
            return self.time_per_synop
        if self.clock_hz is not None and self.synops_per_cycle is not None:
            return 1.0 / (self.clock_hz * self.synops_per_cycle)
        return None

    @property
    def has_time_model(self) -> bool:
        """Whether the profile gives a synop time: without it every time is NaN."""
        return self.synop_time is not None

    @property
    def omitted(self) -> tuple[str, ...]:
        """The energy and time fields the profile leaves out (``None``), in field order."""
        times: tuple[str, ...] = ("time_per_synop",) if self.synop_time is None else ()
        times += tuple(f for f in TIME_FIELDS[1:] if getattr(self, f) is None)
        return tuple(f for f in ENERGY_FIELDS if getattr(self, f) is None) + times

    def cores_used(self, network: Network) -> int:
        """Cores that ``network`` occupies: each population on its own cores, at most :attr:`cores`."""
        if self.neurons_per_core is None:
            return self.cores
        per_pop = sum(-(-p.size // self.neurons_per_core) for p in network.populations)
        return max(1, min(self.cores, per_pop))

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (``from_dict`` reads them back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HardwareProfile:
        """A profile from a mapping of field names (a JSON object); unknown keys are refused.

        Raises
        ------
        ParameterError
            An unknown key (``field`` is the key), a missing ``name``, or a bad value.
        """
        if not isinstance(values, Mapping):
            raise invalid(ParameterError, "profile", type(values).__name__, "must be a mapping of field names")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise invalid(
                    ParameterError, str(key), values[key], f"is not a profile field (fields: {sorted(known)})"
                )
        if "name" not in values:
            raise invalid(ParameterError, "name", None, "a profile needs a name")
        return cls(**values)


#: Intel Loihi (Davies et al. 2018, IEEE Micro 38(1), Table 2; docs/cost.md).
LOIHI = HardwareProfile(
    "loihi",
    energy_per_synop=23.6e-12,
    energy_per_neuron_update=81e-12,
    energy_per_spike=1.7e-12,
    energy_per_membrane_access=None,
    cores=128,
    neurons_per_core=1024,
    time_per_synop=3.5e-9,
    time_per_neuron_update=8.4e-9,
    barrier_time=113e-9,
    source="Davies et al. 2018, IEEE Micro 38(1):82-99, Table 2 and the chip overview",
)

#: imec SENeCA / SENECA (Tang et al. 2023, Frontiers in Neuroscience 17:1187252; docs/cost.md).
SENECA = HardwareProfile(
    "seneca",
    energy_per_synop=2.8e-12,
    source="Tang et al. 2023, Frontiers in Neuroscience 17:1187252, abstract (GF-22 nm synthesis)",
)

#: The shipped profiles by name (read-only). ``docs/cost.md`` gives every number's source.
PROFILES: Mapping[str, HardwareProfile] = types.MappingProxyType({p.name: p for p in (LOIHI, SENECA)})


def resolve_profiles(names: Iterable[str | HardwareProfile]) -> list[HardwareProfile]:
    """Profiles from names (``"loihi"``, ``"loihi,seneca"``, ``"all"``) or profiles, in order, once each.

    Raises
    ------
    ParameterError
        An unknown name (``field`` is ``"profile"``; the message lists the shipped ones), or
        two different profiles with the same name.
    """
    out: dict[str, HardwareProfile] = {}

    def add(profile: HardwareProfile) -> None:
        if out.setdefault(profile.name, profile) != profile:
            raise invalid(ParameterError, "profile", profile.name, "names two different profiles: rename one")

    for item in names:
        if isinstance(item, HardwareProfile):
            add(item)
            continue
        if not isinstance(item, str):
            raise invalid(ParameterError, "profile", item, "must be a profile name or a HardwareProfile")
        for name in (part.strip() for part in item.split(",")):
            if name == "all":
                for p in PROFILES.values():
                    add(p)
            elif name in PROFILES:
                add(PROFILES[name])
            else:
                raise invalid(ParameterError, "profile", name, f"must be one of {[*PROFILES, 'all']}")
    return list(out.values())


def _mean(values: np.ndarray) -> float:
    """Mean of the finite entries (NaN when there are none, without a warning)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True, eq=False)
class CostReport:
    """Energy and time of one inference run on one hardware profile (a model estimate).

    Every array is a read-only float64 array with the batch (``B``) first. The formulas are in
    ``docs/cost.md``; terms of fields that the profile leaves out count 0 and are named
    in :attr:`omitted`. Times are NaN when the profile has no synop time.

    Attributes
    ----------
    profile : HardwareProfile
        The profile that priced the run.
    execution : {"layered", "asynchronous"}
        Layer-synchronous execution (a barrier after every forward step) or asynchronous
        (no barrier).
    cores_used : int
        Cores the network occupies (:meth:`HardwareProfile.cores_used`).
    neuron_updates, routed_spikes, membrane_accesses, barriers : numpy.ndarray
        The event counts per sample, ``[B]`` (exact, from the engine's counters).
    energy_terms : dict of str to numpy.ndarray
        Energy per sample of each event kind, ``[B]``, J: ``"synops"``,
        ``"neuron_updates"``, ``"spikes"``, ``"membrane_accesses"``.
    energy_per_inference : numpy.ndarray
        Their sum, ``[B]``, J.
    time_per_inference : numpy.ndarray
        Time of each sample, ``[B]``, s.
    time_to_first_output : numpy.ndarray
        Time to the first output spike *within a timestep*, ``[B, T]``, s: from the start
        of timestep ``t`` to its first output spike (whatever its class), NaN where the
        timestep has none. The time counterpart of "steps to 1st output".
    time_to_correct, time_to_decision : numpy.ndarray
        Time from the start of the *sample* to its first correct output spike and to its
        stable decision, ``[B]``, s (the decision latencies of ``docs/guide.md``,
        :func:`asyncsnn.latency.decision_latency`): every earlier timestep and forward step
        included, with a barrier per forward step when layered. NaN where the sample has
        no correct output spike (or no labels) / no output spike.
    energy_to_correct, energy_to_decision : numpy.ndarray
        Energy of the same stretch of the sample, ``[B]``, J: its synops, membrane accesses
        and neuron updates; routed spikes are left out (the counters do not say how many
        fall before the decision), so it is a lower bound. NaN where the time is.
    omitted : tuple of str
        The profile fields left out of the estimate (``HardwareProfile.omitted``).
    """

    profile: HardwareProfile
    execution: Execution
    cores_used: int
    neuron_updates: np.ndarray
    routed_spikes: np.ndarray
    membrane_accesses: np.ndarray
    barriers: np.ndarray
    energy_terms: dict[str, np.ndarray]
    energy_per_inference: np.ndarray
    time_per_inference: np.ndarray
    time_to_first_output: np.ndarray
    time_to_correct: np.ndarray
    time_to_decision: np.ndarray
    energy_to_correct: np.ndarray
    energy_to_decision: np.ndarray
    omitted: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for value in [*vars(self).values(), *self.energy_terms.values()]:
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    @property
    def mean_energy_per_inference(self) -> float:
        """Mean energy per inference over the samples, J (NaN for an empty batch)."""
        return _mean(self.energy_per_inference)

    @property
    def mean_time_per_inference(self) -> float:
        """Mean time per inference over the samples, s (NaN without a time model)."""
        return _mean(self.time_per_inference)

    @property
    def mean_time_to_first_output(self) -> float:
        """Time to 1st output in a timestep, s: :attr:`time_to_first_output` averaged over every (sample, timestep) with an output spike.

        The same average as "steps to 1st output" (:attr:`InferenceResult.mean_steps_to_first_output`);
        NaN without any output spike or without a time model. Not a decision latency:
        see :attr:`mean_time_to_correct` and :attr:`mean_time_to_decision`.
        """
        return _mean(self.time_to_first_output)

    @property
    def mean_time_to_correct(self) -> float:
        """:attr:`time_to_correct` averaged over the samples with a correct output spike, s (NaN if none)."""
        return _mean(self.time_to_correct)

    @property
    def mean_time_to_decision(self) -> float:
        """:attr:`time_to_decision` averaged over the samples with an output spike, s (NaN if none)."""
        return _mean(self.time_to_decision)

    @property
    def mean_energy_to_correct(self) -> float:
        """:attr:`energy_to_correct` averaged over the samples with a correct output spike, J (NaN if none)."""
        return _mean(self.energy_to_correct)

    @property
    def mean_energy_to_decision(self) -> float:
        """:attr:`energy_to_decision` averaged over the samples with an output spike, J (NaN if none)."""
        return _mean(self.energy_to_decision)

    def as_dict(self) -> dict[str, Any]:
        """The means and the model's settings as JSON-safe values (NaN becomes None)."""
        return {
            "profile": self.profile.name,
            "execution": self.execution,
            "cores_used": self.cores_used,
            "mean_energy_per_inference_j": _nan_to_none(self.mean_energy_per_inference),
            "mean_time_per_inference_s": _nan_to_none(self.mean_time_per_inference),
            "mean_time_to_first_output_s": _nan_to_none(self.mean_time_to_first_output),
            "mean_time_to_correct_s": _nan_to_none(self.mean_time_to_correct),
            "mean_time_to_decision_s": _nan_to_none(self.mean_time_to_decision),
            "mean_energy_to_correct_j": _nan_to_none(self.mean_energy_to_correct),
            "mean_energy_to_decision_j": _nan_to_none(self.mean_energy_to_decision),
            "mean_energy_terms_j": {k: _nan_to_none(_mean(v)) for k, v in self.energy_terms.items()},
            "omitted": list(self.omitted),
        }

    def summary(self) -> str:
        """Readable lines: energy per inference and to the decision; with a time model, the times too."""
        name = self.profile.name
        energy_out = [f for f in self.omitted if f in ENERGY_FIELDS]
        time_out = [f for f in self.omitted if f not in ENERGY_FIELDS]
        left_out = f"; left out: {', '.join(energy_out)}" if energy_out else ""
        lines = [
            f"  energy / inference  {_si(self.mean_energy_per_inference, 'J')} on {name}{left_out}",
            f"  energy to decision  {_si(self.mean_energy_to_correct, 'J')} to the 1st correct output spike, "
            f"{_si(self.mean_energy_to_decision, 'J')} to the stable decision (from the start of the sample, "
            "routed spikes left out)",
        ]
        if not self.profile.has_time_model:
            lines.append(f"  time / inference    n/a on {name} (the profile gives no synop time)")
            return "\n".join(lines)
        how = "no barrier" if self.execution == "asynchronous" else "a barrier per forward step"
        left_out = f"; left out: {', '.join(time_out)}" if time_out else ""
        lines.append(
            f"  time / inference    {_si(self.mean_time_per_inference, 's')} on {name} "
            f"({self.execution}: {how}, {self.cores_used} core{'s' if self.cores_used != 1 else ''}{left_out})"
        )
        lines.append(
            f"  time to decision    {_si(self.mean_time_to_correct, 's')} to the 1st correct output spike, "
            f"{_si(self.mean_time_to_decision, 's')} to the stable decision (from the start of the sample)"
        )
        lines.append(
            f"  time to 1st output  {_si(self.mean_time_to_first_output, 's')} in a timestep "
            "(from its start to its first output spike, mean over timesteps with one)"
        )
        return "\n".join(lines)


def _si(value: float, unit: str) -> str:
    """``value`` with an SI prefix (``1.2 µJ``); ``n/a`` for NaN."""
    if math.isnan(value):
        return "n/a"
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value / 1e-15:.4g} f{unit}" if value else f"0 {unit}"


@dataclass(frozen=True)
class _SampleStretch:
    """The start of each sample up to and including one forward step: the counts that time it.

    ``steps`` are forward steps run (``-1``: the sample has no such step), ``synops`` the
    synaptic operations integrated in them and ``timestep`` the timestep of the last one
    (its leak and those of every earlier timestep are in the stretch).
    """

    steps: np.ndarray
    synops: np.ndarray
    timestep: np.ndarray


@dataclass(frozen=True)
class _StretchPricer:
    """Time and energy of a :class:`_SampleStretch` on one profile (``docs/cost.md``)."""

    profile: HardwareProfile
    n_neurons: int
    cores: int
    barrier_time: float  # 0 for asynchronous execution

    def time(self, stretch: _SampleStretch) -> np.ndarray:
        """``(synops * t_syn + N * (timestep + 1) * t_upd) / C + steps * t_bar``, NaN where undefined."""
        t_syn = self.profile.synop_time
        if t_syn is None:
            return np.full(stretch.steps.shape, np.nan)
        updates = self.n_neurons * (stretch.timestep + 1.0)
        work = stretch.synops * t_syn + updates * (self.profile.time_per_neuron_update or 0.0)
        out: np.ndarray = np.where(stretch.steps >= 0, work / self.cores + stretch.steps * self.barrier_time, np.nan)
        return out

    def energy(self, stretch: _SampleStretch) -> np.ndarray:
        """``synops * (e_syn + e_mem) + N * (timestep + 1) * e_upd``, NaN where undefined."""
        p = self.profile
        per_synop = (p.energy_per_synop or 0.0) + (p.energy_per_membrane_access or 0.0)
        updates = self.n_neurons * (stretch.timestep + 1.0)
        value = stretch.synops * per_synop + updates * (p.energy_per_neuron_update or 0.0)
        out: np.ndarray = np.where(stretch.steps >= 0, value, np.nan)
        return out


def _first_timestep(per_timestep_step: np.ndarray) -> np.ndarray:
    """Per sample, the first timestep whose entry of ``[B, T]`` is ``>= 0`` (-1 if none)."""
    has = per_timestep_step >= 0
    out: np.ndarray = np.where(has.any(axis=1), has.argmax(axis=1), -1)
    return out


def _execution(result: InferenceResult, scheduler: object) -> Execution:
    if scheduler is None:
        scheduler = result.options.get("scheduler")
        if scheduler is None:
            raise invalid(ParameterError, "scheduler", None, "the result names no scheduler: pass scheduler=")
    value = getattr(scheduler, "value", scheduler)
    if value not in SCHEDULER_NAMES:
        raise invalid(ParameterError, "scheduler", scheduler, f"must be one of {list(SCHEDULER_NAMES)}")
    return "layered" if value == "layered" else "asynchronous"


def estimate(
    result: InferenceResult,
    network: Network,
    profile: HardwareProfile | str,
    *,
    scheduler: SchedulerLike | None = None,
) -> CostReport:
    """Energy and time of ``result``'s run on ``profile`` (a model estimate, ``docs/cost.md``).

    Parameters
    ----------
    result
        The counters of an ``infer`` call (any engine).
    network
        The network that produced ``result`` (its sizes and projections give the neuron
        updates and the routed spikes).
    profile
        A :class:`HardwareProfile` or the name of a shipped one (:data:`PROFILES`).
    scheduler
        How the run executes on the chip: ``"layered"`` is layer-synchronous (a barrier
        after every forward step), any other scheduler asynchronous (no barrier).
        Default: the scheduler of ``result.options``.

    Returns
    -------
    CostReport
        Per-sample energies ``[B]`` (J), times ``[B]`` and ``[B, T]`` (s), and their means.
        The times and energies to the first correct output spike and to the stable
        decision use the counters of :func:`asyncsnn.latency.decision_latency`.

    Raises
    ------
    ParameterError
        An unknown profile name or scheduler, or a ``network`` whose populations or
        projections do not match the result's counters.
    """
    if isinstance(profile, str):
        profile = resolve_profiles([profile])[0]
    if not isinstance(profile, HardwareProfile):
        raise invalid(ParameterError, "profile", profile, "must be a HardwareProfile or a profile name")
    if not isinstance(result, InferenceResult):
        raise invalid(ParameterError, "result", type(result).__name__, "must be an asyncsnn.InferenceResult")
    if not isinstance(network, Network):
        raise invalid(ParameterError, "network", type(network).__name__, "must be an asyncsnn.Network")
    execution = _execution(result, scheduler)
    n_pop = len(network.populations)
    if result.spikes.shape[1:] != (n_pop,) or result.synops_per_projection.shape[1:] != (len(network.projections),):
        raise invalid(
            ParameterError,
            "network",
            repr(network),
            f"has {n_pop} populations and {len(network.projections)} projections but the result counts "
            f"{result.spikes.shape[1]} and {result.synops_per_projection.shape[1]}: not the network of this result",
        )
    timesteps = result.timestep_forward_steps.shape[1]
    synops = result.synops.astype(np.float64)
    # R4.1: every LIF neuron leaks once per timestep.
    neuron_updates = np.full(result.batch_size, float(network.n_neurons * timesteps))
    # Input events (R2.3) and the delivered spikes: spikes of populations that have outgoing
    # projections, less those an early stop dropped (R6.4); multiplicities counted.
    routing = np.array([bool(network.outgoing(p)) for p in range(1, n_pop + 1)])
    delivered = result.spikes[:, routing].sum(axis=1) - result.dropped_spikes
    routed = (result.input_events + delivered).astype(np.float64)
    membrane = synops.copy()  # one read-modify-write of the target's state per synaptic operation

    def price_all(count: np.ndarray, per_event: float | None) -> np.ndarray:
        return count * (per_event or 0.0)

    terms = {
        "synops": price_all(synops, profile.energy_per_synop),
        "neuron_updates": price_all(neuron_updates, profile.energy_per_neuron_update),
        "spikes": price_all(routed, profile.energy_per_spike),
        "membrane_accesses": price_all(membrane, profile.energy_per_membrane_access),
    }
    energy = terms["synops"] + terms["neuron_updates"] + terms["spikes"] + terms["membrane_accesses"]

    cores = profile.cores_used(network)
    layered = execution == "layered"
    barriers = result.forward_steps.astype(np.float64) if layered else np.zeros(result.batch_size)
    t_syn = profile.synop_time
    t_upd = profile.time_per_neuron_update or 0.0
    t_bar = (profile.barrier_time or 0.0) if layered else 0.0
    if t_syn is None:
        time = np.full(result.batch_size, np.nan)
        to_output = np.full(result.first_output_step.shape, np.nan)
    else:
        time = (synops * t_syn + neuron_updates * t_upd) / cores + barriers * t_bar
        # Work of one timestep up to its first output spike: its leak and the synops
        # integrated in steps 0..k0 (R7.7), plus k0 + 1 barriers when layered.
        step = result.first_output_step
        work = result.first_output_synops * t_syn + network.n_neurons * t_upd
        to_output = np.where(step >= 0, work / cores + (step + 1.0) * t_bar, np.nan)
    latency = decision_latency(result)
    correct = _SampleStretch(
        latency.steps_to_correct, latency.synops_to_correct, _first_timestep(result.first_correct_step)
    )
    decision = _SampleStretch(latency.steps_to_decision, latency.synops_to_decision, result.decision_timestep)
    price = _StretchPricer(profile, network.n_neurons, cores, t_bar)
    return CostReport(
        profile=profile,
        execution=execution,
        cores_used=cores,
        neuron_updates=neuron_updates,
        routed_spikes=routed,
        membrane_accesses=membrane,
        barriers=barriers,
        energy_terms=terms,
        energy_per_inference=energy,
        time_per_inference=time,
        time_to_first_output=to_output,
        time_to_correct=price.time(correct),
        time_to_decision=price.time(decision),
        energy_to_correct=price.energy(correct),
        energy_to_decision=price.energy(decision),
        omitted=profile.omitted,
    )

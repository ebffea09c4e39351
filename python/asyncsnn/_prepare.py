"""Argument normalisation shared by every engine's ``infer``.

Validation happens here, once, at the edge (habit 3 of docs/architecture.md); the
engines trust what they receive. Every rejection is a typed :mod:`asyncsnn.exceptions`
error that names the field and the value.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np
import numpy.typing as npt

from asyncsnn.exceptions import AsyncSNNError, EngineError, InputError, ParameterError, invalid
from asyncsnn.network import Network

__all__ = [
    "RUN_OPTION_DEFAULTS",
    "RUN_OPTION_NAMES",
    "PreparedInputs",
    "PreparedOptions",
    "RunOptions",
    "Scheduler",
    "StopMode",
    "check_threads",
    "dense_as_given",
    "is_tensor",
    "prepare_given_options",
    "prepare_inputs",
    "prepare_options",
    "resolve_options",
    "tensor_as_numpy",
    "tensor_checked",
]

MAX_U32 = 2**32 - 1
MAX_SEED = 2**64 - 1


class Scheduler(str, enum.Enum):
    """Scheduling policies of docs/semantics.md section 5."""

    LAYERED = "layered"
    FIFO = "fifo"
    RANDOM = "random"
    MOMENTUM = "momentum"


#: The scheduler names, in the order of docs/semantics.md section 5.
SCHEDULER_NAMES: tuple[str, ...] = tuple(s.value for s in Scheduler)


class StopMode(str, enum.Enum):
    """Per-timestep stop modes of docs/semantics.md section 6."""

    DRAIN = "drain"
    FIRST_OUTPUT = "first_output"
    MAX_STEPS = "max_steps"


SchedulerLike = Union[Scheduler, Literal["layered", "fifo", "random", "momentum"]]
StopLike = Union[StopMode, Literal["drain", "first_output", "max_steps"]]
DropoutLike = Union[Literal["off", "network"], float]


#: The run options of the semantics, in the order of every ``infer`` signature.
RUN_OPTION_NAMES: tuple[str, ...] = (
    "scheduler",
    "forward_group_size",
    "stop",
    "extra_steps",
    "max_steps",
    "seed",
    "jitter",
    "refractory_dropout",
    "input_dropout",
    "spike_dropout",
    "prioritize_input",
)

_DROPOUT_REASON = 'must be "off", "network" or a number in [0, 1)'


def _int(value: Any, field: str, minimum: int, maximum: int = MAX_U32) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)):
        raise invalid(ParameterError, field, value, "must be an int")
    v = int(value)
    if not minimum <= v <= maximum:
        raise invalid(ParameterError, field, value, f"must be in [{minimum}, {maximum}]")
    return v


@functools.cache
def _members(cls: type[enum.Enum]) -> dict[str, enum.Enum]:
    return {m.value: m for m in cls}


def _enum(cls: type[enum.Enum], value: Any, field: str) -> Any:
    if isinstance(value, cls):
        return value
    members = _members(cls)
    if isinstance(value, str) and value in members:
        return members[value]
    raise invalid(ParameterError, field, value, f"must be one of {list(members)}")


def _jitter(jitter: Any) -> float:
    """R5.4's ``lambda``: a finite number >= 0 that stays finite in float32."""
    if isinstance(jitter, bool) or not isinstance(jitter, numbers.Real) or not math.isfinite(jitter) or jitter < 0:
        raise invalid(ParameterError, "jitter", jitter, "must be a finite number >= 0")
    if jitter != 0:
        with np.errstate(over="ignore"):
            if not np.isfinite(np.float32(jitter)):  # the engines compute the key in float32 (R5.4)
                raise invalid(ParameterError, "jitter", jitter, "must be a finite number >= 0 (in float32)")
    return float(jitter)


def _dropout(refractory_dropout: Any) -> str | float:
    """R4.6's ``p``: ``"off"``, ``"network"`` or one probability in [0, 1) for every population."""
    if isinstance(refractory_dropout, str):
        if refractory_dropout in ("off", "network"):
            return str(refractory_dropout)
        raise invalid(ParameterError, "refractory_dropout", refractory_dropout, _DROPOUT_REASON)
    if isinstance(refractory_dropout, numbers.Real) and not isinstance(refractory_dropout, bool):
        return _probability(refractory_dropout, "refractory_dropout")
    raise invalid(ParameterError, "refractory_dropout", refractory_dropout, _DROPOUT_REASON)


def _bool(value: Any, field: str) -> bool:
    """A flag: ``True`` or ``False`` (a NumPy bool too), nothing else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise invalid(ParameterError, field, value, "must be True or False")


def _probability(value: Any, field: str) -> float:
    """A dropout probability ``p`` in [0, 1) (R4.6, R4.10, R4.11)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise invalid(ParameterError, field, value, "must be a number in [0, 1)")
    p = float(value)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        raise invalid(ParameterError, field, value, "must be in [0, 1)")
    return p


#: How each option alone is checked and normalised (the checks between options are
#: in ``RunOptions.__init__``).
_FIELD_CHECKS: dict[str, Any] = {
    "scheduler": lambda v: _enum(Scheduler, v, "scheduler"),
    "forward_group_size": lambda v: _int(v, "forward_group_size", 1),
    "stop": lambda v: _enum(StopMode, v, "stop"),
    "extra_steps": lambda v: _int(v, "extra_steps", 0),
    "max_steps": lambda v: None if v is None else _int(v, "max_steps", 1),
    "seed": lambda v: _int(v, "seed", 0, MAX_SEED),
    "jitter": _jitter,
    "refractory_dropout": _dropout,
    "input_dropout": lambda v: _probability(v, "input_dropout"),
    "spike_dropout": lambda v: _probability(v, "spike_dropout"),
    "prioritize_input": lambda v: _bool(v, "prioritize_input"),
}


@dataclass(frozen=True, init=False, repr=False)
class RunOptions:
    """The run options of an inference run (docs/semantics.md R4.6, R5, R6), validated.

    Every ``infer`` (``asyncsnn.infer``, ``asyncsnn.reference.infer``,
    ``asyncsnn.torch.infer``) and ``asyncsnn.infer_iter`` takes them either as keyword
    arguments or as one ``options=RunOptions(...)`` value; giving both an option keyword
    (other than at its default value) and an ``options`` that holds another value for it
    is a :class:`~asyncsnn.exceptions.ParameterError`. The value is immutable and
    hashable: change it with :meth:`replace`.

    Parameters
    ----------
    scheduler : {"layered", "fifo", "random", "momentum"} or Scheduler, default "momentum"
        Which pending spikes a forward step delivers (R5).
    forward_group_size : int, default 8
        ``F >= 1``: the most pending neurons delivered per forward step (ignored by
        ``"layered"``).
    stop : {"drain", "first_output", "max_steps"} or StopMode, default "drain"
        When a timestep ends (R6).
    extra_steps : int, default 0
        ``M >= 0`` forward steps run after the first output spike with
        ``stop="first_output"`` (R6.2).
    max_steps : int or None, default None
        ``K >= 1`` forward steps per timestep at most (R6.3); required with
        ``stop="max_steps"``, a cap otherwise.
    seed : int, default 0
        ``0 .. 2**64 - 1``: seed of the random function (random scheduler, jitter,
        dropout; R5.5).
    jitter : float, default 0.0
        ``lambda >= 0`` of the momentum key jitter (R5.4; ``"momentum"`` only), finite
        in float32.
    refractory_dropout : "off", "network" or float, default "off"
        ``"off"`` (p = 0), ``"network"`` (each population's own value) or one
        probability in [0, 1) for every population (R4.6).
    input_dropout : float, default 0.0
        ``p`` in [0, 1): each non-zero input value is dropped with probability ``p``
        (R4.10, stream 3; not rescaled).
    spike_dropout : float, default 0.0
        ``p`` in [0, 1): each spike that would enter the pending set is not enqueued
        with probability ``p`` (R4.11, stream 4; it still counts as a spike).
    prioritize_input : bool, default True
        ``True``: each frame's input is delivered at once in forward step 0, outside the
        scheduler (R2.3). ``False``: the input values enter the pending set and are
        scheduled with the spikes, one slot each (R4.13); not with ``"momentum"``.

    Attributes
    ----------
    scheduler : Scheduler
    forward_group_size : int
    stop : StopMode
    extra_steps : int
    max_steps : int or None
    seed : int
    jitter : float
    refractory_dropout : str or float
    input_dropout : float
    spike_dropout : float
    prioritize_input : bool
        The values as given, names as :class:`Scheduler` / :class:`StopMode` members
        and numbers as Python ``int`` / ``float``.

    Raises
    ------
    ParameterError
        For an invalid value (``field`` names the option, ``value`` holds it), in the
        order of the parameters: an unknown name, ``F < 1``, ``stop="max_steps"``
        without ``max_steps``, a seed outside ``[0, 2**64)``, a jitter that is negative,
        not finite (also in float32) or given to another scheduler than
        ``"momentum"``, a dropout (refractory, input, spike) outside ``[0, 1)``,
        ``prioritize_input`` that is not a bool or is ``False`` with ``"momentum"``.

    Examples
    --------
    >>> import numpy as np
    >>> import asyncsnn
    >>> opts = asyncsnn.RunOptions(scheduler="fifo", forward_group_size=2)
    >>> opts
    RunOptions(scheduler='fifo', forward_group_size=2, stop='drain', extra_steps=0, max_steps=None, seed=0, jitter=0.0, refractory_dropout='off', input_dropout=0.0, spike_dropout=0.0, prioritize_input=True)
    >>> opts.replace(stop="first_output", extra_steps=1).stop
    <StopMode.FIRST_OUTPUT: 'first_output'>
    >>> asyncsnn.RunOptions(**opts.as_dict()) == opts
    True
    >>> net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.array([[2.0, 2.0]]))])
    >>> x = np.ones((1, 3, 2), dtype=np.float32)
    >>> a = asyncsnn.infer(net, x, options=opts)
    >>> b = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=2)
    >>> a.synops.tolist() == b.synops.tolist(), a.options == b.options
    (True, True)
    >>> asyncsnn.RunOptions(forward_group_size=0)
    Traceback (most recent call last):
    ...
    asyncsnn.exceptions.ParameterError: invalid forward_group_size = 0: must be in [1, 4294967295]
    """

    scheduler: Scheduler
    forward_group_size: int
    stop: StopMode
    extra_steps: int
    max_steps: int | None
    seed: int
    jitter: float
    refractory_dropout: str | float
    input_dropout: float
    spike_dropout: float
    prioritize_input: bool

    def __init__(
        self,
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
    ) -> None:
        check = _FIELD_CHECKS
        sched = check["scheduler"](scheduler)
        stop_mode = check["stop"](stop)
        values = {
            "scheduler": sched,
            "forward_group_size": check["forward_group_size"](forward_group_size),
            "stop": stop_mode,
            "extra_steps": check["extra_steps"](extra_steps),
            "max_steps": check["max_steps"](max_steps),
        }
        if stop_mode is StopMode.MAX_STEPS and values["max_steps"] is None:
            raise invalid(ParameterError, "max_steps", None, 'stop="max_steps" needs max_steps >= 1')
        values["seed"] = check["seed"](seed)
        values["jitter"] = check["jitter"](jitter)
        if values["jitter"] > 0 and sched is not Scheduler.MOMENTUM:
            raise invalid(ParameterError, "jitter", jitter, "only the momentum scheduler takes a jitter")
        values["refractory_dropout"] = check["refractory_dropout"](refractory_dropout)
        values["input_dropout"] = check["input_dropout"](input_dropout)
        values["spike_dropout"] = check["spike_dropout"](spike_dropout)
        values["prioritize_input"] = check["prioritize_input"](prioritize_input)
        if not values["prioritize_input"] and sched is Scheduler.MOMENTUM:
            reason = "the momentum scheduler has no key for input entries (R4.13): use layered, fifo or random"
            raise invalid(ParameterError, "prioritize_input", prioritize_input, reason)
        for name in RUN_OPTION_NAMES:
            object.__setattr__(self, name, values[name])

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with the options named in ``changes`` set to new values (validated again).

        Raises
        ------
        ParameterError
            For a name that is not a run option, or an invalid value.
        """
        for name in changes:
            if name not in RUN_OPTION_NAMES:
                raise invalid(
                    ParameterError, name, changes[name], f"is not a run option (one of {list(RUN_OPTION_NAMES)})"
                )
        return RunOptions(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values (names as strings): ``RunOptions(**d)`` rebuilds them."""
        return {
            name: value.value if isinstance(value, enum.Enum) else value
            for name, value in ((name, getattr(self, name)) for name in RUN_OPTION_NAMES)
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items())
        return f"RunOptions({args})"


#: The default of every run option (``RunOptions()``'s values, as given).
RUN_OPTION_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(RunOptions.__init__).parameters.items() if name != "self"
}


@dataclass(frozen=True)
class PreparedOptions:
    """Run options resolved for one network: what the engines run with.

    As :class:`RunOptions`, except that ``refractory_dropout`` is the probability of each
    non-input population (None when every one is 0: dropout off) and ``jitter`` is
    rounded to float32 (R5.4 computes the key in float32).
    """

    scheduler: Scheduler
    forward_group_size: int
    stop: StopMode
    extra_steps: int
    max_steps: int | None
    seed: int
    jitter: float
    refractory_dropout: tuple[float, ...] | None  # per non-input population, None = off
    input_dropout: float = 0.0  # R4.10
    spike_dropout: float = 0.0  # R4.11
    prioritize_input: bool = True  # R2.3; False: R4.13

    @classmethod
    def resolve(cls, options: RunOptions, network: Network) -> PreparedOptions:
        """``options`` for ``network`` (``"network"`` dropout reads its populations).

        Raises
        ------
        ParameterError
            Refractory dropout p > 0 on a network with a population whose reset is not
            ``"zero"`` (R4.6; ``field`` ``"refractory_dropout"``, the message names the
            population).
        """
        p = options.refractory_dropout
        dropout: tuple[float, ...] | None
        if p == "network":
            dropout = tuple(float(pop.refractory_dropout) for pop in network.populations)
            if not any(dropout):
                dropout = None
        elif isinstance(p, float) and p > 0:
            dropout = (p,) * len(network.populations)
        else:
            dropout = None
        if dropout is not None:  # R4.6: refractory dropout needs reset "zero", no recurrent input
            for i, (pop, p_pop) in enumerate(zip(network.populations, dropout, strict=True), 1):
                if p_pop > 0 and pop.reset != "zero":
                    reason = f"refractory dropout needs reset 'zero' (R4.6), not {pop.reset!r}"
                    raise invalid(ParameterError, "refractory_dropout", p, reason, f"population {i}")
                if p_pop > 0 and i in network._recurrent_targets:
                    reason = "refractory dropout is refused on the target of a recurrent projection (R4.6)"
                    raise invalid(ParameterError, "refractory_dropout", p, reason, f"population {i}")
        jitter = 0.0
        if options.jitter != 0:
            with np.errstate(over="ignore"):
                jitter = float(np.float32(options.jitter))
        return cls(
            options.scheduler,
            options.forward_group_size,
            options.stop,
            options.extra_steps,
            options.max_steps,
            options.seed,
            jitter,
            dropout,
            options.input_dropout,
            options.spike_dropout,
            options.prioritize_input,
        )

    def engine_args(self) -> tuple[str, int, str, int, int | None, int, float, list[float] | None]:
        """``(scheduler, F, stop, extra_steps, max_steps, seed, jitter, refractory_dropout)``.

        The option arguments of the Rust engine's ``_engine.run`` and ``_engine.tape_run``,
        in their order (the dropout as a list, or ``None``: off).
        """
        dropout = None if self.refractory_dropout is None else list(self.refractory_dropout)
        return (
            self.scheduler.value,
            self.forward_group_size,
            self.stop.value,
            self.extra_steps,
            self.max_steps,
            self.seed,
            self.jitter,
            dropout,
        )

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values (for results and reports)."""
        return {
            "scheduler": self.scheduler.value,
            "forward_group_size": self.forward_group_size,
            "stop": self.stop.value,
            "extra_steps": self.extra_steps,
            "max_steps": self.max_steps,
            "seed": self.seed,
            "jitter": self.jitter,
            "refractory_dropout": None if self.refractory_dropout is None else list(self.refractory_dropout),
            "input_dropout": self.input_dropout,
            "spike_dropout": self.spike_dropout,
            "prioritize_input": self.prioritize_input,
        }


def resolve_options(options: RunOptions | None, **keywords: Any) -> RunOptions:
    """The :class:`RunOptions` of an ``infer`` call given ``options`` and/or option keywords.

    Parameters
    ----------
    options
        The ``options`` argument (None: the keywords alone).
    **keywords
        The option keywords of the call (any of :data:`RUN_OPTION_NAMES`; missing ones
        take their defaults).

    Returns
    -------
    RunOptions
        ``RunOptions(**keywords)`` without ``options``; otherwise ``options``, after
        checking that every keyword not at its default value holds the same value.

    Raises
    ------
    ParameterError
        An invalid value, ``options`` that is not a :class:`RunOptions`, or a keyword
        that conflicts with ``options`` (``field`` names the option).
    """
    unknown = [name for name in keywords if name not in RUN_OPTION_DEFAULTS]
    if unknown:
        raise invalid(ParameterError, unknown[0], keywords[unknown[0]], "is not a run option")
    if options is None:
        return RunOptions(**keywords)
    if not isinstance(options, RunOptions):
        raise invalid(ParameterError, "options", type(options).__name__, "must be an asyncsnn.RunOptions or None")
    for name, value in keywords.items():
        default = RUN_OPTION_DEFAULTS[name]
        if value is default or (type(value) is type(default) and value == default):
            continue  # left at its default: options decides
        given = _FIELD_CHECKS[name](value)
        held = getattr(options, name)
        if given != held or type(given) is not type(held):
            shown = held.value if isinstance(held, enum.Enum) else held
            raise invalid(
                ParameterError,
                name,
                value,
                f"conflicts with options.{name} = {shown!r}: give it once (options.replace({name}=...) changes it)",
            )
    return options


def _validate_options(network: Network, *values: Any) -> PreparedOptions:
    """:func:`prepare_options` without its cache (the options cache must agree with it).

    ``values`` are the eleven options in the order of :data:`RUN_OPTION_NAMES`.
    """
    return PreparedOptions.resolve(RunOptions(**dict(zip(RUN_OPTION_NAMES, values))), network)


#: Options already validated, by their values or their RunOptions: see ``prepare_options``.
_OPTIONS_SEEN: dict[tuple[Any, ...], PreparedOptions] = {}
_DEFAULT_VALUES = tuple(RUN_OPTION_DEFAULTS.values())
_DEFAULT_TYPES = tuple(map(type, _DEFAULT_VALUES))
_OPTIONS_SEEN_MAX = 256


def prepare_options(
    network: Network,
    options: RunOptions | None = None,
    *,
    scheduler: SchedulerLike,
    forward_group_size: int,
    stop: StopLike,
    extra_steps: int,
    max_steps: int | None,
    seed: int,
    jitter: float,
    refractory_dropout: DropoutLike,
    input_dropout: float = 0.0,
    spike_dropout: float = 0.0,
    prioritize_input: bool = True,
) -> PreparedOptions:
    """Validate the run options of an ``infer`` call and resolve them for ``network``.

    Every ``infer`` passes its ``options`` and all eleven option keywords (its defaults
    are :data:`RUN_OPTION_DEFAULTS`); they are combined by :func:`resolve_options` and
    validated by :class:`RunOptions`. The eleven are explicit parameters, not
    ``**keywords``, because this runs on every call: the cached path inside costs
    about a third (2.5 us instead of 7 us on a shared 2-core machine).
    :func:`prepare_given_options` takes only the keywords that were given.

    Raises
    ------
    ParameterError
        An invalid option (see :class:`RunOptions`), and refractory dropout p > 0 on a
        network with a population whose reset is not ``"zero"`` or that a recurrent
        projection targets (R4.6; ``field`` ``"refractory_dropout"``, the message names
        the population).
    """
    if not isinstance(network, Network):
        raise invalid(ParameterError, "network", type(network).__name__, "must be an asyncsnn.Network")
    values = (
        scheduler,
        forward_group_size,
        stop,
        extra_steps,
        max_steps,
        seed,
        jitter,
        refractory_dropout,
        input_dropout,
        spike_dropout,
        prioritize_input,
    )
    if options is not None:
        if not (values == _DEFAULT_VALUES and tuple(map(type, values)) == _DEFAULT_TYPES):
            options = resolve_options(options, **dict(zip(RUN_OPTION_NAMES, values)))
        elif not isinstance(options, RunOptions):
            options = resolve_options(options)  # raises
        if options.refractory_dropout == "network":
            return PreparedOptions.resolve(options, network)
        option_key = (options, len(network.populations), network._dropout_allowed)
        prepared = _OPTIONS_SEEN.get(option_key)
        if prepared is None:
            prepared = PreparedOptions.resolve(options, network)
            if len(_OPTIONS_SEEN) >= _OPTIONS_SEEN_MAX:
                _OPTIONS_SEEN.clear()
            _OPTIONS_SEEN[option_key] = prepared
        return prepared
    # Options that are plain str / int / float / None values (no bool, no subclass), other
    # than refractory_dropout="network": equal values of these types validate alike for
    # networks with as many populations and, where every population allows dropout, the same
    # answer to R4.6 (a number p gives one p per population), so the
    # PreparedOptions (immutable) of values accepted before is reused. Errors are never cached.
    key: tuple[Any, ...] | None = None
    if (
        type(scheduler) is str
        and type(stop) is str
        and type(forward_group_size) is int
        and type(extra_steps) is int
        and (max_steps is None or type(max_steps) is int)
        and type(seed) is int
        and type(jitter) in (float, int)
        and (
            type(refractory_dropout) in (float, int)
            or (type(refractory_dropout) is str and refractory_dropout == "off")
        )
        and type(input_dropout) in (float, int)
        and type(spike_dropout) in (float, int)
        and type(prioritize_input) is bool
    ):
        key = (*values, len(network.populations), network._dropout_allowed)
        seen = _OPTIONS_SEEN.get(key)
        if seen is not None:
            return seen
    opts = _validate_options(network, *values)
    if key is not None:
        if len(_OPTIONS_SEEN) >= _OPTIONS_SEEN_MAX:
            _OPTIONS_SEEN.clear()
        _OPTIONS_SEEN[key] = opts
    return opts


def prepare_given_options(network: Network, options: RunOptions | None = None, **keywords: Any) -> PreparedOptions:
    """:func:`prepare_options` for the option keywords a caller was given (the others at their defaults).

    Raises
    ------
    ParameterError
        As :func:`prepare_options`, and for a keyword that is not a run option.
    """
    unknown = [name for name in keywords if name not in RUN_OPTION_DEFAULTS]
    if unknown:
        raise invalid(ParameterError, unknown[0], keywords[unknown[0]], "is not a run option")
    return prepare_options(network, options, **{**RUN_OPTION_DEFAULTS, **keywords})


def check_threads(threads: int | None) -> int | None:
    """Validate the ``threads`` argument (None = all cores)."""
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= threads <= 1024
    ):
        raise invalid(ParameterError, "threads", threads, "must be an int in [1, 1024] or None")
    return None if threads is None else int(threads)


@dataclass(frozen=True)
class PreparedInputs:
    """Validated inputs: either ``dense`` or ``sparse`` is set.

    ``dense`` is a C-contiguous float32 array ``[batch, T, n_in]``. ``sparse`` is one
    ``(t, index, value)`` triple of arrays (uint32, uint32, float32) per sample, with the
    common number of timesteps ``timesteps``.
    """

    batch: int
    timesteps: int
    dense: np.ndarray | None
    sparse: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None
    labels: np.ndarray | None  # int64 [batch]
    sample_ids: np.ndarray  # uint64 [batch]

    def dense_sample(self, b: int) -> np.ndarray:
        """Frames ``[T, n_in]`` of sample ``b`` (sparse events summed in float32, R2.2)."""
        if self.dense is not None:
            return np.asarray(self.dense[b])
        assert self.sparse is not None
        t, i, v = self.sparse[b]
        n_in = self._n_in
        try:
            frames = np.zeros((self.timesteps, n_in), dtype=np.float32)
        except (MemoryError, ValueError) as exc:  # huge T: the same typed error as the Rust engine's
            raise EngineError(
                f"sample {b}: dense frames [T={self.timesteps}, {n_in}] do not fit in memory ({exc})",
                field="timesteps",
                value=self.timesteps,
                location=f"sample {b}",
            ) from exc
        for tt, ii, vv in zip(t.tolist(), i.tolist(), v.tolist(), strict=False):
            frames[tt, ii] = np.float32(frames[tt, ii] + np.float32(vv))
        return frames

    _n_in: int = 0


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (torch is never imported here)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def tensor_checked(x: Any, field: str, location: str | None = None, error: type[AsyncSNNError] = InputError) -> Any:
    """A torch tensor as a dense, real, detached tensor of a dtype numpy can hold, on its device.

    The one rule for torch tensors given as data (inputs, labels, sample ids, NIR
    parameters), the same in every engine:

    * ``float32``, ``float16`` and ``float64`` keep their dtype (numpy holds them;
      ``float64`` is later rounded to float32, R8.1, and values beyond its range are
      refused). ``bfloat16`` and the float8 types, which numpy cannot hold, are
      converted to ``float32``: exactly, since their values are all float32 values.
    * ``bool`` and integer dtypes keep their dtype; those numpy cannot hold (unsigned
      16-64 bit) are converted to ``float64`` (exact below ``2^53``).
    * Sparse layouts (COO, CSR, CSC, BSR, BSC) are densified, after checking that the
      dense tensor fits in physical memory (else an ``EngineError`` naming the size).
    * Tensors on the ``meta`` device (no values), complex, quantized and nested
      tensors raise ``error`` (an ``InputError`` by default) naming the field, dtype,
      layout and device.

    Parameters
    ----------
    x
        A torch tensor (also one that requires grad, or on a GPU).
    field, location
        Named by the errors.
    error
        The error class of a refused tensor (``ModelError`` for model parameters).

    Returns
    -------
    torch.Tensor
        Dense (strided), detached, on ``x``'s device.
    """
    torch = sys.modules["torch"]
    dtype = str(x.dtype).removeprefix("torch.")
    layout = str(x.layout).removeprefix("torch.")
    desc = f"{dtype} tensor ({layout}) on device {x.device}"
    if x.is_meta or x.device.type == "meta":
        raise invalid(
            error, field, desc, "a meta tensor has a shape but no values; pass one with its data (CPU or GPU)", location
        )
    if getattr(x, "is_nested", False):
        raise invalid(error, field, desc, "nested tensors are not accepted; pad them into one dense tensor", location)
    if x.is_quantized:
        raise invalid(error, field, desc, "quantized tensors are not accepted; pass x.dequantize()", location)
    if x.is_complex():
        raise invalid(error, field, desc, "complex values are not accepted (the values must be real)", location)
    x = x.detach()
    if x.layout != torch.strided:
        nbytes = x.numel() * max(4, x.element_size())
        if nbytes > _physical_memory():
            raise EngineError(
                f"{field}: cannot densify a sparse tensor of shape {tuple(x.shape)}: {nbytes} bytes "
                f"exceed the {_physical_memory()} bytes of physical memory (pass fewer samples or timesteps, "
                "or sparse events)",
                field=field,
                value=nbytes,
                location=location,
            )
        try:
            x = x.to_dense()
        except (RuntimeError, MemoryError) as exc:
            raise EngineError(
                f"{field}: cannot densify a sparse tensor of shape {tuple(x.shape)} ({nbytes} bytes): {exc}",
                field=field,
                value=nbytes,
                location=location,
            ) from exc
    if x.dtype not in _numpy_dtypes(torch):
        x = x.to(torch.float32 if x.dtype.is_floating_point else torch.float64)
    return x


@functools.cache
def _numpy_dtypes(torch: Any) -> frozenset[Any]:
    """The torch dtypes that ``Tensor.numpy()`` converts."""
    return frozenset(
        {
            torch.bool,
            torch.uint8,
            torch.int8,
            torch.int16,
            torch.int32,
            torch.int64,
            torch.float16,
            torch.float32,
            torch.float64,
        }
    )


def tensor_as_numpy(
    x: Any, field: str, location: str | None = None, error: type[AsyncSNNError] = InputError
) -> np.ndarray:
    """A torch tensor as a numpy array on the CPU, by the rule of :func:`tensor_checked`."""
    arr: np.ndarray = tensor_checked(x, field, location, error).cpu().resolve_conj().resolve_neg().numpy()
    return arr


def _to_numpy(x: Any, field: str, location: str | None = None) -> np.ndarray:
    if is_tensor(x):
        x = tensor_as_numpy(x, field, location)
    try:
        return np.asarray(x)
    except Exception as exc:
        raise invalid(
            InputError, field, type(x).__name__, f"cannot be converted to an array ({exc})", location
        ) from exc


def _check_values(arr: np.ndarray, field: str, location: str | None) -> np.ndarray:
    if arr.dtype.kind not in "fiub":
        raise invalid(InputError, field, f"dtype {arr.dtype}", "must be a real numeric array", location)
    if arr.dtype == np.float32:
        arr32 = arr
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            arr32 = arr.astype(np.float32, copy=False)
    if arr32.size and arr32.min() >= 0 and arr32.max() < np.inf:  # fast path (NaN fails both)
        return arr32
    bad = ~np.isfinite(arr32) | (arr32 < 0)
    if bad.any():
        pos = tuple(int(p) for p in np.argwhere(bad)[0])
        given = arr[pos].item()
        note = " (beyond the float32 range)" if np.isfinite(arr[pos]) and given >= 0 else ""
        raise invalid(
            InputError, field, given, f"input values must be finite and >= 0{note} (at index {pos})", location
        )
    return arr32


_FLOAT32 = np.dtype(np.float32)


def dense_as_given(
    network: Network,
    inputs: Any,
    labels: object = None,
    sample_ids: object = None,
    timesteps: object = None,
) -> np.ndarray | None:
    """``inputs`` as the engine takes them (``[batch, T, n_in]``), when no conversion is needed.

    That is a plain numpy float32 C-contiguous array of shape ``[batch >= 1, T >= 1,
    *frame_shape]`` with ``n_in`` values per frame (``input_shape``, ``(n_in,)`` or any
    other shape of that size, see :func:`frame_layout_ok`), without labels or sample ids, with
    ``timesteps`` None or the int ``T``: what :func:`prepare_inputs` would pass on as
    ``dense`` unchanged (a reshaped view). Returns None for anything else.

    Its **values are not checked**: the caller must leave them to the engine, which
    rejects non-finite or negative values before running any sample, and then let
    :func:`prepare_inputs` raise its own error for them.
    """
    if (
        type(inputs) is not np.ndarray
        or inputs.dtype is not _FLOAT32
        or labels is not None
        or sample_ids is not None
        or not inputs.flags.c_contiguous
    ):
        return None
    shape = inputs.shape
    if len(shape) < 3 or shape[0] == 0 or shape[1] == 0 or shape[0] - 1 > MAX_U32:
        return None
    if timesteps is not None and (type(timesteps) is not int or timesteps != shape[1]):
        return None
    n_in = network.input_size
    if len(shape) == 3 and shape[2] == n_in:
        return inputs
    if frame_layout_ok(shape, n_in):
        return inputs.reshape(shape[0], shape[1], n_in)
    return None


def frame_layout_ok(shape: tuple[int, ...], n_in: int) -> bool:
    """Whether dense inputs of ``shape`` are ``[batch, T, *frame_shape]`` frames of ``n_in`` values.

    Any frame shape of ``n_in`` values is read as the flat input in C order: the
    network's ``input_shape`` (``encode()`` gives ``[n, T, 1, 8, 8]``), ``(n_in,)``, or
    another one of that size. The first two axes are always the batch and time.
    """
    return len(shape) >= 3 and math.prod(shape[2:]) == n_in


def _time_first_hint(shape: tuple[int, ...], n_labels: int) -> str:
    """The error text for inputs whose batch axis is the labels' ``T`` (time-first layout)."""
    return (
        f"{shape[0]} samples of T = {shape[1]} but {n_labels} labels: the inputs look time-first "
        f"[T, batch, ...] (snnTorch's and Norse's layout); asyncsnn takes [batch, T, *input_shape]: "
        "pass inputs.transpose(0, 1) (torch) or np.swapaxes(inputs, 0, 1) (numpy)"
    )


@functools.cache
def _physical_memory() -> int:
    """Bytes of physical memory (a very large number where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 2**62


def _dense_copy(arr: np.ndarray, n_in: int) -> np.ndarray:
    """``arr`` ``[batch, T, ...]`` as a C-contiguous float32 ``[batch, T, n_in]``, sizes checked first.

    The sizes are checked before any pass over the values: ``T`` and the batch must be
    at most ``2^32`` (R2.2), and a copy must be allocated before the values are read. A
    broadcast (zero-stride) input such as ``np.broadcast_to(frame, (1, 10**9, n_in))``
    takes no memory as given but a contiguous copy of its full size, so it fails at once
    with an ``EngineError`` naming that size instead of after a scan of 10^9 frames. Its
    values are checked once per distinct value (along its zero-stride axes only the
    first entry is read).
    """
    batch, timesteps = arr.shape[0], arr.shape[1]
    if timesteps - 1 > MAX_U32:
        raise invalid(InputError, "inputs", f"shape {arr.shape}", "T must be <= 2^32 (R2.2)")
    if batch - 1 > MAX_U32:
        raise invalid(InputError, "inputs", f"shape {arr.shape}", "too many samples in one call (at most 2^32)")
    # Only the distinct values: index 0 along every zero-stride (broadcast) axis.
    distinct = arr[tuple(slice(0, 1) if st == 0 and n > 1 else slice(None) for st, n in zip(arr.strides, arr.shape))]
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        _check_values(arr, "inputs", None)
        return arr.reshape(batch, timesteps, n_in)
    nbytes = batch * timesteps * n_in * 4
    try:
        if nbytes > _physical_memory():  # np.empty would succeed lazily, the copy then swap or be killed
            raise MemoryError(f"more than the {_physical_memory()} bytes of physical memory")
        dense = np.empty((batch, timesteps, n_in), dtype=np.float32)
    except (MemoryError, ValueError) as exc:
        raise EngineError(
            f"inputs: cannot allocate {nbytes} bytes for a float32 copy of inputs of shape {arr.shape} "
            "(a broadcast or non-float32 input is copied; pass fewer samples or timesteps, or sparse events)",
            field="inputs",
            value=nbytes,
            location=None,
        ) from exc
    _check_values(distinct, "inputs", None)
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(dense.reshape(arr.shape), arr, casting="unsafe")
    return dense


def prepare_inputs(
    network: Network,
    inputs: Any,
    *,
    labels: npt.ArrayLike | None = None,
    sample_ids: npt.ArrayLike | None = None,
    timesteps: int | None = None,
) -> PreparedInputs:
    """Validate inputs, labels and sample ids.

    ``inputs`` is an array or torch tensor ``[batch, T, *input_shape]`` (or any
    ``[batch, T, ...]`` with ``n_in`` values per frame, read in C order), or a list with
    one sparse event array ``[n_events, 3]`` (columns ``t``, flat input index, value) per
    sample. Time-first inputs ``[T, batch, ...]`` are an ``InputError`` when labels
    reveal them (``len(labels)`` is ``T``, not the batch).
    """
    n_in = network.input_size
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise invalid(InputError, "inputs", inputs, "the batch is empty")
        events: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        t_needed = 1
        for b, sample in enumerate(inputs):
            where = f"sample {b}"
            arr = _to_numpy(sample, "inputs", where)
            if arr.size == 0:
                arr = arr.reshape(0, 3)
            if arr.ndim != 2 or arr.shape[1] != 3:
                raise invalid(
                    InputError,
                    "inputs",
                    f"shape {arr.shape}",
                    "a sparse sample must be an array [n_events, 3] of (t, index, value)",
                    where,
                )
            if arr.dtype.kind not in "fiu":
                raise invalid(InputError, "inputs", f"dtype {arr.dtype}", "must be numeric", where)
            cols = arr.astype(np.float64)
            if not np.all(np.isfinite(cols[:, :2])):
                raise invalid(
                    InputError, "inputs", "non-finite t or index", "t and index must be finite integers", where
                )
            t, i = cols[:, 0], cols[:, 1]
            if np.any(t != np.round(t)) or np.any(i != np.round(i)) or np.any(t < 0) or np.any(i < 0):
                raise invalid(InputError, "inputs", "t/index", "t and index must be integers >= 0", where)
            if np.any(i >= n_in):
                raise invalid(InputError, "inputs", int(i.max()), f"input index must be < {n_in}", where)
            if np.any(t > MAX_U32 - 1):
                raise invalid(InputError, "inputs", int(t.max()), "t is too large", where)
            v = _check_values(arr[:, 2], "inputs", where)
            if len(v) and float(v.max()) > 1e30:  # repeated (t, i) may overflow float32 when summed (R2.2)
                # Sum per distinct (t, i) only: O(n_events) memory whatever T and n_in are.
                _, slot = np.unique(np.stack([t, i], axis=1), axis=0, return_inverse=True)
                sums = np.zeros(int(slot.max()) + 1, dtype=np.float32)
                with np.errstate(over="ignore"):
                    np.add.at(sums, slot.reshape(-1), v)
                if not np.all(np.isfinite(sums)):
                    raise invalid(InputError, "inputs", "inf", "repeated events sum beyond float32", where)
            if len(t):
                t_needed = max(t_needed, int(t.max()) + 1)
            events.append((t.astype(np.uint32), i.astype(np.uint32), np.ascontiguousarray(v, dtype=np.float32)))
        if timesteps is None:
            timesteps = t_needed
        else:
            timesteps = _int(timesteps, "timesteps", 1)
            if timesteps < t_needed:
                raise invalid(InputError, "timesteps", timesteps, f"events reach t = {t_needed - 1}")
        batch = len(events)
        dense = None
        sparse: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = events
    else:
        arr = _to_numpy(inputs, "inputs")
        shape = tuple(arr.shape)
        if not frame_layout_ok(shape, n_in):
            raise invalid(
                InputError,
                "inputs",
                f"shape {shape}",
                f"expected [batch, T, *{network.input_shape}] or [batch, T, {n_in}] "
                f"(any [batch, T, ...] of {n_in} values per frame)",
            )
        if shape[0] == 0:
            raise invalid(InputError, "inputs", f"shape {shape}", "the batch is empty")
        if shape[1] == 0:
            raise invalid(InputError, "inputs", f"shape {shape}", "T must be >= 1")
        if timesteps is not None and timesteps != shape[1]:
            raise invalid(InputError, "timesteps", timesteps, f"dense inputs have T = {shape[1]}")
        dense = _dense_copy(arr, n_in)
        batch, timesteps, sparse = shape[0], shape[1], None
    lab: np.ndarray | None = None
    if labels is not None:
        lab_arr = _to_numpy(labels, "labels")
        if sparse is None and batch != timesteps and lab_arr.shape == (timesteps,):
            raise invalid(InputError, "inputs", f"shape {tuple(shape)}", _time_first_hint(tuple(shape), timesteps))
        if lab_arr.shape != (batch,):
            raise invalid(
                InputError, "labels", f"shape {lab_arr.shape}", f"expected one label per sample, shape ({batch},)"
            )
        if lab_arr.dtype.kind not in "iu" and not (
            lab_arr.dtype.kind == "f" and np.all(np.isfinite(lab_arr)) and np.all(lab_arr == np.round(lab_arr))
        ):
            raise invalid(InputError, "labels", f"dtype {lab_arr.dtype}", "labels must be integers")
        # Range check before any cast, so that huge float or uint64 labels cannot wrap around.
        bad = (lab_arr < 0) | (lab_arr >= network.n_outputs)
        if bad.any():
            idx = int(np.argmax(bad))
            raise invalid(
                InputError, "labels", int(lab_arr[idx].item()), f"must be in [0, {network.n_outputs}) (sample {idx})"
            )
        lab = lab_arr.astype(np.int64)
    if sample_ids is None:
        if batch - 1 > MAX_U32:
            raise invalid(InputError, "inputs", batch, "too many samples in one call")
        ids = np.arange(batch, dtype=np.uint64)
    else:
        ids_arr = _to_numpy(sample_ids, "sample_ids")
        if ids_arr.shape != (batch,) or ids_arr.dtype.kind not in "iu":
            raise invalid(
                InputError,
                "sample_ids",
                f"{ids_arr.dtype} array of shape {ids_arr.shape}",
                f"expected ints of shape ({batch},)",
            )
        if np.any(ids_arr < 0) or np.any(ids_arr.astype(np.float64) > MAX_U32):
            raise invalid(InputError, "sample_ids", ids_arr, f"must be in [0, {MAX_U32}]")
        ids = ids_arr.astype(np.uint64)
    return PreparedInputs(batch, int(timesteps), dense, sparse, lab, ids, _n_in=n_in)

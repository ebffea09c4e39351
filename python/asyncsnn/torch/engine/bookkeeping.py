"""The scheduling bookkeeping of a forward step: one interface, two backends.

After the fire phase of forward step ``k`` the driver asks a :class:`Bookkeeping` to
enqueue the step's spikes into the pending set and update the queue peaks (R4.3.2,
R7.6), run the stop check (R6; a stopped row drops and counts its pending spikes,
R6.4), set aside the rows whose timestep has ended, emit the silent spikes of the
populations that became settled (section 9, :mod:`~asyncsnn.torch.engine.silent`),
and select and deliver each row's group (R5, R4.3.4). It also counts the forward
steps (R7.5) and records the latencies (R7.7), since both live in the same per-row
arrays.

A row whose timestep has ended keeps still (nothing pending, no current: a few no-op
kernels) until half of the rows have ended; the ended rows are then set aside and
cost no more work (:data:`MIN_SET_ASIDE`).

**Pending set and selection** (unlayered schedulers). The pending neurons are a list
of ``(row, neuron)`` entries sorted by row and id; each row's group is the ``F``
smallest of a key that is unique within the row:

* ``fifo``: the sequence number (R5.2);
* ``random``: ``h(seed, sample, t, k, j, 0)``, hashed for the pending neurons only
  (R5.3; ties to the smaller id);
* ``momentum``: the largest ``v_pre`` (R5.4), with jitter ``v_pre + float32(jitter *
  u(.., 2))`` rounded to float32; a positive float32 orders like its bits, so the key is
  ``2**31 - bits``, ties to the smaller id.

A row with at most ``F`` pending neurons delivers them all. This bookkeeping works on
small integer arrays, and its cost is the number of kernel launches, not their size.
Two backends implement it, with the same results:

* **host** (:class:`~asyncsnn.torch.engine.host_bookkeeping.HostBookkeeping`, CPU
  tensors): numpy on zero-copy views of the row tensors (a numpy call costs a
  fraction of a torch kernel launch), the pending list kept as sorted keys ``row * N
  + neuron`` from the positions of each step's spikes, its merge and the selection in
  one Rust call each (``rust/train_kernels/pending.rs``); the forward step and the
  table deliveries run the Rust kernels too (:mod:`asyncsnn.torch._kernels`);
* **torch** (:class:`~asyncsnn.torch.engine.torch_bookkeeping.TorchBookkeeping`,
  every device and dtype): the pending list from ``nonzero``, each row's group by
  one ``topk`` over a ``[rows, largest pending count]`` table of the rows' keys.

``layered`` (R5.1) has no selection: the group is every pending neuron of the lowest
pending population, a masked dense row per source population
(:class:`~asyncsnn.torch.engine.torch_bookkeeping.LayeredBookkeeping`, in torch on
both backends; the host backend still runs its forward steps in Rust).

Non-prioritised input (R4.13) adds input entries to the pending set (``RowSet.xin``):
every backend counts them as pending entries, drops them at a stop and blocks the
silent spikes while one is pending; ``layered`` delivers them as population 0, and
while one is pending the unlayered backends select with
:func:`~asyncsnn.torch.engine.inputs.select_with_inputs` (in torch, also on the host
backend, whose Rust selection is unchanged).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from asyncsnn._prepare import PreparedOptions, StopMode
from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.torch.engine.context import RunContext
from asyncsnn.torch.engine.rows import RowSet

__all__ = ["BACKENDS", "MIN_SET_ASIDE", "Bookkeeping", "resolve_backend", "stop_rule"]

BACKENDS = ("auto", "host", "torch")
"""The values of :func:`~asyncsnn.torch.engine.run`'s ``backend``."""

MIN_SET_ASIDE = 16
"""Smaller row sets are never compacted: their finished rows cost next to nothing."""


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"host"`` or ``"torch"``: ``"auto"`` is the host backend on the CPU, torch elsewhere.

    Raises
    ------
    ParameterError
        An unknown backend, or ``"host"`` for tensors that are not on the CPU.
    """
    if backend not in BACKENDS:
        raise invalid(ParameterError, "backend", backend, "must be 'auto', 'host' or 'torch'")
    if backend == "auto":
        return "host" if device.type == "cpu" else "torch"
    if backend == "host" and device.type != "cpu":
        raise invalid(ParameterError, "backend", backend, f"the host backend runs on the CPU, not on {device}")
    return backend


def stop_rule(opts: PreparedOptions, k: int, counters: Any, column: int) -> Any:
    """R6: the rows that stop at the stop check of forward step ``k``.

    ``counters[:, column]`` holds the rows' first output step of the timestep (-1:
    none yet), in a torch tensor or a numpy array. Returns a boolean array like it,
    ``True`` when every row stops (R6.3), or ``None`` when no row can stop (``drain``).
    """
    if opts.max_steps is not None and k + 1 >= opts.max_steps:
        return True  # R6.3 (also as a cap on drain and first_output)
    if opts.stop is StopMode.FIRST_OUTPUT:
        fo = counters[:, column]
        return (fo >= 0) & (k - fo >= opts.extra_steps)  # R6.2
    return None


class Bookkeeping(ABC):
    """The per-step bookkeeping of the running rows of one timestep (module docstring).

    The driver calls, at every forward step ``k``: :meth:`count_step`, the forward
    step itself, :meth:`record_outputs`, :meth:`enqueue`,
    :meth:`stop`, :meth:`set_aside`, then (with a graph) :meth:`settle` and
    :meth:`select_and_deliver`. The pending set lives in the bookkeeping between
    these calls; :meth:`start_timestep` empties it.
    """

    needs_fired: ClassVar[bool] = False
    """The forward step must report the flat positions of its spikes (:meth:`enqueue`)."""

    tracks_deliveries: ClassVar[bool] = True
    """The rows count deliveries per neuron (``RowSet.delivered``), turned into synops at
    the end of the timestep; otherwise :meth:`select_and_deliver` adds them as it goes."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    @abstractmethod
    def start_timestep(self) -> None:
        """Empty the pending set (it is empty at every timestep start, R6)."""

    @abstractmethod
    def count_step(self, rows: RowSet, k: int) -> None:
        """R7.5: the running rows have run ``k + 1`` forward steps."""

    @abstractmethod
    def record_outputs(
        self, rows: RowSet, k: int, spikes: torch.Tensor, fired: torch.Tensor | None, latency_open: bool
    ) -> bool:
        """R7.7 and R7.9: the records of the output spikes of step ``k``.

        ``spikes`` are the float32 ``[n, N]`` spikes of the step (no graph), ``fired``
        their flat positions when :attr:`needs_fired`. The step's output spikes join
        the rows' output counts and may change the running prediction and its decision
        records (:func:`~asyncsnn.torch.engine.counters.record_decision`); while
        ``latency_open``, they may also be some row's first output or first correct
        spike (:func:`~asyncsnn.torch.engine.counters.record_latency`). Returns whether
        some running row may still record one (``latency_open`` when nothing changed).
        """

    @abstractmethod
    def enqueue(self, rows: RowSet, fired: torch.Tensor | None) -> None:
        """R4.3.2: the step's spikes join the pending set; R7.6: the queue peaks.

        ``fired``: the flat positions of the spikes when :attr:`needs_fired`.
        """

    @abstractmethod
    def stop(self, rows: RowSet, k: int) -> None:
        """R6: stop check of step ``k``; stopped rows drop their pending spikes (R6.4)."""

    @abstractmethod
    def set_aside(self, rows: RowSet, retired: list[RowSet]) -> RowSet | None:
        """Mark the rows whose timestep has ended and set them aside (into ``retired``).

        Returns the rows still running, or ``None`` when every row has ended (``rows``
        then joins ``retired``).
        """

    @abstractmethod
    def settle(self, rows: RowSet) -> None:
        """Silent spikes of the populations that became settled (section 9; with a graph only)."""

    @abstractmethod
    def select_and_deliver(self, rows: RowSet, k: int) -> None:
        """R5, R4.3.4: select each row's group, take it out of ``Q`` and set ``rows.cur``."""

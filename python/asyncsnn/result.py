"""The result of an inference run: predictions, counters and latency records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asyncsnn import _engine
from asyncsnn.trace import Trace

__all__ = ["COUNTER_FIELDS", "InferenceResult"]

#: Per-sample arrays every engine returns (R7), in order, with their trailing shape
#: (``"T"``, ``"n_out"``, ``"P"`` populations, ``"n_proj"`` projections). All int64.
#: The one list is ``rust/counters.rs::COUNTERS``, exposed as ``_engine.COUNTERS``.
COUNTER_FIELDS: dict[str, tuple[str, ...]] = dict(_engine.COUNTERS)


_FIELD_ORDER = list(COUNTER_FIELDS)


class InferenceResult:
    """Predictions and exact event counters of one ``infer`` call (docs/semantics.md §7).

    Every attribute is an int64 numpy array whose first axis is the batch (``B``):

    ``predictions [B]``
        argmax of ``output_counts`` (ties to the smallest index), -1 without output spike.
    ``output_counts [B, n_out]``, ``timestep_output_counts [B, T, n_out]``
        Output spikes in total and per timestep.
    ``spikes [B, P]``, ``spikes_total [B]``
        Spikes per non-input population and in total.
    ``input_events [B]``
        Number of non-zero input values.
    ``synops [B]``, ``synops_per_projection [B, n_proj]``
        Synaptic operations (one per synapse used by a delivery, R7.4).
    ``forward_steps [B]``, ``timestep_forward_steps [B, T]``
        Forward steps (R4.3) in total and per timestep.
    ``dropped_spikes [B]``, ``queue_peak [B]``
        Spikes dropped by an early stop; largest pending-set size.
    ``first_output_step / _class / _spikes / _synops [B, T]``
        Latency to the first output spike of each timestep (-1 where none, R7.7).
    ``first_correct_step / _spikes / _synops [B, T]``
        The same for the labelled class (all -1 without labels).
    ``timestep_spikes / timestep_synops [B, T]``
        Spikes (all populations) and synops of each timestep (R7.9); they sum to
        ``spikes_total`` and ``synops``.
    ``decision_step / _timestep / _spikes / _synops [B]``
        The stable decision (R7.9): the global forward step (counted across timesteps
        from 0) after which the running prediction last changed, its timestep, and the
        spikes and synops of the sample up to and including that step (-1 without
        output spike).

    Attributes
    ----------
    labels : numpy.ndarray or None
        The labels given to ``infer``, shape ``[B]``.
    engine : str
        Which engine produced the result (``"rust"``, ``"reference"``, ``"torch"``).
    options : dict
        The run options (scheduler, forward group size, stop mode, seed...).
    trace : asyncsnn.trace.Trace or None
        The events of every sample (R7.10) when ``infer`` was called with
        ``trace=True``, else None.
    """

    predictions: np.ndarray
    output_counts: np.ndarray
    timestep_output_counts: np.ndarray
    spikes: np.ndarray
    spikes_total: np.ndarray
    input_events: np.ndarray
    synops: np.ndarray
    synops_per_projection: np.ndarray
    forward_steps: np.ndarray
    timestep_forward_steps: np.ndarray
    dropped_spikes: np.ndarray
    queue_peak: np.ndarray
    first_output_step: np.ndarray
    first_output_class: np.ndarray
    first_output_spikes: np.ndarray
    first_output_synops: np.ndarray
    first_correct_step: np.ndarray
    first_correct_spikes: np.ndarray
    first_correct_synops: np.ndarray
    timestep_spikes: np.ndarray
    timestep_synops: np.ndarray
    decision_step: np.ndarray
    decision_timestep: np.ndarray
    decision_spikes: np.ndarray
    decision_synops: np.ndarray
    trace: Trace | None

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        labels: np.ndarray | None,
        engine: str,
        options: Mapping[str, Any],
    ) -> None:
        missing = set(COUNTER_FIELDS) - set(arrays)
        if missing:
            raise KeyError(f"result arrays missing: {sorted(missing)}")
        for name in COUNTER_FIELDS:
            arr = arrays[name]
            if type(arr) is not np.ndarray or arr.dtype != np.int64:  # engines give int64 arrays: no copy
                arr = np.asarray(arr, dtype=np.int64)
            arr.setflags(write=False)
            self.__dict__[name] = arr
        self.labels = labels
        self.engine = engine
        self.options = dict(options)
        self.trace = None

    @classmethod
    def _from_engine(
        cls,
        arrays: dict[str, np.ndarray],
        *,
        labels: np.ndarray | None,
        engine: str,
        options: Mapping[str, Any],
    ) -> InferenceResult:
        """``InferenceResult(arrays, ...)`` for arrays that need no conversion (the Rust binding's).

        The caller guarantees that the values are read-only int64 numpy arrays; the keys
        are checked: exactly the fields of ``COUNTER_FIELDS`` in that order, or else the
        arrays go through ``__init__`` and its per-array checks. Equal to ``__init__``
        without those checks and ``setflags`` calls.
        """
        if list(arrays) != _FIELD_ORDER:
            return cls(arrays, labels=labels, engine=engine, options=options)
        self = cls.__new__(cls)
        attrs = self.__dict__
        attrs.update(arrays)
        attrs["labels"] = labels
        attrs["engine"] = engine
        attrs["options"] = dict(options)
        attrs["trace"] = None
        return self

    @property
    def batch_size(self) -> int:
        """Number of samples."""
        return int(self.predictions.shape[0])

    @property
    def accuracy(self) -> float | None:
        """Fraction of samples whose prediction equals the label (None without labels)."""
        if self.labels is None:
            return None
        return float(np.mean(self.predictions == self.labels))

    @property
    def decision_class(self) -> np.ndarray:
        """Class of the sample's very first output spike (-1 if none), shape ``[B]``.

        It is ``first_output_class`` at the first timestep that has an output spike:
        the decision an anytime reader would take at the first output spike.
        """
        has = self.first_output_step >= 0
        first_t = np.where(has.any(axis=1), has.argmax(axis=1), -1)
        rows = np.arange(self.batch_size)
        out = self.first_output_class[rows, np.maximum(first_t, 0)]
        return np.where(first_t >= 0, out, -1)

    @property
    def steps_to_first_output(self) -> np.ndarray:
        """Forward steps from the start of the sample to its very first output spike, ``[B]``.

        Counts all forward steps of the earlier timesteps plus ``first_output_step + 1``
        of the first timestep with an output spike; -1 when there is none. This is a
        per-sample latency (what an anytime reader waits for :attr:`decision_class`);
        the "steps to 1st output" of reports is :attr:`mean_steps_to_first_output`.
        """
        has = self.first_output_step >= 0
        res = np.full(self.batch_size, -1, dtype=np.int64)
        for b in range(self.batch_size):
            ts = np.flatnonzero(has[b])
            if ts.size:
                t0 = int(ts[0])
                res[b] = int(self.timestep_forward_steps[b, :t0].sum()) + int(self.first_output_step[b, t0]) + 1
        return res

    @property
    def mean_steps_to_first_output(self) -> float:
        """Steps to 1st output: the forward steps from the start of a timestep to its first output spike.

        The mean, over every (sample, timestep) pair that has an output spike, of
        ``first_output_step + 1`` (the step of the spike counts: a spike in the first
        forward step of a timestep is 1 step). Timesteps without an output spike are
        left out (``predictions == -1`` counts the silent samples); NaN when no timestep
        of the batch has one. Every report uses this one definition: :meth:`summary`,
        ``asyncsnn evaluate``, ``asyncsnn demo`` and the ``asyncsnn reproduce`` table
        (``docs/guide.md``, "Read the latency records").

        Examples
        --------
        >>> import numpy as np
        >>> import asyncsnn
        >>> net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.array([[2.0, 0.0], [0.0, 2.0]]))])
        >>> res = asyncsnn.infer(net, np.array([[[0, 0], [0, 1], [1, 1]]], dtype=np.float32), scheduler="fifo")
        >>> res.first_output_step.tolist(), res.mean_steps_to_first_output
        ([[-1, 0, 0]], 1.0)
        """
        has = self.first_output_step >= 0
        if not has.any():
            return float("nan")
        return float((self.first_output_step[has] + 1.0).mean())

    def as_dict(self) -> dict[str, np.ndarray]:
        """All counter arrays by name (copies)."""
        return {name: getattr(self, name).copy() for name in COUNTER_FIELDS}

    def summary(self) -> str:
        """A short human-readable report of the run."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        lines = [f"InferenceResult: {self.batch_size} samples, engine={self.engine} ({opts})"]
        if self.accuracy is not None:
            lines.append(f"  accuracy            {self.accuracy:.4f}")
        no_out = int(np.sum(self.predictions < 0))
        lines.append(f"  no output spike     {no_out} samples")
        lines.append(f"  spikes / sample     {self.spikes_total.mean():.1f}")
        lines.append(f"  synops / sample     {self.synops.mean():.1f}")
        lines.append(f"  forward steps       {self.forward_steps.mean():.1f} / sample")
        lines.append(f"  dropped spikes      {self.dropped_spikes.mean():.1f} / sample")
        lines.append(f"  queue peak          {self.queue_peak.max() if self.batch_size else 0}")
        if np.any(self.first_output_step >= 0):
            lines.append(
                f"  steps to 1st output {self.mean_steps_to_first_output:.2f} "
                "(forward steps into a timestep, mean over timesteps with an output spike)"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        acc = "" if self.accuracy is None else f", accuracy={self.accuracy:.4f}"
        return (
            f"InferenceResult(batch={self.batch_size}, engine={self.engine!r}{acc}, "
            f"spikes/sample={self.spikes_total.mean():.1f}, synops/sample={self.synops.mean():.1f})"
        )

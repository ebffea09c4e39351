"""Event traces of an inference: every input event, spike and delivery (docs/semantics.md R7.10).

``asyncsnn.infer(..., trace=True)`` (and ``asyncsnn.reference.infer(..., trace=True)``,
event for event the same) returns its result with :attr:`InferenceResult.trace`, a
:class:`Trace`: one row per event, in the order of the semantics (by sample, timestep
and forward step; within a step the input events, then the spikes, then the group
delivered at its end, each by population and neuron). :func:`draw_raster` draws the
events of one sample as a raster, coloured by population, with the layer-synchronous
run beside an asynchronous one (the paper's Figure 1); ``asyncsnn trace MODEL --sample N``
does both from the command line and writes the events as CSV or Parquet.

Columns (all numpy arrays of one length, the number of events):

``sample``
    The sample's position in the batch.
``timestep``, ``step``
    The timestep ``t`` and the forward step ``k`` within it (R4).
``global_step``
    The forward step counted across the sample's timesteps from 0 (R7.9):
    ``sum(timestep_forward_steps[:t]) + k``.
``kind``
    ``"input"`` (a non-zero input delivered in forward step 0, R4.2; with
    ``prioritize_input=False`` enqueued there as an input entry, R4.13), ``"spike"`` (a
    neuron crossed its threshold in the fire phase of the step, R4.3.2) or
    ``"delivery"`` (a pending neuron, or an input entry as population 0, delivered by
    the group selected at the end of the step, R4.3.4; its current is integrated in
    step ``k + 1``).
``population``, ``neuron``
    The population (the input is 0, R1.1) and the neuron's index within it (flat, C
    order over a population's shape).
``value``
    The input value, the membrane before the reset (``v_pre``) or the multiplicity of
    the delivery (an input entry's: its value; float64, float32 values are exact).

A trace holds one row per event, so it is as long as ``input_events + spikes_total +``
the deliveries of the batch: trace a few samples, not a dataset.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from asyncsnn.exceptions import InputError, MissingDependencyError, invalid

if TYPE_CHECKING:
    from asyncsnn.network import Network
    from asyncsnn.result import InferenceResult

__all__ = ["COLUMNS", "KINDS", "Trace", "draw_raster"]

#: The kinds of event, in the order the engine codes them (0, 1, 2).
KINDS = ("input", "spike", "delivery")
#: The columns of a trace, in file order.
COLUMNS = ("sample", "timestep", "step", "global_step", "kind", "population", "neuron", "value")
_INTS = ("sample", "timestep", "step", "global_step", "population", "neuron")


def _global_steps(sample: np.ndarray, timestep: np.ndarray, step: np.ndarray, per_timestep: np.ndarray) -> np.ndarray:
    """``sum(per_timestep[b, :t]) + k`` for each event (R7.9's global index)."""
    before = np.cumsum(per_timestep, axis=1) - per_timestep  # steps of the earlier timesteps
    return before[sample, timestep] + step if sample.size else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Trace:
    """The events of one inference, one row per event (see the module documentation).

    Every attribute is a read-only numpy array of length ``len(trace)``: the int64
    columns ``sample``, ``timestep``, ``step``, ``global_step``, ``population`` and
    ``neuron``, the str column ``kind`` (one of :data:`KINDS`) and the float64 column
    ``value``. Build one with :meth:`from_columns` (it validates), or get one from
    ``infer(..., trace=True).trace`` or :meth:`read_csv` / :meth:`read_parquet`.

    Examples
    --------
    >>> import numpy as np
    >>> import asyncsnn
    >>> net = asyncsnn.Network.sequential(input_shape=(2,), layers=[asyncsnn.Dense(np.eye(2) * 2),
    ...                                   asyncsnn.Dense([[1.5, 1.5]])], threshold=1.0, beta=0.5)
    >>> res = asyncsnn.infer(net, np.ones((1, 1, 2)), scheduler="fifo", forward_group_size=1, trace=True)
    >>> [(e["step"], e["kind"], e["population"], e["neuron"]) for e in res.trace.rows()]
    [(0, 'input', 0, 0), (0, 'input', 0, 1), (0, 'spike', 1, 0), (0, 'spike', 1, 1), (0, 'delivery', 1, 0), (1, 'spike', 2, 0), (1, 'delivery', 1, 1)]
    """

    sample: np.ndarray
    timestep: np.ndarray
    step: np.ndarray
    global_step: np.ndarray
    kind: np.ndarray
    population: np.ndarray
    neuron: np.ndarray
    value: np.ndarray

    @classmethod
    def from_columns(cls, columns: Mapping[str, npt.ArrayLike], *, where: str = "trace") -> Trace:
        """A trace from its columns (a mapping with exactly the names of :data:`COLUMNS`).

        Raises
        ------
        InputError
            A column is missing or unknown, the lengths differ, an integer column holds
            a negative or non-integer value, a ``kind`` is not one of :data:`KINDS`, or a
            value is not finite. ``field`` names the column; ``location`` is ``where``.
        """
        names = set(columns)
        if names != set(COLUMNS):
            wrong = sorted(names - set(COLUMNS)) or sorted(set(COLUMNS) - names)
            raise invalid(InputError, "columns", wrong, f"a trace has exactly the columns {list(COLUMNS)}", where)
        out: dict[str, np.ndarray] = {}
        for name in COLUMNS:
            raw = np.asarray(columns[name])
            if raw.ndim != 1:
                raise invalid(InputError, name, raw.shape, "must be one-dimensional", where)
            if name == "kind":
                arr = raw.astype(str)
                bad = ~np.isin(arr, KINDS)
                if bad.any():
                    raise invalid(InputError, name, str(arr[bad][0]), f"must be one of {list(KINDS)}", where)
            elif name == "value":
                try:
                    arr = raw.astype(np.float64)
                except (TypeError, ValueError) as exc:
                    raise invalid(InputError, name, str(raw[:1]), "must be numbers", where) from exc
                if not np.isfinite(arr).all():
                    raise invalid(InputError, name, float(arr[~np.isfinite(arr)][0]), "must be finite", where)
            else:
                arr = _int_column(raw, name, where)
            arr.setflags(write=False)
            out[name] = arr
        lengths = {len(a) for a in out.values()}
        if len(lengths) > 1:
            raise invalid(InputError, "columns", sorted(lengths), "all columns must have one length", where)
        return cls(**out)

    @classmethod
    def _from_engine(cls, arrays: Mapping[str, np.ndarray], timestep_forward_steps: np.ndarray) -> Trace:
        """A trace from the ``trace_*`` arrays of the Rust engine (``kind`` coded 0, 1, 2)."""
        cols = {c: np.asarray(arrays[f"trace_{c}"]) for c in ("sample", "timestep", "step", "population", "neuron")}
        cols["value"] = np.asarray(arrays["trace_value"])
        cols["kind"] = np.asarray(KINDS)[np.asarray(arrays["trace_kind"], dtype=np.int64)]
        cols["global_step"] = _global_steps(cols["sample"], cols["timestep"], cols["step"], timestep_forward_steps)
        return cls.from_columns(cols, where="engine trace")

    def __len__(self) -> int:
        return int(self.sample.shape[0])

    def __eq__(self, other: object) -> bool:
        """Equal when every column is equal (the same events in the same order)."""
        if not isinstance(other, Trace):
            return NotImplemented
        return all(np.array_equal(getattr(self, c), getattr(other, c)) for c in COLUMNS)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value type: not hashable

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={int((self.kind == k).sum())}" for k in KINDS)
        return f"Trace({len(self)} events of {len(np.unique(self.sample))} sample(s): {counts})"

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by name, in :data:`COLUMNS` order."""
        return {c: getattr(self, c) for c in COLUMNS}

    def rows(self) -> list[dict[str, Any]]:
        """The events as dicts of Python values (small traces: doctests, printing)."""
        cols = self.columns()
        return [{c: cols[c][i].item() for c in COLUMNS} for i in range(len(self))]

    def _where(self, mask: np.ndarray) -> Trace:
        return Trace.from_columns({c: a[mask] for c, a in self.columns().items()})

    def of_sample(self, sample: int) -> Trace:
        """The events of the sample at position ``sample`` of the batch."""
        return self._where(self.sample == sample)

    def of_kind(self, *kinds: str) -> Trace:
        """The events of the given kinds (of :data:`KINDS`), in their order.

        Raises
        ------
        ParameterError
            A kind that is not one of :data:`KINDS`.
        """
        from asyncsnn.exceptions import ParameterError

        for k in kinds:
            if k not in KINDS:
                raise invalid(ParameterError, "kind", k, f"must be one of {list(KINDS)}")
        return self._where(np.isin(self.kind, kinds))

    def to_csv(self, path: str | Path) -> None:
        """Write the trace as CSV (a header of :data:`COLUMNS`, one row per event).

        The file is written whole or not at all (a temporary file, then a rename).
        """
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        cols = [getattr(self, c).tolist() for c in COLUMNS]
        value = cols[COLUMNS.index("value")]
        cols[COLUMNS.index("value")] = [repr(float(v)) for v in value]  # round-trips exactly
        w.writerows(zip(*cols, strict=True))
        _write(Path(path), buf.getvalue().encode())

    @classmethod
    def read_csv(cls, path: str | Path) -> Trace:
        """Read a trace written by :meth:`to_csv`.

        Raises
        ------
        InputError
            The file is not a trace (its header or a value), naming the column.
        """
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != COLUMNS:
                raise invalid(InputError, "columns", header, f"the header must be {list(COLUMNS)}", str(path))
            body = list(reader)
        if any(len(r) != len(COLUMNS) for r in body):
            raise invalid(InputError, "columns", "a short row", f"every row has {len(COLUMNS)} values", str(path))
        cols = list(zip(*body, strict=True)) if body else [() for _ in COLUMNS]
        return cls.from_columns({c: np.asarray(v) for c, v in zip(COLUMNS, cols, strict=True)}, where=str(path))

    def to_parquet(self, path: str | Path) -> None:
        """Write the trace as a Parquet file (needs ``pyarrow``: ``pip install 'asyncsnn[trace]'``).

        The file is written whole or not at all.

        Raises
        ------
        MissingDependencyError
            ``pyarrow`` cannot be imported (nothing is written).
        """
        pa, pq = _pyarrow()
        table = pa.table({c: getattr(self, c) for c in COLUMNS})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _write(Path(path), sink.getvalue().to_pybytes())

    @classmethod
    def read_parquet(cls, path: str | Path) -> Trace:
        """Read a trace written by :meth:`to_parquet` (needs ``pyarrow``).

        Raises
        ------
        MissingDependencyError
            ``pyarrow`` cannot be imported.
        InputError
            The file is not a trace.
        """
        pa, pq = _pyarrow()
        try:
            table = pq.read_table(path)
        except pa.ArrowInvalid as exc:
            raise invalid(InputError, "path", str(path), f"not a Parquet file ({exc})") from exc
        return cls.from_columns({c: table.column(c).to_numpy() for c in table.column_names}, where=str(path))


def _int_column(raw: np.ndarray, name: str, where: str) -> np.ndarray:
    """``raw`` as int64 values >= 0 (strings of digits, as a CSV gives them, included)."""
    try:
        arr = raw.astype(np.int64) if raw.dtype.kind in "iub" or raw.size == 0 else np.array(raw, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise invalid(InputError, name, str(raw[:1]), "must be integers", where) from exc
    if raw.dtype.kind == "f" and not np.array_equal(arr, raw):
        raise invalid(InputError, name, str(raw[arr != raw][0]), "must be integers", where)
    if (arr < 0).any():
        raise invalid(InputError, name, int(arr[arr < 0][0]), "must be >= 0", where)
    return arr


def _write(path: Path, data: bytes) -> None:
    from asyncsnn.model_file import _atomic_write

    _atomic_write(path, [data], tmp_prefix=".asyncsnn-trace-")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            f"Parquet traces need pyarrow, which cannot be imported ({exc}): pip install 'asyncsnn[trace]' "
            "(or write CSV)",
            field="pyarrow",
            value=None,
        ) from exc
    return pa, pq


def _population_names(network: Network | None, populations: Sequence[int]) -> dict[int, str]:
    names = {0: "input"}
    n = max([*populations, 0])
    for p in range(1, n + 1):
        last = network is not None and p == len(network.populations)
        names[p] = "output" if last else f"hidden {p}"
    return names


def draw_raster(
    traces: Mapping[str, Trace],
    path: str | Path,
    *,
    network: Network | None = None,
    results: Mapping[str, InferenceResult] | None = None,
    title: str | None = None,
) -> str:
    """Draw the spikes of one sample under one or several runs side by side, save a PNG.

    Each panel is one run (``traces``: a label, e.g. the scheduler, to the trace of one
    sample): the x axis is the forward step counted across the sample (``global_step``),
    the y axis the neurons, stacked by population (input at the bottom), one marker per
    input event and spike, coloured by population; dotted lines mark the timesteps.
    Under ``layered`` a population fires all at once, one step after the one below;
    an asynchronous scheduler spreads the same timestep over more, smaller steps, and a
    neuron may fire before its population below has finished (Figure 1 of Koopman et
    al.).

    Parameters
    ----------
    traces
        Panel label to a :class:`Trace` of exactly one sample.
    path
        The PNG file to write.
    network
        The network (names the output population and sizes the y axis), optional.
    results
        Panel label to the run's :class:`~asyncsnn.result.InferenceResult` (of that one
        sample), to put its forward steps, spikes and prediction in the panel title.
    title
        The figure's title.

    Returns
    -------
    str
        The caption: per panel, the forward steps, spikes and the step of the first
        output spike, computed from the traces.

    Raises
    ------
    ParameterError
        No trace, or a trace of several samples.
    """
    from asyncsnn.exceptions import ParameterError

    if not traces:
        raise invalid(ParameterError, "traces", {}, "give at least one trace")
    for label, tr in traces.items():
        if len(np.unique(tr.sample)) > 1:
            raise invalid(ParameterError, "traces", label, "each trace must hold one sample (Trace.of_sample)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pops = sorted({int(p) for tr in traces.values() for p in tr.population})
    names = _population_names(network, pops)
    sizes = {p: 1 + max(int(tr.neuron[tr.population == p].max(initial=-1)) for tr in traces.values()) for p in pops}
    if network is not None:
        sizes = {0: network.input_size, **{i + 1: p.size for i, p in enumerate(network.populations)}}
        pops = sorted(sizes)
    base = dict(zip(pops, np.cumsum([0, *[sizes[p] for p in pops][:-1]]).tolist(), strict=True))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(traces), figsize=(5.5 * len(traces), 4.2), sharey=True, squeeze=False)
    parts = []
    for ax, (label, tr) in zip(axes[0], traces.items(), strict=True):
        shown = tr.of_kind("input", "spike")
        for p in pops:
            sel = shown.population == p
            ax.scatter(
                shown.global_step[sel],
                base[p] + shown.neuron[sel],
                s=6,
                marker="|",
                color=colours(p % 10),
                label=names.get(p, f"population {p}"),
            )
        for start in np.unique(tr.global_step - tr.step)[1:]:  # where each timestep begins
            ax.axvline(start - 0.5, color="0.8", lw=0.6, ls=":")
        result = None if results is None else results.get(label)
        spikes = tr.of_kind("spike")
        out = spikes.global_step[spikes.population == max(pops)] if len(spikes) else np.zeros(0, dtype=np.int64)
        first = int(out.min()) if out.size else None
        text = f"{label}: {_total_steps(tr, result)} forward steps, {len(spikes)} spikes"
        text += f", first output spike at step {first}" if first is not None else ", no output spike"
        parts.append(text)
        ax.set_title(text.replace(": ", "\n", 1), fontsize=9)
        ax.set_xlabel("forward step (across timesteps)")
    axes[0][0].set_ylabel("neuron (stacked by population)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=130)
    finally:
        plt.close(fig)
    _write(Path(path), buf.getvalue())
    return "; ".join(parts) + "."


def _total_steps(trace: Trace, result: InferenceResult | None) -> int:
    """The sample's forward steps: the result's count when given, else what the trace shows.

    A trace shows every forward step after the first of a timestep (each follows a
    delivery, integrated in the next step) but not a timestep without any event.
    """
    if result is not None:
        return int(result.forward_steps[0])
    if not len(trace):
        return 0
    return int((trace.global_step + (trace.kind == "delivery")).max()) + 1

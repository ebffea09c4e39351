"""Streaming evaluation: run a dataset of any size chunk by chunk with bounded memory.

:func:`infer_iter` takes an iterable of samples -- a generator reading files, a
``torch.utils.data.DataLoader``-like iterator of single samples, a memory-mapped array
-- runs the Rust engine on ``batch_size`` samples at a time and concatenates only the
per-sample counters. Peak memory therefore grows with the chunk, not with the dataset
(the counters are a few hundred bytes per sample plus ``8 * T`` bytes per per-timestep
record). Sample ids are the running index of each sample in the stream, so the result
equals one ``asyncsnn.infer`` call on the whole dataset, bit for bit, for every
scheduler and seed.

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> from asyncsnn.streaming import infer_iter
>>> rng = np.random.default_rng(0)
>>> net = asyncsnn.Network.sequential(
...     input_shape=(16,),
...     layers=[asyncsnn.Dense(rng.uniform(0, 0.5, (8, 16))), asyncsnn.Dense(rng.uniform(0, 0.5, (3, 8)))])
>>> data = [((rng.random((5, 16)) < 0.3).astype(np.float32), i % 3) for i in range(10)]
>>> res = infer_iter(net, iter(data), batch_size=4, scheduler="random", forward_group_size=2)
>>> big = asyncsnn.infer(net, np.stack([x for x, _ in data]), labels=[y for _, y in data],
...                      scheduler="random", forward_group_size=2)
>>> bool(np.array_equal(res.synops, big.synops)), res.batch_size, res.accuracy == big.accuracy
(True, 10, True)
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from asyncsnn._prepare import (
    MAX_U32,
    RUN_OPTION_NAMES,
    check_threads,
    is_tensor,
    prepare_given_options,
    tensor_as_numpy,
)
from asyncsnn.exceptions import AsyncSNNError, InputError, ParameterError, invalid
from asyncsnn.network import Network
from asyncsnn.result import COUNTER_FIELDS, InferenceResult

__all__ = ["infer_iter"]

_END = object()


def _split(item: Any, paired: bool | None, index: int) -> tuple[Any, Any, bool]:
    """``(sample, label or None, paired)`` of one stream item (a sample or a pair)."""
    is_pair = isinstance(item, tuple) and len(item) == 2
    if paired is not None and is_pair != paired:
        raise invalid(
            InputError,
            "samples",
            type(item).__name__,
            "mixes (sample, label) pairs and bare samples",
            f"sample {index}",
        )
    if is_pair:
        return item[0], item[1], True
    return item, None, False


def _label(value: Any, index: int, n_out: int) -> int:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise invalid(InputError, "labels", value, "labels must be integers", f"sample {index}")
    label = int(value)
    if not 0 <= label < n_out:
        raise invalid(InputError, "labels", label, f"must be in [0, {n_out})", f"sample {index}")
    return label


def infer_iter(
    network: Network,
    samples: Iterable[Any],
    *,
    batch_size: int = 256,
    labels: Iterable[Any] | None = None,
    engine: Callable[..., InferenceResult] | None = None,
    **infer_options: Any,
) -> InferenceResult:
    """Run ``network`` over a stream of samples, ``batch_size`` at a time.

    Parameters
    ----------
    network
        The network to run.
    samples
        An iterable of dense samples ``[T, *input_shape]`` (or ``[T, n_in]``; numpy
        arrays, torch tensors or nested lists), all with the same ``T``; or of
        ``(sample, label)`` tuples. It is consumed once, lazily.
    batch_size
        Samples per engine call (>= 1). Peak memory grows with it, not with the
        number of samples.
    labels
        Optional iterable of int labels, one per sample (not together with pairs).
    engine
        The ``infer`` function to run each chunk with (default ``asyncsnn.infer``,
        the Rust engine; ``asyncsnn.reference.infer`` and ``asyncsnn.torch.infer``
        take the same arguments).
    **infer_options
        Run options passed to every chunk: ``scheduler``, ``forward_group_size``,
        ``stop``, ``extra_steps``, ``max_steps``, ``seed``, ``jitter``,
        ``refractory_dropout``, ``input_dropout``, ``spike_dropout``,
        ``prioritize_input`` or ``options``
        (an :class:`~asyncsnn.RunOptions`),
        ``threads`` (and ``device`` for the torch engine).
        ``sample_ids`` is not accepted: the ids are the running index of the samples.

    Returns
    -------
    InferenceResult
        The concatenated result, equal to one ``infer`` call on all samples.

    Raises
    ------
    InputError
        Empty stream, samples of different shape or ``T``, bad values or labels (the
        location names the sample's index in the stream), more than ``2**32``
        samples, or fewer/more labels than samples.
    ParameterError
        Bad ``batch_size`` or run option (checked before the stream is read).
    """
    from asyncsnn.engine import infer as rust_infer

    run = rust_infer if engine is None else engine
    _check_options(network, run, engine, batch_size, infer_options)
    if not isinstance(samples, Iterable):
        raise invalid(InputError, "samples", type(samples).__name__, "must be an iterable of samples")
    label_iter: Iterator[Any] | None = None if labels is None else iter(labels)
    stream = _Stream(network, run, infer_options)
    for index, item in enumerate(samples):
        stream.add(index, item, label_iter)
        if len(stream.chunk) == batch_size:
            stream.flush()
    if label_iter is not None and next(label_iter, _END) is not _END:
        raise invalid(InputError, "labels", stream.offset + len(stream.chunk), "more labels than samples")
    if stream.chunk:
        stream.flush()
    return stream.result()


def _check_options(
    network: Network,
    run: Any,
    engine: Callable[..., InferenceResult] | None,
    batch_size: int,
    infer_options: dict[str, Any],
) -> None:
    """Check the engine, ``batch_size`` and the run options of :func:`infer_iter`, before the stream is read."""
    if not callable(run):
        raise invalid(ParameterError, "engine", type(engine).__name__, "must be an infer function")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size <= MAX_U32:
        raise invalid(ParameterError, "batch_size", batch_size, "must be an int >= 1")
    for name in ("sample_ids", "timesteps"):
        if name in infer_options:
            raise invalid(
                ParameterError,
                name,
                "given",
                "infer_iter feeds the running sample index as sample ids and reads T from the samples",
            )
    try:
        accepted = set(inspect.signature(run).parameters)
    except (TypeError, ValueError):  # a callable without a signature: let it check its own options
        accepted = set(infer_options)
    for name in infer_options:
        if name not in accepted:
            raise invalid(ParameterError, name, infer_options[name], f"is not an option of {run.__name__}")
    # Validate the run options once, before reading anything from the stream.
    prepare_given_options(
        network, infer_options.get("options"), **{k: v for k, v in infer_options.items() if k in RUN_OPTION_NAMES}
    )
    if "threads" in infer_options:
        check_threads(infer_options["threads"])


def _sample_array(sample: Any, index: int) -> np.ndarray:
    """Sample ``index`` of the stream as a numpy array."""
    if is_tensor(sample):  # by the shared rule for tensors (bfloat16, sparse, meta...)
        sample = tensor_as_numpy(sample, "samples", f"sample {index}")
    try:
        return np.asarray(sample)
    except Exception as exc:
        raise invalid(
            InputError,
            "samples",
            type(sample).__name__,
            f"cannot be converted to an array ({exc})",
            f"sample {index}",
        ) from exc


class _Stream:
    """The chunk of :func:`infer_iter` being filled and the counters of the chunks run so far."""

    def __init__(self, network: Network, run: Callable[..., InferenceResult], infer_options: dict[str, Any]) -> None:
        self.network = network
        self.run = run
        self.infer_options = infer_options
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in COUNTER_FIELDS}
        self.label_parts: list[np.ndarray] = []
        self.result_meta: dict[str, Any] = {}
        self.frame_shape: tuple[int, ...] | None = None
        self.paired: bool | None = None
        self.have_labels: bool | None = None
        self.offset = 0
        self.chunk: list[np.ndarray] = []
        self.chunk_labels: list[int] = []

    def add(self, index: int, item: Any, label_iter: Iterator[Any] | None) -> None:
        """Check stream item ``index`` (a sample or a pair) and its label, and append them to the chunk."""
        sample, label, self.paired = _split(item, self.paired, index)
        if label_iter is not None:
            if self.paired:
                raise invalid(ParameterError, "labels", "given", "the samples are (sample, label) pairs already")
            try:
                label = next(label_iter)
            except StopIteration:
                raise invalid(InputError, "labels", index, "fewer labels than samples", f"sample {index}") from None
        if self.have_labels is None:
            self.have_labels = label is not None
        elif self.have_labels != (label is not None):
            raise invalid(InputError, "labels", None, "some samples have a label and some not", f"sample {index}")
        arr = _sample_array(sample, index)
        if self.frame_shape is None:
            self.frame_shape = arr.shape
        elif arr.shape != self.frame_shape:
            raise invalid(
                InputError,
                "samples",
                f"shape {arr.shape}",
                f"every sample must have the shape of the first one, {self.frame_shape} ([T, *input_shape])",
                f"sample {index}",
            )
        if self.have_labels:
            self.chunk_labels.append(_label(label, index, self.network.n_outputs))
        self.chunk.append(arr)

    def flush(self) -> None:
        """Run the engine on the chunk and keep its counters (and labels)."""
        offset = self.offset
        n = len(self.chunk)
        if offset + n - 1 > MAX_U32:
            raise invalid(InputError, "samples", offset + n, f"more than {MAX_U32 + 1} samples (ids are u32)")
        ids = np.arange(offset, offset + n, dtype=np.int64)
        lab = np.asarray(self.chunk_labels, dtype=np.int64) if self.have_labels else None
        try:
            res = self.run(self.network, np.stack(self.chunk), labels=lab, sample_ids=ids, **self.infer_options)
        except AsyncSNNError as exc:
            where = f"samples {offset}..{offset + n - 1}"
            raise type(exc)(
                f"{exc} (in the chunk of {where})", field=exc.field, value=exc.value, location=exc.location or where
            ) from exc
        for name in COUNTER_FIELDS:
            self.parts[name].append(np.asarray(getattr(res, name)))
        if lab is not None:
            self.label_parts.append(lab)
        if not self.result_meta:
            self.result_meta.update(engine=res.engine, options=res.options)
        self.offset += n
        self.chunk.clear()
        self.chunk_labels.clear()

    def result(self) -> InferenceResult:
        """The concatenated result of the chunks run (the stream must not be empty)."""
        if self.offset == 0:
            raise invalid(InputError, "samples", "[]", "the stream is empty")
        arrays = {name: np.concatenate(self.parts[name]) for name in COUNTER_FIELDS}
        all_labels = np.concatenate(self.label_parts) if self.have_labels else None
        return InferenceResult(
            arrays, labels=all_labels, engine=self.result_meta["engine"], options=self.result_meta["options"]
        )

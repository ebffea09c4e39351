"""``asyncsnn.infer``: fast asynchronous evaluation with the Rust engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from asyncsnn._prepare import (
    DropoutLike,
    PreparedInputs,
    PreparedOptions,
    RunOptions,
    SchedulerLike,
    StopLike,
    check_threads,
    dense_as_given,
    prepare_inputs,
    prepare_options,
)
from asyncsnn.exceptions import ParameterError, invalid
from asyncsnn.network import Network
from asyncsnn.result import InferenceResult

__all__ = ["infer"]


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
    """Run ``network`` asynchronously on a batch and count everything it does.

    The execution follows ``docs/semantics.md``: in each timestep the input frame is
    delivered at once, then pending spikes are delivered in groups of at most
    ``forward_group_size`` chosen by ``scheduler``; a neuron fires as soon as its
    membrane exceeds its threshold. Samples run in parallel on ``threads`` cores with
    the interpreter released; results do not depend on the thread count.

    Parameters
    ----------
    network
        The network to run.
    inputs
        Dense frames, a numpy array or torch tensor ``[batch, T, *input_shape]`` of
        finite values >= 0 (event counts or graded values): the batch axis first, then
        time. Any frame shape of ``n_in`` values is read as the flat input in C order
        (``[batch, T, n_in]``, or ``asyncsnn.data.encode``'s ``[n, T, 1, 8, 8]`` for a
        network of 64 inputs). snnTorch and Norse put time first, ``[T, batch, ...]``:
        pass ``x.transpose(0, 1)``. Or a list with one sparse event array
        ``[n_events, 3]`` per sample whose rows are ``(t, flat input index, value)``.
    scheduler
        ``"layered"``, ``"fifo"``, ``"random"`` or ``"momentum"`` (R5).
    forward_group_size
        ``F >= 1``: the most pending spikes delivered per forward step (ignored by
        ``"layered"``).
    stop
        ``"drain"`` (run each timestep until nothing is pending), ``"first_output"``
        (stop ``extra_steps`` forward steps after the first output spike of the
        timestep) or ``"max_steps"`` (at most ``max_steps`` forward steps) (R6).
    extra_steps
        Forward steps run after the first output spike with ``stop="first_output"``.
    max_steps
        Cap on forward steps per timestep (required by ``stop="max_steps"``, optional
        otherwise).
    seed
        Seed of the counter-based random function (``random`` scheduler, jitter,
        dropout), 0 <= seed < 2**64.
    jitter
        ``momentum`` only: ``lambda`` of the random key jitter (R5.4), >= 0.
    refractory_dropout
        ``"off"`` (default, p = 0), ``"network"`` (the populations' own values) or a
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
        The eleven options above as one :class:`~asyncsnn.RunOptions` value, instead of
        keywords. An option keyword given together with it must be left at its default
        or hold the same value.
    labels
        Optional int array ``[batch]`` of classes; enables ``accuracy`` and the
        ``first_correct_*`` latency records. Labels of length ``T`` (not ``batch``)
        reveal time-first inputs: an ``InputError`` that says so.
    sample_ids
        Optional int array ``[batch]`` of ids fed to the random function in place of
        the position in the batch, so that results do not depend on batch order.
    timesteps
        Number of timesteps for sparse inputs (default: last event time + 1).
    threads
        Number of worker threads (default: all cores).
    trace
        Also record every input event, spike and delivery of every sample (R7.10) in
        ``result.trace`` (an :class:`asyncsnn.trace.Trace`, one row per event). For a
        few samples: the samples run once more with the recorder (the results are
        those of the ordinary run), and the call cannot be interrupted inside.

    Returns
    -------
    InferenceResult
        Predictions, output counts and every counter of R7 as int64 arrays
        (``result.trace`` with ``trace=True``).

    Raises
    ------
    InputError
        Bad inputs, labels or sample ids (shape, dtype, NaN, negative values, a
        time-first layout revealed by the labels).
    ParameterError
        Bad options (unknown scheduler, ``forward_group_size`` < 1, ..., an option
        keyword that conflicts with ``options``).

    Examples
    --------
    >>> import numpy as np
    >>> import asyncsnn
    >>> rng = np.random.default_rng(0)
    >>> net = asyncsnn.Network.sequential(
    ...     input_shape=(16,),
    ...     layers=[asyncsnn.Dense(rng.uniform(0, 0.5, (8, 16))), asyncsnn.Dense(rng.uniform(0, 0.5, (3, 8)))],
    ...     threshold=1.0, beta=0.9)
    >>> x = (rng.random((4, 10, 16)) < 0.3).astype(np.float32)  # 4 samples, 10 timesteps
    >>> res = asyncsnn.infer(net, x, scheduler="random", forward_group_size=2, labels=[0, 1, 2, 0])
    >>> res.output_counts.shape, res.timestep_output_counts.shape
    ((4, 3), (4, 10, 3))
    >>> bool((res.synops > 0).all())
    True
    """
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
    dense = dense_as_given(network, inputs, labels, sample_ids, timesteps)
    if not trace and dense is not None and (threads is None or (type(threads) is int and 1 <= threads <= 1024)):
        return _infer_dense(network, dense, opts, threads, inputs, timesteps)
    prepared = prepare_inputs(network, inputs, labels=labels, sample_ids=sample_ids, timesteps=timesteps)
    return _run(network, prepared, opts, check_threads(threads), trace=trace)


def _run(
    network: Network, prepared: PreparedInputs, opts: PreparedOptions, threads: int | None, *, trace: bool = False
) -> InferenceResult:
    """The Rust engine on validated inputs and options: the body of :func:`infer`."""
    arrays = _run_engine(
        network,
        opts,
        threads,
        prepared.dense,
        prepared.sparse,
        prepared.timesteps,
        prepared.labels,
        prepared.sample_ids,
        trace=trace,
    )
    events = {name: arrays.pop(name) for name in [n for n in arrays if n.startswith("trace_")]}
    result = InferenceResult(arrays, labels=prepared.labels, engine="rust", options=opts.as_dict())
    if trace:
        from asyncsnn.trace import Trace

        result.trace = Trace._from_engine(events, result.timestep_forward_steps)
    return result


def _run_engine(
    network: Network,
    opts: PreparedOptions,
    threads: int | None,
    dense: np.ndarray | None,
    sparse: Any,
    timesteps: int,
    labels: np.ndarray | None,
    sample_ids: np.ndarray | None,
    *,
    trace: bool = False,
) -> dict[str, np.ndarray]:
    """One call of the Rust engine with validated options (``_engine.run``)."""
    from asyncsnn import _engine

    return _engine.run(
        network._engine_network(),
        dense,
        sparse,
        timesteps,
        labels,
        sample_ids,
        *opts.engine_args(),
        threads,
        trace,
        input_dropout=opts.input_dropout,
        spike_dropout=opts.spike_dropout,
        prioritize_input=opts.prioritize_input,
    )


def _infer_dense(
    network: Network, dense: np.ndarray, opts: PreparedOptions, threads: int | None, inputs: Any, timesteps: int | None
) -> InferenceResult:
    """``infer`` of float32 frames that need no conversion (``dense_as_given``), nor labels or ids.

    The same call as the general path with less work around it: the engine checks the
    values (all of them, before it runs any sample) and numbers the samples itself, and
    its read-only arrays go into the result as they are. On any engine error the inputs
    get the full validation, so that a bad value raises the very error it raises on the
    general path; an error that is not about the inputs is raised as it came.
    """
    try:
        arrays = _run_engine(network, opts, threads, dense, None, dense.shape[1], None, None)
    except Exception as exc:  # re-raised below unless the inputs explain it
        failure = exc
    else:
        return InferenceResult._from_engine(arrays, labels=None, engine="rust", options=opts.as_dict())
    prepare_inputs(network, inputs, timesteps=timesteps)
    raise failure

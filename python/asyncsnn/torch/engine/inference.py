"""``infer``: the torch engine behind the ``asyncsnn.infer`` signature (no gradients)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from asyncsnn._prepare import (
    DropoutLike,
    RunOptions,
    SchedulerLike,
    StopLike,
    check_threads,
    prepare_inputs,
    prepare_options,
)
from asyncsnn.network import Network
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.torch.engine.bookkeeping import resolve_backend
from asyncsnn.torch.engine.driver import run
from asyncsnn.torch.engine.plan import Plan, as_tensor, network_weights, torch_device

__all__ = ["infer"]

_INFER_CHUNK = 2048  # samples per batch inside infer (results do not depend on it)


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
    device: torch.device | str | None = None,
    backend: str = "auto",
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
    scheduler, forward_group_size, stop, extra_steps, max_steps, seed, jitter, refractory_dropout,
    input_dropout, spike_dropout, prioritize_input
        As for ``asyncsnn.infer`` (R5, R6, R4.6, R4.10, R4.11, R4.13).
    options
        The eleven options above as one :class:`~asyncsnn.RunOptions` (as for
        ``asyncsnn.infer``: a keyword given with it must agree with it).
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
    backend
        ``"auto"``, ``"host"`` or ``"torch"``: the code that runs the engine's steps
        and bookkeeping, see :func:`~asyncsnn.torch.engine.run` (same results).

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
    prepared = prepare_inputs(network, inputs, labels=labels, sample_ids=sample_ids, timesteps=timesteps)
    check_threads(threads)
    dev = torch_device(device)
    resolve_backend(backend, dev)  # fail before any work
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
                backend=backend,
            )
            outs.append(out.counters)
    arrays = {k: torch.cat([o[k] for o in outs]).numpy() for k in COUNTER_FIELDS}
    return InferenceResult(arrays, labels=prepared.labels, engine="torch", options=opts.as_dict())

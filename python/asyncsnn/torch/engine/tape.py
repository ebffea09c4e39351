"""The taped fast path of unlayered training on the CPU: one Rust call forward, one backward.

For the networks and options it covers (:func:`tape_applies`), a differentiable run of
an unlayered scheduler is the Rust inference engine's run of the batch, which records a
tape of every sample -- its input events, spikes with the membranes they fire from,
deliveries with their multiplicities, and the membranes at the end of every timestep --
and one autograd node (:class:`_TapedRun`) whose backward pass walks the tapes in Rust
(``rust/train_kernels/tape.rs``). The forward pass is the engine's (identical spikes
and counters, docs/semantics.md); the backward pass computes the gradient of section 9
that the step-by-step torch engine computes -- the spikes' surrogate terms, the
deliveries' multiplicities and weight rows, the silent spikes of each population when
it settles, the leak -- touching only what the events touch, instead of recording
autograd nodes for every forward step of every row. The gradients equal the torch
engine's up to the float32 summation order (the tests compare them).

The path takes every stop mode (R6), every dropout (R4.6, R4.10, R4.11: the backward
pass redraws the spikes' dropout decisions from the seed, R5.5), non-prioritised input
(R4.13) and both ``surrogate_terms``: with ``"every_step"`` the backward pass replays
each timestep's membranes from the tape to find the integrations that take a term.
It takes every network the engine runs: dense, conv and pooling projections, recurrent
ones (R4.9), biases, every reset mode and synaptic currents (settling populations,
R1.6, R4.7, R4.8, R4.12: the tape records when each population settles and the
synaptic currents at every timestep's end). Anything else runs the step-by-step
engine: ``layered`` (ordinary BPTT), CUDA tensors, ``backend="torch"``, a population
that the run settles although the engine would not (a trainable bias that is exactly
zero, ``train_zero_biases``, with the reset ``"zero"``: the first batch of such a
module) and surrogates without a Rust derivative. A run that the engine rejects (a
membrane overflow of R8.3, say, or a weight or bias that is not finite) runs there too,
which raises its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from asyncsnn import _engine
from asyncsnn._binding import flat_populations, flat_projections
from asyncsnn._prepare import PreparedOptions, Scheduler
from asyncsnn.exceptions import EngineError, ModelError
from asyncsnn.torch.engine.plan import Plan
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["ENABLED", "run_taped", "tape_applies"]

ENABLED = True
"""Whether :func:`tape_applies` may choose the taped path (tests and benchmarks switch it off)."""


def tape_applies(
    plan: Plan,
    weights: Sequence[torch.Tensor | None],
    frames: torch.Tensor,
    opts: PreparedOptions,
    surrogate: Surrogate,
    surrogate_terms: str,
    bias: torch.Tensor | None = None,
) -> bool:
    """Whether a differentiable host-backend run can take the taped path (module docstring)."""
    if not ENABLED or opts.scheduler is Scheduler.LAYERED:
        return False
    if surrogate._kernel_params() is None or frames.dtype is not torch.float32 or not frames.is_cpu:
        return False
    if plan.any_settling and not _engine_settles_alike(plan, bias):
        return False
    for pp in plan.projections:
        w = weights[pp.index]
        if (w is None) != (pp.kind == "pool"):
            return False
        if w is not None and (w.dtype is not torch.float32 or not w.is_cpu):
            return False
    return True


def _engine_settles_alike(plan: Plan, bias: torch.Tensor | None) -> bool:
    """Whether the engine, given ``bias``, settles exactly the populations that ``plan`` settles.

    A population is settling in the engine when its reset is not ``"zero"``, some bias
    is not 0, it has a synaptic current or a recurrent projection targets it (R1.6);
    ``plan.settling`` also holds the populations with trainable zero biases.
    """
    if bias is None or bias.dtype is not torch.float32 or not bias.is_cpu or bias.shape != (plan.n_neurons,):
        return False
    nonzero = (bias.detach() != 0).numpy()
    recurrent_targets = {pp.target for pp in plan.projections if pp.recurrent}
    for p in range(1, plan.n_populations + 1):
        o, n = plan.offsets[p], plan.sizes[p]
        settles = (
            plan.resets[p] != "zero" or plan.synaptic[p] or p in recurrent_targets or bool(nonzero[o : o + n].any())
        )
        if plan.settling[p] != settles:
            return False
    return True


def run_taped(
    plan: Plan,
    weights: Sequence[torch.Tensor | None],
    frames: torch.Tensor,
    opts: PreparedOptions,
    labels: torch.Tensor | None,
    sample_ids: torch.Tensor | None,
    surrogate: Surrogate | None,
    surrogate_terms: str = "fired",
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """The taped run: differentiable counts ``[B, T, n_out]`` and the counters, or ``None``.

    ``bias``: float32 ``[N]``, the biases of a network with settling populations (R1.4;
    ``None`` without). ``None`` outside the path's scope (:func:`tape_applies`;
    ``surrogate`` None is the default ``ATan()``) and when the engine rejects the run:
    the caller then runs the step-by-step engine, which raises the error with its own
    location.
    """
    sur = make_surrogate(surrogate)
    if not tape_applies(plan, weights, frames, opts, sur, surrogate_terms, bias):
        return None
    params = sur._kernel_params()
    assert params is not None
    if not plan.any_settling:
        bias = None
    try:
        network = _engine_network(plan, weights, bias)
    except ModelError:  # a weight or bias that is not finite: the step-by-step engine's error
        return None
    trained = [pp.index for pp in plan.projections if weights[pp.index] is not None]  # not the pools
    ws = [weights[i] for i in trained]
    n_batch = frames.shape[0]
    ids = np.arange(n_batch, dtype=np.uint64) if sample_ids is None else sample_ids.cpu().numpy().astype(np.uint64)
    lab = None if labels is None else np.ascontiguousarray(labels.cpu().numpy(), dtype=np.int64)
    parallel = torch.get_num_threads() > 1
    try:
        counters, tape = _engine.tape_run(
            network,
            np.ascontiguousarray(frames.detach().numpy()),
            lab,
            ids,
            *opts.engine_args(),
            opts.input_dropout,
            opts.spike_dropout,
            opts.prioritize_input,
            parallel,
        )
    except EngineError:
        return None
    out = {k: torch.from_numpy(np.array(v)) for k, v in counters.items()}
    values = out["timestep_output_counts"].to(torch.float32)
    every_step = surrogate_terms == "every_step"
    counts = _TapedRun.apply(tape, network, (*params, every_step), parallel, tuple(trained), values, bias, *ws)
    return counts, out


def _engine_network(plan: Plan, weights: Sequence[torch.Tensor | None], bias: torch.Tensor | None) -> _engine.Network:
    """The Rust engine's network of ``plan`` with the current ``weights`` (``None``: a pool) and ``bias``."""
    populations = flat_populations(plan.network)
    if bias is not None:
        flat = bias.detach().numpy()
        for p in range(1, plan.n_populations + 1):
            o, n = plan.offsets[p], plan.sizes[p]
            size, theta, beta, p_drop, _, reset, alpha = populations[p - 1]
            populations[p - 1] = (size, theta, beta, p_drop, np.ascontiguousarray(flat[o : o + n]), reset, alpha)
    projections = flat_projections(plan.network)  # the geometry; the weights replaced below
    for pp in plan.projections:
        w = weights[pp.index]
        if w is not None:
            kind, source, target, _, geometry = projections[pp.index]
            projections[pp.index] = (
                kind,
                source,
                target,
                np.ascontiguousarray(w.detach().reshape(-1).numpy()),
                geometry,
            )
    return _engine.Network(plan.network.input_size, populations, projections)


def _from_engine_layout(flat: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A gradient in the engine's layout as the weight's tensor.

    Dense ``[n_source, n_target]`` transposed; conv ``k[((c kh + ky) kw + kx) c_out + o]``
    to ``[c_out, c_in, kh, kw]``.
    """
    if len(shape) == 2:
        return torch.from_numpy(flat.reshape(shape[1], shape[0]).T.copy())
    c_out, c_in, kh, kw = shape
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(c_in, kh, kw, c_out).transpose(3, 0, 1, 2)))


class _TapedRun(torch.autograd.Function):
    """The counts of a taped run; backward: the weights' (and biases') gradients from the tape, in Rust."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        tape: Any,
        network: Any,
        params: tuple[str, float, float, bool],
        parallel: bool,
        trained: tuple[int, ...],
        values: torch.Tensor,
        bias: torch.Tensor | None,
        *weights: torch.Tensor,
    ) -> torch.Tensor:
        ctx.tape, ctx.network, ctx.params, ctx.parallel = tape, network, params, parallel
        ctx.trained = trained
        ctx.shapes = [tuple(w.shape) for w in weights]
        return values

    @staticmethod
    def backward(ctx: Any, g_counts: torch.Tensor) -> tuple[Any, ...]:
        name, p, q, every_step = ctx.params
        g = np.ascontiguousarray(g_counts.detach().to(torch.float32).numpy()).reshape(-1)
        flat = _engine.tape_grad(ctx.tape, ctx.network, g, name, p, q, every_step, ctx.parallel)
        grads = [_from_engine_layout(flat[i], s) for i, s in zip(ctx.trained, ctx.shapes)]
        g_bias = torch.from_numpy(flat[-1]) if ctx.needs_input_grad[6] else None
        return (None, None, None, None, None, None, g_bias, *grads)

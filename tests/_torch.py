"""torch for the tests that use it when the ``[train]`` extra is installed (and skip without it).

``torch`` and ``asyncsnn_torch`` are None when torch is missing; ``needs_torch`` marks a
test that needs it; ``ONE_THREAD`` is the environment for torch subprocesses;
``one_torch_thread`` runs a test module's tests with torch on one thread;
``bptt_counts`` is plain layer-by-layer BPTT, the gradient oracle of ``layered``, and
``layered_bptt`` the same with biases, reset modes, recurrence and synaptic currents.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

torch: Any
asyncsnn_torch: Any
try:
    import torch

    import asyncsnn.torch as asyncsnn_torch
except ImportError:  # pragma: no cover - the [train] extra is not installed
    torch = None
    asyncsnn_torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install asyncsnn[train])")
# Torch subprocesses run on one thread: tiny models gain nothing from more, and spinning
# worker threads make them several times slower on a small shared machine.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def one_torch_thread() -> Iterator[None]:
    """Body of a module-scoped autouse fixture: torch on one thread for the module's tests."""
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def bptt_counts(net: Any, weights: list[Any], x: Any, surrogate: Any) -> Any:
    """Plain layer-by-layer BPTT (R4.5): U = beta V + W s; s = H(U - theta); V = U (1 - s)."""
    pops = net.populations
    v = [torch.zeros(x.shape[0], p.size) for p in pops]
    out = []
    for t in range(x.shape[1]):
        inp = x[:, t]
        for i, (pop, w) in enumerate(zip(pops, weights)):
            u = torch.tensor(pop.beta.reshape(-1)) * v[i] + inp @ w.t()
            s = asyncsnn_torch.surrogate.spike(u - torch.tensor(pop.threshold.reshape(-1)), surrogate)
            v[i] = u * (1 - s)
            inp = s
        out.append(inp)
    return torch.stack(out, 1)


def assert_grad_run_matches(out: Any, res: Any, labels: Any, model: Any) -> None:
    """A grad-mode run ``out`` equals the inference result ``res`` and gives finite gradients.

    Its result and per-timestep output counts are ``res``'s, and back-propagating the
    counts gives every parameter of ``model`` a finite gradient.
    """
    from asyncsnn.testing import assert_results_equal

    assert_results_equal(out.result(labels), res)
    torch.testing.assert_close(out.counts.detach(), torch.tensor(res.timestep_output_counts, dtype=torch.float32))
    out.counts.sum().backward()
    for p in model.parameters():
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()


def random_run_options(rng: Any, scheduler: str, stop: str, group_sizes: list[int]) -> dict[str, Any]:
    """Run options drawn for a random engine case: F from ``group_sizes``, the stop's caps, a seed."""
    return {
        "scheduler": scheduler,
        "forward_group_size": int(rng.choice(group_sizes)),
        "stop": stop,
        "extra_steps": int(rng.integers(0, 3)),
        "max_steps": int(rng.integers(1, 7)) if stop == "max_steps" or rng.integers(0, 2) else None,
        "seed": int(rng.integers(0, 2**63)),
        "jitter": float(rng.choice([0.0, 0.25])) if scheduler == "momentum" else 0.0,
        "refractory_dropout": str(rng.choice(["off", "network"])),
        # R4.13 in a quarter of the runs that can take it (momentum refuses it).
        "prioritize_input": scheduler == "momentum" or bool(rng.integers(0, 4)),
    }


def backend_gradients(net: Any, x: Any, y: Any, scheduler: str, backends: Any) -> list[Any]:
    """The rate-loss gradients of ``AsyncSNN(net)`` under ``scheduler`` (F = 2), one tuple per backend.

    Asserts that the backends agree (rtol 1e-5).
    """
    from asyncsnn._prepare import prepare_given_options
    from asyncsnn.torch import AsyncSNN, rate_loss
    from asyncsnn.torch.engine import run
    from asyncsnn.torch.surrogate import ATan

    grads = []
    for backend in backends:
        model = AsyncSNN(net)
        opts = prepare_given_options(net, scheduler=scheduler, forward_group_size=2, seed=4)
        out = run(
            model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector(), backend=backend
        )
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return grads


def layered_bptt(net: Any, ws: list[Any], bs: list[Any], x: Any) -> Any:
    """R4.5 as BPTT, written out: snnTorch's ``Leaky``/``RLeaky``, and ``Synaptic``/``RSynaptic`` (R4.12).

    ``U_t = beta V_{t-1} + (W s_t + R s_{t-1} + b) - theta d_t``; a population with a
    synaptic current integrates ``S_t = alpha S_{t-1} + (W s_t + R s_{t-1} + b)`` instead
    of the bracket. ``s_t = H(U_t - theta)`` (strict, ATan surrogate), the reset per mode
    in the graph, the delayed debt ``d_t = s_{t-1}`` a constant; the output spikes
    ``[B, T, n_out]``.
    """
    from asyncsnn.torch.surrogate import ATan, spike

    pops = net.populations
    n_b = x.shape[0]
    v = [torch.zeros(n_b, p.size) for p in pops]
    syn = [torch.zeros(n_b, p.size) for p in pops]
    debt = [torch.zeros(n_b, p.size) for p in pops]
    prev = [torch.zeros(n_b, p.size) for p in pops]
    out = []
    for t in range(x.shape[1]):
        now: list[Any] = [x[:, t]]
        for i, (pop, b) in enumerate(zip(pops, bs), 1):
            cur = torch.zeros(n_b, pop.size)
            for pr, w in zip(net.projections, ws):
                if pr.target == i:
                    src = prev[pr.source - 1] if pr.recurrent else now[pr.source]
                    cur = cur + src @ w.t()
            drive = cur + b
            if pop.synaptic:
                syn[i - 1] = torch.tensor(pop.alpha.reshape(-1)) * syn[i - 1] + drive
                drive = syn[i - 1]
            theta = torch.tensor(pop.threshold.reshape(-1))
            u = torch.tensor(pop.beta.reshape(-1)) * v[i - 1] + drive
            if pop.reset == "subtract_delayed":
                u = u - theta * debt[i - 1]
            s = spike(u - theta, ATan())
            if pop.reset == "zero":
                v[i - 1] = u * (1 - s)
            elif pop.reset == "subtract":
                v[i - 1] = u - theta * s
            else:
                v[i - 1] = u
            debt[i - 1] = s.detach()
            now.append(s)
        prev = now[1:]
        out.append(now[-1])
    return torch.stack(out, 1)


def infer_backends(net: Any, x: Any, **kw: Any) -> list[Any]:
    """The torch engine's results on the ``host`` and ``torch`` backends, which must agree."""
    from asyncsnn.testing import assert_results_equal

    results = [asyncsnn_torch.infer(net, x, backend=b, **kw) for b in ("host", "torch")]
    assert_results_equal(results[0], results[1])
    return results


def infer_all(net: Any, x: Any, **kw: Any) -> Any:
    """The torch engine's result on both backends (:func:`infer_backends`, which must agree)."""
    return infer_backends(net, x, **kw)[0]


def batch_and_alone(net: Any, x: Any, opts: dict[str, Any], backend: str) -> tuple[list[Any], list[Any]]:
    """The weight gradients of a random linear function of a batch's counts, and their
    sum over the samples run one at a time (the same function restricted to each; each
    sample keeps its id of R5.5, its position in the batch)."""
    import numpy as np

    from asyncsnn._prepare import prepare_given_options
    from asyncsnn.torch.engine import run

    model = asyncsnn_torch.AsyncSNN(net)
    prepared = prepare_given_options(net, **opts)
    g = torch.from_numpy(np.random.default_rng(0).normal(size=(x.shape[0], x.shape[1], net.n_outputs)))
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(rows: slice) -> list[Any]:
        frames = torch.from_numpy(x[rows])
        ids = torch.arange(x.shape[0])[rows]
        w = model.projection_weights()
        out = run(model.plan, w, frames, prepared, sample_ids=ids, backend=backend, bias=model.bias_vector())
        got = torch.autograd.grad((out.counts * g[rows].float()).sum(), params, allow_unused=True)
        return [torch.zeros_like(p) if q is None else q for p, q in zip(params, got)]

    alone = [grads(slice(b, b + 1)) for b in range(x.shape[0])]
    return grads(slice(None)), [sum(parts) for parts in zip(*alone)]  # type: ignore[misc]

"""Hardening of the torch engine and of the shared input conversion (issue 15).

* Item 1: batches whose samples' activity differs end their timesteps at different
  forward steps; the torch engine sets finished rows aside and merges them back
  (``torch/engine.py::_merge``), and must do so whatever step each row stopped at.
* Item 3: float32 overflow of a membrane fails the run with the same EngineError in
  every engine (``docs/semantics.md`` R8.3), naming the first failing sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import select_samples, spread_samples
from asyncsnn.exceptions import EngineError
from asyncsnn.result import InferenceResult
from asyncsnn.testing import assert_results_equal, grid_weights
from asyncsnn.torch import _kernels
from asyncsnn.torch import engine as torch_engine


# ------------------------------------------------------------------------- item 1
def _mixed_activity_case() -> tuple[asyncsnn.Network, np.ndarray, np.ndarray]:
    """32 samples of a dense 64-64-10 network, input density drawn per sample in 0.02-0.6, T = 4.

    With F = 1 some rows end a timestep before forward step 32 and others after it
    (the torch engine computes the random function's states 32 steps at a time), and
    more than half of the rows end early, so the late ones run as a set of their own.
    """
    rng = np.random.default_rng(10)
    net = asyncsnn.Network.sequential(
        (64,),
        [asyncsnn.Dense(grid_weights(rng, (64, 64), 1.0, 0.1)), asyncsnn.Dense(grid_weights(rng, (10, 64), 1.0, 0.1))],
        threshold=1.0,
        beta=0.875,
        refractory_dropout=0.5,
    )
    density = rng.uniform(0.02, 0.6, 32)
    x = (rng.random((32, 4, 64)) < density[:, None, None]).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    return net, x, labels


MIXED_OPTIONS: list[dict[str, Any]] = [
    {"scheduler": "random"},
    {"scheduler": "momentum", "jitter": 0.5},
    {"scheduler": "fifo", "refractory_dropout": "network"},
    {"scheduler": "random", "refractory_dropout": "network"},
]


def test_mixed_activity_case_has_rows_on_both_sides_of_step_32() -> None:
    """The regression case below exercises what it claims (rows ending before and after step 32)."""
    net, x, _ = _mixed_activity_case()
    steps = asyncsnn.infer(net, x, scheduler="random", forward_group_size=1, seed=5).timestep_forward_steps
    assert (((steps <= 32).sum(0) >= 16) & (steps > 32).any(0)).any()


@pytest.mark.parametrize("opts", MIXED_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_torch_infer_on_a_batch_of_mixed_activity(opts: dict[str, Any]) -> None:
    net, x, labels = _mixed_activity_case()
    kw = {"forward_group_size": 1, "seed": 5, **opts}
    rust = asyncsnn.infer(net, x, labels=labels, **kw)
    assert_results_equal(at.infer(net, x, labels=labels, **kw), rust)
    # The reference engine (slow) on a few rows, from the quietest to the busiest.
    rows = spread_samples(rust, 3)
    ref = asyncsnn.reference.infer(net, x[rows], labels=labels[rows], sample_ids=rows, **kw)
    assert_results_equal(select_samples(rust, rows), ref)


@pytest.mark.parametrize("opts", MIXED_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_one_training_step_on_a_batch_of_mixed_activity(opts: dict[str, Any]) -> None:
    """The differentiable forward (grad mode) and one optimiser step of ``train``."""
    net, x, labels = _mixed_activity_case()
    kw = {"forward_group_size": 1, "seed": 5, **opts}
    model = at.AsyncSNN.from_network(net)
    out = model(torch.from_numpy(x), labels=torch.from_numpy(labels), **kw)
    assert_results_equal(out.result(labels), asyncsnn.infer(net, x, labels=labels, **kw))
    at.rate_loss(out.counts, torch.from_numpy(labels)).backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in model.weights)
    dropout = kw.pop("refractory_dropout", 0.0)
    trained, history = at.train(
        net, (x, labels), epochs=1, batch_size=32, progress=False, refractory_dropout=dropout, **kw
    )
    assert history.epochs == 1
    assert all(np.isfinite(p.layer.weight).all() for p in trained.projections)


# ------------------------------------------------------------------------- item 3 (R8.3)
def _infer_fns() -> dict[str, Any]:
    """Every engine's ``infer``, and the torch engine's CPU variants (fused kernels off, torch bookkeeping)."""

    def torch_variant(fused: bool, host: bool) -> Any:
        def run(*args: Any, **kwargs: Any) -> InferenceResult:
            saved = _kernels.FUSED_CPU, torch_engine._HOST
            _kernels.FUSED_CPU, torch_engine._HOST = fused, host
            try:
                return at.infer(*args, **kwargs)
            finally:
                _kernels.FUSED_CPU, torch_engine._HOST = saved

        return run

    return {
        "reference": asyncsnn.reference.infer,
        "rust": asyncsnn.infer,
        "torch": at.infer,
        "torch-unfused": torch_variant(False, True),
        "torch-bookkeeping": torch_variant(True, False),
    }


def _overflow(engine: str, net: asyncsnn.Network, x: Any, **kw: Any) -> EngineError:
    with pytest.raises(EngineError) as info:
        _infer_fns()[engine](net, x, **kw)
    return info.value


def _expect(err: EngineError, where: str) -> None:
    assert type(err) is EngineError
    assert (err.field, err.value, err.location) == ("membrane", None, where)
    assert str(err) == f"{where}: membrane overflows"


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _chain(w1: Any, threshold: float = 1.0, beta: float = 0.5) -> asyncsnn.Network:
    w1 = _f32(w1)
    return asyncsnn.Network.sequential(
        (w1.shape[1],),
        [asyncsnn.Dense(w1), asyncsnn.Dense(np.ones((2, w1.shape[0])))],
        threshold=threshold,
        beta=beta,
    )


ENGINES_AND_SCHEDULERS = [(e, s) for e in _infer_fns() for s in ("layered", "fifo", "random", "momentum")]


@pytest.mark.parametrize(("engine", "scheduler"), ENGINES_AND_SCHEDULERS)
def test_a_product_overflowing_to_inf_fails_the_run(engine: str, scheduler: str) -> None:
    net = _chain([[1.0, 0.0], [0.0, 3e38]])
    x = np.zeros((1, 3, 2), np.float32)
    x[0, 2] = (1.0, 2.0)  # 2 * 3e38 = inf reaches neuron 1 of population 1 at timestep 2
    _expect(
        _overflow(engine, net, x, scheduler=scheduler), "sample 0, timestep 2, forward step 0, population 1, neuron 1"
    )


@pytest.mark.parametrize(("engine", "scheduler"), ENGINES_AND_SCHEDULERS)
def test_inf_minus_inf_fails_the_run(engine: str, scheduler: str) -> None:
    """Products that overflow with opposite signs: inf + -inf = NaN in any summation order."""
    net = _chain([[0.5, 0.5], [3e38, -3e38], [-3e38, 3e38]])
    x = np.full((2, 1, 2), 2.0, np.float32)
    _expect(
        _overflow(engine, net, x, scheduler=scheduler), "sample 0, timestep 0, forward step 0, population 1, neuron 1"
    )


@pytest.mark.parametrize(("engine", "scheduler"), ENGINES_AND_SCHEDULERS)
def test_an_overflow_hidden_by_a_fused_multiply_add_still_fails(engine: str, scheduler: str) -> None:
    """``-3e38 * 1 + 3e38 * 2``: the second product overflows (R8.3), so the sum is inf.

    A matrix product that fuses the product into the running sum (FMA, as torch's CPU
    ``linear`` does for batches of 4) computes ``3e38`` instead; the torch engine must
    still fail the run like the sequential engines.
    """
    net = _chain([[-3e38, 3e38]])
    x = np.zeros((4, 1, 2), np.float32)
    x[2, 0] = (1.0, 2.0)
    _expect(
        _overflow(engine, net, x, scheduler=scheduler), "sample 2, timestep 0, forward step 0, population 1, neuron 0"
    )


@pytest.mark.parametrize(("engine", "scheduler"), ENGINES_AND_SCHEDULERS)
def test_the_lowest_failing_sample_is_named(engine: str, scheduler: str) -> None:
    """Only sample 3 of 5 overflows at first; sample 4 overflows earlier in time, sample 3 later."""
    net = _chain([[0.5, 0.5], [0.0, 3e38], [3e38, 0.0]])
    x = np.ones((5, 4, 2), np.float32)
    x[3, 2] = (1.0, 2.0)  # sample 3: neuron 1 at timestep 2
    x[4, 0] = (2.0, 1.0)  # sample 4: neuron 2 at timestep 0 (a later sample failing earlier)
    x[4, 3] = (2.0, 2.0)
    _expect(
        _overflow(engine, net, x, scheduler=scheduler), "sample 3, timestep 2, forward step 0, population 1, neuron 1"
    )


@pytest.mark.parametrize("engine", list(_infer_fns()))
def test_overflow_in_later_steps_and_of_the_membrane_sum(engine: str) -> None:
    """A summed spike current (forward step 1) and ``V + I`` (both finite alone) overflow too."""
    # Two hidden spikes of weight 3e38 each reach the output together: 6e38 = inf.
    net = asyncsnn.Network.sequential(
        (2,), [asyncsnn.Dense(np.eye(2) * 2), asyncsnn.Dense(_f32([[3e38, 3e38]]))], threshold=1.0, beta=0.5
    )
    x = np.ones((1, 1, 2), np.float32)
    where = "sample 0, timestep 0, forward step 1, population 2, neuron 0"
    _expect(_overflow(engine, net, x, scheduler="layered"), where)
    _expect(_overflow(engine, net, x, scheduler="fifo", forward_group_size=2), where)
    # V = 3e38 stays below the threshold, no leak; the next 3e38 makes V + I = inf.
    net = _chain([[3e38]], threshold=3.4e38, beta=1.0)
    x = np.ones((1, 3, 1), np.float32)
    where = "sample 0, timestep 1, forward step 0, population 1, neuron 0"
    _expect(_overflow(engine, net, x, scheduler="fifo"), where)


@pytest.mark.parametrize("engine", list(_infer_fns()))
def test_an_overflowing_multiplicity_times_weight_fails(engine: str) -> None:
    """With refractory dropout a neuron can be pending twice: ``2 * 2e38`` overflows (R4.6, R8.3)."""
    net = asyncsnn.Network(
        (1,),
        [
            asyncsnn.Population.create((1,), np.float32(1.0), np.float32(0.5)),
            asyncsnn.Population.create((1,), np.float32(1.0), np.float32(0.5), refractory_dropout=0.99),
            asyncsnn.Population.create((1,), np.float32(1.0), np.float32(0.5)),
        ],
        [
            asyncsnn.Projection(0, 1, asyncsnn.Dense(_f32([[2.0]]))),
            asyncsnn.Projection(0, 2, asyncsnn.Dense(_f32([[2.0]]))),
            asyncsnn.Projection(1, 2, asyncsnn.Dense(_f32([[2.0]]))),
            asyncsnn.Projection(2, 3, asyncsnn.Dense(_f32([[2e38]]))),
        ],
    )
    x = np.zeros((4, 1, 1), np.float32)
    x[2] = 1.0
    # Population 2 fires at steps 0 and 1 (dropout keeps it open), population 1's spike is
    # delivered first (fifo, layered), so population 2 is delivered once with multiplicity 2.
    for scheduler in ("fifo", "layered"):
        kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": 1, "refractory_dropout": "network"}
        ref = asyncsnn.reference.infer(net, x, **{**kw, "refractory_dropout": "off"})
        assert ref.spikes.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]]
        where = "sample 2, timestep 0, forward step 2, population 3, neuron 0"
        _expect(_overflow(engine, net, x, **kw), where)


@pytest.mark.parametrize("engine", list(_infer_fns()))
def test_a_refractory_neurons_overflowing_current_is_discarded(engine: str) -> None:
    """R4.6 before R8.3: the current of a refractory neuron never reaches its membrane."""
    net = asyncsnn.Network(
        (2,),
        [
            asyncsnn.Population.create((2,), np.float32(1.0), np.float32(0.5)),
            asyncsnn.Population.create((1,), np.float32(1.0), np.float32(0.5)),
        ],
        [
            asyncsnn.Projection(0, 1, asyncsnn.Dense(_f32(np.eye(2) * 2))),
            asyncsnn.Projection(0, 2, asyncsnn.Dense(_f32([[2.0, 2.0]]))),  # fires at step 0
            asyncsnn.Projection(1, 2, asyncsnn.Dense(_f32([[3e38, 3e38]]))),  # inf at step 1: discarded
        ],
    )
    x = np.ones((3, 2, 2), np.float32)
    for scheduler in ("layered", "fifo", "random", "momentum"):
        kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": 2}
        res = _infer_fns()[engine](net, x, **kw)
        assert res.spikes.tolist() == [[4, 2]] * 3
        assert_results_equal(res, asyncsnn.reference.infer(net, x, **kw))


def test_training_raises_the_overflow_error() -> None:
    net = _chain([[0.5, 0.5], [3e38, -3e38]])
    x = np.ones((4, 2, 2), np.float32)  # 3e38 - 3e38 = 0 for samples 0-2
    x[3] = 2.0  # sample 3: inf - inf
    labels = np.zeros(4, dtype=np.int64)
    model = at.AsyncSNN.from_network(net)
    with pytest.raises(EngineError) as info:
        model(torch.from_numpy(x), labels=torch.from_numpy(labels), scheduler="random", forward_group_size=1)
    _expect(info.value, "sample 3, timestep 0, forward step 0, population 1, neuron 1")
    with pytest.raises(EngineError) as info:
        at.train(net, (x, labels), epochs=1, batch_size=4, progress=False, scheduler="fifo")
    assert info.value.field == "membrane"


@pytest.mark.parametrize(("engine", "scheduler"), ENGINES_AND_SCHEDULERS)
def test_an_overflowing_product_of_a_conv_input_fails(engine: str, scheduler: str) -> None:
    """The conv form of the FMA case: ``-3e38 * 1 + 3e38 * 2`` under a 1x2 kernel."""
    net = asyncsnn.Network.sequential(
        (1, 2, 3),
        [asyncsnn.Conv2d(_f32([[[[-3e38, 3e38]]]]), stride=1), asyncsnn.Dense(np.ones((2, 4)))],
        threshold=1.0,
        beta=0.5,
    )
    x = np.zeros((4, 2, 1, 2, 3), np.float32)
    x[1, 1, 0, 1, 1:] = (1.0, 2.0)  # output pixel (0, 1, 1): flat index 3
    x[2, 1, 0, 0, :2] = (1.0, 1.0)  # -3e38 + 3e38 = 0: no overflow
    _expect(
        _overflow(engine, net, x, scheduler=scheduler), "sample 1, timestep 1, forward step 0, population 1, neuron 3"
    )

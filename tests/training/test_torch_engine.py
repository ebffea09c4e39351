"""The torch engine equals the reference engine exactly (docs/semantics.md, R8.2 grid weights).

Hypothesis draws small random grid networks (dense, conv, skip) and integer count
inputs, over every scheduler, forward group size, stop mode, dropout setting and
jitter, and compares every counter of section 7 with ``asyncsnn.reference.infer``. The
differentiable forward (grad mode, ``AsyncSNN``) must give the same counters as the
no-grad inference path. Invalid options raise the same typed errors as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import SCHEDULERS, engine_cases
from asyncsnn._prepare import prepare_given_options, prepare_options
from asyncsnn.exceptions import EngineError, InputError, ModelError, ParameterError
from asyncsnn.rng import hash32_np
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.torch import _rng
from asyncsnn.torch import engine as torch_engine


def grid_conv_net(seed: int = 0) -> asyncsnn.Network:
    rng = np.random.default_rng(seed)
    return asyncsnn.Network.sequential(
        input_shape=(2, 8, 8),
        layers=[
            asyncsnn.Conv2d(grid_weights(rng, (4, 2, 3, 3), 0.5, 0.2), stride=1, padding=1),
            asyncsnn.SumPool2d(2),
            asyncsnn.Conv2d(grid_weights(rng, (3, 4, 2, 2), 0.4, 0.1), stride=2),
            asyncsnn.Dense(grid_weights(rng, (5, 12), 0.5, 0.2)),
        ],
        threshold=0.75,
        beta=0.875,
        refractory_dropout=0.5,
    )


# ------------------------------------------------------------------------- R5.5 hash
def test_torch_hash_matches_spec_vectors() -> None:
    vectors = [
        ((0, 0, 0, 0, 0, 0), 3433141362),
        ((0, 0, 0, 0, 0, 1), 3422389651),
        ((1, 0, 0, 0, 0, 0), 2498379101),
        ((42, 3, 7, 2, 100, 0), 643818531),
        ((2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2), 1525704551),
        ((123456789012345, 17, 5, 11, 65, 1), 3783100989),
    ]
    for (seed, sample, t, k, neuron, stream), expected in vectors:
        state = _rng.mix32_t(_rng.mix32_t(_rng.prefix(seed, torch.tensor([sample])) ^ t) ^ k)
        h = _rng.hash_neurons(state, torch.tensor([neuron]), stream)
        assert int(h[0]) == expected
        assert float(_rng.uniform24(h)[0]) == (expected >> 8) / 2**24


def test_torch_hash_matches_numpy_hash() -> None:
    rng = np.random.default_rng(0)
    neurons = rng.integers(0, 2**32, 500)
    for seed in (0, 7, 2**64 - 1):
        for sample, t, k, stream in ((0, 0, 0, 0), (5, 3, 9, 1), (2**32 - 1, 1, 2**32 - 1, 2)):
            state = _rng.mix32_t(_rng.mix32_t(_rng.prefix(seed, torch.tensor([sample])) ^ t) ^ k)
            h = _rng.hash_neurons(state, torch.from_numpy(neurons), stream)
            np.testing.assert_array_equal(h.numpy(), hash32_np(seed, sample, t, k, neurons, stream))
            # The numpy twin used by the engine's CPU bookkeeping.
            h_np = _rng.hash_neurons_np(np.repeat(state.numpy(), neurons.size), neurons, stream)
            np.testing.assert_array_equal(h_np, h.numpy())
            np.testing.assert_array_equal(_rng.uniform24_np(h_np), _rng.uniform24(h).numpy())


def test_split_multiply_matches_plain_product() -> None:
    x = torch.tensor([0, 1, 2**31, 2**32 - 1, 123456789], dtype=torch.int64)
    for c in (0x21F0AAAD, 0x735A2D97, 0x9E3779B9, 0xFFFFFFFF):
        expected = [(int(v) * c) % 2**32 for v in x]
        assert _rng._mul_mod32(x, c).tolist() == expected


# ------------------------------------------------------------------------- equivalence
def cases() -> st.SearchStrategy[dict[str, Any]]:
    return engine_cases(max_batch=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_torch_engine_equals_reference_on_random_grid_networks(case: dict[str, Any]) -> None:
    a = at.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    b = asyncsnn.reference.infer(case["net"], case["x"], labels=case["labels"], **case["opts"])
    assert a.engine == "torch"
    assert_results_equal(a, b)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["host", "torch"]))
def test_both_backends_equal_reference_on_random_grid_networks(case: dict[str, Any], backend: str) -> None:
    """Each backend named: the host one (Rust kernels and numpy, the CPU's default) and the
    torch one (used off the CPU), forced on the CPU."""
    a = at.infer(case["net"], case["x"], labels=case["labels"], backend=backend, **case["opts"])
    assert_results_equal(a, asyncsnn.reference.infer(case["net"], case["x"], labels=case["labels"], **case["opts"]))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
@pytest.mark.parametrize("dropout", ["off", 0.5])
def test_every_scheduler_kind_and_dropout(scheduler: str, kind: str, dropout: Any) -> None:
    rng = np.random.default_rng(abs(hash((scheduler, kind, str(dropout)))) % 2**32)
    for _ in range(2):
        net = random_grid_network(rng, kind)
        x = random_count_input(rng, net, batch=5, timesteps=5, density=0.5)
        labels = rng.integers(0, net.n_outputs, 5)
        for f in (1, 3):
            kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 11}
            kw["refractory_dropout"] = dropout
            a = at.infer(net, x, labels=labels, **kw)
            b = asyncsnn.reference.infer(net, x, labels=labels, **kw)
            assert_results_equal(a, b)


@pytest.mark.parametrize(
    "stop_kw",
    [
        {"stop": "first_output"},
        {"stop": "first_output", "extra_steps": 2},
        {"stop": "max_steps", "max_steps": 1},
        {"stop": "max_steps", "max_steps": 3},
        {"stop": "drain", "max_steps": 2},
        {"stop": "first_output", "extra_steps": 1, "max_steps": 4},
    ],
)
@pytest.mark.parametrize("scheduler", ["layered", "momentum"])
def test_stop_modes(stop_kw: dict[str, Any], scheduler: str) -> None:
    net = grid_conv_net(1)
    x = random_count_input(np.random.default_rng(2), net, batch=6, timesteps=4, density=0.6)
    kw = {"scheduler": scheduler, "forward_group_size": 2, **stop_kw}
    a = at.infer(net, x, labels=np.arange(6) % 5, **kw)
    b = asyncsnn.reference.infer(net, x, labels=np.arange(6) % 5, **kw)
    assert_results_equal(a, b)


def test_momentum_jitter_and_ties() -> None:
    # Equal weights make many equal v_pre: R5.4 ties go to the smaller id.
    net = asyncsnn.Network.sequential(
        input_shape=(6,),
        layers=[asyncsnn.Dense(np.full((8, 6), 0.5)), asyncsnn.Dense(np.full((3, 8), 0.25))],
        threshold=0.75,
        beta=1.0,
    )
    x = np.ones((3, 4, 6), dtype=np.float32)
    for jitter in (0.0, 0.5):
        for f in (1, 3):
            kw = {"scheduler": "momentum", "forward_group_size": f, "jitter": jitter, "seed": 5}
            assert_results_equal(at.infer(net, x, **kw), asyncsnn.reference.infer(net, x, **kw))


def test_large_conv_batch_is_exact() -> None:
    # Batches above 16 rows take other convolution kernels; grid weights stay exact.
    net = grid_conv_net(3)
    x = random_count_input(np.random.default_rng(4), net, batch=24, timesteps=3, density=0.4)
    for scheduler in ("layered", "random"):
        kw = {"scheduler": scheduler, "forward_group_size": 4}
        assert_results_equal(at.infer(net, x, **kw), asyncsnn.reference.infer(net, x, **kw))


def test_sparse_inputs_sample_ids_and_timesteps() -> None:
    rng = np.random.default_rng(8)
    net = random_grid_network(rng, "skip")
    dense = random_count_input(rng, net, batch=3, timesteps=4, density=0.4)
    sparse = []
    for b in range(3):
        t, i = np.nonzero(dense[b])
        sparse.append(np.stack([t, i, dense[b][t, i]], 1))
    ids = np.array([9, 2**32 - 1, 4])
    kw = {"scheduler": "random", "forward_group_size": 2, "seed": 3, "sample_ids": ids}
    a = at.infer(net, sparse, timesteps=6, **kw)
    b = asyncsnn.reference.infer(net, sparse, timesteps=6, **kw)
    assert_results_equal(a, b)
    assert a.timestep_forward_steps.shape == (3, 6)
    dense6 = np.concatenate([dense, np.zeros((3, 2, dense.shape[2]), np.float32)], 1)
    assert_results_equal(a, at.infer(net, dense6, **kw))


def test_results_do_not_depend_on_batch_split_or_order() -> None:
    rng = np.random.default_rng(12)
    net = random_grid_network(rng, "dense")
    x = random_count_input(rng, net, batch=6, timesteps=5, density=0.5)
    kw = {"scheduler": "random", "forward_group_size": 1, "seed": 99, "refractory_dropout": 0.5}
    whole = at.infer(net, x, **kw)
    for b in range(6):
        one = at.infer(net, x[b : b + 1], sample_ids=[b], **kw)
        for name in ("spikes", "synops", "timestep_forward_steps", "first_output_step"):
            np.testing.assert_array_equal(getattr(one, name)[0], getattr(whole, name)[b])
    perm = np.array([3, 0, 5, 1, 4, 2])
    shuffled = at.infer(net, x[perm], sample_ids=perm, **kw)
    np.testing.assert_array_equal(shuffled.spikes, whole.spikes[perm])


def test_internal_chunking_and_per_population_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(21)
    net = random_grid_network(rng, "skip")
    x = random_count_input(rng, net, batch=7, timesteps=4, density=0.5)
    kw = {"scheduler": "momentum", "forward_group_size": 2, "jitter": 0.25}
    expected = asyncsnn.reference.infer(net, x, **kw)
    monkeypatch.setattr(torch_engine.inference, "_INFER_CHUNK", 3)
    assert_results_equal(at.infer(net, x, **kw), expected)
    monkeypatch.setattr(torch_engine.Delivery, "TABLE_LIMIT", 0)  # no global weight table
    assert_results_equal(at.infer(net, x, **kw), expected)


def test_threshold_ties_are_exact() -> None:
    w = np.full((3, 2), 0.5, dtype=np.float32)
    net = asyncsnn.Network.sequential(
        input_shape=(2,), layers=[asyncsnn.Dense(w), asyncsnn.Dense(np.eye(2, 3) * 2)], threshold=1.0, beta=1.0
    )
    x = np.array([[[1, 1], [2, 0], [1, 0], [0, 2]]], dtype=np.float32)
    a = at.infer(net, x, scheduler="fifo", forward_group_size=1)
    assert_results_equal(a, asyncsnn.reference.infer(net, x, scheduler="fifo", forward_group_size=1))
    np.testing.assert_array_equal(a.spikes[0], [6, 4])


# ------------------------------------------------------------------------- differentiable forward
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
def test_grad_mode_forward_equals_inference(scheduler: str, kind: str) -> None:
    rng = np.random.default_rng(abs(hash((kind, scheduler))) % 2**32)
    net = random_grid_network(rng, kind)
    x = random_count_input(rng, net, batch=4, timesteps=4, density=0.5)
    labels = rng.integers(0, net.n_outputs, 4)
    kw = {"scheduler": scheduler, "forward_group_size": 2, "seed": 4, "refractory_dropout": "network"}
    expected = asyncsnn.reference.infer(net, x, labels=labels, **kw)
    model = at.AsyncSNN.from_network(net)
    out = model(torch.from_numpy(x), labels=torch.from_numpy(labels), **kw)
    assert out.counts.requires_grad == bool(len(model.weights))
    assert_results_equal(out.result(labels), expected)
    np.testing.assert_array_equal(out.counts.detach().numpy(), expected.timestep_output_counts)
    if out.counts.requires_grad:
        out.counts.sum().backward()
        assert all(w.grad is not None for w in model.weights)


def test_module_accepts_sparse_and_numpy_inputs() -> None:
    net = grid_conv_net(5)
    x = random_count_input(np.random.default_rng(6), net, batch=2, timesteps=3)
    model = at.AsyncSNN.from_network(net)
    with torch.no_grad():
        a = model(x, scheduler="fifo", forward_group_size=3)
        sparse = [
            np.stack([*np.nonzero(s.reshape(3, -1)), s.reshape(3, -1)[np.nonzero(s.reshape(3, -1))]], 1) for s in x
        ]
        b = model(sparse, scheduler="fifo", forward_group_size=3)
    assert_results_equal(a.result(), b.result())
    assert_results_equal(a.result(), asyncsnn.reference.infer(net, x, scheduler="fifo", forward_group_size=3))


# ------------------------------------------------------------------------- errors
BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"scheduler": "lifo"}, "scheduler"),
    ({"forward_group_size": 0}, "forward_group_size"),
    ({"forward_group_size": 2.5}, "forward_group_size"),
    ({"stop": "never"}, "stop"),
    ({"stop": "max_steps"}, "max_steps"),
    ({"max_steps": 0}, "max_steps"),
    ({"extra_steps": -1}, "extra_steps"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"jitter": 0.5, "scheduler": "random"}, "jitter"),
    ({"jitter": float("nan")}, "jitter"),
    ({"refractory_dropout": 1.0}, "refractory_dropout"),
    ({"refractory_dropout": "sometimes"}, "refractory_dropout"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_OPTIONS)
def test_invalid_options_raise_the_same_errors(kwargs: dict[str, Any], field: str) -> None:
    net = grid_conv_net()
    x = np.zeros((1, 2, 2, 8, 8), dtype=np.float32)
    errors = []
    for engine in (asyncsnn.reference.infer, at.infer):
        with pytest.raises(ParameterError) as info:
            engine(net, x, **kwargs)
        errors.append((type(info.value), info.value.field, str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][1] == field
    with pytest.raises(ParameterError):
        at.AsyncSNN.from_network(net)(torch.from_numpy(x), **kwargs)


@pytest.mark.parametrize(
    ("inputs", "extra", "field"),
    [
        (np.zeros((1, 2, 3)), {}, "inputs"),
        (np.full((1, 2, 128), -1.0), {}, "inputs"),
        (np.full((1, 2, 128), np.nan), {}, "inputs"),
        (np.zeros((0, 2, 128)), {}, "inputs"),
        (np.zeros((1, 0, 128)), {}, "inputs"),
        (np.zeros((2, 2, 128)), {"labels": [0, 9]}, "labels"),
        (np.zeros((2, 2, 128)), {"labels": [0]}, "labels"),
        (np.zeros((2, 2, 128)), {"sample_ids": [0, -1]}, "sample_ids"),
        (np.zeros((2, 2, 128)), {"timesteps": 3}, "timesteps"),
        ([np.array([[0, 200, 1.0]])], {}, "inputs"),
    ],
)
def test_invalid_inputs_raise_the_same_errors(inputs: Any, extra: dict[str, Any], field: str) -> None:
    net = grid_conv_net()
    errors = []
    for engine in (asyncsnn.reference.infer, at.infer):
        with pytest.raises(InputError) as info:
            engine(net, inputs, **extra)
        errors.append((info.value.field, str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] == field
    if isinstance(inputs, np.ndarray) and not extra:
        with pytest.raises(InputError):
            at.AsyncSNN.from_network(net)(torch.from_numpy(inputs))


def test_other_argument_errors() -> None:
    net = grid_conv_net()
    x = np.zeros((1, 2, 2, 8, 8), dtype=np.float32)
    with pytest.raises(ParameterError):
        at.infer(net, x, threads=0)
    with pytest.raises(ParameterError):
        at.infer("not a network", x)  # type: ignore[arg-type]
    with pytest.raises(ModelError):
        at.AsyncSNN("not a network")  # type: ignore[arg-type]
    assert at.infer(net, x, threads=2).batch_size == 1


def test_backend_argument_is_checked() -> None:
    net = grid_conv_net()
    x = np.zeros((1, 2, 2, 8, 8), dtype=np.float32)
    for backend in ("gpu", "", None):
        with pytest.raises(ParameterError) as info:
            at.infer(net, x, backend=backend)  # type: ignore[arg-type]
        assert info.value.field == "backend"
    # The host backend's numpy views and Rust kernels need CPU tensors.
    with pytest.raises(ParameterError, match="host backend") as info:
        at.infer(net, x, backend="host", device="meta")
    assert info.value.field == "backend"
    frames = torch.zeros(1, 2, 128, device="meta")
    with pytest.raises(ParameterError, match="host backend"):
        at.run(at.Plan(net), torch_engine.network_weights(net), frames, _options(net), backend="host")
    assert at.infer(net, x, backend="torch").batch_size == 1


def _options(net: asyncsnn.Network, **kw: Any) -> Any:
    return prepare_given_options(net, **{"scheduler": "momentum", "forward_group_size": 8, **kw})


def test_options_and_result_metadata() -> None:
    net = grid_conv_net()
    x = random_count_input(np.random.default_rng(0), net, batch=2, timesteps=2)
    res = at.infer(net, x, scheduler="fifo", forward_group_size=3, labels=[0, 1])
    assert res.engine == "torch"
    assert res.options["scheduler"] == "fifo"
    assert res.options["forward_group_size"] == 3
    assert res.accuracy is not None
    opts = prepare_options(
        net,
        scheduler="fifo",
        forward_group_size=3,
        stop="drain",
        extra_steps=0,
        max_steps=None,
        seed=0,
        jitter=0.0,
        refractory_dropout="off",
    )
    frames = torch.from_numpy(x.reshape(2, 2, -1))
    out = at.run(at.Plan(net), torch_engine.network_weights(net), frames, opts, labels=torch.tensor([0, 1]))
    assert_results_equal(out.result([0, 1]), res)


def test_read_only_inputs_are_accepted() -> None:
    net = grid_conv_net()
    x = random_count_input(np.random.default_rng(1), net, batch=2, timesteps=2)
    x.setflags(write=False)
    labels = np.array([0, 1])
    labels.setflags(write=False)
    assert_results_equal(at.infer(net, x, labels=labels), asyncsnn.reference.infer(net, x, labels=labels))
    with torch.no_grad():
        assert at.AsyncSNN.from_network(net)(x, labels=labels).counters["spikes_total"].shape == (2,)


def test_devices_threads_and_overflow() -> None:
    net = asyncsnn.Network.sequential(
        (4,), [asyncsnn.Dense(np.full((3, 4), 0.5)), asyncsnn.Dense(np.ones((2, 3)))], threshold=1.0, beta=0.9
    )
    x = np.ones((2, 3, 4), dtype=np.float32)
    for device in ("tpu", "nonsense:0"):
        with pytest.raises(ParameterError) as info:
            at.infer(net, x, device=device)
        assert info.value.field == "device"
    assert at.infer(net, x, threads=np.int64(2), device="cpu").batch_size == 2
    # Huge finite values are arithmetic like any other (R8.1); a membrane that overflows
    # float32 fails the run with the same error in every engine (R8.3).
    for value in (1e38, 3.4e38):
        big = np.full((2, 3, 4), value, dtype=np.float32)
        for scheduler in SCHEDULERS:
            kw = {"scheduler": scheduler, "forward_group_size": 1}
            if value < 2e38:  # 4 * 0.5 * 1e38 = 2e38 stays finite
                assert_results_equal(at.infer(net, big, **kw), asyncsnn.reference.infer(net, big, **kw))
                continue
            errors = []
            for engine in (at.infer, asyncsnn.reference.infer):
                with pytest.raises(EngineError) as info:
                    engine(net, big, **kw)
                errors.append((info.value.field, info.value.location, str(info.value)))
            assert errors[0] == errors[1]
            assert errors[0][0] == "membrane"


def test_the_run_pauses_the_garbage_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    # The run makes thousands of autograd objects: Python's cyclic collector is off while
    # its forward steps run, and as it was afterwards.
    import gc

    from asyncsnn.torch.engine import driver

    seen: list[bool] = []
    forward_steps = driver._forward_steps

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return forward_steps(*args, **kwargs)

    monkeypatch.setattr(driver, "_forward_steps", recording)
    net = asyncsnn.Network.sequential((3,), [asyncsnn.Dense(np.full((2, 3), 0.5, np.float32))], threshold=1.0)
    x = np.ones((2, 3, 3), np.float32)
    assert gc.isenabled()
    res = at.infer(net, x, scheduler="momentum", forward_group_size=1)
    assert seen == [False, False, False]
    assert gc.isenabled()
    assert_results_equal(res, asyncsnn.reference.infer(net, x, scheduler="momentum", forward_group_size=1))

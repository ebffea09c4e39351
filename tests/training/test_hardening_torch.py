"""Hardening of the torch engine and of the shared input conversion (issue 15).

* Item 1: batches whose samples' activity differs end their timesteps at different
  forward steps; the torch engine sets finished rows aside and merges them back
  (``torch/engine/rows.py::merge_rows``), and must do so whatever step each row stopped at.
* Item 3: float32 overflow of a membrane fails the run with the same EngineError in
  every engine (``docs/semantics.md`` R8.3), naming the first failing sample.
* Item 9: torch tensors of any real dtype and layout are read by one rule
  (``asyncsnn._prepare.tensor_checked``) in every engine, the module, ``train`` and
  ``from_nir``; meta, complex, quantized and nested tensors are typed errors.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import select_samples, spread_samples
from asyncsnn.exceptions import EngineError, InputError, ModelError
from asyncsnn.result import InferenceResult
from asyncsnn.testing import assert_results_equal, grid_weights


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
    """Every engine's ``infer``, the torch engine on each of its backends (host: the CPU's default)."""

    def torch_backend(*args: Any, **kwargs: Any) -> InferenceResult:
        return at.infer(*args, backend="torch", **kwargs)

    return {
        "reference": asyncsnn.reference.infer,
        "rust": asyncsnn.infer,
        "torch": at.infer,
        "torch-backend-torch": torch_backend,
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


# ------------------------------------------------------------------------- item 9: torch tensors as data
ENGINES = {"reference": asyncsnn.reference.infer, "rust": asyncsnn.infer, "torch": at.infer}


def _small_net() -> asyncsnn.Network:
    return asyncsnn.Network.sequential(
        (2, 3), [asyncsnn.Dense(np.full((3, 6), 0.5)), asyncsnn.Dense(np.ones((2, 3)))], threshold=1.0, beta=0.875
    )


def _counts() -> torch.Tensor:
    """Integer counts ``[3, 4, 2, 3]`` (exact in every dtype below), some frames empty."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (3, 4, 2, 3), generator=g).to(torch.float32)
    return x * (torch.rand(3, 4, 2, 3, generator=g) < 0.5)


def _same_values() -> dict[str, Any]:
    """Tensors whose values are exactly those of :func:`_counts` (read as float32)."""
    x = _counts()
    return {
        "bfloat16": x.to(torch.bfloat16),
        "float16": x.to(torch.float16),
        "float64": x.to(torch.float64),
        "float8_e4m3fn": x.to(torch.float8_e4m3fn),
        "int32": x.to(torch.int32),
        "int64": x.to(torch.int64),
        "uint8": x.to(torch.uint8),
        "uint16": x.to(torch.uint16),
        "requires_grad": x.clone().requires_grad_(),
        "non-contiguous": x.transpose(0, 1).contiguous().transpose(0, 1),
        "sparse_coo": x.to_sparse(),
        "sparse_coo_hybrid": x.to_sparse(2),
        "sparse_coo_bfloat16": x.to(torch.bfloat16).to_sparse(),
    }


def _refused() -> dict[str, tuple[Any, str]]:
    """Tensors that are an InputError, with a word of the message."""
    x = _counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized dtypes are deprecated in torch 2.10+
        quantized = torch.quantize_per_tensor(x, 1.0, 0, torch.quint8)
    return {
        "meta": (x.to("meta"), "meta"),
        "complex64": (x.to(torch.complex64), "complex"),
        "complex128 sparse": (x.to(torch.complex128).to_sparse(), "complex"),
        "quantized": (quantized, "quantized"),
    }


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("form", sorted(_same_values()))
def test_tensor_inputs_of_any_real_dtype_and_layout(engine: str, form: str) -> None:
    net, x = _small_net(), _counts()
    expected = asyncsnn.infer(net, x.numpy(), scheduler="fifo", forward_group_size=2)
    assert_results_equal(ENGINES[engine](net, _same_values()[form], scheduler="fifo", forward_group_size=2), expected)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_sparse_csr_and_bool_tensor_inputs(engine: str) -> None:
    net, x = _small_net(), _counts()[:1].reshape(1, 4, 6)  # CSR: a batch of one [1, T, n_in]
    kw: dict[str, Any] = {"scheduler": "momentum", "forward_group_size": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        csr = x.to_sparse_csr()
    assert_results_equal(ENGINES[engine](net, csr, **kw), asyncsnn.infer(net, x.numpy(), **kw))
    bools = _counts() > 0
    assert_results_equal(ENGINES[engine](net, bools, **kw), asyncsnn.infer(net, bools.numpy().astype(np.float32), **kw))


def test_float64_tensors_are_rounded_to_float32_and_checked_for_range() -> None:
    net = _small_net()
    x = torch.full((1, 2, 6), 1 / 3, dtype=torch.float64)
    for infer in ENGINES.values():
        assert_results_equal(infer(net, x), asyncsnn.infer(net, x.to(torch.float32).numpy()))
        with pytest.raises(InputError, match="beyond the float32 range") as info:
            infer(net, torch.full((1, 2, 6), 1e39, dtype=torch.float64))
        assert info.value.field == "inputs"


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("form", sorted(_refused()))
def test_tensors_without_real_values_are_an_input_error(engine: str, form: str) -> None:
    tensor, word = _refused()[form]
    with pytest.raises(InputError, match=word) as info:
        ENGINES[engine](_small_net(), tensor)
    err = info.value
    assert type(err) is InputError
    assert err.field == "inputs"
    dtype = str(tensor.dtype).removeprefix("torch.")
    assert f"{dtype} tensor" in str(err.value)
    assert f"on device {tensor.device}" in str(err.value)
    with pytest.raises(InputError, match=word):
        at.AsyncSNN.from_network(_small_net())(tensor)


def test_nested_tensors_are_an_input_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "nested tensors are in prototype stage"
        nested = torch.nested.nested_tensor([torch.zeros(4, 6), torch.zeros(3, 6)])
    for infer in ENGINES.values():
        with pytest.raises(InputError, match="nested") as info:
            infer(_small_net(), nested)
        assert info.value.field == "inputs"


def test_a_sparse_tensor_too_large_to_densify_is_an_engine_error() -> None:
    empty = torch.zeros((3, 0), dtype=torch.int64)
    huge = torch.sparse_coo_tensor(empty, torch.zeros(0), (2**20, 2**20, 6), check_invariants=True)
    for infer in ENGINES.values():
        with pytest.raises(EngineError, match="cannot densify a sparse tensor") as info:
            infer(_small_net(), huge)
        assert info.value.field == "inputs"
        assert info.value.value == 2**40 * 6 * 4


def test_labels_and_sample_ids_as_tensors_of_other_dtypes() -> None:
    net, x = _small_net(), _counts()
    labels, ids = np.array([0, 1, 1]), np.array([5, 0, 7])
    expected = asyncsnn.infer(net, x.numpy(), labels=labels, sample_ids=ids, scheduler="random")
    for dtype in (torch.bfloat16, torch.int32, torch.uint8):
        id_dtype = torch.int64 if dtype.is_floating_point else dtype  # sample ids must be ints
        kw = {"labels": torch.from_numpy(labels).to(dtype), "sample_ids": torch.from_numpy(ids).to(id_dtype)}
        for infer in ENGINES.values():
            assert_results_equal(infer(net, x, scheduler="random", **kw), expected)
        with torch.no_grad():
            out = at.AsyncSNN.from_network(net)(x.to(dtype), scheduler="random", **kw)
        assert_results_equal(out.result(labels), expected)
    for infer in ENGINES.values():
        with pytest.raises(InputError) as info:
            infer(net, x, labels=torch.from_numpy(labels).to("meta"))
        assert info.value.field == "labels"


@pytest.mark.parametrize("form", ["bfloat16", "float16", "sparse_coo", "int64"])
def test_module_forward_and_train_read_tensors_by_the_same_rule(form: str) -> None:
    net, x = _small_net(), _counts()
    labels = np.array([0, 1, 1])
    given = _same_values()[form]
    model = at.AsyncSNN.from_network(net)
    out = model(given, labels=torch.from_numpy(labels), scheduler="fifo", forward_group_size=2)
    expected = asyncsnn.infer(net, x.numpy(), labels=labels, scheduler="fifo", forward_group_size=2)
    assert_results_equal(out.result(labels), expected)

    def weights(inputs: Any) -> list[np.ndarray]:
        trained, _ = at.train(net, (inputs, labels), epochs=1, batch_size=3, progress=False, scheduler="fifo")
        return [np.asarray(p.layer.weight) for p in trained.projections]

    for a, b in zip(weights(x), weights(given)):
        np.testing.assert_array_equal(a, b)


def test_train_refuses_meta_and_complex_tensors() -> None:
    labels = np.array([0, 1, 1])
    for tensor, word in (_refused()["meta"], _refused()["complex64"]):
        with pytest.raises(InputError, match=word) as info:
            at.train(_small_net(), (tensor, labels), epochs=1, batch_size=3, progress=False)
        assert info.value.field == "inputs"


def test_from_nir_reads_tensor_parameters_by_the_same_rule() -> None:
    nir = pytest.importorskip("nir")
    from asyncsnn.nir import from_nir

    def graph(weight: Any) -> Any:
        ones = np.ones(2)
        nodes = {
            "input": nir.Input(input_type=np.array([3])),
            "fc": nir.Linear(weight=weight),
            "lif": nir.LIF(tau=8 * ones, r=8 * ones, v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones),
            "output": nir.Output(output_type=np.array([2])),
        }
        edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)

    w = torch.tensor([[0.5, -1.25, 2.0], [0.0, 3.0, -0.75]])
    expected = from_nir(graph(w.numpy())).projections[0].layer.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        csr = w.to_sparse_csr()
    for given in (w.to(torch.bfloat16), w.to(torch.float64), w.to_sparse(), csr, w.requires_grad_()):
        np.testing.assert_array_equal(from_nir(graph(given)).projections[0].layer.weight, expected)
    for bad, word in ((w.detach().to("meta"), "meta"), (w.detach().to(torch.complex64), "complex")):
        with pytest.raises(ModelError, match=word) as info:
            from_nir(graph(bad))
        assert info.value.field == "weight"
        assert info.value.location is not None
        assert "fc" in info.value.location


def test_train_reads_label_tensors_by_the_same_rule() -> None:
    net, x = _small_net(), _counts()
    labels = np.array([0, 1, 1])

    def weights(lab: Any) -> list[np.ndarray]:
        trained, _ = at.train(net, (x, lab), epochs=1, batch_size=3, progress=False, scheduler="fifo")
        return [np.asarray(p.layer.weight) for p in trained.projections]

    expected = weights(labels)
    for dtype in (torch.bfloat16, torch.int32, torch.float64):
        for a, b in zip(expected, weights(torch.from_numpy(labels).to(dtype))):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="meta") as info:
        weights(torch.from_numpy(labels).to("meta"))
    assert info.value.field == "labels"

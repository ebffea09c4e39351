"""The public API of ``asyncsnn.infer``: shapes, options, determinism, typed errors."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn._engine
from asyncsnn.exceptions import AsyncSNNError, InputError, ModelError, ParameterError
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network


def small_net(seed: int = 0) -> asyncsnn.Network:
    rng = np.random.default_rng(seed)
    return asyncsnn.Network.sequential(
        input_shape=(2, 6, 6),
        layers=[
            asyncsnn.Conv2d(grid_weights(rng, (4, 2, 3, 3), 0.5, 0.2), stride=1, padding=1),
            asyncsnn.AvgPool2d(2),
            asyncsnn.Dense(grid_weights(rng, (5, 36), 0.5, 0.2)),
        ],
        threshold=0.75,
        beta=0.875,
    )


def test_versions_agree() -> None:
    assert asyncsnn.SPEC_VERSION == asyncsnn._engine.SPEC_VERSION == 2
    assert asyncsnn.__version__ == asyncsnn._engine.__version__
    assert asyncsnn.__version__.count(".") == 2


def test_rust_hash_matches_python_hash_and_spec_vectors() -> None:
    from asyncsnn.rng import hash32

    vectors = [
        ((0, 0, 0, 0, 0, 0), 3433141362),
        ((0, 0, 0, 0, 0, 1), 3422389651),
        ((1, 0, 0, 0, 0, 0), 2498379101),
        ((42, 3, 7, 2, 100, 0), 643818531),
        ((2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2), 1525704551),
        ((123456789012345, 17, 5, 11, 65, 1), 3783100989),
    ]
    for args, expected in vectors:
        assert asyncsnn._engine.hash32(*args) == expected
        assert hash32(*args) == expected


def test_result_shapes_and_dtypes() -> None:
    net = small_net()
    x = random_count_input(np.random.default_rng(1), net, batch=5, timesteps=7)
    res = asyncsnn.infer(net, x, labels=[0, 1, 2, 3, 4])
    assert res.predictions.shape == (5,)
    assert res.output_counts.shape == (5, 5)
    assert res.timestep_output_counts.shape == (5, 7, 5)
    assert res.spikes.shape == (5, 3)
    assert res.synops_per_projection.shape == (5, 3)
    assert res.timestep_forward_steps.shape == (5, 7)
    for name in ("first_output_step", "first_correct_synops"):
        assert getattr(res, name).shape == (5, 7)
    assert all(getattr(res, n).dtype == np.int64 for n in ("predictions", "synops", "spikes"))
    np.testing.assert_array_equal(res.output_counts, res.timestep_output_counts.sum(axis=1))
    np.testing.assert_array_equal(res.spikes_total, res.spikes.sum(axis=1))
    np.testing.assert_array_equal(res.synops, res.synops_per_projection.sum(axis=1))
    np.testing.assert_array_equal(res.forward_steps, res.timestep_forward_steps.sum(axis=1))
    assert (res.timestep_forward_steps >= 1).all()
    assert res.accuracy is not None
    assert 0.0 <= res.accuracy <= 1.0
    assert "accuracy" in res.summary()
    assert "InferenceResult" in repr(res)
    assert res.input_events.tolist() == [int(np.count_nonzero(s)) for s in x]


def test_results_do_not_depend_on_thread_count_or_batch_split() -> None:
    rng = np.random.default_rng(5)
    net = random_grid_network(rng, "skip")
    x = random_count_input(rng, net, batch=40, timesteps=5)
    kwargs: dict[str, Any] = {"scheduler": "random", "forward_group_size": 2, "seed": 11}
    one = asyncsnn.infer(net, x, threads=1, **kwargs)
    for threads in (2, 3, 8):
        assert_results_equal(one, asyncsnn.infer(net, x, threads=threads, **kwargs))
    # Batch split and order: explicit sample ids make every sample independent of its position.
    ids = np.arange(40)
    perm = np.random.default_rng(0).permutation(40)
    full = asyncsnn.infer(net, x, sample_ids=ids, **kwargs)
    shuffled = asyncsnn.infer(net, x[perm], sample_ids=ids[perm], **kwargs)
    np.testing.assert_array_equal(full.output_counts[perm], shuffled.output_counts)
    np.testing.assert_array_equal(full.synops[perm], shuffled.synops)
    half = asyncsnn.infer(net, x[20:], sample_ids=ids[20:], **kwargs)
    np.testing.assert_array_equal(full.forward_steps[20:], half.forward_steps)


def test_sample_ids_change_random_draws() -> None:
    rng = np.random.default_rng(8)
    net = asyncsnn.Network.sequential(
        input_shape=(20,),
        layers=[asyncsnn.Dense(grid_weights(rng, (m, n), 0.3, 0.25)) for n, m in ((20, 30), (30, 30), (30, 5))],
        threshold=1.0,
        beta=0.5,
    )
    x = np.repeat((rng.random((1, 6, 20)) < 0.8).astype(np.float32), 16, axis=0)
    kwargs: dict[str, Any] = {"scheduler": "random", "forward_group_size": 1, "stop": "first_output"}
    res = asyncsnn.infer(net, x, **kwargs)
    # Identical samples at different positions see different random draws...
    assert (
        len({tuple(r) for r in [*res.timestep_output_counts.reshape(16, -1).tolist(), res.dropped_spikes.tolist()]}) > 2
    )
    assert len(set(res.dropped_spikes.tolist())) > 1
    # ...and the same draws when they share a sample id.
    same = asyncsnn.infer(net, x, sample_ids=np.zeros(16, dtype=np.int64), **kwargs)
    assert len(set(same.dropped_spikes.tolist())) == 1
    assert same.dropped_spikes[0] == res.dropped_spikes[0]


def test_sparse_inputs_equal_dense_inputs() -> None:
    rng = np.random.default_rng(2)
    net = small_net(2)
    x = random_count_input(rng, net, batch=3, timesteps=4)
    flat = x.reshape(3, 4, -1)
    sparse = [
        np.array([(t, i, flat[b, t, i]) for t, i in zip(*np.nonzero(flat[b]), strict=False)]).reshape(-1, 3)
        for b in range(3)
    ]
    dense_res = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=3)
    sparse_res = asyncsnn.infer(net, sparse, scheduler="fifo", forward_group_size=3, timesteps=4)
    assert_results_equal(dense_res, sparse_res)


def test_torch_tensor_and_odd_arrays_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    net = small_net(4)
    x = random_count_input(rng, net, batch=2, timesteps=3)
    base = asyncsnn.infer(net, x)
    assert_results_equal(base, asyncsnn.infer(net, torch.from_numpy(x)))
    ro = x.copy()
    ro.setflags(write=False)
    assert_results_equal(base, asyncsnn.infer(net, ro))
    big = np.zeros((2, 3, 2, 6, 12), dtype=np.float64)
    big[..., ::2] = x
    assert_results_equal(base, asyncsnn.infer(net, big[..., ::2]))  # non-contiguous, float64
    assert_results_equal(base, asyncsnn.infer(net, x.reshape(2, 3, -1)))  # flat input neurons


def test_concurrent_calls_from_python_threads_match_sequential() -> None:
    rng = np.random.default_rng(9)
    net = random_grid_network(rng, "conv")
    xs = [random_count_input(rng, net, batch=8, timesteps=4) for _ in range(6)]
    expected = [asyncsnn.infer(net, x, scheduler="momentum", forward_group_size=2) for x in xs]
    got: list[Any] = [None] * len(xs)

    def work(i: int) -> None:
        got[i] = asyncsnn.infer(net, xs[i], scheduler="momentum", forward_group_size=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got, strict=False):
        assert_results_equal(e, g)


def test_stop_modes_reduce_work_and_count_dropped_spikes() -> None:
    rng = np.random.default_rng(12)
    w1 = np.full((40, 10), 0.25, dtype=np.float32)
    w2 = np.full((40, 40), 0.0625, dtype=np.float32)
    w3 = np.full((3, 40), 0.125, dtype=np.float32)
    net = asyncsnn.Network.sequential(
        input_shape=(10,), layers=[asyncsnn.Dense(w) for w in (w1, w2, w3)], threshold=1.0, beta=0.5
    )
    x = (rng.random((4, 5, 10)) < 0.8).astype(np.float32) * 2
    drain = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=2)
    early = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=2, stop="first_output")
    capped = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=2, stop="max_steps", max_steps=3)
    assert (drain.dropped_spikes == 0).all()
    assert (early.forward_steps <= drain.forward_steps).all()
    assert early.dropped_spikes.sum() > 0
    assert (capped.timestep_forward_steps <= 3).all()
    assert capped.dropped_spikes.sum() > 0


# ----------------------------------------------------------------------------- errors
BAD_OPTIONS = [
    ({"scheduler": "lifo"}, ParameterError, "scheduler"),
    ({"forward_group_size": 0}, ParameterError, "forward_group_size"),
    ({"forward_group_size": 2.5}, ParameterError, "forward_group_size"),
    ({"stop": "never"}, ParameterError, "stop"),
    ({"stop": "max_steps"}, ParameterError, "max_steps"),
    ({"max_steps": 0}, ParameterError, "max_steps"),
    ({"extra_steps": -1}, ParameterError, "extra_steps"),
    ({"seed": -1}, ParameterError, "seed"),
    ({"seed": 2**64}, ParameterError, "seed"),
    ({"jitter": float("nan")}, ParameterError, "jitter"),
    ({"jitter": 0.5, "scheduler": "fifo"}, ParameterError, "jitter"),
    ({"refractory_dropout": 1.0}, ParameterError, "refractory_dropout"),
    ({"refractory_dropout": "on"}, ParameterError, "refractory_dropout"),
    ({"threads": 0}, ParameterError, "threads"),
    ({"labels": [0, 9]}, InputError, "labels"),
    ({"labels": [0]}, InputError, "labels"),
    ({"labels": [0.5, 1]}, InputError, "labels"),
    ({"sample_ids": [-1, 0]}, InputError, "sample_ids"),
]


@pytest.mark.parametrize(("kwargs", "cls", "field"), BAD_OPTIONS)
def test_bad_options_raise_typed_errors_naming_the_field(
    engine: Any, kwargs: dict[str, Any], cls: type, field: str
) -> None:
    net = small_net()
    x = np.zeros((2, 3, 2, 6, 6), dtype=np.float32)
    with pytest.raises(cls) as info:
        engine(net, x, **kwargs)
    assert info.value.field == field
    assert field in str(info.value)


BAD_INPUTS = [
    (np.zeros((2, 3, 2, 6, 5), dtype=np.float32), "shape"),
    (np.zeros((0, 3, 2, 6, 6), dtype=np.float32), "empty"),
    (np.zeros((2, 0, 2, 6, 6), dtype=np.float32), "T must be"),
    (np.full((1, 2, 72), np.nan, dtype=np.float32), "finite"),
    (np.full((1, 2, 72), np.inf, dtype=np.float32), "finite"),
    (np.full((1, 2, 72), -1.0, dtype=np.float32), ">= 0"),
    (np.zeros((1, 2, 72), dtype=np.complex64), "real numeric"),
    (np.array([["a"]]), "shape"),
    ([], "empty"),
    ([np.array([[0, 72, 1.0]])], "index"),
    ([np.array([[0.5, 1, 1.0]])], "integers"),
    ([np.array([[0, 1, -2.0]])], ">= 0"),
    ([np.array([0, 1, 2.0])], "n_events, 3"),
    ([np.array([[0, 1, 3e38], [0, 1, 3e38]])], "sum"),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_INPUTS)
def test_bad_inputs_raise_input_error(engine: Any, inputs: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        engine(small_net(), inputs)
    assert info.value.field == "inputs"


BAD_NETWORKS = [
    (lambda: asyncsnn.Dense(np.ones(3)), "weight"),
    (lambda: asyncsnn.Dense(np.array([[np.inf]])), "weight"),
    (lambda: asyncsnn.Conv2d(np.ones((1, 1, 3, 3)), stride=0), "stride"),
    (lambda: asyncsnn.Conv2d(np.ones((1, 1, 3, 3)), padding=-1), "padding"),
    (lambda: asyncsnn.AvgPool2d(0), "kernel_size"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], beta=1.5), "beta"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], beta=float("nan")), "beta"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], threshold=0.0), "threshold"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], threshold=np.ones(3)), "threshold"),
    (
        lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], refractory_dropout=1.0),
        "refractory_dropout",
    ),
    (lambda: asyncsnn.Network.sequential((5,), [asyncsnn.Dense(np.ones((2, 4)))]), "weight"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Conv2d(np.ones((1, 1, 3, 3)))]), "source shape"),
    (lambda: asyncsnn.Network.sequential((1, 2, 2), [asyncsnn.Conv2d(np.ones((1, 1, 3, 3)))]), "weight"),
    (lambda: asyncsnn.Network.sequential((4,), []), "layers"),
    (lambda: asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))], threshold=[1.0, 2.0]), "threshold"),
    (lambda: asyncsnn.Network.sequential((0,), [asyncsnn.Dense(np.ones((2, 4)))]), "input_shape"),
    (
        lambda: asyncsnn.Network.sequential(
            (4,),
            [asyncsnn.Dense(np.ones((3, 4))), asyncsnn.Dense(np.ones((2, 3)))],
            skips=[(2, 1, asyncsnn.Dense(np.ones((3, 2))))],
        ),
        "source/target",
    ),
]

_TWO_LAYERS = [asyncsnn.Dense(np.ones((3, 4))), asyncsnn.Dense(np.ones((2, 3)))]

#: ``Network.sequential(recurrent=...)`` mistakes (R1.2) and the field each error names.
BAD_RECURRENT: list[tuple[Any, str]] = [
    ([(1, 2, asyncsnn.Dense(np.ones((2, 3))))], "source/target"),  # forward: belongs in skips=
    ([(0, 0, asyncsnn.Dense(np.ones((4, 4))))], "source/target"),  # the input is never a target
    ([(1, 0, asyncsnn.Dense(np.ones((4, 3))))], "source/target"),
    ([(3, 1, asyncsnn.Dense(np.ones((3, 2))))], "source/target"),  # no population 3
    ([(2, 1, asyncsnn.Dense(np.ones((3, 3))))], "weight"),  # population 2 has 2 neurons
    ([(1, 1, asyncsnn.Conv2d(np.ones((1, 1, 3, 3))))], "source shape"),
    ([(1, 1)], "recurrent"),
    ([[1, 1, asyncsnn.Dense(np.ones((3, 3))), 0]], "recurrent"),
    (5, "recurrent"),
    ([(1.0, 1, asyncsnn.Dense(np.ones((3, 3))))], "source/target"),
    ([(1, 1, np.ones((3, 3)))], "projections"),  # not a layer
]


@pytest.mark.parametrize(("recurrent", "field"), BAD_RECURRENT)
def test_sequential_refuses_bad_recurrent_projections(recurrent: Any, field: str) -> None:
    with pytest.raises(ModelError) as info:
        asyncsnn.Network.sequential((4,), _TWO_LAYERS, recurrent=recurrent)
    assert info.value.field == field, str(info.value)


def test_sequential_builds_recurrent_projections_after_layers_and_skips() -> None:
    """R1.2: ``recurrent=`` projections come last, in order; their targets settle (R1.6)."""
    self_w, back_w = np.full((3, 3), 0.25), np.full((3, 2), -0.5)
    net = asyncsnn.Network.sequential(
        (4,),
        _TWO_LAYERS,
        skips=[(0, 2, asyncsnn.Dense(np.ones((2, 4))))],
        recurrent=[(1, 1, asyncsnn.Dense(self_w)), (2, 1, asyncsnn.Dense(back_w))],
    )
    assert [(p.source, p.target, p.recurrent) for p in net.projections] == [
        (0, 1, False),
        (1, 2, False),
        (0, 2, False),
        (1, 1, True),
        (2, 1, True),
    ]
    np.testing.assert_array_equal(net.projections[4].layer.weight, back_w)
    assert net.recurrent
    assert net.settling == (True, False)  # population 1 is a recurrent target
    assert [p.settling for p in net.populations] == [False, False]  # no bias, reset "zero"
    assert net.spec_version == 2
    plain = asyncsnn.Network.sequential((4,), _TWO_LAYERS)
    assert not plain.recurrent
    assert plain.settling == (False, False)
    assert plain.spec_version == 1
    # A recurrent target refuses refractory dropout (R4.6); another population keeps it.
    net = asyncsnn.Network.sequential(
        (4,), _TWO_LAYERS, refractory_dropout=[0.0, 0.5], recurrent=[(1, 1, asyncsnn.Dense(self_w))]
    )
    assert net.populations[1].refractory_dropout == 0.5
    with pytest.raises(ModelError, match="recurrent") as info:
        asyncsnn.Network.sequential(
            (4,), _TWO_LAYERS, refractory_dropout=[0.0, 0.5], recurrent=[(2, 2, asyncsnn.Dense(np.ones((2, 2))))]
        )
    assert info.value.field == "refractory_dropout"
    assert info.value.location == "population 2"
    with pytest.raises(ParameterError, match="population 1"):
        asyncsnn.reference.infer(net, np.ones((1, 2, 4)), refractory_dropout=0.5)
    res = asyncsnn.reference.infer(net, np.ones((1, 2, 4)), refractory_dropout="network")
    assert res.spikes[0, 1] > 0


@pytest.mark.parametrize(("build", "field"), BAD_NETWORKS)
def test_invalid_networks_raise_model_error_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ModelError) as info:
        build()
    assert info.value.field == field
    assert isinstance(info.value, AsyncSNNError)
    assert isinstance(info.value, ValueError)


def test_rust_engine_validates_networks_itself() -> None:
    """The engine never trusts its caller: a bad flat description is a ModelError, not a panic."""
    th = np.ones(2, dtype=np.float32)
    with pytest.raises(ModelError, match="threshold"):
        asyncsnn._engine.Network(4, [(2, -th, th, 0.0)], [("dense", 0, 1, np.ones(8, dtype=np.float32), [])])
    with pytest.raises(ModelError):
        asyncsnn._engine.Network(4, [(2, th, th, 0.0)], [("dense", 0, 1, np.ones(7, dtype=np.float32), [])])
    # A projection from population 1 to itself is recurrent (R1.2); population 2 does not exist.
    asyncsnn._engine.Network(4, [(2, th, th, 0.0)], [("dense", 1, 1, np.ones(4, dtype=np.float32), [])])
    with pytest.raises(ModelError, match="source"):
        asyncsnn._engine.Network(4, [(2, th, th, 0.0)], [("dense", 2, 1, np.ones(4, dtype=np.float32), [])])
    with pytest.raises(ModelError):
        asyncsnn._engine.Network(4, [(2, th, th, 0.0)], [("conv3d", 0, 1, np.ones(8, dtype=np.float32), [])])


def test_cli_help_and_demo() -> None:
    out = subprocess.run([sys.executable, "-m", "asyncsnn", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "asyncsnn", "demo", "--samples", "8", "--timesteps", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "momentum" in out.stdout
    assert "first_output" in out.stdout


def test_recurrent_projection_into_the_input_is_named_and_summary_marks_recurrence() -> None:
    with pytest.raises(ModelError, match=r"the input \(population 0\) is never a target") as info:
        asyncsnn.Network.sequential(
            (4,), [asyncsnn.Dense(np.ones((3, 4)))], recurrent=[(1, 0, asyncsnn.Dense(np.ones((4, 3))))]
        )
    assert info.value.field == "source/target"
    net = asyncsnn.Network.sequential(
        (4,),
        [asyncsnn.Dense(np.ones((3, 4))), asyncsnn.Dense(np.ones((2, 3)))],
        recurrent=[(1, 1, asyncsnn.Dense(np.eye(3)))],
    )
    lines = net.summary().splitlines()
    assert lines[-1].endswith("(recurrent, R4.9)")
    assert not any(line.endswith("(recurrent, R4.9)") for line in lines[:-1])

"""Fuzzing the Python API: any input gives a typed error or a result whose counters are consistent.

Hypothesis throws random shapes, dtypes (bool, ints, float16/32/64, complex, object),
values (NaN, +-inf, huge, subnormal, -0.0, negative) and options (valid and junk) at
the network constructors, the three ``infer`` engines, sparse inputs and
``asyncsnn.load``. Every call must either raise an ``AsyncSNNError`` or return an
``InferenceResult`` whose counters obey the invariants of ``docs/semantics.md``
section 7. Runs are derandomised so CI sees the same examples every time.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import asyncsnn
import asyncsnn.reference
from asyncsnn.exceptions import AsyncSNNError
from asyncsnn.network import Conv2d, Dense, Network, Projection
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.testing import assert_results_equal, random_grid_network

# ASYNCSNN_FUZZ_EXAMPLES=5000 ASYNCSNN_FUZZ_RANDOM=1 runs a longer campaign with fresh examples.
EXAMPLES = int(os.environ.get("ASYNCSNN_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ASYNCSNN_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    2.0,
    0.5,
    1e-45,
    5e-324,
    1e-38,
    3.4e38,
    3.5e38,
    1e300,
    -1.0,
    -1e-45,
    math.inf,
    -math.inf,
    math.nan,
]


def values() -> st.SearchStrategy[float]:
    """Floats biased toward the awkward ones."""
    return st.one_of(
        st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 5).map(float)
    )


CLEAN = [0.0, -0.0, 1.0, 2.0, 3.0, 0.5, 0.25, 1e-45, 1e-38, 7.0, 1e6, 3.4e38]


@st.composite
def arrays(draw: Any, shape: tuple[int, ...], clean: bool = False) -> np.ndarray:
    """An array of ``shape`` of any dtype (object arrays included) with awkward values.

    ``clean``: valid input values (finite, >= 0) of a real dtype, with at most one bad value.
    """
    if clean:
        dtype = np.dtype(
            draw(st.sampled_from([np.bool_, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64]))
        )
        raw = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from(CLEAN)))
        if raw.size and draw(st.integers(0, 9)) == 0:
            raw.flat[draw(st.integers(0, raw.size - 1))] = draw(st.sampled_from([-1.0, math.nan, math.inf, 1e39]))
        with np.errstate(all="ignore"):
            return raw.astype(dtype) if dtype.kind == "f" else np.clip(np.nan_to_num(raw), 0, 100).astype(dtype)
    kind = draw(st.sampled_from(["numeric", "numeric", "numeric", "object"]))
    if kind == "object":
        return np.array(
            draw(
                st.lists(
                    st.one_of(st.none(), st.text(max_size=2), values()),
                    min_size=math.prod(shape),
                    max_size=math.prod(shape),
                )
            ),
            dtype=object,
        ).reshape(shape)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "b":
        return draw(hnp.arrays(dtype, shape))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        elements = st.one_of(
            st.integers(max(info.min, -3), min(info.max, 5)), st.sampled_from([int(info.min), int(info.max)])
        )
        return draw(hnp.arrays(dtype, shape, elements=elements))
    raw = draw(hnp.arrays(np.float64, shape, elements=values()))
    with np.errstate(all="ignore"):
        return raw.astype(dtype)


@st.composite
def networks(draw: Any) -> Network:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    net = random_grid_network(rng, draw(st.sampled_from(["dense", "conv", "skip"])))
    if draw(st.booleans()):  # off-grid float weights with extreme magnitudes
        scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]))
        projections = []
        for proj in net.projections:  # (a Network is immutable: new layers, a new network)
            layer = proj.layer
            if isinstance(layer, Dense):
                layer = Dense(rng.normal(0.1, 1.0, layer.weight.shape) * scale)
            elif isinstance(layer, Conv2d):
                w = rng.normal(0.1, 1.0, layer.weight.shape) * scale
                layer = Conv2d(w, stride=layer.stride, padding=layer.padding)
            projections.append(Projection(proj.source, proj.target, layer))
        net = Network(net.input_shape, net.populations, projections)
    return net


def on_grid(net: Network) -> bool:
    """Grid weights (k / 256): engines then agree bit for bit on small integer inputs (R8.2)."""
    return all(
        np.array_equal(p.layer.weight * 256, np.round(p.layer.weight * 256))
        for p in net.projections
        if hasattr(p.layer, "weight")
    )


def check_invariants(net: Network, res: InferenceResult, timesteps: int, *, dropout: bool, labelled: bool) -> None:
    """Counter invariants of docs/semantics.md section 7."""
    b, n_out = res.batch_size, net.n_outputs
    for name in COUNTER_FIELDS:
        assert getattr(res, name).dtype == np.int64, name
    assert res.timestep_forward_steps.shape == (b, timesteps)
    assert (res.timestep_forward_steps >= 1).all()
    np.testing.assert_array_equal(res.forward_steps, res.timestep_forward_steps.sum(1))
    assert (res.forward_steps >= timesteps).all()
    np.testing.assert_array_equal(res.output_counts, res.timestep_output_counts.sum(1))
    assert (res.timestep_output_counts >= 0).all()
    np.testing.assert_array_equal(res.spikes_total, res.spikes.sum(1))
    assert (res.spikes >= 0).all()
    if not dropout:
        assert (res.spikes <= np.array(net.population_sizes[1:]) * timesteps).all()
    np.testing.assert_array_equal(res.spikes[:, -1], res.output_counts.sum(1))
    np.testing.assert_array_equal(res.synops, res.synops_per_projection.sum(1))
    assert (res.synops_per_projection >= 0).all()
    assert (res.input_events >= 0).all()
    assert (res.input_events <= net.input_size * timesteps).all()
    assert (res.dropped_spikes >= 0).all()
    assert ((res.queue_peak >= 0) & (res.queue_peak <= net.n_neurons)).all()
    assert ((res.predictions >= -1) & (res.predictions < n_out)).all()
    for i in range(b):  # R7.1: argmax, ties to the smallest index, -1 without output spikes
        counts = res.output_counts[i]
        assert res.predictions[i] == (int(np.argmax(counts)) if counts.max() > 0 else -1)
    has = res.first_output_step >= 0
    assert (res.first_output_step < res.timestep_forward_steps).all()
    assert (has == (res.timestep_output_counts.sum(2) > 0)).all()
    assert (has == (res.first_output_class >= 0)).all()
    assert (res.first_output_class < n_out).all()
    assert (np.where(has, res.first_output_spikes, 0) <= res.spikes_total[:, None]).all()
    assert (np.where(has, res.first_output_synops, 0) <= res.synops[:, None]).all()
    if not labelled:
        for name in ("first_correct_step", "first_correct_spikes", "first_correct_synops"):
            assert (getattr(res, name) == -1).all()


def attempt(call: Callable[[], Any]) -> Any:
    """``call()``, or the AsyncSNNError it raised; anything else (or a warning) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may leak out of validation
        try:
            return call()
        except AsyncSNNError as exc:
            error = exc
    assert error.field, error  # every error names its field...
    assert error.field in str(error) or error.location, error  # ...and says what is wrong
    return error


def run_checked(infer: Any, net: Network, inputs: Any, **kwargs: Any) -> InferenceResult | None:
    """Run ``infer``; a typed error gives None, anything else fails the test."""
    out = attempt(lambda: infer(net, inputs, **kwargs))
    event(f"error {type(out).__name__}: {out.field}" if isinstance(out, AsyncSNNError) else "valid result")
    return None if isinstance(out, AsyncSNNError) else out


# ------------------------------------------------------------------ dense inputs
@FUZZ
@given(net=networks(), data=st.data())
def test_dense_inputs_of_any_dtype_shape_and_value(net: Network, data: st.DataObject) -> None:
    clean = data.draw(st.booleans(), label="clean")
    batch = data.draw(st.integers(1 if clean else 0, 3), label="batch")
    timesteps = data.draw(st.integers(1 if clean else 0, 4), label="T")
    shapes = [net.input_shape, (net.input_size,)]
    if not clean:
        shapes += [(net.input_size + 1,), net.input_shape[:-1], ()]
    tail = data.draw(st.sampled_from(shapes), label="tail")
    x = data.draw(arrays((batch, timesteps, *tail), clean=clean), label="x")
    res = run_checked(asyncsnn.infer, net, x, scheduler="fifo", forward_group_size=2)
    valid_shape = batch > 0 and timesteps > 0 and tail in (net.input_shape, (net.input_size,))
    if res is None:
        return
    assert valid_shape
    with np.errstate(all="ignore"):
        x32 = np.asarray(x, dtype=np.float32)
    assert np.isfinite(x32).all()
    assert (x32 >= 0).all()
    check_invariants(net, res, timesteps, dropout=False, labelled=False)
    np.testing.assert_array_equal(res.input_events, np.count_nonzero(x32.reshape(batch, -1), axis=1))
    ref = run_checked(asyncsnn.reference.infer, net, x, scheduler="fifo", forward_group_size=2)
    assert ref is not None
    check_invariants(net, ref, timesteps, dropout=False, labelled=False)
    if on_grid(net) and x32.max(initial=0) <= 16 and np.all(x32 == np.round(x32)):
        assert_results_equal(res, ref)


# ------------------------------------------------------------------ sparse inputs
@st.composite
def sparse_samples(draw: Any, n_in: int) -> Any:
    kind = draw(st.sampled_from(["events"] * 9 + ["junk"]))
    if kind == "junk":
        return draw(
            st.one_of(
                st.none(), st.text(max_size=3), arrays((draw(st.integers(0, 3)),)), arrays((2, 2)), arrays((1, 3, 1))
            )
        )
    n = draw(st.integers(0, 6))
    if draw(st.booleans()):  # valid events (repeated (t, i) included)
        t = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
        i = draw(st.lists(st.integers(0, n_in - 1), min_size=n, max_size=n))
        v = draw(st.lists(st.sampled_from(CLEAN), min_size=n, max_size=n))
        return (
            np.array([t, i, v], dtype=np.float64)
            .T.reshape(n, 3)
            .astype(draw(st.sampled_from([np.float64, np.float32])))
        )
    t = draw(
        st.lists(st.one_of(st.integers(0, 6), st.sampled_from([-1, 2**32 - 2, 2**32, 2**63])), min_size=n, max_size=n)
    )
    i = draw(
        st.lists(st.one_of(st.integers(0, n_in), st.sampled_from([-1, 2**32, n_in + 10**6])), min_size=n, max_size=n)
    )
    v = draw(st.lists(values(), min_size=n, max_size=n))
    cols = [np.array(t, dtype=np.float64), np.array(i, dtype=np.float64), np.array(v, dtype=np.float64)]
    if draw(st.booleans()) and n:
        cols[0] = cols[0] + draw(st.sampled_from([0.5, math.nan, math.inf]))
    return np.stack(cols, axis=1) if n else np.zeros((0, 3))


@FUZZ
@given(net=networks(), data=st.data())
def test_sparse_inputs_with_any_times_indices_and_values(net: Network, data: st.DataObject) -> None:
    batch = data.draw(st.integers(0, 3), label="batch")
    samples = [data.draw(sparse_samples(net.input_size), label=f"sample {b}") for b in range(batch)]
    timesteps = data.draw(
        st.one_of(st.none(), st.none(), st.integers(-1, 8), st.sampled_from([2**32, 2**40, 1.5, "3"])), label="T"
    )
    res = run_checked(asyncsnn.infer, net, samples, timesteps=timesteps, scheduler="random", forward_group_size=1)
    if res is None:
        return
    t_max = max((int(s[:, 0].max()) + 1 for s in samples if len(s)), default=1)
    big_t = t_max if timesteps is None else int(timesteps)  # type: ignore[arg-type]
    check_invariants(net, res, big_t, dropout=False, labelled=False)
    if big_t <= 64:  # the dense form gives the same result (R2.2)
        dense = np.zeros((batch, big_t, net.input_size), dtype=np.float32)
        for b, s in enumerate(samples):
            for tt, ii, vv in s:
                dense[b, int(tt), int(ii)] = np.float32(dense[b, int(tt), int(ii)] + np.float32(vv))
        assert_results_equal(res, asyncsnn.infer(net, dense, scheduler="random", forward_group_size=1))


# ------------------------------------------------------------------ options, labels, ids
def junk() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.sampled_from([0, 1, 2, 8, -1, 2**32 - 1, 2**32, 2**64 - 1, 2**64]),
        values(),
        st.text(max_size=4),
        st.sampled_from(
            ["layered", "fifo", "random", "momentum", "drain", "first_output", "max_steps", "off", "network"]
        ),
        st.just(np.int64(3)),
        st.just(np.float32(0.5)),
        st.lists(st.integers(0, 3), max_size=3),
    )


@FUZZ
@given(net=networks(), data=st.data())
def test_options_labels_and_ids_of_any_kind(net: Network, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.random((2, 3, *net.input_shape)) < 0.4).astype(np.float32)
    names = [
        "scheduler",
        "forward_group_size",
        "stop",
        "extra_steps",
        "max_steps",
        "seed",
        "jitter",
        "refractory_dropout",
        "threads",
    ]
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=4), label="options")
    opts = {name: data.draw(junk(), label=name) for name in chosen}
    labels = data.draw(
        st.one_of(
            st.none(), arrays((2,)), arrays((1,)), st.lists(st.integers(-1, net.n_outputs), min_size=2, max_size=2)
        ),
        label="labels",
    )
    ids = data.draw(
        st.one_of(st.none(), arrays((2,)), st.lists(st.integers(-1, 2**33), min_size=2, max_size=2)), label="ids"
    )
    a, b = (
        attempt(lambda infer=infer: infer(net, x, labels=labels, sample_ids=ids, **opts))  # type: ignore[misc]
        for infer in (asyncsnn.infer, asyncsnn.reference.infer)
    )
    event(f"error {type(a).__name__}: {a.field}" if isinstance(a, AsyncSNNError) else "valid result")
    # The engines share one validation: what one refuses, the other refuses too...
    assert isinstance(a, AsyncSNNError) == isinstance(b, AsyncSNNError), (a, b)
    if isinstance(a, AsyncSNNError):
        if len(opts) + (labels is not None) + (ids is not None) <= 1:  # ...with the same words for one mistake
            assert type(a) is type(b)
            assert str(a) == str(b)
        return
    dropout = a.options["refractory_dropout"] is not None
    for res in (a, b):
        check_invariants(net, res, 3, dropout=dropout, labelled=labels is not None)
    if on_grid(net):
        assert_results_equal(a, b)


# ------------------------------------------------------------------ constructors
@FUZZ
@given(data=st.data())
def test_network_constructors_with_any_weights_and_parameters(data: st.DataObject) -> None:
    n_in = data.draw(st.integers(1, 4))
    n_out = data.draw(st.integers(1, 3))
    shape = data.draw(st.sampled_from([(n_out, n_in), (n_out,), (n_out, n_in, 1), (0, n_in), (n_out, n_in + 1)]))
    weight = data.draw(arrays(shape))
    threshold = data.draw(st.one_of(values(), arrays((n_out,)), arrays((n_out + 1,)), st.text(max_size=2), st.none()))
    beta = data.draw(st.one_of(values(), arrays((n_out,)), st.none()))
    dropout = data.draw(st.one_of(values(), st.none(), st.text(max_size=2)))
    net = attempt(
        lambda: asyncsnn.Network.sequential(
            (n_in,), [asyncsnn.Dense(weight)], threshold=threshold, beta=beta, refractory_dropout=dropout
        )
    )
    if isinstance(net, AsyncSNNError):
        return
    w = net.projections[0].layer.weight
    assert w.dtype == np.float32
    assert np.isfinite(w).all()
    assert w.shape == (n_out, n_in)
    pop = net.populations[0]
    assert pop.threshold.dtype == np.float32
    assert (pop.threshold > 0).all()
    assert np.isfinite(pop.threshold).all()
    assert ((pop.beta >= 0) & (pop.beta <= 1)).all()
    assert 0 <= pop.refractory_dropout < 1
    res = asyncsnn.infer(net, np.ones((1, 2, n_in), np.float32))  # the engine accepts what Python accepted
    check_invariants(net, res, 2, dropout=False, labelled=False)


@FUZZ
@given(data=st.data())
def test_conv_and_pool_geometry_of_any_size(data: st.DataObject) -> None:
    c, h, w = (data.draw(st.integers(1, 4)) for _ in range(3))
    k = data.draw(
        st.one_of(
            st.integers(-1, 6), st.sampled_from([2**31, 2**40, 2**70]), st.tuples(st.integers(0, 4), st.integers(0, 4))
        )
    )
    stride = data.draw(st.one_of(st.integers(-1, 4), st.sampled_from([2**33, 2**70]), st.just((1, 2))))
    padding = data.draw(st.one_of(st.integers(-1, 3), st.sampled_from([2**33, 2**70])))
    kind = data.draw(st.sampled_from(["conv", "avg", "sum"]))
    if kind == "conv":
        kk = k if isinstance(k, tuple) else (k, k)
        assume(all(0 < v <= 6 for v in kk))

    def build() -> Network:
        if kind == "conv":
            layer: Any = asyncsnn.Conv2d(np.full((2, c, *kk), 0.5), stride=stride, padding=padding)
        else:
            layer = (asyncsnn.AvgPool2d if kind == "avg" else asyncsnn.SumPool2d)(k, stride=stride)
        return asyncsnn.Network.sequential((c, h, w), [layer], threshold=0.25)

    net = attempt(build)
    if isinstance(net, AsyncSNNError):
        return
    res = asyncsnn.infer(net, np.ones((1, 2, c, h, w), np.float32), scheduler="fifo", forward_group_size=3)
    check_invariants(net, res, 2, dropout=False, labelled=False)
    np.testing.assert_array_equal(res.synops[0], 2 * net.fan_out_counts(0).sum())


# ------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    asyncsnn.save(random_grid_network(np.random.default_rng(5), "conv"), path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_load_of_mutated_files_is_a_model_error_or_a_valid_network(
    model_bytes: bytes, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    raw = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "truncate", "insert", "header_size", "splice"]))
        if how == "flip" and raw:
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
        elif how == "truncate":
            del raw[data.draw(st.integers(0, len(raw))) :]
        elif how == "insert":
            pos = data.draw(st.integers(0, len(raw)))
            raw[pos:pos] = data.draw(st.binary(max_size=8))
        elif how == "header_size" and len(raw) >= 8:
            raw[:8] = struct.pack("<Q", data.draw(st.sampled_from([0, 1, 7, 2**31, 2**63, len(raw) - 8, len(raw)])))
        elif how == "splice":
            text = raw.decode("latin-1")
            for a, b in (("F32", "F64"), ('"shape":[', '"shape":[99999999,'), ("asyncsnn", "asyncsnm"), ('"1"', '"9"')):
                if data.draw(st.booleans()):
                    text = text.replace(a, b, 1)
            raw = bytearray(text.encode("latin-1"))
    path = tmp_path_factory.mktemp("mutant") / "m.safetensors"
    path.write_bytes(bytes(raw))
    net = attempt(lambda: asyncsnn.load(path))
    if isinstance(net, AsyncSNNError):
        return
    res = asyncsnn.infer(net, np.ones((1, 2, *net.input_shape), np.float32))
    check_invariants(net, res, 2, dropout=False, labelled=False)


# ------------------------------------------------------------------ streaming
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), data=st.data())
def test_streaming_equals_one_call_for_any_split(net: Network, data: st.DataObject) -> None:
    from asyncsnn.streaming import infer_iter

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(1, 9))
    x = (rng.random((n, 3, *net.input_shape)) < 0.5).astype(np.float32) * rng.integers(1, 4, (n, 3, *net.input_shape))
    y = rng.integers(0, net.n_outputs, n)
    opts = {
        "scheduler": data.draw(st.sampled_from(["random", "momentum", "fifo"])),
        "forward_group_size": 1,
        "refractory_dropout": 0.3,
    }
    big = asyncsnn.infer(net, x, labels=y, **opts)
    res = infer_iter(net, zip(x, y.tolist()), batch_size=data.draw(st.integers(1, 10)), **opts)
    assert_results_equal(big, res)

"""``asyncsnn.infer``'s shortcuts give exactly what its general path gives.

``infer`` takes a short way for plain inputs: float32 C-contiguous frames without labels
or sample ids go to the engine as they are (``dense_as_given`` + ``_infer_dense``, the
engine checks their values), run options seen before are not validated again (the
cache of ``prepare_options``) and the engine's arrays go into the result without
per-array checks (``InferenceResult._from_engine``). Every test here runs the same call
with the shortcuts disabled and demands the same result (same attributes in the same
order, same arrays, dtypes and flags) or the same exception (class, message, field,
value, location, cause and context).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncsnn
from asyncsnn import _engine, _prepare
from asyncsnn._prepare import Scheduler, StopMode, dense_as_given
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.testing import random_count_input, random_grid_network

engine_module = sys.modules["asyncsnn.engine"]


class _NoCache(dict):  # type: ignore[type-arg]
    """Stands in for the options cache: never finds anything (so every call validates)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "result", call()
    except Exception as exc:
        return "error", exc


def general_infer(net: Any, inputs: Any, **kwargs: Any) -> tuple[str, Any]:
    """``asyncsnn.infer`` with every shortcut off: the general path alone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module, "dense_as_given", lambda *args: None)
        mp.setattr(_prepare, "_OPTIONS_SEEN", _NoCache())
        return _outcome(lambda: asyncsnn.infer(net, inputs, **kwargs))


def fast_infer(net: Any, inputs: Any, **kwargs: Any) -> tuple[str, Any]:
    """``asyncsnn.infer`` as it is, called twice so that the second call finds its options cached."""
    first = _outcome(lambda: asyncsnn.infer(net, inputs, **kwargs))
    second = _outcome(lambda: asyncsnn.infer(net, inputs, **kwargs))
    assert_same_outcome(first, second)
    return second


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    return type(a) is type(b) and (a == b or repr(a) == repr(b))


def assert_same_result(a: InferenceResult, b: InferenceResult) -> None:
    assert type(a) is type(b)
    assert list(vars(a)) == list(vars(b))
    for name, va in vars(a).items():
        vb = getattr(b, name)
        if name in COUNTER_FIELDS:
            for arr in (va, vb):
                assert type(arr) is np.ndarray, name
                assert arr.dtype == np.int64, name
                assert not arr.flags.writeable, name
                assert arr.flags.c_contiguous, name
            assert va.shape == vb.shape, name
            np.testing.assert_array_equal(va, vb, err_msg=name)
        elif name == "labels":
            assert (va is None) == (vb is None)
            if va is not None:
                assert _same_value(va, vb)
        else:
            assert va == vb, name
            assert type(va) is type(vb), name


def assert_same_error(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b), (a, b)
    assert str(a) == str(b)
    for attr in ("field", "value", "location"):
        assert _same_value(getattr(a, attr, None), getattr(b, attr, None)), attr
    assert type(a.__cause__) is type(b.__cause__)
    assert type(a.__context__) is type(b.__context__)


def assert_same_outcome(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "result":
        assert_same_result(a[1], b[1])
    else:
        assert_same_error(a[1], b[1])


def assert_fast_equals_general(net: Any, inputs: Any, **kwargs: Any) -> None:
    assert_same_outcome(fast_infer(net, inputs, **kwargs), general_infer(net, inputs, **kwargs))


# ============================================================ inputs and their forms
BAD_VALUES = [np.nan, np.inf, -np.inf, -1.0, -0.0, -1e-45, 3.5e38]


@st.composite
def input_cases(draw: Any) -> tuple[Any, Any, dict[str, Any]]:
    """A network, one form of an input batch (good or bad) and infer's keyword arguments."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    net = random_grid_network(rng, draw(st.sampled_from(["dense", "conv", "skip"])))
    batch, timesteps = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    x = random_count_input(rng, net, batch, timesteps, density=draw(st.sampled_from([0.0, 0.3, 1.0])))
    if draw(st.booleans()):  # a bad value somewhere (first sample, or in a later chunk)
        bad = draw(st.sampled_from(BAD_VALUES))
        dtype = np.float64 if abs(bad) > 3.4e38 or draw(st.booleans()) else np.float32
        x = x.astype(dtype)
        x.reshape(-1)[draw(st.integers(0, x.size - 1))] = bad
    form = draw(
        st.sampled_from(
            [
                *["as is"] * 6,
                *["flat"] * 3,
                "float64",
                "int64",
                "uint8",
                "bool",
                "float16",
                "big-endian",
                "fortran",
                "strided",
                "read-only",
                "subclass",
                "wrong shape",
                "empty batch",
                "no timesteps",
                "sparse",
                "tuple",
            ]
        )
    )
    inputs: Any
    if form == "as is":
        inputs = x
    elif form == "flat":
        inputs = x.reshape(batch, timesteps, -1)
    elif form in ("float64", "int64", "uint8", "bool", "float16"):
        with np.errstate(invalid="ignore", over="ignore"):
            inputs = x.astype(form)
    elif form == "big-endian":
        inputs = x.astype(x.dtype.newbyteorder(">"))
    elif form == "fortran":
        inputs = np.asfortranarray(x)
    elif form == "strided":
        wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
        wide[..., ::2] = x
        inputs = wide[..., ::2]
    elif form == "read-only":
        inputs = x.copy()
        inputs.setflags(write=False)
    elif form == "subclass":

        class Frames(np.ndarray):
            pass

        inputs = x.view(Frames)
    elif form == "wrong shape":
        inputs = x.reshape(batch, timesteps, -1)[..., :-1]
    elif form == "empty batch":
        inputs = x[:0]
    elif form == "no timesteps":
        inputs = x[:, :0]
    else:
        flat = x.reshape(batch, timesteps, -1)
        samples = [np.array([(t, i, flat[b, t, i]) for t, i in zip(*np.nonzero(flat[b]))]) for b in range(batch)]
        samples = [s if s.size else np.zeros((0, 3)) for s in samples]
        inputs = tuple(samples) if form == "tuple" else samples
    kwargs: dict[str, Any] = {}
    labels = draw(st.sampled_from(["none", "none", "none", "good", "bad"]))
    if labels != "none":
        kwargs["labels"] = rng.integers(0, net.n_outputs, batch) if labels == "good" else [-1] * batch
    ids = draw(st.sampled_from(["none", "none", "none", "good", "bad"]))
    if ids != "none":
        kwargs["sample_ids"] = rng.integers(0, 2**32, batch) if ids == "good" else [2**33] * batch
    kwargs["timesteps"] = draw(
        st.sampled_from([None, None, None, timesteps, timesteps + 1, timesteps - 1, float(timesteps), True])
    )
    kwargs["threads"] = draw(st.sampled_from([None, None, 1, 1, 2, 0, 2000, True, np.int64(1), 1.0]))
    return net, inputs, kwargs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(input_cases())
def test_infer_fast_and_general_paths_agree_on_any_input(case: tuple[Any, Any, dict[str, Any]]) -> None:
    net, inputs, kwargs = case
    assert_fast_equals_general(net, inputs, **kwargs)


def _canonical() -> tuple[asyncsnn.Network, np.ndarray]:
    rng = np.random.default_rng(3)
    net = random_grid_network(rng, "conv")
    return net, random_count_input(rng, net, batch=6, timesteps=3, density=0.5)


@pytest.mark.parametrize("bad", [v for v in BAD_VALUES if abs(v) < 3.4e38 or np.isinf(v)])
@pytest.mark.parametrize("sample", [0, 1, 5])
@pytest.mark.parametrize("threads", [None, 1, 2])
def test_bad_float32_values_raise_the_general_paths_error(bad: float, sample: int, threads: int | None) -> None:
    """The shortcut leaves the values to the engine, in every chunk; the error is still Python's."""
    net, x = _canonical()
    x = x.copy()
    x[sample, 2, 0, 1, 1] = bad
    fast = fast_infer(net, x, threads=threads)
    assert_same_outcome(fast, general_infer(net, x, threads=threads))
    if bad == 0.0:  # -0.0 is a good value
        assert fast[0] == "result"
    else:
        assert fast[0] == "error"
        assert isinstance(fast[1], asyncsnn.InputError)
        assert fast[1].__context__ is None  # not raised while handling the engine's error


def test_the_fast_path_is_taken_for_plain_float32_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the tests above: they compare two different code paths, not one with itself."""
    net, x = _canonical()
    expected = asyncsnn.infer(net, x, seed=3)
    for arr in (x, x.reshape(6, 3, -1), x[:1]):
        assert dense_as_given(net, arr) is not None
        assert dense_as_given(net, arr).shape == (arr.shape[0], 3, net.input_size)  # type: ignore[union-attr]
    for arr in (x.astype(np.float64), np.asfortranarray(x), x[:, ::2]):
        assert dense_as_given(net, arr) is None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(engine_module, "prepare_inputs", refuse)
    monkeypatch.setattr(InferenceResult, "__init__", refuse)
    got = asyncsnn.infer(net, x, seed=3)
    assert_same_result(got, expected)
    assert_same_result(asyncsnn.infer(net, x, seed=3, threads=1, timesteps=3), expected)
    with pytest.raises(AssertionError, match="general path"):
        asyncsnn.infer(net, x, seed=3, labels=np.zeros(6, dtype=np.int64))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_bad_value_in_a_late_chunk_fails_before_anything_runs(threads: int) -> None:
    """The binding checks the values of every chunk before the first one runs (in
    parallel with several threads) and names the first bad sample."""
    net = asyncsnn.Network.sequential(
        (64,), [asyncsnn.Dense(np.full((64, 64), 0.05)), asyncsnn.Dense(np.ones((2, 64)))]
    )
    x = np.ones((400, 400, 64), dtype=np.float32)
    # Sample 0 is valid input but overflows the membrane when it runs (64 x 0.05 x 3e38,
    # R8.3): had any chunk run before the whole batch was checked, the error would be
    # that EngineError of sample 0, not the InputError of sample 250 (no timing needed).
    x[0, 0, :] = 3e38
    with pytest.raises(asyncsnn.EngineError, match="membrane overflows"):
        asyncsnn.infer(net, x[:1], threads=1)
    x[-1, -1, -1] = np.nan
    x[399, 0, 0] = -1.0
    x[250, 7, 3] = np.inf
    with pytest.raises(asyncsnn.InputError, match="finite") as info:
        _engine.run(
            net._engine_network(), x, None, 400, None, None, "fifo", 8, "drain", 0, None, 0, 0.0, None, threads
        )  # fmt: skip
    assert info.value.location == "sample 250"
    assert "inf at (t=7, i=3)" in str(info.value)
    with pytest.raises(asyncsnn.InputError, match=r"at index \(250, 7, 3\)"):
        asyncsnn.infer(net, x, threads=threads)


# ===================================================================== the results
def test_engine_arrays_are_what_from_engine_trusts() -> None:
    """The binding's dict: every counter field, in order, read-only C-contiguous int64 arrays
    that own their memory (so keeping one does not keep the others alive)."""
    net, x = _canonical()
    arrays = _engine.run(
        net._engine_network(), x.reshape(6, 3, -1), None, 3, None, None, "random", 2, "drain", 0, None, 5, 0.0, None, 2
    )  # fmt: skip
    assert list(arrays) == list(COUNTER_FIELDS)
    for name, arr in arrays.items():
        assert type(arr) is np.ndarray, name
        assert arr.dtype == np.int64, name
        assert not arr.flags.writeable, name
        assert arr.flags.c_contiguous, name
        assert arr.flags.owndata, name
        assert arr.base is None, name
        assert arr.shape[0] == 6, name
    ids = _engine.run(
        net._engine_network(), x.reshape(6, 3, -1), None, 3, None, np.arange(6, dtype=np.uint64), "random", 2,
        "drain", 0, None, 5, 0.0, None, 2,
    )  # fmt: skip
    for name in COUNTER_FIELDS:
        np.testing.assert_array_equal(arrays[name], ids[name], err_msg=name)
    options = {"seed": 5}
    a = InferenceResult._from_engine(arrays, labels=None, engine="rust", options=options)
    b = InferenceResult(arrays, labels=None, engine="rust", options=options)
    assert_same_result(a, b)
    assert a.options is not options
    assert b.options is not options
    # Anything else goes through the checks of __init__.
    as_lists = {name: arrays[name].tolist() for name in reversed(COUNTER_FIELDS)}
    assert_same_result(InferenceResult._from_engine(as_lists, labels=None, engine="rust", options={"seed": 5}), b)
    with pytest.raises(KeyError, match="missing"):
        InferenceResult._from_engine({}, labels=None, engine="rust", options={})


def test_results_of_the_fast_path_are_independent() -> None:
    net, x = _canonical()
    a, b = asyncsnn.infer(net, x, refractory_dropout=0.25), asyncsnn.infer(net, x, refractory_dropout=0.25)
    assert a.options == b.options
    assert a.options is not b.options
    a.options["refractory_dropout"].append(1.0)  # type: ignore[union-attr]
    assert b.options["refractory_dropout"] == [0.25] * len(net.populations)
    with pytest.raises(ValueError, match="read-only"):
        a.spikes[0, 0] = 7
    assert not np.shares_memory(a.spikes, b.spikes)


# ====================================================================== run options
OPTION_VALUES: dict[str, list[Any]] = {
    "scheduler": ["momentum", "fifo", "layered", "random", Scheduler.FIFO, "FIFO", "", 3, None],
    "forward_group_size": [1, 8, 0, -1, 2**32, 8.0, True, np.int64(8), "8"],
    "stop": ["drain", "first_output", "max_steps", StopMode.DRAIN, "stop", None],
    "extra_steps": [0, 3, -1, 2**32, 1.5, False, np.uint8(2)],
    "max_steps": [None, 1, 5, 0, 2**32, 2.0, True, np.int32(3)],
    "seed": [0, 7, 2**64 - 1, 2**64, -1, 1.0, True, np.uint64(2**63)],
    "jitter": [0.0, 0, -0.0, 0.5, 1, 3e38, 1e39, 10**40, -1.0, float("nan"), float("inf"), True, np.float32(0.5), "0"],
    "refractory_dropout": [
        "off",
        "network",
        "on",
        0,
        0.0,
        -0.0,
        0.5,
        1,
        1.0,
        -0.1,
        float("nan"),
        True,
        np.float64(0.5),
    ],
}


#: The values of OPTION_VALUES that are accepted and cached (plain types), drawn more often.
CACHED_VALUES: dict[str, list[Any]] = {
    "scheduler": ["momentum", "fifo", "random"],
    "forward_group_size": [1, 8],
    "stop": ["drain", "first_output"],
    "extra_steps": [0, 3],
    "max_steps": [None, 5],
    "seed": [0, 7, 2**64 - 1],
    "jitter": [0.0, 0, -0.0],
    "refractory_dropout": ["off", 0, 0.5, 0.5, 0.5],
}


@st.composite
def option_cases(draw: Any) -> dict[str, Any]:
    return {name: draw(st.sampled_from(CACHED_VALUES[name] * 3 + values)) for name, values in OPTION_VALUES.items()}


NETS = [
    asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((3, 4)))], refractory_dropout=0.5),
    asyncsnn.Network.sequential(
        (4,), [asyncsnn.Dense(np.ones((3, 4))), asyncsnn.Dense(np.ones((2, 3)))], refractory_dropout=[0.0, 0.25]
    ),
    asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((3, 4))), asyncsnn.Dense(np.ones((2, 3)))]),
]


@settings(max_examples=400, deadline=None)
@given(option_cases(), st.permutations(range(len(NETS))))
def test_cached_options_equal_validated_options(opts: dict[str, Any], order: list[int]) -> None:
    """Whatever was cached before, for whichever network: the same RunOptions or the same error."""
    for n in order:
        net = NETS[n]
        got = _outcome(lambda net=net: _prepare.prepare_options(net, **opts))
        want = _outcome(lambda net=net: _prepare._validate_options(net, *opts.values()))
        assert got[0] == want[0], (got, want)
        if got[0] == "result":
            assert got[1] == want[1]
            assert got[1].as_dict() == want[1].as_dict()
            assert list(map(type, vars(got[1]).values())) == list(map(type, vars(want[1]).values()))
        else:
            assert_same_error(got[1], want[1])


LOOK_ALIKES = [
    ("forward_group_size", 1, True),
    ("forward_group_size", 8, np.int64(8)),
    ("forward_group_size", 8, 8.0),
    ("extra_steps", 0, False),
    ("max_steps", 1, True),
    ("max_steps", 2, 2.0),
    ("seed", 1, True),
    ("seed", 0, 0.0),
    ("jitter", 0.0, False),
    ("jitter", 1.0, True),
    ("jitter", 0.5, np.float64(0.5)),
    ("refractory_dropout", 0.0, False),
    ("refractory_dropout", 0, "0"),
    ("scheduler", "fifo", Scheduler.FIFO),
    ("stop", "drain", StopMode.DRAIN),
]


@pytest.mark.parametrize(("name", "plain", "twin"), LOOK_ALIKES)
def test_look_alike_option_values_are_not_confused(name: str, plain: Any, twin: Any) -> None:
    """A value equal to a cached one but of another type is validated on its own."""
    base = {n: values[0] for n, values in OPTION_VALUES.items()}
    if name in ("jitter", "seed"):
        base["scheduler"] = "momentum"
    _prepare.prepare_options(NETS[0], **{**base, name: plain})  # cached
    opts = {**base, name: twin}
    got = _outcome(lambda: _prepare.prepare_options(NETS[0], **opts))
    want = _outcome(lambda: _prepare._validate_options(NETS[0], *opts.values()))
    assert got[0] == want[0], (got, want)
    if got[0] == "result":
        assert got[1] == want[1]
    else:
        assert_same_error(got[1], want[1])


def test_a_bad_network_is_reported_before_cached_options() -> None:
    _prepare.prepare_options(NETS[0], **{name: values[0] for name, values in OPTION_VALUES.items()})
    with pytest.raises(asyncsnn.ParameterError, match="network"):
        _prepare.prepare_options("net", **{name: values[0] for name, values in OPTION_VALUES.items()})  # type: ignore[arg-type]


def test_the_options_cache_stays_small() -> None:
    for seed in range(3 * _prepare._OPTIONS_SEEN_MAX):
        opts = {name: values[0] for name, values in OPTION_VALUES.items()}
        _prepare.prepare_options(NETS[0], **{**opts, "seed": seed})
    assert 0 < len(_prepare._OPTIONS_SEEN) <= _prepare._OPTIONS_SEEN_MAX


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scheduler": "fifo", "forward_group_size": 2},
        {"jitter": 0.5, "seed": 9},
        {"jitter": 1, "refractory_dropout": 0},
        {"refractory_dropout": "network"},
        {"refractory_dropout": 0.25},
        {"stop": "max_steps", "max_steps": 2},
        {"stop": "first_output", "extra_steps": 1},
        {"scheduler": Scheduler.RANDOM, "stop": StopMode.FIRST_OUTPUT},
        {"forward_group_size": np.int64(3), "seed": np.uint64(4)},
        {"jitter": 0.5, "scheduler": "fifo"},
        {"forward_group_size": 0},
        {"stop": "max_steps"},
        {"refractory_dropout": 1.0},
        {"scheduler": "nope"},
    ],
)
def test_infer_options_fast_and_general_agree(kwargs: dict[str, Any]) -> None:
    net, x = _canonical()
    assert_fast_equals_general(net, x, **kwargs)
    assert_fast_equals_general(net, x.astype(np.float64), **kwargs)
    other = asyncsnn.Network.sequential(net.input_shape, [asyncsnn.Dense(np.full((3, net.input_size), 0.1))])
    assert len(other.populations) != len(net.populations)
    assert_fast_equals_general(other, x, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timesteps": 3},
        {"timesteps": 4},
        {"timesteps": 2},
        {"timesteps": 3.0},
        {"timesteps": np.int64(3)},
        {"timesteps": True},
        {"timesteps": "3"},
        {"threads": 1},
        {"threads": 2},
        {"threads": 1024},
        {"threads": 1025},
        {"threads": 0},
        {"threads": -1},
        {"threads": True},
        {"threads": 2.0},
        {"threads": np.int64(2)},
        {"labels": [0, 1, 0, 1, 0, 1]},
        {"labels": [0, 1]},
        {"sample_ids": np.arange(6)},
        {"sample_ids": np.arange(6)[::-1]},
        {"sample_ids": [2**32] * 6},
    ],
)
@pytest.mark.parametrize("bad", [None, np.nan])
def test_infer_arguments_fast_and_general_agree(kwargs: dict[str, Any], bad: float | None) -> None:
    net, x = _canonical()
    if bad is not None:
        x = x.copy()
        x[-1, -1, -1, -1, -1] = bad
    assert_fast_equals_general(net, x, **kwargs)

"""``asyncsnn.RunOptions``: the ten run options declared once, validated on construction.

Every engine's ``infer`` (and ``infer_iter``) takes them as keywords or as one
``options=RunOptions(...)``; both give the same run, and a keyword that contradicts
``options`` is a typed error.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from asyncsnn import RunOptions, Scheduler, StopMode
from asyncsnn._prepare import RUN_OPTION_DEFAULTS, RUN_OPTION_NAMES, prepare_given_options, resolve_options
from asyncsnn.exceptions import ParameterError
from asyncsnn.streaming import infer_iter
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network
from conftest import ENGINES, Engine

SETTINGS: list[dict[str, Any]] = [
    {},
    {"scheduler": "random", "forward_group_size": 2, "seed": 7},
    {"scheduler": "momentum", "forward_group_size": 1, "jitter": 0.5, "refractory_dropout": "network", "seed": 3},
    {"scheduler": "fifo", "forward_group_size": 3, "stop": "first_output", "extra_steps": 1},
    {"scheduler": "layered", "stop": "max_steps", "max_steps": 2},
    {
        "scheduler": Scheduler.FIFO,
        "stop": StopMode.DRAIN,
        "max_steps": 3,
        "refractory_dropout": 0.25,
        "seed": 2**64 - 1,
    },
    {"scheduler": "fifo", "forward_group_size": 2, "input_dropout": 0.25, "spike_dropout": 0.5, "seed": 11},
]


def _data(seed: int = 0) -> tuple[asyncsnn.Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    net = random_grid_network(rng, "skip")
    x = random_count_input(rng, net, batch=4, timesteps=3)
    return net, x, rng.integers(0, net.n_outputs, 4)


# ----------------------------------------------------------------------------- the value


def test_defaults_are_the_signature_defaults_of_every_infer() -> None:
    assert RunOptions().as_dict() == RUN_OPTION_DEFAULTS
    assert tuple(RUN_OPTION_DEFAULTS) == RUN_OPTION_NAMES
    for name, infer in ENGINES.items():
        params = inspect.signature(infer).parameters
        for option in RUN_OPTION_NAMES:
            assert params[option].default == RUN_OPTION_DEFAULTS[option], (name, option)
        assert params["options"].default is None, name


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_round_trip(kwargs: dict[str, Any]) -> None:
    opts = RunOptions(**kwargs)
    assert RunOptions(**opts.as_dict()) == opts
    assert hash(RunOptions(**opts.as_dict())) == hash(opts)
    assert eval(repr(opts), {"RunOptions": RunOptions}) == opts
    assert pickle.loads(pickle.dumps(opts)) == opts
    assert opts.replace() == opts
    assert isinstance(opts.scheduler, Scheduler)
    assert isinstance(opts.stop, StopMode)
    for name, value in kwargs.items():
        assert getattr(opts, name) == value
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 1  # type: ignore[misc]


def test_values_are_normalised() -> None:
    opts = RunOptions(forward_group_size=np.int64(4), seed=np.uint64(5), jitter=np.float32(0.5), refractory_dropout=0)
    assert type(opts.forward_group_size) is int
    assert opts.forward_group_size == 4
    assert type(opts.seed) is int
    assert type(opts.jitter) is float
    assert opts.refractory_dropout == 0.0
    assert opts == RunOptions(forward_group_size=4, seed=5, jitter=0.5, refractory_dropout=0.0)


def test_replace_validates_and_keeps_the_rest() -> None:
    opts = RunOptions(scheduler="fifo", forward_group_size=2, seed=9)
    assert opts.replace(seed=1) == RunOptions(scheduler="fifo", forward_group_size=2, seed=1)
    assert opts.replace(stop="first_output").stop is StopMode.FIRST_OUTPUT
    with pytest.raises(ParameterError) as err:
        opts.replace(forward_group_size=0)
    assert err.value.field == "forward_group_size"
    with pytest.raises(ParameterError) as err:
        opts.replace(threads=2)
    assert err.value.field == "threads"
    assert "not a run option" in str(err.value)
    with pytest.raises(ParameterError, match="jitter"):
        opts.replace(jitter=0.5)  # fifo takes no jitter


BAD: list[tuple[dict[str, Any], str]] = [
    ({"scheduler": "lifo"}, "scheduler"),
    ({"forward_group_size": 0}, "forward_group_size"),
    ({"forward_group_size": 2.5}, "forward_group_size"),
    ({"forward_group_size": True}, "forward_group_size"),
    ({"stop": "never"}, "stop"),
    ({"stop": "max_steps"}, "max_steps"),
    ({"max_steps": 0}, "max_steps"),
    ({"extra_steps": -1}, "extra_steps"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"jitter": float("nan")}, "jitter"),
    ({"jitter": -0.5}, "jitter"),
    ({"jitter": 1e39}, "jitter"),
    ({"jitter": 0.5, "scheduler": "fifo"}, "jitter"),
    ({"refractory_dropout": 1.0}, "refractory_dropout"),
    ({"refractory_dropout": "on"}, "refractory_dropout"),
    ({"refractory_dropout": None}, "refractory_dropout"),
    ({"input_dropout": 1.0}, "input_dropout"),
    ({"input_dropout": -0.1}, "input_dropout"),
    ({"input_dropout": "network"}, "input_dropout"),
    ({"input_dropout": True}, "input_dropout"),
    ({"spike_dropout": 1.0}, "spike_dropout"),
    ({"spike_dropout": float("nan")}, "spike_dropout"),
    ({"spike_dropout": None}, "spike_dropout"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD)
def test_invalid_values_are_refused_on_construction_as_by_infer(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ParameterError) as built:
        RunOptions(**kwargs)
    assert built.value.field == field
    assert field in str(built.value)
    net, x, _ = _data()
    with pytest.raises(ParameterError) as called:
        asyncsnn.infer(net, x, **kwargs)
    assert str(called.value) == str(built.value)  # one validation, one message


# ----------------------------------------------------------------------------- options and keywords


def test_keywords_agreeing_with_options_or_left_at_their_default_are_accepted() -> None:
    opts = RunOptions(scheduler="fifo", forward_group_size=2, seed=3)
    assert resolve_options(opts) is opts
    assert resolve_options(opts, scheduler="fifo", forward_group_size=2, seed=3) is opts
    assert resolve_options(opts, scheduler=Scheduler.FIFO, seed=np.int64(3)) is opts
    assert resolve_options(opts, **RUN_OPTION_DEFAULTS) is opts  # what every infer passes by default
    assert resolve_options(None, scheduler="fifo", forward_group_size=2, seed=3) == opts


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("seed", 4), ("scheduler", "random"), ("forward_group_size", 2.5), ("jitter", 0.5), ("refractory_dropout", 0)],
)
def test_a_keyword_contradicting_options_is_a_typed_error(engine: Engine, keyword: str, value: Any) -> None:
    net, x, _ = _data()
    with pytest.raises(ParameterError) as err:
        engine(net, x, options=RunOptions(seed=3), **{keyword: value})
    assert err.value.field == keyword
    assert keyword in str(err.value)


def test_options_must_be_run_options(engine: Engine) -> None:
    net, x, _ = _data()
    with pytest.raises(ParameterError) as err:
        engine(net, x, options={"seed": 3})
    assert err.value.field == "options"
    with pytest.raises(ParameterError) as err:
        resolve_options(None, threads=2)
    assert err.value.field == "threads"


@pytest.mark.parametrize("kwargs", SETTINGS)
def test_options_and_keywords_give_the_same_run(engine: Engine, kwargs: dict[str, Any]) -> None:
    net, x, y = _data(1)
    by_keywords = engine(net, x, labels=y, **kwargs)
    by_options = engine(net, x, labels=y, options=RunOptions(**kwargs))
    assert_results_equal(by_keywords, by_options)
    assert by_options.options == by_keywords.options
    both = engine(net, x, labels=y, options=RunOptions(**kwargs), **kwargs)
    assert_results_equal(by_keywords, both)


def test_infer_iter_takes_options() -> None:
    net, x, y = _data(2)
    opts = RunOptions(scheduler="random", forward_group_size=2, seed=5)
    big = asyncsnn.infer(net, x, labels=y, options=opts)
    chunked = infer_iter(net, zip(x, y.tolist(), strict=True), batch_size=3, options=opts)
    assert_results_equal(big, chunked)
    chunked = infer_iter(net, iter(x), batch_size=3, engine=asyncsnn.reference.infer, options=opts)
    np.testing.assert_array_equal(chunked.synops, big.synops)
    with pytest.raises(ParameterError) as err:  # checked before the stream is read
        infer_iter(net, iter(x), options=opts, seed=6)
    assert err.value.field == "seed"


def test_prepared_options_resolve_the_network() -> None:
    net, _, _ = _data()
    p = [pop.refractory_dropout for pop in net.populations]
    prepared = prepare_given_options(net, RunOptions(refractory_dropout="network", jitter=0.1))
    assert prepared.refractory_dropout == (tuple(p) if any(p) else None)
    assert prepared.jitter == float(np.float32(0.1))
    assert prepare_given_options(net, refractory_dropout=0.5).refractory_dropout == (0.5,) * len(net.populations)
    assert prepare_given_options(net, RunOptions(refractory_dropout=0.0)).refractory_dropout is None
    assert prepare_given_options(net, RunOptions()) == prepare_given_options(net)
    with pytest.raises(ParameterError, match="network"):
        prepare_given_options("net", RunOptions())  # type: ignore[arg-type]
    with pytest.raises(ParameterError) as err:
        prepare_given_options(net, threads=1)
    assert err.value.field == "threads"


def test_cached_options_follow_the_network() -> None:
    """The same RunOptions, prepared for networks of other sizes or dropouts, resolves anew."""
    opts = RunOptions(refractory_dropout=0.25)
    small = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.ones((2, 2)))])
    deep = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.ones((2, 2))), asyncsnn.Dense(np.ones((1, 2)))])
    for _ in range(2):
        assert prepare_given_options(small, opts).refractory_dropout == (0.25,)
        assert prepare_given_options(deep, opts).refractory_dropout == (0.25, 0.25)
    own = RunOptions(refractory_dropout="network")
    for p in (0.0, 0.5, 0.25):
        net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.ones((1, 2)))], refractory_dropout=p)
        assert prepare_given_options(net, own).refractory_dropout == ((p,) if p else None)


@pytest.mark.parametrize("engine", [asyncsnn.infer, asyncsnn.reference.infer])
def test_cached_dropout_options_are_checked_against_the_reset_modes(engine: Any) -> None:
    """R4.6: options accepted for a network that resets to zero are refused for one with another reset."""
    layers = [asyncsnn.Dense(np.full((3, 4), 0.5)), asyncsnn.Dense(np.full((2, 3), 0.5))]
    zero = asyncsnn.Network.sequential((4,), layers)
    subtract = asyncsnn.Network.sequential((4,), layers, reset=["zero", "subtract"])
    x = np.ones((1, 2, 4), np.float32)
    opts = RunOptions(refractory_dropout=0.5)
    for kwargs in ({"refractory_dropout": 0.5}, {"options": opts}):
        engine(zero, x, **kwargs)  # accepted, and remembered by the options cache
        with pytest.raises(asyncsnn.ParameterError, match="needs reset 'zero'") as err:
            engine(subtract, x, **kwargs)
        assert err.value.field == "refractory_dropout"
        assert err.value.location == "population 2"


@pytest.mark.parametrize("engine", ENGINES.values(), ids=list(ENGINES))
def test_cached_options_tell_the_dropouts_apart(engine: Any) -> None:
    # The cached fast path of prepare_options keys on every option: runs that differ only
    # in input_dropout or spike_dropout (R4.10, R4.11) are different runs.
    net, x, _ = _data(4)
    base = engine(net, x, scheduler="fifo", seed=5)
    assert base.options["input_dropout"] == 0.0
    assert base.options["spike_dropout"] == 0.0
    dropped_in = engine(net, x, scheduler="fifo", seed=5, input_dropout=0.5)
    assert dropped_in.options["input_dropout"] == 0.5
    assert int(dropped_in.input_events.sum()) < int(base.input_events.sum())
    dropped_sp = engine(net, x, scheduler="fifo", seed=5, spike_dropout=0.5)
    assert dropped_sp.options["spike_dropout"] == 0.5
    assert int(dropped_sp.synops.sum()) < int(base.synops.sum())
    assert_results_equal(engine(net, x, scheduler="fifo", seed=5), base)

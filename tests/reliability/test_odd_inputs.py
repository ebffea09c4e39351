"""Odd but valid input works; huge sizes give a correct result or a typed error, never an abort.

* Odd but valid arrays (non-contiguous, read-only, Fortran order, ints, bools,
  float16, torch tensors) simply work on every engine and in training.
* Huge ``T``, huge values and results too large for memory give a correct result or a
  typed error, never an abort (checked in subprocesses under an address-space limit).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from _limits import run_limited
from _torch import asyncsnn_torch, needs_torch, one_torch_thread, torch
from asyncsnn import Dense, Network
from asyncsnn.exceptions import AsyncSNNError, EngineError, InputError, ModelError
from asyncsnn.result import COUNTER_FIELDS
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


# ============================================================= odd but valid arrays
def _odd_forms(x: np.ndarray) -> Iterator[tuple[str, Any]]:
    """Views and dtypes of ``x`` (float32 counts) that must give the same result."""
    ro = x.copy()
    ro.setflags(write=False)
    yield "read-only", ro
    yield "fortran", np.asfortranarray(x)
    wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=np.float64)
    wide[..., ::2] = x
    yield "strided float64", wide[..., ::2]
    yield "reversed batch", x[::-1][::-1]
    yield "negative strides", np.flip(np.flip(x, 0).copy(), 0)
    yield "int64", x.astype(np.int64)
    yield "uint8", x.astype(np.uint8)
    yield "float16", x.astype(np.float16)


def _all_engines() -> dict[str, Callable[..., Any]]:
    engines: dict[str, Callable[..., Any]] = {"rust": asyncsnn.infer, "reference": asyncsnn.reference.infer}
    if asyncsnn_torch is not None:
        engines["torch"] = asyncsnn_torch.infer
    return engines


@pytest.mark.parametrize("engine", sorted(_all_engines()))
def test_odd_but_valid_arrays_simply_work_on_every_engine(engine: str, tmp_path: Path) -> None:
    infer = _all_engines()[engine]
    rng = np.random.default_rng(21)
    net = random_grid_network(rng, "conv")
    x = random_count_input(rng, net, batch=3, timesteps=3)
    base = asyncsnn.infer(net, x, scheduler="random", forward_group_size=2)
    forms = list(_odd_forms(x))
    if engine == "torch":
        forms.append(
            ("torch non-contiguous", torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))).transpose(0, 1))
        )
    for name, form in forms:
        try:
            assert_results_equal(base, infer(net, form, scheduler="random", forward_group_size=2))
        except Exception as exc:
            raise AssertionError(f"{engine} fails on {name} inputs: {exc!r}") from exc
    bools = x > 0  # bools are 0/1 counts
    assert_results_equal(asyncsnn.infer(net, bools.astype(np.float32)), infer(net, bools))
    same = np.broadcast_to(x[:1], x.shape)  # zero strides, read-only
    assert_results_equal(asyncsnn.infer(net, same.copy()), infer(net, same))
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")  # a read-only memory map, as for a big dataset on disk
    assert_results_equal(base, infer(net, mapped, scheduler="random", forward_group_size=2))
    del mapped


def test_special_values_are_valid_input() -> None:
    """-0.0, subnormals and huge finite counts are values like any other (R2.1)."""
    net = Network.sequential((4,), [Dense(np.full((3, 4), 0.5)), Dense(np.ones((2, 3)))], threshold=1.0, beta=0.9)
    for value in (-0.0, 1e-45, 5e-39, 1e38, 3.4e38):
        x = np.full((2, 3, 4), value, dtype=np.float32)
        if value > 1e38:  # a valid input, but 4 x 0.5 x 3.4e38 overflows the membrane (R8.3)
            for engine in _all_engines().values():
                with pytest.raises(
                    EngineError,
                    match=r"^sample 0, timestep 0, forward step 0, population 1, neuron 0: membrane overflows$",
                ):
                    engine(net, x)
            continue
        results = [engine(net, x) for engine in _all_engines().values()]
        for res in results:
            _check_invariants(net, res, timesteps=3, dropout=False)
            assert res.input_events.tolist() == [0 if value == 0 else 12] * 2
        if value < 1e38:  # beyond that, sums of overflowing currents may depend on order (R8.2)
            for res in results[1:]:
                assert_results_equal(results[0], res)


@needs_torch
def test_training_accepts_odd_arrays_and_tensors() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((8, 3, 6)) < 0.4).astype(np.float32)
    y = rng.integers(0, 2, 8)
    module = asyncsnn_torch.AsyncSNN.from_sizes([6, 5, 2], seed=1)

    def run(inputs: Any, labels: Any) -> list[np.ndarray]:
        net, _ = asyncsnn_torch.train(
            copy.deepcopy(module), (inputs, labels), epochs=1, batch_size=8, progress=False, scheduler="fifo"
        )
        return [p.layer.weight for p in net.projections]

    base = run(x, y)
    wide = np.zeros((8, 3, 12), dtype=np.float64)
    wide[..., ::2] = x
    for inputs, labels in [
        (wide[..., ::2], y),
        (x.astype(np.uint8), y.astype(np.int32)),
        (torch.from_numpy(x), y.tolist()),
    ]:
        for a, b in zip(base, run(inputs, labels)):
            np.testing.assert_array_equal(a, b)


# ============================================== torch-engine edge cases, known bugs
@pytest.fixture
def no_read_only_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.from_numpy`` of a read-only array warns once per process (then silently shares
    memory torch may write to): make every such call fail, deterministically."""
    real = torch.from_numpy

    def checked(arr: np.ndarray) -> Any:
        if not arr.flags.writeable:
            raise AssertionError("torch.from_numpy of a read-only array")
        return real(arr)

    monkeypatch.setattr(torch, "from_numpy", checked)


@needs_torch
@pytest.mark.usefixtures("no_read_only_tensors")
def test_torch_infer_and_train_never_share_read_only_arrays() -> None:
    x = np.ones((2, 3, 4), np.float32)
    x.setflags(write=False)
    net = Network.sequential((4,), [Dense(np.full((3, 4), 0.5)), Dense(np.ones((2, 3)))])
    assert_results_equal(asyncsnn.infer(net, x), asyncsnn_torch.infer(net, x))
    asyncsnn_torch.train(net, (x, np.array([0, 1])), epochs=1, progress=False)


@needs_torch
def test_torch_options_are_typed_like_the_other_engines() -> None:
    net = Network.sequential((4,), [Dense(np.full((3, 4), 0.5)), Dense(np.ones((2, 3)))])
    x = np.ones((2, 3, 4))
    assert_results_equal(asyncsnn.infer(net, x), asyncsnn_torch.infer(net, x, threads=np.int64(2)))
    for device in ("tpu", "nonsense:0"):
        with pytest.raises(asyncsnn.ParameterError) as info:
            asyncsnn_torch.infer(net, x, device=device)
        assert info.value.field == "device"
        with pytest.raises(asyncsnn.ParameterError):
            asyncsnn_torch.train(net, (x, [0, 1]), device=device, progress=False)
    with pytest.raises(ModelError) as err:
        asyncsnn_torch.AsyncSNN.from_sizes([4, 3, 2], threshold=-1.0)
    assert err.value.field == "threshold"


@needs_torch
def test_from_sizes_negative_seed_is_a_typed_error() -> None:
    with pytest.raises(AsyncSNNError):
        asyncsnn_torch.AsyncSNN.from_sizes([4, 3, 2], seed=-1)


# ================================================ counters, huge T, memory bounds
def _check_invariants(net: Network, res: Any, timesteps: int, dropout: bool) -> None:
    """The counter invariants of docs/semantics.md section 7 (see also tests/engines/test_fuzz.py)."""
    b = res.batch_size
    assert res.timestep_forward_steps.shape == (b, timesteps)
    assert (res.timestep_forward_steps >= 1).all()
    np.testing.assert_array_equal(res.forward_steps, res.timestep_forward_steps.sum(1))
    assert (res.forward_steps >= timesteps).all()
    np.testing.assert_array_equal(res.output_counts, res.timestep_output_counts.sum(1))
    np.testing.assert_array_equal(res.spikes_total, res.spikes.sum(1))
    np.testing.assert_array_equal(res.synops, res.synops_per_projection.sum(1))
    sizes = np.array(net.population_sizes[1:])
    if not dropout:
        assert (res.spikes <= sizes * timesteps).all()
    assert (res.queue_peak <= net.n_neurons).all()
    assert ((res.predictions >= -1) & (res.predictions < net.n_outputs)).all()
    for name in COUNTER_FIELDS:
        assert getattr(res, name).dtype == np.int64


def test_huge_timesteps_give_a_typed_error_not_an_abort() -> None:
    """T = 2**32 - 1 sparse: the result arrays alone need tens of GiB."""
    proc = run_limited(
        """
        import numpy as np, asyncsnn, asyncsnn.reference
        net = asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))])
        x = [np.array([[2**32 - 2, 0, 1.0]])]
        for infer in (asyncsnn.infer, asyncsnn.reference.infer):
            try:
                infer(net, x)
                print("result")
            except asyncsnn.AsyncSNNError as exc:
                print(type(exc).__name__, exc.field)
        """,
        limit_gib=2.5,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["EngineError result arrays (memory)", "EngineError timesteps"], proc.stdout


def test_a_batch_whose_results_do_not_fit_in_memory_is_a_typed_error_not_an_abort() -> None:
    """Each sample fits, all of them do not: the binding reserves the result arrays up front."""
    proc = run_limited(
        """
        import numpy as np, asyncsnn
        net = asyncsnn.Network.sequential((4,), [asyncsnn.Dense(np.ones((2, 4)))])
        T = 2**22
        try:
            asyncsnn.infer(net, [np.array([[T - 1, 0, 1.0]])] * 40, threads=1)
            print("result")
        except asyncsnn.EngineError as exc:
            print("EngineError", exc)
        """,
        limit_gib=2.5,
    )
    assert proc.returncode == 0, proc.stderr  # 134 = abort in the allocator
    assert proc.stdout.startswith("EngineError batch: result arrays (memory)"), proc.stdout


def test_long_sparse_runs_count_exactly() -> None:
    """T = 2**20 with a few events: counters are exact 64-bit values, engines agree."""
    net = Network.sequential((4,), [Dense(np.full((3, 4), 0.75)), Dense(np.ones((2, 3)))], threshold=1.0, beta=1.0)
    big_t = 2**20
    events = np.array([[0, 0, 1.0], [5, 1, 2.0], [big_t - 1, 3, 1.0], [big_t - 1, 3, 1.0]])
    res = asyncsnn.infer(net, [events], timesteps=big_t)
    _check_invariants(net, res, big_t, dropout=False)
    assert res.input_events.tolist() == [3]  # the repeated (t, i) sum to one event (R2.2)
    assert res.forward_steps[0] >= big_t
    assert res.synops[0] == 3 * 3 + 2 * int(res.spikes[0, 0])  # input fan-out 3, hidden fan-out 2
    short = 2**12  # the reference engine loops in Python
    ev_short = events.copy()
    ev_short[2:, 0] = short - 1
    assert_results_equal(
        asyncsnn.infer(net, [ev_short], timesteps=short), asyncsnn.reference.infer(net, [ev_short], timesteps=short)
    )


def test_huge_sparse_time_with_a_big_value_does_not_allocate_t_by_n() -> None:
    """The float32-overflow check of repeated events works per event, not per (t, i) grid cell."""
    proc = run_limited(
        """
        import numpy as np, asyncsnn
        from asyncsnn._prepare import prepare_inputs
        net = asyncsnn.Network.sequential((784,), [asyncsnn.Dense(np.ones((2, 784)))])
        try:
            prepare_inputs(net, [np.array([[2**32 - 2, 783, 2e38], [2**32 - 2, 783, 2e38]])])
        except asyncsnn.InputError as exc:
            print(exc)
        """,
        limit_gib=1.0,
    )
    assert proc.returncode == 0, proc.stderr
    assert "repeated events sum beyond float32" in proc.stdout, proc.stdout


def test_error_locations_name_the_sample_in_the_whole_batch() -> None:
    """The binding runs a batch in chunks; an engine error still names the sample's batch index."""
    from asyncsnn import _engine

    net = Network.sequential((4,), [Dense(np.ones((2, 4)))])
    frames = np.zeros((40, 2, 4), dtype=np.float32)
    frames[33, 1, 2] = np.nan  # skip Python validation: call the binding directly
    with pytest.raises(InputError, match="sample 33") as info:
        _engine.run(
            net._engine_network(), frames, None, 2, None, np.arange(40, dtype=np.uint64),
            "fifo", 1, "drain", 0, None, 0, 0.0, None, 1,
        )  # fmt: skip
    assert info.value.location == "sample 33"

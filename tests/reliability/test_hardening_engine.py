"""Hardening of the engine's edges: overflow (R8.3), memory, immutable networks, sizes, Ctrl-C.

Each test pins a defect that an outside test suite found (issue 15, items 2, 3, 4, 8, 11).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from _background import as_background_job
from _limits import run_limited
from asyncsnn import AvgPool2d, Conv2d, Dense, Network, Population, Projection
from asyncsnn.exceptions import EngineError, InputError

BIG = 3.0e38  # two of these overflow float32 (max 3.4e38)


def _engines() -> list[tuple[str, object]]:
    engines: list[tuple[str, object]] = [("rust", asyncsnn.infer), ("reference", asyncsnn.reference.infer)]
    return engines


# ------------------------------------------------------------------ R8.3 overflow (Rust engine)
def _overflow_net(w: float) -> Network:
    # Input 1 reaches neuron 1 of the hidden layer through w and -w (inf - inf when both overflow).
    return Network.sequential((2,), [Dense(np.array([[0.0, 0.0], [w, -w]])), Dense(np.ones((1, 2)))], beta=1.0)


@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
def test_inf_minus_inf_membrane_is_an_engine_error_naming_the_neuron(scheduler: str) -> None:
    x = np.zeros((1, 2, 2), np.float32)
    x[0, 1] = 2.0  # 2 * 3e38 = inf, 2 * -3e38 = -inf: NaN in any order
    with pytest.raises(EngineError) as info:
        asyncsnn.infer(_overflow_net(BIG), x, scheduler=scheduler, forward_group_size=1)
    err = info.value
    where = "sample 0, timestep 1, forward step 0, population 1, neuron 1"
    assert str(err) == f"{where}: membrane overflows"
    assert (err.field, err.location) == ("membrane", where)
    # Finite weights of the same network run.
    assert asyncsnn.infer(_overflow_net(1.0), x, scheduler=scheduler).spikes_total[0] >= 0


@pytest.mark.parametrize("threads", [1, 2])
def test_overflow_names_the_first_failing_sample_of_a_batch(threads: int) -> None:
    net = Network.sequential((1,), [Dense(np.array([[BIG]])), Dense(np.ones((1, 1)))], threshold=1.0)
    x = np.ones((5, 3, 1), np.float32)
    x[3, 2, 0] = 2.0  # only sample 3 overflows, at its last timestep
    with pytest.raises(EngineError) as info:
        asyncsnn.infer(net, x, threads=threads)
    assert info.value.location == "sample 3, timestep 2, forward step 0, population 1, neuron 0"


def test_current_discarded_by_a_refractory_neuron_never_overflows() -> None:
    # The output neuron fires at step 0 from the input; the hidden neuron's huge weight
    # arrives at step 1, when the output neuron is refractory (R4.6): discarded, no error.
    net = Network(
        (2,),
        [Population.create((1,), 0.5, 1.0), Population.create((1,), 1.0, 1.0)],
        [
            Projection(0, 1, Dense(np.array([[1.0, 0.0]]))),
            Projection(0, 2, Dense(np.array([[2.0, 0.0]]))),
            Projection(1, 2, Dense(np.array([[BIG * 1.1]]))),
        ],
    )
    for name, infer in _engines():
        res = infer(net, np.array([[[1.0, 0.0]]], np.float32), scheduler="fifo")  # type: ignore[operator]
        assert res.spikes.tolist() == [[1, 1]], name


# ------------------------------------------------------------------ memory (item 2)
def test_a_huge_sparse_input_population_neither_aborts_nor_allocates_its_size() -> None:
    """(1, 65535, 65535) inputs pooled to one neuron: 4.3e9 inputs, one event."""
    proc = run_limited(
        """
        import numpy as np, asyncsnn
        net = asyncsnn.Network.sequential((1, 65535, 65535), [asyncsnn.SumPool2d(65535)], threshold=0.5)
        print(net.n_synapses, net.summary().splitlines()[0])
        res = asyncsnn.infer(net, [np.array([[0, 70000, 1.0]])])
        print(res.output_counts.tolist(), res.synops.tolist())
        """,
        limit_gib=3,
    )
    assert proc.returncode == 0, proc.stderr  # -6 = SIGABRT in the allocator
    assert proc.stdout.splitlines() == [
        "4294836225 Network: 1 LIF populations, 1 neurons, 4294836225 synapses",
        "[[1]] [1]",
    ]


def test_an_allocation_sized_by_the_network_is_a_typed_error_naming_its_size() -> None:
    """A kernel and padding of 65535 rows: 4.3e9 conv taps (34 GB) cannot be reserved."""
    proc = run_limited(
        """
        import numpy as np, asyncsnn
        net = asyncsnn.Network.sequential((1, 65535, 1), [asyncsnn.Conv2d(np.ones((1, 1, 65535, 1)), padding=(65534, 0))])
        print(net.n_synapses)
        try:
            asyncsnn.infer(net, [np.array([[0, 5, 1.0]])])
        except asyncsnn.EngineError as exc:
            print(type(exc).__name__, exc.field, exc.value, exc.location)
            print(exc)
        """,
        limit_gib=3,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(65535 * 65535)
    assert lines[1] == "EngineError conv/pool taps 34358689800 projection 0 (conv2d)"
    assert lines[2] == "projection 0 (conv2d): cannot allocate 34358689800 bytes for conv/pool taps"


def test_synapse_counts_are_closed_form_and_equal_the_fan_outs() -> None:
    net = Network.sequential(
        (2, 7, 9),
        [
            Conv2d(np.ones((3, 2, 3, 2)), stride=(2, 1), padding=(1, 2)),
            AvgPool2d(2, 1),
            Dense(np.ones((4, 3 * 3 * 11))),
        ],
    )
    for p in range(len(net.projections)):
        assert net._synapse_count(p) == int(net.fan_out_counts(p).sum())
    assert net.n_synapses == sum(int(net.fan_out_counts(p).sum()) for p in range(3))


# ------------------------------------------------------------------ immutable networks (item 4)
def test_layers_and_networks_cannot_be_changed_after_validation() -> None:
    w = np.full((3, 4), 0.5, np.float32)
    layer = Dense(w)
    net = Network.sequential((4,), [layer], threshold=0.4)
    for obj, field, value in [
        (layer, "weight", np.zeros((3, 4))),
        (net, "populations", ()),
        (net, "projections", ()),
        (net, "input_shape", (5,)),
        (net.projections[0], "layer", Dense(np.zeros((3, 4)))),
        (net.populations[0], "threshold", np.zeros(3)),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, value)
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[0, 0] = 9.0
    for p in net.populations:
        assert not p.threshold.flags.writeable
        assert not p.beta.flags.writeable


def test_changing_the_callers_arrays_later_does_not_change_the_network() -> None:
    w = np.full((3, 4), 0.5, np.float32)
    th = np.full(3, 0.4, np.float32)
    net = Network(
        (4,), [Population(shape=(3,), threshold=th, beta=np.ones(3, np.float32))], [Projection(0, 1, Dense(w))]
    )
    x = np.ones((1, 2, 4), np.float32)
    before = {name: infer(net, x).spikes_total.tolist() for name, infer in _engines()}  # type: ignore[operator]
    assert w.flags.writeable  # the caller's arrays stay theirs
    assert th.flags.writeable
    w[:] = -1.0
    th[:] = 100.0
    after = {name: infer(net, x).spikes_total.tolist() for name, infer in _engines()}  # type: ignore[operator]
    assert before == after == {"rust": [6], "reference": [6]}


# ------------------------------------------------------------------ sizes before work (item 8)
@pytest.mark.parametrize("shape", [(1, 10**9, 64), (10**9, 4, 64), (1, 10**8, 64)])
def test_a_broadcast_input_too_large_to_copy_fails_before_any_work(shape: tuple[int, ...]) -> None:
    net = Network.sequential((64,), [Dense(np.ones((10, 64)))])
    x = np.broadcast_to(np.ones(64, np.float32), shape)
    nbytes = int(np.prod(shape)) * 4
    for _, infer in _engines():
        with pytest.raises(EngineError, match=f"cannot allocate {nbytes} bytes") as info:
            infer(net, x)  # type: ignore[operator]
        assert (info.value.field, info.value.value) == ("inputs", nbytes)


def test_dense_timesteps_above_2_pow_32_are_an_input_error() -> None:
    net = Network.sequential((64,), [Dense(np.ones((10, 64)))])
    x = np.broadcast_to(np.ones(64, np.float32), (1, 2**32 + 1, 64))
    for _, infer in _engines():
        with pytest.raises(InputError, match=r"T must be <= 2\^32"):
            infer(net, x)  # type: ignore[operator]


def test_a_small_broadcast_input_runs_like_its_copy_and_bad_values_are_named() -> None:
    net = Network.sequential((64,), [Dense(np.full((10, 64), 0.25))], threshold=1.0)
    x = np.broadcast_to(np.ones(64, np.float32), (2, 3, 64))
    for _, infer in _engines():
        a = infer(net, x)  # type: ignore[operator]
        b = infer(net, np.ascontiguousarray(x))  # type: ignore[operator]
        assert a.spikes_total.tolist() == b.spikes_total.tolist() == [30, 30]
    bad = np.broadcast_to(np.array([1.0, -1.0] * 32), (2, 3, 64))
    with pytest.raises(InputError, match=r"-1.0: .*at index \(0, 0, 1\)"):
        asyncsnn.infer(net, bad)


# ------------------------------------------------------------------ Ctrl-C in one long sample (item 11)
LONG_SAMPLE = r"""
import signal, sys
import numpy as np
import asyncsnn
signal.signal(signal.SIGINT, signal.default_int_handler)  # the parent may ignore SIGINT
# A million neurons: every timestep leaks all of them (about a millisecond), so one sample
# of 10^6 timesteps runs for many minutes: only a check inside the sample can end it early.
n = 1_000_000
net = asyncsnn.Network.sequential((1,), [asyncsnn.Dense(np.full((n, 1), 0.1)), asyncsnn.Dense(np.zeros((1, n)))])
batch = int(sys.argv[1])
x = [np.array([[0, 0, 1.0]])] * batch
try:
    print("ready", flush=True)
    asyncsnn.infer(net, x, timesteps=1_000_000, threads=batch)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


@pytest.mark.parametrize("batch", [1, 2])
def test_ctrl_c_ends_one_long_sample(batch: int) -> None:
    """batch 1 runs on the calling thread (it polls the signals); batch 2 on a pool (watched)."""
    proc = subprocess.Popen(
        as_background_job([sys.executable, "-c", LONG_SAMPLE, str(batch)]), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.0)  # into the sample (were it sent earlier, the test would only be weaker, not flaky)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)  # the uninterrupted run takes far longer
    finally:
        proc.kill()
    assert proc.returncode == 42, out


# ------------------------------------------------------------------ tensors as weights and samples (item 9)
def test_layers_populations_and_streamed_samples_read_tensors_by_the_shared_rule() -> None:
    torch = pytest.importorskip("torch")
    from asyncsnn.streaming import infer_iter

    bf16 = Dense(torch.full((3, 4), 0.5, dtype=torch.bfloat16))
    assert bf16.weight.dtype == np.float32
    np.testing.assert_array_equal(bf16.weight, np.full((3, 4), 0.5, np.float32))
    sparse = Conv2d(torch.ones(2, 1, 2, 2).to_sparse())
    np.testing.assert_array_equal(sparse.weight, np.ones((2, 1, 2, 2), np.float32))
    assert Population.create((3,), torch.ones(3, dtype=torch.bfloat16), 0.9).threshold.dtype == np.float32
    for bad in (torch.ones(3, 4, device="meta"), torch.ones(3, 4, dtype=torch.complex64)):
        with pytest.raises(asyncsnn.ModelError, match=r"^Dense: invalid weight = '\w+ tensor \(strided\) on device"):
            Dense(bad)
    net = Network.sequential((1, 2, 2), [Dense(np.ones((3, 4)))])
    assert infer_iter(net, [torch.ones(3, 1, 2, 2, dtype=torch.bfloat16)]).spikes_total.tolist() == [9]
    with pytest.raises(InputError, match=r"^sample 0: invalid samples = 'float32 tensor \(strided\) on device meta'"):
        infer_iter(net, [torch.ones(3, 4, device="meta")])


def test_the_torch_module_takes_any_frame_shape_of_n_in_values() -> None:
    torch = pytest.importorskip("torch")
    from asyncsnn.torch import AsyncSNN

    net = Network.sequential((1, 2, 2), [Dense(np.full((3, 4), 0.5))], threshold=1.0)
    module = AsyncSNN.from_network(net)
    flat, shaped = module(torch.ones(2, 3, 4)), module(torch.ones(2, 3, 1, 2, 2))
    other = module(torch.ones(2, 3, 2, 2))  # 4 values per frame, not input_shape: read in C order
    assert torch.equal(flat.counts, shaped.counts)
    assert torch.equal(flat.counts, other.counts)
    with pytest.raises(InputError, match=r"any \[batch, T, \.\.\.\] of 4 values per frame"):
        module(torch.ones(2, 3, 5))

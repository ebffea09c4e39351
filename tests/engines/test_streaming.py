"""``asyncsnn.streaming.infer_iter``: chunked evaluation equals one big call, memory stays flat."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from asyncsnn.exceptions import InputError, ParameterError
from asyncsnn.streaming import infer_iter
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network


def _data(seed: int = 0, kind: str = "conv", batch: int = 23, timesteps: int = 5) -> tuple[Any, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    net = random_grid_network(rng, kind)  # type: ignore[arg-type]
    x = random_count_input(rng, net, batch=batch, timesteps=timesteps)
    y = rng.integers(0, net.n_outputs, batch)
    return net, x, y


OPTIONS: list[dict[str, Any]] = [
    {"scheduler": "random", "forward_group_size": 2, "seed": 7},
    {"scheduler": "momentum", "forward_group_size": 1, "jitter": 0.5, "refractory_dropout": "network"},
    {"scheduler": "fifo", "forward_group_size": 3, "stop": "first_output", "extra_steps": 1},
    {"scheduler": "layered", "stop": "max_steps", "max_steps": 2},
    # R4.13 and R4.10: the input keys and the drops see each sample's id across chunks
    {"scheduler": "random", "forward_group_size": 1, "seed": 5, "prioritize_input": False, "input_dropout": 0.2},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("batch_size", [1, 4, 23, 100])
def test_chunks_equal_one_big_call(options: dict[str, Any], batch_size: int) -> None:
    net, x, y = _data(kind="skip")
    big = asyncsnn.infer(net, x, labels=y, **options)
    pairs = infer_iter(net, ((x[b], int(y[b])) for b in range(len(y))), batch_size=batch_size, **options)
    assert_results_equal(big, pairs)
    np.testing.assert_array_equal(pairs.labels, y)
    assert pairs.accuracy == big.accuracy
    assert pairs.options == big.options
    separate = infer_iter(net, iter(x), labels=iter(y.tolist()), batch_size=batch_size, **options)
    assert_results_equal(big, separate)
    unlabelled = infer_iter(net, list(x), batch_size=batch_size, **options)
    assert unlabelled.labels is None
    np.testing.assert_array_equal(unlabelled.synops, big.synops)


def test_any_sample_form_and_the_other_engines() -> None:
    torch = pytest.importorskip("torch")
    import asyncsnn.torch

    net, x, y = _data(1, "conv", batch=6, timesteps=3)
    opts: dict[str, Any] = {"scheduler": "random", "forward_group_size": 2}
    big = asyncsnn.infer(net, x, labels=y, **opts)
    forms = [
        [torch.from_numpy(s) for s in x],  # tensors
        [s.reshape(3, -1).astype(np.int64) for s in x],  # flat, ints
        [s.tolist() for s in x],  # nested lists
    ]
    for samples in forms:
        assert_results_equal(big, infer_iter(net, samples, labels=y, batch_size=4, **opts))
    for engine in (asyncsnn.reference.infer, asyncsnn.torch.infer):
        res = infer_iter(net, zip(x, np.asarray(y)), batch_size=4, engine=engine, **opts)
        assert res.engine != "rust"
        assert_results_equal(big, res)


def test_the_stream_is_read_lazily_one_chunk_at_a_time() -> None:
    net, x, _ = _data(2, "dense", batch=10, timesteps=2)
    produced: list[int] = []
    seen: list[int] = []
    real_infer = asyncsnn.infer

    def gen() -> Iterator[np.ndarray]:
        for b in range(10):
            produced.append(b)
            yield x[b]

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(len(produced))
        return real_infer(*args, **kwargs)

    infer_iter(net, gen(), batch_size=4, engine=spy)
    assert seen == [4, 8, 10]  # each chunk ran as soon as it was complete


BAD_STREAMS: list[tuple[Any, dict[str, Any], type, str, str | None]] = [
    ([], {}, InputError, "samples", None),
    (lambda x, y: [x[0], x[1][:1]], {}, InputError, "samples", "sample 1"),
    (lambda x, y: [x[0], x[1].reshape(x.shape[1], -1)[:, :-1]], {}, InputError, "samples", "sample 1"),
    (lambda x, y: [(x[0], 0), x[1]], {}, InputError, "samples", "sample 1"),
    (lambda x, y: [(x[0], 0), (x[1], 99)], {}, InputError, "labels", "sample 1"),
    (lambda x, y: [(x[0], 0), (x[1], "a")], {}, InputError, "labels", "sample 1"),
    (lambda x, y: [(x[0], 0), (x[1], None)], {}, InputError, "labels", "sample 1"),
    (lambda x, y: [(x[0], 0), (x[1], 1.5)], {}, InputError, "labels", "sample 1"),
    (lambda x, y: list(x[:3]), {"labels": [0, 1]}, InputError, "labels", "sample 2"),
    (lambda x, y: list(x[:2]), {"labels": [0, 1, 0]}, InputError, "labels", None),
    (lambda x, y: [(x[0], 0)], {"labels": [0]}, ParameterError, "labels", None),
    (lambda x, y: [x[0], np.full_like(x[1], np.nan)], {"batch_size": 1}, InputError, "inputs", None),
    (lambda x, y: [x[0], -x[1] - 1], {"batch_size": 5}, InputError, "inputs", None),
    (lambda x, y: [x[0]], {"batch_size": 0}, ParameterError, "batch_size", None),
    (lambda x, y: [x[0]], {"batch_size": True}, ParameterError, "batch_size", None),
    (lambda x, y: [x[0]], {"scheduler": "lifo"}, ParameterError, "scheduler", None),
    (lambda x, y: [x[0]], {"forward_group_size": 0}, ParameterError, "forward_group_size", None),
    (lambda x, y: [x[0]], {"threads": 0}, ParameterError, "threads", None),
    (lambda x, y: [x[0]], {"sample_ids": [0]}, ParameterError, "sample_ids", None),
    (lambda x, y: [x[0]], {"timesteps": 3}, ParameterError, "timesteps", None),
    (lambda x, y: [x[0]], {"device": "cpu"}, ParameterError, "device", None),
    (lambda x, y: 5, {}, InputError, "samples", None),
]


@pytest.mark.parametrize(("stream", "kwargs", "cls", "field", "location"), BAD_STREAMS)
def test_bad_streams_raise_typed_errors(
    stream: Any, kwargs: dict[str, Any], cls: type, field: str, location: str | None
) -> None:
    net, x, y = _data(3, "dense", batch=4, timesteps=3)
    samples = stream(x, y) if callable(stream) else stream
    with pytest.raises(cls) as info:
        infer_iter(net, samples, **kwargs)
    assert info.value.field == field, info.value
    assert field in str(info.value)
    if location is not None:
        assert info.value.location == location
        assert location in str(info.value)


def test_options_are_checked_before_the_stream_is_read() -> None:
    net, x, _ = _data(4, "dense", batch=2, timesteps=2)

    def gen() -> Iterator[np.ndarray]:
        raise AssertionError("the stream was read")
        yield x[0]  # pragma: no cover

    with pytest.raises(ParameterError):
        infer_iter(net, gen(), scheduler="nope")


def test_an_error_in_a_later_chunk_names_the_chunk() -> None:
    net, x, _ = _data(5, "dense", batch=10, timesteps=2)
    bad = x.copy()
    bad[7, 1, 0] = np.inf
    with pytest.raises(InputError, match=r"samples 4\.\.7") as info:
        infer_iter(net, iter(bad), batch_size=4)
    assert info.value.field == "inputs"


# ----------------------------------------------------------------------------- memory
RSS_SCRIPT = r"""
import json, sys
import numpy as np
import asyncsnn
from asyncsnn.streaming import infer_iter

def hwm_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

n, T = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
net = asyncsnn.Network.sequential(
    input_shape=(784,),
    layers=[asyncsnn.Dense(rng.normal(0.02, 0.05, (32, 784))), asyncsnn.Dense(rng.normal(0.1, 0.3, (10, 32)))],
    threshold=1.0, beta=0.9)

def samples(count):
    r = np.random.default_rng(1)
    for b in range(count):
        yield (r.random((T, 784), dtype=np.float32) < 0.05).astype(np.float32), b % 10

infer_iter(net, samples(512), batch_size=256)  # warm up: thread pools, allocator, imports
base = hwm_kib()
res = infer_iter(net, samples(n), batch_size=256, threads=2)
print(json.dumps({"growth_kib": hwm_kib() - base, "samples": res.batch_size,
                  "spikes": int(res.spikes_total.sum()), "dataset_bytes": n * T * 784 * 4}))
"""


def _rss_growth(n: int, timesteps: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(n), str(timesteps)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_grows_with_the_chunk_not_the_dataset() -> None:
    small = _rss_growth(2_000, 8)
    large = _rss_growth(20_000, 8)
    assert large["samples"] == 20_000
    assert large["spikes"] > 0
    # The 20k-sample dataset is 500 MB of float32 frames; streaming keeps only the
    # counters (about 1.3 KB per sample here, plus one chunk).
    assert large["dataset_bytes"] > 400 * 2**20
    extra_mib = (large["growth_kib"] - small["growth_kib"]) / 1024
    assert extra_mib < 100, f"peak RSS grew {extra_mib:.0f} MiB more for 10x the samples: {small} vs {large}"


def test_docstring_example_runs() -> None:
    import doctest

    import asyncsnn.streaming

    result = doctest.testmod(asyncsnn.streaming, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0

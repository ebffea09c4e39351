"""Determinism and concurrency: nothing drifts.

Determinism across thread counts, batch splits, batch order, processes and (slow) a
debug build of the extension; concurrency of the reference and torch engines.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from _torch import asyncsnn_torch, needs_torch, one_torch_thread
from asyncsnn.exceptions import InputError
from asyncsnn.result import COUNTER_FIELDS
from asyncsnn.testing import assert_results_equal, random_count_input, random_grid_network

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


# ===================================================================== determinism
SCHEDULES: list[dict[str, Any]] = [
    {"scheduler": "layered"},
    {"scheduler": "fifo", "forward_group_size": 2, "stop": "first_output"},
    {"scheduler": "random", "forward_group_size": 1, "refractory_dropout": 0.3, "seed": 2**64 - 1},
    {"scheduler": "momentum", "forward_group_size": 3, "jitter": 0.25, "refractory_dropout": "network", "seed": 5},
    {"scheduler": "momentum", "forward_group_size": 2, "stop": "max_steps", "max_steps": 3},
]


def _digest(res: Any) -> str:
    h = hashlib.sha256()
    for name in COUNTER_FIELDS:
        h.update(np.ascontiguousarray(getattr(res, name)).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("options", SCHEDULES, ids=[o["scheduler"] + str(i) for i, o in enumerate(SCHEDULES)])
def test_bit_identical_across_threads_splits_order_and_repeats(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(31)
    net = random_grid_network(rng, "skip")
    x = random_count_input(rng, net, batch=48, timesteps=6)
    ids = np.arange(1000, 1048)
    one = asyncsnn.infer(net, x, sample_ids=ids, threads=1, **options)
    for threads in (2, 8, None):
        assert _digest(asyncsnn.infer(net, x, sample_ids=ids, threads=threads, **options)) == _digest(one)
    perm = np.random.default_rng(1).permutation(48)
    shuffled = asyncsnn.infer(net, x[perm], sample_ids=ids[perm], threads=2, **options)
    parts = [asyncsnn.infer(net, x[a:b], sample_ids=ids[a:b], **options) for a, b in ((0, 1), (1, 17), (17, 48))]
    for name in COUNTER_FIELDS:
        whole = getattr(one, name)
        np.testing.assert_array_equal(getattr(shuffled, name), whole[perm], err_msg=name)
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), whole, err_msg=name)


@needs_torch
def test_torch_engine_is_deterministic_across_splits_and_order() -> None:
    rng = np.random.default_rng(32)
    net = random_grid_network(rng, "dense")
    x = random_count_input(rng, net, batch=12, timesteps=4)
    ids = np.arange(12) * 7
    opts: dict[str, Any] = {"scheduler": "random", "forward_group_size": 1, "refractory_dropout": 0.4, "seed": 9}
    whole = asyncsnn_torch.infer(net, x, sample_ids=ids, **opts)
    assert_results_equal(whole, asyncsnn.infer(net, x, sample_ids=ids, **opts))
    perm = np.random.default_rng(2).permutation(12)
    shuffled = asyncsnn_torch.infer(net, x[perm], sample_ids=ids[perm], **opts)
    np.testing.assert_array_equal(shuffled.spikes, whole.spikes[perm])
    np.testing.assert_array_equal(shuffled.timestep_forward_steps, whole.timestep_forward_steps[perm])
    half = asyncsnn_torch.infer(net, x[5:], sample_ids=ids[5:], **opts)
    np.testing.assert_array_equal(half.synops, whole.synops[5:])


DIGEST_SCRIPT = """
import hashlib, sys
import numpy as np
import asyncsnn
from asyncsnn.result import COUNTER_FIELDS
from asyncsnn.testing import random_count_input, random_grid_network
rng = np.random.default_rng(33)
out = []
for kind in ("dense", "conv", "skip"):
    net = random_grid_network(rng, kind)
    x = random_count_input(rng, net, batch=16, timesteps=5)
    for opts in (dict(scheduler="random", forward_group_size=1, refractory_dropout=0.3, seed=3),
                 dict(scheduler="momentum", forward_group_size=2, jitter=0.5, seed=4),
                 dict(scheduler="fifo", forward_group_size=2, stop="first_output", extra_steps=1)):
        res = asyncsnn.infer(net, x, threads=int(sys.argv[1]), **opts)
        h = hashlib.sha256()
        for name in COUNTER_FIELDS:
            h.update(np.ascontiguousarray(getattr(res, name)).tobytes())
        out.append(h.hexdigest()[:16])
print(" ".join(out))
"""


def test_bit_identical_across_processes() -> None:
    runs = [
        subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, str(t)], capture_output=True, text=True, check=True)
        for t in (1, 2)
    ]
    assert runs[0].stdout == runs[1].stdout
    assert len(runs[0].stdout.split()) == 9


SIMD_SCRIPT = """
import hashlib
import numpy as np
import asyncsnn
from asyncsnn import Conv2d, Dense, Network
from asyncsnn.result import COUNTER_FIELDS
rng = np.random.default_rng(5)
# Arbitrary float32 weights (not on a grid): a fused multiply-add or any change of the
# per-element operations in the vectorised kernels would change some spike.
dense = Network.sequential(200, [Dense(rng.normal(0.02, 0.1, (150, 200))), Dense(rng.normal(0.03, 0.15, (90, 150))),
                                 Dense(rng.normal(0.05, 0.2, (10, 90)))], threshold=1.0, beta=0.9)
conv = Network.sequential((2, 12, 12), [Conv2d(rng.normal(0.1, 0.3, (6, 2, 3, 3)), stride=1, padding=1),
                                        Dense(rng.normal(0.02, 0.1, (10, 6 * 144)))], threshold=1.0, beta=0.85)
h = hashlib.sha256()
for net in (dense, conv):
    x = (rng.random((24, 6, net.input_size)) < 0.3) * rng.integers(1, 3, (24, 6, net.input_size))
    for sched in ("layered", "fifo", "random", "momentum"):
        res = asyncsnn.infer(net, x.astype(np.float32), scheduler=sched, forward_group_size=3, seed=2)
        assert res.spikes_total.sum() > 0
        for name in COUNTER_FIELDS:
            h.update(np.ascontiguousarray(getattr(res, name)).tobytes())
kernel = asyncsnn._engine.axpy_roofline(np.zeros(4, np.float32), 4, np.zeros(1, np.uint32), 1)[2]
print(kernel, h.hexdigest())
"""


def test_simd_and_portable_event_loops_are_bit_identical() -> None:
    """The AVX2 build of the event loop (picked at run time) equals the portable one."""
    env = dict(os.environ)
    env.pop("ASYNCSNN_NO_SIMD_DISPATCH", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", SIMD_SCRIPT], capture_output=True, text=True, check=True, env=e, timeout=300
        ).stdout
        for e in (env, dict(env, ASYNCSNN_NO_SIMD_DISPATCH="1"))
    ]
    (kernel, digest), (kernel_off, digest_off) = (r.split() for r in runs)
    assert kernel_off == "portable"
    if kernel != "avx2":
        pytest.skip("this CPU has no AVX2: only the portable event loop exists")
    assert len(digest) == 64
    assert digest == digest_off


DEBUG_LOADER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("asyncsnn._engine", sys.argv.pop(1))
module = importlib.util.module_from_spec(spec)
sys.modules["asyncsnn._engine"] = module
spec.loader.exec_module(module)
import asyncsnn
asyncsnn._engine = module
from asyncsnn import _engine
assert _engine is module and module.__file__.endswith(".so")
print("engine", module.__file__, file=sys.stderr)
"""


def build_debug_extension(target: Path) -> Path:
    """``cargo build`` of the extension with the dev profile (debug assertions, overflow checks)."""
    env = dict(os.environ, PYO3_PYTHON=sys.executable, CARGO_TARGET_DIR=str(target))
    subprocess.run(
        ["cargo", "build", "--lib", "--features", "python", "--quiet"], cwd=ROOT, env=env, check=True, timeout=1200
    )
    so = target / "debug" / "lib_engine.so"
    assert so.exists()
    return so


@pytest.mark.slow
def test_release_and_debug_builds_give_bit_identical_results() -> None:
    """One-line CI command: ``pytest -m slow tests/reliability/test_determinism.py -k debug_builds``."""
    so = build_debug_extension(ROOT / "target" / "reliability-debug")
    release = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, "2"], capture_output=True, text=True, check=True)
    debug = subprocess.run(
        [sys.executable, "-c", DEBUG_LOADER + DIGEST_SCRIPT, str(so), "2"], capture_output=True, text=True, check=True
    )
    assert str(so) in debug.stderr  # the debug build really was the one that ran
    assert debug.stdout == release.stdout
    # The debug build (overflow checks, debug assertions) survives random runs and bad calls.
    fuzz = subprocess.run(
        [sys.executable, "-c", DEBUG_LOADER + DEBUG_FUZZ_SCRIPT, str(so)], capture_output=True, text=True, timeout=600
    )
    assert fuzz.returncode == 0, fuzz.stderr
    assert fuzz.stdout.strip() == "ok"


DEBUG_FUZZ_SCRIPT = """
import numpy as np, asyncsnn
from asyncsnn import _engine
from asyncsnn.testing import random_count_input, random_grid_network
rng = np.random.default_rng(0)
for k in range(60):
    net = random_grid_network(rng, ("dense", "conv", "skip")[k % 3])
    x = random_count_input(rng, net, batch=3, timesteps=int(rng.integers(1, 5)), max_count=int(rng.integers(1, 10**6)))
    for opts in (dict(scheduler="random", forward_group_size=int(rng.integers(1, 4)), refractory_dropout=0.9),
                 dict(scheduler="momentum", jitter=float(rng.random()), stop="first_output"),
                 dict(scheduler="layered", max_steps=int(rng.integers(1, 3)))):
        asyncsnn.infer(net, x, sample_ids=rng.integers(0, 2**32, 3), seed=int(rng.integers(0, 2**63)), **opts)
    # Straight to the binding, past the Python checks: the engine's own validation answers.
    bad = x.reshape(3, x.shape[1], -1).copy()
    bad[1, 0, 0] = (np.nan, -1.0, np.inf)[k % 3]
    for args in ((bad, None, bad.shape[1]), (None, [(np.array([9], np.uint32), np.array([0], np.uint32),
                                                      np.array([1], np.float32))] * 3, 2)):
        try:
            _engine.run(net._engine_network(), *args, None, np.arange(3, dtype=np.uint64), "fifo", 1, "drain",
                        0, None, 0, 0.0, None, 1)
            raise SystemExit("bad input accepted")
        except asyncsnn.InputError:
            pass
print("ok")
"""


# ===================================================================== concurrency
def _concurrent_equals_sequential(infer: Callable[..., Any], batches: int) -> None:
    rng = np.random.default_rng(41)
    net = random_grid_network(rng, "conv")
    xs = [random_count_input(rng, net, batch=2, timesteps=3) for _ in range(batches)]
    opts: dict[str, Any] = {"scheduler": "random", "forward_group_size": 2, "refractory_dropout": 0.2}
    expected = [infer(net, x, **opts) for x in xs]
    got: list[Any] = [None] * batches
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            got[i] = infer(net, xs[i], **opts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for e, g in zip(expected, got):
        assert_results_equal(e, g)


def test_reference_engine_from_several_threads_equals_sequential() -> None:
    _concurrent_equals_sequential(asyncsnn.reference.infer, 4)


@needs_torch
def test_torch_engine_from_several_threads_equals_sequential() -> None:
    _concurrent_equals_sequential(asyncsnn_torch.infer, 3)


def test_rust_engine_from_many_threads_with_errors_in_between() -> None:
    """Failing calls (typed errors) interleaved with good ones leave nothing dirty behind."""
    rng = np.random.default_rng(42)
    net = random_grid_network(rng, "skip")
    x = random_count_input(rng, net, batch=20, timesteps=4)
    expected = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1)
    bad = x.copy()
    bad[3, 2, 0] = -1
    failures: list[str] = []

    def work(i: int) -> None:
        for _ in range(5):
            try:
                asyncsnn.infer(net, bad, scheduler="fifo", forward_group_size=1, threads=1 + i % 3)
                failures.append("bad input accepted")
            except InputError:
                pass
            res = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1, threads=1 + i % 3)
            if _digest(res) != _digest(expected):
                failures.append(f"thread {i} differs")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures

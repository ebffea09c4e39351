"""Data-parallel training under torchrun, and the ``device`` option.

Two CPU processes (gloo) started by ``torchrun --standalone`` train the scenarios of
``_distributed_worker.py``: each rank must return exactly the same network and history
as the other, and both must equal the single-process run with the same (global) batch
size up to float rounding -- with shards of unequal size, a rank without any sample in
the last batch, the random scheduler, refractory dropout, a sharded test set, and a
checkpoint written by rank 0 and resumed. Every child runs in its own session with a
timeout, so a hang fails the test with the children's output instead of blocking.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import asyncsnn  # noqa: E402
from asyncsnn.cli import main  # noqa: E402
from asyncsnn.exceptions import ParameterError  # noqa: E402
from asyncsnn.torch import AsyncSNN, train  # noqa: E402
from asyncsnn.torch.training import resolve_device  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402

WORKER = Path(__file__).parent / "_distributed_worker.py"
TIMEOUT = 300  # seconds for one torchrun launch (about 20 s on an idle 2-core machine)
TORCHRUN_ENV = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
# PYTHONFAULTHANDLER: a worker that dies of a signal (SIGABRT from C++) prints every
# thread's Python stack into the output that a failure shows.
ENV = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV} | {
    "OMP_NUM_THREADS": "1",
    "PYTHONFAULTHANDLER": "1",
}
HAS_GLOO = dist.is_available() and dist.is_gloo_available()


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # The children run with one thread: the same arithmetic here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torchrun(args: list[str], cwd: Path) -> str:
    """Run ``torchrun --standalone --nproc_per_node 2 ARGS``; its output, or a failure showing it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers: a session of their own
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT} s: {' '.join(cmd)}\n--- output ---\n{out}")
    if proc.returncode != 0:
        pytest.fail(f"torchrun exited with {proc.returncode}: {' '.join(cmd)}\n--- output ---\n{out}")
    return out


@pytest.mark.skipif(not HAS_GLOO, reason="torch.distributed with gloo is not available")
def test_two_gloo_ranks_equal_the_single_process_run(tmp_path: Path) -> None:
    torchrun([str(WORKER), str(tmp_path)], cwd=tmp_path)
    for name in worker.SCENARIOS:
        ranks = [json.loads((tmp_path / f"{name}.rank{r}.json").read_text()) for r in (0, 1)]
        assert ranks[0]["world_size"] == 2, "the workers did not train with DDP"
        # Every rank returns the same network and the same (global) history.
        assert ranks[0]["weights"] == ranks[1]["weights"]
        assert ranks[0]["history"] == ranks[1]["history"]
        single = worker.run(name, distributed=False)
        for w_single, w_dist in zip(single["weights"], ranks[0]["weights"], strict=True):
            np.testing.assert_allclose(np.array(w_dist), np.array(w_single), rtol=1e-5, atol=1e-6)
        for key, values in single["history"].items():
            if key == "wall_time":
                continue
            got = ranks[0]["history"][key]
            if values[0] is None:
                assert got == values, key
            else:
                np.testing.assert_allclose(got, values, rtol=1e-5, err_msg=key)
        assert len(ranks[0]["history"]["loss"]) == 2
    # Rank 0 wrote the checkpoints; the other rank saw them complete when train() returned.
    layered = [json.loads((tmp_path / f"layered.rank{r}.json").read_text()) for r in (0, 1)]
    assert (
        layered[0]["checkpoints"] == layered[1]["checkpoints"] == ["epoch_0001.safetensors", "epoch_0002.safetensors"]
    )
    assert not list((tmp_path / "ckpt").glob(".*"))  # no temporary file left


CLI_ARGS = ["train", "--dataset", "digits", "--max-train", "40", "--max-test", "10", "--epochs", "1"]
CLI_ARGS += ["--hidden", "8", "--batch-size", "10", "--scheduler", "fifo", "-F", "4", "--seed", "1", "--no-progress"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GLOO, reason="torch.distributed with gloo is not available")
def test_cli_train_under_torchrun_saves_the_single_process_model(tmp_path: Path) -> None:
    out = torchrun(["-m", "asyncsnn", *CLI_ARGS, "--device", "cpu", "--out", "dist.safetensors"], cwd=tmp_path)
    assert out.count("saved dist.safetensors") == 1  # rank 0 only
    assert main([*CLI_ARGS, "--device", "cpu", "--out", str(tmp_path / "single.safetensors")]) == 0
    dist_net = asyncsnn.load(tmp_path / "dist.safetensors")
    single_net = asyncsnn.load(tmp_path / "single.safetensors")
    for a, b in zip(dist_net.projections, single_net.projections, strict=True):
        np.testing.assert_allclose(a.layer.weight, b.layer.weight, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- devices
def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, default=torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("nonsense", "cuda:999", 3.5):
        with pytest.raises(ParameterError) as info:
            resolve_device(bad)  # type: ignore[arg-type]
        assert info.value.field == "device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_typed_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = worker.data(8, 0)
    with pytest.raises(ParameterError, match="CUDA was requested") as info:
        train(AsyncSNN.from_sizes(worker.SIZES), (x, y), epochs=1, progress=False, device="cuda")
    assert info.value.field == "device"
    with pytest.raises(ParameterError, match="CUDA was requested"):
        resolve_device("cuda:0")
    assert main([*CLI_ARGS, "--device", "cuda", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "CUDA was requested" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_train_on_cpu_and_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*CLI_ARGS, "--max-train", "20", "--hidden", "6"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu.safetensors")]) == 0
    assert "saved" in capsys.readouterr().out
    net = asyncsnn.load(tmp_path / "cpu.safetensors")
    assert net.population_shapes[1] == (6,)
    if not torch.cuda.is_available():  # auto is the CPU here: the very same model
        assert main([*args, "--out", str(tmp_path / "auto.safetensors")]) == 0
        auto = asyncsnn.load(tmp_path / "auto.safetensors")
        for a, b in zip(net.projections, auto.projections, strict=True):
            np.testing.assert_array_equal(a.layer.weight, b.layer.weight)


def test_train_device_auto_and_module_device() -> None:
    x, y = worker.data(12, 0)
    kw: dict[str, Any] = {"epochs": 1, "batch_size": 6, "progress": False, "scheduler": "layered"}
    ref, hist = train(AsyncSNN.from_sizes(worker.SIZES, seed=1), (x, y), **kw)
    for device in ("auto", "cpu", torch.device("cpu")):
        module = AsyncSNN.from_sizes(worker.SIZES, seed=1)
        net, h = train(module, (x, y), device=device, **kw)
        expected = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
        assert next(module.parameters()).device.type == expected
        assert h.loss == pytest.approx(hist.loss, rel=1e-5)
        for a, b in zip(net.projections, ref.projections, strict=True):
            np.testing.assert_allclose(a.layer.weight, b.layer.weight, rtol=1e-5, atol=1e-6)


def test_distributed_option_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = worker.data(8, 0)
    module = AsyncSNN.from_sizes(worker.SIZES)
    with pytest.raises(ParameterError) as info:
        train(module, (x, y), epochs=1, progress=False, distributed="yes")  # type: ignore[arg-type]
    assert info.value.field == "distributed"
    if dist.is_available() and not dist.is_initialized():
        for name in TORCHRUN_ENV:
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ParameterError, match="torchrun") as info:
            train(module, (x, y), epochs=1, progress=False, distributed=True)
        assert info.value.field == "distributed"
        assert not dist.is_initialized()


def test_training_docstring_examples_run() -> None:
    import doctest

    from asyncsnn.torch import training

    result = doctest.testmod(training, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted >= 4

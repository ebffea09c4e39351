"""Ctrl-C during training is prompt and leaves only complete checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _background import as_background_job
from _torch import ONE_THREAD, asyncsnn_torch, needs_torch, one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


# ===================================================================== Ctrl-C, train
TRAIN_SCRIPT = r"""
import signal, sys, time
# Started with SIGINT ignored (as_background_job), as a background job is: restore the
# handler, as a program that wants Ctrl-C must (Python installs none when it is ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import asyncsnn
from asyncsnn.torch import AsyncSNN, train
rng = np.random.default_rng(0)
x = (rng.random((64, 6, 32)) < 0.3).astype(np.float32)
y = rng.integers(0, 4, 64)
module = AsyncSNN.from_sizes([32, 24, 4], seed=0)
print("ready", flush=True)
try:
    train(module, (x, y), epochs=1000, batch_size=32, progress=False, checkpoint_dir=sys.argv[1],
          scheduler="fifo", forward_group_size=4)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


@needs_torch
def test_ctrl_c_during_training_is_prompt_and_leaves_only_complete_checkpoints(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        as_background_job([sys.executable, "-c", TRAIN_SCRIPT, str(ckpt)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ONE_THREAD,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    while not (ckpt / "epoch_0001.safetensors").exists():  # interrupt once checkpoints are being written
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.17)  # somewhere in a later epoch (or a checkpoint write)
    assert proc.poll() is None, "training finished before it could be interrupted"
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a child that ignored the signal must not train on for 1000 epochs
    waited = time.monotonic() - sent
    assert proc.returncode == 42, err
    assert "interrupted" in out
    # Typically well under a second on an idle machine; the bound leaves room for a loaded
    # CI box while still failing if the run went on to the end (minutes).
    assert waited < 10.0, f"KeyboardInterrupt took {waited:.2f} s"
    leftovers = sorted(p.name for p in ckpt.iterdir())
    assert all(name.startswith("epoch_") and name.endswith(".safetensors") for name in leftovers), leftovers
    for name in leftovers:
        asyncsnn_torch.load_checkpoint(ckpt / name)


CKPT_INTERRUPT_SCRIPT = r"""
import signal, sys, time
# Started with SIGINT ignored (as_background_job), as a background job is: restore the
# handler, as a program that wants Ctrl-C must (Python installs none when it is ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import torch
import asyncsnn.torch.training as training
from asyncsnn.torch import AsyncSNN, train
import os
real_fsync = os.fsync
def slow_fsync(fd):
    print("saving", flush=True)  # a checkpoint write is under way (its temporary file written)...
    time.sleep(30)               # ...when Ctrl-C arrives
    real_fsync(fd)
os.fsync = slow_fsync
rng = np.random.default_rng(0)
x = (rng.random((16, 3, 8)) < 0.3).astype(np.float32)
y = rng.integers(0, 2, 16)
try:
    train(AsyncSNN.from_sizes([8, 6, 2]), (x, y), epochs=1, batch_size=16, progress=False, checkpoint_dir=sys.argv[1])
except KeyboardInterrupt:
    sys.exit(42)
"""


@needs_torch
@pytest.mark.slow
def test_ctrl_c_inside_a_checkpoint_write_leaves_no_partial_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        as_background_job([sys.executable, "-c", CKPT_INTERRUPT_SCRIPT, str(ckpt)]),
        env=ONE_THREAD,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "saving"
    os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 42, err
    assert list(ckpt.iterdir()) == []

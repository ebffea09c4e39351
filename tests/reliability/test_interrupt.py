"""Ctrl-C interrupts a long ``infer`` promptly (the batch runs in short chunks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from _background import as_background_job

SCRIPT = r"""
import signal, sys, time
import numpy as np
import asyncsnn
# Python maps SIGINT to KeyboardInterrupt only if the parent left it at its default; a
# parent that ignores it (a background job, some job runners) would make the child ignore
# it too. The test starts this child that way (as_background_job) to check the restore.
signal.signal(signal.SIGINT, signal.default_int_handler)
rng = np.random.default_rng(0)
sizes = [64, 512, 512, 10]
net = asyncsnn.Network.sequential(
    input_shape=(64,),
    layers=[asyncsnn.Dense(rng.normal(0.05, 0.2, (m, n))) for n, m in zip(sizes, sizes[1:])],
    threshold=1.0, beta=0.9)
x = (rng.random((3000, 100, 64)) < 0.3).astype(np.float32)
print("ready", flush=True)
try:
    asyncsnn.infer(net, x, scheduler="random", forward_group_size=1)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


def test_ctrl_c_interrupts_a_long_batch_within_a_second() -> None:
    # Started with SIGINT ignored, as a background job is: the child restores the handler.
    proc = subprocess.Popen(as_background_job([sys.executable, "-c", SCRIPT]), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)  # well inside the batch, which takes minutes
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()  # a child that ignored the signal must not run on for minutes
    waited = time.monotonic() - sent
    assert proc.returncode == 42, out
    assert "interrupted" in out
    # Typically well under a second on an idle machine; the bound leaves room for a loaded
    # CI box while still failing if the run went on to the end (minutes).
    assert waited < 10.0, f"KeyboardInterrupt took {waited:.2f} s"

"""Issue 15, items 17-21: the user's first ten minutes (signals, missing extras, CLI, latency, layouts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from _background import as_background_job

# ============================================================ item 17: how a test is started
_PROBE = r"""
import signal, sys
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)
if "--restore" in sys.argv:
    signal.signal(signal.SIGINT, signal.default_int_handler)
print("ready", flush=True)
try:
    sys.stdin.readline()  # blocks until the parent writes, after its SIGINT
except KeyboardInterrupt:
    sys.exit(42)
sys.exit(0)
"""


def _interrupt(argv: list[str]) -> tuple[bool, int]:
    """Start ``argv``, send SIGINT once it is ready, then a line on its stdin.

    Returns whether it started with SIGINT ignored, and its exit code: 42 if the signal
    raised KeyboardInterrupt, 0 if it was ignored (the read then returns the line). No
    timing is involved: the signal is pending in the child before the line is written.
    """
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        ignored = proc.stdout.readline().strip() == "True"
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.stdin.write("go\n")
            proc.stdin.close()
        except BrokenPipeError:  # it already exited on the signal
            pass
        return ignored, proc.wait(timeout=120)


def test_a_background_job_child_ignores_sigint_unless_it_restores_the_handler() -> None:
    """The harness of the Ctrl-C tests: started as a background job, a child ignores SIGINT
    (whatever pytest's own disposition is), and restoring the default handler is what makes
    Ctrl-C raise KeyboardInterrupt in it (the fix of the Ctrl-C tests of issue 15, item 17)."""
    assert _interrupt(as_background_job([sys.executable, "-c", _PROBE])) == (True, 0)
    assert _interrupt(as_background_job([sys.executable, "-c", _PROBE, "--restore"])) == (True, 42)

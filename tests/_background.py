"""Start a Python child the way a shell starts a background job: with SIGINT ignored.

A non-interactive shell (``cmd &`` in a script, some CI and job runners) starts its
background jobs with SIGINT set to ``SIG_IGN``, and a process inherits that disposition
through ``exec``; Python then installs no ``KeyboardInterrupt`` handler. A test that
sends SIGINT to a child must therefore have the child restore the default handler
itself. The tests start such children through :func:`as_background_job`, so that they
see the same (worst) starting state however pytest itself was started.
"""

from __future__ import annotations

import sys

__all__ = ["as_background_job"]

# Ignore SIGINT, then replace this process (same pid) by the real command.
_WRAPPER = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def as_background_job(argv: list[str]) -> list[str]:
    """``argv`` (a command line starting with ``sys.executable``) run with SIGINT ignored.

    The returned command keeps the pid of the real command (the wrapper ``exec``\\ s
    it), so ``os.kill(proc.pid, signal.SIGINT)`` reaches the command itself.
    """
    if not argv or argv[0] != sys.executable:
        raise ValueError(f"expected a command line starting with {sys.executable!r}, got {argv!r}")
    return [sys.executable, "-c", _WRAPPER, *argv[1:]]

"""Run a Python snippet in a fresh interpreter whose address space is capped (``ulimit -v``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_limited(script: str, limit_gib: float, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter whose address space is capped at ``limit_gib``.

    An allocation beyond the cap fails there as it would on a small host, so a test can
    tell a typed error from an abort (exit status -6) without using the memory.
    """
    prelude = textwrap.dedent(
        f"""
        import resource
        _lim = int({limit_gib} * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (_lim, _lim))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

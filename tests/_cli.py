"""Running the ``asyncsnn`` command in-process for the CLI tests."""

from __future__ import annotations

import contextlib
import io

from asyncsnn.cli import main


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``asyncsnn ARGS``: its exit code, stdout and stderr (argparse usage errors included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()

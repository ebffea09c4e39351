"""Where a result came from: package version, commit, semantics version, environment.

Every saved model (:func:`asyncsnn.save`) and every results folder of ``asyncsnn
reproduce`` records :func:`provenance`, so that a number can be traced to the code and
the settings that produced it. The commit is known when the package runs from a git
checkout (an editable install or the source tree); an installed wheel records its
version only.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["git_commit", "provenance"]


def _git(root: Path, *args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not take the index lock
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(path: str | os.PathLike[str]) -> str | None:
    """The commit checked out where ``path`` lies, ``+dirty`` if tracked files changed.

    Parameters
    ----------
    path
        A file or folder inside a git work tree.

    Returns
    -------
    str or None
        The full commit hash (``"<hash>+dirty"`` when tracked files differ from it), or
        None when ``path`` is not in a git work tree or git is not installed.
    """
    start = Path(path).resolve()
    root = start if start.is_dir() else start.parent
    if not any((p / ".git").exists() for p in (root, *root.parents)):
        return None
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if status else commit


@functools.lru_cache(maxsize=1)
def _package_commit() -> str | None:
    return git_commit(Path(__file__).parent)


def _version() -> str:
    try:
        from asyncsnn._engine import __version__

        return __version__
    except ImportError:  # pragma: no cover - the source tree without the extension
        return "unknown"


def provenance() -> dict[str, str]:
    """The package version, commit, ``SPEC_VERSION`` and environment of this process.

    Returns
    -------
    dict of str to str
        ``asyncsnn_version``, ``spec_version``, ``commit`` (only when known, see
        :func:`git_commit`), ``python``, ``numpy``, ``torch`` (only when torch is
        already imported: provenance never imports it) and ``platform``.

    Examples
    --------
    >>> from asyncsnn._provenance import provenance
    >>> info = provenance()
    >>> info["spec_version"]
    '2'
    >>> sorted(set(info) - {"commit", "torch"})
    ['asyncsnn_version', 'numpy', 'platform', 'python', 'spec_version']
    """
    import numpy

    from asyncsnn._spec import SPEC_VERSION

    info = {
        "asyncsnn_version": _version(),
        "spec_version": str(SPEC_VERSION),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    commit = _package_commit()
    if commit:
        info["commit"] = commit
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = str(getattr(torch, "__version__", "unknown"))
    return info

"""Provenance: saved models and results record the version, the commit and SPEC_VERSION."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn import _provenance
from asyncsnn.exceptions import ModelError
from asyncsnn.model_file import read_metadata

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env={**env, "PATH": "/usr/bin:/bin"}
    )


def _net() -> asyncsnn.Network:
    return asyncsnn.Network.sequential(4, [asyncsnn.Dense(np.full((3, 4), 0.5, np.float32))])


@needs_git
def test_git_commit_names_the_checkout_and_marks_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    assert _provenance.git_commit(repo / "pkg") is None  # not yet a repository
    _git(repo, "init", "-q")
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    _git(repo, "add", "pkg/a.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    commit = head.stdout.strip()
    assert _provenance.git_commit(repo / "pkg" / "a.py") == commit
    (repo / "pkg" / "b.py").write_text("untracked files do not make it dirty\n")
    assert _provenance.git_commit(repo / "pkg") == commit
    (repo / "pkg" / "a.py").write_text("x = 2\n")
    assert _provenance.git_commit(repo / "pkg") == commit + "+dirty"


def test_provenance_has_the_versions() -> None:
    info = _provenance.provenance()
    assert info["asyncsnn_version"] == asyncsnn.__version__
    assert info["spec_version"] == str(asyncsnn.SPEC_VERSION)
    assert info["numpy"] == np.__version__
    assert all(isinstance(v, str) and v for v in info.values())


def test_saved_model_records_version_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_provenance, "_package_commit", lambda: "0123abcd+dirty")
    path = tmp_path / "m.safetensors"
    asyncsnn.save(_net(), path, metadata={"training": "momentum"})
    meta = read_metadata(path)
    assert meta["asyncsnn_commit"] == "0123abcd+dirty"
    assert meta["asyncsnn_version"] == asyncsnn.__version__
    assert meta["spec_version"] == "1"  # the lowest version that runs the network (Network.spec_version)
    assert meta["training"] == "momentum"
    monkeypatch.setattr(_provenance, "_package_commit", lambda: None)
    asyncsnn.save(_net(), path)
    assert "asyncsnn_commit" not in read_metadata(path)  # unknown: not recorded, never invented


def test_commit_key_is_reserved(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="asyncsnn_commit"):
        asyncsnn.save(_net(), tmp_path / "m.safetensors", metadata={"asyncsnn_commit": "forged"})
    assert not (tmp_path / "m.safetensors").exists()


def test_record_commit_false_makes_the_bytes_independent_of_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []
    for commit in ("0123abcd", "4567ef01+dirty", None):
        monkeypatch.setattr(_provenance, "_package_commit", lambda c=commit: c)
        path = tmp_path / f"m{len(written)}.safetensors"
        asyncsnn.save(_net(), path, record_commit=False)
        assert "asyncsnn_commit" not in read_metadata(path)
        written.append(path.read_bytes())
    assert written[0] == written[1] == written[2]  # what scripts/make_fixtures.py --check relies on

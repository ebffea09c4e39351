"""The examples in the docstrings and the README run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

MODULES = [
    "asyncsnn.exceptions",
    "asyncsnn.network",
    "asyncsnn._prepare",
    "asyncsnn.engine",
    "asyncsnn.reference",
    "asyncsnn.rng",
    "asyncsnn.testing",
    "asyncsnn.model_file",
    "asyncsnn._provenance",
    "asyncsnn._spread",
    "asyncsnn.streaming",
    "asyncsnn.trace",
    "asyncsnn.data",
    "asyncsnn.data.digits",
    "asyncsnn.data.encoding",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"


def test_readme_quickstart_runs() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.parametrize("name", ["guide.md"])
def test_docs_code_blocks_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files the examples write (model files, traces, plots) land here
    text = (ROOT / "docs" / name).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{name} has no python example"
    namespace: dict[str, object] = {}
    for block in blocks:  # the blocks of one page build on each other
        exec(compile(block, name, "exec"), namespace)


def test_readme_has_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- main-command -->") == 1
    assert text.count("<!-- test-command -->") == 1

"""Structure guard: no function of the ``asyncsnn`` package is over 150 lines.

Every module under ``python/asyncsnn`` is parsed with :mod:`ast`; a function or
method (nested ones included) whose ``def`` to last line spans more than
``MAX_LINES`` lines fails the test, which names each one by qualified name, file
and line count. Split a long function into named pieces by concern instead of
adding it to ``ALLOWED``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "asyncsnn"
MAX_LINES = 150

# Functions allowed over MAX_LINES for now, as (file relative to python/asyncsnn, qualified name).
# Keep this list empty but for work in progress; remove an entry once its function is split.
ALLOWED: frozenset[tuple[str, str]] = frozenset(set())


def long_functions(source: str, limit: int) -> Iterator[tuple[str, int, int]]:
    """``(qualified name, first line, line count)`` of each function in ``source`` over ``limit`` lines."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                assert child.end_lineno is not None
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    yield name, child.lineno, lines
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(source), "")


def package_long_functions(limit: int) -> list[str]:
    """``file::name (N lines, line L)`` of each package function over ``limit`` lines and not allowed."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, line, lines in long_functions(path.read_text(encoding="utf-8"), limit):
            if (rel, name) not in ALLOWED:
                found.append(f"python/asyncsnn/{rel}::{name} ({lines} lines, line {line})")
    return found


def test_no_function_over_the_limit() -> None:
    too_long = package_long_functions(MAX_LINES)
    assert not too_long, f"functions over {MAX_LINES} lines (split them by concern):\n" + "\n".join(too_long)


def test_the_package_is_found() -> None:
    assert (PACKAGE / "__init__.py").is_file()
    assert len(list(PACKAGE.rglob("*.py"))) > 10


def test_the_guard_finds_long_functions() -> None:
    def body(n: int, indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(n))

    source = (
        "def short():\n"  # lines 1-9: 9 lines
        + body(8, "    ")
        + "def long():\n"  # lines 10-31: 22 lines, with a nested function of 11 lines
        + body(10, "    ")
        + "    def inner():\n"
        + body(10, "        ")
        + "class C:\n"  # line 32
        + "    async def method(self):\n"  # lines 33-43: 11 lines
        + body(10, "        ")
    )
    assert list(long_functions(source, 10)) == [("long", 10, 22), ("long.inner", 21, 11), ("C.method", 33, 11)]
    assert list(long_functions(source, 11)) == [("long", 10, 22)]
    assert list(long_functions(source, 22)) == []

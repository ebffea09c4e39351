"""The benchmark scripts' building blocks: workloads, the snnTorch twin, the roofline.

The timings themselves are not tested (noisy); what is tested is that the comparisons
compare like with like: snnTorch's forward of the twin gives the Rust engine's
``layered`` output counts bit for bit, the roofline adds exactly the rows asked for,
and the documentation block is replaced in place without touching the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn._engine import axpy_roofline
from asyncsnn.exceptions import ParameterError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
import compare


@pytest.mark.parametrize("make", [compare.dense_workload, compare.conv_workload])
def test_workloads_are_active_and_on_the_weight_grid(make: object) -> None:
    wl = make()  # type: ignore[operator]
    for proj in wl.network.projections:
        w = np.asarray(proj.layer.weight, dtype=np.float64)
        np.testing.assert_array_equal(w / compare.GRID, np.round(w / compare.GRID))
    res = asyncsnn.infer(wl.network, wl.inputs[:8], scheduler="momentum")
    assert np.all(res.spikes.sum(0) > 0), "every population of a benchmark workload should spike"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("make", [compare.dense_workload, compare.conv_workload])
def test_snntorch_twin_gives_the_layered_output_counts(make: object) -> None:
    pytest.importorskip("snntorch")
    torch = pytest.importorskip("torch")
    wl = make()  # type: ignore[operator]
    x = wl.inputs[:6]
    counts = compare.snntorch_forward(compare.snntorch_model(wl.network), torch.from_numpy(x))
    ref = asyncsnn.infer(wl.network, x, scheduler="layered")
    assert ref.output_counts.sum() > 0
    np.testing.assert_array_equal(counts.reshape(6, -1).numpy().astype(np.int64), ref.output_counts)


def test_roofline_adds_the_listed_rows() -> None:
    w = np.arange(12, dtype=np.float32)
    secs, adds, kernel = axpy_roofline(w, 4, np.array([0, 2, 2], dtype=np.uint32), 5)
    assert adds == 5 * 3 * 4
    assert secs >= 0.0
    assert kernel in ("avx2", "portable")


@pytest.mark.parametrize(
    ("row_len", "rows", "field"),
    [(5, [0], "row_len"), (0, [0], "row_len"), (4, [3], "rows")],
)
def test_roofline_rejects_bad_arguments(row_len: int, rows: list[int], field: str) -> None:
    with pytest.raises(ParameterError, match=field):
        axpy_roofline(np.zeros(12, dtype=np.float32), row_len, np.array(rows, dtype=np.uint32), 1)


def test_doc_block_is_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    doc.write_text("# Title\n\nkept above\n")
    compare.write_doc(doc, "first")
    compare.write_doc(doc, "second")
    text = doc.read_text()
    assert text.startswith("# Title\n\nkept above\n")
    assert "second" in text
    assert "first" not in text
    assert text.count(compare.BEGIN) == 1
    doc.write_text(text + "\nkept below\n")
    compare.write_doc(doc, "third")
    assert doc.read_text().endswith("\nkept below\n")
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_threads_batch1_measures_three_ratios() -> None:
    pytest.importorskip("snntorch")
    import threads_batch1

    ratios = threads_batch1.measure(rounds=1, inner=1, timesteps=5)
    assert set(ratios) == {"alone", "1t after snnTorch", "default after snnTorch"}
    assert all(r > 0 and np.isfinite(r) for r in ratios.values())


def test_train_compare_asynctorch_needs_a_checkout(tmp_path: Path) -> None:
    """``train_compare.py --asynctorch PATH`` without asynctorch under PATH: exit 2, one clear line."""
    script = Path(__file__).resolve().parents[2] / "benches" / "train_compare.py"
    out = subprocess.run(
        [sys.executable, str(script), "--asynctorch", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--asynctorch" in lines[0]
    assert str(tmp_path) in lines[0]


def test_train_instructions_needs_valgrind(tmp_path: Path) -> None:
    """``train_instructions.py`` without valgrind on PATH: exit 2, one line naming it."""
    script = Path(__file__).resolve().parents[2] / "benches" / "train_instructions.py"
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no valgrind
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "valgrind" in lines[0]


def test_train_instructions_checks_the_base_tree(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        pytest.skip("valgrind is not installed")
    script = Path(__file__).resolve().parents[2] / "benches" / "train_instructions.py"
    out = subprocess.run(
        [sys.executable, str(script), "--base", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert "--base" in out.stderr
    assert str(tmp_path) in out.stderr

"""The main job: ``asyncsnn reproduce --quick`` runs end to end; the CLI is documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn.reproduce import ReproduceConfig, findings_paragraph, run_reproduce


def test_reproduce_quick_writes_tables_figures_and_models(tmp_path: Path) -> None:
    cfg = ReproduceConfig(quick=True, out=str(tmp_path), progress=False, max_train=96, max_test=48, hidden=(24, 24))
    report = run_reproduce(cfg, log=lambda _line: None)
    out = tmp_path / "digits-quick"
    for name in report.files:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["cells"]) == 3 * 3 * 2
    assert {c["training"] for c in data["cells"]} == {"layered", "random", "momentum"}
    table = (out / "table.md").read_text()
    assert table.count("\n") == 2 + 18
    # The findings paragraph is computed from the numbers in the table.
    for cell in report.cells:
        if (cell.training, cell.inference, cell.stop) == ("momentum", "momentum", "drain"):
            assert f"{100 * cell.accuracy:.1f} %" in report.findings
    # The saved models are real networks that the engine runs.
    net = asyncsnn.load(out / "model_momentum.safetensors")
    assert net.population_sizes == [64, 24, 24, 10]
    # Layered inference equals layered training's evaluation (same engine, same model).
    lay = next(c for c in report.cells if (c.training, c.inference, c.stop) == ("layered", "layered", "drain"))
    assert 0.0 <= lay.accuracy <= 1.0
    assert lay.forward_steps_per_sample > 0


def test_findings_paragraph_reports_signs_from_numbers() -> None:
    from asyncsnn.reproduce import Cell

    def cell(training: str, inference: str, stop: str, acc: float, spikes: float, steps: float) -> Cell:
        return Cell(training, inference, stop, acc, spikes, 10 * spikes, 50.0, steps, 5.0, 50.0, acc, 0.0, 0.0)

    cells = [
        cell("layered", "momentum", "drain", 0.80, 1000.0, 6.0),
        cell("momentum", "momentum", "drain", 0.85, 600.0, 3.0),
        cell("layered", "layered", "drain", 0.90, 900.0, 3.0),
    ]
    text = findings_paragraph(cells, 8)
    assert "40 % fewer spikes" in text
    assert "+5.0 points" in text
    assert "2.00x" in text
    assert "lost 10.0 points" in text


@pytest.mark.parametrize("command", ["reproduce", "train", "evaluate", "info", "demo"])
def test_every_subcommand_has_help_with_examples(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asyncsnn", command, "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: asyncsnn" in out.stdout
    if command != "info":
        assert "examples:" in out.stdout


def test_cli_train_evaluate_info_round_trip(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    run = [sys.executable, "-m", "asyncsnn"]
    subprocess.run(
        [
            *run,
            "train",
            "--max-train",
            "64",
            "--max-test",
            "32",
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--scheduler",
            "random",
            "--out",
            str(model),
            "--no-progress",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    csv_path, json_path = tmp_path / "per_sample.csv", tmp_path / "summary.json"
    out = subprocess.run(
        [*run, "evaluate", str(model), "--max-test", "20", "--csv", str(csv_path), "--json", str(json_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "accuracy" in out.stdout
    rows = csv_path.read_text().strip().splitlines()
    assert len(rows) == 21
    summary = json.loads(json_path.read_text())
    assert summary["samples"] == 20
    info = subprocess.run([*run, "info", str(model)], check=True, capture_output=True, text=True)
    assert "training: random" in info.stdout
    assert "(16,)" in info.stdout


def test_cli_bad_argument_is_a_clean_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asyncsnn", "evaluate", str(tmp_path / "missing.safetensors")],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr


def test_decision_class_is_first_output_spike_class() -> None:
    net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.array([[2.0, 0.0], [0.0, 2.0]]))], threshold=1.0)
    x = np.array([[[0, 0], [0, 1], [1, 1]]], dtype=np.float32)
    res = asyncsnn.infer(net, x, scheduler="fifo")
    assert res.decision_class.tolist() == [1]
    assert res.steps_to_first_output.tolist() == [2]

"""The main job: ``asyncsnn reproduce --quick`` runs end to end; the CLI is documented."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
from _torch import ONE_THREAD
from asyncsnn.figures import FIGURES, captions, redraw
from asyncsnn.model_file import read_metadata
from asyncsnn.reproduce import (
    F_SWEEP,
    TRAINING_METADATA_KEYS,
    Report,
    ReproduceConfig,
    findings_paragraph,
    run_reproduce,
)

QUICK = ReproduceConfig(
    quick=True, progress=False, max_train=96, max_test=48, hidden=(24, 24), epochs=2, device="cpu", lr=4e-3
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    """One ``reproduce --quick`` run (2 epochs, so that the training curves are curves) shared by the tests."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("reproduce")
    report = run_reproduce(dataclasses.replace(QUICK, out=str(out)), log=lambda _line: None)
    return report, out / "digits-quick"


def _by(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c["training"], c["inference"], c["stop"]): c for c in cells}


def test_reproduce_quick_writes_tables_figures_and_models(quick_run: tuple[Report, Path]) -> None:
    report, out = quick_run
    assert sorted(report.files) == sorted(p.name for p in out.iterdir())
    for name in report.files:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["cells"]) == 3 * 3 * 2
    assert {c["training"] for c in data["cells"]} == {"layered", "random", "momentum"}
    table = (out / "table.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + 18  # the column names and 18 cells
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


def test_results_record_the_provenance_and_every_setting(quick_run: tuple[Report, Path]) -> None:
    _, out = quick_run
    data = json.loads((out / "results.json").read_text())
    prov = data["provenance"]
    assert prov["asyncsnn_version"] == asyncsnn.__version__
    assert prov["spec_version"] == str(asyncsnn.SPEC_VERSION)
    assert prov["numpy"] == np.__version__
    assert prov["torch"] == sys.modules["torch"].__version__
    assert {"python", "platform"} <= set(prov)
    settings = data["settings"]
    expected = {
        "dataset": "digits",
        "forward_group_size": QUICK.forward_group_size,
        "lr": QUICK.lr,
        "epochs": 2,
        "seed": QUICK.seed,
        "loss": QUICK.loss,
        "batch_size": QUICK.batch_size,
        "hidden": [24, 24],
        "threshold": QUICK.threshold,
        "beta": QUICK.beta,
        "max_train": 96,
        "max_test": 48,
        "n_train": 96,
        "n_test": 48,
        "quick": True,
        "device": "cpu",
        "training_schedulers": ["layered", "random", "momentum"],
        "inference_schedulers": ["layered", "random", "momentum"],
        "stops": ["drain", "first_output"],
        "f_sweep": sorted({*F_SWEEP, QUICK.forward_group_size}),
    }
    assert {k: settings[k] for k in expected} == expected
    # table.md names them too, and the provenance, above the table.
    header = (out / "table.md").read_text().split("\n| ")[0]
    for key in ("forward_group_size", "lr", "epochs", "seed", "loss", "batch_size", "threshold", "beta", "device"):
        assert f"{key} = {settings[key]}" in header, key
    assert "hidden = [24, 24]" in header
    assert "training_schedulers = [layered, random, momentum]" in header
    assert f"asyncsnn_version = {asyncsnn.__version__}" in header
    assert f"spec_version = {asyncsnn.SPEC_VERSION}" in header
    if "commit" in prov:
        assert f"commit = {prov['commit']}" in header


def test_saved_models_record_their_training_settings(quick_run: tuple[Report, Path]) -> None:
    _, out = quick_run
    for training in ("layered", "random", "momentum"):
        meta = read_metadata(out / f"model_{training}.safetensors")
        assert set(TRAINING_METADATA_KEYS) <= set(meta)
        assert {k: meta[k] for k in ("training", "dataset", "forward_group_size", "lr", "epochs", "hidden")} == {
            "training": training,
            "dataset": "digits",
            "forward_group_size": "8",
            "lr": str(QUICK.lr),
            "epochs": "2",
            "hidden": "[24, 24]",
        }
        assert (meta["loss"], meta["beta"], meta["threshold"], meta["seed"]) == ("count", "0.9", "1.0", "0")
        assert (meta["batch_size"], meta["max_train"], meta["train_samples"], meta["device"]) == (
            "32",
            "96",
            "96",
            "cpu",
        )


def test_the_f_sweep_is_in_results_json_and_agrees_with_the_table(quick_run: tuple[Report, Path]) -> None:
    _, out = quick_run
    data = json.loads((out / "results.json").read_text())
    rows = data["f_sweep"]
    sizes = data["settings"]["f_sweep"]
    assert len(rows) == 3 * 2 * len(sizes)
    keys = {(r["training"], r["inference"], r["forward_group_size"]) for r in rows}
    assert keys == {(t, i, f) for t in ("layered", "random", "momentum") for i in ("random", "momentum") for f in sizes}
    cells = _by(data["cells"])
    for r in rows:
        if r["forward_group_size"] == QUICK.forward_group_size:  # the same run as the table's drained cell
            cell = cells[(r["training"], r["inference"], "drain")]
            assert r["accuracy"] == cell["accuracy"]
            assert r["spikes_per_sample"] == cell["spikes_per_sample"]
            assert r["steps_to_first_output"] == cell["steps_to_first_output"]
            # The decision latency and its layered baseline are the table's (None: NaN there).
            for key in ("steps_to_decision", "synops_to_decision", "synops_to_correct"):
                for name in (key, f"vs_layered_{key}"):
                    want = cell[name]
                    assert r[name] == want or (r[name] is None and math.isnan(want)), name
    # F = 1 delivers one spike per forward step: never fewer steps to the first output than F = 32.
    for t in ("random", "momentum"):
        one = next(r for r in rows if (r["training"], r["inference"], r["forward_group_size"]) == (t, t, 1))
        big = next(r for r in rows if (r["training"], r["inference"], r["forward_group_size"]) == (t, t, 32))
        assert one["steps_to_first_output"] >= big["steps_to_first_output"]


def test_figures_are_pngs_with_captions_computed_from_the_results(quick_run: tuple[Report, Path]) -> None:
    _, out = quick_run
    data = json.loads((out / "results.json").read_text())
    assert list(data["figures"]) == list(FIGURES)
    assert data["figures"] == captions(data)  # the captions are a function of results.json alone
    figures_md = (out / "figures.md").read_text()
    for name, caption in data["figures"].items():
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(png) > 10_000, name  # drawn, not an empty canvas
        assert f"![{name}]({name})" in figures_md
        assert caption in figures_md
    cells = _by(data["cells"])
    mm, ll = cells[("momentum", "momentum", "drain")], cells[("layered", "layered", "drain")]
    table_caption = data["figures"]["accuracy_vs_cost.png"]
    assert f"({mm['spikes_per_sample']:.0f} vs {ll['spikes_per_sample']:.0f})" in table_caption
    assert f"({100 * mm['accuracy']:.1f} % vs {100 * ll['accuracy']:.1f} %)" in table_caption
    points = 100 * (mm["accuracy"] - ll["accuracy"])
    assert f"at {points:+.1f} points of accuracy" in table_caption
    ratio = mm["vs_layered_steps_to_decision"]
    assert (
        f"stable decision after {mm['steps_to_decision']:.1f} forward steps and {mm['synops_to_decision']:.0f} "
        f"synaptic operations per sample (layered inference of the same model / this: {ratio:.2f}x in steps"
    ) in table_caption
    anytime = data["figures"]["accuracy_vs_extra_steps.png"]
    assert f"layered training and inference: {100 * ll['accuracy']:.1f} %" in anytime
    assert f"trained momentum: {100 * data['sweep']['momentum']['accuracy'][0]:.1f} % at the first" in anytime
    loss = data["history"]["random"]["loss"]
    assert f"random: loss {loss[0]:.3f} -> {loss[-1]:.3f}" in data["figures"]["training_curves.png"]
    test_acc = data["history"]["random"]["test_accuracy"][-1]
    assert f"test accuracy {100 * test_acc:.1f} %" in data["figures"]["training_curves.png"]
    f1 = next(
        r
        for r in data["f_sweep"]
        if (r["training"], r["inference"], r["forward_group_size"]) == ("momentum", "momentum", 1)
    )
    assert f"accuracy {100 * f1['accuracy']:.1f} % at F = 1" in data["figures"]["f_sweep.png"]
    e_mm = mm["cost"]["loihi"]["energy_per_inference_j"] * 1e6
    e_ll = ll["cost"]["loihi"]["energy_per_inference_j"] * 1e6
    assert (
        f"unlayered/momentum {e_mm:.3g} µJ per inference vs {e_ll:.3g} µJ layered" in data["figures"]["energy_time.png"]
    )
    d_mm = mm["cost"]["loihi"]["time_to_decision_s"] * 1e6
    d_ll = ll["cost"]["loihi"]["time_to_decision_s"] * 1e6
    assert f"time to the stable decision {d_mm:.3g} µs vs {d_ll:.3g} µs" in data["figures"]["energy_time.png"]


def test_results_csv_prices_the_decision_latency_on_every_profile(quick_run: tuple[Report, Path]) -> None:
    """results.csv: per profile the times to the first output of a timestep, to correct and to decision, as results.json."""
    import csv

    from asyncsnn.reproduce import COST_KEYS

    _, out = quick_run
    data = json.loads((out / "results.json").read_text())
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(data["cells"])
    for name in ("loihi", "seneca"):
        for key in ("time_to_first_output_s", "time_to_correct_s", "time_to_decision_s", "energy_to_decision_j"):
            assert key in COST_KEYS
            for row, cell in zip(rows, data["cells"]):
                value = cell["cost"][name][key]
                assert row[f"{key}_{name}"] == ("" if value is None else str(value)), (name, key)
    loihi = [c["cost"]["loihi"] for c in data["cells"]]
    assert all(c["time_to_decision_s"] is not None and c["time_to_decision_s"] > 0 for c in loihi)
    assert all(c["time_to_decision_s"] is None for c in (c["cost"]["seneca"] for c in data["cells"]))


def test_redraw_draws_the_figures_of_a_results_json(quick_run: tuple[Report, Path], tmp_path: Path) -> None:
    _, out = quick_run
    data = json.loads((out / "results.json").read_text())
    # Only the training history: only the training curves are drawn (a figure without data is left out).
    (tmp_path / "results.json").write_text(json.dumps({"dataset": "digits", "history": data["history"]}))
    drawn = redraw(tmp_path)
    assert drawn == {"training_curves.png": data["figures"]["training_curves.png"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.md", "results.json", "training_curves.png"]
    assert (tmp_path / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(asyncsnn.InputError, match="JSON object"):
        redraw(tmp_path)


def test_captions_leave_out_figures_without_data() -> None:
    assert captions({}) == {}
    only_history = {"history": {"momentum": {"loss": [2.0, 1.5], "train_accuracy": [0.5, 0.625]}}}
    assert captions(only_history) == {
        "training_curves.png": "Training curves over 2 epochs (first -> last epoch): momentum: loss 2.000 -> 1.500, "
        "training accuracy 62.5 %."
    }


@pytest.mark.parametrize("module", ["asyncsnn.figures", "asyncsnn.reproduce"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


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
            "-F",
            "4",
            "--lr",
            "0.002",
            "--batch-size",
            "16",
            "--loss",
            "rate",
            "--beta",
            "0.8",
            "--threshold",
            "1.5",
            "--reset",
            "subtract",
            "--surrogate-terms",
            "every_step",
            "--input-dropout",
            "0.25",
            "--spike-dropout",
            "0.125",
            "--no-prioritize-input",
            "--seed",
            "3",
            "--device",
            "cpu",
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
    assert summary["settings"]["model_metadata"]["training"] == "random"  # the model's training settings
    assert summary["provenance"]["asyncsnn_version"] == asyncsnn.__version__
    # The model file records every training setting, and info prints them.
    meta = read_metadata(model)
    settings = {
        "training": "random",
        "dataset": "digits",
        "forward_group_size": "4",
        "lr": "0.002",
        "epochs": "1",
        "batch_size": "16",
        "hidden": "[16]",
        "recurrent": "false",
        "bias": "0.0",
        "reset": "subtract",
        "alpha": "0.0",
        "surrogate_terms": "every_step",
        "input_dropout": "0.25",
        "spike_dropout": "0.125",
        "prioritize_input": "false",
        "loss": "rate",
        "beta": "0.8",
        "threshold": "1.5",
        "seed": "3",
        "max_train": "64",
        "max_test": "32",
        "train_samples": "64",
        "device": "cpu",
        "flatten_input": "1",
    }
    assert set(settings) == set(TRAINING_METADATA_KEYS)
    assert {k: meta[k] for k in settings} == settings
    info = subprocess.run([*run, "info", str(model)], check=True, capture_output=True, text=True)
    lines = info.stdout.splitlines()
    for key, value in settings.items():
        assert f"{key}: {value}" in lines, key
    assert f"asyncsnn_version: {asyncsnn.__version__}" in lines
    assert "(16,)" in info.stdout


def test_cli_train_alpha_trains_a_synaptic_network_and_records_it(tmp_path: Path) -> None:
    # R4.12: --alpha gives every population a synaptic current; the model file keeps it
    # (populations.<i>.alpha) and the metadata records it. (Evaluating the model needs
    # an engine that runs synaptic currents: asyncsnn.torch.infer does.)
    pytest.importorskip("torch")
    model = tmp_path / "cuba.safetensors"
    run = [sys.executable, "-m", "asyncsnn"]
    args = ["--max-train", "48", "--max-test", "16", "--epochs", "1", "--hidden", "12", "--batch-size", "16"]
    subprocess.run(
        [*run, "train", *args, "--alpha", "0.75", "--scheduler", "layered", "--device", "cpu", "--out", str(model)],
        check=True,
        capture_output=True,
        text=True,
        env=ONE_THREAD,
    )
    net = asyncsnn.load(model)
    assert all(p.synaptic for p in net.populations)
    assert all(np.all(p.alpha == np.float32(0.75)) for p in net.populations)
    assert read_metadata(model)["alpha"] == "0.75"
    info = subprocess.run([*run, "info", str(model)], check=True, capture_output=True, text=True)
    assert "alpha: 0.75" in info.stdout.splitlines()
    assert "alpha=0.75" in info.stdout  # the architecture shows the synaptic populations
    bad = subprocess.run([*run, "train", "--alpha", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--alpha: must be in [0.0, 1.0], got 1.5" in bad.stderr


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


def test_cells_carry_the_decision_latency_against_layered_inference() -> None:
    from asyncsnn.latency import compare_layered, decision_latency
    from asyncsnn.reproduce import decision_sentence, evaluate_cell

    rng = np.random.default_rng(5)
    net = asyncsnn.Network.sequential(
        (6,), [asyncsnn.Dense(rng.integers(-2, 6, (5, 6)) / 4), asyncsnn.Dense(rng.integers(-2, 6, (3, 5)) / 4)]
    )
    x = rng.integers(0, 2, (8, 4, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    cell = evaluate_cell(net, x, y, "momentum", "momentum", "drain", 2, 0)
    res = asyncsnn.infer(net, x, scheduler="momentum", forward_group_size=2, labels=y)
    lay = asyncsnn.infer(net, x, scheduler="layered", forward_group_size=2, labels=y)
    for name, value in decision_latency(res).means().items():
        assert getattr(cell, name) == value or (math.isnan(value) and math.isnan(getattr(cell, name)))
    for name, value in compare_layered(res, lay).items():
        got = getattr(cell, f"vs_layered_{name}")
        assert got == value or (math.isnan(value) and math.isnan(got))
    assert "stable decision" in decision_sentence(cell)


def test_cli_train_with_biases_and_a_reset_mode(tmp_path: Path) -> None:
    from _cli import run_cli

    model = tmp_path / "m.safetensors"
    args = ["train", "--max-train", "48", "--max-test", "16", "--epochs", "1", "--hidden", "12"]
    args += ["--batch-size", "16", "--lr", "0.01", "--device", "cpu", "--no-progress", "--out", str(model)]
    code, _, err = run_cli([*args, "--reset", "subtract_delayed", "--bias", "0.05"])
    assert code == 0, err
    net = asyncsnn.load(model)
    assert [p.reset for p in net.populations] == ["subtract_delayed", "subtract_delayed"]
    for pop in net.populations:  # trained from 0.05: moved, and still one value per neuron
        assert pop.bias is not None
        assert pop.bias.shape == pop.shape
        assert np.all(np.isfinite(pop.bias))
        assert np.any(pop.bias != np.float32(0.05))
    assert read_metadata(model)["spec_version"] == "2"
    code, _, err = run_cli([*args, "--reset", "halfway"])
    assert code == 2
    assert "invalid choice: 'halfway'" in err
    code, _, err = run_cli([*args, "--bias", "inf"])
    assert code == 2
    assert "--bias: must be a finite number, got inf" in err

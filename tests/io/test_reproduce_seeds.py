"""``asyncsnn reproduce --seeds``: one run per seed, then the mean and spread over the seeds."""

from __future__ import annotations

import csv
import dataclasses
import doctest
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
from _cli import run_cli
from asyncsnn._spread import held, on_seeds, stat
from asyncsnn.figures import FIGURES, captions
from asyncsnn.reproduce import ReproduceConfig, _reuse, findings_over_seeds, run_reproduce_seeds

SEEDS = (0, 1)
ARGS = ["--quick", "--max-train", "96", "--max-test", "48", "--hidden", "24", "24", "--epochs", "2", "--device", "cpu"]
#: Smaller runs for the tests of the seed folders (no figures: matplotlib is hidden there).
TINY = ReproduceConfig(quick=True, progress=False, max_train=32, max_test=16, hidden=(8,), epochs=1, device="cpu")


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``asyncsnn reproduce --quick ... --seeds 0 1`` through the command line, shared by the tests."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("seeds")
    code, stdout, stderr = run_cli(
        ["reproduce", *ARGS, "--no-progress", "--out", str(out), "--seeds", *map(str, SEEDS)]
    )
    assert code == 0, stderr
    return out / "digits-quick", stdout


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def _seed_results(folder: Path) -> list[dict[str, Any]]:
    return [_load(folder / f"seed_{s}" / "results.json") for s in SEEDS]


def _by(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c["training"], c["inference"], c["stop"]): c for c in cells}


def _assert_stat(value: dict[str, Any], per_seed: list[Any]) -> None:
    """``value`` is the mean, std (ddof = 1), min and max of ``per_seed`` (None where a seed has none)."""
    assert value["values"] == per_seed
    have = np.array([v for v in per_seed if v is not None], dtype=float)
    assert value["n"] == have.size
    if not have.size:
        assert value["mean"] is None
        return
    assert value["mean"] == pytest.approx(float(np.mean(have)), rel=1e-12, abs=1e-15)
    assert value["min"] == float(np.min(have))
    assert value["max"] == float(np.max(have))
    if have.size >= 2:
        assert value["std"] == pytest.approx(float(np.std(have, ddof=1)), rel=1e-12, abs=1e-15)


def test_each_seed_folder_is_a_complete_single_run(seeds_run: tuple[Path, str]) -> None:
    folder, stdout = seeds_run
    for seed, data in zip(SEEDS, _seed_results(folder)):
        sub = folder / f"seed_{seed}"
        assert sorted(data["files"]) == sorted(p.name for p in sub.iterdir())
        assert data["settings"]["seed"] == seed
        assert len(data["cells"]) == 18
        assert asyncsnn.load(sub / "model_momentum.safetensors").population_sizes == [64, 24, 24, 10]
        assert f"[seed {seed}] training: momentum" in stdout  # the progress says which seed runs
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no partial folder is left


def test_aggregate_is_the_mean_and_spread_of_the_seeds_results(seeds_run: tuple[Path, str]) -> None:
    folder, _ = seeds_run
    agg = _load(folder / "results.json")
    runs = _seed_results(folder)
    assert agg["seeds"] == list(SEEDS)
    assert agg["seed_folders"] == [f"seed_{s}" for s in SEEDS]
    assert "seed" not in agg["settings"]
    assert agg["settings"]["seeds"] == list(SEEDS)
    assert {k: v for k, v in agg["settings"].items() if k != "seeds"} == {
        k: v for k, v in runs[0]["settings"].items() if k != "seed"
    }
    assert agg["provenance"]["asyncsnn_version"] == asyncsnn.__version__
    cells = [_by(r["cells"]) for r in runs]
    assert len(agg["cells"]) == 18
    for cell in agg["cells"]:
        key = (cell["training"], cell["inference"], cell["stop"])
        for column, value in cell.items():
            if column in ("training", "inference", "stop"):
                continue
            if column == "cost":
                for profile, quantities in value.items():
                    for q, s in quantities.items():
                        _assert_stat(s, [c[key]["cost"][profile][q] for c in cells])
            else:
                _assert_stat(value, [c[key][column] for c in cells])
    for row in agg["f_sweep"]:
        ident = (row["training"], row["inference"], row["forward_group_size"])
        seed_rows = [
            next(r for r in run["f_sweep"] if (r["training"], r["inference"], r["forward_group_size"]) == ident)
            for run in runs
        ]
        _assert_stat(row["accuracy"], [r["accuracy"] for r in seed_rows])
        _assert_stat(row["steps_to_first_output"], [r["steps_to_first_output"] for r in seed_rows])
    for training, h in agg["history"].items():
        for epoch, s in enumerate(h["loss"]):
            _assert_stat(s, [run["history"][training]["loss"][epoch] for run in runs])
    for training, curve in agg["sweep"].items():
        _assert_stat(curve["accuracy"][0], [run["sweep"][training]["accuracy"][0] for run in runs])
    for training, counts in agg["currents_to_spike"].items():
        assert counts == [c for run in runs for c in run["currents_to_spike"][training]]  # pooled


def test_aggregate_table_and_csv_write_mean_and_spread(seeds_run: tuple[Path, str]) -> None:
    folder, _ = seeds_run
    agg = _load(folder / "results.json")
    table = (folder / "table.md").read_text()
    assert table.startswith("# asyncsnn reproduce: digits, 2 seeds\n")
    assert "mean ± standard deviation (ddof = 1) over 2 seeds (0, 1)" in table
    assert "seeds = [0, 1]" in table
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 18
    mm = _by(agg["cells"])[("momentum", "momentum", "drain")]
    acc, spikes = mm["accuracy"], mm["spikes_per_sample"]
    expected = (
        f"| momentum | momentum | drain | {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} % | "
        f"{spikes['mean']:.0f} ± {spikes['std']:.0f} |"
    )
    assert any(row.startswith(expected) for row in rows), expected
    assert all(row.count("±") >= 8 for row in rows[1:])  # every numeric column
    with (folder / "results.csv").open() as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 18
    line = next(r for r in lines if (r["training"], r["inference"], r["stop"]) == ("momentum", "momentum", "drain"))
    assert line["n_seeds"] == "2"
    for s in ("mean", "std", "min", "max"):
        assert float(line[f"accuracy_{s}"]) == acc[s]
    assert float(line["energy_per_inference_j_loihi_mean"]) == mm["cost"]["loihi"]["energy_per_inference_j"]["mean"]


def test_aggregate_findings_count_the_seeds_where_each_claim_holds(seeds_run: tuple[Path, str]) -> None:
    folder, stdout = seeds_run
    agg = _load(folder / "results.json")
    runs = [_by(r["cells"]) for r in _seed_results(folder)]
    text = agg["findings"]
    assert text.startswith("Over 2 seeds (0, 1), mean ± standard deviation (ddof = 1): ")
    assert text in stdout
    for inf in ("momentum", "random"):
        change = np.array(
            [
                (run[(inf, inf, "drain")]["spikes_per_sample"] - run[("layered", inf, "drain")]["spikes_per_sample"])
                / run[("layered", inf, "drain")]["spikes_per_sample"]
                for run in runs
            ]
        )
        fewer = change.mean() < 0
        count = int(np.sum(change < 0)) if fewer else int(np.sum(change > 0))
        claim = f"unlayered/{inf} used "
        sentence = text[text.index(claim) :]
        word = "fewer" if fewer else "more"
        assert re.match(rf"unlayered/{inf} used [0-9.]+ ± [0-9.]+ % {word} spikes per sample", sentence), sentence
        assert f"than the layered-trained model on {count} of 2 seeds" in sentence.split(". ")[0]
        points = np.array(
            [100 * (run[(inf, inf, "drain")]["accuracy"] - run[("layered", inf, "drain")]["accuracy"]) for run in runs]
        )
        direction = "lower" if points.mean() < 0 else "higher"
        held_on = int(np.sum(points < 0)) if points.mean() < 0 else int(np.sum(points > 0))
        assert f"({direction} on {held_on} of 2 seeds; " in sentence.split(". ")[0]


def test_findings_over_seeds_say_on_how_many_seeds_a_claim_holds() -> None:
    def cell(training: str, inference: str, stop: str, acc: list[float], spikes: list[float]) -> dict[str, Any]:
        return {
            "training": training,
            "inference": inference,
            "stop": stop,
            "accuracy": stat(acc),
            "spikes_per_sample": stat(spikes),
            "synops_per_sample": stat([10 * s for s in spikes]),
            "steps_to_first_output": stat([3.0, 3.0, 3.0]),
        }

    cells = [
        cell("layered", "layered", "drain", [0.90, 0.90, 0.90], [900, 900, 900]),
        cell("layered", "momentum", "drain", [0.80, 0.80, 0.95], [1000, 1000, 1000]),
        cell("momentum", "momentum", "drain", [0.85, 0.85, 0.90], [600, 700, 1200]),
        cell("momentum", "momentum", "first_output", [0.84, 0.84, 0.90], [500, 600, 1000]),
    ]
    text = findings_over_seeds(cells, 8, [0, 1, 2])
    # Spikes: -40 %, -30 %, +20 %: fewer on average (17 ± 32 %), on 2 of 3 seeds.
    assert "used 17 ± 32 % fewer spikes per sample than the layered-trained model on 2 of 3 seeds" in text
    # Accuracy: +5, +5, -5 points.
    assert "at +1.7 ± 5.8 points of accuracy (higher on 2 of 3 seeds; 86.7 ± 2.9 % vs 85.0 ± 8.7 %)" in text
    # The layered model under momentum inference: 10, 10, -5 points lower than layered/layered.
    assert "lost 5.0 ± 8.7 points when run asynchronously" in text
    assert "lower asynchronously on 2 of 3 seeds" in text
    # First output: 5000 vs 6000, 6000 vs 7000, 10000 vs 12000 synops: 16 ± 1 % fewer, on 3 of 3 seeds.
    assert "with 16 ± 1 % fewer synaptic operations on 3 of 3 seeds." in text


def test_findings_over_seeds_state_the_decision_latency_against_layered_inference() -> None:
    def cell(training: str, inference: str, **numbers: list[float]) -> dict[str, Any]:
        base = {"accuracy": [0.9] * 3, "spikes_per_sample": [500.0] * 3, "synops_per_sample": [5000.0] * 3}
        base["steps_to_first_output"] = [3.0] * 3
        return {"training": training, "inference": inference, "stop": "drain"} | {
            k: stat(v) for k, v in (base | numbers).items()
        }

    latency = {
        "steps_to_decision": [30.0, 40.0, 50.0],
        "synops_to_decision": [1000.0, 1200.0, 1400.0],
        "steps_to_correct": [10.0, 12.0, 14.0],
        "vs_layered_steps_to_decision": [0.5, 0.6, 0.7],
        "vs_layered_synops_to_decision": [1.2, 1.0, 0.9],
        "vs_layered_steps_to_correct": [0.8, 0.9, 1.6],
        "vs_layered_synops_to_correct": [2.0, 2.0, 2.3],
    }
    cells = [cell("layered", "momentum"), cell("momentum", "momentum", **latency)]
    text = findings_over_seeds(cells, 8, [0, 1, 2])
    assert (
        "Against layered inference of the same model, unlayered/momentum under momentum inference reached its "
        "stable decision after 40.0 ± 10.0 forward steps and 1200 ± 200 synaptic operations per sample "
        "(layered/async: 0.60 ± 0.10x in steps, later on 3 of 3 seeds; 1.03 ± 0.15x in synops, sooner on 1 of 3 "
        "seeds), and its first correct output spike after 12.0 ± 2.0 forward steps (layered/async: 1.10 ± 0.44x "
        "in steps, sooner on 1 of 3 seeds; 2.10 ± 0.17x in synops, sooner on 3 of 3 seeds)."
    ) in text
    # Cells of a results.json from before the decision counters: no sentence, no error.
    assert "stable decision" not in findings_over_seeds(
        [cell("layered", "momentum"), cell("momentum", "momentum")], 8, [0, 1, 2]
    )


def test_aggregate_figures_have_error_bars_and_computed_captions(seeds_run: tuple[Path, str]) -> None:
    folder, _ = seeds_run
    agg = _load(folder / "results.json")
    assert list(agg["figures"]) == list(FIGURES)
    assert agg["figures"] == captions(agg)
    assert sorted(agg["files"]) == sorted(p.name for p in folder.iterdir())
    for name, caption in agg["figures"].items():
        assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
        assert caption in (folder / "figures.md").read_text()
        assert "2 seeds (0, 1)" in caption, name
    cells = _by(agg["cells"])
    mm, ll = cells[("momentum", "momentum", "drain")], cells[("layered", "layered", "drain")]
    acc = mm["accuracy"]
    assert f"seeds; {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} % vs " in agg["figures"]["accuracy_vs_cost.png"]
    change = 100 * (np.array(mm["spikes_per_sample"]["values"]) / np.array(ll["spikes_per_sample"]["values"]) - 1)
    count = int(np.sum(change < 0)) if change.mean() < 0 else int(np.sum(change > 0))
    assert f"per sample than layered/layered on {count} of 2 seeds" in agg["figures"]["accuracy_vs_cost.png"]
    assert "min to the max" in agg["figures"]["training_curves.png"]


def test_seed_and_seeds_together_is_a_command_line_error(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli(["reproduce", "--seed", "1", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert code == 2
    assert "argument --seeds: not allowed with argument --seed" in stderr
    assert stdout == ""
    code, _, stderr = run_cli(["reproduce", "--seeds", "0", "0", "--out", str(tmp_path)])
    assert (code, stderr.strip()) == (2, "asyncsnn: error: invalid --seeds = [0, 0]: names a seed twice")
    code, _, stderr = run_cli(["reproduce", "--resume", "--out", str(tmp_path)])
    assert code == 2
    assert stderr.startswith("asyncsnn: error: invalid --resume = True: reuses seed folders: it needs --seeds")
    assert list(tmp_path.iterdir()) == []


def test_run_reproduce_seeds_checks_its_seeds() -> None:
    for seeds, reason in (([3], "two seeds or more"), ([1, 1], "names a seed twice"), ([0, -1], ">= 0")):
        with pytest.raises(asyncsnn.ParameterError, match=reason) as info:
            run_reproduce_seeds(TINY, seeds)
        assert info.value.field == "seeds"


def _no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_failure_in_a_later_seed_leaves_the_earlier_seed_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    _no_matplotlib(monkeypatch)
    import asyncsnn.reproduce as reproduce

    real = reproduce._train_evaluate_write

    def failing(config: ReproduceConfig, *args: Any, **kwargs: Any) -> Any:
        if config.seed == 1:
            (args[1] / "table.md").write_text("half written")
            raise KeyboardInterrupt
        return real(config, *args, **kwargs)

    monkeypatch.setattr(reproduce, "_train_evaluate_write", failing)
    with pytest.raises(KeyboardInterrupt):
        run_reproduce_seeds(dataclasses.replace(TINY, out=str(tmp_path)), [0, 1], log=lambda _line: None)
    folder = tmp_path / "digits-quick"
    assert sorted(p.name for p in folder.iterdir()) == ["seed_0"]  # no aggregate, no partial seed_1
    data = _load(folder / "seed_0" / "results.json")
    assert sorted(data["files"]) == sorted(p.name for p in (folder / "seed_0").iterdir())


def test_resume_reuses_only_complete_folders_with_the_same_settings_and_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    _no_matplotlib(monkeypatch)
    import asyncsnn._provenance

    clean = {**asyncsnn._provenance.provenance(), "commit": "0" * 40}
    monkeypatch.setattr(asyncsnn._provenance, "provenance", lambda: dict(clean))
    cfg = dataclasses.replace(TINY, out=str(tmp_path))
    first = run_reproduce_seeds(cfg, [0, 1], log=lambda _line: None)
    folder = tmp_path / "digits-quick"
    assert first.reused == []
    before = (folder / "seed_0" / "results.json").read_text()

    lines: list[str] = []
    again = run_reproduce_seeds(cfg, [0, 1], resume=True, log=lines.append)
    assert again.reused == [0, 1]
    assert sum("reused" in line for line in lines) == 2
    assert (folder / "seed_0" / "results.json").read_text() == before  # not written again
    assert again.results["cells"] == first.results["cells"]

    # Other settings: trained again, and the folder replaced (never mixed into the aggregate).
    lines.clear()
    other = run_reproduce_seeds(dataclasses.replace(cfg, lr=0.01), [0, 1], resume=True, log=lines.append)
    assert other.reused == []
    assert any("trained again: other settings (lr = 0.003 there, 0.01 now)" in line for line in lines), lines
    assert _load(folder / "seed_0" / "results.json")["settings"]["lr"] == 0.01
    assert _load(folder / "results.json")["settings"]["lr"] == 0.01

    # An incomplete folder, or other code, is not reused either.
    (folder / "seed_1" / "results.csv").unlink()
    monkeypatch.setattr(asyncsnn._provenance, "provenance", lambda: dict(clean, commit="1" * 40))
    lines.clear()
    last = run_reproduce_seeds(dataclasses.replace(cfg, lr=0.01), [0, 1], resume=True, log=lines.append)
    assert last.reused == []
    assert any("[seed 0] trained again: other code or environment (commit = '000" in line for line in lines), lines
    assert any("[seed 1] trained again: incomplete (missing results.csv)" in line for line in lines), lines
    # Nor anything run from a checkout with uncommitted changes (the code may differ).
    settings = _load(folder / "seed_0" / "results.json")["settings"]
    assert _reuse(folder / "seed_0", settings, dict(clean, commit="1" * 40))[0] is not None
    report, why = _reuse(folder / "seed_0", settings, dict(clean, commit="1" * 40 + "+dirty"))
    assert report is None
    assert why.startswith("the code has uncommitted changes")


def test_stat_and_the_seed_counts() -> None:
    s = stat([1.0, None, 3.0, float("nan")])
    assert (s["mean"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 2)
    assert s["std"] == pytest.approx(np.sqrt(2.0))
    assert s["values"] == [1.0, None, 3.0, None]
    assert stat([None, None])["mean"] is None
    assert stat([5.0])["std"] is None
    assert on_seeds(np.array([1.0, -2.0, 3.0]), "higher", "lower") == "higher on 2 of 3 seeds"
    assert on_seeds(np.array([-1.0, -2.0, 0.5]), "higher", "lower") == "lower on 2 of 3 seeds"
    assert held(np.array([-1.0, np.nan])) == " on 1 of 2 seeds"
    assert held(np.array([-1.0])) == ""


def test_spread_docstring_examples_run() -> None:
    result = doctest.testmod(importlib.import_module("asyncsnn._spread"), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0

"""``asyncsnn evaluate``: sweeps over schedulers x F in one table, and hardware-profile columns."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from _cli import run_cli
from asyncsnn.cli import build_parser
from asyncsnn.cost import PROFILES, estimate
from asyncsnn.latency import QUANTITIES, compare_layered, decision_latency, describe
from asyncsnn.reproduce import load_dataset


def _expected(net: asyncsnn.Network, scheduler: str, f: int, n: int = 24) -> asyncsnn.InferenceResult:
    """What evaluate runs for one configuration (its defaults: digits, seed 0, drain)."""
    ds = load_dataset("digits", seed=0, max_train=1, max_test=n)
    x = ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1)
    return asyncsnn.infer(net, x, scheduler=scheduler, forward_group_size=f, labels=ds.test_y)


def test_a_sweep_writes_one_row_per_scheduler_and_f(tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]) -> None:
    path, net = cli_model
    js, cs = tmp_path / "s.json", tmp_path / "s.csv"
    args = ["evaluate", str(path), "--max-test", "24", "--scheduler", "layered", "momentum", "-F", "1", "4"]
    code, out, err = run_cli([*args, "--profile", "loihi", "--profile", "seneca", "--json", str(js), "--csv", str(cs)])
    assert code == 0, err
    configs = [("layered", 1), ("layered", 4), ("momentum", 1), ("momentum", 4)]
    # The table: a header, a rule, one row per configuration, in order.
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("scheduler"))
    cost_head = lines[head].split("lay/dec syn", 1)[1].split()
    assert cost_head == [
        "uJ/inf",
        "loihi",
        "uJ->dec",
        "loihi",
        "us/inf",
        "loihi",
        "us->ok",
        "loihi",
        "us->dec",
        "loihi",
        "uJ/inf",
        "seneca",
        "uJ->dec",
        "seneca",
    ]
    assert "us->ok" in out
    assert "stable decision" in out
    rows = lines[head + 2 : head + 2 + len(configs)]
    assert [tuple(r.split()[:2]) for r in rows] == [(s, str(f)) for s, f in configs]
    # Progress on stderr, one line per configuration.
    assert len([line for line in err.splitlines() if line.startswith("evaluate: ")]) == len(configs)
    # --json: one summary per configuration, equal to a run of that configuration.
    data = json.loads(js.read_text())
    assert data["samples"] == 24
    assert [(c["options"]["scheduler"], c["options"]["forward_group_size"]) for c in data["configurations"]] == configs
    for (scheduler, f), summary, row in zip(configs, data["configurations"], rows):
        res = _expected(net, scheduler, f)
        assert summary["accuracy"] == res.accuracy
        assert summary["mean_synops"] == float(res.synops.mean())
        cost = estimate(res, net, PROFILES["loihi"])
        loihi = summary["cost"]["loihi"]
        assert loihi["execution"] == ("layered" if scheduler == "layered" else "asynchronous")
        assert loihi["mean_energy_per_inference_j"] == cost.mean_energy_per_inference
        assert loihi["mean_time_to_decision_s"] == cost.mean_time_to_decision
        assert loihi["mean_time_to_correct_s"] == cost.mean_time_to_correct
        assert loihi["mean_time_to_first_output_s"] == cost.mean_time_to_first_output
        assert summary["cost"]["seneca"]["mean_time_per_inference_s"] is None
        seneca = estimate(res, net, PROFILES["seneca"])
        assert summary["cost"]["seneca"]["mean_energy_to_decision_j"] == seneca.mean_energy_to_decision
        # The last 7 cells: loihi's energy, energy to decision, time, time to correct and to decision, then seneca's two.
        want = [
            cost.mean_energy_per_inference,
            cost.mean_energy_to_decision,
            cost.mean_time_per_inference,
            cost.mean_time_to_correct,
            cost.mean_time_to_decision,
            seneca.mean_energy_per_inference,
            seneca.mean_energy_to_decision,
        ]
        assert row.split()[-7:] == [format(v * 1e6, ".4g") for v in want]
        # The decision latency the guide defines, priced: steps and synops to the stable decision from the sample's start.
        lat = decision_latency(res)
        has = lat.steps_to_decision >= 0
        t_bar = 113e-9 if scheduler == "layered" else 0.0
        updates = net.n_neurons * (res.decision_timestep[has] + 1)
        by_hand = (lat.synops_to_decision[has] * 3.5e-9 + updates * 8.4e-9) / cost.cores_used
        assert cost.mean_time_to_decision == pytest.approx(float((by_hand + lat.steps_to_decision[has] * t_bar).mean()))
    # --csv: scheduler and F first, one row per configuration x sample, cost columns last.
    with cs.open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(configs) * 24
    assert next(iter(table[0])) == "scheduler"
    assert list(table[0])[1] == "forward_group_size"
    assert list(table[0])[-12:] == [
        f"{key}_{name}"
        for name in ("loihi", "seneca")
        for key in (
            "energy_per_inference_j",
            "time_per_inference_s",
            "time_to_correct_s",
            "time_to_decision_s",
            "energy_to_correct_j",
            "energy_to_decision_j",
        )
    ]
    momentum4 = [r for r in table if r["scheduler"] == "momentum" and r["forward_group_size"] == "4"]
    cost = estimate(_expected(net, "momentum", 4), net, PROFILES["loihi"])
    got = np.array([float(r["energy_per_inference_j_loihi"]) for r in momentum4])
    np.testing.assert_allclose(got, cost.energy_per_inference, rtol=1e-9)
    assert all(math.isnan(float(r["time_per_inference_s_seneca"])) for r in momentum4)
    for key in ("time_to_correct_s", "time_to_decision_s", "energy_to_decision_j"):
        got = np.array([float(r[f"{key}_loihi"]) for r in momentum4])
        np.testing.assert_allclose(got, getattr(cost, key[:-2]), rtol=1e-9, equal_nan=True)


def test_layered_is_priced_with_barriers_and_costs_more_time_for_the_same_counters(
    cli_model: tuple[Path, asyncsnn.Network],
) -> None:
    path, net = cli_model
    code, out, err = run_cli(
        ["evaluate", str(path), "--max-test", "24", "--scheduler", "layered", "--profile", "loihi"]
    )
    assert code == 0, err
    res = _expected(net, "layered", 8)
    lay, asy = estimate(res, net, "loihi"), estimate(res, net, "loihi", scheduler="momentum")
    assert lay.mean_time_per_inference > asy.mean_time_per_inference
    assert "layered: a barrier per forward step" in out


def test_one_configuration_prints_the_summary_and_keeps_the_old_files(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    path, net = cli_model
    js, cs = tmp_path / "s.json", tmp_path / "s.csv"
    code, out, err = run_cli(["evaluate", str(path), "--max-test", "24", "--json", str(js), "--csv", str(cs)])
    assert code == 0, err
    res = _expected(net, "momentum", 8)
    layered = _expected(net, "layered", 8)  # the decision-latency baseline
    # No profile: the summary and the decision latency against layered inference.
    assert out.strip() == res.summary() + "\n" + describe(res, layered)
    assert err == ""  # no progress for one configuration
    summary = json.loads(js.read_text())
    assert summary["options"]["scheduler"] == "momentum"
    assert summary["cost"] == {}
    assert "configurations" not in summary
    header = cs.read_text().splitlines()[0].split(",")
    assert header == [
        "sample",
        "label",
        "predictions",
        "spikes_total",
        "input_events",
        "synops",
        "forward_steps",
        "dropped_spikes",
        "queue_peak",
        "steps_to_first_output",
        "decision_class",
        *QUANTITIES,
    ]
    rows = list(csv.DictReader(cs.read_text().splitlines()))
    lat = decision_latency(res)
    for name in QUANTITIES:
        assert [int(r[name]) for r in rows] == getattr(lat, name).tolist(), name
    ratios = compare_layered(res, layered)
    for name in QUANTITIES:
        got = summary["decision_latency"]["layered_over_async"][name]
        assert got == (None if math.isnan(ratios[name]) else ratios[name]), name
        assert summary["decision_latency"]["mean"][name] == lat.means()[name], name
    # With a profile: the cost lines after the summary, for the run and for the layered baseline;
    # six columns at the end of the CSV.
    code, out, err = run_cli(["evaluate", str(path), "--max-test", "24", "--profile", "loihi", "--csv", str(cs)])
    assert code == 0, err
    head = res.summary() + "\n" + describe(res, layered)
    assert out.startswith(head)
    cost = estimate(res, net, PROFILES["loihi"])
    baseline = estimate(layered, net, PROFILES["loihi"])
    assert baseline.execution == "layered"
    assert out[len(head) :].strip("\n").split("\n") == [
        *cost.summary().split("\n"),
        "layered baseline (the same model and input under layered inference, a barrier per forward step):",
        *baseline.summary().split("\n"),
    ]
    assert "time to decision" in cost.summary()
    assert "to the stable decision" in cost.summary()
    assert cs.read_text().splitlines()[0].split(",")[-6:] == [
        "energy_per_inference_j_loihi",
        "time_per_inference_s_loihi",
        "time_to_correct_s_loihi",
        "time_to_decision_s_loihi",
        "energy_to_correct_j_loihi",
        "energy_to_decision_j_loihi",
    ]


def test_a_custom_profile_from_a_json_file(tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]) -> None:
    path, net = cli_model
    chip = {"name": "mychip", "energy_per_synop": 1e-12, "cores": 2, "time_per_synop": 1e-9}
    (tmp_path / "chip.json").write_text(json.dumps(chip))
    js = tmp_path / "s.json"
    code, _out, err = run_cli(
        ["evaluate", str(path), "--max-test", "24", "--profile", f"all,{tmp_path / 'chip.json'}", "--json", str(js)]
    )
    assert code == 0, err
    cost = json.loads(js.read_text())["cost"]
    assert list(cost) == ["loihi", "seneca", "mychip"]
    res = _expected(net, "momentum", 8)
    assert cost["mychip"]["mean_energy_per_inference_j"] == pytest.approx(float(res.synops.mean()) * 1e-12)


@pytest.mark.parametrize(
    ("args", "shows"),
    [
        (["--profile", "truenorth"], "invalid profile = 'truenorth'"),
        (["--profile", "BAD.json"], "BAD.json"),
        (["-F", "0"], "--forward-group-size: must be >= 1, got 0"),
        (["--scheduler", "lifo"], "invalid choice: 'lifo'"),
    ],
)
def test_bad_sweep_or_profile_options_are_one_line_errors(
    args: list[str], shows: str, tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    path, _ = cli_model
    code, out, err = run_cli(
        ["evaluate", str(path), "--max-test", "8", *[a.replace("BAD", str(tmp_path / "no")) for a in args]]
    )
    assert code == 2
    assert out == ""
    assert shows.replace("BAD", str(tmp_path / "no")) in err
    assert "Traceback" not in err


def test_a_profile_file_that_is_not_a_profile_is_a_parameter_error(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    path, _ = cli_model
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "neg.json").write_text(json.dumps({"name": "neg", "energy_per_synop": -1}))
    for name, shows in (("bad.json", "is not JSON"), ("neg.json", "invalid energy_per_synop = -1")):
        code, _out, err = run_cli(["evaluate", str(path), "--profile", str(tmp_path / name)])
        assert code == 2, err
        assert shows in err
        assert len(err.strip().splitlines()) == 1


def test_evaluate_help_documents_sweeps_and_profiles() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(sub.choices["evaluate"].format_help().split())  # type: ignore[attr-defined]
    assert "several make a sweep, one row each (default: momentum)" in text
    assert "(layered ignores F) (default: 8)" in text
    assert "loihi, seneca, all, or a JSON file" in text
    assert "--scheduler layered momentum random -F 1 8 32 --profile all" in text


def test_plot_draws_the_configurations_with_a_caption_from_the_json(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    pytest.importorskip("matplotlib")
    from asyncsnn.figures import evaluate_caption

    path, _ = cli_model
    png, js = tmp_path / "c.png", tmp_path / "c.json"
    args = ["evaluate", str(path), "--max-test", "24", "--scheduler", "layered", "momentum", "-F", "2"]
    code, out, err = run_cli([*args, "--profile", "loihi", "--plot", str(png), "--json", str(js), "--no-progress"])
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    summaries = json.loads(js.read_text())["configurations"]
    caption = evaluate_caption(summaries)
    assert f"wrote {png}: {caption}" in out
    momentum = summaries[1]
    ratio = momentum["decision_latency"]["layered_over_async"]["synops_to_decision"]
    assert f"momentum F=2: accuracy {100 * momentum['accuracy']:.1f} %" in caption
    assert f"{ratio:.2f}x" in caption


def test_profile_all_answers_spikes_decision_time_and_energy_layered_vs_asynchronous(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    """The issue's one command: spikes, time to a correct decision and energy on every profile, both executions."""
    path, net = cli_model
    js = tmp_path / "s.json"
    code, out, err = run_cli(["evaluate", str(path), "--max-test", "24", "--profile", "all", "--json", str(js)])
    assert code == 0, err
    res, layered = _expected(net, "momentum", 8), _expected(net, "layered", 8)
    assert out.startswith(res.summary())
    assert f"spikes / sample     {res.spikes_total.mean():.1f}" in out
    assert describe(res, layered) in out  # steps to the first correct output spike and the stable decision
    for name in PROFILES:
        asy, lay = estimate(res, net, PROFILES[name]), estimate(layered, net, PROFILES[name])
        assert (asy.execution, lay.execution) == ("asynchronous", "layered")
        assert asy.summary() in out
        assert lay.summary() in out
        assert out.index(asy.summary()) < out.index("layered baseline") < out.index(lay.summary())
        assert json.loads(js.read_text())["cost"][name]["mean_energy_to_decision_j"] == asy.mean_energy_to_decision
    loihi = estimate(res, net, PROFILES["loihi"])
    assert not math.isnan(loihi.mean_time_to_correct)  # the model answers a time to the first correct output
    assert "n/a on seneca (the profile gives no synop time)" in out


def test_evaluate_runs_with_input_and_spike_dropout(tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]) -> None:
    path, net = cli_model
    js = tmp_path / "drop.json"
    args = ["evaluate", str(path), "--max-test", "24", "--scheduler", "momentum", "-F", "4"]
    code, _, err = run_cli([*args, "--input-dropout", "0.3", "--spike-dropout", "0.2", "--json", str(js)])
    assert code == 0, err
    summary = json.loads(js.read_text())
    assert (summary["settings"]["input_dropout"], summary["settings"]["spike_dropout"]) == (0.3, 0.2)
    ds = load_dataset("digits", seed=0, max_train=1, max_test=24)
    x = ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1)
    kw = {"scheduler": "momentum", "forward_group_size": 4, "labels": ds.test_y}
    dropped = asyncsnn.infer(net, x, input_dropout=0.3, spike_dropout=0.2, **kw)  # type: ignore[arg-type]
    plain = asyncsnn.infer(net, x, **kw)  # type: ignore[arg-type]
    # evaluate ran the dropout (fewer input events than the plain run), and its numbers are that run's.
    assert int(dropped.input_events.sum()) < int(plain.input_events.sum())
    assert summary["accuracy"] == pytest.approx(dropped.accuracy)
    code, _, err = run_cli([*args, "--spike-dropout", "1.0"])
    assert code == 2
    assert "spike-dropout" in err


def test_evaluate_schedules_the_input_with_no_prioritize_input(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    path, net = cli_model
    js = tmp_path / "queue.json"
    args = ["evaluate", str(path), "--max-test", "16", "--scheduler", "fifo", "-F", "2"]
    code, _, err = run_cli([*args, "--no-prioritize-input", "--json", str(js)])
    assert code == 0, err
    summary = json.loads(js.read_text())
    assert summary["settings"]["prioritize_input"] is False
    ds = load_dataset("digits", seed=0, max_train=1, max_test=16)
    x = ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1)
    kw = {"scheduler": "fifo", "forward_group_size": 2, "labels": ds.test_y}
    queued = asyncsnn.infer(net, x, prioritize_input=False, **kw)  # type: ignore[arg-type]
    plain = asyncsnn.infer(net, x, **kw)  # type: ignore[arg-type]
    # R4.13: the input takes scheduling slots, so the timesteps run more forward steps.
    assert int(queued.forward_steps.sum()) > int(plain.forward_steps.sum())
    assert summary["mean_forward_steps"] == pytest.approx(float(queued.forward_steps.mean()))
    # momentum has no key for input entries: refused before anything runs.
    code, _, err = run_cli([*args[:-4], "--scheduler", "fifo", "momentum", "--no-prioritize-input"])
    assert code == 2, err
    assert "prioritize_input" in err

"""``asyncsnn trace``: one test sample under layered and asynchronous execution, its events and raster."""

from __future__ import annotations

from pathlib import Path

import pytest

import asyncsnn
from _cli import run_cli
from asyncsnn.reproduce import load_dataset
from asyncsnn.trace import Trace


def test_trace_writes_the_events_of_evaluates_sample_and_a_raster(
    tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]
) -> None:
    pytest.importorskip("matplotlib")
    path, net = cli_model
    out = tmp_path / "t"
    args = ["trace", str(path), "--sample", "5", "--max-test", "20", "--scheduler", "random", "-F", "2"]
    code, text, err = run_cli([*args, "--seed", "3", "--out", str(out)])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["layered.csv", "random.csv", "raster.png"]
    # The sample is row 5 of what `evaluate --max-test 20 --seed 3` runs, with its id.
    ds = load_dataset("digits", seed=3, max_train=1, max_test=20)
    x = ds.test_x.reshape(20, ds.test_x.shape[1], -1)
    for scheduler in ("layered", "random"):
        whole = asyncsnn.infer(net, x, scheduler=scheduler, forward_group_size=2, seed=3, labels=ds.test_y)
        one = asyncsnn.infer(net, x[5:6], scheduler=scheduler, forward_group_size=2, seed=3, sample_ids=[5], trace=True)
        assert one.trace is not None
        assert Trace.read_csv(out / f"{scheduler}.csv") == one.trace
        assert int(one.forward_steps[0]) == int(whole.forward_steps[5])
        assert f"{int(whole.forward_steps[5])} forward steps, {int(whole.spikes_total[5])} spikes" in text
        assert f"prediction {int(whole.predictions[5])} (label {int(ds.test_y[5])})" in text
    assert (out / "raster.png").read_bytes()[:4] == b"\x89PNG"


def test_trace_parquet_and_bad_sample(tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]) -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    path, _ = cli_model
    code, _, err = run_cli(["trace", str(path), "--max-test", "4", "--format", "parquet", "--out", str(tmp_path)])
    assert code == 0, err
    assert len(Trace.read_parquet(tmp_path / "momentum.parquet")) > 0
    code, _, err = run_cli(["trace", str(path), "--max-test", "4", "--sample", "4", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--sample = 4" in err
    assert "4 samples" in err
    assert not (tmp_path / "x").exists()


def test_trace_with_non_prioritised_input(tmp_path: Path, cli_model: tuple[Path, asyncsnn.Network]) -> None:
    pytest.importorskip("matplotlib")
    path, net = cli_model
    out = tmp_path / "t"
    args = ["trace", str(path), "--sample", "2", "--max-test", "8", "--scheduler", "fifo", "-F", "2"]
    code, text, err = run_cli([*args, "--no-prioritize-input", "--out", str(out)])
    assert code == 0, err
    ds = load_dataset("digits", seed=0, max_train=1, max_test=8)
    x = ds.test_x.reshape(8, ds.test_x.shape[1], -1)
    for scheduler in ("layered", "fifo"):
        kw = {"scheduler": scheduler, "forward_group_size": 2, "sample_ids": [2], "trace": True}
        queued = asyncsnn.infer(net, x[2:3], prioritize_input=False, **kw)  # type: ignore[arg-type]
        plain = asyncsnn.infer(net, x[2:3], **kw)  # type: ignore[arg-type]
        assert queued.trace is not None
        assert plain.trace is not None
        written = Trace.read_csv(out / f"{scheduler}.csv")
        assert written == queued.trace
        assert written != plain.trace
        # R4.13 / R7.10: every input entry is delivered (drain), as a population-0 delivery
        inputs = written.of_kind("input")
        deliveries = written.of_kind("delivery")
        assert len(inputs) > 0
        assert int((deliveries.population == 0).sum()) == len(inputs)
        assert f"{int(queued.forward_steps[0])} forward steps" in text
    # momentum (the default --scheduler) refuses it before anything is read or written
    code, _, err = run_cli(["trace", str(path), "--no-prioritize-input", "--out", str(tmp_path / "m")])
    assert code == 2
    assert "prioritize_input" in err
    assert not (tmp_path / "m").exists()

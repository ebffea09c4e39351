"""Issue 15, items 17-21: the user's first ten minutes (signals, missing extras, CLI, latency, layouts)."""

from __future__ import annotations

import argparse
import doctest
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
import asyncsnn.result
from _background import as_background_job
from _cli import run_cli
from asyncsnn import Network
from asyncsnn.cli import build_parser, for_the_command_line, option_help, printable
from asyncsnn.data import digits_split, encode
from asyncsnn.figures import FIGURES
from asyncsnn.reproduce import ReproduceConfig, _write_table, evaluate_cell, load_dataset, run_reproduce
from asyncsnn.testing import assert_results_equal

try:
    import torch
except ImportError:  # pragma: no cover - the [train] extra is not installed
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install asyncsnn[train])")

# ============================================================ item 17: how a test is started
_PROBE = r"""
import signal, sys
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)
if "--restore" in sys.argv:
    signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    print("ready", flush=True)  # inside the try: the signal may come before the print returns
    sys.stdin.readline()  # blocks until the parent writes, after its SIGINT
except KeyboardInterrupt:
    sys.exit(42)
sys.exit(0)
"""


def _interrupt(argv: list[str]) -> tuple[bool, int]:
    """Start ``argv``, send SIGINT once it is ready, then a line on its stdin.

    Returns whether it started with SIGINT ignored, and its exit code: 42 if the signal
    raised KeyboardInterrupt, 0 if it was ignored (the read then returns the line). No
    timing is involved: the signal is pending in the child before the line is written.
    """
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        ignored = proc.stdout.readline().strip() == "True"
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.stdin.write("go\n")
            proc.stdin.close()
        except BrokenPipeError:  # it already exited on the signal
            pass
        return ignored, proc.wait(timeout=120)


def test_a_background_job_child_ignores_sigint_unless_it_restores_the_handler() -> None:
    """The harness of the Ctrl-C tests: started as a background job, a child ignores SIGINT
    (whatever pytest's own disposition is), and restoring the default handler is what makes
    Ctrl-C raise KeyboardInterrupt in it (the fix of the Ctrl-C tests of issue 15, item 17)."""
    assert _interrupt(as_background_job([sys.executable, "-c", _PROBE])) == (True, 0)
    assert _interrupt(as_background_job([sys.executable, "-c", _PROBE, "--restore"])) == (True, 42)


def test_every_test_that_sends_sigint_starts_its_child_as_a_background_job() -> None:
    """A test that sends SIGINT must not depend on how pytest was started: its child is
    started with SIGINT ignored (as_background_job) and restores the handler itself."""
    tests = Path(__file__).resolve().parents[1]
    senders = []
    for path in sorted(tests.rglob("test_*.py")):
        text = path.read_text()
        if re.search(r"(os\.kill|\.send_signal)\([^)]*SIGINT", text):
            senders.append(path.name)
            assert "as_background_job(" in text, f"{path.name} sends SIGINT to a child not started as a background job"
            assert "default_int_handler" in text, f"{path.name}: the child must restore the SIGINT handler"
    assert "test_interrupt.py" in senders
    assert "test_interrupt_training.py" in senders


# ============================================================ item 18: missing optional extras
_WITHOUT = r"""
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # "import torch" now raises ImportError, as without the package
from asyncsnn.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _cli_without(modules: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, modules, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--max-train", "8", "--epochs", "1"],
        ["reproduce", "--quick", "--max-train", "8", "--max-test", "8"],
    ],
    ids=["train", "reproduce"],
)
@pytest.mark.parametrize("missing", ["torch", "tqdm"])
def test_training_commands_without_the_train_extra_say_so_in_one_line(
    args: list[str], missing: str, tmp_path: Path
) -> None:
    proc = _cli_without(missing, *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"asyncsnn: error: asyncsnn {args[0]} needs {missing}"), lines[0]
    assert "pip install 'asyncsnn[train]'" in lines[0]
    assert proc.stdout == ""  # nothing was loaded or trained first
    assert not (tmp_path / "out").exists()


def _random_model(path: Path, seed: int = 0, mean: float = 0.1) -> Network:
    rng = np.random.default_rng(seed)
    net = asyncsnn.Network.sequential(
        (64,),
        [asyncsnn.Dense(rng.normal(mean, 0.3, (32, 64))), asyncsnn.Dense(rng.normal(mean, 0.3, (10, 32)))],
        threshold=1.0,
        beta=0.9,
    )
    asyncsnn.save(net, path)
    return net


def test_evaluate_needs_no_torch(tmp_path: Path) -> None:
    _random_model(tmp_path / "m.safetensors")
    proc = _cli_without("torch", "evaluate", "m.safetensors", "--max-test", "16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout


@needs_torch
def test_reproduce_without_matplotlib_writes_the_results_and_skips_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    lines: list[str] = []
    cfg = ReproduceConfig(
        quick=True, out=str(tmp_path), progress=False, max_train=32, max_test=16, hidden=(8,), epochs=1
    )
    report = run_reproduce(cfg, log=lines.append)
    out = tmp_path / "digits-quick"
    notices = [line for line in lines if "matplotlib" in line]
    assert len(notices) == 1, lines
    assert notices[0].startswith("figures skipped")
    assert sorted(report.files) == sorted(p.name for p in out.iterdir())
    assert not any(name.endswith(".png") for name in report.files)
    data = json.loads((out / "results.json").read_text())
    assert data["files"] == report.files
    assert len(data["cells"]) == 18
    assert sum(line.startswith("| ") for line in (out / "table.md").read_text().splitlines()) == 1 + 18


@needs_torch
def test_reproduce_with_matplotlib_lists_its_figures_in_results_json(tmp_path: Path) -> None:
    cfg = ReproduceConfig(
        quick=True, out=str(tmp_path), progress=False, max_train=32, max_test=16, hidden=(8,), epochs=1
    )
    report = run_reproduce(cfg, log=lambda _line: None)
    out = tmp_path / "digits-quick"
    assert sorted(report.files) == sorted(p.name for p in out.iterdir())
    assert [name for name in report.files if name.endswith(".png")] == list(FIGURES)
    assert json.loads((out / "results.json").read_text())["files"] == report.files


# ============================================================ item 19: the command line
def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    return {"asyncsnn": parser, **subs[0].choices}


def test_every_option_of_every_command_has_help_that_shows_its_default() -> None:
    commands = _commands()
    assert set(commands) == {"asyncsnn", "demo", "reproduce", "train", "evaluate", "trace", "info"}
    for name, parser in commands.items():
        assert parser.description, f"{name} has no description"
        shown = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{what} has no help"
            text = option_help(action)
            assert text is not None
            if action.option_strings:
                assert "default" in text, f"{what} does not show its default: {text!r}"
            assert " ".join(text.split()) in shown, f"{what}: {text!r} is not in --help"


def test_help_shows_the_defaults_that_apply() -> None:
    commands = _commands()
    train_help = " ".join(commands["train"].format_help().split())
    assert "Adam learning rate (default: 0.003)" in train_help
    assert "hidden layer sizes (default: 64 64)" in train_help
    assert "(default: off)" in train_help  # --resume, --no-progress
    demo_help = " ".join(commands["demo"].format_help().split())
    assert "worker threads (default: all cores)" in demo_help
    assert "(default: None)" not in demo_help


@pytest.mark.parametrize(
    ("args", "shows"),
    [
        (["demo", "-F", "0"], "forward_group_size = 0"),
        (["demo", "--threads", "0"], "threads = 0"),
        (["demo", "--samples", "1e9"], "--samples: must be <= 1000000, got 1000000000"),
        (["demo", "--timesteps", "1e6"], "--timesteps: must be <= 100000, got 1000000"),
        (["demo", "--samples", "100000", "--timesteps", "100"], "10000000 input frames"),
        (["demo", "--samples", "2.5"], "invalid int value: '2.5'"),
    ],
)
def test_demo_checks_every_option_before_printing_anything(args: list[str], shows: str) -> None:
    code, out, err = run_cli(args)
    assert code == 2
    assert out == ""
    assert shows in err
    assert "Traceback" not in err


def test_cli_messages_give_command_line_advice_not_python_keywords(tmp_path: Path) -> None:
    """Python-API advice ("pass root=", "download=True", "checkpoint_dir") is translated."""
    _random_model(tmp_path / "m.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["evaluate", str(tmp_path / "m.safetensors"), "--dataset", "fashion-mnist", "--root", str(empty)], "--root"),
        (["train", "--resume", "--max-train", "8"], "--checkpoint-dir"),
        (["demo", "--threads", "0"], "threads"),
    ]
    try:
        import tonic  # noqa: F401
    except ImportError:
        pass
    else:
        model = str(tmp_path / "m.safetensors")
        cases += [
            ([*(["evaluate", model, "--dataset", ds, "--root", str(empty)])], "never downloads")
            for ds in ("nmnist", "shd")
        ]
    for args, shows in cases:
        code, _out, err = run_cli(args)
        assert code == 2, (args, err)
        assert shows in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        for python_advice in ("root=", "download=True", "checkpoint_dir", "or None"):
            assert python_advice not in err, (args, err)


def test_for_the_command_line_rewrites_python_advice() -> None:
    assert for_the_command_line("put them in $X or pass root=").endswith("pass --root FOLDER")
    assert "download=True" not in for_the_command_line(
        "N-MNIST not found: x. Pass download=True to let tonic download it (network needed), or write the files "
        "with the asyncsnn.data.tonic_datasets.export_* functions"
    )
    assert for_the_command_line("invalid resume = True: needs a checkpoint_dir").endswith("needs --checkpoint-dir")
    assert for_the_command_line("invalid root = None: no such folder") == "invalid root = None: no such folder"


def test_info_escapes_control_characters_of_the_metadata(tmp_path: Path) -> None:
    net = _random_model(tmp_path / "plain.safetensors")
    metadata = {
        "note": "line one\nforged: line\x1b[2J\u202e",
        "tab\tkey": "back\\slash",
        "dataset": "digits é",
    }
    asyncsnn.save(net, tmp_path / "m.safetensors", metadata=metadata)
    code, out, err = run_cli(["info", str(tmp_path / "m.safetensors")])
    assert code == 0, err
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\t" not in out
    lines = out.splitlines()
    assert r"note: line one\nforged: line\x1b[2J\u202e" in lines
    assert r"tab\tkey: back\\slash" in lines
    assert "dataset: digits é" in lines  # printable text is left as it is
    assert not any(line.startswith("forged") for line in lines)
    assert printable("a\rb\x00") == r"a\rb\x00"


# ============================================================ item 20: "steps to 1st output"
def test_steps_to_first_output_is_the_same_number_in_evaluate_and_reproduce(tmp_path: Path) -> None:
    net = _random_model(tmp_path / "m.safetensors", seed=0, mean=0.02)  # some timesteps stay silent
    code, out, err = run_cli(
        ["evaluate", str(tmp_path / "m.safetensors"), "--max-test", "40", "--json", str(tmp_path / "s.json")]
    )
    assert code == 0, err
    # What reproduce computes for the same model, data and options (evaluate's defaults).
    ds = load_dataset("digits", seed=0, max_train=1, max_test=40)
    x = ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1)
    cell = evaluate_cell(net, x, ds.test_y, "momentum", "momentum", "drain", 8, 0)
    res = asyncsnn.infer(net, x, labels=ds.test_y)
    assert cell.steps_to_first_output == res.mean_steps_to_first_output
    has = res.first_output_step >= 0
    assert has.any()
    assert not has.all()  # silent timesteps are left out, not counted as 0 or -1
    assert cell.steps_to_first_output == pytest.approx(float(np.mean(res.first_output_step[has] + 1)))
    # evaluate prints and writes that number; the reproduce table shows it with the same digits.
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["mean_steps_to_first_output"] == cell.steps_to_first_output
    line = next(line for line in out.splitlines() if "steps to 1st output" in line)
    assert f" {cell.steps_to_first_output:.2f} " in line
    table = _write_table(tmp_path / "table.md", [cell])
    assert f"| {cell.steps_to_first_output:.2f} |" in table
    # It is not the per-sample latency from the start of the sample (a different quantity).
    per_sample = res.steps_to_first_output
    assert float(per_sample[per_sample >= 0].mean()) != cell.steps_to_first_output


def test_mean_steps_to_first_output_is_nan_without_output_and_its_docstring_runs() -> None:
    net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.zeros((2, 2)))])
    res = asyncsnn.infer(net, np.ones((2, 3, 2), dtype=np.float32))
    assert np.isnan(res.mean_steps_to_first_output)
    assert "steps to 1st output" not in res.summary()
    assert doctest.testmod(asyncsnn.result).failed == 0


# ============================================================ item 21: input layouts
def _digits_net(input_shape: tuple[int, ...]) -> Network:
    rng = np.random.default_rng(5)
    return asyncsnn.Network.sequential(
        input_shape,
        [asyncsnn.Dense(rng.normal(0.05, 0.3, (24, 64))), asyncsnn.Dense(rng.normal(0.1, 0.3, (10, 24)))],
        threshold=1.0,
        beta=0.9,
    )


@pytest.mark.parametrize(
    ("net_shape", "frame_shape"),
    [((64,), (1, 8, 8)), ((64,), (8, 8)), ((1, 8, 8), (64,)), ((1, 8, 8), (8, 8)), ((64,), (64, 1))],
)
def test_any_frame_shape_of_the_input_size_is_read_in_c_order(
    engine: Any, net_shape: tuple[int, ...], frame_shape: tuple[int, ...]
) -> None:
    img, y, _, _ = digits_split()
    x = encode(img[:6], "rate", timesteps=4, seed=0)  # [6, 4, 1, 8, 8]
    assert x.shape == (6, 4, 1, 8, 8)
    net = _digits_net(net_shape)
    flat = x.reshape(6, 4, 64)
    expected = asyncsnn.reference.infer(net, flat, scheduler="fifo", forward_group_size=4, labels=y[:6])
    got = engine(net, x.reshape(6, 4, *frame_shape), scheduler="fifo", forward_group_size=4, labels=y[:6])
    assert_results_equal(got, expected)
    got = engine(net, x.reshape(6, 4, *frame_shape), scheduler="fifo", forward_group_size=4)  # fast path
    assert np.array_equal(got.output_counts, expected.output_counts)


def test_a_frame_of_the_wrong_size_is_still_an_input_error(engine: Any) -> None:
    net = _digits_net((64,))
    with pytest.raises(asyncsnn.InputError, match=r"any \[batch, T, \.\.\.\] of 64 values per frame") as info:
        engine(net, np.zeros((2, 3, 7, 9), dtype=np.float32))
    assert info.value.field == "inputs"


@pytest.mark.parametrize("as_tensor", [False, True])
def test_time_first_inputs_are_an_input_error_when_the_labels_reveal_them(engine: Any, as_tensor: bool) -> None:
    net = _digits_net((64,))
    rng = np.random.default_rng(0)
    x = (rng.random((5, 3, 64)) < 0.3).astype(np.float32)  # [batch 5, T 3, 64]
    y = rng.integers(0, 10, 5)
    time_first: Any = np.swapaxes(x, 0, 1)  # [T 3, batch 5, 64], as snnTorch keeps them
    if as_tensor:
        if torch is None:
            pytest.skip("needs torch")
        time_first = torch.from_numpy(x).transpose(0, 1)
    with pytest.raises(asyncsnn.InputError, match="time-first") as info:
        engine(net, time_first, labels=y)
    assert info.value.field == "inputs"
    assert "transpose(0, 1)" in str(info.value)
    assert "(3, 5, 64)" in str(info.value)
    # The advice works: the transposed tensor is the batch-first input.
    fixed = time_first.transpose(0, 1) if as_tensor else np.swapaxes(time_first, 0, 1)
    assert engine(net, fixed, labels=y).batch_size == 5
    # Labels that fit neither axis keep the usual labels error.
    with pytest.raises(asyncsnn.InputError, match="one label per sample") as info:
        engine(net, x, labels=y[:4])
    assert info.value.field == "labels"


@needs_torch
def test_train_takes_encode_output_as_it_is_and_refuses_time_first_inputs() -> None:
    from asyncsnn.torch import AsyncSNN, train

    img, y, _, _ = digits_split()
    x = encode(img[:32], "rate", timesteps=3, seed=1)  # [32, 3, 1, 8, 8]
    options: dict[str, Any] = {
        "epochs": 1,
        "batch_size": 16,
        "progress": False,
        "scheduler": "fifo",
        "forward_group_size": 8,
    }
    net_a, _ = train(AsyncSNN.from_sizes([64, 16, 10], seed=0), (x, y[:32]), **options)
    net_b, _ = train(AsyncSNN.from_sizes([64, 16, 10], seed=0), (x.reshape(32, 3, 64), y[:32]), **options)
    for pa, pb in zip(net_a.projections, net_b.projections, strict=True):
        assert np.array_equal(pa.layer.weight, pb.layer.weight)
    with pytest.raises(asyncsnn.InputError, match="time-first"):
        train(AsyncSNN.from_sizes([64, 16, 10], seed=0), (np.swapaxes(x, 0, 1), y[:32]), **options)
    with pytest.raises(asyncsnn.InputError, match="time-first"):
        train(
            AsyncSNN.from_sizes([64, 16, 10], seed=0),
            (x, y[:32]),
            test_data=(torch.from_numpy(x).transpose(0, 1), y[:32]),
            **options,
        )

"""``asyncsnn evaluate --json`` and ``asyncsnn info`` record where a number came from and how it was run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from _cli import run_cli
from asyncsnn import _provenance
from asyncsnn.exceptions import ParameterError
from asyncsnn.reproduce import TRAINING_METADATA_KEYS, training_metadata


def _settings(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "training": "momentum",
        "dataset": "digits",
        "forward_group_size": 8,
        "lr": 0.003,
        "epochs": 10,
        "batch_size": 32,
        "hidden": [16],
        "recurrent": False,
        "bias": 0.0,
        "reset": "zero",
        "alpha": 0.0,
        "surrogate_terms": "fired",
        "input_dropout": 0.0,
        "spike_dropout": 0.0,
        "prioritize_input": True,
        "loss": "count",
        "beta": 0.9,
        "threshold": 1.0,
        "seed": 0,
        "max_train": None,
        "max_test": 100,
        "train_samples": 1437,
        "device": "cpu",
        "flatten_input": "1",
    }
    return {**values, **changes}


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_provenance, "_package_commit", lambda: "0123abcd")
    rng = np.random.default_rng(2)
    net = asyncsnn.Network.sequential(
        (64,),
        [asyncsnn.Dense(rng.normal(0.05, 0.3, (16, 64))), asyncsnn.Dense(rng.normal(0.1, 0.3, (10, 16)))],
        threshold=1.0,
        beta=0.9,
    )
    path = tmp_path / "m.safetensors"
    asyncsnn.save(net, path, metadata=training_metadata(**_settings()))
    return path


def test_evaluate_json_records_provenance_and_settings(model: Path, tmp_path: Path) -> None:
    js = tmp_path / "one.json"
    args = ["evaluate", str(model), "--max-test", "12", "--stop", "first_output", "--extra-steps", "2", "--seed", "5"]
    code, _, err = run_cli([*args, "--profile", "loihi", "--json", str(js)])
    assert code == 0, err
    summary = json.loads(js.read_text())
    assert summary["provenance"] == _provenance.provenance()
    assert summary["provenance"]["commit"] == "0123abcd"
    settings = summary["settings"]
    assert settings == {
        "model": str(model),
        "dataset": "digits",
        "root": None,
        "max_test": 12,
        "samples": 12,
        "engine": "rust",
        "schedulers": ["momentum"],
        "forward_group_sizes": [8],
        "stop": "first_output",
        "extra_steps": 2,
        "seed": 5,
        "input_dropout": 0.0,
        "spike_dropout": 0.0,
        "prioritize_input": True,
        "threads": None,
        "profiles": ["loihi"],
        "model_metadata": settings["model_metadata"],
    }
    # The model's own metadata: its training settings and the commit that wrote it.
    assert settings["model_metadata"]["asyncsnn_commit"] == "0123abcd"
    assert {k: settings["model_metadata"][k] for k in TRAINING_METADATA_KEYS} == training_metadata(**_settings())
    # A sweep records the same, once, beside its configurations.
    js = tmp_path / "sweep.json"
    code, _, err = run_cli(
        [*args, "--scheduler", "layered", "random", "-F", "1", "4", "--no-progress", "--json", str(js)]
    )
    assert code == 0, err
    sweep = json.loads(js.read_text())
    assert len(sweep["configurations"]) == 4
    assert sweep["settings"]["schedulers"] == ["layered", "random"]
    assert sweep["settings"]["forward_group_sizes"] == [1, 4]
    assert sweep["provenance"]["spec_version"] == str(asyncsnn.SPEC_VERSION)


def test_info_prints_provenance_then_training_settings(model: Path) -> None:
    code, out, err = run_cli(["info", str(model)])
    assert code == 0, err
    lines = out.splitlines()
    meta = training_metadata(**_settings())
    positions = [lines.index(f"{key}: {meta[key]}") for key in TRAINING_METADATA_KEYS]
    assert positions == sorted(positions)  # in the order of TRAINING_METADATA_KEYS
    assert lines.index("asyncsnn_commit: 0123abcd") < positions[0]
    assert "max_train: null" in lines
    assert "hidden: [16]" in lines


def test_training_metadata_needs_every_setting_and_only_those() -> None:
    meta = training_metadata(**_settings(lr=2e-3, hidden=(64, 32)))
    assert all(isinstance(v, str) for v in meta.values())
    assert (meta["lr"], meta["hidden"], meta["max_train"]) == ("0.002", "[64, 32]", "null")
    settings = _settings()
    del settings["lr"]
    with pytest.raises(ParameterError, match="lr") as missing:
        training_metadata(**settings)
    assert missing.value.field == "lr"
    with pytest.raises(ParameterError, match="surrogate") as unknown:
        training_metadata(**_settings(surrogate="fast_sigmoid"))
    assert unknown.value.field == "surrogate"


def test_info_shows_biases_and_reset_modes(tmp_path: Path) -> None:
    import numpy as np

    net = asyncsnn.Network.sequential(
        (4,),
        [asyncsnn.Dense(np.full((3, 4), 0.25)), asyncsnn.Dense(np.full((2, 3), 0.5))],
        bias=[np.array([0.0, 0.125, 0.25]), 0.0],
        reset=["subtract_delayed", "none"],
    )
    path = tmp_path / "biased.safetensors"
    asyncsnn.save(net, path)
    code, out, err = run_cli(["info", str(path)])
    assert code == 0, err
    lines = out.splitlines()
    assert "trainable weights: 18, biases: 3" in lines
    assert any("bias=per-neuron reset=subtract_delayed" in line for line in lines)
    assert any(line.strip().startswith("pop 2") and line.endswith("reset=none") for line in lines)
    assert "spec_version: 2" in lines

"""Recurrent hidden layers in ``AsyncSNN.from_sizes`` and ``asyncsnn reproduce --recurrent`` (R4.9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn.exceptions import ModelError
from asyncsnn.reproduce import ReproduceConfig, run_reproduce

torch = pytest.importorskip("torch")
from asyncsnn.torch import AsyncSNN  # noqa: E402


def test_from_sizes_recurrent_adds_a_self_projection_per_hidden_layer() -> None:
    plain = AsyncSNN.from_sizes([6, 5, 4, 3], seed=7).network
    rec = AsyncSNN.from_sizes([6, 5, 4, 3], seed=7, recurrent=True).network
    assert [(p.source, p.target) for p in rec.projections] == [(0, 1), (1, 2), (2, 3), (1, 1), (2, 2)]
    assert all(p.recurrent for p in rec.projections[3:])
    assert not any(p.recurrent for p in rec.projections[:3])
    # The forward weights are those of the network without recurrence (drawn first).
    for a, b in zip(plain.projections, rec.projections[:3], strict=True):
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)
    assert rec.projections[3].layer.weight.shape == (5, 5)
    assert rec.settling == (True, True, False)
    assert rec.spec_version == 2
    assert plain.settling == (False, False, False)
    assert plain.spec_version == 1


def test_from_sizes_recurrent_per_layer_and_gain() -> None:
    one = AsyncSNN.from_sizes([6, 5, 4, 3], seed=1, recurrent=[False, False, True], recurrent_gain=2.0).network
    assert [(p.source, p.target) for p in one.projections if p.recurrent] == [(3, 3)]
    small = AsyncSNN.from_sizes([6, 5, 4, 3], seed=1, recurrent=[False, False, True], recurrent_gain=1.0).network
    np.testing.assert_allclose(one.projections[3].layer.weight, 2 * small.projections[3].layer.weight, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recurrent": [True]}, "recurrent"),
        ({"recurrent": "yes"}, "recurrent"),
        ({"recurrent": True, "recurrent_gain": 0.0}, "recurrent_gain"),
        ({"recurrent": True, "recurrent_gain": float("nan")}, "recurrent_gain"),
    ],
)
def test_from_sizes_refuses_bad_recurrent_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ModelError) as info:
        AsyncSNN.from_sizes([6, 5, 4, 3], **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_reproduce_recurrent_randman_trains_and_records_it(tmp_path: Path) -> None:
    config = ReproduceConfig(
        dataset="randman",
        quick=True,
        progress=False,
        max_train=48,
        max_test=24,
        hidden=(12,),
        epochs=1,
        device="cpu",
        recurrent=True,
        out=str(tmp_path),
    )
    report = run_reproduce(config, log=lambda _line: None)
    out = tmp_path / "randman-recurrent-quick"
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["recurrent"] is True
    assert report.settings["recurrent"] is True
    for training in ("layered", "random", "momentum"):
        net = asyncsnn.load(out / f"model_{training}.safetensors")
        assert [(p.source, p.target) for p in net.projections if p.recurrent] == [(1, 1)]
        meta = asyncsnn.model_file.read_metadata(out / f"model_{training}.safetensors")
        assert meta["recurrent"] == "true"
    assert len(report.cells) == 18
    # The recurrent weights were trained: they differ from the initial ones.
    init = AsyncSNN.from_sizes([50, 12, 10], seed=0, recurrent=True).network
    trained = asyncsnn.load(out / "model_momentum.safetensors")
    assert not np.array_equal(init.projections[2].layer.weight, trained.projections[2].layer.weight)

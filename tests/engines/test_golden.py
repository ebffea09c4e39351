"""Every engine reproduces every golden vector of tests/golden/ exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asyncsnn import SPEC_VERSION
from asyncsnn._dictform import network_from_dict
from asyncsnn.result import COUNTER_FIELDS

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(GOLDEN.glob("*.json"))


def load_case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def run_case(engine: Any, case: dict[str, Any]) -> Any:
    net = network_from_dict(case["network"])
    inputs_d = case["inputs"]
    if "dense" in inputs_d:
        inputs: Any = np.asarray(inputs_d["dense"], dtype=np.float32)
        timesteps = None
    else:
        inputs = [np.asarray(ev, dtype=np.float64).reshape(-1, 3) for ev in inputs_d["sparse"]]
        timesteps = inputs_d["timesteps"]
    opts = dict(case["options"])
    return engine(
        net,
        inputs,
        labels=case["labels"],
        sample_ids=case["sample_ids"],
        timesteps=timesteps,
        **opts,
    )


def test_golden_directory_is_populated() -> None:
    assert len(CASES) >= 20
    names = {load_case(p)["name"] for p in CASES}
    assert len(names) == len(CASES)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_engine_matches_golden_vector(engine: Any, path: Path) -> None:
    case = load_case(path)
    assert 1 <= case["spec_version"] <= SPEC_VERSION  # version-1 vectors stay valid (docs/semantics.md)
    # A file records the lowest version that runs its network: 2 exactly when a population settles (R1.6).
    assert case["spec_version"] == network_from_dict(case["network"]).spec_version
    res = run_case(engine, case)
    for field in COUNTER_FIELDS:
        expected = np.asarray(case["expected"][field], dtype=np.int64)
        got = getattr(res, field)
        assert got.shape == expected.shape, f"{path.stem}: {field} shape {got.shape} != {expected.shape}"
        np.testing.assert_array_equal(got, expected, err_msg=f"{path.stem}: {field}")

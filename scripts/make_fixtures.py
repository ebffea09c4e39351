#!/usr/bin/env python3
"""Write the model files read by the pure-Rust test ``tests/model_file.rs`` and bench.

``tests/fixtures/model.safetensors`` is a small network (conv, sum and average pooling,
dense, a skip projection, per-neuron parameters, a refractory dropout) saved by
``asyncsnn.save``; ``tests/fixtures/model_expected.json`` holds inputs, labels, several
run configurations and the counters ``asyncsnn.infer`` returns for them (checked
against the reference engine here). The Rust test reads the model file with
``model_file::read_model_file`` and must reproduce every counter.

``benches/models/conv.safetensors`` is the network of the ``conv`` workload of the
criterion bench ``benches/engine.rs`` (2x34x34 -> conv 8 (k3 s2) -> conv 16 (k3 s2 p1)
-> conv 32 (k3 s2 p1) -> dense 10, threshold 1, beta 0.9), with seeded weights whose
means were tuned so that every layer spikes at a moderate rate on the bench's
N-MNIST-like input (the bench prints the activity); the bench loads it with
``model_file::load_model_file``.

Usage::

    python scripts/make_fixtures.py            # rewrite tests/fixtures/ and benches/models/
    python scripts/make_fixtures.py --check    # exit 1 if the committed files differ

The model files embed the package version (``asyncsnn_version``), so a version bump
changes its bytes but not its meaning; they do not record the commit
(``record_commit=False``), so the check passes on any checkout and on an installed wheel.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import asyncsnn
from asyncsnn import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d
from asyncsnn.result import COUNTER_FIELDS
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODEL = "model.safetensors"
EXPECTED = "model_expected.json"
BENCH_MODELS = ROOT / "benches" / "models"
CONV_BENCH = "conv.safetensors"

RUNS: list[dict[str, Any]] = [
    {"scheduler": "layered", "forward_group_size": 1, "stop": "drain", "extra_steps": 0, "max_steps": None,
     "seed": 0, "jitter": 0.0, "refractory_dropout": "off"},
    {"scheduler": "fifo", "forward_group_size": 3, "stop": "drain", "extra_steps": 0, "max_steps": None,
     "seed": 0, "jitter": 0.0, "refractory_dropout": "off"},
    {"scheduler": "random", "forward_group_size": 2, "stop": "drain", "extra_steps": 0, "max_steps": None,
     "seed": 7, "jitter": 0.0, "refractory_dropout": "network"},
    {"scheduler": "momentum", "forward_group_size": 4, "stop": "first_output", "extra_steps": 1, "max_steps": 12,
     "seed": 3, "jitter": 0.5, "refractory_dropout": "off"},
]  # fmt: skip


def build_network() -> Network:
    rng = np.random.default_rng(20240611)
    shapes = [(1, 6, 6), (2, 6, 6), (2, 3, 3), (2, 2, 2), (3,)]
    pops = [
        Population.create(
            shapes[1], (rng.integers(96, 384, shapes[1]) / 256).astype(np.float32),
            (rng.integers(128, 257, shapes[1]) / 256).astype(np.float32), name="conv",
        ),
        Population.create(shapes[2], 0.75, 0.875, refractory_dropout=0.25, name="sum pool"),
        Population.create(shapes[3], 0.5, 1.0, name="avg pool"),
        Population.create(shapes[4], (rng.integers(512, 1024, 3) / 256).astype(np.float32), 0.9375, name="out"),
    ]  # fmt: skip
    projs = [
        Projection(0, 1, Conv2d(grid_weights(rng, (2, 1, 3, 3), 0.6, 0.25), stride=1, padding=1)),
        Projection(1, 2, SumPool2d(2)),
        Projection(2, 3, AvgPool2d(2, stride=1)),
        Projection(3, 4, Dense(grid_weights(rng, (3, 8), 0.5, 0.2))),
        Projection(1, 4, Dense(grid_weights(rng, (3, 72), 0.15, 0.0))),
    ]
    return Network(shapes[0], pops, projs)


def build() -> tuple[bytes, str]:
    net = build_network()
    rng = np.random.default_rng(7)
    batch, timesteps = 6, 5
    x = random_count_input(rng, net, batch=batch, timesteps=timesteps, density=0.35, max_count=2)
    labels = rng.integers(0, net.n_outputs, batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL
        asyncsnn.save(net, path, metadata={"fixture": "scripts/make_fixtures.py"}, record_commit=False)
        model_bytes = path.read_bytes()
        loaded = asyncsnn.load(path)
    runs = []
    for opts in RUNS:
        result = asyncsnn.infer(loaded, x, labels=labels, **opts)
        assert_results_equal(result, asyncsnn.reference.infer(net, x, labels=labels, **opts))
        assert result.output_counts.sum() > 0, f"no output spike under {opts}"
        runs.append({"options": opts, "expected": {f: getattr(result, f).tolist() for f in COUNTER_FIELDS}})
    assert any(r["expected"]["dropped_spikes"] != [0] * batch for r in runs), "no run stops early"
    doc = {
        "description": "written by scripts/make_fixtures.py; read by tests/model_file.rs",
        "model": MODEL,
        "spec_version": net.spec_version,  # the lowest version that runs it (1: no settling population)
        "input_shape": list(net.input_shape),
        "population_shapes": [list(s) for s in net.population_shapes[1:]],
        "refractory_dropout": [p.refractory_dropout for p in net.populations],
        "timesteps": timesteps,
        "inputs": [[float(v) for v in sample.reshape(-1)] for sample in x],
        "labels": [int(v) for v in labels],
        "runs": runs,
    }
    return model_bytes, json.dumps(doc, indent=1) + "\n"


def build_conv_bench() -> bytes:
    """The ``conv`` workload of ``benches/engine.rs``, as ``asyncsnn.save`` writes it."""
    rng = np.random.default_rng(20251122)
    layers = [
        Conv2d(grid_weights(rng, (8, 2, 3, 3), 0.5, 0.3), stride=2),
        Conv2d(grid_weights(rng, (16, 8, 3, 3), 0.3, 0.05), stride=2, padding=1),
        Conv2d(grid_weights(rng, (32, 16, 3, 3), 0.2, 0.0), stride=2, padding=1),
        Dense(grid_weights(rng, (10, 512), 0.1, 0.0)),
    ]
    net = Network.sequential((2, 34, 34), layers, threshold=1.0, beta=0.9)
    assert net.population_shapes == [(2, 34, 34), (8, 16, 16), (16, 8, 8), (32, 4, 4), (10,)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONV_BENCH
        asyncsnn.save(
            net,
            path,
            metadata={"bench": "benches/engine.rs conv", "writer": "scripts/make_fixtures.py"},
            record_commit=False,
        )
        loaded = asyncsnn.load(path)
        for a, b in zip(loaded.projections, net.projections):
            assert np.array_equal(a.layer.weight, b.layer.weight)
        return path.read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    args = parser.parse_args()
    model_bytes, expected = build()
    files = {
        FIXTURES / MODEL: model_bytes,
        FIXTURES / EXPECTED: expected.encode(),
        BENCH_MODELS / CONV_BENCH: build_conv_bench(),
    }
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, data in files.items() if not p.exists() or p.read_bytes() != data]
        for p in stale:
            print(f"fixture differs: {p}", file=sys.stderr)
        return 1 if stale else 0
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The 25 counters of R7 are listed once (``rust/counters.rs::COUNTERS``); every user agrees.

``_engine.COUNTERS`` exposes the Rust list, ``asyncsnn.result.COUNTER_FIELDS`` is built
from it, and the Python engines (the reference engine is the oracle: it keeps its own
code, only the schema is shared) return exactly these counters with these shapes.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import numpy as np

import asyncsnn
import asyncsnn._engine
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.testing import random_count_input, random_grid_network
from conftest import Engine

ROOT = Path(__file__).resolve().parents[2]
AXES = {"T", "n_out", "P", "n_proj"}


def test_counter_fields_are_the_rust_list_in_its_order() -> None:
    rust = asyncsnn._engine.COUNTERS
    assert isinstance(rust, tuple)
    assert [name for name, _ in rust] == list(COUNTER_FIELDS)
    assert dict(rust) == COUNTER_FIELDS
    assert len(COUNTER_FIELDS) == 25
    assert all(set(axes) <= AXES and isinstance(axes, tuple) for axes in COUNTER_FIELDS.values())


def test_inference_result_declares_every_counter() -> None:
    hints = typing.get_type_hints(InferenceResult)
    arrays = [name for name, hint in hints.items() if hint is np.ndarray]
    assert arrays == list(COUNTER_FIELDS)
    doc = InferenceResult.__doc__ or ""
    for name in COUNTER_FIELDS:  # documented, at least as the suffix of a family (first_output_step / _class)
        assert name in doc or f"_{name.rsplit('_', 1)[1]}" in doc, name


def test_every_counter_is_defined_in_section_7_of_the_semantics() -> None:
    text = (ROOT / "docs" / "semantics.md").read_text(encoding="utf-8")
    section = text[text.index("## 7.") : text.index("## 8.")]
    words = set(re.findall(r"[a-z_]+", section))
    for name in COUNTER_FIELDS:
        assert name in words or name.removesuffix("s") in words, name  # "prediction" in R7.1


def test_every_engine_returns_the_counters_with_their_shapes(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    net = random_grid_network(rng)
    x = random_count_input(rng, net, batch=2, timesteps=3)
    res = engine(net, x, scheduler="fifo", forward_group_size=2, labels=[0, 0])
    sizes = {"T": 3, "n_out": net.n_outputs, "P": len(net.populations), "n_proj": len(net.projections)}
    arrays = res.as_dict()
    assert list(arrays) == list(COUNTER_FIELDS)
    for name, axes in COUNTER_FIELDS.items():
        assert arrays[name].shape == (2, *(sizes[a] for a in axes)), name
        assert arrays[name].dtype == np.int64, name

"""Fixtures of the io tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import asyncsnn


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, asyncsnn.Network]:
    """A saved 64-16-10 model for the digits (the input of ``asyncsnn evaluate`` and ``trace``), and its network."""
    rng = np.random.default_rng(3)
    net = asyncsnn.Network.sequential(
        (64,),
        [asyncsnn.Dense(rng.normal(0.05, 0.3, (16, 64))), asyncsnn.Dense(rng.normal(0.1, 0.3, (10, 16)))],
        threshold=1.0,
        beta=0.9,
    )
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    asyncsnn.save(net, path)
    return path, net

"""Hypothesis strategies shared by the differential tests of the engines."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from asyncsnn.testing import random_count_input, random_grid_network

SCHEDULERS = ["layered", "fifo", "random", "momentum"]


@st.composite
def engine_cases(draw: Any, max_batch: int = 3) -> dict[str, Any]:
    """A random grid network (dense, conv or skip), a count input and every run option."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dense", "conv", "skip", "conv_wide"]))
    net = random_grid_network(rng, kind)
    batch = draw(st.integers(1, max_batch))
    timesteps = draw(st.integers(1, 5))
    x = random_count_input(rng, net, batch, timesteps, density=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    stop = draw(st.sampled_from(["drain", "first_output", "max_steps"]))
    opts: dict[str, Any] = {
        "scheduler": scheduler,
        "forward_group_size": draw(st.sampled_from([1, 2, 3, 8, 1000])),
        "stop": stop,
        "extra_steps": draw(st.integers(0, 3)),
        "max_steps": draw(st.integers(1, 6)) if stop == "max_steps" or draw(st.booleans()) else None,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "jitter": draw(st.sampled_from([0.0, 0.25, 1.0])) if scheduler == "momentum" else 0.0,
        "refractory_dropout": draw(st.sampled_from(["off", "network", 0.5])),
    }
    labels = rng.integers(0, net.n_outputs, batch) if draw(st.booleans()) else None
    return {"net": net, "x": x, "opts": opts, "labels": labels}

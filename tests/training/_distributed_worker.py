"""Scenarios of ``tests/training/test_distributed.py``, and the script that torchrun starts.

``python -m torch.distributed.run --standalone --nproc_per_node 2 _distributed_worker.py OUT``
trains every scenario on each rank (gloo, CPU) and writes ``OUT/<scenario>.rank<r>.json``;
the test runs the same scenarios in a single process and compares.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asyncsnn.torch import AsyncSNN, train

SIZES = [20, 16, 8, 3]


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of 6 timesteps: 3 noisy rate prototypes over 20 inputs."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(0).random((3, SIZES[0])) < 0.4
    y = rng.integers(0, 3, n)
    rates = np.where(protos[y], 0.7, 0.05)[:, None, :]
    return (rng.random((n, 6, SIZES[0])) < rates).astype(np.float32), y


# 36 training samples. "random": batches of 7 (shards of 3 and 4, and a last batch of one
# sample, where rank 0 has nothing), refractory dropout, count loss and a test set of 13.
# "layered": batches of 12, rate loss, one epoch with a checkpoint then resumed to two.
SCENARIOS: dict[str, dict[str, Any]] = {
    "random": {
        "scheduler": "random",
        "forward_group_size": 3,
        "refractory_dropout": 0.2,
        "loss": "count",
        "batch_size": 7,
        "lr": 1e-2,
        "seed": 5,
    },
    "layered": {"scheduler": "layered", "forward_group_size": 4, "loss": "rate", "batch_size": 12, "lr": 2e-2},
}


def run(name: str, ckpt: Path | None = None, **extra: Any) -> dict[str, Any]:
    """Train scenario ``name`` for 2 epochs; weights and history as plain lists."""
    x, y = data(36, 1)
    kw: dict[str, Any] = {**SCENARIOS[name], "progress": False, **extra}
    if name == "random":
        kw["test_data"] = data(13, 2)
    module = AsyncSNN.from_sizes(SIZES, seed=3)
    if ckpt is not None:  # one epoch with checkpoints, then a resumed run to epoch 2
        train(module, (x, y), epochs=1, checkpoint_dir=ckpt, **kw)
        module = AsyncSNN.from_sizes(SIZES, seed=3)
        kw.update(checkpoint_dir=ckpt, resume=True)
    net, hist = train(module, (x, y), epochs=2, **kw)
    weights = [p.layer.weight.tolist() for p in net.projections]
    return {"weights": weights, "history": hist.as_dict()}


def main(out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    for name in SCENARIOS:
        ckpt = out / "ckpt" if name == "layered" else None
        result = run(name, ckpt)
        # train() leaves the process group it initialised for the next call.
        result["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
        result["checkpoints"] = sorted(p.name for p in ckpt.iterdir()) if ckpt is not None else []
        (out / f"{name}.rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

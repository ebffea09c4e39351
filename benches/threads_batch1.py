"""Is ``threads=1`` slower than the default at batch 1? Measured side by side.

At batch 1 the binding runs the sample on the calling thread whatever ``threads`` says
(a thread pool is used only for two or more samples on two or more workers), so the two
settings run the same code. This script times them in three arrangements, each round
robin over ``--rounds`` rounds of ``--inner`` back-to-back calls, best per call:

* ``alone``: ``threads=1`` and the default only;
* ``1t after snnTorch``: snnTorch's forward of the same network timed between them, in
  the order ``threads=1``, default, snnTorch (as ``benches/compare.py`` once did);
* ``default after snnTorch``: the same with the two Rust variants swapped.

A ratio ``threads=1 / default`` far from 1 in the last two arrangements but not in the
first means that what differs is not the engine but what ran just before it (torch's
OpenMP workers spin on the other core for a while after each call).

Usage::

    python benches/threads_batch1.py [--rounds 10] [--inner 20] [--timesteps 100]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

import asyncsnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import best_of, machine, snntorch_forward, snntorch_model


def measure(rounds: int, inner: int, timesteps: int) -> dict[str, float]:
    """``threads=1 / default`` time ratio in each arrangement (see the module docstring)."""
    import torch

    rng = np.random.default_rng(0)
    grid = 2.0**-12  # weights on a grid: snnTorch and the Rust engine agree exactly (R8.2)
    w1 = np.round(rng.normal(0.1, 0.3, (256, 64)) / grid) * grid
    w2 = np.round(rng.normal(0.1, 0.3, (10, 256)) / grid) * grid
    net = asyncsnn.Network.sequential((64,), [asyncsnn.Dense(w1), asyncsnn.Dense(w2)], threshold=1.0, beta=0.9)
    x = (rng.random((1, timesteps, 64)) < 0.2).astype(np.float32)
    model, xt = snntorch_model(net), torch.from_numpy(x)
    one = functools.partial(asyncsnn.infer, net, x, scheduler="layered", threads=1)
    default = functools.partial(asyncsnn.infer, net, x, scheduler="layered")

    def snn() -> Any:
        return snntorch_forward(model, xt)

    alone = best_of({"1t": one, "default": default}, rounds, inner)
    after_1t = best_of({"1t": one, "default": default, "snntorch": snn}, rounds, inner)
    after_default = best_of({"default": default, "1t": one, "snntorch": snn}, rounds, inner)
    return {
        "alone": alone["1t"] / alone["default"],
        "1t after snnTorch": after_1t["1t"] / after_1t["default"],
        "default after snnTorch": after_default["1t"] / after_default["default"],
    }


def main() -> None:
    """Print the three ratios and the machine."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="round-robin rounds (default 10)")
    ap.add_argument("--inner", type=int, default=20, help="back-to-back calls per timing (default 20)")
    ap.add_argument("--timesteps", type=int, default=100, help="timesteps of the sample (default 100)")
    args = ap.parse_args()
    print(machine())
    for name, ratio in measure(args.rounds, args.inner, args.timesteps).items():
        print(f"threads=1 / default, {name}: {ratio:.2f}")


if __name__ == "__main__":
    main()

"""Time and memory of one training epoch: layered BPTT vs unlayered (random, momentum).

Trains the same 784-256-256-10 network (``AsyncSNN.from_sizes``, seed 0) for one epoch
on random rate-coded input (512 samples, T = 10, batch 64, Adam, rate loss) with the
``layered`` scheduler and with ``random`` and ``momentum`` at F = 8, each in a fresh
subprocess with ``torch.set_num_threads(2)``, and prints per scheduler:

* ``epoch s``: wall time of the epoch (``History.wall_time``), best of ``--repeats``;
* ``ratio``: that time divided by the layered time (target: unlayered <= 4x);
* ``steps/sample``, ``spikes/sample``: forward steps and spikes of the training passes;
* ``peak MiB``: growth of the process's peak resident set size (``ru_maxrss``) during
  training, over what it was after building the data and the model. Torch allocations
  are invisible to tracemalloc; ``ru_maxrss`` sees them (CPU only). Each scheduler runs
  in its own process so that one run's peak does not hide another's.

Usage::

    python benches/train_compare.py [--samples 512] [--timesteps 10] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SCHEDULERS = ["layered", "random", "momentum"]


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from asyncsnn.torch import AsyncSNN, train

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    # Rate-coded input: every sample has its own intensity map (mean rate ~0.15/frame).
    rates = rng.beta(0.6, 3.0, (args.samples, 1, 784)).astype(np.float32)
    x = (rng.random((args.samples, args.timesteps, 784)) < rates).astype(np.float32)
    y = rng.integers(0, 10, args.samples)
    best = None
    for _ in range(args.repeats):
        model = AsyncSNN.from_sizes([784, 256, 256, 10], threshold=1.0, beta=0.9, seed=0)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        _, hist = train(
            model,
            (x, y),
            scheduler=args.child,
            forward_group_size=8,
            epochs=1,
            batch_size=64,
            progress=False,
        )
        wall = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        row = {
            "scheduler": args.child,
            "epoch_s": hist.wall_time[0],
            "wall_s": wall,
            "steps": hist.forward_steps_per_sample[0],
            "spikes": hist.spikes_per_sample[0],
            "peak_mib": (rss1 - rss0) / 1024.0,
        }
        if best is None or row["epoch_s"] < best["epoch_s"]:
            best = row
    print(json.dumps(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=SCHEDULERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for sched in SCHEDULERS:
        cmd = [sys.executable, __file__, "--child", sched, "--samples", str(args.samples)]
        cmd += ["--timesteps", str(args.timesteps), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["epoch_s"]
    print(f"784-256-256-10, {args.samples} samples, T={args.timesteps}, batch 64, F=8, 2 threads")
    print(f"{'scheduler':10} {'epoch s':>8} {'ratio':>6} {'steps/sample':>13} {'spikes/sample':>14} {'peak MiB':>9}")
    for r in rows:
        print(
            f"{r['scheduler']:10} {r['epoch_s']:8.2f} {r['epoch_s'] / base:6.2f} {r['steps']:13.1f} "
            f"{r['spikes']:14.1f} {r['peak_mib']:9.1f}"
        )


if __name__ == "__main__":
    main()

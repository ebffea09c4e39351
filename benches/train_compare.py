"""Time and memory of one training epoch: layered BPTT vs unlayered (random, momentum).

Trains the same network (``AsyncSNN.from_sizes``, seed 0; ``--sizes``, default
784-256-256-10) for one epoch on random rate-coded input (512 samples, T = 10, batch
64, Adam, rate loss) with the ``layered`` scheduler and with ``random`` and
``momentum`` at F = 8, each in a fresh subprocess with
``torch.set_num_threads(--threads)`` (default 2), and prints per scheduler:

* ``epoch s``: wall time of the epoch (``History.wall_time``), best of ``--repeats``,
  and ``samples/s``, the training samples per second of that epoch;
* ``cpu s``: CPU time of the process during the epoch (all threads; on a shared
  machine it is less disturbed by other processes than the wall time);
* ``ratio``: wall time divided by the layered wall time (issue 19's target: unlayered
  <= 1.5x), and the same for CPU time;
* ``steps/sample``, ``spikes/sample``: forward steps and spikes of the training passes;
* ``graph MiB``: bytes of the tensors autograd saves for the backward pass of one batch
  (counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once): the
  memory that training through the asynchronous engine costs per batch, independent of
  the allocator and of other processes;
* ``peak MiB``: growth of the process's peak resident set size (``ru_maxrss``) during
  the first epoch over what it was after building the data and the model. Torch allocations
  are invisible to tracemalloc; ``ru_maxrss`` sees them (CPU only). Each scheduler runs
  in its own process so that one run's peak does not hide another's.

``--bias B`` and ``--reset MODE`` give every population that initial bias (trained) and
reset mode (docs/semantics.md R1.4, R4.8): run once with and once without them to see
what settling populations (R4.7) cost in training. ``--recurrent S`` gives
every hidden population a self-recurrent Dense projection (R1.2;
``from_sizes(recurrent=True, recurrent_gain=S)``, trained): compare with
``--recurrent 0`` (default) for what recurrence (R4.9) costs.

Usage::

    python benches/train_compare.py [--sizes 784,256,256,10] [--samples 512] [--timesteps 10]
        [--repeats 1] [--threads 2] [--bias 0.0] [--reset zero] [--recurrent 0.0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

SCHEDULERS = ["layered", "random", "momentum"]


def _graph_mib(model: Any, x: Any, y: Any, scheduler: str, loss_fn: Any) -> float:
    """MiB of the tensors autograd saves for one batch (each storage counted once)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(torch.from_numpy(x), scheduler=scheduler, forward_group_size=8)
        loss = loss_fn(out.counts, torch.from_numpy(y))
    loss.backward()
    return sum(seen.values()) / 2**20


def _sizes(text: str) -> list[int]:
    """``"784,256,256,10"`` -> ``[784, 256, 256, 10]``."""
    return [int(v) for v in text.split(",")]


def _model(args: argparse.Namespace, sizes: list[int], **lif: float) -> Any:
    """The benchmark's model: ``AsyncSNN.from_sizes``, with ``--recurrent`` self-recurrence."""
    from asyncsnn.torch import AsyncSNN

    rec = {"recurrent": True, "recurrent_gain": args.recurrent} if args.recurrent else {}
    return AsyncSNN.from_sizes(sizes, seed=0, bias=args.bias, reset=args.reset, **lif, **rec)  # type: ignore[arg-type]


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from asyncsnn.torch import train

    torch.set_num_threads(args.threads)
    from asyncsnn.torch import rate_loss

    rng = np.random.default_rng(0)
    # Rate-coded input: every sample has its own intensity map (mean rate ~0.17/frame).
    sizes = _sizes(args.sizes)
    n_in = sizes[0]
    rates = rng.beta(0.6, 3.0, (args.samples, 1, n_in)).astype(np.float32)
    x = np.empty((args.samples, args.timesteps, n_in), dtype=np.float32)
    for t in range(args.timesteps):  # frame by frame: no large temporaries before rss0
        x[:, t] = rng.random((args.samples, n_in), dtype=np.float32) < rates[:, 0]
    y = rng.integers(0, sizes[-1], args.samples)
    best: dict[str, Any] | None = None
    first_peak = 0.0
    for rep in range(args.repeats):
        model = _model(args, sizes, threshold=1.0, beta=0.9)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), time.process_time()
        _, hist = train(
            model,
            (x, y),
            scheduler=args.child,
            forward_group_size=8,
            epochs=1,
            batch_size=64,
            progress=False,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        row = {
            "scheduler": args.child,
            "epoch_s": hist.wall_time[0],
            "wall_s": wall,
            "cpu_s": cpu,
            "steps": hist.forward_steps_per_sample[0],
            "spikes": hist.spikes_per_sample[0],
            "peak_mib": (rss1 - rss0) / 1024.0,
        }
        if rep == 0:
            first_peak = row["peak_mib"]  # later repeats start above the first one's peak
        if best is None or row["cpu_s"] < best["cpu_s"]:
            best = row
    assert best is not None
    best["peak_mib"] = first_peak
    graph_model = _model(args, sizes)
    best["graph_mib"] = _graph_mib(graph_model, x[:64], y[:64], args.child, rate_loss)
    print(json.dumps(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="784,256,256,10", help="layer sizes, input first")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bias", type=float, default=0.0, help="initial bias of every neuron (trained when not 0)")
    parser.add_argument("--reset", default="zero", choices=["zero", "subtract", "subtract_delayed", "none"])
    parser.add_argument("--recurrent", type=float, default=0.0, help="self-recurrent weight scale (0: none)")
    parser.add_argument("--child", choices=SCHEDULERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for sched in SCHEDULERS:
        cmd = [sys.executable, __file__, "--child", sched, "--samples", str(args.samples), "--sizes", args.sizes]
        cmd += ["--timesteps", str(args.timesteps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--bias", str(args.bias), "--reset", args.reset, "--recurrent", str(args.recurrent)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base, base_cpu = rows[0]["epoch_s"], rows[0]["cpu_s"]
    net = "-".join(str(n) for n in _sizes(args.sizes))
    neurons = f", bias {args.bias:g}, reset {args.reset}" if args.bias or args.reset != "zero" else ""
    neurons += f", recurrent {args.recurrent:g}" if args.recurrent else ""
    print(f"{net}, {args.samples} samples, T={args.timesteps}, batch 64, F=8, {args.threads} threads{neurons}")
    head = f"{'scheduler':10} {'epoch s':>8} {'samples/s':>9} {'ratio':>6} {'cpu s':>7} {'ratio':>6}"
    print(f"{head} {'steps/sample':>13} {'spikes/sample':>14} {'graph MiB':>10} {'peak MiB':>9}")
    for r in rows:
        print(
            f"{r['scheduler']:10} {r['epoch_s']:8.2f} {args.samples / r['epoch_s']:9.0f} "
            f"{r['epoch_s'] / base:6.2f} {r['cpu_s']:7.2f} "
            f"{r['cpu_s'] / base_cpu:6.2f} {r['steps']:13.1f} {r['spikes']:14.1f} {r['graph_mib']:10.1f} "
            f"{r['peak_mib']:9.1f}"
        )


if __name__ == "__main__":
    main()

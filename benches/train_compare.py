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
  (counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once), plus
  the tapes that the taped path keeps for it (``Tape.nbytes``): the memory that
  training through the asynchronous engine costs per batch, independent of the
  allocator and of other processes;
* ``peak MiB``: growth of the process's peak resident set size (``ru_maxrss``) during
  the first epoch over what it was after building the data and the model. Torch allocations
  are invisible to tracemalloc; ``ru_maxrss`` sees them (CPU only). Each scheduler runs
  in its own process so that one run's peak does not hide another's.

``--bias B`` and ``--reset MODE`` give every population that initial bias (trained) and
reset mode (docs/semantics.md R1.4, R4.8): run once with and once without them to see
what settling populations (R4.7) cost in training. ``--recurrent S`` gives
every hidden population a self-recurrent Dense projection (R1.2;
``from_sizes(recurrent=True, recurrent_gain=S)``, trained): compare with
``--recurrent 0`` (default) for what recurrence (R4.9) costs. ``--alpha A`` gives every
population a synaptic current decaying by ``A`` per timestep (R4.12).

Unlayered training on the CPU takes the taped path (``asyncsnn.torch.engine.tape``:
the Rust engine's run with a tape, and its backward pass in Rust) where it applies;
``--step-by-step`` switches it off, to time the step-by-step torch engine instead.

``--asynctorch PATH`` instead times the same unlayered training, batch by batch, in
asyncsnn and in asynctorch, the paper's reference code (GitHub ``RoelMK/asynctorch``; not
a dependency: ``PATH`` is a local checkout, put on ``sys.path`` at run time). For
``random`` and ``momentum`` (asynctorch's ``RandomSpikeScheduler`` and
``MomentumSpikeScheduler``), both start from the same weights (``from_sizes``, seed 0,
copied into bias-free ``nn.Linear`` layers of asynctorch's ``MixedArchitecture``) and
train on the same batches of 64 (Adam, lr 1e-3, rate loss), threshold 1, beta 0.9
(asynctorch ``tau_m = -1 / ln 0.9``, dt 1), F = 8, prioritised input, refractory
dropout 0 in both. Per round, in one process, one batch of each, interleaved: asyncsnn
(``surrogate_terms="fired"``, the default), asyncsnn (``"every_step"``, asynctorch's
gradient terms), asynctorch; ``--batches`` timed rounds after one warm-up round. It
prints per library the median seconds per batch (forward, backward and Adam step),
samples/s, the ratio asynctorch / asyncsnn, and spikes per sample (the two libraries
should do about the same work). What still differs: asynctorch's loop runs every forward
step for the whole batch until the last sample's queue is empty, sorts all queue slots
each step (``argsort`` over N), and its ``ATan`` surrogate is asyncsnn's ``ATan()``
divided by pi (gradient scale only; the cost is the same).

Usage::

    python benches/train_compare.py [--sizes 784,256,256,10] [--samples 512] [--timesteps 10]
        [--repeats 1] [--threads 2] [--bias 0.0] [--reset zero] [--recurrent 0.0] [--alpha 0.0]
    python benches/train_compare.py --asynctorch /path/to/asynctorch --threads 1 [--batches 5]
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
    tapes = _tape_bytes(loss.grad_fn)
    loss.backward()
    return (sum(seen.values()) + tapes) / 2**20


def _tape_bytes(node: Any) -> int:
    """Bytes of the tapes held by the autograd nodes reachable from ``node`` (the taped path)."""
    total, stack, seen = 0, [node], set()
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        tape = getattr(n, "tape", None)
        total += int(getattr(tape, "nbytes", 0))
        stack.extend(f for f, _ in n.next_functions)
    return total


def _sizes(text: str) -> list[int]:
    """``"784,256,256,10"`` -> ``[784, 256, 256, 10]``."""
    return [int(v) for v in text.split(",")]


def _model(args: argparse.Namespace, sizes: list[int], **lif: float) -> Any:
    """The benchmark's model: ``AsyncSNN.from_sizes``, with ``--recurrent`` self-recurrence and ``--alpha``."""
    from asyncsnn.torch import AsyncSNN

    rec: dict[str, Any] = {"recurrent": True, "recurrent_gain": args.recurrent} if args.recurrent else {}
    if args.alpha:
        rec["alpha"] = args.alpha
    return AsyncSNN.from_sizes(sizes, seed=0, bias=args.bias, reset=args.reset, **lif, **rec)  # type: ignore[arg-type]


def _data(args: argparse.Namespace, sizes: list[int]) -> tuple[Any, Any]:
    """The random rate-coded inputs ``[samples, T, n_in]`` and labels of the benchmark."""
    import numpy as np

    rng = np.random.default_rng(0)
    # Rate-coded input: every sample has its own intensity map (mean rate ~0.17/frame).
    n_in = sizes[0]
    rates = rng.beta(0.6, 3.0, (args.samples, 1, n_in)).astype(np.float32)
    x = np.empty((args.samples, args.timesteps, n_in), dtype=np.float32)
    for t in range(args.timesteps):  # frame by frame: no large temporaries before rss0
        x[:, t] = rng.random((args.samples, n_in), dtype=np.float32) < rates[:, 0]
    y = rng.integers(0, sizes[-1], args.samples)
    return x, y


def _asynctorch_modules(path: str) -> dict[str, Any]:
    """asynctorch's classes, imported from the checkout at ``path``; exit 2 if there is none."""
    import importlib

    root = os.path.abspath(path)
    names = {
        "AsyncNetwork": "asynctorch.nn.architecture.mixed_architecture",
        "MixedArchitecture": "asynctorch.nn.architecture.mixed_architecture",
        "LIFState": "asynctorch.nn.neuron.lif_state",
        "AsyncSimulator": "asynctorch.simulator.async_simulator",
        "RandomSpikeScheduler": "asynctorch.simulator.spike_scheduler",
        "MomentumSpikeScheduler": "asynctorch.simulator.spike_scheduler",
        "SpikeSelector": "asynctorch.simulator.spike_selector",
        "ATan": "asynctorch.utils.surrogate",
    }
    why = f"no directory {os.path.join(root, 'asynctorch')}"
    if os.path.isdir(os.path.join(root, "asynctorch")):
        sys.path.insert(0, root)
        try:
            found = {name: getattr(importlib.import_module(mod), name) for name, mod in names.items()}
            where = os.path.abspath(sys.modules["asynctorch"].__path__[0])
            if os.path.dirname(where) == root:
                return found
            why = f"asynctorch was imported from {where} instead"
        except Exception as exc:  # ImportError, AttributeError, or an error inside asynctorch
            why = f"{type(exc).__name__}: {exc}"
    print(f"train_compare.py: --asynctorch {path}: no importable asynctorch checkout ({why})", file=sys.stderr)
    sys.exit(2)


def compare_asynctorch(args: argparse.Namespace) -> None:
    """Time unlayered training per batch in asyncsnn and asynctorch, interleaved (``--asynctorch``)."""
    at = _asynctorch_modules(args.asynctorch)
    import math
    import statistics

    import torch
    from torch import nn

    from asyncsnn.torch import rate_loss

    torch.set_num_threads(args.threads)
    sizes = _sizes(args.sizes)
    x_np, y_np = _data(args, sizes)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    batch, n_batches = 64, max(1, args.samples // 64)
    beta, tau = 0.9, -1.0 / math.log(0.9)

    def asynctorch_net(sched: str) -> tuple[Any, list[nn.Linear]]:
        weights = [w.detach().clone() for w in _model(args, sizes, threshold=1.0, beta=beta).parameters()]
        linears = [nn.Linear(sizes[i], sizes[i + 1], bias=False) for i in range(len(sizes) - 1)]
        with torch.no_grad():
            for lin, w in zip(linears, weights):
                lin.weight.copy_(w)
        net = at["AsyncNetwork"].build_sequential(linears, [(n,) for n in sizes])
        arch = at["MixedArchitecture"](net, torch.device("cpu"))
        state = at["LIFState"](sizes[1:], tau, 1.0, at["ATan"](2.0), torch.device("cpu"), refrac_dropout=0.0)
        scheduler = (at["RandomSpikeScheduler"] if sched == "random" else at["MomentumSpikeScheduler"])(state)
        selector = at["SpikeSelector"](arch, scheduler, 8, torch.device("cpu"), prioritize_input=True)
        return at["AsyncSimulator"](state, selector), linears

    def asynctorch_batch(sim: Any, opt: Any, xb: Any, yb: Any) -> float:
        sim.reset_state()
        counts = [sim(xb[:, t], dt=1.0) for t in range(xb.shape[1])]
        out = torch.stack([c[:, -sizes[-1] :] for c in counts], dim=1)
        loss: Any = rate_loss(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(torch.stack(counts).detach().sum()) / int(xb.shape[0])

    def asyncsnn_batch(model: Any, opt: Any, xb: Any, yb: Any, sched: str, terms: str, seed: int) -> float:
        out = model(xb, scheduler=sched, forward_group_size=8, seed=seed, surrogate_terms=terms)
        loss: Any = rate_loss(out.counts, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(out.counters["spikes_total"].float().mean())

    net = "-".join(str(n) for n in sizes)
    print(
        f"{net}, {args.samples} samples, T={args.timesteps}, batch {batch}, F=8, {args.threads} threads, "
        f"{args.batches} timed rounds (+1 warm-up), asynctorch from {os.path.abspath(args.asynctorch)}"
    )
    print(
        "same weights and batches; threshold 1, beta 0.9, refractory dropout 0, prioritised input, "
        "Adam lr 1e-3, rate loss; asynctorch: batch-wide forward-step loop, ATan/pi surrogate, "
        "a surrogate term at every step (= asyncsnn every_step)"
    )
    head = f"{'scheduler':9} {'library':24} {'s/batch':>8} {'samples/s':>9} {'asynctorch/this':>15}"
    print(f"{head} {'spikes/sample':>13}")
    for sched in ("random", "momentum"):
        runs: dict[str, Any] = {}
        for terms in ("fired", "every_step"):
            model = _model(args, sizes, threshold=1.0, beta=beta)
            runs[f"asyncsnn {terms}"] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), terms)
        sim, linears = asynctorch_net(sched)
        params = [p for lin in linears for p in lin.parameters()]
        runs["asynctorch"] = (sim, torch.optim.Adam(params, lr=1e-3), None)
        times: dict[str, list[float]] = {k: [] for k in runs}
        spikes: dict[str, list[float]] = {k: [] for k in runs}
        for i in range(args.batches + 1):
            sl = slice((i % n_batches) * batch, (i % n_batches) * batch + batch)
            xb, yb = x[sl], y[sl]
            for name, (mod, opt, terms) in runs.items():
                t0 = time.perf_counter()
                if terms is None:
                    sp = asynctorch_batch(mod, opt, xb, yb)
                else:
                    sp = asyncsnn_batch(mod, opt, xb, yb, sched, terms, i)
                if i:  # round 0 warms up
                    times[name].append(time.perf_counter() - t0)
                    spikes[name].append(sp)
        ref = statistics.median(times["asynctorch"])
        for name in runs:
            med = statistics.median(times[name])
            print(
                f"{sched:9} {name:24} {med:8.3f} {xb.shape[0] / med:9.0f} {ref / med:15.2f} "
                f"{statistics.mean(spikes[name]):13.1f}"
            )


def child(args: argparse.Namespace) -> None:
    import torch

    from asyncsnn.torch import train

    torch.set_num_threads(args.threads)
    from asyncsnn.torch import rate_loss
    from asyncsnn.torch.engine import tape

    tape.ENABLED = not args.step_by_step

    sizes = _sizes(args.sizes)
    x, y = _data(args, sizes)
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
    parser.add_argument("--alpha", type=float, default=0.0, help="synaptic current decay of every neuron (0: none)")
    parser.add_argument("--step-by-step", action="store_true", help="the step-by-step torch engine (no tape)")
    parser.add_argument("--asynctorch", metavar="PATH", help="time against the asynctorch checkout at PATH")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per library (--asynctorch)")
    parser.add_argument("--child", choices=SCHEDULERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.asynctorch is not None:
        compare_asynctorch(args)
        return
    if args.child:
        child(args)
        return
    rows = []
    for sched in SCHEDULERS:
        cmd = [sys.executable, __file__, "--child", sched, "--samples", str(args.samples), "--sizes", args.sizes]
        cmd += ["--timesteps", str(args.timesteps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--bias", str(args.bias), "--reset", args.reset, "--recurrent", str(args.recurrent)]
        cmd += ["--alpha", str(args.alpha)]
        cmd += ["--step-by-step"] if args.step_by_step else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base, base_cpu = rows[0]["epoch_s"], rows[0]["cpu_s"]
    net = "-".join(str(n) for n in _sizes(args.sizes))
    neurons = f", bias {args.bias:g}, reset {args.reset}" if args.bias or args.reset != "zero" else ""
    neurons += f", recurrent {args.recurrent:g}" if args.recurrent else ""
    neurons += f", alpha {args.alpha:g}" if args.alpha else ""
    neurons += ", step by step (no tape)" if args.step_by_step else ""
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

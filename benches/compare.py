"""Side-by-side inference throughput: Rust engine, torch engine, snnTorch, axpy roofline.

On the same networks, weights and inputs, in one run:

* the Rust engine through ``asyncsnn.infer`` with 1 thread and with all threads;
* the torch engine (``asyncsnn.torch.infer``, eval, no grad) with the same scheduler;
* snnTorch's layer-synchronous forward (``snn.Leaky``, reset to zero, no reset delay,
  same weights, beta and threshold) against the Rust engine's ``layered`` scheduler,
  after checking that both give the same output spike counts on these inputs (the
  weights lie on a 2^-12 grid so that every current sum is exact in float32 and the
  comparison is bit for bit, R8.2);
* a roofline measured in the same run: the same number of float32 row additions
  (axpy over the weight rows of the first projection) done by a tight vectorised loop
  in Rust (``asyncsnn._engine.axpy_roofline``, the same SIMD kernel as the event loop),
  so that synops/s can be stated as a fraction of what this machine does;

at batch 1 and batch 256, on two workloads:

* ``dense``: 784-512-512-10, rate-coded input (each pixel on with probability 10 % per
  timestep), 20 timesteps, beta 0.9, threshold 1;
* ``conv``: 2x34x34 -> conv 8 (k3 s2) -> conv 16 (k3 s2 p1) -> conv 32 (k3 s2 p1) -> 10,
  N-MNIST-like ON/OFF events of a moving edge, 10 timesteps.

Every Rust and snnTorch time is the best of ``--repeats`` runs; the variants are measured
round-robin so that a load spike on a shared machine hits them alike. The torch engine,
much slower, runs on at most ``TORCH_SAMPLES`` samples, scaled to the batch: the best of
up to ``TORCH_RUNS`` runs, started while the runs so far took less than
``TORCH_BUDGET_S`` seconds (the first run is cold). The table of ratios is printed
and, with ``--write``, put into ``docs/benchmarks.md`` between the markers
``<!-- compare:begin -->`` and ``<!-- compare:end -->`` together with the command and
a description of the machine.

Usage::

    python benches/compare.py [--repeats 5] [--workloads dense conv] [--batches 1 256]
                              [--write docs/benchmarks.md] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import asyncsnn
from asyncsnn import Conv2d, Dense, Network
from asyncsnn._engine import axpy_roofline, default_threads
from asyncsnn._prepare import SchedulerLike
from asyncsnn.network import Layer

GRID = 2.0**-12
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
TORCH_SAMPLES = 4
TORCH_RUNS = 3  # the best of up to this many torch-engine runs ...
TORCH_BUDGET_S = 2.0  # ... started while the runs so far took less than this


def _grid(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """Uniform weights in ``[lo, hi)`` rounded to multiples of 2^-12 (exact sums in float32)."""
    return (np.round(rng.uniform(lo, hi, size=shape) / GRID) * GRID).astype(np.float32)


@dataclass
class Workload:
    """A network, its snnTorch twin's layer list and a batch-256 input."""

    name: str
    network: Network
    inputs: np.ndarray  # [256, T, *input_shape] float32
    description: str


def dense_workload(density: float = 0.10, timesteps: int = 20, seed: int = 0, width: int = 512) -> Workload:
    """784-W-W-10 with rate-coded input (``density`` = on-probability per pixel and timestep)."""
    rng = np.random.default_rng(seed)
    sizes = [784, width, width, 10]
    # Weight range as in benches/engine.rs (every layer spikes at a moderate rate); layers
    # whose fan-in is the width get weights scaled by 512 / W to keep their input current.
    scales = [1.0, 512 / width, 512 / width]
    layers = [Dense(_grid(rng, (sizes[i + 1], sizes[i]), -0.044 * scales[i], 0.05 * scales[i])) for i in range(3)]
    net = Network.sequential(784, layers, threshold=1.0, beta=0.9)
    x = (rng.random((256, timesteps, 784)) < density).astype(np.float32)
    return Workload("dense", net, x, f"784-{width}-{width}-10, rate code {density:.0%}, T = {timesteps}")


def nmnist_like_events(rng: np.random.Generator, batch: int, timesteps: int) -> np.ndarray:
    """ON/OFF frames ``[batch, T, 2, 34, 34]`` of an edge sweeping across the field.

    Each sample is a random oriented edge moving at a random speed; a pixel emits an ON
    (or OFF) event with probability 0.6 when the edge's leading (trailing) side crosses
    it in that timestep, plus 0.2 % background noise: a few % of the pixels per
    timestep, spatially clustered, like the saccades of N-MNIST.
    """
    yy, xx = np.mgrid[0:34, 0:34].astype(np.float64)
    out = np.zeros((batch, timesteps, 2, 34, 34), dtype=np.float32)
    for b in range(batch):
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(2.0, 4.0)
        offset = rng.uniform(-20, -8)
        proj = np.cos(angle) * (xx - 17) + np.sin(angle) * (yy - 17)
        for t in range(timesteps):
            pos = offset + speed * t
            on = (proj >= pos) & (proj < pos + speed)
            off = (proj >= pos - 6) & (proj < pos - 6 + speed)
            out[b, t, 0] = on & (rng.random((34, 34)) < 0.6)
            out[b, t, 1] = off & (rng.random((34, 34)) < 0.6)
            out[b, t] += rng.random((2, 34, 34)) < 0.002
    return np.minimum(out, 1.0)


def conv_workload(timesteps: int = 10, seed: int = 0) -> Workload:
    """2x34x34 -> conv8 k3 s2 -> conv16 k3 s2 p1 -> conv32 k3 s2 p1 -> 10."""
    rng = np.random.default_rng(seed)
    layers: list[Layer] = [
        Conv2d(_grid(rng, (8, 2, 3, 3), -0.25, 0.75), stride=2),
        Conv2d(_grid(rng, (16, 8, 3, 3), -0.12, 0.25), stride=2, padding=1),
        Conv2d(_grid(rng, (32, 16, 3, 3), -0.06, 0.14), stride=2, padding=1),
        Dense(_grid(rng, (10, 32 * 4 * 4), -0.06, 0.1)),
    ]
    net = Network.sequential((2, 34, 34), layers, threshold=1.0, beta=0.9)
    x = nmnist_like_events(rng, 256, timesteps)
    return Workload("conv", net, x, f"2x34x34-c8-c16-c32-10, N-MNIST-like events, T = {timesteps}")


def snntorch_model(net: Network) -> Any:
    """The same network as an snnTorch ``Sequential`` of layers and ``snn.Leaky``."""
    import snntorch as snn  # type: ignore[import-untyped]
    import torch

    mods: list[Any] = []
    for i, (proj, pop) in enumerate(zip(net.projections, net.populations, strict=True)):
        layer = proj.layer
        if isinstance(layer, Dense):
            if len(mods) and isinstance(mods[-1], snn.Leaky) and len(net.population_shapes[i]) > 1:
                mods.append(torch.nn.Flatten())
            lin = torch.nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=False)
            lin.weight.data = torch.from_numpy(layer.weight.copy())
            mods.append(lin)
        elif isinstance(layer, Conv2d):
            conv = torch.nn.Conv2d(
                layer.weight.shape[1],
                layer.weight.shape[0],
                layer.weight.shape[2:],
                stride=layer.stride,
                padding=layer.padding,
                bias=False,
            )
            conv.weight.data = torch.from_numpy(layer.weight.copy())
            mods.append(conv)
        else:
            raise TypeError(f"compare.py has no snnTorch twin for {type(layer).__name__}")
        beta = float(np.asarray(pop.beta).flat[0])
        threshold = float(np.asarray(pop.threshold).flat[0])
        mods.append(
            snn.Leaky(
                beta=beta,
                threshold=threshold,
                init_hidden=True,
                reset_mechanism="zero",
                reset_delay=False,
                output=i == len(net.projections) - 1,
            )
        )
    return torch.nn.Sequential(*mods)


def snntorch_forward(model: Any, x: Any) -> Any:
    """Output spike counts ``[B, n_out]`` of the layer-synchronous forward over ``T``."""
    import torch
    from snntorch import utils as snn_utils

    snn_utils.reset(model)
    counts = None
    with torch.no_grad():
        for t in range(x.shape[1]):
            out = model(x[:, t])
            spk = out[0] if isinstance(out, tuple) else out
            counts = spk if counts is None else counts + spk
    return counts


def best_of(fns: dict[str, Callable[[], Any]], repeats: int, inner: int = 1) -> dict[str, float]:
    """Best time per call of each function over ``repeats`` round-robin rounds.

    Each round times ``inner`` back-to-back calls of a variant and divides by
    ``inner``. For short calls (batch 1) this keeps a variant's weights in the cache as
    they are in a stream of calls; timed one call at a time after another variant (which
    evicts them, and whose OpenMP threads may still spin), the 1-thread Rust run at
    batch 1 measured 2-3x slower than back to back.
    """
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / inner)
    return best


def machine() -> str:
    """One line: CPU model, cores, Python/torch versions."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical CPUs visible ({default_threads()} engine threads), "
        f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"asyncsnn {asyncsnn.__version__}"
    )


def roofline(net: Network, adds: int, repeats: int) -> tuple[float, str]:
    """Float additions per second of the axpy loop over the rows of the first (dense) projection."""
    layer = net.projections[0].layer
    if not isinstance(layer, Dense):
        raise TypeError("the roofline uses the rows of a dense first projection")
    # Rows by source neuron, as the event loop stores them: [n_source, n_target].
    rows_by_source = np.ascontiguousarray(np.asarray(layer.weight, dtype=np.float32).T)
    row_len = rows_by_source.shape[1]
    n_rows = max(1, adds // row_len)
    rows = np.random.default_rng(1).integers(0, rows_by_source.shape[0], size=n_rows).astype(np.uint32)
    best, kernel = float("inf"), ""
    for _ in range(repeats):
        secs, done, kernel = axpy_roofline(rows_by_source.ravel(), row_len, rows, 1)
        best = min(best, secs / done)
    return 1.0 / best, kernel


def python_overhead(repeats: int) -> float:
    """Median seconds of ``asyncsnn.infer`` on a 1-sample, 10-neuron network."""
    net = Network.sequential(4, [Dense(np.full((6, 4), 0.5)), Dense(np.full((4, 6), 0.5))], threshold=1.0)
    x = np.ones((1, 2, 4), dtype=np.float32)
    for _ in range(50):
        asyncsnn.infer(net, x, threads=1)
    times = []
    for _ in range(max(200, repeats * 100)):
        t0 = time.perf_counter()
        asyncsnn.infer(net, x, threads=1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(wl: Workload, batch: int, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """All variants on one workload and batch size; returns rows of the table."""
    import torch

    from asyncsnn.torch import infer as torch_infer

    x = np.ascontiguousarray(wl.inputs[:batch])
    net = wl.network
    threads = default_threads()
    model = snntorch_model(net)
    xt = torch.from_numpy(x)

    # Equality check first: snnTorch == Rust layered, output counts of every sample.
    ref = asyncsnn.infer(net, x, scheduler="layered")
    counts = snntorch_forward(model, xt).reshape(batch, -1).numpy().astype(np.int64)
    if not np.array_equal(counts, ref.output_counts):
        bad = int(np.sum(np.any(counts != ref.output_counts, axis=1)))
        raise SystemExit(f"{wl.name}, batch {batch}: snnTorch and Rust layered differ on {bad} samples")

    rows: list[dict[str, Any]] = []
    sched: list[SchedulerLike] = ["layered", "momentum"] if quick else ["layered", "fifo", "random", "momentum"]
    for s in sched:
        res = asyncsnn.infer(net, x, scheduler=s, forward_group_size=8)
        # The torch engine is slow (Python work per forward step): runs on at most
        # TORCH_SAMPLES samples, scaled to the batch; the first run's output is checked.
        # The first run is cold (it builds the engine's tables), so the best of up to
        # TORCH_RUNS runs is kept, as long as they fit in TORCH_BUDGET_S seconds.
        tb = min(batch, TORCH_SAMPLES)
        runs: list[float] = []
        while len(runs) < (1 if quick else TORCH_RUNS) and (not runs or sum(runs) < TORCH_BUDGET_S):
            t0 = time.perf_counter()
            tres = torch_infer(net, x[:tb], scheduler=s, forward_group_size=8)
            runs.append(time.perf_counter() - t0)
            if len(runs) == 1:
                np.testing.assert_array_equal(tres.output_counts, res.output_counts[:tb])
        torch_s = min(runs) * batch / tb
        fns: dict[str, Callable[[], Any]] = {
            "rust_1t": functools.partial(asyncsnn.infer, net, x, scheduler=s, forward_group_size=8, threads=1),
            "rust_all": functools.partial(asyncsnn.infer, net, x, scheduler=s, forward_group_size=8, threads=threads),
        }
        inner = 1 if batch > 1 else 20
        # The Rust variants round-robin among themselves, snnTorch apart: the variant
        # timed right after snnTorch's forward ran 25-40 % slower (torch's OpenMP
        # workers go on spinning on the other core for a while after each call), which
        # made `threads=1` look slower than the default at batch 1, where both run the
        # same code on the calling thread (benches/threads_batch1.py measures it).
        t = best_of(fns, repeats, inner=inner)
        if s == "layered":
            t.update(best_of({"snntorch": lambda: snntorch_forward(model, xt)}, repeats, inner=inner))
        synops = float(res.synops.sum())
        row = {
            "workload": wl.name,
            "batch": batch,
            "scheduler": s,
            "synops_per_sample": synops / batch,
            "spikes_per_sample": float(res.spikes_total.sum()) / batch,
            "rust_1t_s": t["rust_1t"],
            "rust_all_s": t["rust_all"],
            "torch_engine_s": torch_s,
            "snntorch_s": t.get("snntorch"),
            "synops_per_s_1t": synops / t["rust_1t"],
        }
        rows.append(row)
    return rows


def fmt_table(rows: list[dict[str, Any]], roof: tuple[float, str], overhead: float) -> str:
    """Markdown tables of absolute figures and ratios."""
    lines = [
        "| workload | batch | scheduler | synops/sample | Rust 1 thread: synops/s | % of axpy roofline "
        "| all threads / 1 thread | Rust (all) vs torch engine | Rust (all) vs snnTorch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r["synops_per_s_1t"]
        rf = roof[0]
        vs_snn = f"{r['snntorch_s'] / r['rust_all_s']:.1f}x" if r["snntorch_s"] is not None else ""
        lines.append(
            f"| {r['workload']} | {r['batch']} | {r['scheduler']} | {r['synops_per_sample']:,.0f} | "
            f"{rate / 1e9:.2f} G | {100 * rate / rf:.0f} % | {r['rust_1t_s'] / r['rust_all_s']:.2f}x | "
            f"{r['torch_engine_s'] / r['rust_all_s']:.0f}x | {vs_snn} |"
        )
    lines += [
        "",
        "| workload | batch | scheduler | Rust 1 thread ms | Rust all threads ms | torch engine ms | snnTorch ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        snn_ms = f"{1e3 * r['snntorch_s']:.2f}" if r["snntorch_s"] is not None else ""
        lines.append(
            f"| {r['workload']} | {r['batch']} | {r['scheduler']} | {1e3 * r['rust_1t_s']:.2f} | "
            f"{1e3 * r['rust_all_s']:.2f} | {1e3 * r['torch_engine_s']:.1f} | {snn_ms} |"
        )
    lines.append("")
    lines.append(
        f"- axpy roofline (rows of 512 floats of the dense first projection, {roof[1]} kernel): "
        f"{roof[0] / 1e9:.2f} G adds/s on one core"
    )
    lines.append(
        f"- torch engine: best of up to {TORCH_RUNS} runs (while they took under {TORCH_BUDGET_S:g} s) "
        f"on {TORCH_SAMPLES} samples at most, scaled to the batch"
    )
    lines.append(f"- `asyncsnn.infer` on a 1-sample, 10-neuron network: {overhead * 1e6:.1f} us per call (median)")
    return "\n".join(lines)


def write_doc(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the block between the markers in ``path`` (append it if absent), atomically."""
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
        new = f"{head}{begin}\n{text}\n{end}{tail}"
    else:
        new = f"{old.rstrip()}\n\n{begin}\n{text}\n{end}\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="best of this many runs (default 5)")
    ap.add_argument("--workloads", nargs="+", choices=["dense", "conv"], default=["dense", "conv"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    ap.add_argument("--write", type=Path, default=None, help="put the table into this markdown file")
    ap.add_argument("--quick", action="store_true", help="layered and momentum only, 1 repeat (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if any(b < 1 or b > 256 for b in args.batches):
        ap.error("--batches must lie in 1..256")

    makers: dict[str, Callable[[], Workload]] = {"dense": dense_workload, "conv": conv_workload}
    rows: list[dict[str, Any]] = []
    for name in args.workloads:
        wl = makers[name]()
        print(f"{name}: {wl.description}", file=sys.stderr)
        for b in args.batches:
            rows += measure(wl, b, args.repeats, args.quick)
            print(f"  batch {b} done", file=sys.stderr)
    # One roofline for the table: rows of 512 floats from the dense workload's first
    # projection (784 x 512, 1.6 MB, the weights the event loop reads most), 16 samples' worth.
    dense = dense_workload()
    adds = int(max(r["synops_per_sample"] for r in rows) * 16)
    roof = roofline(dense.network, adds, args.repeats)
    overhead = python_overhead(args.repeats)
    table = fmt_table(rows, roof, overhead)
    cmd = "python benches/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"Command: `{cmd.strip()}`\n\nMachine: {machine()}\n\n{table}"
    print(text)
    if args.write:
        write_doc(args.write, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

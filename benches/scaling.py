"""How the Rust engine's cost grows: input density, F, network width, threads.

Runs ``asyncsnn.infer`` (scheduler ``momentum`` unless stated) on the dense workload of
``benches/compare.py`` (784-W-W-10, rate-coded input, T = 20) while varying one factor
at a time, from the default point (density 10 %, F = 8, W = 512, 1 thread, 64 samples):

* input density 2 %, 5 %, 10 %, 20 %, 30 %;
* forward group size F 1, 2, 8, 32, 64, 256;
* width W 128, 256, 512, 1024, 2048 (a wide net has more neurons but, with the weights
  scaled by 512/W, a similar number of spikes per layer: few delivered events);
* threads 1 and all, on a batch of 256.

For each point it records the best-of-``--repeats`` wall time, the synaptic operations,
spikes and forward steps, and the time per synop. If the cost is linear in the
delivered events (synops) and not in the neuron count, all points fall on one line of
time vs synops, whatever the width. The figure ``docs/scaling.png`` shows it; the table
is printed (markdown) and, with ``--write``, put into ``docs/benchmarks.md`` between
``<!-- scaling:begin -->`` and ``<!-- scaling:end -->``.

Usage::

    python benches/scaling.py [--repeats 3] [--plot docs/scaling.png] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import asyncsnn
from asyncsnn._engine import default_threads
from compare import dense_workload, machine, write_doc


def point(
    factor: str,
    value: Any,
    *,
    density: float = 0.10,
    f: int = 8,
    width: int = 512,
    threads: int = 1,
    batch: int = 64,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time and counters of one configuration."""
    wl = dense_workload(density=density, width=width)
    x = np.ascontiguousarray(wl.inputs[:batch])
    run = functools.partial(asyncsnn.infer, wl.network, x, scheduler="momentum", forward_group_size=f, threads=threads)
    res = run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    synops = float(res.synops.sum())
    return {
        "factor": factor,
        "value": value,
        "threads": threads,
        "batch": batch,
        "neurons": wl.network.n_neurons,
        "ms_per_sample": 1e3 * best / batch,
        "synops_per_sample": synops / batch,
        "spikes_per_sample": float(res.spikes_total.sum()) / batch,
        "steps_per_sample": float(res.forward_steps.sum()) / batch,
        "ns_per_synop": 1e9 * best / synops if synops else float("nan"),
    }


def sweep(repeats: int) -> list[dict[str, Any]]:
    """All points of the four sweeps."""
    pts: list[dict[str, Any]] = []
    for d in (0.02, 0.05, 0.10, 0.20, 0.30):
        pts.append(point("density", d, density=d, repeats=repeats))
    for f in (1, 2, 8, 32, 64, 256):
        pts.append(point("F", f, f=f, repeats=repeats))
    for w in (128, 256, 512, 1024, 2048):
        pts.append(point("width", w, width=w, repeats=repeats))
    for t in sorted({1, default_threads()}):
        pts.append(point("threads", t, threads=t, batch=256, repeats=repeats))
    return pts


def table(pts: list[dict[str, Any]]) -> str:
    """Markdown table of the sweep."""
    lines = [
        "| factor | value | neurons | batch | threads | ms / sample | synops / sample | spikes / sample "
        "| forward steps / sample | ns / synop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pts:
        lines.append(
            f"| {p['factor']} | {p['value']} | {p['neurons']} | {p['batch']} | {p['threads']} | "
            f"{p['ms_per_sample']:.3f} | {p['synops_per_sample']:,.0f} | {p['spikes_per_sample']:,.0f} | "
            f"{p['steps_per_sample']:,.0f} | {p['ns_per_synop']:.2f} |"
        )
    return "\n".join(lines)


def plot(pts: list[dict[str, Any]], path: Path) -> None:
    """Time per sample against synops per sample, one marker per sweep (1 thread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    one = [p for p in pts if p["threads"] == 1 and p["factor"] != "threads"]
    for factor, marker in (("density", "o"), ("F", "s"), ("width", "^")):
        sel = [p for p in one if p["factor"] == factor]
        ax.scatter(
            [p["synops_per_sample"] / 1e6 for p in sel],
            [p["ms_per_sample"] for p in sel],
            marker=marker,
            label=f"vary {factor}",
        )
        for p in sel:
            ax.annotate(str(p["value"]), (p["synops_per_sample"] / 1e6, p["ms_per_sample"]), fontsize=7)
    xs = np.array([p["synops_per_sample"] for p in one])
    ys = np.array([p["ms_per_sample"] for p in one])
    slope = float(np.sum(xs * ys) / np.sum(xs * xs))
    grid = np.linspace(0, xs.max(), 50)
    ax.plot(grid / 1e6, slope * grid, "k--", lw=0.8, label=f"{slope * 1e6:.2f} ms per M synops")
    ax.set_xlabel("synaptic operations per sample (M)")
    ax.set_ylabel("ms per sample (1 thread)")
    ax.set_title("cost vs delivered events")
    ax.legend(fontsize=8)
    widths = [p for p in one if p["factor"] == "width"]
    bx.plot([p["neurons"] for p in widths], [p["ns_per_synop"] for p in widths], "o-")
    bx.set_xscale("log")
    bx.set_xlabel("neurons in the network (width sweep)")
    bx.set_ylabel("ns per synop")
    bx.set_ylim(bottom=0)
    bx.set_title("cost per event vs network size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--plot", type=Path, default=Path("docs/scaling.png"))
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args(argv)
    pts = sweep(args.repeats)
    text = table(pts)
    thr = [p for p in pts if p["factor"] == "threads"]
    if len(thr) == 2:
        text += f"\n\nAll threads ({thr[1]['threads']}) vs 1 thread, batch 256: {thr[0]['ms_per_sample'] / thr[1]['ms_per_sample']:.2f}x"
    cmd = "python benches/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"Command: `{cmd.strip()}`\n\nMachine: {machine()}\n\n{text}\n\n![scaling]({args.plot.name})"
    print(text)
    plot(pts, args.plot)
    if args.write:
        write_doc(args.write, text, begin="<!-- scaling:begin -->", end="<!-- scaling:end -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

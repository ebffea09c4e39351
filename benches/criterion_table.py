#!/usr/bin/env python3
"""Markdown table of a ``cargo bench --bench engine`` run: synops/s, samples/s, spikes/s.

The bench prints one ``activity {id}: samples/iter N, spikes/sample S, synops/sample Y,
forward steps/sample K | ...`` line per benchmark (the work of an iteration is
deterministic); criterion writes the time per iteration to
``target/criterion/<...>/new/estimates.json``. This script joins the two, using
criterion's median time per iteration ``t``: samples/s = N / t, spikes/s = N * S / t,
synops/s = N * Y / t (the last one is criterion's own "elem/s" throughput, from the
median instead of the mean).

Usage::

    cargo bench --bench engine 2>&1 | tee target/bench-engine.log
    python benches/criterion_table.py target/bench-engine.log [--criterion target/criterion]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ACTIVITY = re.compile(
    r"^activity (?P<id>\S+): samples/iter (?P<n>\d+), spikes/sample (?P<spikes>[\d.]+), "
    r"synops/sample (?P<synops>[\d.]+), forward steps/sample (?P<steps>[\d.]+)"
)


def si(value: float) -> str:
    """Format ``value`` with an SI prefix (k, M, G), three significant digits."""
    for scale, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k"), (1.0, "")):
        if float(f"{value:.3g}") >= scale:  # 999.7e6 prints as 1 G, not 1e+03 M
            return f"{float(f'{value / scale:.3g}'):g}{prefix}"
    return f"{value:.3g}"


def medians(criterion: Path) -> dict[str, tuple[float, float, float]]:
    """Median time per iteration in seconds (point, lower, upper) by full benchmark id."""
    out = {}
    for bench in criterion.glob("**/new/benchmark.json"):
        full_id = json.loads(bench.read_text())["full_id"]
        est = json.loads((bench.parent / "estimates.json").read_text())["median"]
        ci = est["confidence_interval"]
        out[full_id] = (est["point_estimate"] * 1e-9, ci["lower_bound"] * 1e-9, ci["upper_bound"] * 1e-9)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="output of `cargo bench --bench engine` (stderr included)")
    parser.add_argument("--criterion", type=Path, default=Path("target/criterion"), help="criterion's output folder")
    args = parser.parse_args()
    times = medians(args.criterion)
    rows = []
    for line in args.log.read_text().splitlines():
        m = ACTIVITY.match(line)
        if not m:
            continue
        bench_id = m["id"]
        if bench_id not in times:
            print(f"no criterion estimate for {bench_id}", file=sys.stderr)
            continue
        t, lo, hi = times[bench_id]
        n = int(m["n"])
        parts = bench_id.split("/")
        workload, scheduler, f = "/".join(parts[:-2]), parts[-2], parts[-1].removeprefix("F")
        rows.append(
            f"| {workload} | {scheduler} | {f} | {si(n * float(m['synops']) / t)} "
            f"[{si(n * float(m['synops']) / hi)}, {si(n * float(m['synops']) / lo)}] "
            f"| {si(n / t)} | {si(n * float(m['spikes']) / t)} | {float(m['steps']):.0f} |"
        )
    if not rows:
        print("no activity line with a criterion estimate found", file=sys.stderr)
        return 1
    print("| workload | scheduler | F | synops/s (median [95 % CI]) | samples/s | spikes/s | forward steps / sample |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

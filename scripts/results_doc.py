"""Rewrite the measured parts of docs/results.md from `asyncsnn reproduce` folders.

Usage (after the three `reproduce --seeds 0 1 2` commands that docs/results.md names)::

    python scripts/results_doc.py docs/results.md results/digits \
        results/fashion-mnist results/fashion-mnist-events --figures docs/results

For each dataset section (found by its heading) this replaces the results table with the
run's ``table.md`` table, the quoted findings with the run's ``findings``, the caption
under every figure the section shows with the run's caption (``figures.md``), and the
wall time of the three seeds; it copies the figures to ``--figures/<dataset>/``. It then
rebuilds the "Across datasets" table from the runs' ``results.json``. Prose that is not
produced by a run (how the numbers were made, the later sections) is left alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from asyncsnn._spread import fmt, on_seeds, paired, summary

#: reproduce folder name -> (heading of its section, label in the "Across datasets" table)
SECTIONS = {
    "digits": ("## Digits (embedded default)", "digits"),
    "fashion-mnist": ("## Fashion-MNIST, rate-coded", "Fashion-MNIST rate"),
    "fashion-mnist-events": ("## Fashion-MNIST, event-camera emulation", "Fashion-MNIST events"),
}
WIDTH = 88


def _wrap(text: str, prefix: str = "") -> list[str]:
    wrapped = textwrap.wrap(
        text, WIDTH + len(prefix), initial_indent=prefix, subsequent_indent=prefix, break_on_hyphens=False
    )
    return wrapped or [prefix]


def _captions(figures_md: str) -> dict[str, str]:
    """``{file name: caption}`` from a run's figures.md."""
    out: dict[str, str] = {}
    for block in figures_md.split("\n## ")[1:]:
        lines = block.strip().splitlines()
        paras = [ln for ln in lines[1:] if ln.strip() and not ln.startswith("![")]
        out[lines[0].strip()] = " ".join(paras)
    return out


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


def _section(lines: list[str], start: int, run: Path, dataset: str) -> list[str]:
    """The section that starts at ``lines[start]`` with the run's numbers in it."""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = lines[start:end]
    res = json.loads((run / "results.json").read_text())
    table = [ln for ln in (run / "table.md").read_text().splitlines() if ln.startswith("|")]
    captions = _captions((run / "figures.md").read_text())
    out: list[str] = []
    i = 0
    while i < len(body):
        line = body[i]
        if line.startswith("|") and table:  # the results table: replaced once
            while i < len(body) and body[i].startswith("|"):
                i += 1
            out += table
            table = []
            continue
        if line.startswith("> ") and i > 0 and body[i - 1] == "" and "findings" in body[i - 2]:
            while i < len(body) and body[i].startswith(">"):
                i += 1
            out += _wrap(res["findings"], "> ")
            continue
        m = re.match(r"!\[([^\]]+)\]\(results/[^/]+/([^)]+)\)", line)
        if m and m.group(2) in captions:
            out += [line, ""]
            i += 2
            while i < len(body) and body[i].strip():
                i += 1  # the old caption
            out += _wrap(captions[m.group(2)])
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    per_seed = ", ".join(str(round(s)) for s in res["seed_wall_time_s"])
    text = re.sub(
        r"Wall\s+time:\s+\d+ min \d+ s for the three seeds \(per seed: [\d, ]+ s\)",
        f"Wall time: {_minutes(res['wall_time_s'])} for the three seeds (per seed: {per_seed} s)",
        text,
    )
    return text.split("\n")


def _cell(res: dict[str, Any], training: str, inference: str) -> dict[str, Any]:
    return next(
        c for c in res["cells"] if c["training"] == training and c["inference"] == inference and c["stop"] == "drain"
    )


def _across(runs: dict[str, Path]) -> list[str]:
    rows = [
        "| dataset | inference | layered-trained: acc. / spikes | trained for it: acc. / spikes | accuracy "
        "| spikes | layered model, sync -> async | synops to stable decision, layered/async "
        "| synops to 1st correct spike, layered/async |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        res = json.loads((run / "results.json").read_text())
        for sched in ("random", "momentum"):
            base, own, sync = _cell(res, "layered", sched), _cell(res, sched, sched), _cell(res, "layered", "layered")
            acc = paired(lambda a, b: 100 * (a - b), own["accuracy"], base["accuracy"])
            spk = paired(lambda a, b: 100 * (a / b - 1), own["spikes_per_sample"], base["spikes_per_sample"])
            dec = paired(lambda r: r, own["vs_layered_synops_to_decision"])
            cor = paired(lambda r: r, own["vs_layered_synops_to_correct"])

            def pct(c: dict[str, Any]) -> str:
                return fmt(c["accuracy"], ".1f", scale=100, unit=" %")

            rows.append(
                f"| {SECTIONS[name][1]} | {sched} "
                f"| {pct(base)} / {fmt(base['spikes_per_sample'], '.0f')} "
                f"| {pct(own)} / {fmt(own['spikes_per_sample'], '.0f')} "
                f"| {summary(acc, '+.1f')} pts ({on_seeds(acc, 'higher', 'lower')}) "
                f"| {summary(spk, '+.0f')} % ({on_seeds(spk, 'more', 'fewer')}) "
                f"| {pct(sync)} -> {pct(base)} "
                f"| {summary(dec, '.2f')}x ({on_seeds(np.log(dec), 'sooner', 'later')}) "
                f"| {summary(cor, '.2f')}x ({on_seeds(np.log(cor), 'sooner', 'later')}) |"
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("doc", type=Path)
    ap.add_argument("runs", type=Path, nargs="+", help="reproduce output folders, e.g. results/digits")
    ap.add_argument("--figures", type=Path, help="copy each run's figures to FIGURES/<dataset>/")
    args = ap.parse_args()
    lines = args.doc.read_text().splitlines()
    runs = {r.name: r for r in args.runs}
    for name, run in runs.items():
        start = lines.index(SECTIONS[name][0])
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = _section(lines, start, run, name)
        if args.figures:
            dest = args.figures / name
            dest.mkdir(parents=True, exist_ok=True)
            for png in run.glob("*.png"):
                if (dest / png.name).exists():
                    shutil.copyfile(png, dest / png.name)
    start = lines.index("## Across datasets")
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    last = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    lines[first:last] = _across(runs)
    args.doc.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""When does asynchronous execution reach a decision sooner than layered execution?

Koopman et al. claim that asynchronous execution reaches "a correct decision faster
without integrating all spikes" (up to 2x). This script measures that on the embedded
digits (64-64-64-10, T = 8) with the decision latency of ``asyncsnn.latency``
(``docs/guide.md``, "Decision latency"), changing one factor at a time from the
``asyncsnn reproduce`` default (rate code, F = 8, threshold 1, beta 0.9, count loss,
8 epochs, Adam lr 3e-3, batch 32):

* the forward group size F (training and inference at the same F);
* the depth (one, two or four hidden layers of 64);
* the threshold and the membrane decay beta;
* the input encoding (``rate``: Bernoulli spikes in every frame; ``latency``: one spike
  per pixel, brighter first);
* the training loss: ``count`` (cross-entropy on the total counts), ``rate``
  (cross-entropy per timestep) and ``cumulative`` (cross-entropy on the running counts
  after every timestep, averaged over time: it rewards a correct lead from the first
  timesteps on, i.e. early correct output spikes; the loss sees counts per timestep,
  not per forward step);

and, without retraining, the forward group size at inference and the stop rule
(``drain``, ``first_output``). For every setting it trains the network twice, layered
BPTT and unlayered ``momentum`` (the paper's best), and reports per seed and as
mean ± std over the seeds:

* ``same model``: ``mean(layered) / mean(momentum)`` of the synaptic operations, spikes
  and forward steps to the stable decision and to the first correct output spike, the
  momentum-trained model run under ``layered`` against the same model under
  ``momentum`` (``asyncsnn.latency.compare_layered``: paired over the samples that have
  the quantity in both runs; above 1 the asynchronous run decides sooner);
* ``deployed``: the same ratios for the layered-trained model under ``layered`` against
  the momentum-trained model under ``momentum`` (each model on the execution it was
  trained for; means over the samples that have the quantity in both runs);
* the accuracies of both.

Forward steps are not one unit across the two executions (a layered step integrates
a whole layer, an asynchronous one F neurons' spikes), so the synops, the work
integrated before the decision, are the comparable measure of time on hardware that
processes spikes at a fixed rate.

Usage::

    OMP_NUM_THREADS=1 python benches/decision_latency.py --seeds 0 1 2 --out dl.json
    python benches/decision_latency.py --only base loss=cumulative --seeds 0   # a subset

Prints one markdown table per seed group (per setting) and writes every number to
``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: Training epochs (``asyncsnn reproduce``'s digits default).
EPOCHS = 8


@dataclass(frozen=True)
class Setting:
    """One training configuration."""

    name: str
    forward_group_size: int = 8
    threshold: float = 1.0
    beta: float = 0.9
    encoding: str = "rate"
    loss: str = "count"
    hidden: tuple[int, ...] = (64, 64)


#: Each setting changes one factor of the default (``base``).
BASE = Setting("base")
SETTINGS = [  # in the order they run: the most telling first
    BASE,
    replace(BASE, name="loss=cumulative", loss="cumulative"),
    replace(BASE, name="encoding=latency", encoding="latency"),
    replace(BASE, name="F=2", forward_group_size=2),
    replace(BASE, name="F=32", forward_group_size=32),
    replace(BASE, name="threshold=0.5", threshold=0.5),
    replace(BASE, name="threshold=2", threshold=2.0),
    replace(BASE, name="beta=0.5", beta=0.5),
    replace(BASE, name="beta=1", beta=1.0),
    replace(BASE, name="loss=rate", loss="rate"),
    replace(BASE, name="hidden=64", hidden=(64,)),
    replace(BASE, name="hidden=64x4", hidden=(64, 64, 64, 64)),
]
#: Evaluation-only variants of the base models: (name, inference F, stop).
EVAL_VARIANTS = [
    ("infer F=1", 1, "drain"),
    ("infer F=2", 2, "drain"),
    ("infer F=4", 4, "drain"),
    ("infer F=16", 16, "drain"),
    ("infer F=64", 64, "drain"),
    ("stop=first_output", 8, "first_output"),
]
QUANTITIES = ("synops_to_decision", "spikes_to_decision", "steps_to_decision", "synops_to_correct", "steps_to_correct")


def cumulative_loss(counts: Any, labels: Any) -> Any:
    """Cross-entropy on the running output counts after each timestep, averaged over time."""
    import torch.nn.functional as F

    running = counts.cumsum(1)
    n_t = counts.shape[1]
    return F.cross_entropy(running.permute(0, 2, 1), labels.unsqueeze(1).expand(-1, n_t))


def _data(encoding: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as ``[n, 8, 64]`` frames (the seeds of ``asyncsnn reproduce``'s digits loader)."""
    from asyncsnn import data

    tr_i, tr_y, te_i, te_y = data.digits_split()
    tr = data.encode(tr_i, encoding, timesteps=8, seed=seed)  # type: ignore[arg-type]
    te = data.encode(te_i, encoding, timesteps=8, seed=seed + 1)  # type: ignore[arg-type]

    def flat(a: np.ndarray) -> np.ndarray:
        return a.reshape(len(a), a.shape[1], -1).astype(np.float32)

    return flat(tr), np.asarray(tr_y, np.int64), flat(te), np.asarray(te_y, np.int64)


def _train(setting: Setting, scheduler: Any, seed: int, train: tuple[np.ndarray, np.ndarray], epochs: int) -> Any:
    from asyncsnn.torch import AsyncSNN
    from asyncsnn.torch import train as fit

    module = AsyncSNN.from_sizes([64, *setting.hidden, 10], threshold=setting.threshold, beta=setting.beta, seed=seed)
    loss: Any = cumulative_loss if setting.loss == "cumulative" else setting.loss
    net, _ = fit(
        module,
        train,
        scheduler=scheduler,
        forward_group_size=setting.forward_group_size,
        epochs=epochs,
        lr=3e-3,
        loss=loss,
        batch_size=32,
        seed=seed,
        progress=False,
        device="cpu",
        distributed=False,
    )
    return net


def _means_both(a: Any, b: Any) -> dict[str, tuple[float, float]]:
    """Per quantity: the means of ``a`` and ``b`` over the samples that have it in both."""
    from asyncsnn.latency import decision_latency

    la, lb = decision_latency(a), decision_latency(b)
    out = {}
    for q in QUANTITIES:
        x, y = getattr(la, q), getattr(lb, q)
        both = (x >= 0) & (y >= 0)
        out[q] = (float(x[both].mean()), float(y[both].mean())) if both.any() else (math.nan, math.nan)
    return out


def _compare(asy: Any, lay: Any, lay_for_deploy: Any) -> dict[str, float]:
    """Accuracies, the async run's decision latency and the two sets of ratios."""
    from asyncsnn.latency import compare_layered, decision_latency

    same = compare_layered(asy, lay)
    deployed = {q: (b / a if a else math.nan) for q, (a, b) in _means_both(asy, lay_for_deploy).items()}
    means = decision_latency(asy).means()
    row: dict[str, float] = {
        "acc_async": float(asy.accuracy or 0.0),
        "acc_same_model_layered": float(lay.accuracy or 0.0),
        "acc_layered_trained_layered": float(lay_for_deploy.accuracy or 0.0),
    }
    for q in QUANTITIES:
        row[q] = means[q]
        row[f"same_{q}"] = same[q]
        row[f"deployed_{q}"] = deployed[q]
    return row


def run_setting(setting: Setting, seed: int, log: Any, epochs: int = EPOCHS) -> dict[str, dict[str, float]]:
    """Train both models of ``setting`` for ``seed``; the rows of it (and of the eval variants for base)."""
    import asyncsnn

    tic = time.perf_counter()
    tr_x, tr_y, te_x, te_y = _data(setting.encoding, seed)
    layered_net = _train(setting, "layered", seed, (tr_x, tr_y), epochs)
    async_net = _train(setting, "momentum", seed, (tr_x, tr_y), epochs)
    f = setting.forward_group_size

    def infer(net: Any, scheduler: Any, f: int, stop: Any) -> Any:
        return asyncsnn.infer(net, te_x, scheduler=scheduler, forward_group_size=f, stop=stop, seed=seed, labels=te_y)

    rows = {
        setting.name: _compare(
            infer(async_net, "momentum", f, "drain"),
            infer(async_net, "layered", f, "drain"),
            infer(layered_net, "layered", f, "drain"),
        )
    }
    if setting.name == "base":
        for name, fi, stop in EVAL_VARIANTS:
            rows[name] = _compare(
                infer(async_net, "momentum", fi, stop),
                infer(async_net, "layered", fi, stop),
                infer(layered_net, "layered", fi, stop),
            )
    log(f"  seed {seed} {setting.name}: {time.perf_counter() - tic:.0f} s")
    return rows


def _fmt(values: list[float], spec: str, scale: float = 1.0) -> str:
    have = np.array([v * scale for v in values if not math.isnan(v)])
    if not have.size:
        return "n/a"
    text = format(float(have.mean()), spec)
    return text + (f" ± {format(float(have.std(ddof=1)), spec)}" if have.size > 1 else "")


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """The markdown table: one row per setting, mean ± std over the seeds."""
    cols = [
        ("acc. L-trained / L", "acc_layered_trained_layered", ".1f", 100.0),
        ("acc. M-trained / M", "acc_async", ".1f", 100.0),
        ("synops to dec. (M/M)", "synops_to_decision", ".0f", 1.0),
        ("same model: synops to dec.", "same_synops_to_decision", ".2f", 1.0),
        ("same model: synops to correct", "same_synops_to_correct", ".2f", 1.0),
        ("same model: steps to dec.", "same_steps_to_decision", ".2f", 1.0),
        ("deployed: synops to dec.", "deployed_synops_to_decision", ".2f", 1.0),
        ("deployed: spikes to dec.", "deployed_spikes_to_decision", ".2f", 1.0),
        ("deployed: synops to correct", "deployed_synops_to_correct", ".2f", 1.0),
    ]
    seeds = sorted({s for per_seed in results.values() for s in per_seed})
    lines = [
        "| setting | seeds | " + " | ".join(c[0] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, per_seed in results.items():
        cells = [_fmt([per_seed[s][key] for s in sorted(per_seed)], spec, scale) for _, key, spec, scale in cols]
        lines.append(f"| {name} | {len(per_seed)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"(ratios: layered / momentum; above 1 the asynchronous run decides sooner; seeds {seeds})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", help="setting names to run (default: all)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs (a smoke run: 1)")
    parser.add_argument("--out", default="decision_latency.json", help="JSON file (merged with an existing one)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results: dict[str, dict[int, dict[str, float]]] = {}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            saved = json.load(fh)
        results = {k: {int(s): v for s, v in per.items()} for k, per in saved["results"].items()}
    settings = [s for s in SETTINGS if not args.only or s.name in args.only]
    from asyncsnn._provenance import provenance

    for setting in settings:
        for seed in args.seeds:
            rows = run_setting(setting, seed, lambda line: print(line, file=sys.stderr, flush=True), args.epochs)
            for name, row in rows.items():
                results.setdefault(name, {})[seed] = row
            with open(args.out, "w") as fh:
                json.dump({"provenance": provenance(), "epochs": args.epochs, "results": results}, fh, indent=1)
    order = [s.name for s in SETTINGS[:1]] + [v[0] for v in EVAL_VARIANTS] + [s.name for s in SETTINGS[1:]]
    print(table({k: results[k] for k in order if k in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

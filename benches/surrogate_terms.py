"""What each ``surrogate_terms`` option learns (docs/semantics.md sections 9 and 10).

Trains ``AsyncSNN.from_sizes([64, 128, 10], threshold=1.0, beta=0.9, seed=s)`` on the
embedded UCI digits (``asyncsnn.data.digits_split``, rate code, T = 10 frames, as the
slow digits test does) with the ``momentum`` scheduler at F = 8, Adam, count loss,
batch 64, the same epochs and learning rate, once with ``surrogate_terms="fired"``
(asyncsnn's default) and once with ``"every_step"`` (asynctorch's), for each seed, and
prints per run:

* ``grad ratio``, ``cosine``: at initialisation, on the first 64 training samples and
  the same forward pass, ``|g_every_step| / |g_fired|`` and the cosine between the
  two gradients (all weights flattened; the same for both rows of a seed);
* ``momentum acc``, ``layered acc``: test accuracy of the trained network, evaluated by
  the Rust engine (``asyncsnn.infer``) with ``momentum`` F = 8 and with ``layered``;
* ``spikes/sample``: network spikes per test sample under ``momentum`` F = 8.

Usage::

    python benches/surrogate_terms.py [--seeds 0,1] [--epochs 8] [--lr 5e-3]
        [--threads 2] [--train-samples N] [--test-samples N]
"""

from __future__ import annotations

import argparse
from typing import Any


def gradient_comparison(model: Any, x: Any, y: Any) -> tuple[float, float]:
    """``(|g_every_step| / |g_fired|, cosine)`` of the count-loss gradients on one batch."""
    import torch

    from asyncsnn.torch import count_loss

    grads = []
    for terms in ("fired", "every_step"):
        out = model(x, scheduler="momentum", forward_group_size=8, surrogate_terms=terms)
        g = torch.autograd.grad(count_loss(out.counts, y), list(model.parameters()))
        grads.append(torch.cat([a.reshape(-1) for a in g]).double())
    a, b = grads
    return float(b.norm() / a.norm()), float(a @ b / (a.norm() * b.norm()))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    import asyncsnn
    from asyncsnn.data import digits_split, encode
    from asyncsnn.torch import AsyncSNN, train

    torch.set_num_threads(args.threads)
    tr_i, tr_y, te_i, te_y = digits_split()
    t_steps = 10
    xtr = encode(tr_i, "rate", timesteps=t_steps, seed=0).reshape(len(tr_i), t_steps, 64)[: args.train_samples]
    xte = encode(te_i, "rate", timesteps=t_steps, seed=1).reshape(len(te_i), t_steps, 64)[: args.test_samples]
    tr_y, te_y = tr_y[: len(xtr)], te_y[: len(xte)]
    rows = []
    for seed in args.seeds:
        init = AsyncSNN.from_sizes([64, 128, 10], threshold=1.0, beta=0.9, seed=seed)
        ratio, cos = gradient_comparison(init, torch.from_numpy(xtr[:64]), torch.from_numpy(tr_y[:64]))
        for terms in ("fired", "every_step"):
            model = AsyncSNN.from_sizes([64, 128, 10], threshold=1.0, beta=0.9, seed=seed)
            net, _ = train(
                model,
                (xtr, tr_y),
                scheduler="momentum",
                forward_group_size=8,
                epochs=args.epochs,
                lr=args.lr,
                loss="count",
                batch_size=64,
                seed=seed,
                surrogate_terms=terms,
                progress=False,
            )
            mom = asyncsnn.infer(net, xte, scheduler="momentum", forward_group_size=8, labels=te_y)
            lay = asyncsnn.infer(net, xte, scheduler="layered", labels=te_y)
            row = {
                "seed": seed,
                "terms": terms,
                "ratio": ratio,
                "cosine": cos,
                "momentum_acc": float(mom.accuracy or 0.0),
                "layered_acc": float(lay.accuracy or 0.0),
                "spikes": float(np.mean(mom.spikes_total)),
            }
            rows.append(row)
            print(
                f"seed {seed} {terms:10} grad ratio {ratio:6.2f} cosine {cos:5.2f} "
                f"momentum acc {row['momentum_acc']:.3f} layered acc {row['layered_acc']:.3f} "
                f"spikes/sample {row['spikes']:7.1f}",
                flush=True,
            )
    for terms in ("fired", "every_step"):
        sel = [r for r in rows if r["terms"] == terms]
        print(
            f"mean {terms:10} momentum acc {np.mean([r['momentum_acc'] for r in sel]):.3f} "
            f"layered acc {np.mean([r['layered_acc'] for r in sel]):.3f} "
            f"spikes/sample {np.mean([r['spikes'] for r in sel]):7.1f}"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1", help="comma-separated model seeds")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=None, help="use the first N training samples")
    parser.add_argument("--test-samples", type=int, default=None, help="use the first N test samples")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    run(args)


if __name__ == "__main__":
    main()

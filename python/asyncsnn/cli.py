"""The ``asyncsnn`` command line."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]

_EPILOG_DEMO = """examples:
  asyncsnn demo                       # 64-128-64-10 network, 256 samples, every scheduler
  asyncsnn demo --samples 1000 -F 4   # more samples, smaller forward groups
  asyncsnn demo --threads 1           # single-threaded
"""


def _demo(args: argparse.Namespace) -> int:
    """Run a random network under every scheduler and print the counters side by side."""
    import asyncsnn

    rng = np.random.default_rng(args.seed)
    sizes = [64, 128, 64, 10]
    layers = [asyncsnn.Dense(rng.normal(0.08, 0.25, (n_out, n_in))) for n_in, n_out in itertools.pairwise(sizes)]
    net = asyncsnn.Network.sequential(input_shape=(64,), layers=layers, threshold=1.0, beta=0.9)
    x = (rng.random((args.samples, args.timesteps, 64)) < args.density).astype(np.float32)
    print(net.summary())
    print(
        f"\n{args.samples} samples x {args.timesteps} timesteps, input density {args.density}, "
        f"F = {args.forward_group_size}\n"
    )
    header = f"{'scheduler':<10} {'stop':<13} {'spikes/smp':>11} {'synops/smp':>11} {'fwd steps':>10} "
    header += f"{'steps->out':>10} {'dropped':>8} {'agree':>6} {'ms':>7}"
    print(header)
    print("-" * len(header))
    layered = asyncsnn.infer(net, x, scheduler="layered", threads=args.threads)
    for scheduler in ("layered", "fifo", "random", "momentum"):
        for stop in ("drain", "first_output"):
            tic = time.perf_counter()
            res = asyncsnn.infer(
                net,
                x,
                scheduler=scheduler,
                forward_group_size=args.forward_group_size,
                stop=stop,
                seed=args.seed,
                threads=args.threads,
            )
            ms = (time.perf_counter() - tic) * 1e3
            s2o = res.steps_to_first_output
            s2o_mean = float(s2o[s2o >= 0].mean()) if np.any(s2o >= 0) else float("nan")
            agree = float(np.mean(res.predictions == layered.predictions))
            print(
                f"{scheduler:<10} {stop:<13} {res.spikes_total.mean():>11.1f} {res.synops.mean():>11.0f} "
                f"{res.forward_steps.mean():>10.1f} {s2o_mean:>10.1f} {res.dropped_spikes.mean():>8.1f} "
                f"{agree:>6.2f} {ms:>7.1f}"
            )
    print("\nagree = fraction of predictions equal to the layered (layer-synchronous) run.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asyncsnn`` command."""
    parser = argparse.ArgumentParser(
        prog="asyncsnn",
        description="Asynchronous (event-driven) spiking neural networks: evaluation with exact counters.",
    )
    parser.add_argument("--version", action="store_true", help="print the package and semantics versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a random network under every scheduler and compare the counters",
        description="Run a random dense network on random input under every scheduler and stop mode.",
        epilog=_EPILOG_DEMO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--samples", type=int, default=256, help="number of samples (default 256)")
    demo.add_argument("--timesteps", type=int, default=20, help="timesteps per sample (default 20)")
    demo.add_argument("--density", type=float, default=0.2, help="input spike probability (default 0.2)")
    demo.add_argument("-F", "--forward-group-size", type=int, default=8, help="forward group size F (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncsnn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import asyncsnn

        print(f"asyncsnn {asyncsnn.__version__} (semantics version {asyncsnn.SPEC_VERSION})")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except Exception as exc:
        from asyncsnn.exceptions import AsyncSNNError

        if isinstance(exc, AsyncSNNError):
            print(f"asyncsnn: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

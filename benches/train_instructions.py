"""Instructions of one training epoch of the torch engine, counted by callgrind.

Timings of the torch engine's training on a shared 2-core VM move by 10-30 % from run
to run, more than most single changes to its CPU path. The number of instructions that
one epoch executes does not: this script runs each scheduler's epoch in a child process
under ``valgrind --tool=callgrind`` with instrumentation switched on (with
``callgrind_control``) only after a warm-up epoch and off after the measured one, so
imports, allocation warm-up and model building are not counted, and prints the
instructions in millions. With ``--base DIR`` it runs the same epoch a second time with
``DIR`` first on ``PYTHONPATH`` (a checkout's ``python/`` directory holding a built
``asyncsnn`` of another commit), both at once, and prints ``base / this``: above 1, this
tree executes fewer instructions.

The workload is ``train_compare.py``'s: ``AsyncSNN.from_sizes(--sizes)``, seed 0,
random rate-coded input (T = 10), batch 64, F = 8, SGD, rate loss, one torch thread,
``--samples`` samples per epoch. Instructions are a proxy for time where the cost is
interpreter, dispatch and kernel work, as in the unlayered CPU path; they do not see
cache misses or vector width. Needs valgrind (``callgrind_control`` with it); a child
takes about a minute at the defaults.

Usage::

    python benches/train_instructions.py [--sizes 64,128,128,10] [--schedulers layered,random,momentum]
        [--samples 128] [--base /path/to/other/checkout/python]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _epoch_workload(scheduler: str, sizes: list[int], samples: int) -> None:
    """The child: one warm-up epoch, then one epoch with callgrind's instrumentation on."""
    import numpy as np
    import torch

    from asyncsnn.torch import AsyncSNN, rate_loss

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 3.0, (samples, 1, sizes[0])).astype(np.float32)
    x = torch.from_numpy((rng.random((samples, 10, sizes[0]), dtype=np.float32) < rates).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, sizes[-1], samples))
    model = AsyncSNN.from_sizes(sizes, threshold=1.0, beta=0.9, seed=0)
    opt = torch.optim.SGD(model.parameters(), 1e-3)

    def epoch() -> None:
        for b in range(0, samples, 64):
            out = model(x[b : b + 64], scheduler=scheduler, forward_group_size=8)
            loss = rate_loss(out.counts, y[b : b + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()

    epoch()
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    epoch()
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)


def _start(scheduler: str, args: argparse.Namespace, pythonpath: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, str(Path(__file__).resolve()), "--child", scheduler]
    cmd += ["--sizes", args.sizes, "--samples", str(args.samples)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _collected(proc: subprocess.Popen[str], what: str) -> int:
    _, err = proc.communicate()
    found = _COLLECTED.findall(err or "")
    if proc.returncode != 0 or not found:
        tail = "\n".join((err or "").strip().splitlines()[-5:])
        raise SystemExit(f"train_instructions.py: the {what} run failed (exit {proc.returncode}):\n{tail}")
    return int(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,128,10", help="layer sizes, input first")
    parser.add_argument("--schedulers", default="layered,random,momentum")
    parser.add_argument("--samples", type=int, default=128, help="samples per epoch (batches of 64)")
    parser.add_argument("--base", metavar="DIR", help="count the same epoch with DIR first on PYTHONPATH too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        _epoch_workload(args.child, sizes, args.samples)
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        parser.exit(2, f"train_instructions.py: {' and '.join(missing)} not found on PATH (install valgrind)\n")
    if args.base is not None and not (Path(args.base) / "asyncsnn").is_dir():
        parser.exit(2, f"train_instructions.py: --base {args.base}: no asyncsnn package in that directory\n")
    print(f"{args.sizes}, {args.samples} samples per epoch, batch 64, F = 8, 1 thread; instructions of one epoch")
    for scheduler in args.schedulers.split(","):
        this = _start(scheduler, args, None)
        base = _start(scheduler, args, args.base) if args.base is not None else None
        n_this = _collected(this, scheduler)
        line = f"{scheduler:9s} {n_this / 1e6:10.1f} M"
        if base is not None:
            n_base = _collected(base, f"{scheduler} --base")
            line += f"   base {n_base / 1e6:10.1f} M   base/this {n_base / n_this:.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

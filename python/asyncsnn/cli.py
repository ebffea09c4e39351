"""The ``asyncsnn`` command line."""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from asyncsnn._prepare import SCHEDULER_NAMES, Scheduler
from asyncsnn.network import RESET_MODES

if TYPE_CHECKING:
    from asyncsnn.cost import CostReport, HardwareProfile
    from asyncsnn.network import Network
    from asyncsnn.reproduce import Dataset
    from asyncsnn.result import InferenceResult

__all__ = ["build_parser", "evaluate_profiles", "main"]

#: The demo's largest batch, timesteps and input frames (samples x timesteps): its input
#: is built in memory (8 bytes per value while it is drawn, 64 values per frame).
DEMO_MAX_SAMPLES = 1_000_000
DEMO_MAX_TIMESTEPS = 100_000
DEMO_MAX_FRAMES = 2**20


class _HelpFormatter(argparse.HelpFormatter):
    """The help layout of every command.

    One-line descriptions are wrapped, the epilogs (examples) keep their line breaks, and
    every option's help ends with its default (see :func:`option_help`).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # laid out by hand
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return option_help(action)


def option_help(action: argparse.Action) -> str | None:
    """The help text of one argparse action as ``asyncsnn --help`` shows it (with its default).

    ``(default: X)`` is appended unless the text already names its default (``default:
    all cores``); flags show ``off``, lists their values; positional arguments and
    ``--help`` get none.
    """
    text = action.help
    if text is None or text is argparse.SUPPRESS or "default" in text:
        return text
    if not action.option_strings or action.default is argparse.SUPPRESS:
        return text  # a positional argument, --help
    default = action.default
    if isinstance(default, bool) and action.nargs == 0:
        default = "on" if default else "off"
    elif isinstance(default, (list, tuple)):
        default = " ".join(str(v) for v in default)
    return f"{text} (default: {default})"


# Advice written for the Python API (keyword arguments), and what it is on the command line.
_CLI_WORDING: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bpass root=(?!\w)"), "pass --root FOLDER"),
    (
        re.compile(r"\. Pass download=True to let tonic download it \(network needed\), or write the files with "),
        "; the asyncsnn command never downloads: let tonic download them, or write them with ",
    ),
    (re.compile(r"\bneeds a checkpoint_dir\b"), "needs --checkpoint-dir"),
    (re.compile(r"must be an int in \[1, 1024\] or None\b"), "must be an int in [1, 1024] (leave it out: all cores)"),
]


def for_the_command_line(message: str) -> str:
    """``message`` with Python-API advice (``pass root=``, ``download=True``) in command-line terms."""
    for pattern, replacement in _CLI_WORDING:
        message = pattern.sub(replacement, message)
    return message


_EPILOG_DEMO = """examples:
  asyncsnn demo                       # 64-128-64-10 network, 256 samples, every scheduler
  asyncsnn demo --samples 1000 -F 4   # more samples, smaller forward groups
  asyncsnn demo --threads 1           # single-threaded
"""


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int in ``[minimum, maximum]`` (a bad value is a usage error, exit 2).

    Integral numbers in float notation (``1e9``) are read as the int they name, so that a
    size written that way gets the range error, not a syntax error.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and number == int(number)):
                raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
            value = int(number)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    return parse


def _finite_float(text: str) -> float:
    """An argparse type: any finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
            if math.isinf(high):
                raise argparse.ArgumentTypeError(
                    f"must be a finite number {'>' if low_open else '>='} {low}, got {text}"
                )
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low}, {high}], got {text}")
        return value

    return parse


def _probability(text: str) -> float:
    """An argparse type: a dropout probability in ``[0, 1)`` (R4.10, R4.11)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _demo(args: argparse.Namespace) -> int:
    """Run a random network under every scheduler and print the counters side by side."""
    import asyncsnn
    from asyncsnn._prepare import RunOptions, check_threads
    from asyncsnn.exceptions import ParameterError, invalid

    # Every option is checked before anything is printed or allocated.
    frames = args.samples * args.timesteps
    if frames > DEMO_MAX_FRAMES:
        raise invalid(
            ParameterError,
            "samples",
            args.samples,
            f"--samples x --timesteps = {frames} input frames is more than the demo's {DEMO_MAX_FRAMES} "
            f"(its input alone would take {frames * 64 * 8 / 2**30:.1f} GiB while it is drawn)",
        )
    rng = np.random.default_rng(args.seed)
    sizes = [64, 128, 64, 10]
    layers = [asyncsnn.Dense(rng.normal(0.08, 0.25, (n_out, n_in))) for n_in, n_out in itertools.pairwise(sizes)]
    net = asyncsnn.Network.sequential(input_shape=(64,), layers=layers, threshold=1.0, beta=0.9)
    RunOptions(forward_group_size=args.forward_group_size, seed=args.seed)  # as every scheduler checks them
    check_threads(args.threads)
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
    for scheduler in SCHEDULER_NAMES:
        for stop in ("drain", "first_output"):
            tic = time.perf_counter()
            res = asyncsnn.infer(
                net,
                x,
                scheduler=Scheduler(scheduler),
                forward_group_size=args.forward_group_size,
                stop=stop,
                seed=args.seed,
                threads=args.threads,
            )
            ms = (time.perf_counter() - tic) * 1e3
            s2o_mean = res.mean_steps_to_first_output  # "steps to 1st output" (docs/guide.md)
            agree = float(np.mean(res.predictions == layered.predictions))
            print(
                f"{scheduler:<10} {stop:<13} {res.spikes_total.mean():>11.1f} {res.synops.mean():>11.0f} "
                f"{res.forward_steps.mean():>10.1f} {s2o_mean:>10.1f} {res.dropped_spikes.mean():>8.1f} "
                f"{agree:>6.2f} {ms:>7.1f}"
            )
    print("\nsteps->out = steps to 1st output: forward steps from the start of a timestep to its first output")
    print("             spike, mean over the timesteps that have one (docs/guide.md);")
    print("agree      = fraction of predictions equal to the layered (layer-synchronous) run.")
    return 0


_EPILOG_REPRODUCE = """examples:
  asyncsnn reproduce                                  # embedded digits, about 5-10 minutes on 2 cores
  asyncsnn reproduce --quick                          # a 1-minute smoke run
  asyncsnn reproduce --dataset fashion-mnist --epochs 3
  asyncsnn reproduce --dataset nmnist --root ~/data   # tonic's folder with NMNIST/
  asyncsnn reproduce --seeds 0 1 2                    # three runs, then the mean ± std over them
  asyncsnn reproduce --dataset randman --recurrent    # recurrent hidden layers on a temporal task

writes results/<name>/{table.md,results.json,results.csv,*.png,figures.md,model_*.safetensors}
with --seeds: each seed's run in results/<name>/seed_<S>/, the mean and spread in results/<name>/
"""

_EPILOG_TRAIN = """examples:
  asyncsnn train --scheduler momentum -F 8 --epochs 10 --out model.safetensors
  asyncsnn train --scheduler layered --dataset randman --out layered.safetensors
  asyncsnn train --device cpu --epochs 2         # force the CPU (default: CUDA when available)
  asyncsnn train --alpha 0.8 --out cuba.safetensors  # current-based LIF neurons (snnTorch's Synaptic)

data parallel on 4 processes (gloo on CPU, nccl with one GPU per process; --batch-size
stays the global batch, rank 0 writes the checkpoints and --out):
  torchrun --standalone --nproc_per_node 4 -m asyncsnn train --epochs 10 --out model.safetensors
"""

_RECURRENT_HELP = (
    "give every hidden layer a recurrent projection to itself (snnTorch's RLeaky; docs/semantics.md R4.9: "
    "carried to the next timestep under layered, delivered at once under the other schedulers)"
)
_DEVICE_HELP = "torch device of the training: auto (CUDA when available, else CPU), cpu, cuda or cuda:N"

_EPILOG_EVALUATE = """examples:
  asyncsnn evaluate model.safetensors --scheduler random -F 4 --stop first_output
  asyncsnn evaluate model.safetensors --csv per_sample.csv --json summary.json
  asyncsnn evaluate model.safetensors --profile loihi,seneca      # + energy and time (docs/cost.md)
  asyncsnn evaluate model.safetensors --scheduler layered momentum random -F 1 8 32 --profile all
  asyncsnn evaluate model.safetensors --scheduler layered momentum --profile loihi --plot compare.png

several schedulers or F values evaluate every combination and print one table, one row
per scheduler x F; --json then holds one summary per row under "configurations", and
--csv one row per row x sample, with its scheduler and F in the first two columns.
"""


_EPILOG_TRACE = """examples:
  asyncsnn trace model.safetensors --sample 3                  # layered vs momentum, F = 8
  asyncsnn trace model.safetensors --sample 3 --scheduler random momentum -F 1 --format parquet
  asyncsnn trace model.safetensors --sample 3 --scheduler fifo random --no-prioritize-input

sample N is row N of what `asyncsnn evaluate` runs with the same --dataset, --seed and
--max-test (and the random function sees the same sample id), so the two agree.
"""


def _reproduce(args: argparse.Namespace) -> int:
    from asyncsnn.exceptions import ParameterError, invalid
    from asyncsnn.reproduce import ReproduceConfig, run_reproduce, run_reproduce_seeds

    # run_reproduce checks the train extra (torch, tqdm) first: one line if it is missing.
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds is not None else [args.seed]
    if args.seeds is not None and len(seeds) != len(args.seeds):
        raise invalid(ParameterError, "--seeds", args.seeds, "names a seed twice")
    if args.resume and len(seeds) < 2:
        raise invalid(ParameterError, "--resume", True, "reuses seed folders: it needs --seeds with two seeds or more")
    cfg = ReproduceConfig(
        dataset=args.dataset,
        root=args.root,
        forward_group_size=args.forward_group_size,
        epochs=args.epochs,
        seed=seeds[0],
        out=args.out,
        quick=args.quick,
        max_train=args.max_train,
        max_test=args.max_test,
        hidden=tuple(args.hidden),
        recurrent=args.recurrent,
        progress=not args.no_progress,
        device=args.device,
    )
    if len(seeds) > 1:
        run_reproduce_seeds(cfg, seeds, resume=args.resume)
    else:
        run_reproduce(cfg)
    return 0


def _train(args: argparse.Namespace) -> int:
    import math

    import asyncsnn
    from asyncsnn.reproduce import load_dataset, require_train_extra, training_metadata

    require_train_extra("asyncsnn train")
    from asyncsnn.torch import AsyncSNN, train
    from asyncsnn.torch.training import is_main_process, resolve_device

    device = resolve_device(args.device)  # a bad --device fails here, before the data is loaded
    ds = load_dataset(args.dataset, root=args.root, seed=args.seed, max_train=args.max_train, max_test=args.max_test)
    sizes = [math.prod(ds.input_shape), *args.hidden, ds.n_classes]
    module = AsyncSNN.from_sizes(
        sizes,
        threshold=args.threshold,
        beta=args.beta,
        seed=args.seed,
        bias=args.bias,
        reset=args.reset,
        recurrent=args.recurrent,
        alpha=args.alpha,
    )
    flat = ds.train_x.reshape(len(ds.train_y), ds.train_x.shape[1], -1)
    test = (ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], -1), ds.test_y)
    net, hist = train(
        module,
        (flat, ds.train_y),
        scheduler=args.scheduler,
        forward_group_size=args.forward_group_size,
        epochs=args.epochs,
        lr=args.lr,
        loss=args.loss,
        batch_size=args.batch_size,
        seed=args.seed,
        test_data=test,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        allow_config_change=args.allow_config_change,
        progress=not args.no_progress,
        device=args.device,
        surrogate_terms=args.surrogate_terms,
        input_dropout=args.input_dropout,
        spike_dropout=args.spike_dropout,
        prioritize_input=args.prioritize_input,
    )
    if is_main_process():  # under torchrun every rank holds the same network; rank 0 writes it
        meta = training_metadata(
            training=args.scheduler,
            dataset=ds.name,
            forward_group_size=args.forward_group_size,
            lr=args.lr,
            epochs=args.epochs,
            batch_size=args.batch_size,
            hidden=list(args.hidden),
            recurrent=args.recurrent,
            bias=args.bias,
            reset=args.reset,
            alpha=args.alpha,
            surrogate_terms=args.surrogate_terms,
            input_dropout=args.input_dropout,
            spike_dropout=args.spike_dropout,
            prioritize_input=args.prioritize_input,
            loss=args.loss,
            beta=args.beta,
            threshold=args.threshold,
            seed=args.seed,
            max_train=args.max_train,
            max_test=args.max_test,
            train_samples=len(ds.train_y),
            device=str(device),
            flatten_input="1",
        )
        asyncsnn.save(net, args.out, metadata=meta)
        print(f"saved {args.out}; test accuracy per epoch: {[round(a or 0.0, 4) for a in hist.test_accuracy]}")
    return 0


#: Per-sample counters of ``asyncsnn evaluate --csv`` (and, but ``predictions``, the means of ``--json``).
_EVALUATE_PER_SAMPLE = [
    "predictions",
    "spikes_total",
    "input_events",
    "synops",
    "forward_steps",
    "dropped_spikes",
    "queue_peak",
]


def evaluate_profiles(values: Sequence[str] | None) -> list[HardwareProfile]:
    """The profiles that ``--profile`` names: shipped names, ``all``, comma lists or JSON files.

    A value ending in ``.json`` is read as a custom profile (a JSON object of
    :class:`~asyncsnn.cost.HardwareProfile` fields); every other value goes through
    :func:`~asyncsnn.cost.resolve_profiles`. ``None`` (the option not given) is no profile.

    Raises
    ------
    ParameterError
        An unknown name, a JSON file that is not a valid profile, or two different
        profiles with the same name.
    OSError
        A JSON file that cannot be read.
    """
    import json

    from asyncsnn.cost import HardwareProfile, resolve_profiles
    from asyncsnn.exceptions import ParameterError, invalid

    items: list[str | HardwareProfile] = []
    for value in values or []:
        for part in value.split(","):
            if not part.strip().endswith(".json"):
                items.append(part)
                continue
            with open(part.strip()) as fh:
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise invalid(ParameterError, "profile", part.strip(), f"is not JSON ({exc})") from None
            items.append(HardwareProfile.from_dict(data))
    return resolve_profiles(items)


#: The per-sample ``CostReport`` arrays in ``evaluate --csv``, as ``<key>_<profile>`` (the key
#: is the attribute name and its unit: ``_j`` joules, ``_s`` seconds; docs/cost.md).
_COST_PER_SAMPLE = (
    "energy_per_inference_j",
    "time_per_inference_s",
    "time_to_correct_s",
    "time_to_decision_s",
    "energy_to_correct_j",
    "energy_to_decision_j",
)


def _cost_columns(name: str) -> list[str]:
    return [f"{key}_{name}" for key in _COST_PER_SAMPLE]


def _evaluate_summary(
    res: InferenceResult, costs: Sequence[CostReport], layered: InferenceResult | None = None
) -> dict[str, object]:
    """The ``--json`` summary of one configuration (NaN written as null).

    ``layered`` is the same model and input under ``layered`` inference, the baseline of
    the decision-latency ratios (default: ``res`` itself).
    """
    from asyncsnn.latency import compare_layered, decision_latency

    summary: dict[str, object] = {"options": res.options, "accuracy": res.accuracy, "samples": res.batch_size}
    summary.update({f"mean_{n}": float(getattr(res, n).mean()) for n in _EVALUATE_PER_SAMPLE[1:]})
    # "steps to 1st output" as summary() prints it and the reproduce table has it (NaN: null).
    latency = res.mean_steps_to_first_output
    summary["mean_steps_to_first_output"] = None if math.isnan(latency) else latency
    ratios = compare_layered(res, res if layered is None else layered)
    summary["decision_latency"] = {
        "mean": {k: None if math.isnan(v) else v for k, v in decision_latency(res).means().items()},
        "layered_over_async": {k: None if math.isnan(v) else v for k, v in ratios.items()},
    }
    summary["cost"] = {c.profile.name: c.as_dict() for c in costs}
    return summary


def _evaluate_settings(
    args: argparse.Namespace,
    schedulers: Sequence[str],
    sizes: Sequence[int],
    profiles: Sequence[HardwareProfile],
    samples: int,
) -> dict[str, object]:
    """Every setting of an ``evaluate`` run, for its ``--json`` (with the model's training settings)."""
    from asyncsnn.model_file import read_metadata

    model_meta = {k: v for k, v in read_metadata(args.model).items() if k != "network"}
    return {
        "model": args.model,
        "dataset": args.dataset,
        "root": args.root,
        "max_test": args.max_test,
        "samples": samples,
        "engine": "rust",
        "schedulers": list(schedulers),
        "forward_group_sizes": list(sizes),
        "stop": args.stop,
        "extra_steps": args.extra_steps,
        "seed": args.seed,
        "input_dropout": args.input_dropout,
        "spike_dropout": args.spike_dropout,
        "prioritize_input": args.prioritize_input,
        "threads": args.threads,
        "profiles": [p.name for p in profiles],
        "model_metadata": model_meta,
    }


def _sweep_table(
    rows: Sequence[tuple[str, int, InferenceResult, Sequence[CostReport]]], layered: InferenceResult | None = None
) -> str:
    """One line per configuration: accuracy, counters, latency, then energy and time per profile.

    The decision-latency columns (``docs/guide.md``): mean steps to the first correct
    output spike and to the stable decision, synops to the stable decision, and the
    ratios layered / this row of the steps and synops to the stable decision, against
    ``layered`` (the same model and input under ``layered`` inference; default: the row).
    """
    from asyncsnn.latency import compare_layered, decision_latency

    head = (
        f"{'scheduler':<10} {'F':>5} {'accuracy':>8} {'spikes/smp':>11} {'synops/smp':>11} {'fwd steps':>10} "
        f"{'steps->out':>10} {'silent':>7} {'steps->ok':>9} {'steps->dec':>10} {'syn->dec':>9} "
        f"{'lay/dec st':>10} {'lay/dec syn':>11}"
    )
    # Energy per inference and to the stable decision per profile; where the profile has
    # times, time per inference and from the start of the sample to the first correct output
    # spike and to the stable decision.
    for c in rows[0][3] if rows else []:
        kinds = ("uJ/inf", "uJ->dec") + (("us/inf", "us->ok", "us->dec") if c.profile.has_time_model else ())
        head += "".join(f" {kind + ' ' + c.profile.name:>14}" for kind in kinds)
    lines = [head, "-" * len(head)]
    for scheduler, f, res, costs in rows:
        acc = "n/a" if res.accuracy is None else f"{100 * res.accuracy:.1f} %"
        silent = float(np.mean(res.predictions < 0)) if res.batch_size else float("nan")
        line = (
            f"{scheduler:<10} {f:>5} {acc:>8} {res.spikes_total.mean():>11.1f} {res.synops.mean():>11.0f} "
            f"{res.forward_steps.mean():>10.1f} {res.mean_steps_to_first_output:>10.2f} {100 * silent:>6.1f}%"
        )
        means = decision_latency(res).means()
        ratios = compare_layered(res, res if layered is None else layered)
        line += (
            f" {means['steps_to_correct']:>9.2f} {means['steps_to_decision']:>10.2f} {means['synops_to_decision']:>9.0f}"
            f" {ratios['steps_to_decision']:>9.2f}x {ratios['synops_to_decision']:>10.2f}x"
        )
        for c in costs:
            values = [c.mean_energy_per_inference, c.mean_energy_to_decision]
            if c.profile.has_time_model:
                values += [c.mean_time_per_inference, c.mean_time_to_correct, c.mean_time_to_decision]
            line += "".join(f" {'n/a' if math.isnan(v) else format(v * 1e6, '.4g'):>14}" for v in values)
        lines.append(line)
    return "\n".join(lines)


def _layered_baseline(
    args: argparse.Namespace,
    net: Network,
    x: np.ndarray,
    y: np.ndarray,
    rows: Sequence[tuple[str, int, InferenceResult, Sequence[CostReport]]],
) -> InferenceResult:
    """The decision-latency baseline of ``evaluate``: the model on ``x`` under ``layered``.

    Run with the same stop mode and seed (a configuration already run with ``layered``
    is reused: ``layered`` ignores F).
    """
    import asyncsnn

    for scheduler, _, res, _ in rows:
        if scheduler == "layered":
            return res
    return asyncsnn.infer(
        net,
        x,
        scheduler="layered",
        stop=args.stop,
        extra_steps=args.extra_steps,
        seed=args.seed,
        input_dropout=args.input_dropout,
        spike_dropout=args.spike_dropout,
        prioritize_input=args.prioritize_input,
        labels=y,
        threads=args.threads,
    )


def _test_set(args: argparse.Namespace) -> tuple[Network, Dataset, np.ndarray]:
    """The model of ``args.model`` and the test split of ``args.dataset`` shaped for it (evaluate, trace)."""
    import asyncsnn
    from asyncsnn.reproduce import load_dataset

    net = asyncsnn.load(args.model)
    ds = load_dataset(args.dataset, root=args.root, seed=args.seed, max_test=args.max_test, max_train=1)
    if math.prod(ds.test_x.shape[2:]) != net.input_size:
        raise asyncsnn.InputError(
            f"{args.model}: the model takes {net.input_size} inputs {net.input_shape} but dataset "
            f"{args.dataset!r} has {math.prod(ds.test_x.shape[2:])} {tuple(ds.test_x.shape[2:])}",
            field="dataset",
            value=args.dataset,
            location=args.model,
        )
    return net, ds, ds.test_x.reshape(len(ds.test_y), ds.test_x.shape[1], *net.input_shape)


def _evaluate(args: argparse.Namespace) -> int:
    import csv
    import json

    import asyncsnn
    from asyncsnn._provenance import provenance
    from asyncsnn.cost import estimate
    from asyncsnn.latency import QUANTITIES, decision_latency

    profiles = evaluate_profiles(args.profile)  # a bad --profile fails before the model is read
    schedulers = list(dict.fromkeys(args.scheduler))
    for scheduler in schedulers:  # every configuration is checked before the model is read (R4.13)
        asyncsnn.RunOptions(scheduler=scheduler, prioritize_input=args.prioritize_input)
    sizes = list(dict.fromkeys(args.forward_group_size))
    net, ds, x = _test_set(args)
    configs = list(itertools.product(schedulers, sizes))
    rows: list[tuple[str, int, InferenceResult, list[CostReport]]] = []
    for n, (scheduler, f) in enumerate(configs, start=1):
        tic = time.perf_counter()
        res = asyncsnn.infer(
            net,
            x,
            scheduler=scheduler,
            forward_group_size=f,
            stop=args.stop,
            extra_steps=args.extra_steps,
            seed=args.seed,
            input_dropout=args.input_dropout,
            spike_dropout=args.spike_dropout,
            prioritize_input=args.prioritize_input,
            labels=ds.test_y,
            threads=args.threads,
        )
        rows.append((scheduler, f, res, [estimate(res, net, p, scheduler=scheduler) for p in profiles]))
        if len(configs) > 1 and not args.no_progress:
            print(
                f"evaluate: {n}/{len(configs)} {scheduler} F={f} done in {time.perf_counter() - tic:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    layered = _layered_baseline(args, net, x, ds.test_y, rows)
    sweep = len(configs) > 1
    if sweep:
        print(f"{args.model}: {len(ds.test_y)} samples of {ds.name}, stop={args.stop}")
        print(_sweep_table(rows, layered))
        print("\nsteps->out = steps to 1st output (docs/guide.md); uJ/inf, us/inf = energy and time per inference,")
        print("us->ok, us->dec, uJ->dec = time from the start of the sample to the first correct output spike and")
        print("to the stable decision, and energy to the stable decision, per profile (a model estimate:")
        print("docs/cost.md); layered pays a barrier per forward step, the others none.")
        print("steps->ok, steps->dec, syn->dec = forward steps to the first correct output spike and steps and synops")
        print("to the stable decision, per sample; lay/dec = layered / this row (docs/guide.md, Decision latency).")
    else:
        from asyncsnn.latency import describe

        res, costs = rows[0][2], rows[0][3]
        print(res.summary())
        print(describe(res, layered))
        for c in costs:
            print(c.summary())
        if costs and rows[0][0] != "layered":
            print("layered baseline (the same model and input under layered inference, a barrier per forward step):")
            for c in costs:
                print(estimate(layered, net, c.profile, scheduler="layered").summary())
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            lead = ["scheduler", "forward_group_size"] if sweep else []
            cost_cols = [col for p in profiles for col in _cost_columns(p.name)]
            w.writerow(
                [
                    *lead,
                    "sample",
                    "label",
                    *_EVALUATE_PER_SAMPLE,
                    "steps_to_first_output",
                    "decision_class",
                    *QUANTITIES,
                    *cost_cols,
                ]
            )
            for scheduler, f, res, costs in rows:
                s2o, dec = res.steps_to_first_output, res.decision_class
                lat = decision_latency(res)
                per_cost = [[getattr(c, key[:-2]) for key in _COST_PER_SAMPLE] for c in costs]
                for b in range(res.batch_size):
                    w.writerow(
                        [
                            *([scheduler, f] if sweep else []),
                            b,
                            int(ds.test_y[b]),
                            *(int(getattr(res, n)[b]) for n in _EVALUATE_PER_SAMPLE),
                            int(s2o[b]),
                            int(dec[b]),
                            *(int(getattr(lat, n)[b]) for n in QUANTITIES),
                            *(format(float(a[b]), ".10g") for arrays in per_cost for a in arrays),
                        ]
                    )
    summaries = [_evaluate_summary(res, costs, layered) for _, _, res, costs in rows]
    if args.plot:
        from asyncsnn.figures import draw_evaluate

        title = f"{args.model}: {len(ds.test_y)} samples of {ds.name}, stop={args.stop}"
        print(f"wrote {args.plot}: {draw_evaluate(summaries, args.plot, title=title)}")
    if args.json:
        document: dict[str, object] = (
            {"model": args.model, "dataset": ds.name, "samples": len(ds.test_y), "configurations": summaries}
            if sweep
            else summaries[0]
        )
        document["settings"] = _evaluate_settings(args, schedulers, sizes, profiles, len(ds.test_y))
        document["provenance"] = provenance()
        with open(args.json, "w") as fh:
            json.dump(document, fh, indent=1)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from pathlib import Path

    import asyncsnn
    from asyncsnn.exceptions import InputError, invalid
    from asyncsnn.trace import draw_raster

    if args.format == "parquet":
        from asyncsnn.trace import _pyarrow

        _pyarrow()  # a missing pyarrow fails before anything runs
    schedulers = list(dict.fromkeys(["layered", *args.scheduler]))
    for scheduler in schedulers:  # every configuration is checked before the model is read (R4.13)
        asyncsnn.RunOptions(scheduler=scheduler, prioritize_input=args.prioritize_input)
    net, ds, x = _test_set(args)
    n = args.sample
    if n >= len(ds.test_y):
        raise invalid(
            InputError, "--sample", n, f"the test split has {len(ds.test_y)} samples (0..{len(ds.test_y) - 1})"
        )
    label = int(ds.test_y[n])
    runs = {}
    for scheduler in schedulers:
        runs[scheduler] = asyncsnn.infer(
            net,
            x[n : n + 1],
            scheduler=scheduler,
            forward_group_size=args.forward_group_size,
            stop=args.stop,
            extra_steps=args.extra_steps,
            seed=args.seed,
            labels=[label],
            sample_ids=[n],  # the random function sees what evaluate's run of this sample sees
            prioritize_input=args.prioritize_input,
            trace=True,
        )
    out = Path(args.out)
    traces = {s: r.trace for s, r in runs.items() if r.trace is not None}
    for scheduler, tr in traces.items():
        path = out / f"{scheduler}.{args.format}"
        tr.to_csv(path) if args.format == "csv" else tr.to_parquet(path)
        print(f"wrote {path} ({len(tr)} events)")
    title = f"sample {n} of {ds.name} (label {label}), F = {args.forward_group_size}, stop = {args.stop}"
    caption = draw_raster(traces, out / "raster.png", network=net, results=runs, title=title)
    print(f"wrote {out / 'raster.png'}: {caption}")
    for scheduler, r in runs.items():
        print(
            f"{scheduler:>9}: prediction {int(r.predictions[0])} (label {label}), {int(r.forward_steps[0])} forward "
            f"steps, {int(r.spikes_total[0])} spikes, {int(r.synops[0])} synops, stable decision at step "
            f"{int(r.decision_step[0])}"
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    import asyncsnn
    from asyncsnn.model_file import read_metadata
    from asyncsnn.reproduce import TRAINING_METADATA_KEYS

    net = asyncsnn.load(args.model)
    meta = read_metadata(args.model)
    print(net.summary())
    n_params = sum(int(p.layer.weight.size) for p in net.projections if hasattr(p.layer, "weight"))
    n_biases = sum(p.size for p in net.populations if p.bias is not None and np.any(p.bias != 0))
    print(f"trainable weights: {n_params}" + (f", biases: {n_biases}" if n_biases else ""))
    # Three groups, a blank line before each: the file and where it came from, the training
    # settings (asyncsnn train / reproduce, in their order), any other metadata (sorted).
    groups = [
        [k for k in _INFO_PROVENANCE if k in meta],
        [k for k in TRAINING_METADATA_KEYS if k in meta and k not in _INFO_PROVENANCE],
    ]
    groups.append(sorted(k for k in meta if k != "network" and not any(k in g for g in groups)))
    for keys in groups:
        if keys:
            print()
        for key in keys:
            print(f"{printable(key)}: {printable(meta[key])}")
    return 0


#: The metadata ``asyncsnn info`` prints first: the format and the provenance of the file.
_INFO_PROVENANCE = ("format", "format_version", "spec_version", "asyncsnn_version", "asyncsnn_commit")


def printable(value: object) -> str:
    r"""``str(value)`` with every non-printable character escaped (``\n``, ``\x1b``, ``\u202e``).

    Model metadata is arbitrary text from a file: printed raw, a newline or a terminal
    escape sequence in it could forge lines of ``asyncsnn info`` or reach the terminal.
    Backslashes are doubled, so the escaped text reads back unambiguously.
    """
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        ch if ch.isprintable() and ch != "\\" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


_SCHEDULERS = list(SCHEDULER_NAMES)
_MODEL_FILE_HELP = "a model file written by asyncsnn train / asyncsnn.save"
_ROOT_HELP = "folder of the dataset files (default: none, digits and randman need none)"


def _add_root_option(parser: argparse.ArgumentParser, help_text: str = _ROOT_HELP) -> None:
    """``--root``: the folder of the dataset files (reproduce, train, evaluate)."""
    parser.add_argument("--root", default=None, help=help_text)


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads``: worker threads of the Rust engine (demo, evaluate)."""
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")


def _add_sample_caps(parser: argparse.ArgumentParser, *, train: bool = True) -> None:
    """``--max-train`` (with ``train``) and ``--max-test``: caps on the samples used."""
    if train:
        parser.add_argument(
            "--max-train", type=_int_at_least(1), default=None, help="cap on training samples (default: all)"
        )
    parser.add_argument("--max-test", type=_int_at_least(1), default=None, help="cap on test samples (default: all)")


def _add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``demo`` subcommand."""
    demo = sub.add_parser(
        "demo",
        help="run a random network under every scheduler and compare the counters",
        description="Run a random dense network on random input under every scheduler and stop mode.",
        epilog=_EPILOG_DEMO,
        formatter_class=_HelpFormatter,
    )
    demo.add_argument(
        "--samples", type=_int_at_least(1, DEMO_MAX_SAMPLES), default=256, help="number of samples (batch size)"
    )
    demo.add_argument(
        "--timesteps", type=_int_at_least(1, DEMO_MAX_TIMESTEPS), default=20, help="timesteps (frames) per sample"
    )
    demo.add_argument("--density", type=_float_in(0.0, 1.0), default=0.2, help="input spike probability per frame")
    demo.add_argument("-F", "--forward-group-size", type=int, default=8, help="forward group size F")
    demo.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the network, the input and the runs")
    _add_threads_option(demo)
    demo.set_defaults(func=_demo)


def _add_reproduce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], datasets: Sequence[str]) -> None:
    """The ``reproduce`` subcommand."""
    rep = sub.add_parser(
        "reproduce",
        help="train layered / unlayered-random / unlayered-momentum and compare them under async inference",
        description="The paper's comparison end to end: train the same architecture three ways, evaluate every "
        "model under layered, random and momentum inference (drain and first_output), write tables and figures.",
        epilog=_EPILOG_REPRODUCE,
        formatter_class=_HelpFormatter,
    )
    rep.add_argument("--dataset", choices=datasets, default="digits", help="dataset (digits: the embedded 8x8 digits)")
    _add_root_option(
        rep,
        help_text="folder of the dataset files (Fashion-MNIST, tonic datasets; default: none, digits and randman need none)",
    )
    rep.add_argument("-F", "--forward-group-size", type=int, default=8, help="forward group size F")
    rep.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: 8 for digits, 30 for randman, else 3)"
    )
    seeding = rep.add_mutually_exclusive_group()
    seeding.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of everything")
    seeding.add_argument(
        "--seeds",
        type=_int_at_least(0),
        nargs="+",
        default=None,
        metavar="S",
        help="run once per seed (OUT/<dataset>/seed_<S>/) and write the mean and spread over them to "
        "OUT/<dataset>/ (default: one run, --seed)",
    )
    rep.add_argument(
        "--resume",
        action="store_true",
        help="with several --seeds: reuse each complete seed_<S>/ folder of an earlier run with the same settings "
        "and code instead of training it again",
    )
    rep.add_argument("--out", default="results", help="output folder (the results go to OUT/<dataset>/)")
    rep.add_argument("--quick", action="store_true", help="small subset and 1 epoch: a smoke run")
    _add_sample_caps(rep)
    rep.add_argument("--hidden", type=_int_at_least(1), nargs="+", default=[64, 64], help="hidden layer sizes")
    rep.add_argument(
        "--recurrent", action="store_true", help=_RECURRENT_HELP + "; results go to OUT/<dataset>-recurrent/"
    )
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.add_argument("--device", default="auto", help=_DEVICE_HELP)
    rep.set_defaults(func=_reproduce)


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], datasets: Sequence[str]) -> None:
    """The ``train`` subcommand."""
    tr = sub.add_parser(
        "train",
        help="train a model with unlayered (or layered) backpropagation and save it",
        description="Train a dense network on a dataset's training split by backpropagating through the "
        "asynchronous execution (unlayered backpropagation; --scheduler layered is layered BPTT), evaluate it "
        "on the test split after every epoch, and save it as a model file. Needs the train extra: "
        "pip install 'asyncsnn[train]'.",
        epilog=_EPILOG_TRAIN,
        formatter_class=_HelpFormatter,
    )
    tr.add_argument("--dataset", choices=datasets, default="digits", help="dataset to train on")
    _add_root_option(tr)
    tr.add_argument(
        "--scheduler", choices=_SCHEDULERS, default="momentum", help="scheduler of the training forward passes"
    )
    tr.add_argument("-F", "--forward-group-size", type=int, default=8, help="forward group size F of the training")
    tr.add_argument("--epochs", type=int, default=10, help="total training epochs (a resumed run continues to it)")
    tr.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    tr.add_argument(
        "--loss",
        choices=["count", "rate"],
        default="count",
        help="cross-entropy on total counts (count) or per-timestep counts (rate)",
    )
    tr.add_argument("--batch-size", type=int, default=32, help="samples per optimiser step (the global batch)")
    tr.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden layer sizes")
    tr.add_argument("--recurrent", action="store_true", help=_RECURRENT_HELP)
    tr.add_argument(
        "--threshold",
        type=_float_in(0.0, math.inf, low_open=True),
        default=1.0,
        help="firing threshold of every neuron",
    )
    tr.add_argument("--beta", type=float, default=0.9, help="membrane leak per timestep, in [0, 1]")
    tr.add_argument(
        "--reset",
        choices=RESET_MODES,
        default="zero",
        help="what a spike does to the membrane (docs/semantics.md R4.8): zero, subtract (at once), "
        "subtract_delayed (in the next timestep, as snnTorch's Leaky) or none",
    )
    tr.add_argument(
        "--bias",
        type=_finite_float,
        default=0.0,
        help="initial bias of every neuron (R1.4); a non-zero bias is trained with the weights",
    )
    tr.add_argument(
        "--alpha",
        type=_float_in(0.0, 1.0),
        default=0.0,
        help="decay per timestep of every neuron's synaptic current, in [0, 1] (docs/semantics.md R4.12): 0 gives "
        "LIF neurons, alpha > 0 current-based LIF neurons (snnTorch's Synaptic, RSynaptic with --recurrent); "
        "a constant, not trained",
    )
    tr.add_argument(
        "--surrogate-terms",
        choices=["fired", "every_step"],
        default="fired",
        help="which surrogate terms the gradient keeps (docs/semantics.md section 9): one per spike and one per "
        "silent neuron and timestep (fired), or also one per integration (every_step, as the paper's code)",
    )
    tr.add_argument(
        "--input-dropout",
        type=_probability,
        default=0.0,
        help="training-time input dropout p in [0, 1) (docs/semantics.md R4.10; off in the test passes)",
    )
    tr.add_argument(
        "--spike-dropout",
        type=_probability,
        default=0.0,
        help="training-time spike dropout p in [0, 1) (docs/semantics.md R4.11; off in the test passes)",
    )
    tr.add_argument(
        "--prioritize-input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deliver each input frame at once in forward step 0 (default); --no-prioritize-input schedules the "
        "input values with the spikes, one slot each, in training and in the test passes (docs/semantics.md "
        "R4.13; not with momentum)",
    )
    tr.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the weights, the data order and the runs")
    _add_sample_caps(tr)
    tr.add_argument(
        "--checkpoint-dir",
        default=None,
        help="write an atomic checkpoint after every epoch here (default: no checkpoints)",
    )
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --checkpoint-dir (its options must equal these)",
    )
    tr.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although options differ from the checkpoint's (the new ones apply)",
    )
    tr.add_argument("--out", default="model.safetensors", help="where to save the trained model")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--device", default="auto", help=_DEVICE_HELP + "; under torchrun, cuda is cuda:LOCAL_RANK")
    tr.set_defaults(func=_train)


def _add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], datasets: Sequence[str]) -> None:
    """The ``evaluate`` subcommand."""
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on a dataset's test split with the Rust engine",
        description="Run a saved model on a dataset's test split with the Rust engine under one stop mode and "
        "one or several schedulers and forward group sizes, and print the accuracy and the counters (one table "
        "row per scheduler x F for several), optionally the energy and time on hardware profiles, per sample "
        "to CSV and as a JSON summary.",
        epilog=_EPILOG_EVALUATE,
        formatter_class=_HelpFormatter,
    )
    ev.add_argument("model", help=_MODEL_FILE_HELP)
    ev.add_argument("--dataset", choices=datasets, default="digits", help="dataset whose test split is evaluated")
    _add_root_option(ev)
    ev.add_argument(
        "--scheduler",
        choices=_SCHEDULERS,
        nargs="+",
        default=["momentum"],
        help="scheduler(s) of the inference; several make a sweep, one row each",
    )
    ev.add_argument(
        "-F",
        "--forward-group-size",
        type=_int_at_least(1),
        nargs="+",
        default=[8],
        help="forward group size(s) F; several make a sweep, one row each (layered ignores F)",
    )
    ev.add_argument("--stop", choices=["drain", "first_output"], default="drain", help="stop mode of each timestep")
    ev.add_argument(
        "--extra-steps", type=int, default=0, help="forward steps run after the first output spike (first_output)"
    )
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the data encoding and of the run")
    ev.add_argument(
        "--input-dropout",
        type=_probability,
        default=0.0,
        help="input dropout p in [0, 1) of every run, the layered baseline too (docs/semantics.md R4.10)",
    )
    ev.add_argument(
        "--spike-dropout",
        type=_probability,
        default=0.0,
        help="spike dropout p in [0, 1) of every run, the layered baseline too (docs/semantics.md R4.11)",
    )
    ev.add_argument(
        "--prioritize-input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deliver each input frame at once in forward step 0 (default); --no-prioritize-input schedules "
        "the input values with the spikes, one slot each, in every run, the layered baseline too "
        "(docs/semantics.md R4.13; not with momentum)",
    )
    _add_threads_option(ev)
    _add_sample_caps(ev, train=False)
    ev.add_argument(
        "--profile",
        action="append",
        default=None,
        metavar="PROFILE",
        help="hardware profile whose energy and time per inference and to the first correct output and the "
        "stable decision are added "
        "(docs/cost.md): loihi, seneca, all, or a JSON file of your own profile; repeat it or give a comma list "
        "(default: none)",
    )
    ev.add_argument(
        "--csv",
        default=None,
        help="write per-sample counters to this CSV file; a sweep writes one row per configuration and sample, "
        "its scheduler and F in the first two columns (default: none)",
    )
    ev.add_argument(
        "--json",
        default=None,
        help='write the summary to this JSON file; a sweep writes one summary per configuration under "configurations" '
        "(default: none)",
    )
    ev.add_argument(
        "--plot",
        default=None,
        help="draw the configurations side by side to this PNG: accuracy, spikes, synops to the stable decision, "
        "energy on the first --profile (default: none)",
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress lines on stderr during a sweep")
    ev.set_defaults(func=_evaluate)


def _add_trace_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], datasets: Sequence[str]) -> None:
    """The ``trace`` subcommand."""
    tr = sub.add_parser(
        "trace",
        help="record every spike and delivery of one test sample; draw its raster, layered vs asynchronous",
        description="Run one sample of a dataset's test split under layered execution and under one or several "
        "asynchronous schedulers with the event trace on (docs/semantics.md R7.10), write each run's events as "
        "CSV or Parquet and draw the rasters side by side, coloured by population (raster.png).",
        epilog=_EPILOG_TRACE,
        formatter_class=_HelpFormatter,
    )
    tr.add_argument("model", help=_MODEL_FILE_HELP)
    tr.add_argument("--sample", type=_int_at_least(0), default=0, help="which test sample (its position in the split)")
    tr.add_argument("--dataset", choices=datasets, default="digits", help="dataset whose test split holds the sample")
    _add_root_option(tr)
    tr.add_argument(
        "--scheduler",
        choices=[s for s in _SCHEDULERS if s != "layered"],
        nargs="+",
        default=["momentum"],
        help="asynchronous scheduler(s) drawn beside layered",
    )
    tr.add_argument("-F", "--forward-group-size", type=_int_at_least(1), default=8, help="forward group size F")
    tr.add_argument("--stop", choices=["drain", "first_output"], default="drain", help="stop mode of each timestep")
    tr.add_argument(
        "--extra-steps", type=int, default=0, help="forward steps run after the first output spike (first_output)"
    )
    tr.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the data encoding and of the run")
    tr.add_argument(
        "--prioritize-input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deliver the input frame at once in forward step 0 (default); --no-prioritize-input schedules the "
        "input values with the spikes (docs/semantics.md R4.13; not with momentum, the default --scheduler): "
        "their input events mark the enqueue, their deliveries are population 0",
    )
    _add_sample_caps(tr, train=False)
    tr.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format of the events")
    tr.add_argument("--out", default="trace", help="folder for the event files and raster.png")
    tr.set_defaults(func=_trace)


def _add_info_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``info`` subcommand."""
    info = sub.add_parser(
        "info",
        help="print the architecture and metadata of a model file",
        description="Print a model file's architecture (populations, projections, sizes), its number of "
        "trainable weights and its metadata (training, dataset, ...), without running it.",
        formatter_class=_HelpFormatter,
    )
    info.add_argument("model", help=_MODEL_FILE_HELP)
    info.set_defaults(func=_info)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asyncsnn`` command.

    Every option of every command has a help text that shows its default (see
    :func:`option_help`); ``asyncsnn COMMAND --help`` lists them with examples.
    """
    parser = argparse.ArgumentParser(
        prog="asyncsnn",
        description="Asynchronous (event-driven) spiking neural networks: evaluation with exact counters.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the package and semantics versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_parser(sub)

    from asyncsnn.reproduce import DATASETS

    _add_reproduce_parser(sub, DATASETS)
    _add_train_parser(sub, DATASETS)
    _add_evaluate_parser(sub, DATASETS)
    _add_trace_parser(sub, DATASETS)
    _add_info_parser(sub)
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
    from asyncsnn.exceptions import AsyncSNNError

    try:
        return int(args.func(args))
    except (AsyncSNNError, OSError) as exc:
        # Bad input, a missing extra and missing or unreadable files are the user's to fix:
        # one line, no traceback, in command-line terms.
        text = " ".join(str(exc).split())
        print(f"asyncsnn: error: {for_the_command_line(text)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``train``: unlayered backpropagation through the asynchronous engine (section 9).

Every training batch runs the torch engine under autograd with the chosen scheduler
and forward group size, so that gradients follow the realised, asynchronous delivery
order (``scheduler="layered"`` gives ordinary layered BPTT through the same code). The
optimiser is Adam; the loss is the rate loss (cross-entropy per timestep, averaged over
time) or the count loss (cross-entropy on total counts).

Reproducibility: the shuffling of epoch ``e`` is ``default_rng([seed, e])``, the
engine's random function (random scheduler, jitter, refractory dropout) is seeded per
epoch and fed the samples' dataset indices as sample ids, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have.

Distributed data parallel: under ``torchrun`` (or with ``torch.distributed`` already
initialised, or ``distributed=True``) every rank runs this same function on the same
data and options; the module is wrapped in ``DistributedDataParallel`` (``gloo`` on CPU,
``nccl`` on CUDA). All ranks draw the same epoch order, ``batch_size`` stays the global
(effective) batch, and rank ``r`` of ``W`` takes the contiguous slice
``[r * n // W, (r + 1) * n // W)`` of every global batch of ``n`` samples. Its local
loss is scaled by ``n_r * W / n`` so that DDP's gradient average is the gradient of the
global per-sample mean loss -- the single-process gradient of the same batch, up to
float rounding -- even when ``n`` is not a multiple of ``W``. The engine's random
function takes each sample's dataset index, so sharding changes no random draw. The
history (and the sharded test evaluation) is summed across ranks, so every rank returns
the same network and the same global figures; only rank 0 shows progress and writes
checkpoints.

Checkpoints (``checkpoint_dir``) are written after every epoch as
``epoch_0001.pt``, ``epoch_0002.pt``, ... through a temporary file and ``os.replace``
(a file with that name is always complete). Each is a ``torch.save`` of plain data only
-- tensors, numbers, strings, lists and dicts -- loadable with ``weights_only=True``:
the weights, the optimiser state, the history so far and a JSON string of the
configuration.

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> from asyncsnn.torch import AsyncSNN, train
>>> rng = np.random.default_rng(0)
>>> x = (rng.random((32, 4, 8)) < 0.3).astype(np.float32)
>>> y = rng.integers(0, 2, 32)
>>> net, hist = train(AsyncSNN.from_sizes([8, 16, 2]), (x, y), epochs=2, batch_size=16, progress=False)
>>> len(hist.loss), isinstance(net, asyncsnn.Network)
(2, True)
"""

from __future__ import annotations

import atexit
import json
import math
import numbers
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from asyncsnn._prepare import DropoutLike, RunOptions, SchedulerLike, StopLike, prepare_inputs, prepare_options
from asyncsnn.exceptions import ModelError, ParameterError, invalid
from asyncsnn.network import Network
from asyncsnn.torch.engine import as_tensor, gc_paused, torch_device
from asyncsnn.torch.module import AsyncSNN, count_loss, rate_loss
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["CHECKPOINT_FORMAT", "History", "is_main_process", "load_checkpoint", "resolve_device", "train"]

CHECKPOINT_FORMAT = "asyncsnn.train.checkpoint/1"
_CKPT_RE = re.compile(r"^epoch_(\d+)\.pt$")
_GOLDEN = 0x9E3779B97F4A7C15
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """Per-epoch training record (one entry per completed epoch in every list).

    Attributes
    ----------
    loss
        Mean training loss.
    train_accuracy
        Accuracy of the training forward passes (argmax of output counts, ties to the
        smallest index, no output spike = wrong), with training-time dropout.
    test_accuracy
        Accuracy on ``test_data`` with the torch engine in eval (same scheduler and
        forward group size, no dropout); ``None`` without test data.
    spikes_per_sample
        Mean spikes (all populations) per training sample.
    test_spikes_per_sample
        Mean spikes per test sample (``None`` without test data).
    forward_steps_per_sample
        Mean forward steps per training sample.
    wall_time
        Seconds spent on the epoch (training and evaluation).
    """

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float | None] = field(default_factory=list)
    spikes_per_sample: list[float] = field(default_factory=list)
    test_spikes_per_sample: list[float | None] = field(default_factory=list)
    forward_steps_per_sample: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.loss)

    def as_dict(self) -> dict[str, list[Any]]:
        """Plain lists by field name (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> History:
        """Inverse of :meth:`as_dict`."""
        return cls(**{k: list(v) for k, v in data.items()})


def _epoch_seed(seed: int, epoch: int) -> int:
    """The engine seed of one epoch (random scheduler, jitter, dropout)."""
    return (seed + (epoch + 1) * _GOLDEN) % 2**64


def _check_positive(value: Any, name: str, integer: bool) -> None:
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)) or value <= 0:
        raise invalid(ParameterError, name, value, f"must be a positive {'int' if integer else 'number'}")


def _dataset(net: Network, data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``(inputs [N, T, ...], labels [N])`` and return float32 frames and int64 labels."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise invalid(ParameterError, name, type(data).__name__, "must be a tuple (inputs, labels)")
    inputs, labels = data
    if labels is None:
        raise invalid(ParameterError, name, None, "labels are required")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    prep = prepare_inputs(net, inputs, labels=labels)
    if prep.dense is None:
        frames = np.stack([prep.dense_sample(b) for b in range(prep.batch)])
    else:
        frames = prep.dense
    assert prep.labels is not None
    return as_tensor(np.ascontiguousarray(frames)), as_tensor(prep.labels)


def _predictions(counts: torch.Tensor) -> torch.Tensor:
    """R7.1: argmax of total counts (ties to the smallest index), -1 without output spike."""
    total = counts.sum(1)
    return torch.where(total.amax(1) > 0, total.argmax(1), -1)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one checkpoint file (``weights_only=True``) and check its format tag."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise invalid(ModelError, "checkpoint", str(path), f"not an {CHECKPOINT_FORMAT} file")
    return data


def _save_checkpoint(directory: Path, epoch: int, payload: dict[str, Any]) -> Path:
    """Write ``epoch_XXXX.pt`` atomically: a temporary file, then ``os.replace``.

    The temporary file is removed whatever interrupts the write (``KeyboardInterrupt``
    included), so the directory only ever holds complete checkpoints.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"epoch_{epoch:04d}.pt"
    tmp = directory / f".epoch_{epoch:04d}.pt.tmp.{os.getpid()}"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest checkpoint of ``directory`` that loads, or None."""
    if not directory.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT_RE.match(p.name))), reverse=True)
    for _, path in found:
        try:
            return load_checkpoint(path)
        except Exception:
            continue
    return None


def resolve_device(
    device: torch.device | str | None, *, default: torch.device | None = None, local_rank: int | None = None
) -> torch.device:
    """Turn a device argument into a usable ``torch.device``.

    Parameters
    ----------
    device
        ``None`` (``default``, else the CPU), ``"auto"`` (CUDA when available, else the
        CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
    default
        The device ``None`` stands for.
    local_rank
        The GPU that a ``"cuda"`` without index means (a torchrun rank's
        ``LOCAL_RANK``); ``None``: the current CUDA device.

    Returns
    -------
    torch.device
        A device with an index for CUDA.

    Raises
    ------
    ParameterError
        An unknown device, CUDA requested where ``torch.cuda.is_available()`` is false,
        or a CUDA index beyond the visible GPUs.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device(None, default=torch.device("cpu"))
    device(type='cpu')
    """
    if device is None:
        return default if default is not None else torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise invalid(
            ParameterError, "device", device, 'must be "auto", "cpu", "cuda", "cuda:N" or a torch.device'
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise invalid(
                ParameterError,
                "device",
                str(device),
                "CUDA was requested but torch.cuda.is_available() is False (no GPU visible, or a CPU-only "
                'torch build); use "cpu" or "auto"',
            )
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device() if local_rank is None else local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise invalid(
                ParameterError, "device", str(device), f"only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return torch_device(dev)


def is_main_process() -> bool:
    """True on rank 0 of ``torch.distributed`` (or of torchrun's ``RANK``), and outside them."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _wants_distributed(distributed: bool | None) -> bool:
    """Whether to train data-parallel: the flag, else an initialised group or torchrun's WORLD_SIZE > 1."""
    if distributed is not None and not isinstance(distributed, bool):
        raise invalid(ParameterError, "distributed", distributed, "must be None, True or False")
    if distributed is False:
        return False
    if not dist.is_available():
        if distributed:
            raise invalid(ParameterError, "distributed", True, "this torch build has no torch.distributed")
        return False
    return bool(distributed) or dist.is_initialized() or _env_int("WORLD_SIZE", 1) > 1


@dataclass
class _Ranks:
    """The place of this process in data-parallel training (a single process: rank 0 of 1)."""

    world: int = 1
    rank: int = 0
    enabled: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def shard(self, n: int) -> tuple[int, int]:
        """The contiguous slice ``[lo, hi)`` of ``n`` items that this rank takes (sizes differ by at most 1)."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def all_sum(self, values: list[float], op: str = "sum") -> list[float]:
        """Sum (or max) ``values`` over the ranks (float64); unchanged in a single process."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda" and dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _start_distributed(dev: torch.device) -> _Ranks:
    """Join (or initialise from torchrun's environment) the default process group."""
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        try:
            dist.init_process_group(backend=backend)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise invalid(
                ParameterError,
                "distributed",
                True,
                "cannot initialise torch.distributed from the environment (run under torchrun, or call "
                f"torch.distributed.init_process_group first): {exc}",
            ) from exc
        # Left initialised for later calls (re-initialising the default group right after
        # destroying it can pair one rank with the other's stale store entries); destroyed
        # at exit.
        atexit.register(_destroy_process_group)
    elif dist.get_backend() == "nccl" and dev.type != "cuda":
        raise invalid(ParameterError, "device", str(dev), "the process group uses nccl, which needs a CUDA device")
    return _Ranks(dist.get_world_size(), dist.get_rank(), True, dev)


def train(
    network: Network | AsyncSNN,
    train_data: Any,
    *,
    scheduler: SchedulerLike = "momentum",
    forward_group_size: int = 8,
    epochs: int = 10,
    lr: float = 1e-3,
    loss: str | LossFn = "rate",
    batch_size: int = 64,
    seed: int = 0,
    test_data: Any = None,
    refractory_dropout: DropoutLike = 0.0,
    surrogate: Union[Surrogate, str, dict[str, Any], None] = None,
    stop: StopLike = "drain",
    extra_steps: int = 0,
    max_steps: int | None = None,
    jitter: float = 0.0,
    weight_decay: float = 0.0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    device: torch.device | str | None = None,
    distributed: bool | None = None,
) -> tuple[Network, History]:
    """Train a network with unlayered backpropagation through the asynchronous engine.

    Parameters
    ----------
    network
        A :class:`~asyncsnn.network.Network` (copied; the original is not changed) or an
        :class:`AsyncSNN` (trained in place).
    train_data
        ``(inputs, labels)``: inputs ``[N, T, *input_shape]`` (array or tensor, finite,
        >= 0; spike counts per timestep), samples first, then time, and int labels
        ``[N]``. Any frame shape of ``n_in`` values is read as the flat input in C
        order (``asyncsnn.data.encode``'s ``[N, T, 1, 8, 8]`` trains a dense network of
        64 inputs as it is). Time-first inputs ``[T, N, ...]`` (snnTorch's layout) are
        an ``InputError`` (the labels' length gives them away): pass
        ``x.transpose(0, 1)``. Under distributed training every rank passes the whole
        data set (each takes its own shard).
    scheduler, forward_group_size
        Scheduler and ``F`` of the training forward passes (R5); ``"layered"`` is
        ordinary layered BPTT.
    epochs
        Total number of epochs (a resumed run continues up to this number).
    lr, weight_decay
        Adam learning rate and weight decay.
    loss
        ``"rate"`` (cross-entropy per timestep, averaged over time), ``"count"``
        (cross-entropy on total counts) or a callable ``(counts [B, T, n_out], labels [B])
        -> scalar``. Distributed training reproduces the single-process gradient when
        the loss is a mean over the samples of the batch (as both built-in losses are).
    batch_size
        Samples per optimiser step: the global (effective) batch, whatever the number
        of ranks.
    seed
        Seed of the shuffling and of the engine's random function.
    test_data
        Optional ``(inputs, labels)`` evaluated after each epoch (no gradients, no
        dropout, same scheduler and ``F``; sharded across ranks when distributed).
    refractory_dropout
        Training-time refractory dropout: a probability, ``"network"`` or ``"off"`` (R4.6).
    surrogate
        Surrogate derivative: a :class:`~asyncsnn.torch.surrogate.Surrogate`, ``"atan"``,
        ``"fast_sigmoid"`` or a dict (default ``ATan(alpha=2.0)``).
    stop, extra_steps, max_steps, jitter
        Further run options of the training forward passes (R5.4, R6).
    checkpoint_dir
        Directory for per-epoch checkpoints (written atomically, by rank 0 only);
        ``None`` for none.
    resume
        Continue from the newest complete checkpoint in ``checkpoint_dir`` (if any;
        read by rank 0 and broadcast to the other ranks).
    progress
        Show a tqdm progress bar (rank 0 only).
    device
        ``None`` (the module's device; the CPU for a Network), ``"auto"`` (CUDA when
        available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
        ``torch.device``. Under torchrun, ``"cuda"`` and ``"auto"`` mean
        ``cuda:LOCAL_RANK``.
    distributed
        Data-parallel training with ``torch.distributed``: ``None`` (default) when a
        process group is initialised or torchrun's ``WORLD_SIZE`` is above 1;
        ``True`` to require it (initialising the process group from the ``env://``
        variables if needed: ``gloo`` on CPU, ``nccl`` on CUDA; it then stays
        initialised for later calls and is destroyed at exit); ``False`` never.

    Returns
    -------
    network : Network
        The trained network (float32 weights), ready for ``asyncsnn.infer``; the same
        on every rank.
    history : History
        Per-epoch loss, accuracies, spikes per sample and wall time (global figures,
        the same on every rank; the wall time is the slowest rank's).

    Raises
    ------
    ParameterError, InputError
        Bad options or data (including a CUDA device where none is available, and
        time-first inputs).
    """
    model = network if isinstance(network, AsyncSNN) else AsyncSNN.from_network(network)
    net = model.network
    opts = prepare_options(
        net,
        scheduler=scheduler,
        forward_group_size=forward_group_size,
        stop=stop,
        extra_steps=extra_steps,
        max_steps=max_steps,
        seed=seed,
        jitter=jitter,
        refractory_dropout=refractory_dropout,
    )
    _check_positive(epochs, "epochs", integer=True)
    _check_positive(batch_size, "batch_size", integer=True)
    _check_positive(lr, "lr", integer=False)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not weight_decay >= 0:
        raise invalid(ParameterError, "weight_decay", weight_decay, "must be a number >= 0")
    loss_fn: LossFn
    if callable(loss):
        loss_fn = loss
    elif loss == "rate":
        loss_fn = rate_loss
    elif loss == "count":
        loss_fn = count_loss
    else:
        raise invalid(ParameterError, "loss", loss, 'must be "rate", "count" or a callable')
    sur = make_surrogate(surrogate)
    if resume and checkpoint_dir is None:
        raise invalid(ParameterError, "resume", resume, "needs a checkpoint_dir")
    use_dist = _wants_distributed(distributed)
    x_train, y_train = _dataset(net, train_data, "train_data")
    test = None if test_data is None else _dataset(net, test_data, "test_data")
    params = list(model.parameters())
    if not params:
        raise invalid(ParameterError, "network", repr(net), "has no trainable projection")
    local_rank = None
    if use_dist:
        local_rank = _env_int("LOCAL_RANK", -1)
        if local_rank < 0:
            rank = dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)
            local_rank = rank % max(torch.cuda.device_count(), 1)
    dev = resolve_device(device, default=params[0].device, local_rank=local_rank)
    model.to(dev)
    ranks = _start_distributed(dev) if use_dist else _Ranks(device=dev)
    return _train_loop(
        model,
        params,
        ranks,
        x_train,
        y_train,
        test,
        opts=opts,
        loss_fn=loss_fn,
        sur=sur,
        config_extra={
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"),
            "batch_size": int(batch_size),
            "seed": int(seed),
        },
        epochs=int(epochs),
        lr=float(lr),
        weight_decay=float(weight_decay),
        batch_size=int(batch_size),
        seed=int(seed),
        refractory_dropout=refractory_dropout,
        ckpt_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        resume=resume,
        progress=progress,
    )


def _train_loop(
    model: AsyncSNN,
    params: list[torch.nn.Parameter],
    ranks: _Ranks,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    opts: RunOptions,
    loss_fn: LossFn,
    sur: Surrogate,
    config_extra: dict[str, Any],
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    refractory_dropout: DropoutLike,
    ckpt_dir: Path | None,
    resume: bool,
    progress: bool,
) -> tuple[Network, History]:
    """The epochs of :func:`train` (options validated, model on its device, ranks joined)."""
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = History()
    config = {
        "scheduler": opts.scheduler.value,
        "forward_group_size": opts.forward_group_size,
        "stop": opts.stop.value,
        "extra_steps": opts.extra_steps,
        "max_steps": opts.max_steps,
        "jitter": opts.jitter,
        "refractory_dropout": None if opts.refractory_dropout is None else list(opts.refractory_dropout),
        **config_extra,
        "surrogate": sur.to_dict(),
        "weight_shapes": [list(p.shape) for p in params],
        "world_size": ranks.world,
    }
    start = 0
    main = ranks.rank == 0
    if resume and ckpt_dir is not None:
        ckpt = ranks.broadcast(_latest_checkpoint(ckpt_dir) if main else None)
        if ckpt is not None:
            shapes = [list(w.shape) for w in ckpt["weights"]]
            if shapes != config["weight_shapes"]:
                raise invalid(
                    ModelError, "checkpoint", shapes, f"weights do not fit the network {config['weight_shapes']}"
                )
            with torch.no_grad():
                for p, w in zip(params, ckpt["weights"], strict=False):
                    p.copy_(w.to(p.device))
            optimizer.load_state_dict(ckpt["optimizer"])
            history = History.from_dict(ckpt["history"])
            start = int(ckpt["epoch"])

    dev = ranks.device
    forward: Callable[..., Any] = model
    if ranks.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's weights now and averages the gradients in backward().
        forward = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    n = x_train.shape[0]
    n_batches = (n + batch_size - 1) // batch_size
    run_kw: dict[str, Any] = {
        "scheduler": opts.scheduler,
        "forward_group_size": opts.forward_group_size,
        "stop": opts.stop,
        "extra_steps": opts.extra_steps,
        "max_steps": opts.max_steps,
        "jitter": opts.jitter,
    }
    dropout: DropoutLike = "off" if opts.refractory_dropout is None else refractory_dropout
    show = progress and main
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        perm = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        model.train()
        loss_sum = correct = spikes = steps = 0.0
        seen = 0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not show, leave=False)
        for b in range(n_batches):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            lo, hi = ranks.shard(len(idx))
            # A rank with no sample in this (short) batch still joins DDP's gradient
            # average: it runs one sample with weight 0 (a zero gradient).
            local = idx[lo:hi] if hi > lo else idx[:1]
            xb, yb = x_train[local].to(dev), y_train[local].to(dev)
            with gc_paused():  # the graph's objects free themselves (see gc_paused)
                out = forward(
                    xb,
                    seed=_epoch_seed(seed, epoch),
                    sample_ids=local,
                    refractory_dropout=dropout,
                    surrogate=sur,
                    **run_kw,
                )
                batch_loss = loss_fn(out.counts, yb)
                objective = batch_loss
                if ranks.enabled:
                    # DDP averages over W ranks: weighting by n_r * W / n makes the average the
                    # gradient of the mean over the n samples of the global batch.
                    objective = batch_loss * ((hi - lo) * ranks.world / len(idx))
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(objective)
                optimizer.step()
            if hi > lo:
                loss_sum += float(batch_loss.detach()) * (hi - lo)
                correct += float((_predictions(out.counts.detach()) == yb).sum())
                spikes += float(out.counters["spikes_total"].sum())
                steps += float(out.counters["forward_steps"].sum())
                seen += hi - lo
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}")
        bar.close()
        loss_sum, correct, spikes, steps = ranks.all_sum([loss_sum, correct, spikes, steps])
        test_acc: float | None = None
        test_spk: float | None = None
        if test is not None:
            test_correct, test_spikes = ranks.all_sum(_evaluate(model, test, run_kw, seed, max(batch_size, 256), ranks))
            test_acc, test_spk = test_correct / test[0].shape[0], test_spikes / test[0].shape[0]
        history.loss.append(loss_sum / n)
        history.train_accuracy.append(correct / n)
        history.test_accuracy.append(test_acc)
        history.spikes_per_sample.append(spikes / n)
        history.test_spikes_per_sample.append(test_spk)
        history.forward_steps_per_sample.append(steps / n)
        history.wall_time.append(ranks.all_sum([time.perf_counter() - t0], op="max")[0])
        if show:
            msg = f"epoch {epoch + 1}/{epochs}: loss {history.loss[-1]:.4f}, train acc {history.train_accuracy[-1]:.4f}"
            if test_acc is not None:
                msg += f", test acc {test_acc:.4f}"
            tqdm.write(msg + f", {history.wall_time[-1]:.1f} s")
        if ckpt_dir is not None and main:
            _save_checkpoint(
                ckpt_dir,
                epoch + 1,
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "weights": [p.detach().cpu().clone() for p in params],
                    "optimizer": optimizer.state_dict(),
                    "history": history.as_dict(),
                    "config": json.dumps(config, sort_keys=True),
                },
            )
    # Every rank returns once rank 0's last checkpoint is complete.
    ranks.barrier()
    model.eval()
    return model.to_network(), history


def _evaluate(
    model: AsyncSNN,
    data: tuple[torch.Tensor, torch.Tensor],
    run_kw: dict[str, Any],
    seed: int,
    batch: int,
    ranks: _Ranks,
) -> list[float]:
    """Correct predictions and spikes, summed over this rank's shard of ``data`` (no grad, no dropout).

    The samples keep their indices in ``data`` as sample ids, so the shards together
    give exactly the single-process figures.
    """
    x, y = data
    lo, hi = ranks.shard(x.shape[0])
    dev = next(model.parameters()).device
    model.eval()
    correct = spikes = 0.0
    with torch.no_grad():
        for start in range(lo, hi, batch):
            idx = torch.arange(start, min(start + batch, hi))
            out = model(x[idx].to(dev), seed=seed, sample_ids=idx, **run_kw)
            correct += float((out.counters["predictions"] == y[idx]).sum())
            spikes += float(out.counters["spikes_total"].sum())
    return [correct, spikes]

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
``epoch_0001.safetensors``, ``epoch_0002.safetensors``, ... through a temporary file,
``fsync`` and ``os.replace`` (a file with that name is always complete). Each is a
safetensors file, like a model file, and nothing in it is pickled: the weights and the
optimiser's tensors are tensors, and its ``__metadata__`` holds JSON for the rest (the
epoch, the history so far, the optimiser's param groups and the configuration). No
random state needs saving: every draw of epoch ``e`` derives from ``(seed, e)``.

``resume=True`` compares the configuration saved in the checkpoint with the current
one (scheduler, ``F``, stop, run options, ``lr``, ``weight_decay``, loss, batch size,
seed, surrogate, the network without its weights and a digest of the training data;
not ``epochs``, which a resumed run may raise, nor the number of ranks) and refuses a
difference with a :class:`~asyncsnn.exceptions.ParameterError` naming every changed
entry (``old -> new``), unless ``allow_config_change=True``; weights that do not fit
the network are a :class:`~asyncsnn.exceptions.ModelError` either way.

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
import hashlib
import inspect
import json
import math
import numbers
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from asyncsnn import model_file
from asyncsnn._dictform import network_to_dict
from asyncsnn._prepare import DropoutLike, PreparedOptions, SchedulerLike, StopLike, prepare_inputs, prepare_options
from asyncsnn.exceptions import ModelError, ParameterError, invalid
from asyncsnn.network import Network
from asyncsnn.torch.engine import as_tensor, gc_paused, torch_device
from asyncsnn.torch.engine.driver import SURROGATE_TERMS
from asyncsnn.torch.module import AsyncSNN, count_loss, rate_loss
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["CHECKPOINT_FORMAT", "History", "is_main_process", "load_checkpoint", "resolve_device", "train"]

CHECKPOINT_FORMAT = "asyncsnn.train.checkpoint/2"
_CKPT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")
_OLD_CKPT_RE = re.compile(r"^epoch_(\d+)\.pt$")  # torch.save files of format 1 (not read)
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
    # Tensors (inputs and labels) are read by the shared rule of asyncsnn._prepare.tensor_checked.
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


def _ckpt_error(path: str | os.PathLike[str], reason: str) -> ModelError:
    err = invalid(ModelError, "checkpoint", str(path), reason)
    assert isinstance(err, ModelError)
    return err


def _checkpoint_chunks(payload: dict[str, Any]) -> list[bytes | memoryview]:
    """A checkpoint as a safetensors file: tensors for the numbers, JSON for the rest.

    Tensors: ``weights.<i>`` and ``optimizer.state.<param>.<key>`` (the optimiser's
    per-parameter tensors, e.g. Adam's ``exp_avg``, ``exp_avg_sq`` and ``step``).
    ``__metadata__``: ``format``, ``epoch``, ``history``, ``config`` and ``optimizer``
    (the param groups and the non-tensor state, JSON).
    """
    tensors: dict[str, np.ndarray] = {}
    for i, w in enumerate(payload["weights"]):
        tensors[f"weights.{i}"] = w.detach().cpu().numpy()
    opt = payload["optimizer"]
    state: dict[str, dict[str, Any]] = {}
    for pid, entries in opt["state"].items():
        out: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"optimizer.state.{pid}.{key}"
                tensors[name] = value.detach().cpu().numpy()
                out[key] = {"tensor": name}
            else:
                out[key] = {"value": value}
        state[str(pid)] = out
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": str(int(payload["epoch"])),
        "history": json.dumps(payload["history"]),
        "config": payload["config"],
        "optimizer": json.dumps({"state": state, "param_groups": opt["param_groups"]}),
        "asyncsnn_version": model_file._package_version(),
    }
    return model_file._encode(tensors, meta, what="checkpoint")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one checkpoint file written by :func:`train` (safetensors and JSON; no pickle).

    Parameters
    ----------
    path
        An ``epoch_NNNN.safetensors`` file of a ``checkpoint_dir``.

    Returns
    -------
    dict
        ``format`` (:data:`CHECKPOINT_FORMAT`), ``epoch`` (completed epochs, int),
        ``weights`` (list of float32 CPU tensors, one per parameter of the module: each
        trainable projection's, then each trained bias', :class:`~asyncsnn.torch.AsyncSNN`),
        ``optimizer`` (the Adam ``state_dict``), ``history`` (:meth:`History.as_dict`)
        and ``config`` (the JSON text of the training configuration).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelError
        If the file is not a complete checkpoint of this format (field
        ``checkpoint``): truncated or damaged, another kind of file, or a
        ``torch.save`` (pickle) checkpoint of an older asyncsnn, which is not read
        because unpickling can run code.
    """
    where = str(path)
    try:
        with model_file._SafetensorsFile(path, model_file._WIDE) as f:
            meta = f.metadata()
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise _ckpt_error(where, f"not an {CHECKPOINT_FORMAT} file (format = {meta.get('format')!r})")
            arrays = {name: torch.from_numpy(f.read(entry)) for name, entry in f.entries.items()}
        epoch = int(meta["epoch"])
        history = json.loads(meta["history"])
        config = meta["config"]
        opt = json.loads(meta["optimizer"])
        n_weights = sum(1 for name in arrays if name.startswith("weights."))
        weights = [arrays[f"weights.{i}"] for i in range(n_weights)]
        state: dict[int, dict[str, Any]] = {}
        for pid, entries in opt["state"].items():
            state[int(pid)] = {key: arrays[v["tensor"]] if "tensor" in v else v["value"] for key, v in entries.items()}
        groups = opt["param_groups"]
        for group in groups:
            if isinstance(group.get("betas"), list):
                group["betas"] = tuple(group["betas"])
        if not isinstance(config, str) or not isinstance(history, dict):
            raise TypeError("config must be a string and history an object")
    except ModelError as exc:
        if exc.field == "checkpoint":
            raise
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == b"PK" or (magic[:1] == b"\x80" and magic[1:] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            raise _ckpt_error(
                where,
                "a torch.save (pickle) file, as asyncsnn checkpoint format 1 was; it is not read because "
                "unpickling can run code: delete it and train again, or resume with the asyncsnn that wrote it",
            ) from exc
        raise _ckpt_error(where, f"not a readable {CHECKPOINT_FORMAT} file ({exc})") from exc
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, IndexError) as exc:
        raise _ckpt_error(where, f"a malformed {CHECKPOINT_FORMAT} file ({type(exc).__name__}: {exc})") from exc
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "weights": weights,
        "optimizer": {"state": state, "param_groups": groups},
        "history": history,
        "config": config,
    }


def _save_checkpoint(directory: Path, epoch: int, payload: dict[str, Any]) -> Path:
    """Write ``epoch_XXXX.safetensors`` atomically: a temporary file, ``fsync``, then ``os.replace``.

    The temporary file (``.epoch_XXXX.<random>.tmp``) is removed whatever interrupts the
    write (``KeyboardInterrupt`` included), so the directory only ever holds complete
    checkpoints.
    """
    final = directory / f"epoch_{epoch:04d}.safetensors"
    model_file._atomic_write(final, _checkpoint_chunks(payload), tmp_prefix=f".epoch_{epoch:04d}.")
    return final


def _latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``directory`` that loads (damaged ones are skipped), or None.

    Raises a ModelError when the folder holds only pickle checkpoints of an older
    asyncsnn (``epoch_NNNN.pt``), which are not read.
    """
    if not directory.is_dir():
        return None
    names = [p for p in directory.iterdir()]
    found = sorted(((int(m.group(1)), p) for p in names if (m := _CKPT_RE.match(p.name))), reverse=True)
    for _, path in found:
        try:
            return path, load_checkpoint(path)
        except (ModelError, OSError):
            continue
    old = sorted(p.name for p in names if _OLD_CKPT_RE.match(p.name))
    if old:
        raise _ckpt_error(
            directory,
            f"holds only torch.save (pickle) checkpoints of an older asyncsnn ({', '.join(old[-3:])}); they are "
            "not read because unpickling can run code: resume with the asyncsnn that wrote them, or train again",
        )
    return None


def _find_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | ModelError | None:
    """:func:`_latest_checkpoint`, its ModelError returned (to be broadcast to every rank)."""
    try:
        return _latest_checkpoint(directory)
    except ModelError as exc:
        return exc


_IGNORED_ON_RESUME = {"world_size"}  # data parallelism changes only float rounding (see the module docstring)


def _config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every configuration entry that changed (JSON values)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in _IGNORED_ON_RESUME:
            continue
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if a != b:
            out.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def _network_digest(net: Network) -> str:
    """A digest of everything but the trained values (shapes, kinds, strides, thresholds, beta, dropout, resets).

    Weights and bias values are left out: a resumed run takes them from the checkpoint.
    Which populations have a bias stays in (it decides the module's parameters).
    """
    d = network_to_dict(net)
    for entry in d["projections"]:
        entry.pop("weight", None)
    for pop in d["populations"]:
        if "bias" in pop:
            pop["bias"] = "trained"
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (x, y):
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.data.cast("B"))
    return h.hexdigest()[:16]


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
    input_dropout: float = 0.0,
    spike_dropout: float = 0.0,
    prioritize_input: bool = True,
    surrogate: Union[Surrogate, str, dict[str, Any], None] = None,
    surrogate_terms: str = "fired",
    stop: StopLike = "drain",
    extra_steps: int = 0,
    max_steps: int | None = None,
    jitter: float = 0.0,
    weight_decay: float = 0.0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    allow_config_change: bool = False,
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
    input_dropout, spike_dropout
        Training-time input and spike dropout (R4.10, R4.11), probabilities in [0, 1)
        used as regularisers: drawn like refractory dropout, from the epoch's seed and
        each sample's index in ``train_data``; off for ``test_data``.
    prioritize_input
        ``True`` (default): each frame's input is delivered in forward step 0 (R2.3);
        ``False``: its values are scheduled with the spikes (R4.13; not with
        ``"momentum"``), in the training and the test forward passes alike.
    surrogate
        Surrogate derivative: a :class:`~asyncsnn.torch.surrogate.Surrogate`, ``"atan"``,
        ``"fast_sigmoid"`` or a dict (default ``ATan(alpha=2.0)``).
    surrogate_terms
        ``"fired"`` (default) or ``"every_step"`` (the asynctorch code's surrogate terms,
        the same forward passes): see :meth:`AsyncSNN.forward`, docs/semantics.md section 9.
    stop, extra_steps, max_steps, jitter
        Further run options of the training forward passes (R5.4, R6).
    checkpoint_dir
        Directory for per-epoch checkpoints (written atomically, by rank 0 only);
        ``None`` for none.
    resume
        Continue from the newest complete checkpoint in ``checkpoint_dir`` (if any;
        read by rank 0 and broadcast to the other ranks). Rank 0 prints ``asyncsnn:
        resuming from <file> at epoch N of E`` on stderr. The checkpoint's
        configuration must equal this call's (see the module docstring).
    allow_config_change
        Resume even where the configuration differs from the checkpoint's: the
        differences are printed on stderr and this call's options apply from the
        resumed epoch on (Adam's moments are kept; its ``lr`` and ``weight_decay``
        become this call's).
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
        The trained network (float32 weights and trained biases, R1.4), ready for
        ``asyncsnn.infer``; the same on every rank.
    history : History
        Per-epoch loss, accuracies, spikes per sample and wall time (global figures,
        the same on every rank; the wall time is the slowest rank's).

    Raises
    ------
    ParameterError, InputError
        Bad options or data (including a CUDA device where none is available, and
        time-first inputs), or a resumed run whose configuration differs from the
        checkpoint's (without ``allow_config_change``).
    ModelError
        Resuming with weights of other shapes than the network's, or from a folder
        that holds only pickle checkpoints of an older asyncsnn.
    """
    model = network if isinstance(network, AsyncSNN) else AsyncSNN.from_network(network)
    # Every option of train() that _train_options validates, by name.
    given = locals()
    run = _train_options(model.network, **{name: given[name] for name in _TRAIN_OPTION_NAMES})
    use_dist = _wants_distributed(distributed)
    x_train, y_train = _dataset(model.network, train_data, "train_data")
    test = None if test_data is None else _dataset(model.network, test_data, "test_data")
    params = list(model.parameters())
    if not params:
        raise invalid(ParameterError, "network", repr(model.network), "has no trainable projection")
    ranks = _place(model, params, device, use_dist)
    return _train_loop(model, params, ranks, x_train, y_train, test, run)


@dataclass(frozen=True)
class _TrainOptions:
    """The validated options of one :func:`train` call, as its epochs use them."""

    opts: PreparedOptions
    loss_fn: LossFn
    sur: Surrogate
    config_extra: dict[str, Any]
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int
    refractory_dropout: DropoutLike
    ckpt_dir: Path | None
    resume: bool
    allow_config_change: bool
    progress: bool
    surrogate_terms: str = "fired"


def _loss_function(loss: str | LossFn) -> LossFn:
    """The loss callable of :func:`train`'s ``loss`` option."""
    if callable(loss):
        return loss
    if loss == "rate":
        return rate_loss
    if loss == "count":
        return count_loss
    raise invalid(ParameterError, "loss", loss, 'must be "rate", "count" or a callable')


def _train_options(
    net: Network,
    *,
    scheduler: SchedulerLike,
    forward_group_size: int,
    epochs: int,
    lr: float,
    loss: str | LossFn,
    batch_size: int,
    seed: int,
    refractory_dropout: DropoutLike,
    surrogate: Union[Surrogate, str, dict[str, Any], None],
    surrogate_terms: str,
    input_dropout: float = 0.0,
    spike_dropout: float = 0.0,
    prioritize_input: bool = True,
    stop: StopLike,
    extra_steps: int,
    max_steps: int | None,
    jitter: float,
    weight_decay: float,
    checkpoint_dir: str | os.PathLike[str] | None,
    resume: bool,
    allow_config_change: bool,
    progress: bool,
) -> _TrainOptions:
    """Validate the options of :func:`train` (run options, numbers, loss, surrogate, resume flags)."""
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
        input_dropout=input_dropout,
        spike_dropout=spike_dropout,
        prioritize_input=prioritize_input,
    )
    _check_positive(epochs, "epochs", integer=True)
    _check_positive(batch_size, "batch_size", integer=True)
    _check_positive(lr, "lr", integer=False)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not weight_decay >= 0:
        raise invalid(ParameterError, "weight_decay", weight_decay, "must be a number >= 0")
    loss_fn = _loss_function(loss)
    sur = make_surrogate(surrogate)
    if surrogate_terms not in SURROGATE_TERMS:
        raise invalid(ParameterError, "surrogate_terms", surrogate_terms, "must be 'fired' or 'every_step'")
    extra: dict[str, Any] = {} if surrogate_terms == "fired" else {"surrogate_terms": surrogate_terms}
    # Absent at 0, so that earlier checkpoints still resume.
    extra.update({k: v for k, v in (("input_dropout", opts.input_dropout), ("spike_dropout", opts.spike_dropout)) if v})
    if not opts.prioritize_input:
        extra["prioritize_input"] = False
    if resume and checkpoint_dir is None:
        raise invalid(ParameterError, "resume", resume, "needs a checkpoint_dir")
    if not isinstance(resume, bool) or not isinstance(allow_config_change, bool):
        bad = ("resume", resume) if not isinstance(resume, bool) else ("allow_config_change", allow_config_change)
        raise invalid(ParameterError, bad[0], bad[1], "must be True or False")
    return _TrainOptions(
        opts=opts,
        loss_fn=loss_fn,
        sur=sur,
        config_extra={
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"),
            "batch_size": int(batch_size),
            "seed": int(seed),
            **extra,  # absent for the default, so that earlier checkpoints still resume
        },
        epochs=int(epochs),
        lr=float(lr),
        weight_decay=float(weight_decay),
        batch_size=int(batch_size),
        seed=int(seed),
        refractory_dropout=refractory_dropout,
        ckpt_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        resume=resume,
        allow_config_change=allow_config_change,
        progress=progress,
        surrogate_terms=surrogate_terms,
    )


#: The keyword parameters of :func:`_train_options`: the options that :func:`train` passes on.
_TRAIN_OPTION_NAMES = tuple(name for name in inspect.signature(_train_options).parameters if name != "net")


def _place(
    model: AsyncSNN, params: list[torch.nn.Parameter], device: torch.device | str | None, use_dist: bool
) -> _Ranks:
    """Move ``model`` to its training device and join the process group when distributed."""
    local_rank = None
    if use_dist:
        local_rank = _env_int("LOCAL_RANK", -1)
        if local_rank < 0:
            rank = dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)
            local_rank = rank % max(torch.cuda.device_count(), 1)
    dev = resolve_device(device, default=params[0].device, local_rank=local_rank)
    model.to(dev)
    return _start_distributed(dev) if use_dist else _Ranks(device=dev)


def _train_loop(
    model: AsyncSNN,
    params: list[torch.nn.Parameter],
    ranks: _Ranks,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    run: _TrainOptions,
) -> tuple[Network, History]:
    """The epochs of :func:`train` (options validated, model on its device, ranks joined)."""
    optimizer = torch.optim.Adam(params, lr=run.lr, weight_decay=run.weight_decay)
    config = _run_config(model, params, ranks, x_train, y_train, run)
    resumed = None
    if run.resume and run.ckpt_dir is not None:
        resumed = _resume(run.ckpt_dir, ranks, config, params, optimizer, run)
    start, history = (0, History()) if resumed is None else resumed
    forward = _parallel_forward(model, ranks)  # after the resume: DDP broadcasts rank 0's weights
    run_kw = _run_kwargs(run.opts)
    show = run.progress and ranks.rank == 0
    for epoch in range(start, run.epochs):
        t0 = time.perf_counter()
        sums = _train_epoch(model, forward, optimizer, ranks, x_train, y_train, epoch, run, run_kw, show)
        _record_epoch(history, model, ranks, sums, x_train.shape[0], test, run_kw, run, epoch, t0, show)
        if run.ckpt_dir is not None and ranks.rank == 0:
            _save_checkpoint(
                run.ckpt_dir,
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


def _run_config(
    model: AsyncSNN,
    params: list[torch.nn.Parameter],
    ranks: _Ranks,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    run: _TrainOptions,
) -> dict[str, Any]:
    """The configuration a checkpoint records and a resumed run must match (JSON values)."""
    opts = run.opts
    config = {
        "scheduler": opts.scheduler.value,
        "forward_group_size": opts.forward_group_size,
        "stop": opts.stop.value,
        "extra_steps": opts.extra_steps,
        "max_steps": opts.max_steps,
        "jitter": opts.jitter,
        "refractory_dropout": None if opts.refractory_dropout is None else list(opts.refractory_dropout),
        **run.config_extra,
        "surrogate": run.sur.to_dict(),
        "weight_shapes": [list(p.shape) for p in params],
        "world_size": ranks.world,
    }
    if run.ckpt_dir is not None:
        config["network"] = _network_digest(model.network)
        config["population_shapes"] = [list(s) for s in model.network.population_shapes]
        config["train_data"] = {"shape": list(x_train.shape), "sha256": _data_digest(x_train, y_train)}
    # JSON values (lists, not tuples), as a checkpoint holds them
    result: dict[str, Any] = json.loads(json.dumps(config))
    return result


def _resume(
    ckpt_dir: Path,
    ranks: _Ranks,
    config: dict[str, Any],
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    run: _TrainOptions,
) -> tuple[int, History] | None:
    """Load the newest checkpoint into ``params`` and ``optimizer``: its epoch and history (``None``: none)."""
    main = ranks.rank == 0
    found = ranks.broadcast(_find_checkpoint(ckpt_dir) if main else None)
    if isinstance(found, ModelError):  # raised on every rank, not only on rank 0
        raise found
    if found is None:
        if main:
            print(f"asyncsnn: no checkpoint in {ckpt_dir}; training from epoch 0", file=sys.stderr)
        return None
    path, ckpt = found
    try:
        saved = json.loads(ckpt["config"])
    except ValueError:
        saved = {}
    changed = _config_differences(saved if isinstance(saved, dict) else {}, config)
    shapes = [list(w.shape) for w in ckpt["weights"]]
    if shapes != config["weight_shapes"]:
        raise invalid(
            ModelError,
            "checkpoint",
            shapes,
            f"weights of {path} do not fit the network {config['weight_shapes']}; the configuration "
            f"differs in: {'; '.join(changed)}",
        )
    if changed and not run.allow_config_change:
        raise ParameterError(
            f"cannot resume from {path}: the configuration differs from the checkpoint's in "
            f"{'; '.join(changed)} (old -> new). Train with the checkpoint's options, or pass "
            "allow_config_change=True (asyncsnn train --allow-config-change) to continue with the new ones",
            field="resume",
            value=changed,
            location=str(path),
        )
    with torch.no_grad():
        for p, w in zip(params, ckpt["weights"], strict=False):
            p.copy_(w.to(p.device))
    optimizer.load_state_dict(ckpt["optimizer"])
    for group in optimizer.param_groups:  # this call's options (the same unless allowed to change)
        group["lr"], group["weight_decay"] = run.lr, run.weight_decay
    history = History.from_dict(ckpt["history"])
    start = int(ckpt["epoch"])
    if main:
        print(f"asyncsnn: resuming from {path} at epoch {start} of {run.epochs}", file=sys.stderr)
        if changed:
            print(f"asyncsnn: configuration changed on resume: {'; '.join(changed)}", file=sys.stderr)
    return start, history


def _parallel_forward(model: AsyncSNN, ranks: _Ranks) -> Callable[..., Any]:
    """The training forward pass: ``model``, wrapped in ``DistributedDataParallel`` when distributed."""
    forward: Callable[..., Any] = model
    if ranks.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's weights now and averages the gradients in backward().
        dev = ranks.device
        forward = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return forward


def _run_kwargs(opts: PreparedOptions) -> dict[str, Any]:
    """The run options of the training (and test) forward passes, as the module's keywords."""
    return {
        "scheduler": opts.scheduler,
        "forward_group_size": opts.forward_group_size,
        "stop": opts.stop,
        "extra_steps": opts.extra_steps,
        "max_steps": opts.max_steps,
        "jitter": opts.jitter,
        "prioritize_input": opts.prioritize_input,
    }


def _train_epoch(
    model: AsyncSNN,
    forward: Callable[..., Any],
    optimizer: torch.optim.Optimizer,
    ranks: _Ranks,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    epoch: int,
    run: _TrainOptions,
    run_kw: dict[str, Any],
    show: bool,
) -> list[float]:
    """One epoch's optimiser steps: loss, correct predictions, spikes and forward steps summed over all ranks."""
    dev = ranks.device
    n = x_train.shape[0]
    batch_size, seed = run.batch_size, run.seed
    n_batches = (n + batch_size - 1) // batch_size
    dropout: DropoutLike = "off" if run.opts.refractory_dropout is None else run.refractory_dropout
    perm = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
    model.train()
    loss_sum = correct = spikes = steps = 0.0
    seen = 0
    bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{run.epochs}", disable=not show, leave=False)
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
                input_dropout=run.opts.input_dropout,
                spike_dropout=run.opts.spike_dropout,
                surrogate=run.sur,
                surrogate_terms=run.surrogate_terms,
                **run_kw,
            )
            batch_loss = run.loss_fn(out.counts, yb)
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
    return ranks.all_sum([loss_sum, correct, spikes, steps])


def _record_epoch(
    history: History,
    model: AsyncSNN,
    ranks: _Ranks,
    sums: list[float],
    n: int,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    run_kw: dict[str, Any],
    run: _TrainOptions,
    epoch: int,
    t0: float,
    show: bool,
) -> None:
    """Evaluate the test data (if any), append the epoch's figures to ``history`` and report them."""
    loss_sum, correct, spikes, steps = sums
    test_acc: float | None = None
    test_spk: float | None = None
    if test is not None:
        test_correct, test_spikes = ranks.all_sum(
            _evaluate(model, test, run_kw, run.seed, max(run.batch_size, 256), ranks)
        )
        test_acc, test_spk = test_correct / test[0].shape[0], test_spikes / test[0].shape[0]
    history.loss.append(loss_sum / n)
    history.train_accuracy.append(correct / n)
    history.test_accuracy.append(test_acc)
    history.spikes_per_sample.append(spikes / n)
    history.test_spikes_per_sample.append(test_spk)
    history.forward_steps_per_sample.append(steps / n)
    history.wall_time.append(ranks.all_sum([time.perf_counter() - t0], op="max")[0])
    if show:
        msg = f"epoch {epoch + 1}/{run.epochs}: loss {history.loss[-1]:.4f}, train acc {history.train_accuracy[-1]:.4f}"
        if test_acc is not None:
            msg += f", test acc {test_acc:.4f}"
        tqdm.write(msg + f", {history.wall_time[-1]:.1f} s")


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

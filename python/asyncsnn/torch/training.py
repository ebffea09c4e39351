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
from tqdm.auto import tqdm

from asyncsnn._prepare import DropoutLike, SchedulerLike, StopLike, prepare_inputs, prepare_options
from asyncsnn.exceptions import ModelError, ParameterError, invalid
from asyncsnn.network import Network
from asyncsnn.torch.engine import as_tensor, torch_device
from asyncsnn.torch.module import AsyncSNN, count_loss, rate_loss
from asyncsnn.torch.surrogate import Surrogate, make_surrogate

__all__ = ["CHECKPOINT_FORMAT", "History", "load_checkpoint", "train"]

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
) -> tuple[Network, History]:
    """Train a network with unlayered backpropagation through the asynchronous engine.

    Parameters
    ----------
    network
        A :class:`~asyncsnn.network.Network` (copied; the original is not changed) or an
        :class:`AsyncSNN` (trained in place).
    train_data
        ``(inputs, labels)``: inputs ``[N, T, *input_shape]`` (array or tensor, finite,
        >= 0) and int labels ``[N]``.
    scheduler, forward_group_size
        Scheduler and ``F`` of the training forward passes (R5); ``"layered"`` is
        ordinary layered BPTT.
    epochs
        Total number of epochs (a resumed run continues up to this number).
    lr, weight_decay
        Adam learning rate and weight decay.
    loss
        ``"rate"`` (cross-entropy per timestep, averaged over time), ``"count"``
        (cross-entropy on total counts) or a callable ``(counts [B, T, n_out], labels) -> loss``.
    batch_size
        Samples per optimiser step.
    seed
        Seed of the shuffling and of the engine's random function.
    test_data
        Optional ``(inputs, labels)`` evaluated after each epoch (no gradients, no
        dropout, same scheduler and ``F``).
    refractory_dropout
        Training-time refractory dropout: a probability, ``"network"`` or ``"off"`` (R4.6).
    surrogate
        Surrogate derivative: a :class:`~asyncsnn.torch.surrogate.Surrogate`, ``"atan"``,
        ``"fast_sigmoid"`` or a dict (default ``ATan(alpha=2.0)``).
    stop, extra_steps, max_steps, jitter
        Further run options of the training forward passes (R5.4, R6).
    checkpoint_dir
        Directory for per-epoch checkpoints (written atomically); ``None`` for none.
    resume
        Continue from the newest complete checkpoint in ``checkpoint_dir`` (if any).
    progress
        Show a tqdm progress bar.
    device
        Torch device (default: the module's, CPU for a Network).

    Returns
    -------
    network : Network
        The trained network (float32 weights), ready for ``asyncsnn.infer``.
    history : History
        Per-epoch loss, accuracies, spikes per sample and wall time.

    Raises
    ------
    ParameterError, InputError
        Bad options or data.
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
    x_train, y_train = _dataset(net, train_data, "train_data")
    test = None if test_data is None else _dataset(net, test_data, "test_data")
    if device is not None:
        model.to(torch_device(device))
    params = list(model.parameters())
    if not params:
        raise invalid(ParameterError, "network", repr(net), "has no trainable projection")
    optimizer = torch.optim.Adam(params, lr=float(lr), weight_decay=float(weight_decay))
    history = History()
    config = {
        "scheduler": opts.scheduler.value,
        "forward_group_size": opts.forward_group_size,
        "stop": opts.stop.value,
        "extra_steps": opts.extra_steps,
        "max_steps": opts.max_steps,
        "jitter": opts.jitter,
        "refractory_dropout": None if opts.refractory_dropout is None else list(opts.refractory_dropout),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "surrogate": sur.to_dict(),
        "weight_shapes": [list(p.shape) for p in params],
    }
    start = 0
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if resume and ckpt_dir is not None:
        ckpt = _latest_checkpoint(ckpt_dir)
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

    dev = params[0].device
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
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        perm = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        model.train()
        loss_sum = correct = spikes = steps = 0.0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for b in range(n_batches):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
            out = model(
                xb,
                seed=_epoch_seed(seed, epoch),
                sample_ids=idx,
                refractory_dropout=dropout,
                surrogate=sur,
                **run_kw,
            )
            batch_loss = loss_fn(out.counts, yb)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            loss_sum += float(batch_loss.detach()) * len(idx)
            correct += float((_predictions(out.counts.detach()) == yb).sum())
            spikes += float(out.counters["spikes_total"].sum())
            steps += float(out.counters["forward_steps"].sum())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / ((b * batch_size) + len(idx)):.4f}")
        bar.close()
        test_acc: float | None = None
        test_spk: float | None = None
        if test is not None:
            test_acc, test_spk = _evaluate(model, test, run_kw, seed, max(batch_size, 256))
        history.loss.append(loss_sum / n)
        history.train_accuracy.append(correct / n)
        history.test_accuracy.append(test_acc)
        history.spikes_per_sample.append(spikes / n)
        history.test_spikes_per_sample.append(test_spk)
        history.forward_steps_per_sample.append(steps / n)
        history.wall_time.append(time.perf_counter() - t0)
        if progress:
            msg = f"epoch {epoch + 1}/{epochs}: loss {history.loss[-1]:.4f}, train acc {history.train_accuracy[-1]:.4f}"
            if test_acc is not None:
                msg += f", test acc {test_acc:.4f}"
            tqdm.write(msg + f", {history.wall_time[-1]:.1f} s")
        if ckpt_dir is not None:
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
    model.eval()
    return model.to_network(), history


def _evaluate(
    model: AsyncSNN, data: tuple[torch.Tensor, torch.Tensor], run_kw: dict[str, Any], seed: int, batch: int
) -> tuple[float, float]:
    """Accuracy and spikes per sample of ``data`` with the torch engine (no grad, no dropout)."""
    x, y = data
    dev = next(model.parameters()).device
    model.eval()
    correct = spikes = 0.0
    with torch.no_grad():
        for lo in range(0, x.shape[0], batch):
            idx = torch.arange(lo, min(lo + batch, x.shape[0]))
            out = model(x[idx].to(dev), seed=seed, sample_ids=idx, **run_kw)
            correct += float((out.counters["predictions"] == y[idx]).sum())
            spikes += float(out.counters["spikes_total"].sum())
    return correct / x.shape[0], spikes / x.shape[0]

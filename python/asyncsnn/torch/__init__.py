"""The torch engine and unlayered training (``pip install asyncsnn[train]``).

This subpackage runs the semantics of ``docs/semantics.md`` vectorised over a batch in
torch, differentiably (section 9):

* :func:`infer` -- the torch inference engine: same signature, validation and results
  as ``asyncsnn.infer`` (Rust) and ``asyncsnn.reference.infer``, ``engine="torch"``;
* :func:`run` -- the differentiable core (a :class:`Plan`, weight tensors, frames);
* :class:`AsyncSNN` -- an ``nn.Module`` with one parameter per Dense/Conv2d projection;
* :func:`train` and :class:`History` -- unlayered backpropagation training, on the CPU
  or a GPU, and data-parallel under ``torchrun`` (``DistributedDataParallel``);
* :mod:`asyncsnn.torch.surrogate` (:class:`ATan`, :class:`FastSigmoid`) and the losses
  :func:`rate_loss` and :func:`count_loss`.
"""

from __future__ import annotations

from asyncsnn.torch import surrogate
from asyncsnn.torch.engine import Plan, RunOutput, infer, run
from asyncsnn.torch.module import AsyncSNN, count_loss, rate_loss
from asyncsnn.torch.surrogate import ATan, FastSigmoid, Surrogate
from asyncsnn.torch.training import History, load_checkpoint, train

__all__ = [
    "ATan",
    "AsyncSNN",
    "FastSigmoid",
    "History",
    "Plan",
    "RunOutput",
    "Surrogate",
    "count_loss",
    "infer",
    "load_checkpoint",
    "rate_loss",
    "run",
    "surrogate",
    "train",
]

"""The silent spikes' backward pass in one Rust call (``_engine.silent_grad``).

On float32 CPU tensors with a built-in surrogate, the backward pass of the silent spikes
(docs/semantics.md section 9) runs the Rust kernel instead of about ten torch operations
per emitting population. It must give the torch code's gradients bit for bit: a
surrogate subclass that only re-states ``derivative`` takes the torch code, so the two
are compared on the same graphs, node by node and through whole training steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from asyncsnn import _engine
from asyncsnn.exceptions import ParameterError
from asyncsnn.torch import AsyncSNN, ATan, FastSigmoid, _kernels, rate_loss
from asyncsnn.torch.engine import tape


class TorchATan(ATan):
    """ATan evaluated by the torch code (a subclass that re-states ``derivative``)."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return ATan.derivative(self, x)


class TorchFastSigmoid(FastSigmoid):
    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return FastSigmoid.derivative(self, x)


PAIRS = [(ATan(), TorchATan()), (ATan(alpha=3.0, scale=0.7), TorchATan(alpha=3.0, scale=0.7))]
PAIRS += [(FastSigmoid(), TorchFastSigmoid()), (FastSigmoid(slope=5.0), TorchFastSigmoid(slope=5.0))]


def _settle_grads(sur: Any, resets: tuple[str, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """Gradients of one silent-spike node: populations A (0:5) -> B (5:9) -> output (9:12)."""
    rng = np.random.default_rng(seed)
    n, f32 = 6, torch.float32
    theta = torch.from_numpy(rng.uniform(0.5, 1.5, 12).astype(np.float32))
    live = torch.from_numpy((rng.random((n, 12)) < 0.8).astype(np.float32))
    v0 = torch.from_numpy(rng.normal(0.5, 0.6, (n, 12)).astype(np.float32))
    w_ab = torch.from_numpy(rng.normal(0, 0.5, (4, 5)).astype(np.float32))
    w_bo = torch.from_numpy(rng.normal(0, 0.5, (3, 4)).astype(np.float32))
    spec = _kernels.SettleSpec(
        sources=(
            (slice(0, 5), theta[0:5], ((slice(5, 9), lambda g: g @ w_ab),)),
            (slice(5, 9), theta[5:9], ((slice(9, 12), lambda g: g @ w_bo),)),
        ),
        output=(slice(9, 12), theta[9:12], ()),
        surrogate=sur,
        resets=resets,
    )
    v = v0.clone().requires_grad_()
    outd = torch.from_numpy(rng.random((n, 3)).astype(np.float32)).requires_grad_()
    rows = [torch.tensor([4, 0, 2]), torch.arange(n)]  # A emits in three rows, B in all
    v_out, o_out = _kernels.settle(spec, v, live, rows, outd)
    gv = torch.from_numpy(rng.normal(0, 1, (n, 12)).astype(np.float32))
    go = torch.from_numpy(rng.normal(0, 1, (n, 3)).astype(np.float32))
    g = torch.autograd.grad((v_out * gv).sum() + (o_out * go).sum(), (v, outd))
    assert all(t.dtype is f32 for t in g)
    return g


@pytest.mark.parametrize(("rust", "torch_code"), PAIRS, ids=repr)
@pytest.mark.parametrize(
    "resets", [("zero",) * 3, ("subtract", "zero", "none"), ("subtract_delayed", "subtract", "zero")]
)
def test_the_kernel_gives_the_torch_gradients_bit_for_bit(rust: Any, torch_code: Any, resets: tuple[str, ...]) -> None:
    assert rust._kernel_params() is not None
    assert torch_code._kernel_params() is None
    for seed in range(5):
        a, b = _settle_grads(rust, resets, seed), _settle_grads(torch_code, resets, seed)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        assert not torch.equal(a[0][:, :9], torch.zeros_like(a[0][:, :9]))  # the terms are there


@pytest.mark.parametrize("scheduler", ["momentum", "random", "layered"])
@pytest.mark.parametrize("settling", [False, True])
def test_training_steps_have_the_torch_gradients(
    scheduler: str, settling: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The step-by-step engine (the taped path, tests/training/test_tape.py, would take
    # the plain networks with ATan, and the torch-code surrogate the other one).
    monkeypatch.setattr(tape, "ENABLED", False)
    rng = np.random.default_rng(3)
    x = torch.from_numpy((rng.random((24, 6, 20)) < 0.3).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, 24))
    grads = []
    for sur in (ATan(), TorchATan()):
        kw: dict[str, Any] = {"bias": 0.05, "reset": "subtract"} if settling else {}
        model = AsyncSNN.from_sizes([20, 24, 16, 4], threshold=1.0, beta=0.9, seed=1, **kw)
        out = model(x, scheduler=scheduler, forward_group_size=3, surrogate=sur)
        rate_loss(out.counts, y).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert a is not None
        assert b is not None
        assert torch.equal(a, b)
    assert any(bool(g.abs().sum() > 0) for g in grads[0] if g is not None)


def test_the_kernel_checks_its_input() -> None:
    g = np.zeros((2, 6), np.float32)
    v, live = np.zeros((2, 6), np.float32), np.ones((2, 6), np.float32)
    theta, g_c = np.ones(3, np.float32), np.zeros((2, 3), np.float32)

    def call(**change: Any) -> None:
        args: dict[str, Any] = {"g": g, "v": v, "live": live, "theta": theta, "g_c": g_c, "col0": 3}
        args |= {"surrogate": "atan", "p": 1.0, "q": 1.0, "reset": "zero"}
        _engine.silent_grad(**(args | change))

    call()
    with pytest.raises(ParameterError, match="col0"):
        call(col0=4)
    with pytest.raises(ParameterError, match="rows"):
        call(rows=np.array([0, 2]))
    with pytest.raises(ParameterError, match="g_c"):
        call(rows=np.array([1]))
    with pytest.raises(ParameterError, match="theta"):
        call(theta=np.ones(6, np.float32))
    with pytest.raises(ParameterError, match="surrogate"):
        call(surrogate="sigmoid")
    with pytest.raises(ParameterError, match="reset"):
        call(reset="subtract_delayed")

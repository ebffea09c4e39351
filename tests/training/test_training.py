"""Training through the torch engine (docs/semantics.md section 9).

* With ``scheduler="layered"`` the gradients equal those of an independent, plain
  layer-by-layer BPTT (same surrogate, reset in the graph); so do those of every other
  scheduler when ``F`` covers the widest population (no skip connections).
* The surrogates and the fused autograd kernels have the gradients they claim.
* Unlayered training lowers the loss with every scheduler; checkpoint/resume is exact;
  ``AsyncSNN`` round-trips networks exactly.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import asyncsnn
import asyncsnn.reference
from _torch import bptt_counts
from asyncsnn import _engine
from asyncsnn._prepare import prepare_options
from asyncsnn.exceptions import InputError, ModelError, ParameterError
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input
from asyncsnn.torch import (
    AsyncSNN,
    ATan,
    FastSigmoid,
    History,
    Plan,
    _kernels,
    count_loss,
    load_checkpoint,
    rate_loss,
    run,
    train,
)
from asyncsnn.torch.surrogate import make_surrogate, spike

SURROGATES = [ATan(), ATan(alpha=1.0, scale=0.5), FastSigmoid(), FastSigmoid(slope=2.0)]


def options(net: asyncsnn.Network, **kw: Any) -> Any:
    base: dict[str, Any] = {
        "scheduler": "layered",
        "forward_group_size": 1,
        "stop": "drain",
        "extra_steps": 0,
        "max_steps": None,
        "seed": 0,
        "jitter": 0.0,
        "refractory_dropout": "off",
    }
    base.update(kw)
    return prepare_options(net, **base)


def dense_problem(seed: int = 1) -> tuple[asyncsnn.Network, list[np.ndarray], torch.Tensor, torch.Tensor]:
    """A 12-16-10-4 network with per-neuron thresholds and leaks, and a batch of inputs."""
    rng = np.random.default_rng(seed)
    sizes = [12, 16, 10, 4]
    ws = [rng.normal(0.1, 0.5, (b, a)).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    thresholds = [rng.uniform(0.5, 1.2, n).astype(np.float32) for n in sizes[1:]]
    betas = [rng.uniform(0.7, 1.0, n).astype(np.float32) for n in sizes[1:]]
    net = asyncsnn.Network.sequential(
        input_shape=(12,), layers=[asyncsnn.Dense(w) for w in ws], threshold=thresholds, beta=betas
    )
    x = torch.from_numpy(((rng.random((6, 7, 12)) < 0.4) * rng.integers(1, 3, (6, 7, 12))).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, 6))
    return net, ws, x, y


# ------------------------------------------------------------------------- BPTT equivalence
@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
@pytest.mark.parametrize("loss_fn", [rate_loss, count_loss])
def test_layered_gradients_equal_plain_bptt(surrogate: Any, loss_fn: Any) -> None:
    net, ws, x, y = dense_problem()
    w_engine = [torch.tensor(w, requires_grad=True) for w in ws]
    out = run(Plan(net), w_engine, x, options(net), surrogate=surrogate)
    w_bptt = [torch.tensor(w, requires_grad=True) for w in ws]
    counts = bptt_counts(net, w_bptt, x, surrogate)
    assert torch.equal(out.counts, counts)
    assert 0 < counts.sum() < counts.numel()  # some spikes, some silence
    g_engine = torch.autograd.grad(loss_fn(out.counts, y), w_engine)
    g_bptt = torch.autograd.grad(loss_fn(counts, y), w_bptt)
    for a, b in zip(g_engine, g_bptt):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheduler", ["fifo", "random", "momentum"])
def test_any_scheduler_with_f_above_widest_population_is_bptt(scheduler: str) -> None:
    net, ws, x, y = dense_problem(3)
    w_a = [torch.tensor(w, requires_grad=True) for w in ws]
    out = run(Plan(net), w_a, x, options(net, scheduler=scheduler, forward_group_size=16), surrogate=ATan())
    w_b = [torch.tensor(w, requires_grad=True) for w in ws]
    counts = bptt_counts(net, w_b, x, ATan())
    assert torch.equal(out.counts, counts)
    for a, b in zip(torch.autograd.grad(rate_loss(out.counts, y), w_a), torch.autograd.grad(rate_loss(counts, y), w_b)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_unlayered_gradients_differ_from_layered_and_reach_every_weight() -> None:
    net, ws, x, y = dense_problem(4)
    grads = {}
    for scheduler in ("layered", "momentum"):
        w = [torch.tensor(a, requires_grad=True) for a in ws]
        out = run(Plan(net), w, x, options(net, scheduler=scheduler, forward_group_size=1), surrogate=ATan())
        grads[scheduler] = torch.autograd.grad(rate_loss(out.counts, y), w)
        assert all(g.abs().sum() > 0 for g in grads[scheduler])
    assert any(not torch.allclose(a, b) for a, b in zip(grads["layered"], grads["momentum"]))


def test_table_and_per_population_delivery_give_the_same_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncsnn.torch import engine

    net, ws, x, y = dense_problem(5)
    results = []
    for limit in (engine.Delivery.TABLE_LIMIT, 0):
        monkeypatch.setattr(engine.Delivery, "TABLE_LIMIT", limit)
        w = [torch.tensor(a, requires_grad=True) for a in ws]
        opts = options(net, scheduler="random", forward_group_size=2, refractory_dropout=0.5, seed=3)
        out = run(Plan(net), w, x, opts, surrogate=FastSigmoid())
        results.append((out.counts.detach(), torch.autograd.grad(count_loss(out.counts, y), w)))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
@pytest.mark.parametrize("dropout", ["off", 0.4])
def test_host_and_torch_backends_give_the_same_gradients(scheduler: str, dropout: Any) -> None:
    """The CPU runs steps, deliveries and the unlayered bookkeeping in Rust kernels and
    numpy (``backend="host"``); other devices in torch (``backend="torch"``): same results."""
    net, ws, x, y = dense_problem(6)
    ws = [np.round(w * 256) / 256 for w in ws]  # grid weights: sums exact in any order (R8.2)
    net = asyncsnn.Network.sequential(
        input_shape=(12,),
        layers=[asyncsnn.Dense(w) for w in ws],
        threshold=[p.threshold for p in net.populations],
        beta=[p.beta for p in net.populations],
    )
    jitter = 0.25 if scheduler == "momentum" else 0.0
    opts = options(net, scheduler=scheduler, forward_group_size=2, refractory_dropout=dropout, seed=5, jitter=jitter)
    results = []
    for backend in ("host", "torch"):
        w = [torch.tensor(a, requires_grad=True) for a in ws]
        out = run(Plan(net), w, x, opts, labels=y, surrogate=ATan(), backend=backend)
        results.append((out, torch.autograd.grad(rate_loss(out.counts, y), w)))
    a, grads_a = results[0]
    for b, grads_b in results[1:]:
        assert_results_equal(a.result(y.numpy()), b.result(y.numpy()))
        assert torch.equal(a.counts, b.counts)
        for ga, gb in zip(grads_a, grads_b):
            assert ga.abs().max() > 0
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7)


def test_conv_network_gradients_flow() -> None:
    rng = np.random.default_rng(2)
    net = asyncsnn.Network.sequential(
        input_shape=(1, 6, 6),
        layers=[
            asyncsnn.Conv2d(grid_weights(rng, (3, 1, 3, 3), 0.5, 0.3), padding=1),
            asyncsnn.AvgPool2d(2),
            asyncsnn.Dense(grid_weights(rng, (4, 27), 0.5, 0.2)),
        ],
        threshold=0.5,
        beta=0.9,
    )
    model = AsyncSNN.from_network(net)
    x = torch.from_numpy(random_count_input(rng, net, batch=3, timesteps=4, density=0.5))
    out = model(x, scheduler="momentum", forward_group_size=2)
    count_loss(out.counts, torch.tensor([0, 1, 2])).backward()
    assert len(model.weights) == 2
    assert all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in model.weights)


# ------------------------------------------------------------------------- surrogates and kernels
class _Smooth(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sur: Any) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.sur = sur
        return sur.primitive(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return g * ctx.sur.derivative(x), None


@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_surrogate_derivative_is_the_derivative_of_its_smooth_step(surrogate: Any) -> None:
    x = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64).add_(0.013).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _Smooth.apply(t, surrogate), (x,))
    # The derivative integrates to `scale` over the line for ATan (a normalised step).
    if isinstance(surrogate, ATan):
        big = torch.tensor([-1e9, 1e9], dtype=torch.float64)
        steps = surrogate.primitive(big)
        assert float(steps[1] - steps[0]) == pytest.approx(surrogate.scale)


@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_spike_is_heaviside_forward_and_surrogate_backward(surrogate: Any) -> None:
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 0.5], dtype=torch.float64, requires_grad=True)
    s = spike(x, surrogate)
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    (g,) = torch.autograd.grad(s.sum(), x)
    torch.testing.assert_close(g, surrogate.derivative(x.detach()))


@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_numpy_surrogate_derivative_is_bit_for_bit_the_torch_one(surrogate: Any) -> None:
    """The host backend's step gradient evaluates the surrogate in numpy: the same float32 bits."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(4000).astype(np.float32) * s for s in (1e-4, 1e-2, 1.0, 1e2, 1e6)])
    x = np.concatenate([x, np.array([0.0, -0.0, 1e-38, -3e38, 3.4e38, np.inf, -np.inf], dtype=np.float32)])
    want = surrogate.derivative(torch.from_numpy(x.copy())).numpy()
    got = surrogate._derivative_np(x.copy())
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.int32), want.view(np.int32))

    class Custom(type(surrogate)):  # type: ignore[misc]
        def derivative(self, x: torch.Tensor) -> torch.Tensor:
            return super().derivative(x) * 2.0

    custom = Custom()  # a subclass that redefines derivative() is evaluated in torch
    assert np.array_equal(custom._derivative_np(x.copy()), custom.derivative(torch.from_numpy(x.copy())).numpy())


def test_surrogate_formulas_and_parsing() -> None:
    x = torch.tensor([0.0, 0.25, -0.5], dtype=torch.float64)
    a = ATan(alpha=2.0, scale=1.5)
    torch.testing.assert_close(a.derivative(x), 1.5 * 1.0 / (1 + (math.pi * x) ** 2))
    fs = FastSigmoid(slope=25.0)
    torch.testing.assert_close(fs.derivative(x), 1 / (1 + 25 * x.abs()) ** 2)
    assert make_surrogate(None) == ATan()
    assert make_surrogate("fast_sigmoid") == FastSigmoid()
    assert make_surrogate(a.to_dict()) == a
    for bad in ("relu", {"name": "atan", "beta": 1}, 3):
        with pytest.raises(ParameterError):
            make_surrogate(bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        ATan(alpha=-1.0)


def test_step_kernel_gradient_equals_composed_operations() -> None:
    torch.manual_seed(0)
    sur = ATan(alpha=1.5)
    theta = torch.rand(30, dtype=torch.float64) + 0.5
    v0 = torch.randn(5, 30, dtype=torch.float64)
    cur0 = torch.randn(5, 30, dtype=torch.float64)
    live = (torch.rand(5, 30) < 0.7).double()
    v0 = v0 * live  # refractory neurons hold V = 0
    q0 = torch.randint(0, 3, (5, 30)).double()
    gv, gq = torch.randn(5, 30, dtype=torch.float64), torch.randn(5, 30, dtype=torch.float64)
    grads = []
    for variant in ("dense", "sparse", "composed"):
        v, cur, q = (t.clone().requires_grad_() for t in (v0, cur0, q0))
        if variant != "composed":
            v_new, q_new, _, _, _ = _kernels.step(v, cur, live, q, theta, sur, with_fired=variant == "sparse")
        else:
            u = v + cur * live
            fired = (u > theta).double()  # only the evaluations that fire carry a gradient
            s = spike(u - theta, sur) * fired
            v_new, q_new = u * (1 - s), q + s
        grads.append(torch.autograd.grad((v_new * gv).sum() + (q_new * gq).sum(), (v, cur, q)))
        grads[-1] = (*grads[-1], v_new.detach(), q_new.detach())
    for a, b, c in zip(*grads):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)


def test_fused_kernels_equal_the_torch_operations() -> None:
    """The Rust kernels of the CPU path against the torch operations they replace (float32)."""
    torch.manual_seed(3)
    n, big_n = 6, 40
    theta = torch.rand(big_n) + 0.5
    live = (torch.rand(n, big_n) < 0.7).float()
    v = torch.randn(n, big_n) * live
    cur, q = torch.randn(n, big_n), torch.randint(0, 3, (n, big_n)).float()
    vpre = torch.rand(n, big_n) * live
    u_ref = torch.addcmul(v, cur, live)
    s_ref = (u_ref > theta).float()
    for dropout in (False, True):
        # Without dropout a neuron fires once per timestep: its key is still 0 when it does.
        keys0 = vpre.clone() if dropout else vpre * (1 - s_ref)
        keys = keys0.clone()
        v_new, q_new, s, u, fired, live_new, finite = _kernels.step_fused(
            v, cur, live, q, theta, None, True, keys, want_u=True
        )
        assert finite
        assert s.sum() > 0
        assert u is not None
        assert torch.equal(u, u_ref)
        assert torch.equal(s, s_ref)
        assert torch.equal(v_new, u_ref - u_ref * s_ref)
        assert torch.equal(q_new, q + s_ref)
        assert torch.equal(live_new, live - s_ref)
        assert fired is not None
        assert torch.equal(fired, s_ref.reshape(-1).nonzero().squeeze(1))
        # The momentum keys, set in place: the torch engine's formulas (engine.run).
        expected = torch.addcmul(keys0 * (1.0 - s_ref), u_ref, s_ref) if dropout else torch.addcmul(keys0, u_ref, s_ref)
        assert torch.equal(keys, expected)
    # Gradients of the step (sparse surrogate terms) with and without the fused kernels.
    step_grads = []
    gv, gq = torch.randn(n, big_n), torch.randn(n, big_n)
    for fused in (True, False):
        vv, cc, qq = (t.clone().requires_grad_() for t in (v, cur, q))
        outs = _kernels.step_fused(vv, cc, live, qq, theta, ATan(), True) if fused else None  # sparse terms
        v_new, q_new = (outs[0], outs[1]) if outs else _kernels.step(vv, cc, live, qq, theta, ATan(), True)[:2]
        step_grads.append(torch.autograd.grad((v_new * gv).sum() + (q_new * gq).sum(), (vv, cc, qq)))
    for a, b in zip(*step_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # A membrane that is not finite is reported (the engine then redoes the step with selects).
    cur_inf = cur.clone()
    cur_inf[0, 0] = float("inf")
    assert not _kernels.step_fused(v, cur_inf, torch.ones_like(live), q, theta, None, False)[-1]
    # Delivery: take Q at the selected entries and add their table rows, and its gradient.
    table = torch.randn(big_n, 25)
    rows = torch.tensor([0, 0, 3, 5])
    neurons = torch.tensor([2, 9, 9, 30])
    flat, offsets = rows * big_n + neurons, torch.tensor([0, 2, 2, 2, 3, 3])
    parts = [_kernels.TablePart(0, 0, 25, table)]
    results = []
    for fused in (True, False):
        w = table.t().clone().requires_grad_()
        holder = _kernels.TableGrad(table, [(0, 0)], [w])
        qq = q.clone().requires_grad_()
        groups = [(rows, neurons, offsets)]
        q_out, cur_out = _kernels.deliver(holder, parts, qq.clone(), flat, groups, big_n - 25, rust=fused)
        g_cur = torch.randn(n, big_n, generator=torch.Generator().manual_seed(4))
        grads = torch.autograd.grad((cur_out * g_cur).sum() + q_out.sum(), (w, qq))
        results.append((q_out.detach(), cur_out.detach(), *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert results[0][1].abs().sum() > 0
    assert results[0][2].abs().sum() > 0


def test_fused_bookkeeping_kernels_check_their_input() -> None:
    is_source = np.array([True, True, False])
    keys, counts, first = _engine.merge_pending(np.array([1, 4]), np.array([0, 2, 5]), is_source, 2)
    # Neuron 2 has no outgoing projection: its spikes (keys 2 and 5) are not enqueued.
    assert keys.tolist() == [0, 1, 4]
    assert counts.tolist() == [2, 1]
    assert first.tolist() == [0, 1]
    with pytest.raises(ParameterError, match="fired"):
        _engine.merge_pending(np.array([1]), np.array([7]), is_source, 2)  # 2 rows of 3: key 7 is outside
    with pytest.raises(ParameterError, match="pend"):
        _engine.merge_pending(np.array([4, 1]), np.array([0]), is_source, 2)  # unsorted
    with pytest.raises(ParameterError, match="counts"):
        _engine.select_pending(np.array([0, 1]), np.array([1, 0]), 1, 3, "fifo", seq=np.zeros((2, 3), np.int64))
    with pytest.raises(ParameterError, match="scheduler"):
        _engine.select_pending(np.array([0, 1]), np.array([2, 0]), 1, 3, "layered")
    with pytest.raises(ParameterError, match="state"):
        _engine.select_pending(
            np.array([0]), np.array([1, 0]), 1, 3, "momentum", vpre=np.zeros((2, 3), np.float32), jitter=0.5
        )
    rows, neurons, flat, offsets, left = _engine.select_pending(
        np.array([0, 1, 4]), np.array([2, 1]), 1, 3, "momentum", vpre=np.array([[1.0, 2.0, 0], [0, 3.0, 0]], np.float32)
    )
    assert flat.tolist() == [1, 4]
    assert rows.tolist() == [0, 1]
    assert neurons.tolist() == [1, 1]
    assert offsets.tolist() == [0, 1]
    assert left.tolist() == [0]


def test_take_and_deliver_kernels_pass_gradcheck() -> None:
    torch.manual_seed(1)
    rows = torch.tensor([0, 0, 1, 1])
    cols = torch.tensor([0, 3, 1, 4])
    flat = rows * 6 + cols
    q = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    # take() works in place: differentiate it through a copy.
    assert torch.autograd.gradcheck(lambda t: _kernels.take(t.clone(), flat, grad=True), (q,))
    mult, q_new = _kernels.take(q.detach().clone(), flat, grad=False)
    assert torch.equal(mult, q.detach()[rows, cols])
    assert q_new[0, 0] == 0
    assert q_new[1, 4] == 0
    assert q_new[0, 5] == q[0, 5]

    w1 = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    q2 = torch.rand(3, 10, dtype=torch.float64, requires_grad=True)
    # Rows of a [10, 7] table (6 + 4 sources), from column 3 of Q; row 2 delivers nothing.
    rows2 = torch.tensor([0, 0, 0, 1, 1])
    cols2 = torch.tensor([0, 7, 9, 8, 2])

    def table_of(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        table = torch.zeros(10, 7, dtype=torch.float64)
        table[0:6, 0:4] = a.detach().t()
        table[6:10, 4:7] = b.detach().t()
        return table

    def layouts(table: torch.Tensor) -> list[tuple[list[_kernels.TablePart], torch.Tensor, list[Any]]]:
        """The whole table as one block, and one block per source population."""
        whole = [_kernels.TablePart(0, 0, 7, table)]
        one = (torch.tensor([0, 0, 0, 1, 1]), cols2, torch.tensor([0, 3, 5]))
        split = [_kernels.TablePart(0, 0, 4, table[0:6, 0:4].contiguous())]
        split.append(_kernels.TablePart(6, 4, 7, table[6:10, 4:7].contiguous()))
        # Entries block after block: (0, 0), (1, 2) | (0, 7), (0, 9), (1, 8).
        groups = [
            (torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([0, 1, 2])),
            (torch.tensor([0, 0, 1]), torch.tensor([1, 3, 2]), torch.tensor([0, 2, 3])),
        ]
        flat_split = torch.tensor([0, 12, 7, 9, 18])
        return [(whole, rows2 * 10 + cols2, [one]), (split, flat_split, groups)]

    expected = torch.zeros(3, 10, dtype=torch.float64)
    for r, c in zip(rows2.tolist(), cols2.tolist()):
        expected[r, 3:] += q2[r, c].detach() * table_of(w1, w2)[c]
    for layout in range(2):

        def read(a: torch.Tensor, b: torch.Tensor, qq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            table = table_of(a, b)
            holder = _kernels.TableGrad(table, [(0, 0), (6, 4)], [a, b])
            parts, flat, groups = layouts(table)[layout]  # noqa: B023
            return _kernels.deliver(holder, parts, qq.clone(), flat, groups, 3)

        assert torch.autograd.gradcheck(read, (w1, w2, q2))
        parts, flat, groups = layouts(table_of(w1, w2))[layout]
        q_out, cur = _kernels.deliver(None, parts, q2.detach().clone(), flat, groups, 3)
        torch.testing.assert_close(cur, expected)
        assert q_out[rows2, cols2].abs().sum() == 0
        assert torch.equal(q_out[2], q2[2].detach())


def test_settle_kernel_is_the_identity_forward_with_silent_spike_gradients() -> None:
    """Silent spikes of population A (columns 0-2) into the output B (3-4), then B's own."""
    sur = FastSigmoid(slope=3.0)
    torch.manual_seed(2)
    theta = torch.tensor([1.0, 0.9, 1.1, 1.0, 0.8], dtype=torch.float64)
    live = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    v0 = torch.tensor([[0.2, -0.4, 0.0, 0.3, 0.0], [0.1, 0.6, -0.2, 0.7, 0.5]], dtype=torch.float64)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0], [0.0]], dtype=torch.float64)  # A emits in row 0 only
    emit_rows = torch.tensor([0])
    wd = w.detach()
    spec = _kernels.SettleSpec(
        sources=((slice(0, 3), theta[0:3], ((slice(3, 5), lambda g: g @ wd),)),),
        output=(slice(3, 5), theta[3:5], ()),
        surrogate=sur,
        anchors=(w,),
    )
    v = v0.clone().requires_grad_()
    outd = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)
    v_out, o_out = _kernels.settle(spec, v, live, [emit_rows], outd)
    assert torch.equal(v_out, v)
    assert torch.equal(o_out, outd)
    gv, go = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    g = torch.autograd.grad((v_out * gv).sum() + (o_out * go).sum(), (v, outd, w))
    assert torch.equal(g[2], torch.zeros_like(w))  # the spikes are 0: no weight gradient
    # The same composed from spike(): c = H(V - theta) on the mask, reset, currents c W.
    v2 = v0.clone().requires_grad_()
    outd2 = outd.detach().clone().requires_grad_()
    c = spike(v2[:, 0:3] - theta[0:3], sur) * live[:, 0:3] * mask
    v_a = v2[:, 0:3] * (1 - c)
    v_b = v2[:, 3:5] + (c @ wd.t()) * live[:, 3:5]
    c_out = spike(v_b - theta[3:5], sur) * live[:, 3:5]
    v_ref = torch.cat([v_a, v_b * (1 - c_out)], 1)
    assert torch.equal(v_ref, v0)
    g2 = torch.autograd.grad((v_ref * gv).sum() + ((outd2 + c_out) * go).sum(), (v2, outd2))
    torch.testing.assert_close(g[0], g2[0])
    torch.testing.assert_close(g[1], g2[1])
    assert g[0][0, :2].abs().min() > 0  # A's silent spikes carry gradient in row 0 ...
    torch.testing.assert_close(g[0][1, :3], gv[1, :3])  # ... and none in row 1


def test_losses() -> None:
    counts = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    y = torch.tensor([0])
    expected = sum(F.cross_entropy(counts[:, t], y) for t in range(3)) / 3
    torch.testing.assert_close(rate_loss(counts, y), expected)
    torch.testing.assert_close(count_loss(counts, y), F.cross_entropy(counts.sum(1), y))


# ------------------------------------------------------------------------- training
def toy_data(n: int = 96, timesteps: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 12-input rate patterns."""
    rng = np.random.default_rng(seed)
    protos = rng.random((3, 12)) < 0.35
    y = rng.integers(0, 3, n)
    rates = np.where(protos[y], 0.8, 0.05)[:, None, :]
    x = (rng.random((n, timesteps, 12)) < rates).astype(np.float32)
    return x, y


@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
def test_unlayered_training_lowers_the_loss(scheduler: str) -> None:
    x, y = toy_data()
    model = AsyncSNN.from_sizes([12, 20, 3], threshold=1.0, beta=0.9, seed=1)
    net, hist = train(
        model, (x, y), scheduler=scheduler, forward_group_size=2, epochs=4, lr=1e-2, batch_size=32, progress=False
    )
    assert hist.epochs == 4
    assert len(hist.wall_time) == 4
    assert hist.loss[-1] < hist.loss[0]
    assert hist.train_accuracy[-1] > 0.5
    res = asyncsnn.reference.infer(net, x[:24], scheduler=scheduler, forward_group_size=2, labels=y[:24])
    assert res.accuracy is not None
    assert res.accuracy > 0.5


def test_train_with_test_data_and_options() -> None:
    x, y = toy_data(64)
    base = AsyncSNN.from_sizes([12, 16, 3], seed=2).to_network()
    before = [p.layer.weight.copy() for p in base.projections]
    net, hist = train(
        base,
        (torch.from_numpy(x), torch.from_numpy(y)),
        test_data=(x[:32], y[:32]),
        epochs=2,
        lr=5e-3,
        loss="count",
        surrogate="fast_sigmoid",
        refractory_dropout=0.3,
        scheduler="random",
        forward_group_size=3,
        batch_size=16,
        progress=False,
    )
    assert all(np.array_equal(b, p.layer.weight) for b, p in zip(before, base.projections))  # input untouched
    assert not all(np.array_equal(b, p.layer.weight) for b, p in zip(before, net.projections))
    assert all(a is not None and 0 <= a <= 1 for a in hist.test_accuracy)
    assert all(s is not None and s >= 0 for s in hist.test_spikes_per_sample)
    assert hist.forward_steps_per_sample[0] >= 5
    assert History.from_dict(hist.as_dict()) == hist


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"epochs": 0}, ParameterError),
        ({"lr": -1.0}, ParameterError),
        ({"batch_size": 1.5}, ParameterError),
        ({"loss": "hinge"}, ParameterError),
        ({"scheduler": "lifo"}, ParameterError),
        ({"refractory_dropout": 2.0}, ParameterError),
        ({"weight_decay": -1.0}, ParameterError),
        ({"resume": True}, ParameterError),
        ({"surrogate": "relu"}, ParameterError),
    ],
)
def test_train_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    x, y = toy_data(8)
    with pytest.raises(error):
        train(AsyncSNN.from_sizes([12, 4, 3]), (x, y), progress=False, **kwargs)


def test_train_rejects_bad_data() -> None:
    x, y = toy_data(8)
    model = AsyncSNN.from_sizes([12, 4, 3])
    with pytest.raises(ParameterError):
        train(model, x, progress=False)
    with pytest.raises(InputError):
        train(model, (x, y + 5), progress=False)
    with pytest.raises(InputError):
        train(model, (x[:, :, :5], y), progress=False)
    with pytest.raises(InputError):
        train(model, (-x, y), progress=False)


def test_checkpoint_resume_gives_the_same_weights(tmp_path: Path) -> None:
    x, y = toy_data(48)
    kw: dict[str, Any] = {
        "scheduler": "random",
        "forward_group_size": 2,
        "lr": 1e-2,
        "batch_size": 16,
        "refractory_dropout": 0.2,
        "seed": 7,
        "progress": False,
    }
    full, hist_full = train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=3, **kw)
    ckpt = tmp_path / "ckpt"
    train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=1, checkpoint_dir=ckpt, **kw)
    assert sorted(os.listdir(ckpt)) == ["epoch_0001.safetensors"]
    resumed, hist = train(
        AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=3, checkpoint_dir=ckpt, resume=True, **kw
    )
    for a, b in zip(full.projections, resumed.projections):
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)
    assert hist.loss == hist_full.loss
    assert hist.train_accuracy == hist_full.train_accuracy
    # no temp files left
    assert sorted(os.listdir(ckpt)) == ["epoch_0001.safetensors", "epoch_0002.safetensors", "epoch_0003.safetensors"]
    data = load_checkpoint(ckpt / "epoch_0003.safetensors")  # safetensors and JSON, no pickle
    assert data["epoch"] == 3
    assert isinstance(data["config"], str)
    np.testing.assert_array_equal(data["weights"][0].numpy(), resumed.projections[0].layer.weight)
    # A damaged newest file is skipped in favour of the previous complete one.
    (ckpt / "epoch_0004.safetensors").write_bytes(b"garbage")
    again, _ = train(AsyncSNN.from_sizes([12, 10, 3], seed=3), (x, y), epochs=3, checkpoint_dir=ckpt, resume=True, **kw)
    np.testing.assert_array_equal(again.projections[1].layer.weight, full.projections[1].layer.weight)
    with pytest.raises(ModelError):
        train(AsyncSNN.from_sizes([12, 11, 3]), (x, y), epochs=4, checkpoint_dir=ckpt, resume=True, **kw)


def test_checkpoint_resume_of_a_biased_network(tmp_path: Path) -> None:
    """Biases are saved and restored like weights; the resume check knows the reset modes."""
    x, y = toy_data(32)
    kw: dict[str, Any] = {"scheduler": "fifo", "forward_group_size": 2, "lr": 1e-2, "batch_size": 16, "progress": False}

    def net(reset: str = "subtract_delayed") -> asyncsnn.Network:
        return AsyncSNN.from_sizes([12, 10, 3], seed=3, bias=[0.05, -0.02], reset=reset).to_network()

    full, hist_full = train(net(), (x, y), epochs=2, **kw)
    ckpt = tmp_path / "ckpt"
    first, _ = train(net(), (x, y), epochs=1, checkpoint_dir=ckpt, **kw)
    # The network given to the resumed call may hold other bias values (here: the ones
    # trained in the first epoch): like weights, they come from the checkpoint.
    assert not np.array_equal(first.populations[0].bias, net().populations[0].bias)
    resumed, hist = train(first, (x, y), epochs=2, checkpoint_dir=ckpt, resume=True, **kw)
    for a, b in zip(full.populations, resumed.populations):
        np.testing.assert_array_equal(a.bias, b.bias)
        assert a.reset == b.reset == "subtract_delayed"
    for a, b in zip(full.projections, resumed.projections):
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)
    assert hist.loss == hist_full.loss
    with pytest.raises(ParameterError, match="network"):  # another reset mode is another network
        train(net("subtract"), (x, y), epochs=3, checkpoint_dir=ckpt, resume=True, **kw)


# ------------------------------------------------------------------------- module
def test_from_network_to_network_round_trip_is_exact() -> None:
    rng = np.random.default_rng(9)
    net = asyncsnn.Network.sequential(
        input_shape=(2, 6, 6),
        layers=[
            asyncsnn.Conv2d(rng.normal(0, 0.4, (3, 2, 3, 3)), stride=1, padding=1),
            asyncsnn.AvgPool2d(2),
            asyncsnn.Dense(rng.normal(0, 0.4, (5, 27))),
        ],
        threshold=[0.5, rng.uniform(0.5, 1, (3, 3, 3)), 0.75],
        beta=0.875,
        refractory_dropout=[0.0, 0.25, 0.0],
        skips=[(0, 3, asyncsnn.Dense(rng.normal(0, 0.1, (5, 72))))],
    )
    model = AsyncSNN.from_network(net)
    assert [tuple(w.shape) for w in model.weights] == [(3, 2, 3, 3), (5, 27), (5, 72)]
    back = model.to_network()
    assert back.population_shapes == net.population_shapes
    for a, b in zip(net.projections, back.projections):
        assert (a.source, a.target, type(a.layer)) == (b.source, b.target, type(b.layer))
        if hasattr(a.layer, "weight"):
            np.testing.assert_array_equal(a.layer.weight, b.layer.weight)
            assert b.layer.weight.dtype == np.float32
    for p, q in zip(net.populations, back.populations):
        np.testing.assert_array_equal(p.threshold, q.threshold)
        np.testing.assert_array_equal(p.beta, q.beta)
        assert p.refractory_dropout == q.refractory_dropout
    x = random_count_input(rng, net, batch=2, timesteps=3)
    assert_results_equal(asyncsnn.reference.infer(net, x), asyncsnn.reference.infer(back, x))
    again = AsyncSNN.from_network(back)
    assert all(torch.equal(a, b) for a, b in zip(model.weights, again.weights))


def test_from_sizes() -> None:
    a = AsyncSNN.from_sizes([10, 8, 3], threshold=[1.0, 0.5], beta=0.8, seed=4)
    b = AsyncSNN.from_sizes([10, 8, 3], threshold=[1.0, 0.5], beta=0.8, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))
    assert a.network.population_shapes == [(10,), (8,), (3,)]
    assert float(a.weights[0].detach().std()) == pytest.approx(3.0 / math.sqrt(10), rel=0.5)
    for bad in ([10], [10, 0, 3], [10, 2.5, 3], "abc", 7):
        with pytest.raises(ModelError):
            AsyncSNN.from_sizes(bad)  # type: ignore[arg-type]
    for seed in (-1, 2**64, 1.5, True):
        with pytest.raises(ParameterError):
            AsyncSNN.from_sizes([4, 3], seed=seed)  # type: ignore[arg-type]
    with pytest.raises(ModelError):
        AsyncSNN.from_sizes([4, 3], gain=0.0)


# ------------------------------------------------------------------------- digits
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["momentum", "random"])
def test_unlayered_training_on_digits_reaches_90_percent(scheduler: str) -> None:
    from asyncsnn.data import digits_split, encode

    torch.set_num_threads(2)
    train_x, train_y, test_x, test_y = digits_split()
    timesteps = 10
    xtr = encode(train_x, "rate", timesteps=timesteps, seed=0).reshape(len(train_x), timesteps, 64)
    xte = encode(test_x, "rate", timesteps=timesteps, seed=1).reshape(len(test_x), timesteps, 64)
    model = AsyncSNN.from_sizes([64, 128, 10], threshold=1.0, beta=0.9, seed=0)
    net, hist = train(
        model,
        (xtr, train_y),
        test_data=(xte, test_y),
        scheduler=scheduler,
        forward_group_size=8,
        epochs=12,
        lr=5e-3,
        loss="count",
        batch_size=64,
        progress=False,
    )
    assert max(a for a in hist.test_accuracy if a is not None) >= 0.9
    # The trained network, evaluated by the reference engine under the same scheduler.
    res = asyncsnn.reference.infer(net, xte[:100], scheduler=scheduler, forward_group_size=8, labels=test_y[:100])
    assert res.accuracy is not None
    assert res.accuracy >= 0.85


def test_checkpoint_write_interrupted_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_fsync(fd: int) -> None:  # the temporary file is written, not yet renamed
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    x, y = toy_data(8)
    with pytest.raises(KeyboardInterrupt):
        train(AsyncSNN.from_sizes([12, 4, 3]), (x, y), epochs=1, progress=False, checkpoint_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_typed_errors_for_bad_devices_and_thresholds() -> None:
    x, y = toy_data(8)
    with pytest.raises(ParameterError):
        train(AsyncSNN.from_sizes([12, 4, 3]), (x, y), epochs=1, progress=False, device="nonsense:0")
    for threshold in (-1.0, float("nan"), [1.0, 0.0], "x"):
        with pytest.raises(ModelError):
            AsyncSNN.from_sizes([4, 3, 2], threshold=threshold)  # type: ignore[arg-type]

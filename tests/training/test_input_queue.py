"""Non-prioritised input (docs/semantics.md R4.13) in the torch engine and training.

With ``prioritize_input=False`` the frame's values are input entries in the pending set,
scheduled with the spikes. The torch engine equals the reference engine on random grid
networks (settling, recurrent and synaptic ones too) under ``layered``, ``fifo`` and
``random``, with input dropout and early stops, on both backends; under ``layered`` it
computes the same spikes, values and gradients as prioritised input (one forward step
later); ``momentum`` refuses it; ``train`` takes it and records it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _torch import infer_all, one_torch_thread, random_run_options
from asyncsnn._prepare import prepare_given_options
from asyncsnn.exceptions import ParameterError
from asyncsnn.network import RESET_MODES, Dense, Network, Projection
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.torch import AsyncSNN, load_checkpoint, rate_loss, train
from asyncsnn.torch.engine import Plan, run
from asyncsnn.torch.surrogate import ATan

BACKENDS = ["host", "torch"]
UNLAYERED = ["fifo", "random"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


def varied_network(rng: np.random.Generator, kind: str, extra: int) -> Network:
    """A random grid network of ``kind``; ``extra`` 1 adds biases and reset modes (settling),
    2 also synaptic currents and a recurrent projection (R4.7-R4.9, R4.12)."""
    net = random_grid_network(rng, kind)  # type: ignore[arg-type]
    if extra == 0:
        return net
    projs = list(net.projections)
    shapes = net.population_shapes
    n_pop = len(net.populations)
    if extra == 2:
        d = int(rng.integers(1, n_pop + 1))
        s = int(rng.integers(d, n_pop + 1))
        w = grid_weights(rng, (int(np.prod(shapes[d])), int(np.prod(shapes[s]))), 0.4, 0.05)
        projs.append(Projection(s, d, Dense(w)))
    targets = {p.target for p in projs if p.recurrent}
    pops = []
    for i, p in enumerate(net.populations, 1):
        mode = RESET_MODES[int(rng.integers(0, len(RESET_MODES)))]
        bias = (rng.integers(-64, 65, p.shape) / 256).astype(np.float32) if rng.integers(0, 2) else p.bias
        alpha = p.alpha
        if extra == 2 and rng.integers(0, 2):
            alpha = (rng.integers(0, 9, p.shape) / 8).astype(np.float32)
        drop = p.refractory_dropout if mode == "zero" and i not in targets else 0.0
        pops.append(dataclasses.replace(p, alpha=alpha, bias=bias, reset=mode, refractory_dropout=drop))
    return Network(net.input_shape, pops, projs)


def random_case(seed: int, scheduler: str) -> tuple[Network, np.ndarray, dict[str, Any], np.ndarray]:
    """A random network, count input (some frames empty), labels and run options with
    ``prioritize_input=False``, input dropout for some, early stops, F = 1 for some."""
    rng = np.random.default_rng(7000 + seed)
    kind = ["dense", "conv", "skip", "conv_wide"][seed % 4]
    net = varied_network(rng, kind, seed % 3)
    batch = int(rng.integers(16, 24)) if seed % 5 == 4 else int(rng.integers(1, 5))
    x = random_count_input(rng, net, batch, int(rng.integers(1, 6)), density=float(rng.choice([0.0, 0.3, 1.0])))
    if x.shape[1] > 1:
        x[:, int(rng.integers(0, x.shape[1]))] = 0  # a frame without input
    stop = str(rng.choice(["drain", "first_output", "max_steps"]))
    opts = random_run_options(rng, scheduler, stop, [1, 1, 2, 3, 1000])
    opts["input_dropout"] = float(rng.choice([0.0, 0.0, 0.3]))
    opts["prioritize_input"] = False
    return net, x, opts, rng.integers(0, net.n_outputs, batch)


# ------------------------------------------------------------------------- engine equality
@pytest.mark.parametrize("scheduler", ["layered", *UNLAYERED])
@pytest.mark.parametrize("seed", range(18))
def test_both_backends_equal_the_reference(scheduler: str, seed: int) -> None:
    net, x, opts, labels = random_case(seed, scheduler)
    expected = asyncsnn.reference.infer(net, x, labels=labels, **opts)
    assert_results_equal(infer_all(net, x, labels=labels, **opts), expected)


@pytest.mark.parametrize("scheduler", UNLAYERED)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_compete_with_spikes_for_the_slots(scheduler: str, backend: str) -> None:
    # A wide input, F = 1..3: the inputs of a frame take many steps, spikes arrive
    # among them (random) or after them (fifo); the counters show it.
    rng = np.random.default_rng(5)
    ws = [grid_weights(rng, (6, 16), 0.6, 0.3), grid_weights(rng, (3, 6), 0.6, 0.3)]
    net = Network.sequential((16,), [Dense(w) for w in ws], threshold=0.5, beta=0.75)
    x = random_count_input(rng, net, 6, 4, density=0.6)
    for f in (1, 2, 3):
        kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 3, "prioritize_input": False}
        res = at.infer(net, x, backend=backend, **kw)
        assert_results_equal(res, asyncsnn.reference.infer(net, x, **kw))
        prio = at.infer(net, x, backend=backend, **{**kw, "prioritize_input": True})
        assert (res.queue_peak > prio.queue_peak).any()  # the input entries are pending entries
        assert (res.timestep_forward_steps > prio.timestep_forward_steps).any()
        # drained: every input entry is delivered, its synops counted once
        assert res.synops_per_projection[:, 0].tolist() == prio.synops_per_projection[:, 0].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_early_stop_drops_inputs_without_counting_them(backend: str) -> None:
    rng = np.random.default_rng(8)
    net = Network.sequential((10,), [Dense(grid_weights(rng, (4, 10), 0.6, 0.3))], threshold=0.5, beta=0.75)
    x = np.ones((3, 2, 10), dtype=np.float32)
    kw: dict[str, Any] = {"scheduler": "fifo", "forward_group_size": 2, "max_steps": 3, "prioritize_input": False}
    res = at.infer(net, x, backend=backend, **kw)
    assert_results_equal(res, asyncsnn.reference.infer(net, x, **kw))
    assert res.dropped_spikes.sum() == 0  # 6 inputs are dropped per timestep, not spikes
    assert res.input_events.tolist() == [20, 20, 20]  # counted at the enqueue
    assert res.synops.tolist() == [2 * 4 * 4] * 3  # two steps deliver two inputs each


@pytest.mark.parametrize("scheduler", ["layered", *UNLAYERED])
@pytest.mark.parametrize("seed", range(6))
def test_grad_mode_forward_equals_the_reference(scheduler: str, seed: int) -> None:
    net, x, opts, labels = random_case(seed, scheduler)
    opts = {**opts, "refractory_dropout": "off"}
    model = AsyncSNN(net)
    out = run(
        model.plan,
        model.projection_weights(),
        torch.from_numpy(x).reshape(x.shape[0], x.shape[1], -1),
        prepare_given_options(net, **opts),
        labels=torch.from_numpy(labels),
        surrogate=ATan(),
        bias=model.bias_vector(),
        backend=BACKENDS[seed % 2],
        surrogate_terms=["fired", "every_step"][seed // 2 % 2],
    )
    assert_results_equal(out.result(labels), asyncsnn.reference.infer(net, x, labels=labels, **opts))
    assert torch.equal(out.counts.detach(), out.counters["timestep_output_counts"].float())
    out.counts.sum().backward()
    for p in model.parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_stop_apart_with_inputs_pending(backend: str) -> None:
    # random, F = 1, first_output: each row stops at its own step with inputs still
    # pending, while the others go on delivering theirs (rows that stopped keep still).
    rng = np.random.default_rng(9)
    w = np.abs(grid_weights(rng, (3, 16), 0.4, 0.4))
    net = Network.sequential((16,), [Dense(w)], threshold=1.0, beta=0.75)
    x = np.ones((20, 2, 16), dtype=np.float32)
    kw: dict[str, Any] = {"scheduler": "random", "forward_group_size": 1, "stop": "first_output", "seed": 5}
    kw["prioritize_input"] = False
    res = at.infer(net, x, backend=backend, **kw)
    assert_results_equal(res, asyncsnn.reference.infer(net, x, **kw))
    delivered = res.synops_per_projection[:, 0] // 3
    assert (delivered < 32).all()  # every row dropped inputs
    assert len(set(res.timestep_forward_steps[:, 0].tolist())) > 1  # at different steps
    assert res.dropped_spikes.sum() == 0


@pytest.mark.parametrize("scheduler", ["layered", *UNLAYERED])
def test_without_the_option_nothing_changes(scheduler: str) -> None:
    differs = []
    for seed in (1, 2, 3):
        net, x, opts, labels = random_case(seed, scheduler)
        opts["prioritize_input"] = True
        expected = asyncsnn.reference.infer(net, x, labels=labels, **opts)
        assert_results_equal(infer_all(net, x, labels=labels, **opts), expected)
        npi = at.infer(net, x, labels=labels, **{**opts, "prioritize_input": False})
        differs.append(not np.array_equal(npi.timestep_forward_steps, expected.timestep_forward_steps))
    assert any(differs)


def test_momentum_is_refused() -> None:
    net, x, _, _ = random_case(0, "fifo")
    with pytest.raises(ParameterError) as err:
        at.infer(net, x, scheduler="momentum", prioritize_input=False)
    assert err.value.field == "prioritize_input"
    with pytest.raises(ParameterError):
        AsyncSNN(net)(torch.from_numpy(x), scheduler="momentum", prioritize_input=False)


# ------------------------------------------------------------------------ layered oracle
def _layered_grads(
    net: Network, x: torch.Tensor, y: torch.Tensor, backend: str, prioritize: bool, **kw: Any
) -> tuple[Any, list[torch.Tensor]]:
    model = AsyncSNN(net)
    opts = prepare_given_options(net, scheduler="layered", prioritize_input=prioritize, **kw)
    out = run(
        model.plan,
        model.projection_weights(),
        x,
        opts,
        labels=y,
        surrogate=ATan(),
        bias=model.bias_vector(),
        backend=backend,
    )
    return out, list(torch.autograd.grad(rate_loss(out.counts, y), list(model.parameters())))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_layered_equals_prioritised_input_with_its_gradients(backend: str, seed: int) -> None:
    # R4.13: under layered, without skip connections, the spikes are those of prioritised
    # input, one forward step later in a timestep whose frame has a value; the same
    # graph, so the same values and gradients (bit for bit).
    rng = np.random.default_rng(300 + seed)
    net = varied_network(rng, ["dense", "conv"][seed % 2], seed % 3)
    n_b = 5
    xn = random_count_input(rng, net, n_b, 5, density=0.4)
    xn[:, 2] = 0  # a frame without input: no extra step
    x = torch.from_numpy(xn).reshape(n_b, 5, -1)
    y = torch.from_numpy(rng.integers(0, net.n_outputs, n_b))
    kw = {"input_dropout": 0.2, "seed": 4} if seed % 2 else {}
    a, ga = _layered_grads(net, x, y, backend, True, **kw)
    b, gb = _layered_grads(net, x, y, backend, False, **kw)
    ra, rb = a.result(y.numpy()), b.result(y.numpy())
    assert torch.equal(a.counts, b.counts)
    for name in ("spikes", "spikes_total", "synops_per_projection", "output_counts", "input_events"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name)), name
    extra = (x != 0).any(2).numpy()
    if net.populations[0].bias.any() or any(p.reset != "zero" or p.synaptic for p in net.populations):
        pass  # a settling network has a settle-only step where prioritised input settles at step 0
    else:
        assert np.array_equal(rb.timestep_forward_steps, ra.timestep_forward_steps + extra)
    assert any(float(g.abs().max()) > 0 for g in ga)
    for g1, g2 in zip(ga, gb, strict=True):
        assert torch.equal(g1, g2)


@pytest.mark.parametrize("scheduler", UNLAYERED)
def test_backends_give_the_same_gradients(scheduler: str) -> None:
    rng = np.random.default_rng(21)
    net = varied_network(rng, "skip", 2)
    x = torch.from_numpy(random_count_input(rng, net, 6, 4, density=0.5)).reshape(6, 4, -1)
    y = torch.from_numpy(rng.integers(0, net.n_outputs, 6))
    grads = []
    for backend in BACKENDS:
        model = AsyncSNN(net)
        opts = prepare_given_options(net, scheduler=scheduler, forward_group_size=2, seed=4, prioritize_input=False)
        out = run(
            model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector(), backend=backend
        )
        ref = asyncsnn.reference.infer(
            net, x.numpy(), scheduler=scheduler, forward_group_size=2, seed=4, prioritize_input=False
        )
        assert_results_equal(out.result(), ref)
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.parameters())))
    assert any(float(g.abs().max()) > 0 for g in grads[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_an_input_entry_passes_its_gradient_to_its_weight() -> None:
    # One input, one neuron that fires at every timestep: the input weight's gradient
    # comes through the input deliveries only (fifo, F = 1).
    net = Network.sequential((2,), [Dense(np.array([[1.5, 0.5]], np.float32))], threshold=1.0, beta=0.5)
    w = torch.tensor([[1.5, 0.5]], requires_grad=True)
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    for prioritize in (True, False):
        opts = prepare_given_options(net, scheduler="fifo", forward_group_size=1, prioritize_input=prioritize)
        out = run(Plan(net), [w], x, opts, surrogate=ATan())
        assert out.counts.sum().item() == 2.0
        (g,) = torch.autograd.grad(out.counts.sum(), [w])
        assert g[0, 0] != 0
        assert g[0, 1] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_without_values_gives_its_weights_a_zero_gradient(backend: str) -> None:
    # No input entry is made for a zero value, so nothing is delivered; the input
    # weights still get a zero gradient (not none), as under prioritised input, so
    # that optimisers and DDP see every parameter.
    net = Network.sequential((2,), [Dense(np.array([[1.5, 0.5]], np.float32))], threshold=1.0, beta=0.5)
    x = torch.zeros(1, 3, 2)
    for prioritize in (True, False):
        w = torch.tensor([[1.5, 0.5]], requires_grad=True)
        opts = prepare_given_options(net, scheduler="fifo", forward_group_size=1, prioritize_input=prioritize)
        out = run(Plan(net), [w], x, opts, surrogate=ATan(), backend=backend)
        assert out.counts.sum().item() == 0.0
        out.counts.sum().backward()
        assert w.grad is not None
        assert torch.equal(w.grad, torch.zeros_like(w))


# ------------------------------------------------------------------------------ training
def test_module_forward_takes_the_option() -> None:
    net, x, opts, labels = random_case(5, "random")
    model = AsyncSNN(net)
    kw = {k: opts[k] for k in ("scheduler", "forward_group_size", "seed", "input_dropout", "prioritize_input")}
    out = model(torch.from_numpy(x), labels=labels, **kw)
    assert_results_equal(out.result(labels), asyncsnn.reference.infer(net, x, labels=labels, **kw))
    with pytest.raises(ParameterError) as err:
        model(torch.from_numpy(x), prioritize_input=0)
    assert err.value.field == "prioritize_input"


@pytest.mark.parametrize("scheduler", ["layered", "fifo"])
def test_train_takes_and_records_the_option(scheduler: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    ws = [grid_weights(rng, (10, 12), 0.5, 0.3), grid_weights(rng, (4, 10), 0.5, 0.3)]
    net = Network.sequential((12,), [Dense(w) for w in ws], threshold=0.75, beta=0.875)
    x = torch.from_numpy(random_count_input(rng, net, 8, 4, density=0.5))
    y = torch.from_numpy(rng.integers(0, 4, 8))
    kw: dict[str, Any] = {"scheduler": scheduler, "epochs": 1, "batch_size": 4, "progress": False, "seed": 1}
    kw["forward_group_size"] = 2
    plain, _ = train(net, (x, y), **kw)
    npi, _ = train(net, (x, y), prioritize_input=False, checkpoint_dir=tmp_path, **kw)
    w_plain, w_npi = (n.projections[0].layer.weight for n in (plain, npi))  # type: ignore[union-attr]
    # layered: the same spikes and gradients, so the same weights; fifo: other spikes
    assert np.array_equal(w_plain, w_npi) == (scheduler == "layered")
    config = json.loads(load_checkpoint(sorted(tmp_path.glob("*.safetensors"))[-1])["config"])
    assert config["prioritize_input"] is False
    with pytest.raises(ParameterError) as err:
        train(net, (x, y), **{**kw, "scheduler": "momentum"}, prioritize_input=False)
    assert err.value.field == "prioritize_input"
    plain_dir = tmp_path / "plain"
    train(net, (x, y), checkpoint_dir=plain_dir, **kw)
    config = json.loads(load_checkpoint(sorted(plain_dir.glob("*.safetensors"))[-1])["config"])
    assert "prioritize_input" not in config  # absent at the default: earlier checkpoints resume

"""SPEC_VERSION 2 in the torch engine: biases, reset modes and settling (R1.4, R1.6, R4.7, R4.8).

Hand-checked runs pin the rules on one-neuron populations; under ``layered`` the
engine equals the layer-synchronous formula of R4.5 (values and gradients, section 9);
both backends equal the reference engine on random grid networks with biases and
every reset mode, on every scheduler, and the differentiable forward gives the same
counters as inference. ``AsyncSNN`` trains biases and exports them with the resets.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import SCHEDULERS, grid_chain
from _torch import assert_grad_run_matches, batch_and_alone, infer_backends, random_run_options
from asyncsnn._prepare import prepare_given_options
from asyncsnn.network import RESET_MODES, Dense, Network, Population, Projection
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.torch import AsyncSNN, rate_loss, train
from asyncsnn.torch.engine import Plan, run, tape
from asyncsnn.torch.surrogate import ATan, spike

BACKENDS = ["host", "torch"]


def settling_network(rng: np.random.Generator, net: Network) -> Network:
    """``net`` with random grid biases (none, per population or per neuron) and reset modes.

    Refractory dropout is kept for the populations whose reset is ``"zero"`` only (R4.6).
    """
    pops = []
    for p in net.populations:
        mode = RESET_MODES[int(rng.integers(0, len(RESET_MODES)))]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            bias = np.zeros(p.shape, dtype=np.float32)
        elif kind == 1:
            bias = np.full(p.shape, rng.integers(-96, 97) / 256, dtype=np.float32)
        else:
            bias = (rng.integers(-96, 97, p.shape) / 256).astype(np.float32)
        drop = p.refractory_dropout if mode == "zero" else 0.0
        pops.append(dataclasses.replace(p, bias=bias, reset=mode, refractory_dropout=drop))
    return Network(net.input_shape, pops, net.projections)


def chain(bias: list[float], reset: list[str], threshold: float = 1.0, beta: float = 1.0) -> Network:
    """input(1) -> 1 -> ... -> 1 neuron per population, every weight 2."""
    pops = [
        Population.create((1,), threshold, beta, bias=b, reset=r, location=f"population {i}")
        for i, (b, r) in enumerate(zip(bias, reset), 1)
    ]
    projs = [Projection(i, i + 1, Dense(np.full((1, 1), 2.0, dtype=np.float32))) for i in range(len(pops))]
    return Network((1,), pops, projs)


def options(net: Network, **kw: Any) -> Any:
    """Validated run options (the defaults of ``asyncsnn.infer``, layered, except ``kw``)."""
    return prepare_given_options(net, **{"scheduler": "layered", "forward_group_size": 8, **kw})


# ------------------------------------------------------------------------- hand-checked
def biased_neuron(bias: float, beta: float, reset: str, n_t: int) -> list[int]:
    """The timesteps in which one IF/LIF neuron with a bias and no input fires (R4.7, R4.8)."""
    v, debt, fired = 0.0, False, []
    for t in range(n_t):
        v = beta * v + bias - (1.0 if debt else 0.0)  # settles once per timestep
        debt = False
        if v > 1.0:
            fired.append(t)
            if reset == "zero":
                v = 0.0
            elif reset == "subtract":
                v -= 1.0
            elif reset == "subtract_delayed":
                debt = True
    return fired


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_biased_neuron_fires_without_input(reset: str) -> None:
    # Population 1 settles at step 0 (the input projects into it, R4.7) even though the
    # frame is all zeros; its spikes reach the (non-settling) output in step 1.
    n_t = 8
    net = chain([0.75, 0.0], [reset, "zero"], beta=0.5)
    expected = biased_neuron(0.75, 0.5, reset, n_t)
    assert expected  # the case is not trivial
    for res in infer_backends(net, np.zeros((1, n_t, 1), dtype=np.float32), scheduler="fifo"):
        steps = [2 if t in expected else 1 for t in range(n_t)]
        assert res.timestep_forward_steps[0].tolist() == steps
        assert res.timestep_output_counts[0, :, 0].tolist() == [int(t in expected) for t in range(n_t)]
        assert res.spikes[0].tolist() == [len(expected), len(expected)]
        assert res.input_events[0] == 0


def test_reset_modes_differ_as_r48_says() -> None:
    fired = {r: biased_neuron(0.75, 0.5, r, 8) for r in RESET_MODES}
    assert fired["zero"] == [1, 3, 5, 7]
    assert fired["subtract"] == [1, 3, 5, 7]
    assert fired["subtract_delayed"] == [1, 4, 7]
    assert fired["none"] == [1, 2, 3, 4, 5, 6, 7]  # above the threshold: fires once per timestep


def test_settle_only_steps() -> None:
    # input -> 1 (no bias) -> 2 (bias 0.75) -> output. Population 2 receives nothing: it
    # settles in a settle-only step after step 0 (R4.3.4), fires every second timestep
    # and its spike is delivered in a third step.
    net = chain([0.0, 0.75, 0.0], ["zero", "zero", "zero"])
    for res in infer_backends(net, np.zeros((1, 6, 1), dtype=np.float32), scheduler="momentum"):
        assert res.timestep_forward_steps[0].tolist() == [2, 3, 2, 3, 2, 3]
        assert res.spikes[0].tolist() == [0, 3, 3]
        assert res.first_output_step[0].tolist() == [-1, 2, -1, 2, -1, 2]
        assert res.decision_step[0] == 2 + 2  # the first output spike decides
    # A stop at the first step leaves population 2 unsettled: its bias is lost (R4.7).
    for res in infer_backends(net, np.zeros((1, 6, 1), dtype=np.float32), max_steps=1):
        assert res.timestep_forward_steps[0].tolist() == [1] * 6
        assert res.spikes_total[0] == 0


def test_the_lowest_due_population_settles_first_and_spikes_arrive_in_order() -> None:
    # 1 and 2 both biased: 1 settles at step 0 and fires, its group settles 2 (R4.7).
    net = chain([1.5, 0.25, 0.0], ["none", "subtract", "zero"])
    for res in infer_backends(net, np.zeros((1, 3, 1), dtype=np.float32), scheduler="fifo"):
        # t0: 1 fires at step 0 (1.5, "none": V stays), 2 settles at step 1 (2 + 0.25
        # fires, "subtract": 1.25 left), the output fires at step 2.
        # t1: 1 (V 3.0) fires again; 2 has 1.25 + 2 + 0.25 = 3.5: fires; and so on.
        assert res.timestep_forward_steps[0].tolist() == [3, 3, 3]
        assert res.spikes[0].tolist() == [3, 3, 3]


def test_v1_networks_run_the_version_1_code() -> None:
    rng = np.random.default_rng(0)
    net = random_grid_network(rng, "dense")
    assert net.spec_version == 1
    assert not Plan(net).any_settling
    model = AsyncSNN(net)
    assert len(model.biases) == 0
    assert model.bias_vector() is None


# ------------------------------------------------------------------------- R4.5 layered formula
def layered_formula(net: Network, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor) -> Any:
    """R4.5: U = beta V + (W s + b) - theta d; s = H(U - theta); reset per mode (snnTorch's Leaky).

    Every population is computed in every timestep; ``d`` (``"subtract_delayed"``) is
    the previous timestep's spike, a constant (section 9).
    """
    pops = net.populations
    v = [torch.zeros(x.shape[0], p.size) for p in pops]
    d = [torch.zeros(x.shape[0], p.size) for p in pops]
    out = []
    for t in range(x.shape[1]):
        inp = x[:, t]
        for i, (pop, w, b) in enumerate(zip(pops, weights, biases)):
            theta = torch.tensor(pop.threshold.reshape(-1))
            u = torch.tensor(pop.beta.reshape(-1)) * v[i] + (inp @ w.t() + b)
            if pop.reset == "subtract_delayed":
                u = u - theta * d[i]
            s = spike(u - theta, ATan())
            if pop.reset == "zero":
                v[i] = u * (1 - s)
            elif pop.reset == "subtract":
                v[i] = u - theta * s
            else:
                v[i] = u
            d[i] = s.detach()
            inp = s
        out.append(inp)
    return torch.stack(out, 1)


def dense_settling_problem(seed: int, reset: str) -> tuple[Network, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    sizes = [10, 12, 9, 4]
    layers = [Dense(grid_weights(rng, (b, a), 0.5, 0.15)) for a, b in itertools.pairwise(sizes)]
    bias = [(rng.integers(-64, 97, n) / 256).astype(np.float32) for n in sizes[1:]]
    net = Network.sequential(
        input_shape=(10,), layers=layers, threshold=0.75, beta=0.875, bias=bias, reset=[reset, "subtract", reset]
    )
    x = torch.from_numpy(random_count_input(rng, net, 5, 6, density=0.3))
    y = torch.from_numpy(rng.integers(0, 4, 5))
    return net, x, y


@pytest.mark.parametrize("reset", RESET_MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_layered_equals_the_layer_synchronous_formula(reset: str, backend: str) -> None:
    net, x, y = dense_settling_problem(7, reset)
    model = AsyncSNN(net)
    assert len(model.biases) == 3
    opts = options(net)
    out = run(
        model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector(), backend=backend
    )
    ws = [torch.tensor(np.asarray(pr.layer.weight), requires_grad=True) for pr in net.projections]
    bs = [torch.tensor(np.asarray(p.bias).reshape(-1), requires_grad=True) for p in net.populations]
    counts = layered_formula(net, ws, bs, x)
    assert torch.equal(out.counts, counts)
    assert 0 < counts.sum() < counts.numel()
    params = [*model.weights, *model.biases.values()]
    g_engine = torch.autograd.grad(rate_loss(out.counts, y), params)
    g_formula = torch.autograd.grad(rate_loss(counts, y), [*ws, *bs])
    for a, b in zip(g_engine, g_formula):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(float(g.abs().sum()) > 0 for g in g_engine[len(ws) :])  # the biases learn


# ------------------------------------------------------------------------- engine equality
def random_case(seed: int, big: bool = False) -> tuple[Network, np.ndarray, dict[str, Any], np.ndarray]:
    """A random settling grid network, count input, labels and run options.

    ``big``: 16 to 40 samples, so that rows whose timestep has ended are set aside
    (``MIN_SET_ASIDE``) while others still settle.
    """
    rng = np.random.default_rng(seed)
    kind = ["dense", "conv", "skip", "conv_wide"][seed % 4]
    net = settling_network(rng, random_grid_network(rng, kind))  # type: ignore[arg-type]
    batch = int(rng.integers(16, 40)) if big else int(rng.integers(1, 5))
    x = random_count_input(rng, net, batch, int(rng.integers(1, 5)), density=float(rng.choice([0.0, 0.2, 0.5, 1.0])))
    stop = str(rng.choice(["drain", "first_output", "max_steps"]))
    scheduler = SCHEDULERS[seed % 7 % 4]
    opts = random_run_options(rng, scheduler, stop, [1, 2, 3, 8, 1000])
    return net, x, opts, rng.integers(0, net.n_outputs, batch)


@pytest.mark.parametrize("seed", range(48))
def test_both_backends_equal_the_reference(seed: int) -> None:
    net, x, opts, labels = random_case(seed, big=seed % 6 == 5)
    expected = asyncsnn.reference.infer(net, x, labels=labels, **opts)
    for res in infer_backends(net, x, labels=labels, **opts):
        assert_results_equal(res, expected)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("reset", RESET_MODES)
def test_every_scheduler_and_reset_equals_the_reference(scheduler: str, reset: str) -> None:
    rng = np.random.default_rng(SCHEDULERS.index(scheduler) * 10 + RESET_MODES.index(reset))
    for kind in ("dense", "conv", "skip"):
        net = settling_network(rng, random_grid_network(rng, kind))  # type: ignore[arg-type]
        net = Network(
            net.input_shape,
            [dataclasses.replace(p, reset=reset, refractory_dropout=0.0) for p in net.populations],
            net.projections,
        )
        x = random_count_input(rng, net, batch=4, timesteps=5, density=0.4)
        for f in (1, 3):
            kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 11}
            expected = asyncsnn.reference.infer(net, x, **kw)
            for res in infer_backends(net, x, **kw):
                assert_results_equal(res, expected)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_mode_forward_equals_inference(seed: int, backend: str) -> None:
    net, x, opts, labels = random_case(seed, big=seed % 4 == 3)
    opts = {**opts, "refractory_dropout": "off"}
    model = AsyncSNN(net)
    prepared = options(net, **opts)
    out = run(
        model.plan,
        model.projection_weights(),
        torch.from_numpy(x).reshape(x.shape[0], x.shape[1], -1),
        prepared,
        labels=torch.from_numpy(labels),
        surrogate=ATan(),
        bias=model.bias_vector(),
        backend=backend,
    )
    res = at.infer(net, x, labels=labels, backend=backend, **opts)
    assert_grad_run_matches(out, res, labels, model)


def test_backends_give_the_same_gradients() -> None:
    net, x, y = dense_settling_problem(3, "subtract_delayed")
    grads = []
    for backend in BACKENDS:
        model = AsyncSNN(net)
        opts = options(net, scheduler="momentum", forward_group_size=2)
        out = run(
            model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector(), backend=backend
        )
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- the module
def test_module_biases_and_export() -> None:
    net, _, _ = dense_settling_problem(1, "subtract")
    net = Network(
        net.input_shape,
        [dataclasses.replace(net.populations[0], bias=np.zeros(12, np.float32)), *net.populations[1:]],
        net.projections,
    )
    model = AsyncSNN(net)
    assert sorted(model.biases) == ["2", "3"]  # population 1's bias is 0: not a parameter
    with torch.no_grad():
        model.biases["2"].add_(0.125)
    exported = model.to_network()
    assert [p.reset for p in exported.populations] == [p.reset for p in net.populations]
    np.testing.assert_array_equal(exported.populations[1].bias, net.populations[1].bias + np.float32(0.125))
    np.testing.assert_array_equal(exported.populations[0].bias, 0)
    assert AsyncSNN(exported).to_network().populations[1].bias.tolist() == exported.populations[1].bias.tolist()
    # Trainable zero biases: every population, and the forward is that of a biased network.
    full = AsyncSNN(net, train_zero_biases=True)
    assert sorted(full.biases) == ["1", "2", "3"]
    assert full.plan.settling == [False, True, True, True]
    v1 = AsyncSNN.from_sizes([6, 5, 3], train_zero_biases=True, seed=1)
    assert v1.network.spec_version == 1
    assert v1.plan.any_settling
    with pytest.raises(asyncsnn.ParameterError):
        AsyncSNN(net, train_zero_biases=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_training_lowers_the_loss_and_trains_the_biases(scheduler: str) -> None:
    rng = np.random.default_rng(0)
    protos = rng.random((3, 12)) < 0.35
    y = rng.integers(0, 3, 64)
    x = (rng.random((64, 4, 12)) < np.where(protos[y], 0.8, 0.05)[:, None, :]).astype(np.float32)
    model = AsyncSNN.from_sizes([12, 16, 3], bias=[-0.125, 0.0625], reset=["subtract_delayed", "subtract"], seed=1)
    before = {k: p.detach().clone() for k, p in model.biases.items()}
    net, hist = train(
        model, (x, y), scheduler=scheduler, forward_group_size=2, epochs=3, lr=1e-2, batch_size=32, progress=False
    )
    assert hist.loss[-1] < hist.loss[0]
    assert [p.reset for p in net.populations] == ["subtract_delayed", "subtract"]
    for i, p in enumerate(net.populations, 1):
        assert not np.array_equal(p.bias, before[str(i)].numpy())  # gradients reached the biases


def test_a_bias_that_never_settles_gets_a_zero_gradient() -> None:
    # max_steps=1 stops every timestep before population 2's settle-only step (R4.7).
    model = AsyncSNN(chain([0.0, 0.75, 0.0], ["zero", "zero", "zero"]))
    out = model(torch.zeros(2, 3, 1), max_steps=1)
    out.counts.sum().backward()
    grad = model.biases["2"].grad
    assert grad is not None
    assert torch.equal(grad, torch.zeros(1))


@pytest.mark.parametrize("backend", ["host", "torch"])
def test_a_stopped_row_stays_silent_while_the_batch_runs_on(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """R4.3.2, R6.4: a row that an early stop ended fires nothing more in its timestep.

    A skip projection lets the output fire at step 0, so ``first_output`` stops rows
    while a biased population is still due; with the reset ``"subtract"`` a neuron of it
    can hold a membrane above the threshold from an earlier timestep. The
    stop clears the due flags, and a stopped row that ran on in lock step with the rest of
    a small batch fired such neurons in its later forward steps (spikes that reached the
    gradient, not the counters): the batch gradient must be the sum of the samples'.
    """
    rng = np.random.default_rng(0)
    net = grid_chain(rng, [6, 8, 6, 3], 0.9, 0.15)
    pops = list(net.populations)
    pops[1] = dataclasses.replace(pops[1], bias=np.float32(0.4), reset="subtract")
    skip = Projection(0, 3, Dense(grid_weights(rng, (3, 6), 0.6, 0.1)))
    net = Network(net.input_shape, pops, [*net.projections, skip])
    x = (rng.random((8, 4, 6)) < rng.uniform(0.1, 0.7, (8, 1, 1))).astype(np.float32)
    opts = {"scheduler": "random", "forward_group_size": 1, "stop": "first_output", "seed": 1}
    monkeypatch.setattr(tape, "ENABLED", False)  # the step-by-step engine (rows in lock step)
    batch, alone = batch_and_alone(net, x, opts, backend)
    for a, b in zip(batch, alone):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(bool(a.abs().sum() > 0) for a in batch)

"""Recurrent projections in the torch engine (SPEC_VERSION 2: R1.2, R1.6, R4.9, section 9).

Hand-checked runs pin R4.9 on a two-neuron population with a lateral synapse: under an
unlayered scheduler the recurrent current arrives in the same timestep, under
``layered`` it is carried to the next one. Under ``layered`` the engine equals the
layer-synchronous formula of R4.5 with its term ``R s_{t-1}`` in values and gradients
(the BPTT of a recurrent LIF network, snnTorch's ``RLeaky``), with every reset mode and
biases; on random recurrent grid networks both backends agree, the differentiable
forward gives the counters of inference, and every scheduler trains.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
import asyncsnn.torch as at
from _strategies import SCHEDULERS
from _torch import assert_grad_run_matches, backend_gradients, infer_all, layered_bptt, one_torch_thread
from asyncsnn._prepare import prepare_given_options
from asyncsnn.network import RESET_MODES, Conv2d, Dense, Network, Projection
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.torch import AsyncSNN, rate_loss, train
from asyncsnn.torch.engine import Plan, run
from asyncsnn.torch.surrogate import ATan

BACKENDS = ["host", "torch"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


def lateral_network() -> Network:
    """input(1) -> population 1 (2 neurons, 0 -> 1 lateral weight 0.75) -> output (1 neuron).

    Threshold 1, no leak. The input reaches neuron 0 with 1.5 and neuron 1 with 0.5;
    both reach the output with 1.5.
    """
    w_in = np.array([[1.5], [0.5]], dtype=np.float32)
    lateral = np.array([[0.0, 0.0], [0.75, 0.0]], dtype=np.float32)
    w_out = np.array([[1.5, 1.5]], dtype=np.float32)
    return Network.sequential(
        input_shape=(1,),
        layers=[Dense(w_in), Dense(w_out)],
        threshold=1.0,
        beta=1.0,
        recurrent=[(1, 1, Dense(lateral))],
    )


def test_the_plan_sees_recurrent_targets_as_settling() -> None:
    net = lateral_network()
    plan = Plan(net)
    assert plan.recurrent
    assert plan.settling == [False, True, False]
    assert [pp.recurrent for pp in plan.projections] == [False, False, True]
    tables = plan.host_arrays()
    assert tables["targets_f"][1].tolist() == [1.0, 1.0]  # 1 -> 2 and 1 -> 1
    assert tables["targets_layered_f"][1].tolist() == [0.0, 1.0]  # the recurrent one is carried
    # A pending neuron of population 1 can still change population 1 (rank P + 1 = 3).
    assert tables["silent_rank_f"].tolist() == [3.0, 3.0, 1.0]
    assert not Plan(Network.sequential(input_shape=(1,), layers=[Dense(np.ones((1, 1), np.float32))])).recurrent


@pytest.mark.parametrize("scheduler", ["fifo", "random", "momentum"])
def test_an_unlayered_recurrent_spike_arrives_in_the_same_timestep(scheduler: str) -> None:
    # t = 0: step 0 neuron 0 fires (1.5); step 1 delivers it: the output fires (1.5) and
    # neuron 1 reaches 0.5 + 0.75 and fires; step 2 delivers neuron 1 (the refractory
    # output discards it). t = 1: nothing (population 1 settles with a zero frame).
    res = infer_all(
        lateral_network(), np.array([[[1.0], [0.0]]], np.float32), scheduler=scheduler, forward_group_size=1
    )
    assert res.spikes.tolist() == [[2, 1]]
    assert res.timestep_output_counts[0, :, 0].tolist() == [1, 0]
    assert res.forward_steps.tolist() == [3 + 1]  # t = 1 is one step
    # Input: fan-out 2 at t = 0; each population-1 neuron: 1 (output) + 2 (lateral, Dense).
    assert res.synops.tolist() == [2 + 3 + 3]


def test_a_layered_recurrent_spike_is_carried_to_the_next_timestep() -> None:
    # t = 0: neuron 0 fires at step 0, its group is delivered at step 1: the output fires,
    # and 0.75 is carried into neuron 1 (C). t = 1: population 1 settles at step 0 with the
    # zero frame plus C: neuron 1 reaches 0.5 + 0.75 and fires; step 1: the output fires.
    res = infer_all(lateral_network(), np.array([[[1.0], [0.0]]], np.float32), scheduler="layered")
    assert res.spikes.tolist() == [[2, 2]]
    assert res.timestep_output_counts[0, :, 0].tolist() == [1, 1]
    assert res.forward_steps.tolist() == [2 + 2]
    # A carried delivery counts when it is delivered (R7.4); the zero frame of t = 1 counts none.
    assert res.timestep_synops.tolist() == [[2 + 3, 3]]
    # A carried current that no settle takes is lost at the end of the sample (R3.3).
    once = infer_all(lateral_network(), np.array([[[1.0]]], np.float32), scheduler="layered")
    assert once.spikes.tolist() == [[1, 1]]


def test_refractory_dropout_is_refused_on_a_recurrent_target() -> None:
    with pytest.raises(asyncsnn.ParameterError, match=r"R4\.6"):
        at.infer(lateral_network(), np.ones((1, 2, 1), np.float32), refractory_dropout=0.25)


# ------------------------------------------------------------------------- layered = BPTT
def recurrent_problem(seed: int, reset: str, which: tuple[int, ...]) -> tuple[Network, torch.Tensor, torch.Tensor]:
    """A dense 10-12-9-4 network with biases and the recurrent projections ``which`` of
    ``(1, 1)`` self, ``(2, 1)`` backward, ``(3, 3)`` output self, ``(2, 2)`` lateral."""
    rng = np.random.default_rng(seed)
    sizes = [10, 12, 9, 4]
    layers = [Dense(grid_weights(rng, (b, a), 0.5, 0.15)) for a, b in itertools.pairwise(sizes)]
    bias = [(rng.integers(-64, 97, n) / 256).astype(np.float32) for n in sizes[1:]]
    pairs = [(1, 1), (2, 1), (3, 3), (2, 2)]
    rec = [(s, d, Dense(grid_weights(rng, (sizes[d], sizes[s]), 0.4, 0.1))) for s, d in (pairs[i] for i in which)]
    net = Network.sequential(
        input_shape=(10,),
        layers=layers,
        threshold=0.75,
        beta=0.875,
        bias=bias,
        reset=[reset, "subtract", reset],
        recurrent=rec,
    )
    x = torch.from_numpy(random_count_input(rng, net, 5, 8, density=0.3))
    return net, x, torch.from_numpy(rng.integers(0, 4, 5))


@pytest.mark.parametrize(("reset", "which"), [(r, w) for r in RESET_MODES for w in [(0,), (0, 1, 2, 3)]])
@pytest.mark.parametrize("backend", BACKENDS)
def test_layered_training_is_the_bptt_of_the_recurrent_network(
    reset: str, which: tuple[int, ...], backend: str
) -> None:
    net, x, y = recurrent_problem(5, reset, which)
    model = AsyncSNN(net)
    opts = prepare_given_options(net, scheduler="layered", forward_group_size=8)
    out = run(
        model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector(), backend=backend
    )
    ws = [torch.tensor(np.asarray(pr.layer.weight), requires_grad=True) for pr in net.projections]
    bs = [torch.tensor(np.asarray(p.bias).reshape(-1), requires_grad=True) for p in net.populations]
    counts = layered_bptt(net, ws, bs, x)
    assert torch.equal(out.counts, counts)
    assert 0 < counts.sum() < counts.numel()
    # The recurrence matters: without it the network computes something else.
    plain = Network(net.input_shape, net.populations, [p for p in net.projections if not p.recurrent])
    without = at.infer(plain, x.numpy(), scheduler="layered").timestep_output_counts
    assert not np.array_equal(without, counts.detach().numpy())
    params = [*model.weights, *model.biases.values()]
    g_engine = torch.autograd.grad(rate_loss(out.counts, y), params)
    g_formula = torch.autograd.grad(rate_loss(counts, y), [*ws, *bs])
    for a, b in zip(g_engine, g_formula):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    rec_grads = [g for g, pr in zip(g_engine, net.projections) if pr.recurrent]
    assert all(float(g.abs().sum()) > 0 for g in rec_grads)  # the recurrent weights learn


def test_layered_every_step_terms_equal_fired_terms_without_skips() -> None:
    # Under layered each population integrates once per timestep: "every_step" adds no term.
    net, x, y = recurrent_problem(2, "zero", (0, 1, 2))
    grads = []
    for terms in ("fired", "every_step"):
        model = AsyncSNN(net)
        opts = prepare_given_options(net, scheduler="layered", forward_group_size=8)
        out = run(model.plan, model.projection_weights(), x, opts, surrogate=ATan(), surrogate_terms=terms)
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.weights)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- random networks
def with_recurrence(rng: np.random.Generator, net: Network) -> Network:
    """``net`` with one to three random recurrent projections (self, lateral, backward).

    Dense, or a shape-preserving Conv2d between populations of the same shape; the
    targets lose their refractory dropout (R4.6).
    """
    shapes = net.population_shapes
    n_pop = len(net.populations)
    projs = list(net.projections)
    for _ in range(int(rng.integers(1, 4))):
        d = int(rng.integers(1, n_pop + 1))
        s = int(rng.integers(d, n_pop + 1))
        src, dst = shapes[s], shapes[d]
        if len(src) == 3 and src == dst and rng.integers(0, 2):
            layer: Any = Conv2d(grid_weights(rng, (dst[0], src[0], 3, 3), 0.3, 0.05), padding=1)
        else:
            layer = Dense(grid_weights(rng, (int(np.prod(dst)), int(np.prod(src))), 0.4, 0.05))
        projs.append(Projection(s, d, layer))
    targets = {p.target for p in projs if p.recurrent}
    pops = [
        dataclasses.replace(p, refractory_dropout=0.0) if i in targets else p for i, p in enumerate(net.populations, 1)
    ]
    return Network(net.input_shape, pops, projs)


def random_recurrent_case(seed: int) -> tuple[Network, np.ndarray, dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    kind = ["dense", "conv", "skip", "conv_wide"][seed % 4]
    net = with_recurrence(rng, random_grid_network(rng, kind))  # type: ignore[arg-type]
    batch = int(rng.integers(1, 5)) if seed % 5 else int(rng.integers(16, 30))
    x = random_count_input(rng, net, batch, int(rng.integers(1, 5)), density=float(rng.choice([0.0, 0.3, 1.0])))
    scheduler = SCHEDULERS[seed % 4]
    stop = str(rng.choice(["drain", "first_output", "max_steps"]))
    opts: dict[str, Any] = {
        "scheduler": scheduler,
        "forward_group_size": int(rng.choice([1, 2, 3, 1000])),
        "stop": stop,
        "extra_steps": int(rng.integers(0, 3)),
        "max_steps": int(rng.integers(1, 7)) if stop == "max_steps" else None,
        "seed": int(rng.integers(0, 2**63)),
        "jitter": 0.25 if scheduler == "momentum" and seed % 3 else 0.0,
    }
    return net, x, opts, rng.integers(0, net.n_outputs, batch)


@pytest.mark.parametrize("seed", range(32))
def test_random_recurrent_networks_equal_the_reference_also_in_grad_mode(seed: int) -> None:
    net, x, opts, labels = random_recurrent_case(seed)
    assert net.recurrent
    res = infer_all(net, x, labels=labels, **opts)  # both backends agree
    assert_results_equal(res, asyncsnn.reference.infer(net, x, labels=labels, **opts))
    # The differentiable forward gives the same counters (on one backend or the other).
    backend = BACKENDS[seed % 2]
    model = AsyncSNN(net)
    out = run(
        model.plan,
        model.projection_weights(),
        torch.from_numpy(x).reshape(x.shape[0], x.shape[1], -1),
        prepare_given_options(net, **opts),
        labels=torch.from_numpy(labels),
        surrogate=ATan(),
        bias=model.bias_vector(),
        backend=backend,
    )
    assert_grad_run_matches(out, res, labels, model)


def test_backends_give_the_same_gradients_under_every_unlayered_scheduler() -> None:
    net, x, y = recurrent_problem(3, "subtract", (0, 1, 2, 3))
    for scheduler in ("fifo", "random", "momentum"):
        grads = backend_gradients(net, x, y, scheduler, BACKENDS)
        assert float(grads[0][3].abs().sum()) > 0  # the self-recurrent weights of population 1


# ------------------------------------------------------------------------- training
def sequence_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of two input neurons fired first: a cue at t = 0, then identical noise.

    Only a network that remembers the cue (the membrane, or the recurrence) can tell.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 6, 4), np.float32)
    x[np.arange(n), 0, y] = 1.0
    x[:, 1:, 2:] = (rng.random((n, 5, 2)) < 0.3).astype(np.float32)
    return x, y


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_trains_a_recurrent_network(scheduler: str) -> None:
    x, y = sequence_task(128, 0)
    rng = np.random.default_rng(1)
    net = Network.sequential(
        input_shape=(4,),
        layers=[Dense(grid_weights(rng, (12, 4), 0.6, 0.3)), Dense(grid_weights(rng, (2, 12), 0.4, 0.1))],
        threshold=1.0,
        beta=0.75,
        recurrent=[(1, 1, Dense(grid_weights(rng, (12, 12), 0.5, 0.0)))],
    )
    model = AsyncSNN(net)
    before = model.weights[2].detach().clone()
    x_test, y_test = sequence_task(64, 1)
    trained, hist = train(
        model,
        (x, y),
        scheduler=scheduler,
        forward_group_size=2,
        epochs=6,
        lr=2e-2,
        batch_size=16,
        test_data=(x_test, y_test),
        progress=False,
    )
    assert hist.loss[-1] < hist.loss[0]
    assert hist.test_accuracy is not None
    assert hist.test_accuracy[0] < 0.9 < hist.test_accuracy[-1]  # it learns the held-out sequences
    assert trained.recurrent
    assert [(p.source, p.target) for p in trained.projections] == [(0, 1), (1, 2), (1, 1)]
    assert not np.array_equal(np.asarray(trained.projections[2].layer.weight), before.numpy())


def test_every_step_terms_with_recurrence_keep_the_forward_and_add_gradient() -> None:
    # Under an unlayered scheduler a recurrent delivery integrates a neuron several times
    # per timestep: "every_step" takes a term at each (section 9), the forward is unchanged.
    net, x, y = recurrent_problem(4, "zero", (0, 3))
    outs, grads = [], []
    for terms in ("fired", "every_step"):
        model = AsyncSNN(net)
        opts = prepare_given_options(net, scheduler="fifo", forward_group_size=1)
        out = run(model.plan, model.projection_weights(), x, opts, surrogate=ATan(), surrogate_terms=terms)
        outs.append(out)
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.weights)))
    assert torch.equal(outs[0].counts, outs[1].counts)
    for field, value in outs[0].counters.items():
        assert torch.equal(value, outs[1].counters[field]), field
    assert all(torch.isfinite(g).all() for g in grads[1])
    assert any(not torch.equal(a, b) for a, b in zip(*grads))


def test_trainable_zero_biases_on_a_recurrent_network() -> None:
    net, x, y = recurrent_problem(6, "zero", (0, 2))
    net = Network(
        net.input_shape,
        [dataclasses.replace(p, bias=np.zeros(p.shape, np.float32), reset="zero") for p in net.populations],
        net.projections,
    )
    assert net.settling == (True, False, True)  # the recurrent targets only (R1.6)
    model = AsyncSNN(net, train_zero_biases=True)
    assert model.plan.settling == [False, True, True, True]
    out = model(x, scheduler="momentum", forward_group_size=3)
    rate_loss(out.counts, y).backward()
    assert all(b.grad is not None and torch.isfinite(b.grad).all() for b in model.biases.values())
    assert float(model.weights[3].grad.abs().sum()) > 0  # population 1's self-recurrence
    assert model.to_network().recurrent


@pytest.mark.parametrize(
    ("reset", "mechanism", "delay"),
    [("zero", "zero", False), ("subtract_delayed", "subtract", True), ("none", "none", False)],
)
def test_layered_self_recurrence_is_snntorch_rleaky(reset: str, mechanism: str, delay: bool) -> None:
    # R4.5 / R4.9: under layered a self-recurrent population is snnTorch's RLeaky, spike for
    # spike ("subtract" without delay differs by R4.8, as for Leaky).
    snn = pytest.importorskip("snntorch")
    rng = np.random.default_rng(0)
    w, r = grid_weights(rng, (12, 10), 0.5, 0.15), grid_weights(rng, (12, 12), 0.4, 0.0)
    net = Network.sequential(
        input_shape=(10,), layers=[Dense(w)], threshold=0.75, beta=0.875, reset=reset, recurrent=[(1, 1, Dense(r))]
    )
    x = random_count_input(rng, net, 4, 12, density=0.3)
    res = infer_all(net, x, scheduler="layered")
    lif = snn.RLeaky(
        beta=0.875, threshold=0.75, linear_features=12, all_to_all=True, reset_mechanism=mechanism, reset_delay=delay
    )
    out = []
    with torch.no_grad():
        lif.recurrent.weight.copy_(torch.from_numpy(r))
        lif.recurrent.bias.zero_()
        spk, mem = lif.init_rleaky()
        for t in range(x.shape[1]):
            spk, mem = lif(torch.from_numpy(x[:, t]) @ torch.from_numpy(w).t(), spk, mem)
            out.append(spk)
    expected = torch.stack(out, 1).numpy()
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(res.timestep_output_counts, expected)

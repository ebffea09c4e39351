"""Synaptic currents in the torch engine (SPEC_VERSION 2: R1.6, R4.12, R8.3, section 9).

Hand-checked runs pin R4.12 on one-neuron populations (a current keeps reaching the
membrane, decayed by ``alpha``, and a refractory neuron's synapses are still charged);
under ``layered`` the engine equals the BPTT of snnTorch's ``Synaptic`` / ``RSynaptic``
(``S_t = alpha S_{t-1} + W s + R s_{t-1} + b``, ``U_t = beta V_{t-1} + S_t - theta d_t``)
in values and gradients, and so do the unlayered schedulers with a forward group as
wide as a population; both backends equal the reference engine on random synaptic
grid networks (every scheduler and reset, skip and recurrent projections, early stops),
also in grad mode; an overflowing ``S`` raises; ``AsyncSNN.from_sizes(alpha=...)``
trains under every scheduler and keeps ``alpha``. The last test compares
``asyncsnn.infer`` (the Rust engine) with the torch engine: it fails while the Rust
engine refuses synaptic currents.
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
from _strategies import SCHEDULERS, grid_chain
from _torch import (
    assert_grad_run_matches,
    backend_gradients,
    batch_and_alone,
    infer_all,
    layered_bptt,
    one_torch_thread,
    random_run_options,
)
from asyncsnn._prepare import prepare_given_options
from asyncsnn.network import RESET_MODES, Dense, Network, Population, Projection
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network
from asyncsnn.torch import AsyncSNN, rate_loss, train
from asyncsnn.torch.engine import Plan, run, tape
from asyncsnn.torch.surrogate import ATan

BACKENDS = ["host", "torch"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    yield from one_torch_thread()


def chain(alpha: list[float], weights: list[float], threshold: float = 1.0, beta: float = 1.0) -> Network:
    """input(1) -> 1 -> ... -> 1 neuron per population, with the given alphas and weights."""
    pops = [
        Population.create((1,), threshold, beta, alpha=a, location=f"population {i}") for i, a in enumerate(alpha, 1)
    ]
    projs = [Projection(i, i + 1, Dense(np.full((1, 1), w, dtype=np.float32))) for i, w in enumerate(weights)]
    return Network((1,), pops, projs)


# ------------------------------------------------------------------------- hand-checked
def test_the_plan_sees_synaptic_populations_as_settling() -> None:
    plan = Plan(chain([0.5, 0.0], [0.75, 2.0]))
    assert plan.synaptic == [False, True, False]
    assert plan.settling == [False, True, False]
    assert plan.any_synaptic


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_current_keeps_reaching_the_membrane(scheduler: str) -> None:
    # One input event at t = 0 of weight 0.75 (threshold 1, no leak). With alpha = 0.5
    # the membrane gets 0.75 at t0 and 0.375 more at t1 (1.125 > 1: a spike, reset to 0),
    # then 0.1875, 0.09375, ...: no second spike. Without alpha it never fires.
    x = np.zeros((1, 6, 1), dtype=np.float32)
    x[0, 0, 0] = 1.0
    res = infer_all(chain([0.5, 0.0], [0.75, 2.0]), x, scheduler=scheduler)
    assert res.timestep_output_counts[0, :, 0].tolist() == [0, 1, 0, 0, 0, 0]
    assert res.spikes[0].tolist() == [1, 1]
    # Population 1 settles at step 0 of every timestep (the input projects into it,
    # R4.7) and adds no forward step; the spike's delivery is t1's second (R7.5).
    assert res.timestep_forward_steps[0].tolist() == [1, 2, 1, 1, 1, 1]
    plain = infer_all(chain([0.0, 0.0], [0.75, 2.0]), x, scheduler=scheduler)
    assert plain.spikes_total[0] == 0


def test_a_refractory_neuron_still_charges_its_synapses() -> None:
    # input -> 1 (weight 2) -> 2 (weight 0.5) -> output, and a skip input -> 2 (weight 1).
    # Population 2 (alpha 0.5, beta 0, threshold 0.5) settles at step 0 with S = V = 1:
    # it fires and is refractory. At step 1 population 1's spike brings 0.5: the membrane
    # discards it, but S = 1.5 (R4.12). At t1 (no input) the settle-only step gives
    # S = 0.75 > 0.5: a second spike; without the refractory charge S would be 0.5 (quiet).
    pops = [
        Population.create((1,), 1.0, 1.0, location="population 1"),
        Population.create((1,), 0.5, 0.0, alpha=0.5, location="population 2"),
        Population.create((1,), 0.5, 1.0, location="population 3"),
    ]
    projs = [
        Projection(0, 1, Dense(np.full((1, 1), 2.0, dtype=np.float32))),
        Projection(1, 2, Dense(np.full((1, 1), 0.5, dtype=np.float32))),
        Projection(2, 3, Dense(np.full((1, 1), 1.0, dtype=np.float32))),
        Projection(0, 2, Dense(np.full((1, 1), 1.0, dtype=np.float32))),
    ]
    net = Network((1,), pops, projs)
    x = np.zeros((1, 3, 1), dtype=np.float32)
    x[0, 0, 0] = 1.0
    for scheduler in ("fifo", "momentum"):
        res = infer_all(net, x, scheduler=scheduler, forward_group_size=8)
        assert_results_equal(res, asyncsnn.reference.infer(net, x, scheduler=scheduler, forward_group_size=8))
        assert res.spikes[0].tolist() == [1, 2, 2]
        assert res.timestep_output_counts[0, :, 0].tolist() == [1, 1, 0]


# ------------------------------------------------------------------------- layered: snnTorch's Synaptic
def synaptic_problem(seed: int, reset: str, recurrent: bool) -> tuple[Network, torch.Tensor, torch.Tensor]:
    """A dense 10-12-9-4 network with biases, alphas (per neuron in population 1, one
    value in 2, none in the output) and, when ``recurrent``, a self-recurrent population
    1 and a backward projection 2 -> 1 (snnTorch's ``RSynaptic``)."""
    rng = np.random.default_rng(seed)
    sizes = [10, 12, 9, 4]
    layers = [Dense(grid_weights(rng, (b, a), 0.5, 0.15)) for a, b in itertools.pairwise(sizes)]
    bias = [(rng.integers(-64, 65, n) / 256).astype(np.float32) for n in sizes[1:]]
    alpha = [(rng.integers(0, 8, 12) / 8).astype(np.float32), 0.75, 0.0]
    rec = []
    if recurrent:
        rec = [(s, d, Dense(grid_weights(rng, (sizes[d], sizes[s]), 0.4, 0.1))) for s, d in ((1, 1), (2, 1))]
    net = Network.sequential(
        input_shape=(10,),
        layers=layers,
        threshold=0.75,
        beta=0.875,
        bias=bias,
        reset=[reset, "subtract", reset],
        alpha=alpha,
        recurrent=rec,
    )
    x = torch.from_numpy(random_count_input(rng, net, 5, 8, density=0.25))
    return net, x, torch.from_numpy(rng.integers(0, 4, 5))


@pytest.mark.parametrize(("reset", "recurrent"), [(r, rec) for r in RESET_MODES for rec in (False, True)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_layered_training_is_the_bptt_of_snntorch_synaptic(reset: str, recurrent: bool, backend: str) -> None:
    net, x, y = synaptic_problem(5, reset, recurrent)
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
    np.testing.assert_array_equal(
        asyncsnn.reference.infer(net, x.numpy(), scheduler="layered").timestep_output_counts, counts.detach().numpy()
    )
    # The synaptic current matters: without it the network computes something else.
    plain = Network(
        net.input_shape,
        [dataclasses.replace(p, alpha=np.zeros(p.shape, np.float32)) for p in net.populations],
        net.projections,
    )
    assert not np.array_equal(
        at.infer(plain, x.numpy(), scheduler="layered").timestep_output_counts, counts.detach().numpy()
    )
    params = [*model.weights, *model.biases.values()]
    g_engine = torch.autograd.grad(rate_loss(out.counts, y), params)
    g_formula = torch.autograd.grad(rate_loss(counts, y), [*ws, *bs])
    for a, b in zip(g_engine, g_formula):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(float(g.abs().sum()) > 0 for g in g_engine)  # every weight and bias learns


@pytest.mark.parametrize("scheduler", ["fifo", "random", "momentum"])
def test_a_wide_group_gives_the_bptt_gradients_under_every_unlayered_scheduler(scheduler: str) -> None:
    # Without skip or recurrent projections, a forward group as wide as a population
    # delivers each population's spikes at once, as layered does: the values and the
    # gradients are those of the Synaptic BPTT (section 9), S included.
    net, x, y = synaptic_problem(5, "subtract_delayed", False)
    model = AsyncSNN(net)
    opts = prepare_given_options(net, scheduler=scheduler, forward_group_size=1000, seed=2)
    out = run(model.plan, model.projection_weights(), x, opts, surrogate=ATan(), bias=model.bias_vector())
    ws = [torch.tensor(np.asarray(pr.layer.weight), requires_grad=True) for pr in net.projections]
    bs = [torch.tensor(np.asarray(p.bias).reshape(-1), requires_grad=True) for p in net.populations]
    counts = layered_bptt(net, ws, bs, x)
    assert torch.equal(out.counts, counts)
    g_engine = torch.autograd.grad(rate_loss(out.counts, y), [*model.weights, *model.biases.values()])
    g_formula = torch.autograd.grad(rate_loss(counts, y), [*ws, *bs])
    for a, b in zip(g_engine, g_formula):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_every_step_terms_keep_the_forward_and_equal_fired_terms_under_layered() -> None:
    # Under layered each population integrates once per timestep: "every_step" adds no term.
    net, x, y = synaptic_problem(2, "zero", True)
    grads, counts = [], []
    for terms in ("fired", "every_step"):
        model = AsyncSNN(net)
        opts = prepare_given_options(net, scheduler="layered", forward_group_size=8)
        out = run(model.plan, model.projection_weights(), x, opts, surrogate=ATan(), surrogate_terms=terms)
        counts.append(out.counts.detach())
        grads.append(torch.autograd.grad(rate_loss(out.counts, y), list(model.weights)))
    assert torch.equal(counts[0], counts[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- engine equality
def synaptic_network(rng: np.random.Generator, net: Network, recurrent: bool) -> Network:
    """``net`` with random alphas (multiples of 1/8: none, one per population or per
    neuron; at least one population has some), grid biases, reset modes and, when ``recurrent``, one or two recurrent Dense
    projections (self, lateral or backward).

    Refractory dropout is kept where R4.6 allows it (reset ``"zero"``, no recurrent target).
    """
    projs = list(net.projections)
    shapes = net.population_shapes
    n_pop = len(net.populations)
    for _ in range(int(rng.integers(1, 3)) if recurrent else 0):
        d = int(rng.integers(1, n_pop + 1))
        s = int(rng.integers(d, n_pop + 1))
        w = grid_weights(rng, (int(np.prod(shapes[d])), int(np.prod(shapes[s]))), 0.4, 0.05)
        projs.append(Projection(s, d, Dense(w)))
    targets = {p.target for p in projs if p.recurrent}
    pops = []
    for i, p in enumerate(net.populations, 1):
        kind = int(rng.integers(0, 4))
        if kind == 0:
            alpha = np.zeros(p.shape, dtype=np.float32)
        elif kind == 1:
            alpha = np.full(p.shape, rng.integers(1, 9) / 8, dtype=np.float32)
        else:
            alpha = (rng.integers(0, 9, p.shape) / 8).astype(np.float32)
        bias = (rng.integers(-48, 49, p.shape) / 256).astype(np.float32) if rng.integers(0, 2) else p.bias
        mode = RESET_MODES[int(rng.integers(0, len(RESET_MODES)))]
        drop = p.refractory_dropout if mode == "zero" and i not in targets else 0.0
        pops.append(dataclasses.replace(p, alpha=alpha, bias=bias, reset=mode, refractory_dropout=drop))
    if not any(p.synaptic for p in pops):  # at least one population has a synaptic current
        pops[0] = dataclasses.replace(pops[0], alpha=np.full(pops[0].shape, 0.5, dtype=np.float32))
    return Network(net.input_shape, pops, projs)


def random_case(seed: int) -> tuple[Network, np.ndarray, dict[str, Any], np.ndarray]:
    """A random synaptic grid network (every fourth with recurrence), count input,
    labels and run options, with early stops and, for some, 16 to 30 samples (rows
    whose timestep has ended are set aside while others still settle)."""
    rng = np.random.default_rng(2000 + seed)
    kind = ["dense", "conv", "skip", "conv_wide"][seed % 4]
    net = synaptic_network(rng, random_grid_network(rng, kind), recurrent=seed % 3 == 2)  # type: ignore[arg-type]
    batch = int(rng.integers(16, 30)) if seed % 5 == 4 else int(rng.integers(1, 5))
    x = random_count_input(rng, net, batch, int(rng.integers(1, 6)), density=float(rng.choice([0.0, 0.3, 1.0])))
    scheduler = SCHEDULERS[seed % 7 % 4]
    stop = str(rng.choice(["drain", "first_output", "max_steps"]))
    opts = random_run_options(rng, scheduler, stop, [1, 2, 3, 1000])
    return net, x, opts, rng.integers(0, net.n_outputs, batch)


@pytest.mark.parametrize("seed", range(48))
def test_both_backends_equal_the_reference(seed: int) -> None:
    net, x, opts, labels = random_case(seed)
    assert any(p.synaptic for p in net.populations)
    expected = asyncsnn.reference.infer(net, x, labels=labels, **opts)
    assert_results_equal(infer_all(net, x, labels=labels, **opts), expected)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("reset", RESET_MODES)
def test_every_scheduler_and_reset_equals_the_reference(scheduler: str, reset: str) -> None:
    rng = np.random.default_rng(SCHEDULERS.index(scheduler) * 10 + RESET_MODES.index(reset))
    for kind, recurrent in (("dense", False), ("conv", False), ("skip", False), ("skip", True)):
        net = synaptic_network(rng, random_grid_network(rng, kind), recurrent)  # type: ignore[arg-type]
        pops = [
            dataclasses.replace(p, reset=reset, refractory_dropout=0.0, alpha=np.full(p.shape, 0.625, np.float32))
            for p in net.populations
        ]
        net = Network(net.input_shape, pops, net.projections)
        x = random_count_input(rng, net, batch=4, timesteps=5, density=0.4)
        for f in (1, 3):
            kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": f, "seed": 11}
            assert_results_equal(infer_all(net, x, **kw), asyncsnn.reference.infer(net, x, **kw))


@pytest.mark.parametrize("seed", range(16))
def test_grad_mode_forward_equals_inference(seed: int) -> None:
    net, x, opts, labels = random_case(seed)
    opts = {**opts, "refractory_dropout": "off"}
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
    res = at.infer(net, x, labels=labels, backend=backend, **opts)
    assert_results_equal(res, asyncsnn.reference.infer(net, x, labels=labels, **opts))
    assert_grad_run_matches(out, res, labels, model)


def test_an_overflowing_synaptic_current_raises_also_when_refractory() -> None:
    # Population 2 fires at step 0 on 3e38 from the input (skip), then at step 1, while
    # refractory, its synapses take 3e38 more from population 1: S = inf (R8.3), though
    # its membrane discards the current.
    big = 3.0e38
    pops = [
        Population.create((1,), 1.0, 1.0, location="population 1"),
        Population.create((1,), 1.0, 1.0, alpha=0.5, location="population 2"),
        Population.create((1,), 1.0, 1.0, location="population 3"),
    ]
    projs = [
        Projection(0, 1, Dense(np.full((1, 1), 2.0, dtype=np.float32))),
        Projection(1, 2, Dense(np.full((1, 1), big, dtype=np.float32))),
        Projection(2, 3, Dense(np.full((1, 1), 2.0, dtype=np.float32))),
        Projection(0, 2, Dense(np.full((1, 1), big, dtype=np.float32))),
    ]
    net = Network((1,), pops, projs)
    x = np.zeros((2, 2, 1), dtype=np.float32)
    x[1, 0, 0] = 1.0  # the second sample fails
    message = "sample 1, timestep 0, forward step 1, population 2, neuron 0: membrane overflows"
    with pytest.raises(asyncsnn.EngineError, match=message):
        asyncsnn.reference.infer(net, x, scheduler="fifo")
    for backend in BACKENDS:
        with pytest.raises(asyncsnn.EngineError, match=message) as err:
            at.infer(net, x, scheduler="fifo", backend=backend)
        assert err.value.field == "membrane"
    # In grad mode too.
    model = AsyncSNN(net)
    with pytest.raises(asyncsnn.EngineError, match=message):
        model(torch.from_numpy(x), scheduler="fifo")
    # Without the synaptic current nothing overflows: the refractory membrane discards it.
    plain = Network((1,), [dataclasses.replace(p, alpha=np.zeros(1, np.float32)) for p in pops], projs)
    assert at.infer(plain, x, scheduler="fifo").spikes[1].tolist() == [1, 1, 1]


def test_backends_give_the_same_gradients_under_every_unlayered_scheduler() -> None:
    net, x, y = synaptic_problem(3, "subtract", True)
    for scheduler in ("fifo", "random", "momentum"):
        grads = backend_gradients(net, x, y, scheduler, BACKENDS)
        assert all(float(g.abs().sum()) > 0 for g in grads[0])


# ------------------------------------------------------------------------- the module and training
def test_from_sizes_alpha_builds_synaptic_populations() -> None:
    plain = AsyncSNN.from_sizes([6, 5, 4, 3], seed=7).network
    cuba = AsyncSNN.from_sizes([6, 5, 4, 3], seed=7, alpha=[0.5, 0.75, 0.0])
    net = cuba.network
    assert [p.synaptic for p in net.populations] == [True, True, False]
    assert net.settling == (True, True, False)
    assert net.spec_version == 2
    assert cuba.plan.synaptic == [False, True, True, False]
    assert len(cuba.biases) == 0  # alpha is a constant, not a parameter
    for a, b in zip(plain.projections, net.projections, strict=True):  # the same weights
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)
    assert [float(p.alpha.flat[0]) for p in cuba.to_network().populations] == [0.5, 0.75, 0.0]
    with pytest.raises(asyncsnn.ModelError, match="alpha"):
        AsyncSNN.from_sizes([6, 5, 3], alpha=1.5)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_training_lowers_the_loss_and_keeps_alpha(scheduler: str, tmp_path: Any) -> None:
    rng = np.random.default_rng(0)
    protos = rng.random((3, 12)) < 0.35
    y = rng.integers(0, 3, 64)
    x = (rng.random((64, 4, 12)) < np.where(protos[y], 0.8, 0.05)[:, None, :]).astype(np.float32)
    model = AsyncSNN.from_sizes([12, 16, 3], alpha=0.5, bias=[0.0, 0.0625], reset="subtract", seed=1)
    before = [w.detach().clone() for w in model.weights]
    net, hist = train(
        model, (x, y), scheduler=scheduler, forward_group_size=2, epochs=3, lr=1e-2, batch_size=32, progress=False
    )
    assert hist.loss[-1] < hist.loss[0]
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, model.weights))
    assert all(np.all(p.alpha == np.float32(0.5)) for p in net.populations)
    path = tmp_path / "cuba.safetensors"
    asyncsnn.save(net, path)
    loaded = asyncsnn.load(path)
    assert [p.alpha.tolist() for p in loaded.populations] == [p.alpha.tolist() for p in net.populations]
    # The loaded network computes what the trained one does (its weights are off the
    # R8.2 grid, so it is compared with itself, not with another engine).
    kw: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": 2, "seed": 0}
    assert_results_equal(at.infer(loaded, x[:8], **kw), at.infer(net, x[:8], **kw))


@pytest.mark.parametrize("seed", range(0, 48, 3))
def test_the_rust_engine_equals_the_torch_engine(seed: int) -> None:
    # asyncsnn.infer (the Rust engine) on the random synaptic cases. Until the Rust
    # engine runs synaptic currents (R4.12) it refuses them with a ModelError, and this
    # test fails: it is meant to pass once both engines implement R4.12.
    net, x, opts, labels = random_case(seed)
    assert_results_equal(asyncsnn.infer(net, x, labels=labels, **opts), at.infer(net, x, labels=labels, **opts))


@pytest.mark.parametrize(("backend", "taped"), [("host", False), ("torch", False), ("host", True)])
def test_a_batch_gradient_is_the_sum_of_its_samples_gradients(
    backend: str, taped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows do not interact, also when a finished row runs on in lock step with the batch.

    A synaptic population fed back from the output (R4.9, R4.12): the silent spikes of
    one emission charge the synaptic currents before any of them is taken, so a row
    whose timestep ended must take its silent spikes at the end, as it does alone (it
    took some at a later step while the rest of a small batch ran on)."""
    rng = np.random.default_rng(0)
    net = grid_chain(rng, [4, 5, 4, 3], 0.8, 0.2)
    pops = list(net.populations)
    pops[1] = dataclasses.replace(pops[1], alpha=np.float32(0.5))
    back = Projection(3, 2, Dense(grid_weights(rng, (4, 3), 0.8, 0.1)))
    net = Network(net.input_shape, pops, [*net.projections, back])
    x = (rng.random((4, 2, 4)) < 0.6).astype(np.float32) * 2
    monkeypatch.setattr(tape, "ENABLED", taped)  # the step-by-step engine, or the taped path
    for opts in ({"scheduler": "fifo", "forward_group_size": 1}, {"scheduler": "random", "seed": 0}):
        batch, alone = batch_and_alone(net, x, opts, backend)
        for a, b in zip(batch, alone):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert any(bool(a.abs().sum() > 0) for a in batch)

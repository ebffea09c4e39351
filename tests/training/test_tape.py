"""The taped fast path of unlayered training (``asyncsnn.torch.engine.tape``).

A differentiable host-backend run of an unlayered scheduler on a network in the path's
scope is the Rust engine's run with a tape, and one autograd node whose backward pass
walks the tape in Rust. It must give the step-by-step engine's counters and output
counts exactly and its gradients up to the float32 summation order, on every
scheduler, on mixed-activity batches (samples that end a timestep after a few forward
steps next to ones that run many), with F = 1, skip projections, per-neuron
thresholds and leaks, convolutions and pooling, biases and every reset mode (settling
populations, settle-only steps, debts), early stops, every dropout, non-prioritised
input and both surrogate terms; anything outside the scope must run the step-by-step
engine.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from _strategies import grid_chain, mixed_count_input, wide_dense_network
from asyncsnn._prepare import prepare_given_options
from asyncsnn.exceptions import EngineError
from asyncsnn.network import RESET_MODES, Dense, Network, Projection
from asyncsnn.testing import grid_weights, random_grid_network
from asyncsnn.torch import AsyncSNN, ATan, FastSigmoid, rate_loss
from asyncsnn.torch.engine import run, tape
from asyncsnn.torch.surrogate import Surrogate

UNLAYERED = ["fifo", "random", "momentum"]


@contextmanager
def taped(enabled: bool) -> Iterator[list[int]]:
    """Switch the taped path on or off; yields a list that counts the runs it took."""
    calls: list[int] = []
    was_enabled, was_run = tape.ENABLED, tape.run_taped

    def counting(*args: Any, **kw: Any) -> Any:
        out = was_run(*args, **kw)
        if out is not None:  # a run in the path's scope, taken
            calls.append(1)
        return out

    tape.ENABLED = enabled
    import asyncsnn.torch.engine.driver as driver

    driver_run = driver.run_taped
    driver.run_taped = counting  # type: ignore[assignment]
    try:
        yield calls
    finally:
        tape.ENABLED = was_enabled
        driver.run_taped = driver_run  # type: ignore[assignment]


def _run(
    net: Network,
    x: np.ndarray,
    opts: dict[str, Any],
    labels: np.ndarray | None,
    surrogate: Surrogate,
    g_seed: int,
    terms: str = "fired",
    zero_biases: bool = False,
) -> tuple[Any, list[torch.Tensor]]:
    """The run's output and the gradients of a random linear function of its counts.

    Weights and biases (R1.4) are the parameters. ``zero_biases``: every population has
    a trainable bias (``train_zero_biases``), drawn non-zero as after a training step.
    """
    model = AsyncSNN(net, train_zero_biases=zero_biases)
    if zero_biases:
        rng = np.random.default_rng(g_seed)
        with torch.no_grad():
            for b in model.biases.values():
                b.copy_(torch.from_numpy(rng.normal(0.0, 0.2, tuple(b.shape)).astype(np.float32)))
    prepared = prepare_given_options(net, **opts)
    frames = torch.from_numpy(x.reshape(x.shape[0], x.shape[1], -1))
    lab = None if labels is None else torch.from_numpy(labels)
    out = run(
        model.plan,
        model.projection_weights(),
        frames,
        prepared,
        labels=lab,
        surrogate=surrogate,
        surrogate_terms=terms,
        bias=model.bias_vector(),
    )
    g = torch.from_numpy(np.random.default_rng(g_seed).normal(size=tuple(out.counts.shape)).astype(np.float32))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out.counts * g).sum(), params, allow_unused=True)
    return out, [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]


def _compare(case: dict[str, Any], surrogate: Surrogate) -> list[torch.Tensor]:
    """The taped run against the step-by-step engine: counters, counts and gradients (returned)."""
    terms = case.get("terms", "fired")
    args = (case["net"], case["x"], case["opts"], case["labels"], surrogate, case["g_seed"], terms)
    args += (case.get("zero_biases", False),)
    with taped(False) as off:
        ref, ref_grads = _run(*args)
    with taped(True) as on:
        out, grads = _run(*args)
    assert not off
    assert on, "the case is in the taped path's scope"
    assert ref.counters.keys() == out.counters.keys()
    for name, value in ref.counters.items():
        assert torch.equal(value, out.counters[name]), name
    assert torch.equal(ref.counts.detach(), out.counts.detach())
    for a, b in zip(ref_grads, grads):
        scale = max(1.0, float(a.abs().max()))
        torch.testing.assert_close(b, a, rtol=2e-4, atol=2e-5 * scale)
    return grads


@st.composite
def taped_cases(draw: Any) -> dict[str, Any]:
    """Grid networks (wide dense, skip, conv and pool), mixed-activity batches, any options.

    Every stop mode (R6), refractory, input and spike dropout (R4.6, R4.10, R4.11) and
    non-prioritised input (R4.13) are drawn.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["wide", "dense", "skip", "conv", "conv_wide"]))
    net = wide_dense_network(rng) if kind == "wide" else random_grid_network(rng, kind)
    batch = draw(st.one_of(st.integers(1, 12), st.integers(12, 40)))
    timesteps = draw(st.integers(1, 4))
    if draw(st.booleans()):
        density = rng.uniform(0.02, 0.6, batch)
    else:
        density = rng.choice([0.0, 0.02, 0.1, 0.3, 0.6, 1.0], batch)
    scheduler = draw(st.sampled_from(UNLAYERED))
    stop = draw(st.sampled_from(["drain", "drain", "first_output", "max_steps"]))
    max_steps = draw(st.integers(1, 40)) if stop == "max_steps" or draw(st.integers(0, 4)) == 0 else None
    opts = {
        "scheduler": scheduler,
        "forward_group_size": draw(st.sampled_from([1, 1, 2, 3, 8, 1000])),
        "stop": stop,
        "extra_steps": draw(st.integers(0, 3)),
        "max_steps": max_steps,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "jitter": draw(st.sampled_from([0.0, 0.25, 1.0])) if scheduler == "momentum" else 0.0,
        "input_dropout": draw(st.sampled_from([0.0, 0.0, 0.3])),  # R4.10
        "spike_dropout": draw(st.sampled_from([0.0, 0.0, 0.4])),  # R4.11
        "refractory_dropout": draw(st.sampled_from(["off", "off", "network", 0.5])),  # R4.6
        # R4.13 in a quarter of the runs that can take it (momentum refuses it).
        "prioritize_input": scheduler == "momentum" or draw(st.sampled_from([True, True, True, False])),
    }
    labels = rng.integers(0, net.n_outputs, batch) if draw(st.booleans()) else None
    x = mixed_count_input(rng, net, density, timesteps)
    terms = draw(st.sampled_from(["fired", "fired", "every_step"]))
    kinds = ["none", "none", "bias", "reset", "both", "zero_biases", "recurrent", "synaptic"]
    settling = draw(st.sampled_from(kinds))
    if settling in ("reset", "both", "recurrent", "synaptic"):
        opts["refractory_dropout"] = "off"  # R4.6: only with the reset "zero", not on recurrent targets
    net = _recurrent(net, rng) if settling == "recurrent" else _settling(net, settling, rng)
    case = {"net": net, "x": x, "opts": opts, "labels": labels, "g_seed": seed, "terms": terms}
    return case | {"zero_biases": settling == "zero_biases", "settling": settling}


def _recurrent(net: Network, rng: np.random.Generator, base: str | None = None) -> Network:
    """``net`` with recurrent Dense projections (R1.2, R4.9): self-recurrence of some
    populations (the output's too, now and then), a backward projection, biases and
    reset modes (and with ``base="synaptic"`` synaptic currents) drawn as in
    :func:`_settling`."""
    base = str(rng.choice(["both", "synaptic"])) if base is None else base
    pops = list(_settling(net, base, rng).populations)
    n_pop = len(pops)
    pairs = [(p, p) for p in range(1, n_pop + 1) if rng.random() < 0.5]
    if n_pop > 1 and rng.random() < 0.5:
        s = int(rng.integers(2, n_pop + 1))
        pairs.append((s, int(rng.integers(1, s))))
    pairs = pairs or [(1, 1)]
    extra = []
    for s, d in pairs:
        shape = (pops[d - 1].size, pops[s - 1].size)
        extra.append(Projection(s, d, Dense(grid_weights(rng, shape, 0.4, 0.05))))
        pops[d - 1] = dataclasses.replace(pops[d - 1], refractory_dropout=0.0)
    return Network(net.input_shape, pops, [*net.projections, *extra])


def _settling(net: Network, kind: str, rng: np.random.Generator) -> Network:
    """``net`` with settling populations (R1.6): biases (scalar or per neuron, some
    populations without), reset modes (R4.8), or both; ``"synaptic"``: both and
    synaptic currents (R4.12) in some populations; ``"none"`` and ``"zero_biases"``
    (trainable zero biases, set by :func:`_run`) leave it as it is."""
    if kind in ("none", "zero_biases"):
        return net
    pops = []
    for pop in net.populations:
        th = float(np.mean(pop.threshold))
        changes: dict[str, Any] = {}
        if kind in ("bias", "both", "synaptic") and rng.random() < 0.75:
            shape = () if rng.random() < 0.3 else pop.shape
            changes["bias"] = grid_weights(rng, shape, 0.35 * th, 0.1 * th)
        if kind in ("reset", "both", "synaptic"):
            changes["reset"] = str(rng.choice(RESET_MODES))
            changes["refractory_dropout"] = 0.0
        if kind == "synaptic" and rng.random() < 0.7:
            shape = () if rng.random() < 0.5 else pop.shape
            changes["alpha"] = rng.choice(np.array([0.0, 0.25, 0.5, 0.875, 1.0], dtype=np.float32), shape)
        pops.append(dataclasses.replace(pop, **changes))
    return Network(net.input_shape, pops, net.projections)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=taped_cases())
def test_taped_runs_equal_the_step_by_step_engine(case: dict[str, Any]) -> None:
    _compare(case, ATan())
    opts = case["opts"]
    for name in ("input_dropout", "spike_dropout"):
        if opts.get(name):
            event(name)
    if opts.get("refractory_dropout") != "off":
        event("refractory_dropout")
    if not opts.get("prioritize_input", True):
        event("non-prioritised input")
    if opts.get("stop") != "drain" or opts.get("max_steps") is not None:
        event("early stop")
    event(f"surrogate_terms={case['terms']}")
    event(f"settling={case['settling']}")


@pytest.mark.parametrize("terms", ["fired", "every_step"])
@pytest.mark.parametrize("surrogate", [ATan(alpha=3.0, scale=0.7), FastSigmoid(), FastSigmoid(slope=5.0)])
@pytest.mark.parametrize("scheduler", UNLAYERED)
def test_taped_gradients_with_every_built_in_surrogate(surrogate: Surrogate, scheduler: str, terms: str) -> None:
    rng = np.random.default_rng(5)
    net = wide_dense_network(rng)
    x = mixed_count_input(rng, net, rng.uniform(0.05, 0.5, 10), 3)
    opts = {"scheduler": scheduler, "forward_group_size": 2, "seed": 7}
    _compare({"net": net, "x": x, "opts": opts, "labels": None, "g_seed": 1, "terms": terms}, surrogate)


def _skip_net(rng: np.random.Generator) -> Network:
    """16 -> 24 -> 12 -> 4 with a skip projection from the input into the second population."""
    net = grid_chain(rng, [16, 24, 12, 4], 0.6, 0.15, beta=0.875)
    skip = Projection(0, 2, Dense(grid_weights(rng, (12, 16), 0.5, 0.1)))
    return Network(net.input_shape, net.populations, [*net.projections, skip])


def test_taped_gradients_through_a_skip_projection_and_a_long_run() -> None:
    rng = np.random.default_rng(11)
    net = _skip_net(rng)
    x = mixed_count_input(rng, net, np.array([0.0, 0.05, 0.3, 0.9, 0.5, 0.2]), 6)
    for scheduler, terms in itertools.product(UNLAYERED, ["fired", "every_step"]):
        opts = {"scheduler": scheduler, "forward_group_size": 1, "seed": 3}
        case = {"net": net, "x": x, "opts": opts, "labels": np.arange(6) % 4, "g_seed": 2, "terms": terms}
        _compare(case, ATan())


@pytest.mark.parametrize("reset", RESET_MODES)
def test_taped_gradients_of_settling_populations(reset: str) -> None:
    """Biases and each reset mode (R4.7, R4.8) on a skip network, F = 1 and F = 3.

    Samples without input settle in settle-only steps; the bias gradients are compared
    and must not vanish.
    """
    rng = np.random.default_rng(13)
    net = _skip_net(rng)
    pops = [
        dataclasses.replace(p, bias=rng.normal(0.05, 0.3, p.shape).astype(np.float32), reset=reset)
        for p in net.populations
    ]
    net = Network(net.input_shape, pops, net.projections)
    x = mixed_count_input(rng, net, np.array([0.0, 0.05, 0.3, 0.9, 0.5, 0.2]), 6)
    for scheduler, terms, f in itertools.product(UNLAYERED, ["fired", "every_step"], [1, 3]):
        opts = {"scheduler": scheduler, "forward_group_size": f, "seed": 3}
        case = {"net": net, "x": x, "opts": opts, "labels": np.arange(6) % 4, "g_seed": 2, "terms": terms}
        grads = _compare(case, ATan())
        n_proj = len(net.projections)
        assert len(grads) == n_proj + 3  # the weights, then one bias per population
        assert all(bool(g.abs().sum() > 0) for g in grads[n_proj:]), (scheduler, terms, f)


def test_taped_gradients_of_recurrent_networks() -> None:
    """Recurrent projections (R4.9): self-recurrence of a hidden population and of the
    output, a backward projection from the output into the first population, on a skip
    network with biases; the silent spikes wait for every population that a pending or
    due one can still reach (section 9)."""
    rng = np.random.default_rng(17)
    net = _skip_net(rng)
    sizes = [p.size for p in net.populations]
    extra = [
        Projection(s, d, Dense(grid_weights(rng, (sizes[d - 1], sizes[s - 1]), 0.4, 0.05)))
        for s, d in [(2, 2), (3, 3), (3, 1)]
    ]
    pops = [dataclasses.replace(p, bias=grid_weights(rng, (), 0.1, 0.05)) for p in net.populations]
    net = Network(net.input_shape, pops, [*net.projections, *extra])
    x = mixed_count_input(rng, net, np.array([0.0, 0.05, 0.3, 0.9, 0.5, 0.2]), 5)
    for scheduler, terms, f in itertools.product(UNLAYERED, ["fired", "every_step"], [1, 3]):
        opts = {"scheduler": scheduler, "forward_group_size": f, "seed": 5}
        case = {"net": net, "x": x, "opts": opts, "labels": np.arange(6) % 4, "g_seed": 4, "terms": terms}
        grads = _compare(case, ATan())
        assert all(bool(g.abs().sum() > 0) for g in grads[4:7]), (scheduler, terms, f)  # the recurrent weights


def test_taped_gradients_of_synaptic_currents() -> None:
    """Synaptic currents (R4.12) that carry current across timesteps and charge while
    refractory, with biases, a reset of each kind and a self-recurrent synaptic
    population: the silent currents into a synaptic population wait for its settle."""
    rng = np.random.default_rng(23)
    net = _skip_net(rng)
    alphas = [rng.choice(np.array([0.0, 0.5, 0.875], dtype=np.float32), (24,)), np.float32(0.75), np.float32(0.25)]
    resets = ["subtract", "zero", "subtract_delayed"]
    pops = [
        dataclasses.replace(p, alpha=a, reset=r, bias=grid_weights(rng, (), 0.1, 0.02))
        for p, a, r in zip(net.populations, alphas, resets)
    ]
    rec = Projection(2, 2, Dense(grid_weights(rng, (12, 12), 0.3, 0.0)))
    net = Network(net.input_shape, pops, [*net.projections, rec])
    x = mixed_count_input(rng, net, np.array([0.0, 0.05, 0.3, 0.9, 0.5, 0.2]), 5)
    for scheduler, terms, f in itertools.product(UNLAYERED, ["fired", "every_step"], [1, 3]):
        opts = {"scheduler": scheduler, "forward_group_size": f, "seed": 9}
        case = {"net": net, "x": x, "opts": opts, "labels": np.arange(6) % 4, "g_seed": 6, "terms": terms}
        grads = _compare(case, ATan())
        assert all(bool(g.abs().sum() > 0) for g in grads), (scheduler, terms, f)


@pytest.mark.parametrize("kind", ["dense", "synaptic_recurrent"])
def test_taped_gradients_do_not_depend_on_the_thread_count(kind: str) -> None:
    """Bit-equal with 1 and 2 threads; also with biases, resets, synaptic currents and
    recurrence (the biases' buffer is summed in chunks like the weights')."""
    rng = np.random.default_rng(2 if kind == "dense" else 4)
    net = wide_dense_network(rng)
    opts: dict[str, Any] = {"scheduler": "random", "seed": 1}
    if kind != "dense":
        net = _recurrent(net, rng, "synaptic")
        opts["refractory_dropout"] = "off"  # R4.6: refused on recurrent targets
        assert any(p.synaptic for p in net.populations)
    x = mixed_count_input(rng, net, rng.uniform(0.05, 0.5, 40), 3)
    grads = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with taped(True) as on:
                grads.append(_run(net, x, opts, None, ATan(), 0, "every_step")[1])
            assert on
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    assert any(bool(g.abs().sum() > 0) for g in grads[0])


# Each case leaves the path's scope once: it must run the step-by-step engine.
OUT_OF_SCOPE: dict[str, tuple[dict[str, Any], str]] = {
    "layered": ({"scheduler": "layered"}, "dense"),
    "torch_backend": ({}, "torch"),
    "zero_biases": ({}, "zero_biases"),
    "custom_surrogate": ({"surrogate": "custom"}, "dense"),
}


class _Custom(ATan):
    """A surrogate whose derivative has no Rust kernel."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return ATan.derivative(self, x)


@pytest.mark.parametrize("name", sorted(OUT_OF_SCOPE))
def test_runs_outside_the_scope_take_the_step_by_step_engine(name: str) -> None:
    changes, kind = OUT_OF_SCOPE[name]
    rng = np.random.default_rng(4)
    # Trainable biases that are exactly 0, which the run settles (train_zero_biases)
    # and the engine would not (R1.6).
    lif = {"zero_biases": {"train_zero_biases": True}}.get(kind, {})
    model = AsyncSNN.from_sizes([10, 12, 4], seed=0, **lif)  # type: ignore[arg-type]
    x = torch.from_numpy((rng.random((3, 2, *model.network.input_shape)) < 0.5).astype(np.float32))
    kw: dict[str, Any] = {"scheduler": "random", "forward_group_size": 2, **changes}
    if kw.get("surrogate") == "custom":
        kw["surrogate"] = _Custom()
    with taped(True) as calls:
        if kind == "torch":
            prepared = prepare_given_options(model.network, scheduler="random", forward_group_size=2)
            frames = x.reshape(3, 2, -1)
            out = run(model.plan, model.projection_weights(), frames, prepared, backend="torch")
        else:
            out = model(x, **kw)
        rate_loss(out.counts, torch.zeros(3, dtype=torch.int64)).backward()
    assert not calls, name
    with taped(True) as calls:  # the same model and input in scope take the taped path
        model(x, scheduler="random", forward_group_size=2)
    assert bool(calls) == (kind in ("dense", "torch")), name


@pytest.mark.parametrize("case", ["overflow", "nan_weight", "nan_bias"])
def test_a_rejected_run_raises_the_step_by_step_engines_error(case: str) -> None:
    """R8.3: a run the engine rejects runs step by step, which raises its own error.

    A membrane overflow, and a NaN weight or bias (a diverged training step), which the
    engine network's validation would refuse with an error of its own.
    """
    model = AsyncSNN.from_sizes([4, 3, 2], seed=0, bias=0.0 if case == "overflow" else 0.1)
    with torch.no_grad():
        if case == "overflow":
            model.projection_weights()[0].fill_(3e38)
        else:
            (next(iter(model.biases.values())) if case == "nan_bias" else model.weights[0]).fill_(float("nan"))
    x = torch.ones(2, 2, 4)
    errors = []
    for enabled in (False, True):
        with taped(enabled), pytest.raises(EngineError) as info:
            model(x, scheduler="momentum" if case == "overflow" else "random")
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "sample" in errors[0]
    assert "overflow" in errors[0]


def test_training_takes_the_taped_path_and_learns() -> None:
    """A few epochs of unlayered training on the taped path lower the loss."""
    from asyncsnn.torch import train

    rng = np.random.default_rng(0)
    protos = rng.random((4, 1, 24)) < 0.4
    y = rng.integers(0, 4, 128)
    x = ((rng.random((128, 6, 24)) < 0.5) & protos[y]).astype(np.float32)
    model = AsyncSNN.from_sizes([24, 32, 4], threshold=1.0, beta=0.9, seed=0)
    with taped(True) as calls:
        _, hist = train(
            model, (x, y), scheduler="momentum", forward_group_size=4, epochs=4, batch_size=32, progress=False
        )
    assert calls
    losses = [float(v) for v in hist.loss]
    assert losses[-1] < losses[0]


def test_trainable_zero_biases_take_the_taped_path_once_they_are_not_zero() -> None:
    """``train_zero_biases``: the first batch settles populations whose biases are all 0,
    which the engine would not settle (R1.6), so it runs step by step; after one Adam
    step the biases are not 0 and every later batch takes the taped path and trains them."""
    from asyncsnn.torch import train

    rng = np.random.default_rng(1)
    protos = rng.random((4, 1, 24)) < 0.4
    y = rng.integers(0, 4, 128)
    x = ((rng.random((128, 6, 24)) < 0.5) & protos[y]).astype(np.float32)
    model = AsyncSNN.from_sizes([24, 32, 4], threshold=1.0, beta=0.9, seed=0, train_zero_biases=True)
    with taped(True) as calls:
        _, hist = train(
            model, (x, y), scheduler="random", forward_group_size=4, epochs=2, batch_size=32, progress=False
        )
    assert len(calls) == 2 * 4 - 1
    assert all(bool(b.detach().abs().sum() > 0) for b in model.biases.values())
    losses = [float(v) for v in hist.loss]
    assert losses[-1] < losses[0]

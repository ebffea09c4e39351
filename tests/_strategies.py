"""Hypothesis strategies shared by the differential tests of the engines."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import strategies as st

from asyncsnn.network import RESET_MODES, Conv2d, Dense, Layer, Network, Population, Projection
from asyncsnn.result import COUNTER_FIELDS, InferenceResult
from asyncsnn.testing import grid_weights, random_count_input, random_grid_network

SCHEDULERS = ["layered", "fifo", "random", "momentum"]

#: How a drawn network settles (R1.6): "v1" (no bias, reset "zero", no synaptic
#: current: half the draws), biases only, reset modes only, both, synaptic currents
#: only (R4.12), or all three.
SETTLING = ["v1", "v1", "v1", "v1", "v1", "bias", "reset", "both", "synaptic", "all"]

#: The scalar decays of the synaptic current drawn (R4.12): exact float32 products on
#: the weight grid for a few timesteps (R8.2).
ALPHAS = [0.25, 0.5, 0.75, 0.875]


def _draw_alpha(rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    """A scalar alpha from :data:`ALPHAS`, or one per neuron with some zeros (LIF neurons)."""
    if rng.random() < 0.5:
        return float(rng.choice(ALPHAS))
    return (rng.choice(ALPHAS, shape) * (rng.random(shape) < 0.7)).astype(np.float32)


def with_settling(rng: np.random.Generator, net: Network, how: str) -> Network:
    """``net`` with grid biases, reset modes and/or synaptic currents on some of its populations.

    ``how`` is one of :data:`SETTLING`. Biases (R1.4) are multiples of 1/256
    (R8.2: exact sums), scalar or per neuron (some neurons 0), on each population with
    probability 2/3; reset modes are drawn per population among all four of R4.8; a
    synaptic current (R4.12, ``"synaptic"`` and ``"all"``) goes on each population with
    probability 2/3, alpha scalar or per neuron (some 0). A population with a reset other
    than ``"zero"`` gets no refractory dropout (R4.6); the others keep theirs.
    """
    if how == "v1":
        return net
    pops = []
    for p in net.populations:
        bias: Any = 0.0
        if how in ("bias", "both", "all") and rng.random() < 2 / 3:
            if rng.random() < 0.5:
                bias = float(rng.integers(-48, 97)) / 256
            else:
                bias = (rng.integers(-48, 97, p.shape) * (rng.random(p.shape) < 0.7) / 256).astype(np.float32)
        reset = str(rng.choice(RESET_MODES)) if how in ("reset", "both", "all") else "zero"
        alpha: Any = 0.0
        if how in ("synaptic", "all") and rng.random() < 2 / 3:
            alpha = _draw_alpha(rng, p.shape)
        dropout = p.refractory_dropout if reset == "zero" else 0.0
        pops.append(Population.create(p.shape, p.threshold, p.beta, dropout, bias=bias, reset=reset, alpha=alpha))
    return Network(net.input_shape, pops, net.projections)


#: Which recurrent projections a drawn network gets (R1.2, R4.9): none (half the draws),
#: a population to itself, lateral inhibition within a population, a backward
#: projection, or all three.
RECURRENCE = ["none", "none", "none", "self", "lateral", "backward", "all"]


def _recurrent_layer(rng: np.random.Generator, net: Network, source: int, target: int, how: str) -> Layer:
    shapes = net.population_shapes
    n_s, n_t = int(np.prod(shapes[source])), int(np.prod(shapes[target]))
    if how == "lateral":  # inhibition of the other neurons of the population, none of itself
        w = -np.abs(grid_weights(rng, (n_t, n_s), 0.5))
        np.fill_diagonal(w, 0.0)
        return Dense(w)
    shape = shapes[source]
    if how == "self" and len(shape) == 3 and rng.random() < 0.5:  # a same-size Conv2d
        c = shape[0]
        return Conv2d(grid_weights(rng, (c, c, 3, 3), 0.3), stride=1, padding=1)
    return Dense(grid_weights(rng, (n_t, n_s), 0.5))


def with_recurrence(rng: np.random.Generator, net: Network, how: str) -> Network:
    """``net`` with recurrent projections (R1.2) of the kind ``how`` (one of :data:`RECURRENCE`).

    ``"self"``: a population to itself (dense grid weights, or a same-size Conv2d on a
    channel population); ``"lateral"``: non-positive weights to the other neurons of the
    population; ``"backward"``: from a later population (the output included) to an
    earlier one; ``"all"``: one of each. Populations drawn at random. Their targets get
    no refractory dropout (R4.6); the others keep theirs.
    """
    if how == "none":
        return net
    n_pop = len(net.populations)
    kinds = ["self", "lateral", "backward"] if how == "all" else [how]
    projs = list(net.projections)
    for kind in kinds:
        if kind == "backward" and n_pop >= 2:
            source = int(rng.integers(2, n_pop + 1))
            target = int(rng.integers(1, source))
        else:
            source = target = int(rng.integers(1, n_pop + 1))
        projs.append(Projection(source, target, _recurrent_layer(rng, net, source, target, kind)))
    targets = {p.target for p in projs if p.recurrent}
    pops = [
        p
        if i not in targets
        else Population.create(p.shape, p.threshold, p.beta, 0.0, p.name, bias=p.bias, reset=p.reset, alpha=p.alpha)
        for i, p in enumerate(net.populations, 1)
    ]
    return Network(net.input_shape, pops, projs)


def draw_dropout(draw: Any, net: Network) -> Any:
    """A ``refractory_dropout`` option the network accepts.

    A probability p > 0 for every population needs reset "zero" everywhere and no
    recurrent target (R4.6); "network" takes each population's own value, which
    :func:`with_settling` and :func:`with_recurrence` leave at 0 where R4.6 refuses it.
    """
    if all(p.reset == "zero" for p in net.populations) and not net.recurrent:
        return draw(st.sampled_from(["off", "network", 0.5]))
    return draw(st.sampled_from(["off", "network"]))


@st.composite
def engine_cases(draw: Any, max_batch: int = 3) -> dict[str, Any]:
    """A random grid network (dense, conv or skip), a count input and every run option.

    Half the networks settle (R1.6): biases on some populations, reset modes other than
    ``"zero"``, synaptic currents (R4.12), or several (:func:`with_settling`);
    independently, about half get
    recurrent projections (:func:`with_recurrence`, R4.9).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dense", "conv", "skip", "conv_wide"]))
    how = draw(st.sampled_from(SETTLING))
    net = with_settling(rng, random_grid_network(rng, kind), how)
    net = with_recurrence(rng, net, draw(st.sampled_from(RECURRENCE)))
    batch = draw(st.integers(1, max_batch))
    timesteps = draw(st.integers(1, 5))
    x = random_count_input(rng, net, batch, timesteps, density=draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    stop = draw(st.sampled_from(["drain", "first_output", "max_steps"]))
    opts: dict[str, Any] = {
        "scheduler": scheduler,
        "forward_group_size": draw(st.sampled_from([1, 2, 3, 8, 1000])),
        "stop": stop,
        "extra_steps": draw(st.integers(0, 3)),
        "max_steps": draw(st.integers(1, 6)) if stop == "max_steps" or draw(st.booleans()) else None,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "jitter": draw(st.sampled_from([0.0, 0.25, 1.0])) if scheduler == "momentum" else 0.0,
        "refractory_dropout": draw_dropout(draw, net),
        "input_dropout": draw(st.sampled_from([0.0, 0.0, 0.0, 0.3])),  # R4.10 in a quarter
        "spike_dropout": draw(st.sampled_from([0.0, 0.0, 0.0, 0.4])),  # R4.11 in a quarter
        # R4.13 in a quarter of the runs that can take it (momentum refuses it).
        "prioritize_input": scheduler == "momentum" or draw(st.sampled_from([True, True, True, False])),
    }
    labels = rng.integers(0, net.n_outputs, batch) if draw(st.booleans()) else None
    return {"net": net, "x": x, "opts": opts, "labels": labels}


def grid_chain(rng: np.random.Generator, sizes: list[int], scale: float, mean: float, beta: float = 0.9) -> Network:
    """``sizes[0] -> sizes[1] -> ...`` dense, grid weights (``grid_weights(scale, mean)``),
    threshold 1 and leak ``beta``."""
    layers = [Dense(grid_weights(rng, (b, a), scale, mean)) for a, b in itertools.pairwise(sizes)]
    return Network.sequential((sizes[0],), layers, threshold=1.0, beta=beta)


def wide_dense_network(rng: np.random.Generator) -> Network:
    """A dense grid network of 16-64 inputs and 1-2 hidden layers of 16-64 neurons.

    Wide enough that with ``F = 1`` a timestep often needs more than 32 forward steps
    (the torch engine computes the random function's states 32 steps at a time) while
    quiet samples end it after a few.
    """
    sizes = [int(rng.integers(16, 65)) for _ in range(int(rng.integers(2, 4)))] + [int(rng.integers(2, 11))]
    layers = [
        Dense(grid_weights(rng, (b, a), float(rng.choice([0.5, 0.75, 1.0])), 0.1)) for a, b in itertools.pairwise(sizes)
    ]
    th = np.float32(rng.integers(192, 320) / 256)
    return Network.sequential(
        (sizes[0],),
        layers,
        threshold=th,
        beta=np.float32(rng.integers(192, 257) / 256),
        refractory_dropout=float(rng.choice([0.0, 0.5])),
    )


def mixed_count_input(
    rng: np.random.Generator, network: Network, density: np.ndarray, timesteps: int, max_count: int = 3
) -> np.ndarray:
    """Integer event counts ``[batch, timesteps, *input_shape]`` with one density per sample."""
    shape = (density.size, timesteps, *network.input_shape)
    mask = rng.random(shape) < density.reshape(-1, *([1] * (len(shape) - 1)))
    return (mask * rng.integers(1, max_count + 1, shape)).astype(np.float32)


@st.composite
def mixed_batch_cases(draw: Any, max_batch: int = 64, settling: bool = False) -> dict[str, Any]:
    """Batches of up to ``max_batch`` samples whose activity differs from sample to sample.

    The input density is drawn per sample (uniform in 0.02-0.6, or from a few levels
    including silence and saturation), ``F = 1`` is drawn often and the networks
    include wide dense ones, so that within one timestep some samples end after a few
    forward steps and others after many: the batch engines (torch) must set finished
    rows aside and merge them back at any step. With ``settling`` half the networks get
    biases and reset modes (:func:`with_settling`) and, independently, about half get
    recurrent projections (:func:`with_recurrence`), whose targets settle too (R1.6).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["wide", "wide", "dense", "skip", "conv", "conv_wide"]))
    net = wide_dense_network(rng) if kind == "wide" else random_grid_network(rng, kind)
    if settling:
        net = with_settling(rng, net, draw(st.sampled_from(SETTLING)))
        net = with_recurrence(rng, net, draw(st.sampled_from(RECURRENCE)))
    batch = draw(st.one_of(st.integers(1, max_batch), st.integers(min(16, max_batch), max_batch)))
    timesteps = draw(st.integers(1, 4))
    if draw(st.booleans()):
        density = rng.uniform(0.02, 0.6, batch)
    else:
        density = rng.choice([0.0, 0.02, 0.1, 0.3, 0.6, 1.0], batch)
    x = mixed_count_input(rng, net, density, timesteps)
    scheduler = draw(st.sampled_from(SCHEDULERS))
    stop = draw(st.sampled_from(["drain", "drain", "first_output", "max_steps"]))
    opts: dict[str, Any] = {
        "scheduler": scheduler,
        "forward_group_size": draw(st.sampled_from([1, 1, 1, 2, 3, 8])),
        "stop": stop,
        "extra_steps": draw(st.integers(0, 3)),
        "max_steps": draw(st.integers(1, 80)) if stop == "max_steps" or draw(st.integers(0, 3)) == 0 else None,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "jitter": draw(st.sampled_from([0.0, 0.25, 1.0])) if scheduler == "momentum" else 0.0,
        "refractory_dropout": draw_dropout(draw, net),
        "input_dropout": draw(st.sampled_from([0.0, 0.0, 0.0, 0.3])),  # R4.10 in a quarter
        "spike_dropout": draw(st.sampled_from([0.0, 0.0, 0.0, 0.4])),  # R4.11 in a quarter
        # R4.13 in a quarter of the runs that can take it (momentum refuses it).
        "prioritize_input": scheduler == "momentum" or draw(st.sampled_from([True, True, True, False])),
    }
    labels = rng.integers(0, net.n_outputs, batch) if draw(st.booleans()) else None
    return {"net": net, "x": x, "opts": opts, "labels": labels}


def select_samples(res: InferenceResult, rows: np.ndarray) -> InferenceResult:
    """``res`` restricted to the samples ``rows`` (in that order)."""
    arrays = {name: getattr(res, name)[rows] for name in COUNTER_FIELDS}
    labels = None if res.labels is None else res.labels[rows]
    return InferenceResult(arrays, labels=labels, engine=res.engine, options=res.options)


def spread_samples(res: InferenceResult, n: int = 6) -> np.ndarray:
    """Up to ``n`` sample indices spread over ``res``'s range of forward steps, ascending."""
    order = np.argsort(res.forward_steps, kind="stable")
    picks = np.unique(order[np.linspace(0, order.size - 1, min(n, order.size)).round().astype(int)])
    return picks

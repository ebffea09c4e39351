"""Helpers to check engines against each other: comparison and random grid networks.

These are public so that users can check their own exports and engines the way the
project's tests do (``docs/semantics.md`` R8.2: grid weights make engines agree bit for
bit).

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> from asyncsnn.testing import assert_results_equal, random_grid_network, random_count_input
>>> rng = np.random.default_rng(3)
>>> net = random_grid_network(rng, "conv")
>>> x = random_count_input(rng, net, batch=3, timesteps=4)
>>> a = asyncsnn.infer(net, x, scheduler="random", forward_group_size=2)
>>> b = asyncsnn.reference.infer(net, x, scheduler="random", forward_group_size=2)
>>> assert_results_equal(a, b)
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np

from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d
from asyncsnn.result import COUNTER_FIELDS, InferenceResult

__all__ = ["assert_results_equal", "first_divergence", "grid_weights", "random_count_input", "random_grid_network"]

GRID = 256.0


def grid_weights(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 0.5, bias: float = 0.0) -> np.ndarray:
    """Random weights on the grid ``k / 256`` (|k| < 2**12), exact in float32.

    Parameters
    ----------
    rng
        Random generator.
    shape
        Shape of the weight array.
    scale, bias
        Standard deviation and mean of the normal draw before rounding to the grid.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.
    """
    k = np.clip(np.round(rng.normal(bias, scale, shape) * GRID), -(2**12) + 1, 2**12 - 1)
    return (k / GRID).astype(np.float32)


def _lif(rng: np.random.Generator, shape: tuple[int, ...], per_neuron: bool) -> Population:
    if per_neuron:
        th = (rng.integers(64, 512, shape) / GRID).astype(np.float32)
        beta = (rng.integers(0, 257, shape) / GRID).astype(np.float32)
    else:
        th = np.float32(rng.integers(64, 512) / GRID)  # type: ignore[assignment]
        beta = np.float32(rng.integers(128, 257) / GRID)  # type: ignore[assignment]
    return Population.create(shape, th, beta, refractory_dropout=float(rng.choice([0.0, 0.5])))


def random_grid_network(
    rng: np.random.Generator,
    kind: Literal["dense", "conv", "skip", "conv_wide"] = "dense",
) -> Network:
    """A small random network with grid weights and grid LIF parameters.

    Parameters
    ----------
    rng
        Random generator.
    kind
        ``"dense"`` (2-3 dense layers), ``"conv"`` (conv, pool, dense), ``"skip"``
        (dense layers plus a skip projection) or ``"conv_wide"`` (a same-size conv on an
        8x8 to 12x12 plane, then a strided conv or a pool, then dense, and maybe a dense
        skip from the input into the second population: planes large enough that a
        forward step can touch only part of a population).

    Returns
    -------
    Network
        Weights and thresholds are multiples of 1/256; betas are multiples of 1/256 in
        [0, 1]; populations may have a refractory dropout of 0.5 (used only when asked).
    """
    per_neuron = bool(rng.integers(0, 2))
    if kind == "conv":
        c_in, h = int(rng.integers(1, 3)), int(rng.integers(4, 7))
        c1 = int(rng.integers(1, 4))
        k = int(rng.integers(1, 4))
        stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        conv = Conv2d(grid_weights(rng, (c1, c_in, k, k), 0.6, 0.2), stride=stride, padding=pad)
        s1 = conv.output_shape((c_in, h, h))
        layers: list[Dense | Conv2d | AvgPool2d | SumPool2d] = [conv]
        shape = s1
        if min(s1[1:]) >= 2:
            pool = (AvgPool2d if rng.integers(0, 2) else SumPool2d)(2, stride=int(rng.integers(1, 3)))
            shape = pool.output_shape(s1)
            layers.append(pool)
        n_out = int(rng.integers(2, 5))
        layers.append(Dense(grid_weights(rng, (n_out, math.prod(shape)), 0.6, 0.15)))
        pops = []
        cur: tuple[int, ...] = (c_in, h, h)
        for layer in layers:
            cur = layer.output_shape(cur)
            pops.append(_lif(rng, cur, per_neuron))
        projs = [Projection(i, i + 1, layer) for i, layer in enumerate(layers)]
        return Network((c_in, h, h), pops, projs)
    if kind == "conv_wide":
        c_in, h = int(rng.integers(1, 3)), int(rng.integers(8, 13))
        c1 = int(rng.integers(2, 5))
        wide: list[Dense | Conv2d | AvgPool2d | SumPool2d] = [
            Conv2d(grid_weights(rng, (c1, c_in, 3, 3), 0.5, 0.15), stride=1, padding=1)
        ]
        if rng.integers(0, 2):
            wide.append(Conv2d(grid_weights(rng, (int(rng.integers(2, 5)), c1, 3, 3), 0.5, 0.2), stride=2, padding=1))
        else:
            wide.append((AvgPool2d if rng.integers(0, 2) else SumPool2d)(2, stride=2))
        shapes: list[tuple[int, ...]] = [(c_in, h, h)]
        for layer in wide:
            shapes.append(layer.output_shape(shapes[-1]))
        n_out = int(rng.integers(2, 5))
        wide.append(Dense(grid_weights(rng, (n_out, math.prod(shapes[-1])), 0.5, 0.15)))
        shapes.append((n_out,))
        projs = [Projection(i, i + 1, layer) for i, layer in enumerate(wide)]
        if rng.integers(0, 2):
            size = (math.prod(shapes[2]), math.prod(shapes[0]))
            projs.append(Projection(0, 2, Dense(grid_weights(rng, size, 0.5, 0.1))))
        return Network(shapes[0], [_lif(rng, s, per_neuron) for s in shapes[1:]], projs)
    n_in = int(rng.integers(2, 9))
    depth = int(rng.integers(2, 4))
    sizes = [n_in] + [int(rng.integers(2, 9)) for _ in range(depth)]
    pops = [_lif(rng, (n,), per_neuron) for n in sizes[1:]]
    projs = [
        Projection(i, i + 1, Dense(grid_weights(rng, (b, a), 0.5, 0.15)))
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    ]
    if kind == "skip":
        src = int(rng.integers(0, depth - 1))
        dst = int(rng.integers(src + 2, depth + 1))
        projs.append(Projection(src, dst, Dense(grid_weights(rng, (sizes[dst], sizes[src]), 0.5, 0.1))))
    return Network((n_in,), pops, projs)


def random_count_input(
    rng: np.random.Generator, network: Network, batch: int, timesteps: int, density: float = 0.3, max_count: int = 3
) -> np.ndarray:
    """Integer event counts ``[batch, timesteps, *input_shape]`` (float32)."""
    shape = (batch, timesteps, *network.input_shape)
    mask = rng.random(shape) < density
    return (mask * rng.integers(1, max_count + 1, shape)).astype(np.float32)


def first_divergence(a: InferenceResult, b: InferenceResult) -> str | None:
    """Describe the first difference between two results, or return None if equal.

    The description names the sample, the first timestep whose per-timestep records
    differ, the field and both values, so that a failing equivalence test points at
    where the engines part ways.
    """
    if a.batch_size != b.batch_size:
        return f"batch sizes differ: {a.batch_size} vs {b.batch_size}"
    per_t = [name for name, dims in COUNTER_FIELDS.items() if dims[:1] == ("T",)]
    for s in range(a.batch_size):
        for t in range(a.timestep_forward_steps.shape[1]):
            for name in per_t:
                va, vb = getattr(a, name)[s, t], getattr(b, name)[s, t]
                if not np.array_equal(va, vb):
                    return (
                        f"sample {s}, timestep {t}: {name} differs: {va.tolist()} ({a.engine}) "
                        f"vs {vb.tolist()} ({b.engine})"
                    )
        for name in COUNTER_FIELDS:
            va, vb = getattr(a, name)[s], getattr(b, name)[s]
            if not np.array_equal(va, vb):
                return f"sample {s}: {name} differs: {va.tolist()} ({a.engine}) vs {vb.tolist()} ({b.engine})"
    return None


def assert_results_equal(a: InferenceResult, b: InferenceResult) -> None:
    """Raise ``AssertionError`` naming the first divergence if ``a`` and ``b`` differ."""
    where = first_divergence(a, b)
    if where is not None:
        raise AssertionError(f"results differ: {where}")

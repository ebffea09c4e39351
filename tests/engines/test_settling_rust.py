"""The Rust engine under ``layered`` is the layer-synchronous LIF network of R4.5.

Random dense networks with biases and each reset mode (R1.4, R4.8), grid weights and
biases (multiples of 1/256) and small integer inputs, so that every current sums
exactly and the only float32 roundings are the leak, ``V + I`` and the subtractions,
which the formula below performs in the same order:
``U = beta*V + (W s + b) - theta*d``, ``s = U > theta``, then the reset of the mode.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import asyncsnn
import asyncsnn.reference
from asyncsnn.exceptions import ModelError
from asyncsnn.network import RESET_MODES, Dense, Network, Population
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input


def _layer_synchronous(
    weights: list[np.ndarray],
    theta: list[np.ndarray],
    beta: list[np.ndarray],
    bias: list[np.ndarray],
    reset: str,
    frames: np.ndarray,
    alpha: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Output spikes per timestep ``[T, n_out]`` and the spikes of each layer (R4.5).

    With ``alpha`` the layers have synaptic currents (R4.12, snnTorch's ``Synaptic``):
    ``S = alpha*S + (W s + b)`` (multiply, then add), and ``U = beta*V + S - theta*d``.
    """
    f32 = np.float32
    v = [np.zeros(w.shape[0], dtype=f32) for w in weights]
    syn = [np.zeros(w.shape[0], dtype=f32) for w in weights]
    debt = [np.zeros(w.shape[0], dtype=bool) for w in weights]
    out = np.zeros((frames.shape[0], weights[-1].shape[0]), dtype=np.int64)
    totals = [0] * len(weights)
    for t, x in enumerate(frames):
        s = x.astype(f32)
        for layer, w in enumerate(weights):
            current = (w @ s).astype(f32) + bias[layer]  # exact on the grid
            if alpha is not None:
                syn[layer] = ((alpha[layer] * syn[layer]).astype(f32) + current).astype(f32)
                current = syn[layer]
            u = (beta[layer] * v[layer]).astype(f32) + current
            if reset == "subtract_delayed":
                u = np.where(debt[layer], u - theta[layer], u).astype(f32)
            fired = u > theta[layer]
            if reset == "zero":
                v[layer] = np.where(fired, f32(0), u).astype(f32)
            elif reset == "subtract":
                v[layer] = np.where(fired, u - theta[layer], u).astype(f32)
            else:  # "none", "subtract_delayed"
                v[layer] = u
            debt[layer] = fired if reset == "subtract_delayed" else debt[layer]
            totals[layer] += int(fired.sum())
            s = fired.astype(f32)
        out[t] = s.astype(np.int64)
    return out, totals


def _random_case(
    seed: int, reset: str
) -> tuple[Network, list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(2, 9, size=int(rng.integers(2, 5)))]
    weights = [
        (rng.integers(-96, 160, size=(sizes[i + 1], sizes[i])) / 256).astype(np.float32) for i in range(len(sizes) - 1)
    ]
    theta = [(rng.integers(64, 256, size=n) / 256).astype(np.float32) for n in sizes[1:]]
    beta = [np.full(n, rng.choice([1.0, 0.5, 0.75, 0.875]), dtype=np.float32) for n in sizes[1:]]
    bias = [(rng.integers(-40, 56, size=n) / 256).astype(np.float32) for n in sizes[1:]]
    net = Network.sequential(
        input_shape=(sizes[0],),
        layers=[Dense(w) for w in weights],
        threshold=list(theta),
        beta=list(beta),
        bias=list(bias),
        reset=reset,
    )
    return net, weights, theta, beta, bias


@pytest.mark.parametrize("reset", RESET_MODES)
@pytest.mark.parametrize("seed", range(12))
def test_layered_rust_is_the_layer_synchronous_formula(reset: str, seed: int) -> None:
    net, weights, theta, beta, bias = _random_case(seed, reset)
    assert net.spec_version == 2
    rng = np.random.default_rng(1000 + seed)
    batch, timesteps = 3, 8
    frames = rng.choice(np.array([0.0, 0.0, 0.0, 1.0, 2.0], dtype=np.float32), size=(batch, timesteps, net.input_size))
    res = asyncsnn.infer(net, frames, scheduler="layered")
    for b in range(batch):
        want, totals = _layer_synchronous(weights, theta, beta, bias, reset, frames[b])
        np.testing.assert_array_equal(res.timestep_output_counts[b], want, err_msg=f"sample {b}")
        np.testing.assert_array_equal(res.spikes[b], totals, err_msg=f"sample {b}")
    # Every population is computed in every timestep: at least one forward step per
    # population behind the input (R4.4, R4.7).
    assert np.all(res.timestep_forward_steps >= len(weights))


def test_settle_only_steps_fire_a_biased_population_without_input() -> None:
    net = Network.sequential(
        input_shape=(2,),
        layers=[Dense(np.ones((2, 2), dtype=np.float32)), Dense(np.ones((1, 2), dtype=np.float32))],
        threshold=1.0,
        beta=1.0,
        bias=[0.0, 0.375],
    )
    res = asyncsnn.infer(net, np.zeros((1, 4, 2), dtype=np.float32), scheduler="fifo", forward_group_size=1)
    # 0.375, 0.75, 1.125 (fires), 0.375: one settle-only step per timestep.
    np.testing.assert_array_equal(res.timestep_output_counts[0, :, 0], [0, 0, 1, 0])
    np.testing.assert_array_equal(res.timestep_forward_steps[0], [2, 2, 2, 2])


@pytest.mark.parametrize("reset", RESET_MODES)
@pytest.mark.parametrize("seed", range(6))
def test_layered_rust_is_snntorch_synaptic(reset: str, seed: int) -> None:
    """Synaptic currents (R4.12) per neuron, some alpha 0: ``layered`` is snnTorch's Synaptic."""
    net, weights, theta, beta, bias = _random_case(seed, reset)
    rng = np.random.default_rng(2000 + seed)
    choices = np.array([0.0, 0.25, 0.5, 0.75, 0.875], dtype=np.float32)
    alpha = [rng.choice(choices, size=w.shape[0]) for w in weights]
    alpha[0][0] = 0.5  # every draw has a synaptic population
    pops = [
        Population.create(p.shape, p.threshold, p.beta, bias=p.bias, reset=p.reset, alpha=a)
        for p, a in zip(net.populations, alpha, strict=True)
    ]
    net = Network(net.input_shape, pops, list(net.projections))
    assert net.populations[0].synaptic
    batch, timesteps = 3, 8
    frames = rng.choice(np.array([0.0, 0.0, 0.0, 1.0, 2.0], dtype=np.float32), size=(batch, timesteps, net.input_size))
    res = asyncsnn.infer(net, frames, scheduler="layered")
    for b in range(batch):
        want, totals = _layer_synchronous(weights, theta, beta, bias, reset, frames[b], alpha)
        np.testing.assert_array_equal(res.timestep_output_counts[b], want, err_msg=f"sample {b}")
        np.testing.assert_array_equal(res.spikes[b], totals, err_msg=f"sample {b}")


@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
def test_rust_equals_reference_on_synaptic_networks(scheduler: str) -> None:
    """R4.12 on every scheduler: ``asyncsnn.infer`` equals ``asyncsnn.reference.infer``
    (spikes and every counter), with skips so that deliveries arrive after the settle."""
    rng = np.random.default_rng(412)
    for n in range(4):
        net = Network.sequential(
            input_shape=(6,),
            layers=[Dense(grid_weights(rng, (8, 6), 0.6)), Dense(grid_weights(rng, (5, 8), 0.5))],
            threshold=1.0,
            beta=[0.875, 0.75],
            alpha=[0.5, np.where(rng.random(5) < 0.4, 0.0, 0.75).astype(np.float32)],
            reset=RESET_MODES[n],
            skips=[(0, 2, Dense(grid_weights(rng, (5, 6), 0.4)))],
        )
        x = random_count_input(rng, net, batch=3, timesteps=6, density=0.3)
        for f in (1, 3):
            for stop in ("drain", "first_output"):
                opts = {"scheduler": scheduler, "forward_group_size": f, "stop": stop, "seed": 5}
                assert_results_equal(asyncsnn.infer(net, x, **opts), asyncsnn.reference.infer(net, x, **opts))


def test_the_binding_validates_alpha() -> None:
    """A bad alpha in the flat description is a ModelError naming it (R1.4), not a panic."""
    th = np.ones(2, dtype=np.float32)
    w = [("dense", 0, 1, np.ones(8, dtype=np.float32), [])]
    zero = np.zeros(1, dtype=np.float32)
    for alpha, field in [([1.5], "alpha[0]"), ([0.5, np.nan], "alpha[1]"), ([0.5, 0.5, 0.5], "alpha length")]:
        with pytest.raises(ModelError, match=re.escape(field)):
            asyncsnn._engine.Network(4, [(2, th, th, 0.0, zero, 0, np.asarray(alpha, dtype=np.float32))], w)
    asyncsnn._engine.Network(4, [(2, th, th, 0.0, zero, 0, np.asarray([0.5, 0.0], dtype=np.float32))], w)

"""R4.12: the synaptic current ``S`` of populations with ``alpha != 0``.

The oracles here are independent of the engines: a float32 numpy form of snnTorch's
``Synaptic`` (``syn = alpha*syn + input; mem = beta*mem + syn``, then the reset) for
``layered``, and small networks whose membrane values are worked out by hand for what
the asynchronous schedulers add (a delivery after the settle charges ``S`` and ``V``; a
refractory neuron's synapses are still charged).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pytest

import asyncsnn
from asyncsnn import Dense, Network, Population, Projection
from asyncsnn.exceptions import ModelError
from asyncsnn.model_file import load, save
from asyncsnn.network import RESET_MODES
from asyncsnn.testing import grid_weights

ENGINES = {"reference": asyncsnn.reference.infer, "rust": asyncsnn.infer}
F32 = np.float32


def _synaptic_layer(x: np.ndarray, w: np.ndarray, alpha: np.ndarray, beta: np.ndarray, reset: str) -> np.ndarray:
    """snnTorch ``Synaptic`` over ``x[B, T, n_in]`` in float32, strict threshold 1."""
    b, n_t = x.shape[:2]
    syn = np.zeros((b, w.shape[0]), F32)
    mem = syn.copy()
    owed = syn.copy()
    out = []
    for t in range(n_t):
        cur = (x[:, t].astype(np.float64) @ w.T.astype(np.float64)).astype(F32)  # exact on the grid
        syn = (alpha * syn + cur).astype(F32)
        mem = (beta * mem + syn).astype(F32)
        if reset == "subtract_delayed":
            mem = (mem - owed).astype(F32)
        s = (mem > 1).astype(F32)
        if reset == "zero":
            mem = np.where(s > 0, F32(0), mem)
        elif reset == "subtract":
            mem = (mem - s).astype(F32)
        owed = s
        out.append(s)
    return np.stack(out, 1)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("reset", RESET_MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layered_is_snntorch_synaptic(engine: str, reset: str, seed: int) -> None:
    """R4.5 / R4.12: under ``layered`` the network is snnTorch's ``Synaptic``, spike for spike."""
    rng = np.random.default_rng(seed)
    n_in, n_h, n_out, n_t = 12, 9, 4, 16
    w1, w2 = grid_weights(rng, (n_h, n_in), 0.6, 0.1), grid_weights(rng, (n_out, n_h), 0.6, 0.1)
    a1 = rng.choice(np.array([0.0, 0.25, 0.5, 0.8125], F32), n_h)  # per neuron, zeros included
    a2, b1, b2 = F32(0.75), F32(0.875), F32(0.5)
    net = Network.sequential((n_in,), [Dense(w1), Dense(w2)], threshold=1.0, beta=[b1, b2], alpha=[a1, a2], reset=reset)
    x = (rng.random((5, n_t, n_in)) < 0.3).astype(F32)
    res = ENGINES[engine](net, x, scheduler="layered")
    hidden = _synaptic_layer(x, w1, a1, np.full(n_h, b1), reset)
    out = _synaptic_layer(hidden, w2, np.full(n_out, a2), np.full(n_out, b2), reset)
    assert out.sum() > 0  # the check has something to compare
    np.testing.assert_array_equal(res.timestep_output_counts, out.astype(np.int64))
    np.testing.assert_array_equal(res.spikes[:, 0], hidden.sum((1, 2)).astype(np.int64))
    # alpha = 0 everywhere would be a different network: the synaptic memory is used.
    plain = ENGINES[engine](
        Network.sequential((n_in,), [Dense(w1), Dense(w2)], threshold=1.0, beta=[b1, b2], reset=reset),
        x,
        scheduler="layered",
    )
    assert not np.array_equal(plain.timestep_output_counts, res.timestep_output_counts)


def _skip_net(*, threshold: float, beta: float) -> Network:
    """input -> h (weight 2, fires every timestep) -> out (0.5), and a skip input -> out (0.25).

    ``out`` has ``alpha = 0.5``; it settles in step 0 with the skip's current, and ``h``'s
    spike reaches it one forward step later, after the settle.
    """
    h = Population.create((1,), 1.0, 0.0)
    out = Population.create((1,), threshold, beta, alpha=0.5)
    return Network(
        (1,),
        [h, out],
        [Projection(0, 1, Dense([[2.0]])), Projection(1, 2, Dense([[0.5]])), Projection(0, 2, Dense([[0.25]]))],
    )


def _spikes(engine: str, net: Network, n_t: int) -> list[tuple[int, int, float]]:
    res = ENGINES[engine](net, np.ones((1, n_t, 1), F32), scheduler="fifo", forward_group_size=1, trace=True)
    tr = res.trace
    assert tr is not None
    return [
        (int(t), int(k), float(v))
        for t, k, p, v, kind in zip(tr.timestep, tr.step, tr.population, tr.value, tr.kind)
        if kind == "spike" and p == 2
    ]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_delivery_after_settle_charges_s_and_v(engine: str) -> None:
    """R4.12: after the settle a delivery adds to ``S`` and ``V``; ``S`` carries it on.

    By hand (beta 1, alpha 0.5): t0: settle S = 0.25, V = 0.25; h's spike: S = 0.75,
    V = 0.75. t1: settle S = 0.5 * 0.75 + 0.25 = 0.625, V = 1.375; h's spike: S = 1.125,
    V = 1.875 > 1.8, the only spike. Had the late delivery not charged S, t1 would end
    at V = 0.75 + 0.375 + 0.5 = 1.625 and nothing would fire.
    """
    assert _spikes(engine, _skip_net(threshold=1.8, beta=1.0), 2) == [(1, 1, 1.875)]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_refractory_neuron_still_charges_s(engine: str) -> None:
    """R4.12 / R4.6: a refractory neuron discards the current from V but not from S.

    By hand (beta 0, alpha 0.5, threshold 0.2): t0: settle S = 0.25, V = 0.25 fires and is
    refractory; h's spike: S = 0.75, V stays 0. t1: settle S = 0.375 + 0.25 = 0.625 = V,
    fires with v_pre 0.625 (0.375 if the refractory delivery were lost).
    """
    assert _spikes(engine, _skip_net(threshold=0.2, beta=0.0), 2) == [(0, 0, 0.25), (1, 0, 0.625)]


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
def test_alpha_zero_is_lif(engine: str, scheduler: str) -> None:
    """R1.4 / R1.6: ``alpha = 0`` everywhere is the version-1 network (no settling)."""
    rng = np.random.default_rng(5)
    layers = [Dense(grid_weights(rng, (10, 8), 0.7, 0.1)), Dense(grid_weights(rng, (3, 10), 0.7, 0.1))]
    x = (rng.random((4, 6, 8)) < 0.4).astype(F32)
    net0 = Network.sequential((8,), layers, alpha=0.0)
    assert net0.settling == (False, False)
    assert net0.spec_version == 1
    a = ENGINES[engine](net0, x, scheduler=scheduler, forward_group_size=2)
    b = ENGINES[engine](Network.sequential((8,), layers), x, scheduler=scheduler, forward_group_size=2)
    assert a.spikes_total.sum() > 0
    np.testing.assert_array_equal(a.timestep_output_counts, b.timestep_output_counts)
    np.testing.assert_array_equal(a.synops, b.synops)
    np.testing.assert_array_equal(a.forward_steps, b.forward_steps)


@pytest.mark.parametrize(
    ("alpha", "fragment"),
    [(1.5, "invalid alpha = 1.5"), (-0.25, "invalid alpha = -0.25"), (float("nan"), "invalid alpha = nan")],
)
def test_bad_alpha_is_a_model_error(alpha: float, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        Network.sequential((2,), [Dense(np.ones((2, 2)))], alpha=alpha)


def test_alpha_is_settling_and_kept_by_files() -> None:
    """R1.6: a synaptic population settles; the dict form and model files keep alpha bit for bit."""
    alpha = np.array([0.0, 0.3, 0.9], F32)
    net = Network.sequential((2,), [Dense(np.ones((3, 2))), Dense(np.ones((2, 3)))], alpha=[alpha, 0.0])
    assert net.settling == (True, False)
    assert net.spec_version == 2
    assert net.populations[0].synaptic
    assert "alpha=per-neuron" in net.summary()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        save(net, path)
        back = load(path)
    assert back.populations[0].alpha is not None
    np.testing.assert_array_equal(back.populations[0].alpha, alpha)
    assert not back.populations[1].synaptic


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_synaptic_overflow_is_an_engine_error(engine: str) -> None:
    """R8.3: a synaptic current that overflows float32 ends the run with the membrane error."""
    big = 3e38
    net = Network.sequential((1,), [Dense([[big]])], threshold=1e38, beta=0.0, alpha=1.0)
    kwargs: dict[str, Any] = {"scheduler": "layered"}
    with pytest.raises(asyncsnn.exceptions.EngineError, match="timestep 1, forward step 0, population 1, neuron 0"):
        ENGINES[engine](net, np.ones((1, 3, 1), F32), **kwargs)

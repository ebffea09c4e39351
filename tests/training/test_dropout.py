"""Input and spike dropout (docs/semantics.md R4.10, R4.11) in the torch engine and training.

The forward values equal the reference engine's on both backends, also with a graph;
a dropped input or spike contributes nothing to the gradient downstream (a constant
mask); ``train`` takes both as regularisers and records them in its checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
import asyncsnn.reference
from asyncsnn._prepare import prepare_given_options
from asyncsnn.exceptions import ParameterError
from asyncsnn.testing import assert_results_equal, grid_weights
from asyncsnn.torch import AsyncSNN, Plan, count_loss, load_checkpoint, run, train


def _problem(seed: int = 3) -> tuple[asyncsnn.Network, list[np.ndarray], torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ws = [
        grid_weights(rng, (16, 12), 0.5, 0.3),
        grid_weights(rng, (10, 16), 0.5, 0.3),
        grid_weights(rng, (4, 10), 0.5, 0.3),
    ]
    net = asyncsnn.Network.sequential((12,), [asyncsnn.Dense(w) for w in ws], threshold=0.75, beta=0.875)
    x = torch.from_numpy(((rng.random((5, 6, 12)) < 0.5) * rng.integers(1, 3, (5, 6, 12))).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, 5))
    return net, ws, x, y


def _grads(
    net: asyncsnn.Network, ws: list[np.ndarray], x: torch.Tensor, y: torch.Tensor, backend: str, **kw: Any
) -> tuple[Any, list[torch.Tensor]]:
    opts = prepare_given_options(net, forward_group_size=2, seed=9, **kw)
    w = [torch.tensor(a, requires_grad=True) for a in ws]
    out = run(Plan(net), w, x, opts, labels=y, backend=backend)
    return out, list(torch.autograd.grad(count_loss(out.counts, y), w))


@pytest.mark.parametrize("backend", ["host", "torch"])
@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
@pytest.mark.parametrize(("p_in", "p_spike"), [(0.3, 0.0), (0.0, 0.4), (0.3, 0.4)])
def test_graph_forward_equals_reference(backend: str, scheduler: str, p_in: float, p_spike: float) -> None:
    net, ws, x, y = _problem()
    kw = {"scheduler": scheduler, "input_dropout": p_in, "spike_dropout": p_spike}
    out, grads = _grads(net, ws, x, y, backend, **kw)
    ref = asyncsnn.reference.infer(net, x.numpy(), labels=y.numpy(), forward_group_size=2, seed=9, **kw)
    assert_results_equal(out.result(y.numpy()), ref)
    assert torch.equal(out.counts.detach().sum(1), torch.tensor(ref.output_counts, dtype=torch.float32))
    plain = asyncsnn.reference.infer(
        net, x.numpy(), labels=y.numpy(), forward_group_size=2, seed=9, scheduler=scheduler
    )
    assert (ref.synops < plain.synops).any()  # the dropout took effect
    assert any(float(g.abs().max()) > 0 for g in grads)


@pytest.mark.parametrize("backend", ["host", "torch"])
@pytest.mark.parametrize("scheduler", ["layered", "fifo", "momentum"])
def test_backends_give_the_same_gradients_with_dropout(backend: str, scheduler: str) -> None:
    net, ws, x, y = _problem(4)
    kw = {"scheduler": scheduler, "input_dropout": 0.25, "spike_dropout": 0.3}
    _, host = _grads(net, ws, x, y, "host", **kw)
    _, other = _grads(net, ws, x, y, backend, **kw)
    for a, b in zip(host, other, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_dropped_spikes_pass_no_gradient() -> None:
    # One hidden neuron that fires in every timestep (so it has no silent spike, section 9)
    # and whose spikes are all dropped (p = 1 - 2^-24 against this batch's draws): nothing
    # of the hidden layer reaches the output, so neither weight gets a gradient. The same
    # network without dropout has both gradients.
    net = asyncsnn.Network.sequential(
        (1,), [asyncsnn.Dense(np.array([[2.0]])), asyncsnn.Dense(np.array([[0.75], [0.5]]))], threshold=1.0, beta=0.5
    )
    ws = [np.array([[2.0]], dtype=np.float32), np.array([[0.75], [0.5]], dtype=np.float32)]
    x, y = torch.ones((2, 4, 1)), torch.tensor([0, 1])
    out, grads = _grads(net, ws, x, y, "torch", scheduler="fifo", spike_dropout=1 - 2**-24)
    res = out.result(y.numpy())
    assert res.spikes[:, 0].tolist() == [4, 4]  # dropped spikes still count (R4.11)
    assert res.synops_per_projection[:, 1].sum() == 0  # none delivered
    assert all(float(g.abs().max()) == 0 for g in grads)
    _, kept = _grads(net, ws, x, y, "torch", scheduler="fifo")
    assert all(float(g.abs().max()) > 0 for g in kept)


def test_dropped_inputs_pass_no_gradient() -> None:
    net, ws, x, y = _problem()
    out, grads = _grads(net, ws, x, y, "host", scheduler="momentum", input_dropout=1 - 2**-24)
    res = out.result(y.numpy())
    assert res.input_events.sum() == 0
    assert res.spikes_total.sum() == 0
    assert all(float(g.abs().max()) == 0 for g in grads)


def test_module_forward_takes_the_dropouts() -> None:
    net, _, x, y = _problem()
    model = AsyncSNN.from_network(net)
    a = model(x, scheduler="fifo", seed=2, input_dropout=0.5, spike_dropout=0.5, labels=y)
    b = asyncsnn.reference.infer(
        net, x.numpy(), scheduler="fifo", seed=2, input_dropout=0.5, spike_dropout=0.5, labels=y.numpy()
    )
    assert_results_equal(a.result(y.numpy()), b)
    with pytest.raises(ParameterError) as err:
        model(x, spike_dropout=1.0)
    assert err.value.field == "spike_dropout"


def test_train_uses_the_dropouts_as_regularisers(tmp_path: Path) -> None:
    net, _, x, y = _problem()
    kw: dict[str, Any] = {"scheduler": "fifo", "epochs": 1, "batch_size": 5, "progress": False, "seed": 1}
    plain, _ = train(net, (x, y), **kw)
    dropped, _ = train(net, (x, y), input_dropout=0.3, spike_dropout=0.3, checkpoint_dir=tmp_path, **kw)
    layer_plain, layer_dropped = plain.projections[0].layer, dropped.projections[0].layer
    assert isinstance(layer_plain, asyncsnn.Dense)
    assert isinstance(layer_dropped, asyncsnn.Dense)
    assert not np.array_equal(layer_plain.weight, layer_dropped.weight)
    config = json.loads(load_checkpoint(sorted(tmp_path.glob("*.safetensors"))[-1])["config"])
    assert (config["input_dropout"], config["spike_dropout"]) == (0.3, 0.3)
    with pytest.raises(ParameterError) as err:
        train(net, (x, y), input_dropout=1.5, **kw)
    assert err.value.field == "input_dropout"

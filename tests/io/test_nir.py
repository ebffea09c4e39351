"""NIR interchange: exact round trips, the discretisation, clear errors, and snnTorch interop."""

from __future__ import annotations

import doctest
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import asyncsnn  # noqa: E402
from asyncsnn import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d  # noqa: E402
from asyncsnn.exceptions import ModelError  # noqa: E402
from asyncsnn.nir import SNNTORCH_DT, from_nir, read, to_nir, write  # noqa: E402
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def assert_networks_equal(a: Network, b: Network) -> None:
    assert a.population_shapes == b.population_shapes
    for pa, pb in zip(a.populations, b.populations, strict=True):
        np.testing.assert_array_equal(pa.threshold, pb.threshold)
        np.testing.assert_array_equal(pa.beta, pb.beta)
        assert pa.threshold.dtype == pb.threshold.dtype == np.float32
        assert pa.beta.dtype == pb.beta.dtype == np.float32
        assert pa.refractory_dropout == pb.refractory_dropout
        assert pa.name == pb.name
    for qa, qb in zip(a.projections, b.projections, strict=True):
        assert (qa.source, qa.target, type(qa.layer)) == (qb.source, qb.target, type(qb.layer))
        if isinstance(qa.layer, (Dense, Conv2d)):
            assert isinstance(qb.layer, (Dense, Conv2d))
            np.testing.assert_array_equal(qa.layer.weight, qb.layer.weight)
        if isinstance(qa.layer, Conv2d):
            assert isinstance(qb.layer, Conv2d)
            assert (qa.layer.stride, qa.layer.padding) == (qb.layer.stride, qb.layer.padding)
        if isinstance(qa.layer, (AvgPool2d, SumPool2d)):
            assert isinstance(qb.layer, (AvgPool2d, SumPool2d))
            assert (qa.layer.kernel_size, qa.layer.stride) == (qb.layer.kernel_size, qb.layer.stride)


def lif(
    shape: tuple[int, ...], *, tau: float = 8.0, r: float | None = None, v_threshold: float = 1.0, **kw: Any
) -> Any:
    ones = np.ones(shape)
    return nir.LIF(
        tau=tau * ones,
        r=(tau if r is None else r) * ones,
        v_leak=kw.pop("v_leak", 0.0) * ones,
        v_threshold=v_threshold * ones,
        v_reset=kw.pop("v_reset", 0.0) * ones,
    )


def chain(*nodes: Any, input_shape: tuple[int, ...]) -> Any:
    """A sequential NIR graph ``input -> nodes... -> output`` without NIR's type check."""
    names = [f"n{i}" for i in range(len(nodes))]
    all_nodes = {"input": nir.Input(input_type=np.array(input_shape)), **dict(zip(names, nodes))}
    out_shape = np.asarray(getattr(nodes[-1], "v_threshold", np.zeros(1))).shape or (1,)
    all_nodes["output"] = nir.Output(output_type=np.array(out_shape))
    seq = ["input", *names, "output"]
    return nir.NIRGraph(nodes=all_nodes, edges=list(itertools.pairwise(seq)), type_check=False)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
@pytest.mark.parametrize("seed", range(8))
def test_round_trip_is_exact(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_grid_network(rng, kind)  # type: ignore[arg-type]
    back = from_nir(to_nir(net))
    assert_networks_equal(net, back)
    x = random_count_input(rng, net, batch=3, timesteps=5)
    for scheduler in ("layered", "fifo", "momentum"):
        opts: dict[str, Any] = {"scheduler": scheduler, "forward_group_size": 2, "refractory_dropout": "network"}
        assert_results_equal(asyncsnn.infer(net, x, **opts), asyncsnn.infer(back, x, **opts))


@pytest.mark.parametrize("kind", ["dense", "conv", "skip"])
@pytest.mark.parametrize("dt", [1.0, 1e-3, SNNTORCH_DT])
def test_round_trip_through_a_file_is_exact(tmp_path: Path, kind: str, dt: float) -> None:
    net = random_grid_network(np.random.default_rng(11), kind)  # type: ignore[arg-type]
    path = tmp_path / "model.nir"
    write(path, net, dt=dt)
    assert_networks_equal(net, read(path))  # dt comes from the graph's metadata
    assert_networks_equal(net, read(path, dt=dt))
    assert_networks_equal(net, from_nir(path))


def test_beta_one_next_to_beta_below_one_round_trips() -> None:
    beta = np.array([1.0, 0.5, 255 / 256, 0.0], dtype=np.float32)
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.ones((4, 3)))], threshold=0.75, beta=[beta])
    graph = to_nir(net)
    assert type(graph.nodes["lif1"]).__name__ == "LIF"
    assert_networks_equal(net, from_nir(graph))


def test_integrate_and_fire_population_becomes_an_if_node() -> None:
    net = Network.sequential(
        input_shape=(3,), layers=[Dense(np.ones((2, 3)))], threshold=[np.array([0.5, 2.0])], beta=1.0
    )
    graph = to_nir(net)
    node = graph.nodes["if1"]
    assert type(node).__name__ == "IF"
    np.testing.assert_array_equal(node.r, [1.0, 1.0])
    assert_networks_equal(net, from_nir(graph))


def test_flat_population_fed_by_a_convolution_round_trips() -> None:
    conv = Conv2d(grid_weights(np.random.default_rng(0), (2, 1, 3, 3)), padding=1)
    pops = [Population.create((32,), 0.5, 0.75), Population.create((3,), 1.0, 0.5)]
    projs = [Projection(0, 1, conv), Projection(1, 2, Dense(np.ones((3, 32))))]
    net = Network((1, 4, 4), pops, projs)
    graph = to_nir(net)
    assert type(graph.nodes["flatten0_out"]).__name__ == "Flatten"
    assert_networks_equal(net, from_nir(graph))


def test_population_order_of_parallel_branches_is_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pops = [Population.create((3,), 0.5, 0.5, name="b"), Population.create((2,), 0.5, 0.5, name="a")]
    pops.append(Population.create((2,), 0.5, 0.5))
    projs = [
        Projection(0, 2, Dense(grid_weights(rng, (2, 4)))),
        Projection(0, 1, Dense(grid_weights(rng, (3, 4)))),
        Projection(2, 3, Dense(grid_weights(rng, (2, 2)))),
        Projection(1, 3, Dense(grid_weights(rng, (2, 3)))),
    ]
    net = Network((4,), pops, projs)
    assert_networks_equal(net, from_nir(to_nir(net)))
    write(tmp_path / "branches.nir", net)  # names and order survive HDF5's alphabetical group order
    assert_networks_equal(net, read(tmp_path / "branches.nir"))


def test_network_from_nir_runs_like_the_original_under_every_scheduler() -> None:
    rng = np.random.default_rng(9)
    net = random_grid_network(rng, "conv")
    back = from_nir(to_nir(net, dt=0.5), dt=0.5)
    x = random_count_input(rng, net, batch=4, timesteps=6)
    for scheduler in ("layered", "fifo", "random", "momentum"):
        assert_results_equal(asyncsnn.infer(net, x, scheduler=scheduler), asyncsnn.infer(back, x, scheduler=scheduler))


def test_dense_into_a_multidimensional_population_cannot_be_written() -> None:
    net = Network((4,), [Population.create((2, 3), 1.0, 0.5)], [Projection(0, 1, Dense(np.ones((6, 4))))])
    with pytest.raises(ModelError, match="no reshape node") as err:
        to_nir(net)
    assert err.value.field == "shape"
    assert err.value.location == "population 1"


# ----------------------------------------------------------------------------- discretisation


def test_lif_discretisation_is_forward_euler_with_the_input_scale_in_the_threshold() -> None:
    # tau dv/dt = -v + r I with dt = 1e-3: beta = 1 - dt/tau, scale = r dt / tau, theta = v_th / scale.
    graph = chain(
        nir.Linear(weight=np.ones((2, 3))),
        lif((2,), tau=1 / 128, r=1.0, v_threshold=0.25),  # Norse's convention: r = 1
        input_shape=(3,),
    )
    net = from_nir(graph, dt=1 / 1024)
    pop = net.populations[0]
    np.testing.assert_array_equal(pop.beta, np.float32(1 - 128 / 1024))
    np.testing.assert_array_equal(pop.threshold, np.float32(0.25 / (128 / 1024)))


def test_if_node_uses_r_dt_as_the_input_scale() -> None:
    # dv/dt = r I stepped with dt: v <- v + (r dt) W s (issue 15: r alone ignored dt).
    graph = chain(
        nir.Linear(weight=np.ones((2, 3))),
        nir.IF(r=np.array([2.0, 0.5]), v_threshold=np.array([1.0, 1.0]), v_reset=np.zeros(2)),
        input_shape=(3,),
    )
    pop = from_nir(graph, dt=1.0).populations[0]
    np.testing.assert_array_equal(pop.beta, [1.0, 1.0])
    np.testing.assert_array_equal(pop.threshold, [0.5, 2.0])
    pop = from_nir(graph, dt=0.25).populations[0]
    np.testing.assert_array_equal(pop.beta, [1.0, 1.0])
    np.testing.assert_array_equal(pop.threshold, [2.0, 8.0])


def test_cuba_lif_without_synaptic_memory_reduces_to_a_lif() -> None:
    dt = SNNTORCH_DT
    tau_mem = np.full(2, dt / (1 - 0.875), dtype=np.float32)
    node = nir.CubaLIF(
        tau_syn=np.full(2, dt, dtype=np.float32),  # alpha = 1 - dt/tau_syn = 0
        tau_mem=tau_mem,
        r=tau_mem / np.float32(dt),
        v_leak=np.zeros(2),
        v_threshold=np.array([1.0, 0.5]),
        w_in=np.ones(2),  # w_in dt / tau_syn = 1
    )
    pop = from_nir(chain(nir.Linear(weight=np.ones((2, 3))), node, input_shape=(3,)), dt=dt).populations[0]
    np.testing.assert_array_equal(pop.beta, [0.875, 0.875])
    np.testing.assert_array_equal(pop.threshold, [1.0, 0.5])


def test_snntorch_float32_rounding_of_tau_and_r_is_absorbed() -> None:
    beta = np.float32(0.9)
    tau = np.float32(SNNTORCH_DT) / (np.float32(1) - beta)  # snnTorch computes these in float32
    r = tau / np.float32(SNNTORCH_DT)
    node = nir.LIF(tau=np.array([tau]), r=np.array([r]), v_leak=np.zeros(1), v_threshold=np.array([1.0], np.float32))
    pop = from_nir(chain(nir.Linear(weight=np.ones((1, 2))), node, input_shape=(2,)), dt=SNNTORCH_DT).populations[0]
    assert pop.beta[0] == beta
    assert pop.threshold[0] == np.float32(1.0)


def test_missing_shape_metadata_is_inferred() -> None:
    # snnTorch issue #410: scalar neuron parameters give the LIF node an empty shape.
    scalar = nir.LIF(
        tau=np.float32(8.0), r=np.float32(8.0), v_leak=np.array(0.0), v_threshold=np.array(0.5), v_reset=np.array(0.0)
    )
    nodes = {
        "input": nir.Input(input_type=np.array([])),
        "fc": nir.Linear(weight=np.ones((3, 5))),
        "lif": scalar,
        "output": nir.Output(output_type=np.array([])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    net = from_nir(graph)
    assert net.population_shapes == [(5,), (3,)]
    np.testing.assert_array_equal(net.populations[0].beta, [0.875] * 3)
    np.testing.assert_array_equal(net.populations[0].threshold, [0.5] * 3)
    assert net.populations[0].name == "lif"


def test_conv_pool_flatten_graph_with_string_padding_and_zero_bias() -> None:
    rng = np.random.default_rng(2)
    w = grid_weights(rng, (2, 1, 3, 3))
    nodes = {
        "in": nir.Input(input_type=np.array([1, 6, 6])),
        "conv": nir.Conv2d(
            input_shape=(6, 6), weight=w, stride=1, padding="same", dilation=1, groups=1, bias=np.zeros(2)
        ),
        "lif1": lif((2, 6, 6)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "lif2": lif((2, 3, 3)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=np.ones((4, 18)), bias=np.zeros(4)),
        "lif3": lif((4,)),
        "out": nir.Output(output_type=np.array([4])),
    }
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(order)))
    net = from_nir(graph)
    assert net.population_shapes == [(1, 6, 6), (2, 6, 6), (2, 3, 3), (4,)]
    conv = net.projections[0].layer
    assert isinstance(conv, Conv2d)
    assert conv.padding == (1, 1)
    assert isinstance(net.projections[1].layer, SumPool2d)


# ----------------------------------------------------------------------------- errors


def _one_layer(projection: Any, neuron: Any, input_shape: tuple[int, ...] = (3,)) -> Any:
    return chain(projection, neuron, input_shape=input_shape)


def test_affine_with_bias_is_refused() -> None:
    graph = _one_layer(nir.Affine(weight=np.ones((2, 3)), bias=np.array([0.0, 0.5])), lif((2,)))
    with pytest.raises(ModelError, match="no biases") as err:
        from_nir(graph)
    assert err.value.field == "bias"
    assert err.value.location == "NIR node 'n0' (Affine)"


def test_conv_with_bias_is_refused() -> None:
    conv = nir.Conv2d(
        input_shape=(4, 4), weight=np.ones((1, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=1, bias=np.ones(1)
    )
    with pytest.raises(ModelError) as err:
        from_nir(_one_layer(conv, lif((1, 2, 2)), (1, 4, 4)))
    assert (err.value.field, err.value.location) == ("bias", "NIR node 'n0' (Conv2d)")


@pytest.mark.parametrize(("field", "kwargs"), [("dilation", {"dilation": 2}), ("groups", {"groups": 2})])
def test_conv_dilation_and_groups_are_refused(field: str, kwargs: dict[str, int]) -> None:
    args: dict[str, Any] = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kwargs}
    conv = nir.Conv2d(input_shape=(6, 6), weight=np.ones((2, 2 // args["groups"], 3, 3)), bias=np.zeros(2), **args)
    with pytest.raises(ModelError) as err:
        from_nir(_one_layer(conv, lif((2, 2, 2)), (2, 6, 6)))
    assert err.value.field == field
    assert err.value.location == "NIR node 'n0' (Conv2d)"


@pytest.mark.parametrize("field", ["v_reset", "v_leak"])
def test_nonzero_reset_or_leak_potential_is_refused(field: str) -> None:
    graph = _one_layer(nir.Linear(weight=np.ones((2, 3))), lif((2,), **{field: -0.5}))
    with pytest.raises(ModelError, match="must be 0") as err:
        from_nir(graph)
    assert err.value.field == field
    assert err.value.location == "NIR node 'n1' (LIF)"


def test_pool_padding_is_refused() -> None:
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    with pytest.raises(ModelError) as err:
        from_nir(_one_layer(pool, lif((1, 3, 3)), (1, 4, 4)))
    assert err.value.field == "padding"


@pytest.mark.parametrize(
    "node",
    [
        nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
        nir.Scale(scale=np.ones(3)),
        nir.Delay(delay=np.ones(3)),
        nir.Threshold(threshold=np.ones(3)),
    ],
)
def test_unsupported_node_is_named(node: Any) -> None:
    nodes = {"input": nir.Input(input_type=np.array([3])), "odd": node, "output": nir.Output(output_type=np.array([3]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "odd"), ("odd", "output")], type_check=False)
    with pytest.raises(ModelError, match="unsupported node") as err:
        from_nir(graph)
    assert err.value.field == "type"
    assert err.value.location == f"NIR node 'odd' ({type(node).__name__})"


def test_cuba_lif_with_synaptic_memory_is_refused() -> None:
    node = nir.CubaLIF(
        tau_syn=np.full(2, 4.0),
        tau_mem=np.full(2, 8.0),
        r=np.full(2, 8.0),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
    )
    with pytest.raises(ModelError, match="synaptic memory") as err:
        from_nir(_one_layer(nir.Linear(weight=np.ones((2, 3))), node))
    assert err.value.field == "tau_syn"


def test_tau_below_dt_is_refused() -> None:
    with pytest.raises(ModelError, match="below dt") as err:
        from_nir(_one_layer(nir.Linear(weight=np.ones((2, 3))), lif((2,), tau=SNNTORCH_DT * 8)))
    assert err.value.field == "tau"


def test_recurrent_graph_is_refused() -> None:
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "fc": nir.Linear(weight=np.ones((2, 3))),
        "lif": lif((2,)),
        "rec": nir.Linear(weight=np.ones((2, 2))),
        "fc2": nir.Linear(weight=np.ones((2, 2))),
        "lif2": lif((2,)),
        "output": nir.Output(output_type=np.array([2])),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "fc2"), ("fc2", "lif2")]
    graph = nir.NIRGraph(nodes=nodes, edges=[*edges, ("lif2", "output")], type_check=False)
    with pytest.raises(ModelError, match="cycle"):
        from_nir(graph)


def test_projection_feeding_a_projection_is_refused() -> None:
    graph = chain(nir.Linear(weight=np.ones((4, 3))), nir.Linear(weight=np.ones((2, 4))), lif((2,)), input_shape=(3,))
    with pytest.raises(ModelError, match="needs a LIF/IF population after every projection") as err:
        from_nir(graph)
    assert err.value.location == "NIR node 'n0' (Linear)"


def test_several_outputs_need_a_choice() -> None:
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "fa": nir.Linear(weight=np.ones((2, 3))),
        "a": lif((2,)),
        "fb": nir.Linear(weight=np.ones((4, 3))),
        "b": lif((4,)),
        "out_a": nir.Output(output_type=np.array([2])),
        "out_b": nir.Output(output_type=np.array([4])),
    }
    edges = [("input", "fa"), ("fa", "a"), ("input", "fb"), ("fb", "b"), ("a", "out_a"), ("b", "out_b")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(ModelError, match="one output population"):
        from_nir(graph)
    net = from_nir(graph, output="out_a")
    assert net.population_shapes == [(3,), (4,), (2,)]  # the output population is last
    assert from_nir(graph, output="out_b").population_shapes == [(3,), (2,), (4,)]


def test_non_graph_is_refused() -> None:
    with pytest.raises(ModelError, match=r"nir\.NIRGraph"):
        from_nir(nir.Linear(weight=np.ones((2, 2))))


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_dt_is_refused(dt: float) -> None:
    net = random_grid_network(np.random.default_rng(0), "dense")
    with pytest.raises(ModelError) as err:
        from_nir(to_nir(net), dt=dt)
    assert err.value.field == "dt"


# ----------------------------------------------------------------------------- snnTorch


def _snntorch() -> tuple[Any, Any]:
    snn = pytest.importorskip("snntorch")
    torch = pytest.importorskip("torch")
    pytest.importorskip("nirtorch")
    return snn, torch


def _leaky(snn: Any, torch: Any, rng: np.random.Generator, shape: tuple[int, ...], output: bool = False) -> Any:
    # Per-neuron beta and threshold: snnTorch 1.0 + nir 1.0.8 cannot type-check scalar ones (issue #410).
    # beta >= 0.5 keeps snnTorch's float32 tau = 1e-4 / (1 - beta) exact enough to recover beta bit for bit.
    beta = torch.tensor(rng.choice([0.5, 0.75, 0.875, 0.9375], size=shape), dtype=torch.float32)
    threshold = torch.tensor(rng.integers(128, 384, size=shape) / 256, dtype=torch.float32)
    # reset_mechanism="zero" and reset_delay=False give R4.5's layered LIF: U = beta V + W s, s = H(U - theta),
    # V = U (1 - s). snnTorch fires on mem - threshold > 0, the same strict comparison as R4.3, so membranes
    # that land exactly on the threshold need no special care.
    return snn.Leaky(
        beta=beta, threshold=threshold, init_hidden=True, output=output, reset_mechanism="zero", reset_delay=False
    )


def _linear(torch: Any, rng: np.random.Generator, n_in: int, n_out: int) -> Any:
    m = torch.nn.Linear(n_in, n_out, bias=False)
    m.weight.data = torch.tensor(grid_weights(rng, (n_out, n_in), 0.5, 0.15))  # exact sums in any order (R8.2)
    return m


def _run_snntorch(snn: Any, torch: Any, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output spikes [B, T, n_out] and spikes per Leaky layer [B, P] of an snnTorch Sequential."""
    from snntorch import utils as snn_utils  # type: ignore[import-untyped]

    snn_utils.reset(model)
    batch, steps = x.shape[:2]
    leaks = [m for m in model if isinstance(m, snn.Leaky)]
    per_layer = np.zeros((batch, len(leaks)), dtype=np.int64)
    out = []
    with torch.no_grad():
        for t in range(steps):
            cur = torch.tensor(x[:, t])
            k = 0
            for module in model:
                cur = module(cur)
                if isinstance(cur, tuple):  # output=True returns (spk, mem)
                    cur = cur[0]
                if isinstance(module, snn.Leaky):
                    per_layer[:, k] += cur.reshape(batch, -1).sum(1).long().numpy()
                    k += 1
            out.append(cur.numpy())
    return np.stack(out, axis=1).astype(np.int64), per_layer


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_snntorch_export_reproduces_snntorch_spikes_under_layered(arch: str) -> None:
    snn, torch = _snntorch()
    from snntorch.export_nir import export_to_nir  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    if arch == "dense":
        in_shape: tuple[int, ...] = (10,)
        model = torch.nn.Sequential(
            _linear(torch, rng, 10, 8),
            _leaky(snn, torch, rng, (8,)),
            _linear(torch, rng, 8, 6),
            _leaky(snn, torch, rng, (6,)),
            _linear(torch, rng, 6, 4),
            _leaky(snn, torch, rng, (4,), output=True),
        )
    else:
        in_shape = (2, 6, 6)
        conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
        conv.weight.data = torch.tensor(grid_weights(rng, (3, 2, 3, 3), 0.6, 0.2))
        model = torch.nn.Sequential(
            conv,
            _leaky(snn, torch, rng, (3, 6, 6)),
            torch.nn.AvgPool2d(2),  # weight 1/4: exact in float32
            _leaky(snn, torch, rng, (3, 3, 3)),
            torch.nn.Flatten(),
            _linear(torch, rng, 27, 4),
            _leaky(snn, torch, rng, (4,), output=True),
        )
    graph = export_to_nir(model, torch.zeros(1, *in_shape), ignore_dims=[0])
    net = from_nir(graph, dt=SNNTORCH_DT)
    leaks = [m for m in model if isinstance(m, snn.Leaky)]
    for module, pop in zip(leaks, net.populations, strict=True):
        np.testing.assert_array_equal(pop.beta, module.beta.numpy())
        np.testing.assert_array_equal(pop.threshold, module.threshold.numpy())
    x = random_count_input(rng, net, batch=16, timesteps=20, density=0.3, max_count=2)
    out_spikes, layer_spikes = _run_snntorch(snn, torch, model, x)
    result = asyncsnn.infer(net, x, scheduler="layered")
    assert out_spikes.sum() > 0, "the test network should spike"
    assert np.all(layer_spikes.sum(0) > 0), "every layer should spike"
    np.testing.assert_array_equal(result.timestep_output_counts, out_spikes)
    np.testing.assert_array_equal(result.spikes, layer_spikes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_snntorch_graph_with_scalar_parameters_loads() -> None:
    snn, torch = _snntorch()
    import nirtorch  # type: ignore[import-untyped]
    from snntorch.export_nir import _extract_snntorch_module

    model = torch.nn.Sequential(
        torch.nn.Linear(5, 3, bias=False),
        snn.Leaky(beta=0.875, threshold=0.5, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(3, 2, bias=False),
        snn.Leaky(beta=0.75, init_hidden=True, output=True, reset_mechanism="zero", reset_delay=False),
    )
    # snnTorch's export_to_nir fails NIR's type check here (issue #410); the raw graph has shapeless LIF nodes.
    graph = nirtorch.extract_nir_graph(
        model, _extract_snntorch_module, torch.zeros(5), model_name="snntorch", ignore_submodules_of=[snn.RLeaky]
    )
    net = from_nir(graph, dt=SNNTORCH_DT)
    assert net.population_shapes == [(5,), (3,), (2,)]
    np.testing.assert_array_equal(net.populations[0].beta, [0.875] * 3)
    np.testing.assert_array_equal(net.populations[0].threshold, [0.5] * 3)
    np.testing.assert_array_equal(net.populations[1].beta, [0.75] * 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_to_nir_loads_into_snntorch_and_spikes_the_same() -> None:
    _, torch = _snntorch()
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir  # type: ignore[import-untyped]

    rng = np.random.default_rng(1)
    net = Network.sequential(
        input_shape=(10,),
        layers=[Dense(grid_weights(rng, (8, 10), 0.5, 0.15)), Dense(grid_weights(rng, (4, 8), 0.5, 0.15))],
        threshold=[0.75, 1.0],  # snnTorch's importer needs one threshold per layer
        beta=[0.875, 0.75],
    )
    module = import_from_nir(to_nir(net, dt=SNNTORCH_DT))
    x = random_count_input(rng, net, batch=8, timesteps=12)
    snn_utils.reset(module)
    spikes = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out = module(torch.tensor(x[:, t]))
            spikes.append(out[0] if isinstance(out, tuple) else out)
    expected = torch.stack(spikes, 1).numpy().astype(np.int64)
    assert expected.sum() > 0
    np.testing.assert_array_equal(asyncsnn.infer(net, x, scheduler="layered").timestep_output_counts, expected)


# ----------------------------------------------------------------------------- docs


def test_docstring_examples_run() -> None:
    import asyncsnn.nir as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_guide_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    text = (ROOT / "docs" / "nir.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/nir.md has no python example"
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    for block in blocks:  # the blocks build on each other, as in a notebook
        exec(compile(block, "docs/nir.md", "exec"), scope)


def test_dead_end_population_round_trips() -> None:
    # NIR's type check gives the dead end an Output node of its own; the metadata names the real one.
    rng = np.random.default_rng(4)
    pops = [Population.create((3,), 0.5, 0.5), Population.create((2,), 0.5, 0.5), Population.create((2,), 0.5, 0.5)]
    projs = [
        Projection(0, 1, Dense(grid_weights(rng, (3, 4)))),
        Projection(1, 2, Dense(grid_weights(rng, (2, 3)))),  # population 2 leads nowhere
        Projection(1, 3, Dense(grid_weights(rng, (2, 3)))),
    ]
    net = Network((4,), pops, projs)
    graph = to_nir(net)
    assert sum(type(n).__name__ == "Output" for n in graph.nodes.values()) == 2
    assert_networks_equal(net, from_nir(graph))

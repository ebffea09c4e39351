"""NIR interchange: exact round trips, the discretisation, clear errors, and snnTorch interop."""

from __future__ import annotations

import dataclasses
import doctest
import functools
import importlib.util
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import asyncsnn  # noqa: E402
from asyncsnn import AvgPool2d, Conv2d, Dense, Network, Population, Projection, SumPool2d  # noqa: E402
from asyncsnn.exceptions import ModelError, ParameterError  # noqa: E402
from asyncsnn.nir import SNNTORCH_DT, from_nir, read, to_nir, write  # noqa: E402
from asyncsnn.testing import assert_results_equal, grid_weights, random_count_input, random_grid_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _load_fixture_script() -> Any:
    spec = importlib.util.spec_from_file_location("make_nir_fixtures", ROOT / "scripts" / "make_nir_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: scripts/make_nir_fixtures.py: its layer_synchronous is R4.5 in numpy.
FIXTURE_SCRIPT = _load_fixture_script()


def assert_networks_equal(a: Network, b: Network) -> None:
    assert a.population_shapes == b.population_shapes
    for pa, pb in zip(a.populations, b.populations, strict=True):
        np.testing.assert_array_equal(pa.threshold, pb.threshold)
        np.testing.assert_array_equal(pa.beta, pb.beta)
        assert pa.threshold.dtype == pb.threshold.dtype == np.float32
        assert pa.beta.dtype == pb.beta.dtype == np.float32
        assert pa.refractory_dropout == pb.refractory_dropout
        assert pa.name == pb.name
        assert pa.bias is not None
        assert pb.bias is not None
        np.testing.assert_array_equal(pa.bias, pb.bias)
        assert pa.bias.dtype == pb.bias.dtype == np.float32
        assert pa.reset == pb.reset
        assert pa.alpha is not None
        assert pb.alpha is not None
        np.testing.assert_array_equal(pa.alpha, pb.alpha)
        assert pa.alpha.dtype == pb.alpha.dtype == np.float32
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


def _cuba_lif(n: int, *, tau_syn: Any, tau_mem: Any, r: Any, w_in: Any, v_threshold: Any = 1.0) -> Any:
    ones = np.ones(n)
    return nir.CubaLIF(
        tau_syn=tau_syn * ones,
        tau_mem=tau_mem * ones,
        r=r * ones,
        v_leak=0 * ones,
        v_threshold=v_threshold * ones,
        w_in=w_in * ones,
    )


def test_cuba_lif_discretisation_is_forward_euler_with_both_input_scales_in_the_threshold() -> None:
    # tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = -v + r I with dt = 1/1024 (R4.12): alpha = 1 - dt/tau_syn,
    # beta = 1 - dt/tau_mem, theta = v_th / (w_in (dt/tau_syn) r (dt/tau_mem)).
    node = _cuba_lif(2, tau_syn=np.array([1 / 256, 1 / 1024]), tau_mem=1 / 128, r=1.0, w_in=2.0, v_threshold=0.25)
    pop = from_nir(chain(nir.Linear(weight=np.ones((2, 3))), node, input_shape=(3,)), dt=1 / 1024).populations[0]
    np.testing.assert_array_equal(pop.alpha, [0.75, 0.0])
    np.testing.assert_array_equal(pop.beta, [0.875, 0.875])
    np.testing.assert_array_equal(pop.threshold, np.float32([0.25 / (2 / 4 / 8), 0.25 / (2 / 8)]))
    assert pop.synaptic
    assert pop.settling
    assert pop.alpha is not None
    assert pop.alpha.dtype == np.float32


def test_snntorch_float32_rounding_of_tau_syn_and_w_in_is_absorbed() -> None:
    # snnTorch's export of Synaptic (float32 arithmetic, its dt 1e-4 rounded to float32 by numpy):
    # tau_syn = dt / (1 - alpha), w_in = tau_syn / dt, tau_mem = dt / (1 - beta), r = tau_mem / dt.
    alpha = np.array([0.0, 0.5, 0.75, 0.9375, 0.7, 0.8, 0.95, 0.99], dtype=np.float32)
    beta = np.array([0.9, 0.0, 0.875, 0.5, 0.99, 0.9, 0.75, 0.8], dtype=np.float32)
    dt = SNNTORCH_DT
    tau_syn, tau_mem = dt / (np.float32(1) - alpha), dt / (np.float32(1) - beta)
    assert tau_syn.dtype == tau_mem.dtype == np.float32
    node = nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem / dt,
        v_leak=np.zeros(8, np.float32),
        v_threshold=np.full(8, 1.25, np.float32),
        w_in=tau_syn / dt,
    )
    pop = from_nir(chain(nir.Linear(weight=np.ones((8, 2))), node, input_shape=(2,)), dt=dt).populations[0]
    np.testing.assert_array_equal(pop.alpha, alpha)  # alpha = 0: tau_syn = float32(1e-4) < 1e-4, alpha -2.5e-8 is 0
    np.testing.assert_array_equal(pop.beta[beta >= 0.63], beta[beta >= 0.63])  # bit exact from 0.63 on: docs/nir.md
    np.testing.assert_array_equal(pop.threshold, np.float32(1.25))  # the input scale within 1e-6 of 1 is 1
    only_zero = dataclasses.replace(node, tau_syn=np.full(8, np.float32(dt)), w_in=np.ones(8, np.float32))
    pop = from_nir(chain(nir.Linear(weight=np.ones((8, 2))), only_zero, input_shape=(2,)), dt=dt).populations[0]
    assert not pop.synaptic  # Synaptic(alpha=0) is a Leaky


def test_alpha_of_snntorch_graphs_comes_back_bit_exact_from_0_63() -> None:
    # Every 97th float32 in [0.63, 1) through snnTorch's float32 tau_syn = dt / (1 - alpha) (docs/nir.md, Rounding).
    bits = np.arange(np.float32(0.63).view(np.uint32), np.float32(1.0).view(np.uint32), 97, dtype=np.uint32)
    alpha = bits.view(np.float32)
    tau_syn = SNNTORCH_DT / (np.float32(1) - alpha)
    node = nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_syn,
        r=tau_syn / SNNTORCH_DT,
        v_leak=np.zeros(alpha.size),
        v_threshold=np.ones(alpha.size),
        w_in=tau_syn / SNNTORCH_DT,
    )
    graph = chain(nir.Linear(weight=np.ones((alpha.size, 1))), node, input_shape=(1,))
    pop = from_nir(graph, dt=SNNTORCH_DT).populations[0]
    np.testing.assert_array_equal(pop.alpha, alpha)
    np.testing.assert_array_equal(pop.beta, alpha)


def test_tau_syn_below_dt_is_refused() -> None:
    node = _cuba_lif(2, tau_syn=np.array([8.0, 0.5]), tau_mem=8.0, r=8.0, w_in=8.0)
    with pytest.raises(ModelError, match="below dt") as err:
        from_nir(chain(nir.Linear(weight=np.ones((2, 3))), node, input_shape=(3,)))
    assert err.value.field == "tau_syn"
    assert "alpha = 1 - dt/tau_syn" in str(err.value)


@pytest.mark.parametrize("field", ["tau_syn", "w_in"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_cuba_lif_synapse_is_refused(field: str, value: float) -> None:
    kwargs = {"tau_syn": 4.0, "tau_mem": 8.0, "r": 8.0, "w_in": 4.0} | {field: np.array([4.0, value])}
    with pytest.raises(ModelError) as err:
        from_nir(chain(nir.Linear(weight=np.ones((2, 3))), _cuba_lif(2, **kwargs), input_shape=(3,)))
    assert err.value.field == ("tau_syn" if field == "tau_syn" else "r")  # w_in: the input scale, as r for LIF


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


# ----------------------------------------------------------------------------- biases and reset modes


def _settling_network(rng: np.random.Generator) -> Network:
    """Every reset mode, per-neuron biases in every place to_nir can put them."""
    pops = [
        Population.create((2, 4, 4), 0.5, 0.75, bias=grid_weights(rng, (2, 4, 4)), reset="subtract"),  # per position
        Population.create((2, 2, 2), 1.0, 0.5, bias=grid_weights(rng, (2, 2, 2)), reset="none"),  # fed by a pool
        Population.create((5,), 0.75, 1.0, bias=grid_weights(rng, (5,)), reset="subtract_delayed"),
        Population.create((3,), 0.5, 0.875, bias=0.0, reset="zero"),
        Population.create((4,), 0.5, 0.875, bias=np.repeat(grid_weights(rng, (2,)), 2), reset="subtract_delayed"),
    ]
    projs = [
        Projection(0, 1, Conv2d(grid_weights(rng, (2, 1, 3, 3)), padding=1)),
        Projection(1, 2, SumPool2d(2)),
        Projection(2, 3, Dense(grid_weights(rng, (5, 8)))),
        Projection(3, 4, Dense(grid_weights(rng, (3, 5)))),
        Projection(2, 5, Conv2d(grid_weights(rng, (4, 2, 2, 2)))),  # (4, 1, 1) into a flat population
        Projection(4, 5, Dense(grid_weights(rng, (4, 3)))),  # a skip connection: the Affine carries the bias
    ]
    return Network((1, 4, 4), pops, projs)


@pytest.mark.parametrize("through_file", [False, True])
def test_round_trip_with_every_reset_mode_and_per_neuron_biases_is_exact(tmp_path: Path, through_file: bool) -> None:
    net = _settling_network(np.random.default_rng(3))
    if through_file:
        write(tmp_path / "settling.nir", net, dt=SNNTORCH_DT)
        back = read(tmp_path / "settling.nir")
    else:
        back = from_nir(to_nir(net))
    assert_networks_equal(net, back)
    assert [p.reset for p in back.populations] == ["subtract", "none", "subtract_delayed", "zero", "subtract_delayed"]


def test_to_nir_writes_biases_where_other_tools_read_them() -> None:
    net = _settling_network(np.random.default_rng(3))
    graph = to_nir(net)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    neuron = {
        node.metadata["asyncsnn_population"]: node
        for node in graph.nodes.values()
        if "asyncsnn_population" in node.metadata
    }
    assert type(neuron[3]).__name__ == "IF"  # beta = 1
    assert graph.metadata["asyncsnn_spec_version"] == 2
    # The Conv2d into population 1 cannot carry a bias that varies over positions: metadata (and a zero bias).
    assert not np.any(graph.nodes["proj0"].bias)
    np.testing.assert_array_equal(neuron[1].metadata["asyncsnn_bias"], net.populations[0].bias)
    np.testing.assert_array_equal(neuron[2].metadata["asyncsnn_bias"], net.populations[1].bias)  # a pool
    assert kinds["proj2"] == "Affine"  # population 3
    np.testing.assert_array_equal(graph.nodes["proj2"].bias, net.populations[2].bias)
    assert kinds["proj3"] == "Linear"  # population 4 has no bias
    # Population 5: the first Dense projection into it is the Affine, the Conv2d keeps a zero bias.
    assert (kinds["proj4"], kinds["proj5"]) == ("Conv2d", "Affine")
    assert not np.any(graph.nodes["proj4"].bias)
    np.testing.assert_array_equal(graph.nodes["proj5"].bias, net.populations[4].bias)
    for i in (3, 4, 5):
        assert "asyncsnn_bias" not in neuron[i].metadata
    # NIR's own fields say reset to v_reset = 0; the mode is in the metadata.
    assert [neuron[i].metadata.get("asyncsnn_reset") for i in range(1, 6)] == [
        "subtract",
        "none",
        "subtract_delayed",
        None,
        "subtract_delayed",
    ]
    assert all(not np.any(neuron[i].v_reset) for i in range(1, 6))


def test_conv_bias_constant_per_channel_is_written_in_the_conv_node() -> None:
    rng = np.random.default_rng(5)
    bias = np.broadcast_to(np.array([0.25, -0.5])[:, None, None], (2, 4, 4))
    net = Network.sequential(
        input_shape=(1, 4, 4), layers=[Conv2d(grid_weights(rng, (2, 1, 3, 3)), padding=1)], bias=bias, reset="none"
    )
    graph = to_nir(net)
    np.testing.assert_array_equal(graph.nodes["proj0"].bias, [0.25, -0.5])
    assert "asyncsnn_bias" not in graph.nodes["lif1"].metadata
    assert_networks_equal(net, from_nir(graph))


def test_a_version_one_network_writes_a_version_one_graph() -> None:
    net = random_grid_network(np.random.default_rng(0), kind="dense")
    graph = to_nir(net)
    assert graph.metadata["asyncsnn_spec_version"] == 1
    assert not any(type(n).__name__ == "Affine" for n in graph.nodes.values())
    assert not any("asyncsnn_reset" in getattr(n, "metadata", {}) for n in graph.nodes.values())


def test_affine_bias_becomes_the_population_bias_and_several_add() -> None:
    # Two Affines into one population (a skip connection): their biases add.
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "a": nir.Affine(weight=np.ones((2, 3)), bias=np.array([0.25, -0.5])),
        "lif_a": lif((2,)),
        "b": nir.Affine(weight=np.ones((2, 2)), bias=np.array([0.5, 0.125])),
        "c": nir.Affine(weight=np.ones((2, 3)), bias=np.array([0.125, 0.0])),
        "lif_b": lif((2,)),
        "output": nir.Output(output_type=np.array([2])),
    }
    edges = [("input", "a"), ("a", "lif_a"), ("lif_a", "b"), ("b", "lif_b"), ("input", "c"), ("c", "lif_b")]
    net = from_nir(nir.NIRGraph(nodes=nodes, edges=[*edges, ("lif_b", "output")], type_check=False))
    np.testing.assert_array_equal(net.populations[0].bias, [0.25, -0.5])
    np.testing.assert_array_equal(net.populations[1].bias, [0.625, 0.125])
    assert [p.reset for p in net.populations] == ["zero", "zero"]  # NIR's reset to v_reset = 0


def test_conv_bias_reaches_every_position_of_its_channel() -> None:
    conv = nir.Conv2d(
        input_shape=(4, 4),
        weight=np.ones((2, 1, 3, 3)),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.array([0.5, -0.25]),
    )
    pop = from_nir(_one_layer(conv, lif((2, 2, 2)), (1, 4, 4))).populations[0]
    np.testing.assert_array_equal(pop.bias, np.broadcast_to(np.array([0.5, -0.25])[:, None, None], (2, 2, 2)))


def test_reset_argument_sets_every_population_or_the_named_ones() -> None:
    graph = to_nir(_settling_network(np.random.default_rng(3)))
    assert {p.reset for p in from_nir(graph, reset="none").populations} == {"none"}
    back = from_nir(graph, reset={"lif4": "subtract", "lif1": "zero"})  # the others: from the metadata
    assert [p.reset for p in back.populations] == ["zero", "none", "subtract_delayed", "subtract", "subtract_delayed"]
    plain = _one_layer(nir.Linear(weight=np.ones((2, 3))), lif((2,)))
    assert from_nir(plain).populations[0].reset == "zero"
    assert from_nir(plain, reset={"n1": "subtract"}).populations[0].reset == "subtract"


@pytest.mark.parametrize(
    ("reset", "match"),
    [
        ("soft", "must be one of"),
        ({"n1": "hard"}, "must be one of"),
        ({"lif9": "zero"}, "names no neuron node"),
        (3, "must be None"),
    ],
)
def test_bad_reset_argument_is_a_parameter_error(reset: Any, match: str) -> None:
    plain = _one_layer(nir.Linear(weight=np.ones((2, 3))), lif((2,)))
    with pytest.raises(ParameterError, match=match) as err:
        from_nir(plain, reset=reset)
    assert err.value.field == "reset"


def test_bad_reset_metadata_is_refused() -> None:
    node = lif((2,))
    node.metadata = {"asyncsnn_reset": "soft"}
    with pytest.raises(ModelError, match="must be one of") as err:
        from_nir(_one_layer(nir.Linear(weight=np.ones((2, 3))), node))
    assert (err.value.field, err.value.location) == ("metadata['asyncsnn_reset']", "NIR node 'n1' (LIF)")


def test_refractory_dropout_with_a_subtractive_reset_is_refused() -> None:
    node = lif((2,))
    node.metadata = {"asyncsnn_refractory_dropout": 0.25}
    with pytest.raises(ModelError, match="refractory dropout needs reset 'zero'"):
        from_nir(_one_layer(nir.Linear(weight=np.ones((2, 3))), node), reset="subtract")


# ----------------------------------------------------------------------------- errors


def _one_layer(projection: Any, neuron: Any, input_shape: tuple[int, ...] = (3,)) -> Any:
    return chain(projection, neuron, input_shape=input_shape)


@pytest.mark.parametrize("bias", [np.array([0.0]), np.ones(3), np.array([0.5, np.inf])])
def test_affine_bias_that_is_not_per_neuron_is_refused(bias: np.ndarray) -> None:
    graph = _one_layer(nir.Affine(weight=np.ones((2, 3)), bias=bias), lif((2,)))
    if bias.size == 1:  # one value for every output: NIR's broadcasting, a per-neuron bias of 0
        assert not np.any(from_nir(graph).populations[0].bias)
        return
    with pytest.raises(ModelError, match=r"one value per output|finite") as err:
        from_nir(graph)
    assert err.value.field == "bias"
    assert err.value.location == "NIR node 'n0' (Affine)"


def test_conv_bias_that_is_not_per_channel_is_refused() -> None:
    conv = nir.Conv2d(
        input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=1, bias=np.ones(8)
    )
    with pytest.raises(ModelError, match="one value per output channel") as err:
        from_nir(_one_layer(conv, lif((2, 2, 2)), (1, 4, 4)))
    assert (err.value.field, err.value.location) == ("bias", "NIR node 'n0' (Conv2d)")


def test_biased_projection_feeding_a_pool_is_refused() -> None:
    # The bias would have to pass through the pool: asyncsnn has a population after every projection (R1.2).
    affine = nir.Affine(weight=np.ones((4, 3)), bias=np.full(4, 0.5))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    with pytest.raises(ModelError, match="feeds a projection") as err:
        from_nir(_one_layer(affine, pool))
    assert err.value.location == "NIR node 'n0' (Affine)"


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


def test_tau_below_dt_is_refused() -> None:
    with pytest.raises(ModelError, match="below dt") as err:
        from_nir(_one_layer(nir.Linear(weight=np.ones((2, 3))), lif((2,), tau=SNNTORCH_DT * 8)))
    assert err.value.field == "tau"


# ----------------------------------------------------------------------------- recurrent graphs (R1.2, R4.9)


def _recurrent_network(rng: np.random.Generator, kind: str) -> Network:
    """A network with recurrent projections (R1.2), grid weights and biases."""
    if kind == "conv":  # a recurrent Conv2d (snnTorch's RLeaky with conv2d_channels) and a recurrent output
        return Network.sequential(
            input_shape=(1, 4, 4),
            layers=[Conv2d(grid_weights(rng, (2, 1, 3, 3), 0.5, 0.1), padding=1), Dense(grid_weights(rng, (3, 32)))],
            threshold=[0.75, 1.0],
            beta=[0.875, 0.5],
            bias=[0.125, grid_weights(rng, (3,), 0.2)],
            reset=["subtract_delayed", "none"],
            recurrent=[(1, 1, Conv2d(grid_weights(rng, (2, 2, 3, 3), 0.25), padding=1)), (2, 2, Dense(np.eye(3)))],
        )
    recurrent = {
        "self": [(1, 1, Dense(grid_weights(rng, (5, 5)))), (2, 2, Dense(grid_weights(rng, (4, 4))))],
        "backward": [(2, 1, Dense(grid_weights(rng, (5, 4)))), (1, 1, Dense(grid_weights(rng, (5, 5))))],
        "from_output": [(3, 1, Dense(grid_weights(rng, (5, 3)))), (3, 3, Dense(grid_weights(rng, (3, 3))))],
    }[kind]
    return Network.sequential(
        input_shape=(6,),
        layers=[
            Dense(grid_weights(rng, (5, 6), 0.5, 0.1)),
            Dense(grid_weights(rng, (4, 5))),
            Dense(grid_weights(rng, (3, 4))),
        ],
        threshold=[0.5, 0.75, 1.0],
        beta=[0.875, 1.0, 0.75],
        bias=[grid_weights(rng, (5,), 0.2), 0.0, grid_weights(rng, (3,), 0.2)],
        reset=["subtract_delayed", "zero", "subtract"],
        recurrent=recurrent,
    )


@pytest.mark.parametrize("through_file", [False, True])
@pytest.mark.parametrize("kind", ["self", "backward", "from_output", "conv"])
def test_recurrent_network_round_trips_exactly(tmp_path: Path, kind: str, through_file: bool) -> None:
    net = _recurrent_network(np.random.default_rng(3), kind)
    assert any(p.recurrent for p in net.projections)
    if through_file:
        write(tmp_path / "rec.nir", net, dt=SNNTORCH_DT)
        back = read(tmp_path / "rec.nir")
    else:
        back = from_nir(to_nir(net))
    assert_networks_equal(net, back)
    assert [p.recurrent for p in back.projections] == [p.recurrent for p in net.projections]


def test_to_nir_writes_a_recurrent_projection_as_a_cycle() -> None:
    net = _recurrent_network(np.random.default_rng(3), "self")
    graph = to_nir(net)
    edges = {tuple(e) for e in graph.edges}
    assert {("lif1", "proj3"), ("proj3", "lif1"), ("if2", "proj4"), ("proj4", "if2")} <= edges  # beta 1: an IF
    # The population's bias goes to the forward Affine, where other tools read it; the recurrent node is a Linear.
    assert type(graph.nodes["proj0"]).__name__ == "Affine"
    assert type(graph.nodes["proj3"]).__name__ == "Linear"
    np.testing.assert_array_equal(graph.nodes["proj0"].bias, net.populations[0].bias)


# ----------------------------------------------------------------------------- synaptic current (R4.12)


def _synaptic_network(rng: np.random.Generator, kind: str) -> Network:
    """Synaptic populations (per-neuron alpha with 0 and 1, beta with 1), every reset mode, grid weights.

    ``"recurrent"`` adds recurrent projections (R1.2): a population onto itself and the output onto
    the first population; ``"conv"`` has a convolution, a pool and a population without synaptic current.
    """
    alpha = np.array([0.0, 1.0, 0.5, 0.7, 0.99, 255 / 256, 1e-3, 0.875], dtype=np.float32)
    if kind == "conv":
        return Network.sequential(
            input_shape=(1, 4, 4),
            layers=[
                Conv2d(grid_weights(rng, (2, 1, 3, 3), 0.5, 0.1), padding=1),
                SumPool2d(2),
                Dense(grid_weights(rng, (3, 8))),
            ],
            threshold=[0.75, 1.0, 0.5],
            beta=[0.875, 1.0, 0.5],
            alpha=[rng.choice(alpha, (2, 4, 4)), 0.0, 0.9],
            bias=[0.125, 0.0, grid_weights(rng, (3,), 0.2)],
            reset=["subtract_delayed", "none", "zero"],
        )
    recurrent = [(1, 1, Dense(grid_weights(rng, (8, 8)))), (3, 1, Dense(grid_weights(rng, (8, 3))))]
    return Network.sequential(
        input_shape=(6,),
        layers=[
            Dense(grid_weights(rng, (8, 6), 0.5, 0.1)),
            Dense(grid_weights(rng, (4, 8))),
            Dense(grid_weights(rng, (3, 4))),
        ],
        threshold=[rng.integers(64, 512, 8).astype(np.float32) / 256, 0.75, 1.0],
        beta=[np.array([0.875, 1.0, 0.5, 0.9, 0.0, 1.0, 0.75, 0.3], np.float32), 1.0, 0.75],
        alpha=[alpha, 0.5, 1.0],  # an IF population with a synaptic current; alpha = 1 everywhere
        bias=[grid_weights(rng, (8,), 0.2), 0.0, grid_weights(rng, (3,), 0.2)],
        reset=["subtract_delayed", "zero", "subtract"],
        recurrent=recurrent if kind == "recurrent" else (),
    )


@pytest.mark.parametrize("dt", [1.0, 1e-3, SNNTORCH_DT])
@pytest.mark.parametrize("through_file", [False, True])
@pytest.mark.parametrize("kind", ["dense", "recurrent", "conv"])
def test_synaptic_network_round_trips_exactly(tmp_path: Path, kind: str, through_file: bool, dt: float) -> None:
    net = _synaptic_network(np.random.default_rng(5), kind)
    if through_file:
        write(tmp_path / "syn.nir", net, dt=dt)
        back = read(tmp_path / "syn.nir")
    else:
        back = from_nir(to_nir(net, dt=dt))
    assert_networks_equal(net, back)  # alpha, beta, threshold, bias and reset bit for bit
    assert [p.recurrent for p in back.projections] == [p.recurrent for p in net.projections]
    assert [p.synaptic for p in back.populations] == [p.synaptic for p in net.populations]


def _tiny_and_sampled(rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 values sampled over every binade of [2**-28, 1), then 0, 1 and values below 2**-28."""
    sampled = np.ldexp(rng.uniform(0.5, 1.0, n), rng.integers(-27, 1, n)).astype(np.float32)
    tiny = [2.0**-28, 2.0**-29, 1e-10, 2.0**-40, 1e-30, 1e-45, np.nextafter(1, 0, dtype=np.float32), 0.0, 1.0]
    return np.concatenate([sampled[sampled < 1], np.float32(tiny)])


@pytest.mark.parametrize("through_file", [False, True])
def test_alpha_and_beta_round_trip_bit_for_bit_over_float32(tmp_path: Path, through_file: bool) -> None:
    # tau = dt / (1 - value) in float64 gives every float32 value >= 2**-28 back (docs/nir.md); below that,
    # 1 - value has more bits than a float64 holds, and to_nir stores the value in the node's metadata.
    rng = np.random.default_rng(8)
    alpha = _tiny_and_sampled(rng, 20_000)
    beta = rng.permutation(_tiny_and_sampled(rng, alpha.size - 9))
    net = Network.sequential(
        input_shape=(1,), layers=[Dense(np.ones((alpha.size, 1)))], threshold=0.5, beta=beta, alpha=alpha
    )
    for dt in (1.0, SNNTORCH_DT, 1e-3**2, 0.37):
        graph = to_nir(net, dt=dt)
        assert {"asyncsnn_alpha", "asyncsnn_beta"} <= set(graph.nodes["cubalif1"].metadata)
        if through_file:
            write(tmp_path / "tiny.nir", net, dt=dt)
            assert_networks_equal(net, read(tmp_path / "tiny.nir"))
        else:
            assert_networks_equal(net, from_nir(graph))
    lif = Network.sequential(input_shape=(1,), layers=[Dense(np.ones((3, 1)))], threshold=0.5, beta=[[0.5, 0.25, 0.0]])
    assert "asyncsnn_beta" not in to_nir(lif).nodes["lif1"].metadata  # only where 1 - dt/tau does not do it


def test_stored_exact_values_apply_only_where_tau_gives_them() -> None:
    alpha, beta = np.float32([1e-10, 0.5]), np.float32([2.0**-40, 0.75])
    net = Network.sequential(input_shape=(1,), layers=[Dense(np.ones((2, 1)))], threshold=1.0, beta=beta, alpha=alpha)
    graph = to_nir(net, dt=1.0)
    node = graph.nodes["cubalif1"]
    np.testing.assert_array_equal(node.metadata["asyncsnn_alpha"], alpha)
    pop = from_nir(graph, dt=0.5).populations[0]  # another dt: 1 - dt/tau, not the stored values
    np.testing.assert_array_equal(pop.alpha, np.float32(1 - 0.5 / node.tau_syn))
    np.testing.assert_array_equal(pop.beta, np.float32(1 - 0.5 / node.tau_mem))


@pytest.mark.parametrize("value", [np.zeros(3), np.array([np.nan, 0.5]), "0.5"])
def test_bad_stored_exact_values_are_refused(value: Any) -> None:
    net = Network.sequential(input_shape=(1,), layers=[Dense(np.ones((2, 1)))], threshold=1.0, beta=0.5, alpha=0.5)
    graph = to_nir(net)
    graph.nodes["cubalif1"].metadata["asyncsnn_alpha"] = value
    with pytest.raises(ModelError) as err:
        from_nir(graph)
    assert err.value.field == "metadata['asyncsnn_alpha']"
    assert err.value.location == "NIR node 'cubalif1' (CubaLIF)"


def test_to_nir_writes_a_synaptic_population_as_a_cuba_lif() -> None:
    net = _synaptic_network(np.random.default_rng(5), "conv")
    dt = SNNTORCH_DT
    graph = to_nir(net, dt=dt)
    kinds = {n: type(node).__name__ for n, node in graph.nodes.items()}
    assert (kinds["cubalif1"], kinds["if2"], kinds["cubalif3"]) == ("CubaLIF", "IF", "CubaLIF")  # pool: alpha 0
    node, pop = graph.nodes["cubalif1"], net.populations[0]
    assert pop.alpha is not None
    alpha = pop.alpha.astype(np.float64)
    expected = dt / np.where(alpha == 1, 2.0**-60, 1 - alpha)  # alpha = 1: tau_syn = 2**60 dt, as beta = 1
    np.testing.assert_array_equal(node.tau_syn, expected)
    np.testing.assert_array_equal(node.w_in, expected / dt)  # w_in (dt / tau_syn) = 1
    np.testing.assert_array_equal(node.tau_syn[alpha == 0], dt)
    np.testing.assert_array_equal(node.tau_mem, dt / (1 - 0.875))
    np.testing.assert_array_equal(node.r, node.tau_mem / dt)  # r (dt / tau_mem) = 1
    np.testing.assert_array_equal(node.v_threshold, pop.threshold)
    assert not np.any(node.v_leak)
    assert not np.any(node.v_reset)
    assert node.metadata["asyncsnn_reset"] == "subtract_delayed"
    assert type(graph.nodes["proj0"]).__name__ == "Conv2d"  # the bias stays on the projection: it feeds S too
    np.testing.assert_array_equal(graph.nodes["proj0"].bias, [0.125, 0.125])


@pytest.mark.parametrize("engine", ["reference", "rust"])
def test_synaptic_round_trip_runs_like_the_original(engine: str) -> None:
    # R4.12 (asyncsnn.infer: the Rust engine, once it runs synaptic currents).
    infer = engine_infer(engine)
    rng = np.random.default_rng(6)
    net = _synaptic_network(rng, "recurrent")
    back = from_nir(to_nir(net))
    x = random_count_input(rng, net, batch=3, timesteps=8)
    for scheduler in ("layered", "fifo"):
        assert_results_equal(infer(net, x, scheduler=scheduler), infer(back, x, scheduler=scheduler))


def _cyclic_graph(first: str = "a", rec_bias: np.ndarray | None = None) -> Any:
    """input -> fa -> a -> fb -> b -> fo -> o -> output, with b -> back -> a closing a cycle (and a -> self -> a)."""
    rng = np.random.default_rng(5)
    back: Any = nir.Linear(weight=grid_weights(rng, (3, 2)))
    if rec_bias is not None:
        back = nir.Affine(weight=back.weight, bias=rec_bias)
    nodes = {
        "input": nir.Input(input_type=np.array([4])),
        "fa": nir.Affine(weight=grid_weights(rng, (3, 4)), bias=np.full(3, 0.25)),
        "fb": nir.Linear(weight=grid_weights(rng, (2, 3))),
        "self": nir.Linear(weight=grid_weights(rng, (3, 3))),
        "back": back,
        "fo": nir.Linear(weight=grid_weights(rng, (2, 2))),
        "o": lif((2,)),
        "output": nir.Output(output_type=np.array([2])),
    }
    neurons = {"a": lif((3,)), "b": lif((2,))}
    for name in (first, *(n for n in neurons if n != first)):  # node order must not decide the population order
        nodes[name] = neurons[name]
    edges = [("input", "fa"), ("fa", "a"), ("a", "fb"), ("fb", "b"), ("b", "back"), ("back", "a"), ("a", "self")]
    edges += [("self", "a"), ("b", "fo"), ("fo", "o"), ("o", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize("first", ["a", "b"])
def test_edges_that_close_a_cycle_become_recurrent_projections(first: str) -> None:
    graph = _cyclic_graph(first)
    net = from_nir(graph)
    assert [p.name for p in net.populations] == ["a", "b", "o"]  # the forward part's order
    pairs = {(p.source, p.target, p.recurrent) for p in net.projections}
    assert pairs == {(0, 1, False), (1, 2, False), (2, 1, True), (1, 1, True), (2, 3, False)}
    by_pair = {(p.source, p.target): p.layer for p in net.projections}
    for name, pair in (("back", (2, 1)), ("self", (1, 1)), ("fb", (1, 2))):
        layer = by_pair[pair]
        assert isinstance(layer, Dense)
        np.testing.assert_array_equal(layer.weight, graph.nodes[name].weight)


def test_recurrent_affine_bias_adds_to_its_target_population() -> None:
    net = from_nir(_cyclic_graph(rec_bias=np.array([0.5, -0.125, 0.0])))
    np.testing.assert_array_equal(net.populations[0].bias, [0.75, 0.125, 0.25])  # fa's 0.25 + back's bias


def test_recurrent_projection_of_the_wrong_size_is_refused() -> None:
    graph = _cyclic_graph()
    graph.nodes["back"] = nir.Linear(weight=np.ones((4, 2)))  # b feeds 4 values back into a's 3 neurons
    with pytest.raises(ModelError, match="feeds back into has 3") as err:
        from_nir(graph)
    assert err.value.location == "NIR node 'a' (LIF)"


def _nested_rleaky(n: int, inner: Any = None) -> Any:
    """A recurrent layer as a nested graph, the way snnTorch's RLeaky describes itself."""
    nodes = {
        "input": nir.Input(input_type=np.array([n])),
        "lif": lif((n,)),
        "w_rec": nir.Affine(weight=np.eye(n) * 0.5, bias=np.full(n, 0.125)),
        "output": nir.Output(output_type=np.array([n])),
    }
    edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    if inner is not None:  # a graph nested in the nested graph, between lif and the output
        nodes["deeper"] = inner
        edges = [*edges[:3], ("lif", "deeper"), ("deeper", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_nested_graphs_are_inlined() -> None:
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "fc": nir.Linear(weight=np.full((2, 3), 0.25)),
            "rl": _nested_rleaky(2),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "fc"), ("fc", "rl"), ("rl", "output")],
        type_check=False,
    )
    nodes = {
        "input": nir.Input(input_type=np.array([4])),
        "0": nir.Linear(weight=np.ones((3, 4))),
        "1": _nested_rleaky(3, inner),
        "output": nir.Output(output_type=np.array([2])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    net = from_nir(graph)
    assert [p.name for p in net.populations] == ["1.lif", "1.deeper.rl.lif"]
    assert [(p.source, p.target) for p in net.projections] == [(0, 1), (1, 1), (1, 2), (2, 2)]
    np.testing.assert_array_equal(net.populations[0].bias, [0.125] * 3)  # the recurrent Affine's bias
    np.testing.assert_array_equal(net.populations[1].bias, [0.125] * 2)


def test_nested_graph_without_one_input_and_one_output_is_refused() -> None:
    sub = _nested_rleaky(3)
    sub.nodes["output2"] = nir.Output(output_type=np.array([3]))
    sub.edges.append(("lif", "output2"))
    nodes = {
        "input": nir.Input(input_type=np.array([4])),
        "0": nir.Linear(weight=np.ones((3, 4))),
        "1": sub,
        "output": nir.Output(output_type=np.array([3])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    with pytest.raises(ModelError, match="exactly one Input and one Output") as err:
        from_nir(graph)
    assert err.value.location == "NIR node '1' (NIRGraph)"


def test_output_population_feeding_a_forward_branch_is_still_refused() -> None:
    # Only an edge that closes a cycle can leave the output population (which comes last) as a recurrent one.
    graph = chain(nir.Linear(weight=np.ones((2, 3))), lif((2,)), input_shape=(3,))
    graph.nodes["fb"] = nir.Linear(weight=np.ones((2, 2)))
    graph.nodes["b"] = lif((2,))
    graph.edges += [("n1", "fb"), ("fb", "b")]
    with pytest.raises(ModelError, match="must be the last population: it feeds 'b'") as err:
        from_nir(graph)
    assert err.value.location == "NIR node 'n1' (LIF)"


def test_recurrent_projection_from_the_output_into_a_dead_end_round_trips() -> None:
    # No cycle in the graph, but to_nir's stored order says the projection 3 -> 2 is recurrent.
    rng = np.random.default_rng(6)
    pops = [Population.create((3,), 0.5, 0.5), Population.create((2,), 0.5, 0.5), Population.create((2,), 0.5, 0.5)]
    projs = [
        Projection(0, 1, Dense(grid_weights(rng, (3, 4)))),
        Projection(1, 3, Dense(grid_weights(rng, (2, 3)))),
        Projection(3, 2, Dense(grid_weights(rng, (2, 2)))),  # population 2 leads nowhere
    ]
    net = Network((4,), pops, projs)
    back = from_nir(to_nir(net))
    assert_networks_equal(net, back)
    assert [p.recurrent for p in back.projections] == [False, False, True]


def test_a_cycle_without_a_population_is_still_refused() -> None:
    # Two projections feeding each other are no recurrence of populations: still refused (R1.2).
    graph = _cyclic_graph()
    graph.nodes["x1"] = nir.Linear(weight=np.ones((2, 2)))
    graph.nodes["x2"] = nir.Linear(weight=np.ones((2, 2)))
    graph.edges += [("x1", "x2"), ("x2", "x1")]
    with pytest.raises(ModelError, match="must read the Input or a LIF/IF population, not another projection"):
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


#: snnTorch ``Leaky`` settings -> (reset_mechanism, reset_delay, the ``reset`` from_nir needs): R4.5 / R4.8.
SNNTORCH_RESETS = {
    "default": ("subtract", True, "subtract_delayed"),  # snnTorch's defaults
    "none": ("none", True, "none"),
    "subtract_now": ("subtract", False, "subtract"),  # equal unless V > 2 theta (R4.8): checked below
    "zero": ("zero", False, "zero"),
}


def _leaky(
    snn: Any, torch: Any, rng: np.random.Generator, shape: tuple[int, ...], mode: str, output: bool = False
) -> Any:
    # Per-neuron beta and threshold: snnTorch 1.0 + nir 1.0.8 cannot type-check scalar ones (issue #410).
    # beta >= 0.5 keeps snnTorch's float32 tau = 1e-4 / (1 - beta) exact enough to recover beta bit for bit.
    # snnTorch fires on mem - threshold > 0, the same strict comparison as R4.3, so membranes that land
    # exactly on the threshold need no special care.
    betas = [0.9375] if mode == "subtract_now" else [0.5, 0.75, 0.875, 0.9375]  # see _no_double_reset
    beta = torch.tensor(rng.choice(betas, size=shape), dtype=torch.float32)
    threshold = torch.tensor(rng.integers(128, 384, size=shape) / 256, dtype=torch.float32)
    mechanism, delay, _ = SNNTORCH_RESETS[mode]
    if mode == "default":  # leave reset_mechanism and reset_delay at snnTorch's defaults
        return snn.Leaky(beta=beta, threshold=threshold, init_hidden=True, output=output)
    return snn.Leaky(
        beta=beta, threshold=threshold, init_hidden=True, output=output, reset_mechanism=mechanism, reset_delay=delay
    )


def _linear(torch: Any, rng: np.random.Generator, n_in: int, n_out: int, spread: float = 0.5) -> Any:
    m = torch.nn.Linear(n_in, n_out)  # bias=True, torch's default
    mean = 0.12 if spread >= 0.5 else 0.3
    m.weight.data = torch.tensor(grid_weights(rng, (n_out, n_in), spread, mean))  # exact sums in any order (R8.2)
    m.bias.data = torch.tensor(grid_weights(rng, (n_out,), 0.2, 0.05))
    return m


def _run_snntorch(snn: Any, torch: Any, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output spikes [B, T, n_out], spikes per neuron layer [B, P] of an snnTorch Sequential, and per
    sample whether a membrane was left above its threshold after a step (where snnTorch's "subtract"
    without delay differs from asyncsnn's, R4.8)."""
    from snntorch import utils as snn_utils  # type: ignore[import-untyped]

    snn_utils.reset(model)
    batch, steps = x.shape[:2]
    neurons = (snn.Leaky, snn.RLeaky, snn.Synaptic, snn.RSynaptic)
    leaks = [m for m in model if isinstance(m, neurons)]
    per_layer = np.zeros((batch, len(leaks)), dtype=np.int64)
    above = np.zeros(batch, dtype=bool)
    out = []
    with torch.no_grad():
        for t in range(steps):
            cur = torch.tensor(x[:, t])
            k = 0
            for module in model:
                cur = module(cur)
                if isinstance(cur, tuple):  # output=True returns (spk, mem)
                    cur = cur[0]
                if isinstance(module, neurons):
                    per_layer[:, k] += cur.reshape(batch, -1).sum(1).long().numpy()
                    above |= (module.mem > module.threshold).reshape(batch, -1).any(1).numpy()
                    k += 1
            out.append(cur.numpy())
    return np.stack(out, axis=1).astype(np.int64), per_layer, above


def _no_double_reset(torch: Any, model: Any) -> None:
    """Raise every threshold of ``model`` to at least the largest current one step can bring.

    A membrane left at most at theta after a reset then stays at most at 2 theta in the next step, so
    snnTorch's Leaky and RLeaky(reset_mechanism="subtract", reset_delay=False) never meet their corner
    (R4.8).
    """
    largest = 2.0  # the input counts; spikes are 0 or 1
    bound: np.ndarray = np.zeros(1)
    for m in model:
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
            fan_in = np.clip(w, 0, None).reshape(w.shape[0], -1).sum(1) * largest + np.clip(b, 0, None)
            bound = fan_in if w.ndim == 2 else fan_in[:, None, None]
        elif isinstance(m, torch.nn.AvgPool2d):
            bound = np.ones((1, 1, 1)) * largest  # an average of spikes
        elif hasattr(m, "threshold"):
            recurrent = getattr(m, "recurrent", None)  # an RLeaky: its own spikes of the last step add
            if hasattr(recurrent, "weight"):
                w, b = recurrent.weight.detach().numpy(), recurrent.bias.detach().numpy()
                bound = bound + np.clip(w, 0, None).sum(1) + np.clip(b, 0, None)
            elif hasattr(recurrent, "V"):
                bound = bound + np.clip(recurrent.V.detach().numpy(), 0, None)
            theta = m.threshold.detach().numpy()
            raised = np.maximum(theta, np.ceil(np.broadcast_to(bound, theta.shape) * 256) / 256)
            m.threshold = torch.tensor(raised.astype(np.float32))
            largest = 1.0


@functools.cache
def _snntorch_case(arch: str, mode: str) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """An snnTorch model with biased layers, exported by snnTorch, imported, and run by snnTorch.

    Returns the imported network, the input and snnTorch's output spikes and spikes per layer. For
    ``"subtract_now"`` the thresholds are raised so that no membrane is left above its threshold
    after a step (_no_double_reset), where snnTorch and asyncsnn differ (R4.8; that corner on its own:
    test_snntorch_subtract_without_delay_differs_only_above_twice_the_threshold).
    """
    snn, torch = _snntorch()
    from snntorch.export_nir import export_to_nir  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    # "subtract_now": thresholds above any one-step current (_no_double_reset), so mostly positive weights.
    spread = 0.2 if mode == "subtract_now" else 0.5
    if arch == "dense":
        in_shape: tuple[int, ...] = (10,)
        model = torch.nn.Sequential(
            _linear(torch, rng, 10, 8, spread),
            _leaky(snn, torch, rng, (8,), mode),
            _linear(torch, rng, 8, 6, spread),
            _leaky(snn, torch, rng, (6,), mode),
            _linear(torch, rng, 6, 4, spread),
            _leaky(snn, torch, rng, (4,), mode, output=True),
        )
    else:
        in_shape = (2, 6, 6)
        conv = torch.nn.Conv2d(2, 3, 3, padding=1)  # bias=True: one bias per output channel
        conv.weight.data = torch.tensor(grid_weights(rng, (3, 2, 3, 3), spread, 0.1 if spread >= 0.5 else 0.2))
        conv.bias.data = torch.tensor(grid_weights(rng, (3,), 0.2, 0.0))
        model = torch.nn.Sequential(
            conv,
            _leaky(snn, torch, rng, (3, 6, 6), mode),
            torch.nn.AvgPool2d(2),  # weight 1/4: exact in float32
            _leaky(snn, torch, rng, (3, 3, 3), mode),
            torch.nn.Flatten(),
            _linear(torch, rng, 27, 4, spread),
            _leaky(snn, torch, rng, (4,), mode, output=True),
        )
    if mode == "subtract_now":
        _no_double_reset(torch, model)
    graph = export_to_nir(model, torch.zeros(1, *in_shape), ignore_dims=[0])
    net = from_nir(graph, dt=SNNTORCH_DT, reset=SNNTORCH_RESETS[mode][2])
    leaks = [m for m in model if isinstance(m, snn.Leaky)]
    for module, pop in zip(leaks, net.populations, strict=True):
        np.testing.assert_array_equal(pop.beta, module.beta.numpy())
        np.testing.assert_array_equal(pop.threshold, module.threshold.numpy())
        assert pop.reset == SNNTORCH_RESETS[mode][2]
    biased = [m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    np.testing.assert_array_equal(net.populations[-1].bias, biased[-1].bias.detach().numpy())
    if arch == "conv":  # the Conv2d's per-channel bias reaches every position of its channel
        bias = net.populations[0].bias
        np.testing.assert_array_equal(bias, np.broadcast_to(conv.bias.detach().numpy()[:, None, None], bias.shape))
        assert not np.any(net.populations[1].bias)  # the pool has no bias
    x = random_count_input(rng, net, batch=16, timesteps=20, density=0.3, max_count=2)
    out_spikes, layer_spikes, above = _run_snntorch(snn, torch, model, x)
    if mode == "subtract_now":
        assert not np.any(above), "no membrane should be left above its threshold (R4.8)"
    assert out_spikes.sum() > 0, "the test network should spike"
    assert np.all(layer_spikes.sum(0) > 0), "every layer should spike"
    return net, x, out_spikes, layer_spikes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("mode", list(SNNTORCH_RESETS))
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_snntorch_export_is_the_layer_synchronous_formula(arch: str, mode: str) -> None:
    # R4.5 in numpy (scripts/make_nir_fixtures.py) on the imported network: biases and reset modes mapped right.
    net, x, out_spikes, layer_spikes = _snntorch_case(arch, mode)
    expected_out, expected_layers = FIXTURE_SCRIPT.layer_synchronous(net, x)
    np.testing.assert_array_equal(expected_out, out_spikes)
    np.testing.assert_array_equal(expected_layers, layer_spikes)


def engine_infer(name: str) -> Any:
    """``infer`` of engine ``name`` (``"reference"`` or ``"rust"``)."""
    from asyncsnn import reference

    return {"reference": reference.infer, "rust": asyncsnn.infer}[name]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
@pytest.mark.parametrize("mode", list(SNNTORCH_RESETS))
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_snntorch_export_runs_like_snntorch_under_layered(arch: str, mode: str, engine: str) -> None:
    infer = engine_infer(engine)
    net, x, out_spikes, layer_spikes = _snntorch_case(arch, mode)
    result = infer(net, x, scheduler="layered")
    np.testing.assert_array_equal(result.timestep_output_counts, out_spikes)
    np.testing.assert_array_equal(result.spikes, layer_spikes)


#: snnTorch ``RLeaky`` settings -> (reset_mechanism, reset_delay, the ``reset`` from_nir needs); R4.5 with R4.9.
#: ``reset_mechanism="zero"`` with ``reset_delay=True`` has no asyncsnn mode: RLeaky then zeroes the whole
#: membrane of the step after a spike, that step's input included (docs/nir.md).
SNNTORCH_RECURRENT_RESETS = {
    "default": (None, None, "subtract_delayed"),  # snnTorch's defaults: subtract, one step late
    "none": ("none", True, "none"),
    "zero": ("zero", False, "zero"),
    "subtract_now": ("subtract", False, "subtract"),  # equal unless V > 2 theta, as for Leaky: _no_double_reset
}


def _rleaky(
    snn: Any, torch: Any, rng: np.random.Generator, n: int, mode: str, all_to_all: bool, output: bool = False
) -> Any:
    """An snnTorch RLeaky with per-neuron beta and threshold, and grid recurrent weights (and bias)."""
    betas = [0.9375] if mode == "subtract_now" else [0.5, 0.75, 0.875, 0.9375]  # as _leaky
    beta = torch.tensor(rng.choice(betas, size=n), dtype=torch.float32)
    threshold = torch.tensor(rng.integers(128, 384, size=n) / 256, dtype=torch.float32)
    mechanism, delay, _ = SNNTORCH_RECURRENT_RESETS[mode]
    kwargs: dict[str, Any] = {} if mechanism is None else {"reset_mechanism": mechanism, "reset_delay": delay}
    if not all_to_all:  # one recurrent weight per neuron: snnTorch exports a diagonal Linear
        v = torch.tensor(grid_weights(rng, (n,), 0.5))
        return snn.RLeaky(beta, V=v, all_to_all=False, threshold=threshold, init_hidden=True, output=output, **kwargs)
    m = snn.RLeaky(beta, linear_features=n, threshold=threshold, init_hidden=True, output=output, **kwargs)
    m.recurrent.weight.data = torch.tensor(grid_weights(rng, (n, n), 0.5))  # a biased torch Linear: an Affine
    m.recurrent.bias.data = torch.tensor(grid_weights(rng, (n,), 0.2))
    return m


@functools.cache
def _snntorch_recurrent_case(arch: str, mode: str) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """An snnTorch model with an RLeaky layer, exported by snnTorch, imported, and run by snnTorch."""
    snn, torch = _snntorch()
    from snntorch.export_nir import export_to_nir

    rng = np.random.default_rng(2)
    spread = 0.2 if mode == "subtract_now" else 0.5  # as _snntorch_case
    if arch == "output":  # Linear -> Leaky -> Linear -> RLeaky (the output layer is recurrent)
        model = torch.nn.Sequential(
            _linear(torch, rng, 10, 8, spread),
            _leaky(snn, torch, rng, (8,), mode),
            _linear(torch, rng, 8, 4, spread),
            _rleaky(snn, torch, rng, 4, mode, all_to_all=True, output=True),
        )
    else:  # Linear -> RLeaky -> Linear -> Leaky
        model = torch.nn.Sequential(
            _linear(torch, rng, 10, 8, spread),
            _rleaky(snn, torch, rng, 8, mode, all_to_all=arch == "hidden"),
            _linear(torch, rng, 8, 4, spread),
            _leaky(snn, torch, rng, (4,), mode, output=True),
        )
    if mode == "subtract_now":
        _no_double_reset(torch, model)
    graph = export_to_nir(model, torch.zeros(1, 10), ignore_dims=[0])
    reset = SNNTORCH_RECURRENT_RESETS[mode][2]
    net = from_nir(graph, dt=SNNTORCH_DT, reset=reset)
    rec = 2 if arch == "output" else 1
    assert sorted((p.source, p.target, p.recurrent) for p in net.projections) == sorted(
        [(0, 1, False), (1, 2, False), (rec, rec, True)]
    )
    rleaky = model[rec * 2 - 1]
    recurrent = next(p.layer for p in net.projections if p.recurrent)
    assert isinstance(recurrent, Dense)
    if arch == "one_to_one":
        np.testing.assert_array_equal(recurrent.weight, np.diag(rleaky.recurrent.V.detach().numpy()))
        np.testing.assert_array_equal(net.populations[0].bias, model[0].bias.detach().numpy())
    else:  # the recurrent Linear's bias adds to the bias of the Linear feeding the layer
        np.testing.assert_array_equal(recurrent.weight, rleaky.recurrent.weight.detach().numpy())
        total = model[rec * 2 - 2].bias.detach().numpy() + rleaky.recurrent.bias.detach().numpy()
        np.testing.assert_array_equal(net.populations[rec - 1].bias, total)
    np.testing.assert_array_equal(net.populations[rec - 1].beta, rleaky.beta.numpy())
    np.testing.assert_array_equal(net.populations[rec - 1].threshold, rleaky.threshold.numpy())
    assert {p.reset for p in net.populations} == {reset}
    x = random_count_input(rng, net, batch=16, timesteps=20, density=0.3, max_count=2)
    out_spikes, layer_spikes, above = _run_snntorch(snn, torch, model, x)
    if mode == "subtract_now":
        assert not np.any(above), "no membrane should be left above its threshold (R4.8)"
    assert out_spikes.sum() > 0, "the test network should spike"
    assert np.all(layer_spikes.sum(0) > 0), "every layer should spike"
    return net, x, out_spikes, layer_spikes


RECURRENT_ARCHS = ["hidden", "output", "one_to_one"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("mode", list(SNNTORCH_RECURRENT_RESETS))
@pytest.mark.parametrize("arch", RECURRENT_ARCHS)
def test_snntorch_rleaky_export_is_the_layer_synchronous_formula(arch: str, mode: str) -> None:
    # R4.5 with R s_{t-1} in numpy: the recurrent Linear, its bias and the reset mapped right.
    net, x, out_spikes, layer_spikes = _snntorch_recurrent_case(arch, mode)
    expected_out, expected_layers = FIXTURE_SCRIPT.layer_synchronous(net, x)
    np.testing.assert_array_equal(expected_out, out_spikes)
    np.testing.assert_array_equal(expected_layers, layer_spikes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
@pytest.mark.parametrize("mode", list(SNNTORCH_RECURRENT_RESETS))
@pytest.mark.parametrize("arch", RECURRENT_ARCHS)
def test_snntorch_rleaky_export_runs_like_snntorch_under_layered(arch: str, mode: str, engine: str) -> None:
    # R4.9: under layered the recurrent current is carried to the next timestep, as RLeaky computes it.
    net, x, out_spikes, layer_spikes = _snntorch_recurrent_case(arch, mode)
    result = engine_infer(engine)(net, x, scheduler="layered")
    np.testing.assert_array_equal(result.timestep_output_counts, out_spikes)
    np.testing.assert_array_equal(result.spikes, layer_spikes)


#: snnTorch ``Synaptic`` / ``RSynaptic`` settings -> (reset_mechanism, reset_delay, the ``reset`` from_nir needs).
#: ``RSynaptic`` with ``reset_delay=False`` fails in snnTorch 1.0 (its forward reads the ``spk`` argument, None
#: with ``init_hidden=True``), so its ``"zero"`` is tested for ``Synaptic`` only.
SNNTORCH_SYNAPTIC_RESETS = {
    "default": (None, None, "subtract_delayed"),  # snnTorch's defaults: subtract, one step late
    "none": ("none", True, "none"),
    "zero": ("zero", False, "zero"),
}


def _synaptic(
    snn: Any,
    torch: Any,
    rng: np.random.Generator,
    shape: tuple[int, ...],
    mode: str,
    recurrent: str | None = None,
    output: bool = False,
) -> Any:
    """An snnTorch Synaptic (``recurrent`` None) or RSynaptic (``"all_to_all"``, ``"one_to_one"``).

    Per-neuron alpha, beta and threshold (snnTorch issue #410), alpha and beta on the grid (snnTorch's float32
    tau_syn and tau_mem give them back bit for bit), grid recurrent weights and bias.
    """
    alpha = torch.tensor(rng.choice([0.0, 0.5, 0.75, 0.875], size=shape), dtype=torch.float32)
    beta = torch.tensor(rng.choice([0.5, 0.75, 0.875, 0.9375], size=shape), dtype=torch.float32)
    threshold = torch.tensor(rng.integers(512, 1536, size=shape) / 256, dtype=torch.float32)
    mechanism, delay, _ = SNNTORCH_SYNAPTIC_RESETS[mode]
    kw: dict[str, Any] = {"threshold": threshold, "init_hidden": True, "output": output}
    kw |= {} if mechanism is None else {"reset_mechanism": mechanism, "reset_delay": delay}
    if recurrent is None:
        return snn.Synaptic(alpha=alpha, beta=beta, **kw)
    (n,) = shape
    if recurrent == "one_to_one":  # one recurrent weight per neuron: snnTorch exports a diagonal Linear
        return snn.RSynaptic(alpha, beta, V=torch.tensor(grid_weights(rng, (n,), 0.5)), all_to_all=False, **kw)
    m = snn.RSynaptic(alpha, beta, linear_features=n, **kw)
    m.recurrent.weight.data = torch.tensor(grid_weights(rng, (n, n), 0.5))  # a biased torch Linear: an Affine
    m.recurrent.bias.data = torch.tensor(grid_weights(rng, (n,), 0.2))
    return m


def _synaptic_model(
    snn: Any, torch: Any, rng: np.random.Generator, arch: str, mode: str
) -> tuple[Any, tuple[int, ...]]:
    """``dense``: Linear-Synaptic-Linear-Synaptic; ``conv``: Conv2d-Synaptic-AvgPool2d-Synaptic-Linear-Synaptic;
    ``hidden``, ``one_to_one``: Linear-RSynaptic-Linear-Synaptic; ``output``: Linear-Synaptic-Linear-RSynaptic."""
    if arch == "conv":
        conv = torch.nn.Conv2d(2, 3, 3, padding=1)  # bias=True: one bias per output channel
        conv.weight.data = torch.tensor(grid_weights(rng, (3, 2, 3, 3), 0.5, 0.1))
        conv.bias.data = torch.tensor(grid_weights(rng, (3,), 0.2, 0.0))
        return torch.nn.Sequential(
            conv,
            _synaptic(snn, torch, rng, (3, 6, 6), mode),
            torch.nn.AvgPool2d(2),  # weight 1/4: exact in float32
            _synaptic(snn, torch, rng, (3, 3, 3), mode),
            torch.nn.Flatten(),
            _linear(torch, rng, 27, 4),
            _synaptic(snn, torch, rng, (4,), mode, output=True),
        ), (2, 6, 6)
    first = "all_to_all" if arch == "hidden" else "one_to_one" if arch == "one_to_one" else None
    return torch.nn.Sequential(
        _linear(torch, rng, 10, 8),
        _synaptic(snn, torch, rng, (8,), mode, first),
        _linear(torch, rng, 8, 4),
        _synaptic(snn, torch, rng, (4,), mode, "all_to_all" if arch == "output" else None, output=True),
    ), (10,)


@functools.cache
def _snntorch_synaptic_case(arch: str, mode: str) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """An snnTorch model of Synaptic / RSynaptic layers, exported by snnTorch, imported, and run by snnTorch."""
    snn, torch = _snntorch()
    from snntorch.export_nir import export_to_nir

    rng = np.random.default_rng(12)
    model, in_shape = _synaptic_model(snn, torch, rng, arch, mode)
    graph = export_to_nir(model, torch.zeros(1, *in_shape), ignore_dims=[0])
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"CubaLIF"}
    reset = SNNTORCH_SYNAPTIC_RESETS[mode][2]
    net = from_nir(graph, dt=SNNTORCH_DT, reset=reset)
    cells = [m for m in model if isinstance(m, (snn.Synaptic, snn.RSynaptic))]
    for module, pop in zip(cells, net.populations, strict=True):  # alpha, beta and threshold bit for bit
        np.testing.assert_array_equal(pop.alpha, module.alpha.numpy())
        np.testing.assert_array_equal(pop.beta, module.beta.numpy())
        np.testing.assert_array_equal(pop.threshold, module.threshold.numpy())
        assert pop.reset == reset
        assert pop.synaptic
    recurrent = [(p.source, p.target) for p in net.projections if p.recurrent]
    assert recurrent == {"hidden": [(1, 1)], "one_to_one": [(1, 1)], "output": [(2, 2)]}.get(arch, [])
    if arch in ("hidden", "output"):  # the recurrent Linear's bias adds to the bias of the Linear feeding the layer
        rec = recurrent[0][0]
        total = model[rec * 2 - 2].bias.detach().numpy() + model[rec * 2 - 1].recurrent.bias.detach().numpy()
        np.testing.assert_array_equal(net.populations[rec - 1].bias, total)
    x = random_count_input(rng, net, batch=16, timesteps=20, density=0.3, max_count=2)
    out_spikes, layer_spikes, _ = _run_snntorch(snn, torch, model, x)
    assert out_spikes.sum() > 0, "the test network should spike"
    assert np.all(layer_spikes.sum(0) > 0), "every layer should spike"
    return net, x, out_spikes, layer_spikes


def synaptic_layer_synchronous(net: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R4.5 with R4.12 in numpy: ``S_t = alpha S_{t-1} + (W s_t + R s_{t-1} + b)``, ``U_t = beta V_{t-1} + S_t
    - theta d_t``, every operation in float32 (the current, exact on the grid, summed in float64)."""
    batch, steps = x.shape[:2]
    shapes, pops, f32 = net.population_shapes, net.populations, np.float32
    mats = [(p.source, p.target, FIXTURE_SCRIPT.projection_matrix(p.layer, shapes[p.source])) for p in net.projections]
    v = [np.zeros((batch, p.size), f32) for p in pops]
    syn = [np.zeros((batch, p.size), f32) for p in pops]
    debt = [np.zeros((batch, p.size), bool) for p in pops]
    per_pop = np.zeros((batch, len(pops)), np.int64)
    out = np.zeros((batch, steps, pops[-1].size), np.int64)
    spikes: list[np.ndarray] = [np.zeros((batch, int(np.prod(shape)))) for shape in shapes]
    for t in range(steps):
        previous, spikes = spikes, [x[:, t].reshape(batch, -1).astype(np.float64)]
        for k, pop in enumerate(pops):
            assert pop.bias is not None
            assert pop.alpha is not None
            current = np.broadcast_to(pop.bias.reshape(-1).astype(np.float64), (batch, pop.size)).copy()
            for source, target, matrix in mats:
                if target == k + 1:
                    current += (spikes[source] if source < target else previous[source]) @ matrix.T
            theta, beta, alpha = pop.threshold.reshape(-1), pop.beta.reshape(-1), pop.alpha.reshape(-1)
            syn[k] = ((alpha * syn[k]).astype(f32) + current.astype(f32)).astype(f32)
            u = ((beta * v[k]).astype(f32) + syn[k]).astype(f32)
            u = np.where(debt[k], u - theta, u).astype(f32)
            fired = u > theta
            if pop.reset == "zero":
                v[k] = np.where(fired, f32(0), u).astype(f32)
            elif pop.reset == "subtract":
                v[k] = np.where(fired, u - theta, u).astype(f32)
            else:
                v[k] = u
            debt[k] = fired & (pop.reset == "subtract_delayed")
            spikes.append(fired.astype(np.float64))
            per_pop[:, k] += fired.sum(1)
        out[:, t] = spikes[-1]
    return out, per_pop


SYNAPTIC_CASES = [(arch, mode) for arch in ("dense", "conv") for mode in SNNTORCH_SYNAPTIC_RESETS] + [
    (arch, mode) for arch in ("hidden", "one_to_one", "output") for mode in ("default", "none")
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("arch", "mode"), SYNAPTIC_CASES)
def test_snntorch_synaptic_export_is_the_layer_synchronous_formula(arch: str, mode: str) -> None:
    # R4.5 with R4.12 in numpy on the imported network: alpha, biases, recurrence and reset mapped right.
    net, x, out_spikes, layer_spikes = _snntorch_synaptic_case(arch, mode)
    expected_out, expected_layers = synaptic_layer_synchronous(net, x)
    np.testing.assert_array_equal(expected_out, out_spikes)
    np.testing.assert_array_equal(expected_layers, layer_spikes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
@pytest.mark.parametrize(("arch", "mode"), SYNAPTIC_CASES)
def test_snntorch_synaptic_export_runs_like_snntorch_under_layered(arch: str, mode: str, engine: str) -> None:
    # snnTorch's Synaptic and RSynaptic are R4.12 under layered (the Rust engine: once it runs synaptic currents).
    net, x, out_spikes, layer_spikes = _snntorch_synaptic_case(arch, mode)
    result = engine_infer(engine)(net, x, scheduler="layered")
    np.testing.assert_array_equal(result.timestep_output_counts, out_spikes)
    np.testing.assert_array_equal(result.spikes, layer_spikes)


@pytest.mark.parametrize("engine", [None, "reference", "rust"])
def test_snntorch_subtract_without_delay_differs_only_above_twice_the_threshold(engine: str | None) -> None:
    # snnTorch's Leaky(reset_mechanism="subtract", reset_delay=False) computes its reset signal from the stored
    # membrane: while that is still above theta after a spike's subtraction, every later step first subtracts
    # theta before the spike check, and adds it back when no spike follows (do_reset = spk - reset = -1). The
    # membrane stays where it is and the neuron is silent until a step brings it above 2 theta; asyncsnn's
    # "subtract" (R4.8) fires again at once. One neuron, no leak, one current of 2.5 theta.
    snn, torch = _snntorch()
    leaky = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract", reset_delay=False)
    mem = torch.zeros(1)
    spikes, mems = [], []
    for current in (2.5, 0.0, 0.0, 0.0):
        spk, mem = leaky(torch.tensor([current]), mem)
        spikes.append(int(spk.item()))
        mems.append(float(mem.item()))
    assert spikes == [1, 0, 0, 0]
    assert mems == [1.5, 1.5, 1.5, 1.5]
    net = Network.sequential(
        input_shape=(1,), layers=[Dense(np.ones((1, 1)))], threshold=1.0, beta=1.0, reset="subtract"
    )
    x = np.array([[[2.5], [0.0], [0.0], [0.0]]], np.float32)
    if engine is None:
        out = FIXTURE_SCRIPT.layer_synchronous(net, x)[0]
    else:
        out = engine_infer(engine)(net, x, scheduler="layered").timestep_output_counts
    assert out[0, :, 0].tolist() == [1, 1, 0, 0]  # 2.5 -> spike, 1.5 -> spike, 0.5 stays


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


@functools.cache
def _snntorch_import_case() -> tuple[Network, np.ndarray, np.ndarray]:
    """A biased network written by to_nir, read by snnTorch's importer and run by snnTorch."""
    _, torch = _snntorch()
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir  # type: ignore[import-untyped]

    rng = np.random.default_rng(1)
    net = Network.sequential(
        input_shape=(10,),
        layers=[Dense(grid_weights(rng, (8, 10), 0.5, 0.15)), Dense(grid_weights(rng, (4, 8), 0.5, 0.15))],
        threshold=[0.75, 1.0],  # snnTorch's importer needs one threshold per layer
        beta=[0.875, 0.75],
        bias=[grid_weights(rng, (8,), 0.2), grid_weights(rng, (4,), 0.2)],  # written as Affine nodes
    )
    module = import_from_nir(to_nir(net, dt=SNNTORCH_DT))  # resets to zero: the network's reset
    x = random_count_input(rng, net, batch=8, timesteps=12)
    snn_utils.reset(module)
    spikes = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out = module(torch.tensor(x[:, t]))
            spikes.append(out[0] if isinstance(out, tuple) else out)
    expected = torch.stack(spikes, 1).numpy().astype(np.int64)
    assert expected.sum() > 0
    return net, x, expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_to_nir_loads_into_snntorch_with_its_biases() -> None:
    net, x, expected = _snntorch_import_case()
    np.testing.assert_array_equal(FIXTURE_SCRIPT.layer_synchronous(net, x)[0], expected)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
def test_to_nir_loads_into_snntorch_and_spikes_the_same(engine: str) -> None:
    infer = engine_infer(engine)
    net, x, expected = _snntorch_import_case()
    np.testing.assert_array_equal(infer(net, x, scheduler="layered").timestep_output_counts, expected)


@functools.cache
def _snntorch_synaptic_import_case() -> tuple[Network, np.ndarray, np.ndarray]:
    """A synaptic network (R4.12) written by to_nir, read by snnTorch's importer (Synaptic layers), run by snnTorch."""
    _, torch = _snntorch()
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    rng = np.random.default_rng(1)
    net = Network.sequential(
        input_shape=(10,),
        layers=[Dense(grid_weights(rng, (8, 10), 0.5, 0.15)), Dense(grid_weights(rng, (4, 8), 0.5, 0.15))],
        threshold=[1.5, 2.0],  # snnTorch's importer needs one threshold per layer
        beta=[0.875, 0.75],
        alpha=[0.75, 0.5],  # and one alpha (a per-neuron one becomes a float64 tensor in snnTorch)
        bias=[grid_weights(rng, (8,), 0.2), grid_weights(rng, (4,), 0.2)],
    )
    module = import_from_nir(to_nir(net, dt=SNNTORCH_DT))  # Synaptic(reset_mechanism="zero", reset_delay=False)
    assert [type(m).__name__ for m in module.children()].count("Synaptic") == 2
    x = random_count_input(rng, net, batch=8, timesteps=12)
    snn_utils.reset(module)
    spikes = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out = module(torch.tensor(x[:, t]))
            spikes.append(out[0] if isinstance(out, tuple) else out)
    expected = torch.stack(spikes, 1).numpy().astype(np.int64)
    assert expected.sum() > 0
    return net, x, expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("engine", [None, "reference", "rust"])
def test_to_nir_synaptic_loads_into_snntorch_and_spikes_the_same(engine: str | None) -> None:
    net, x, expected = _snntorch_synaptic_import_case()
    if engine is None:
        got = synaptic_layer_synchronous(net, x)[0]
    else:
        got = engine_infer(engine)(net, x, scheduler="layered").timestep_output_counts
    np.testing.assert_array_equal(got, expected)


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

"""Issue 15, NIR items 10, 13-16: typed errors for malformed graphs and files, the nir
version floor, Norse's conventions, ``IF`` nodes discretised with ``dt``, and interop with
the exports of Norse, SpikingJelly and sinabs (spike for spike under ``layered``)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")

import asyncsnn  # noqa: E402
import asyncsnn.nir as anir  # noqa: E402
from asyncsnn import Dense, Network  # noqa: E402
from asyncsnn._spec import SPEC_VERSION  # noqa: E402
from asyncsnn.exceptions import MissingDependencyError, ModelError  # noqa: E402
from asyncsnn.nir import NIR_MIN_VERSION, SNNTORCH_DT, from_nir, read, to_nir, write  # noqa: E402
from asyncsnn.testing import grid_weights, random_count_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _graph(**replace: Any) -> Any:
    """input(3) -> fc (Linear 2x3) -> lif (LIF 2) -> output, with nodes replaced by keyword."""
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "fc": nir.Linear(weight=np.ones((2, 3))),
        "lif": nir.LIF(tau=np.full(2, 8.0), r=np.full(2, 8.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        "output": nir.Output(output_type=np.array([2])),
    }
    nodes.update(replace)
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _write_good(path: Path) -> None:
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.full((2, 3), 0.5))], threshold=1.0, beta=0.5)
    write(path, net)


# ----------------------------------------------------------------------------- item 10: in-memory graphs


def test_complex_weights_are_refused_not_cut_to_their_real_part() -> None:
    graph = _graph(fc=nir.Linear(weight=np.ones((2, 3)) + 0.5j))
    with pytest.raises(ModelError, match="complex") as err:
        from_nir(graph)
    assert (err.value.field, err.value.location) == ("weight", "NIR node 'fc' (Linear)")


def test_complex_neuron_parameters_are_refused() -> None:
    lif = nir.LIF(
        tau=np.full(2, 8.0) + 1j, r=np.full(2, 8.0), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)
    )
    with pytest.raises(ModelError, match="complex") as err:
        from_nir(_graph(lif=lif))
    assert (err.value.field, err.value.location) == ("tau", "NIR node 'lif' (LIF)")


def test_string_parameter_values_are_refused_even_when_numeric() -> None:
    # np.asarray(["1.0"], dtype=float64) would have read these silently.
    lif = nir.LIF(
        tau=np.full(2, 8.0), r=np.full(2, 8.0), v_leak=np.zeros(2), v_threshold=np.array(["1.0", "1.0"]),
        v_reset=np.zeros(2),
    )  # fmt: skip
    with pytest.raises(ModelError, match="real numbers") as err:
        from_nir(_graph(lif=lif))
    assert (err.value.field, err.value.location) == ("v_threshold", "NIR node 'lif' (LIF)")
    with pytest.raises(ModelError) as err:
        from_nir(_graph(fc=nir.Linear(weight=np.array([["a", "b", "c"], ["d", "e", "f"]]))))
    assert (err.value.field, err.value.location) == ("weight", "NIR node 'fc' (Linear)")


def test_string_conv_groups_are_refused() -> None:
    conv = nir.Conv2d(
        input_shape=(4, 4), weight=np.ones((1, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(1)
    )
    conv.groups = "one"
    lif = nir.LIF(tau=np.full(4, 8.0), r=np.full(4, 8.0), v_leak=np.zeros(4), v_threshold=np.ones(4))
    nodes = {"input": nir.Input(input_type=np.array([1, 4, 4])), "conv": conv, "lif": lif}
    nodes["output"] = nir.Output(output_type=np.array([4]))
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(ModelError) as err:
        from_nir(graph)
    assert (err.value.field, err.value.value) == ("groups", "one")


@pytest.mark.parametrize(
    ("where", "key", "value", "field"),
    [
        ("graph", "asyncsnn_dt", "fast", "metadata['asyncsnn_dt']"),
        ("graph", "asyncsnn_dt", [1.0, 2.0], "metadata['asyncsnn_dt']"),
        ("node", "asyncsnn_refractory_dropout", "half", "metadata['asyncsnn_refractory_dropout']"),
        ("node", "asyncsnn_name", b"\xff\xfe", "metadata['asyncsnn_name']"),
        ("graph", "asyncsnn_output", b"\xff", "metadata['asyncsnn_output']"),
    ],
)
def test_bad_metadata_is_refused(where: str, key: str, value: Any, field: str) -> None:
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.ones((2, 3)))], threshold=1.0, beta=0.5)
    graph = to_nir(net)
    if key == "asyncsnn_output":  # read only when there are several Output nodes
        graph.nodes["output2"] = nir.Output(output_type=np.array([2]))
        graph.edges.append(("lif1", "output2"))
    target = graph.metadata if where == "graph" else graph.nodes["lif1"].metadata
    target[key] = value
    with pytest.raises(ModelError) as err:
        from_nir(graph)
    assert err.value.field == field
    assert err.value.value == value


@pytest.mark.parametrize("edge", [("input", "fc", "extra"), ("input",), 7, ("input", None)])
def test_malformed_edge_is_refused(edge: Any) -> None:
    graph = _graph()
    graph.edges = [edge, ("fc", "lif"), ("lif", "output")]
    with pytest.raises(ModelError, match=r"\(source, target\) pair") as err:
        from_nir(graph)
    assert err.value.field == "edges"
    assert err.value.value == edge


def test_empty_graph_and_edge_to_a_missing_node_are_refused() -> None:
    with pytest.raises(ModelError, match="exactly one Input node") as err:
        from_nir(nir.NIRGraph(nodes={}, edges=[], type_check=False))
    assert err.value.field == "Input nodes"
    graph = _graph()
    graph.edges = [("input", "fc"), ("fc", "ghost"), ("lif", "output")]
    with pytest.raises(ModelError, match="'ghost' does not exist") as err:
        from_nir(graph)
    assert (err.value.field, err.value.value) == ("edges", ("fc", "ghost"))


# ----------------------------------------------------------------------------- item 10: files


def test_non_hdf5_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.nir"
    path.write_text("this is not HDF5\n")
    with pytest.raises(ModelError, match="not an HDF5 file") as err:
        read(path)
    assert (err.value.field, err.value.value) == ("file", str(path))


def test_hdf5_file_that_is_not_nir_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(ModelError, match="not a NIR graph") as err:
        from_nir(path)
    assert err.value.field == "file"
    with h5py.File(path, "w") as f:  # a 'node' group of another type
        f.create_group("node")["type"] = b"Linear"
    with pytest.raises(ModelError, match="not a NIR graph"):
        read(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.nir")


def _edit(path: Path, dataset: str, value: Any) -> None:
    with h5py.File(path, "a") as f:
        del f[dataset]
        f[dataset] = value


def test_file_with_three_element_edges_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.nir"
    _write_good(path)
    _edit(path, "node/edges", np.array([[b"input", b"proj0", b"x"], [b"proj0", b"lif1", b"y"]]))
    with pytest.raises(ModelError, match="pairs") as err:
        read(path)
    assert err.value.field == "edges"


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.array([b"0.5", b"0.5"]), "real numbers"), (np.full(2, 0.5 + 1j), "complex values are not supported")],
)
def test_file_with_string_or_complex_parameters_names_node_and_field(tmp_path: Path, value: Any, match: str) -> None:
    path = tmp_path / "model.nir"
    _write_good(path)
    _edit(path, "node/nodes/lif1/v_threshold", value)
    with pytest.raises(ModelError, match=match) as err:
        read(path)
    assert (err.value.field, err.value.location) == ("v_threshold", "NIR node 'lif1' (LIF)")


def test_file_with_complex_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.nir"
    _write_good(path)
    _edit(path, "node/nodes/proj0/weight", np.full((2, 3), 0.5 + 0.25j))
    with pytest.raises(ModelError, match="complex") as err:
        read(path)
    assert (err.value.field, err.value.location) == ("weight", "NIR node 'proj0' (Linear)")


def test_file_with_bad_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.nir"
    _write_good(path)
    _edit(path, "node/metadata/asyncsnn_dt", "soon")
    with pytest.raises(ModelError) as err:
        read(path)
    assert err.value.field == "metadata['asyncsnn_dt']"


def test_file_with_an_empty_graph_or_a_missing_node_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.nir"
    nir.write(path, nir.NIRGraph(nodes={}, edges=[], type_check=False))
    with pytest.raises(ModelError, match="exactly one Input node"):
        read(path)
    path = tmp_path / "ghost.nir"
    _write_good(path)
    _edit(path, "node/edges", np.array([[b"input", b"proj0"], [b"proj0", b"ghost"], [b"lif1", b"output"]]))
    with pytest.raises(ModelError, match="'ghost' does not exist"):
        read(path)


def test_file_with_an_unknown_node_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.nir"
    _write_good(path)
    _edit(path, "node/nodes/lif1/type", b"Mystery")
    with pytest.raises(ModelError, match="not a readable NIR graph") as err:
        read(path)
    assert err.value.field == "file"


# ----------------------------------------------------------------------------- item 13: nir floor


def test_pyproject_floor_matches_the_required_version() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("nir", "dev"):
        assert f"nir>={NIR_MIN_VERSION}" in extras[extra], extra
    # v_reset is what to_nir needs from 1.0.6 on (nir 1.0.5's LIF has no such field).
    assert "v_reset" in {f.name for f in dataclasses.fields(nir.LIF)}


def _fake_nir(version: str | None, with_reset: bool) -> types.ModuleType:
    module = types.ModuleType("nir")
    if version is not None:
        module.__version__ = version  # type: ignore[attr-defined]

    @dataclasses.dataclass
    class LIF:
        tau: Any
        r: Any
        v_leak: Any
        v_threshold: Any

    @dataclasses.dataclass
    class LIFWithReset(LIF):
        v_reset: Any = None

    module.LIF = LIFWithReset if with_reset else LIF  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("version", "with_reset"), [("1.0.4", False), ("1.0.5", False), ("0.9", True), (None, False), ("1.0.5", True)]
)
def test_old_nir_gives_a_missing_dependency_error(
    monkeypatch: pytest.MonkeyPatch, version: str | None, with_reset: bool
) -> None:
    monkeypatch.setitem(sys.modules, "nir", _fake_nir(version, with_reset))
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.ones((2, 3)))], threshold=1.0, beta=0.5)
    for call in (lambda: to_nir(net), lambda: from_nir(object())):
        with pytest.raises(MissingDependencyError, match=re.escape(f"nir >= {NIR_MIN_VERSION}")) as err:
            call()
        assert err.value.field == "nir"
        assert err.value.value == version
        assert "pip install" in str(err.value)


def test_missing_nir_gives_a_missing_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir raises ImportError
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.ones((2, 3)))], threshold=1.0, beta=0.5)
    with pytest.raises(MissingDependencyError, match="asyncsnn\\[nir\\]"):
        to_nir(net)


def test_version_parsing() -> None:
    assert anir._version_tuple("1.0.6") == (1, 0, 6)
    assert anir._version_tuple("1.0.10.dev3") == (1, 0, 10)
    assert anir._version_tuple("2") == (2,)
    assert anir._version_tuple("unknown") is None


# ----------------------------------------------------------------------------- item 15: IF uses dt


def test_if_threshold_follows_dt_like_spikingjelly_writes_it() -> None:
    # SpikingJelly writes IF nodes with r = 1/dt (dt = 1e-4): the input scale r dt is 1.
    node = nir.IF(r=np.full(2, 1 / SNNTORCH_DT), v_threshold=np.array([0.75, 1.5]), v_reset=np.zeros(2))
    pop = from_nir(_graph(lif=node), dt=SNNTORCH_DT).populations[0]
    np.testing.assert_array_equal(pop.threshold, np.array([0.75, 1.5], dtype=np.float32))
    np.testing.assert_array_equal(pop.beta, [1.0, 1.0])


@pytest.mark.parametrize("dt", [1.0, 1e-3, SNNTORCH_DT, 0.3])
def test_if_population_round_trips_with_any_dt(tmp_path: Path, dt: float) -> None:
    rng = np.random.default_rng(3)
    net = Network.sequential(
        input_shape=(5,),
        layers=[Dense(grid_weights(rng, (4, 5))), Dense(grid_weights(rng, (3, 4)))],
        threshold=[np.array([0.5, 0.75, 1.0, 1.25]), 0.625],
        beta=[1.0, 1.0],
    )
    graph = to_nir(net, dt=dt)
    np.testing.assert_allclose(graph.nodes["if1"].r, 1 / dt)
    for back in (from_nir(graph), from_nir(graph, dt=dt)):
        for a, b in zip(net.populations, back.populations, strict=True):
            np.testing.assert_array_equal(a.threshold, b.threshold)
            np.testing.assert_array_equal(a.beta, b.beta)
    path = tmp_path / "if.nir"
    write(path, net, dt=dt)
    np.testing.assert_array_equal(read(path).populations[0].threshold, net.populations[0].threshold)


def test_if_nodes_written_before_the_dt_fix_keep_their_thresholds() -> None:
    # Earlier to_nir wrote IF nodes with r = 1 (input scale r) and no format marker.
    net = Network.sequential(input_shape=(3,), layers=[Dense(np.ones((2, 3)))], threshold=0.75, beta=1.0)
    graph = to_nir(net, dt=SNNTORCH_DT)
    graph.nodes["if1"].r = np.ones(2)
    del graph.metadata["asyncsnn_nir_format"]
    np.testing.assert_array_equal(from_nir(graph).populations[0].threshold, [0.75, 0.75])


def _fixture_script() -> Any:
    spec = importlib.util.spec_from_file_location("make_nir_fixtures", ROOT / "scripts" / "make_nir_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: scripts/make_nir_fixtures.py: its layer_synchronous is R4.5 in numpy.
SCRIPT = _fixture_script()


def _engine(name: str) -> Any:
    """``infer`` of engine ``name`` (``"reference"`` or ``"rust"``)."""
    from asyncsnn import reference

    return {"reference": reference.infer, "rust": asyncsnn.infer}[name]


def _check(net: Network, x: np.ndarray, output: np.ndarray, layer_spikes: np.ndarray, engine: str | None) -> None:
    """The library's spikes are R4.5's (engine None) or the engine's under ``layered``."""
    assert output.sum() > 0, "the library's network should spike"
    assert np.all(layer_spikes.sum(0) > 0), "every layer should spike"
    if engine is None:
        got_output, got_layers = SCRIPT.layer_synchronous(net, x)
    else:
        result = _engine(engine)(net, x, scheduler="layered")
        got_output, got_layers = result.timestep_output_counts, result.spikes
    np.testing.assert_array_equal(got_output, output)
    np.testing.assert_array_equal(got_layers, layer_spikes)


ENGINES = [None, "reference", "rust"]  # None: R4.5 in numpy


def _check_fixture(name: str, engine: str | None, reset: str | None = None) -> Network:
    with np.load(FIXTURES / f"{name}.npz") as data:
        x, output, layer_spikes, dt = data["x"], data["output"], data["layer_spikes"], float(data["dt"])
    net = read(FIXTURES / f"{name}.nir", dt=dt, reset=reset)
    _check(net, x, output, layer_spikes, engine)
    return net


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_sinabs_export_reproduces_sinabs_spikes(arch: str, engine: str | None) -> None:
    # Written by sinabs 3.1.3 (nir 1.0.4) through scripts/make_nir_fixtures.py: IF nodes with r = 1, dt = 1,
    # SingleSpike and MembraneReset: reset to zero, which the file cannot say (it has no v_reset).
    _check_fixture(f"nir_sinabs_{arch}", engine, reset="zero")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_sinabs_default_membrane_subtract_with_biases_reproduces_sinabs(arch: str, engine: str | None) -> None:
    # sinabs' default IAF (MultiSpike, MembraneSubtract) after biased Linear / Conv2d layers: reset="subtract".
    net = _check_fixture(f"nir_sinabs_subtract_{arch}", engine, reset="subtract")
    assert {p.reset for p in net.populations} == {"subtract"}
    assert np.any(net.populations[0].bias)
    assert np.any(net.populations[-1].bias)


def test_file_without_v_reset_warns_unless_the_reset_is_given() -> None:
    # sinabs 3.1 writes IF nodes without v_reset (nir 1.0.4): the file does not say how its neurons reset.
    path = FIXTURES / "nir_sinabs_subtract_dense.nir"
    with pytest.warns(UserWarning, match=r"have no v_reset .* sinabs .* pass reset='subtract'"):
        net = read(path)
    assert {p.reset for p in net.populations} == {"zero"}
    assert {p.reset for p in read(path, reset="subtract").populations} == {"subtract"}  # no warning
    graph = nir.read(path)  # an in-memory graph: nir.read filled in v_reset = 0, nothing to warn about
    assert {p.reset for p in from_nir(graph).populations} == {"zero"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_spikingjelly_fixture_reproduces_spikingjelly_spikes(arch: str, engine: str | None) -> None:
    # Written by SpikingJelly 2.0 through scripts/make_nir_fixtures.py: IF with r = 1/dt, LIF tau = 2 dt.
    _check_fixture(f"nir_spikingjelly_{arch}", engine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_spikingjelly_export_reproduces_spikingjelly_spikes_under_layered(arch: str) -> None:
    pytest.importorskip("spikingjelly")
    pytest.importorskip("torch")
    pytest.importorskip("nirtorch")
    script = _fixture_script()
    rng = np.random.default_rng(5)
    model, graph, in_shape = script.spikingjelly_graph(rng, arch)
    net = from_nir(graph, dt=1e-4)  # SpikingJelly's export dt
    from spikingjelly.activation_based import neuron  # type: ignore[import-untyped]

    nodes = [m for m in model if isinstance(m, neuron.BaseNode)]
    for module, pop in zip(nodes, net.populations, strict=True):
        scale = 1.0 if isinstance(module, neuron.IFNode) else 1 / module.tau  # LIF: r dt / tau = 1 / tau
        np.testing.assert_array_equal(pop.threshold, np.float32(module.v_threshold / scale))
    x = script.counts(rng, (8, script.SJ_STEPS, *in_shape))
    output, layer_spikes = script.run_spikingjelly(model, x)
    for engine in ENGINES:
        _check(net, x, output, layer_spikes, engine)


@functools.cache
def _spikingjelly_soft_reset(arch: str) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """A SpikingJelly model with soft reset (v_reset=None) and biased layers, its import and its own run."""
    pytest.importorskip("spikingjelly")
    torch = pytest.importorskip("torch")
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir  # type: ignore[import-untyped]

    rng = np.random.default_rng(9)
    model, _, in_shape = SCRIPT.spikingjelly_graph(rng, arch, soft_reset=True)
    nodes = [m for m in model if isinstance(m, neuron.BaseNode)]
    with pytest.raises(NotImplementedError, match="soft reset"):  # SpikingJelly's exporter refuses soft reset
        export_to_nir(model, torch.zeros(1, *in_shape), dt=1e-4)
    for m in nodes:  # export a hard-reset twin (same weights, thresholds, taus) and say reset="subtract"
        m.v_reset = 0.0
    graph = export_to_nir(model, torch.zeros(1, *in_shape), dt=1e-4)
    for m in nodes:
        m.v_reset = None
    net = from_nir(graph, dt=1e-4, reset="subtract")
    linears = [m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    np.testing.assert_array_equal(net.populations[-1].bias, linears[-1].bias.detach().numpy())
    x = SCRIPT.counts(rng, (8, SCRIPT.SJ_STEPS, *in_shape))
    output, layer_spikes = SCRIPT.run_spikingjelly(model, x)
    return net, x, output, layer_spikes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_spikingjelly_soft_reset_with_biases_reproduces_spikingjelly(arch: str, engine: str | None) -> None:
    _check(*_spikingjelly_soft_reset(arch), engine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_spikingjelly_soft_reset_example_in_the_docs_runs() -> None:
    pytest.importorskip("spikingjelly")
    torch = pytest.importorskip("torch")
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    text = (ROOT / "docs" / "nir.md").read_text()
    section = text.split("## From SpikingJelly", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/nir.md's SpikingJelly section has no ```py example"
    model, _, in_shape = SCRIPT.spikingjelly_graph(np.random.default_rng(2), "dense", soft_reset=True)
    scope: dict[str, Any] = {
        "model": model,
        "neuron": neuron,
        "export_to_nir": export_to_nir,
        "example_input": torch.zeros(1, *in_shape),
        "from_nir": from_nir,
    }
    exec(compile(blocks[0], "docs/nir.md", "exec"), scope)
    assert {p.reset for p in scope["net"].populations} == {"subtract"}
    assert all(m.v_reset is None for m in scope["nodes"])  # the model keeps its soft reset


# ----------------------------------------------------------------------------- item 14: Norse


def _norse() -> tuple[Any, Any]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("nirtorch")
    norse = pytest.importorskip("norse.torch")
    return torch, norse


def _run_norse(torch: Any, norse: Any, model: Any, x: np.ndarray, dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Norse's own simulation: output spikes [B, T, n_out] and spikes per LIFBoxCell / LIFCell [B, P]."""
    batch, steps = x.shape[:2]
    kinds = (norse.LIFBoxCell, norse.LIFCell)
    cells = [m for m in model if isinstance(m, kinds)]
    states: list[Any] = [None] * len(cells)
    per_layer = np.zeros((batch, len(cells)), dtype=np.int64)
    out = []
    with torch.no_grad():
        for t in range(steps):
            cur = torch.tensor(x[:, t], dtype=dtype)
            k = 0
            for m in model:
                if isinstance(m, kinds):
                    cur, states[k] = m(cur, states[k])
                    per_layer[:, k] += cur.reshape(batch, -1).sum(1).long().numpy()
                    k += 1
                else:
                    cur = m(cur)
            out.append(cur.reshape(batch, -1).numpy())
    return np.stack(out, 1).astype(np.int64), per_layer


@functools.cache
def _norse_case(arch: str, biased: bool) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """A Norse model (biased layers or not), exported by Norse, imported, and run by Norse."""
    torch, norse = _norse()
    rng = np.random.default_rng(7)
    dt = 2.0**-10  # Norse's dt; dt * tau_mem_inv = 1/2 keeps every float32 sum exact
    tau_mem_inv = 2.0**9

    def cell() -> Any:
        v_th = torch.tensor(float(rng.integers(64, 160)) / 256)
        return norse.LIFBoxCell(p=norse.LIFBoxParameters(tau_mem_inv=torch.tensor(tau_mem_inv), v_th=v_th), dt=dt)

    def linear(n_in: int, n_out: int) -> Any:
        m = torch.nn.Linear(n_in, n_out, bias=biased)  # Norse exports an Affine (with zero bias if there is none)
        m.weight.data = torch.tensor(grid_weights(rng, (n_out, n_in), 0.5, 0.15))
        if biased:
            m.bias.data = torch.tensor(grid_weights(rng, (n_out,), 0.2, 0.05))
        return m

    if arch == "dense":
        in_shape: tuple[int, ...] = (10,)
        model = norse.SequentialState(linear(10, 8), cell(), linear(8, 4), cell())
    else:
        in_shape = (2, 6, 6)
        conv1 = torch.nn.Conv2d(2, 3, 3, padding=1)  # Norse's exporter needs a bias tensor: zero it
        conv2 = torch.nn.Conv2d(3, 2, 3, stride=2)
        for conv in (conv1, conv2):
            conv.weight.data = torch.tensor(grid_weights(rng, tuple(conv.weight.shape), 0.6, 0.2))
            conv.bias.data.zero_()
            if biased:
                conv.bias.data = torch.tensor(grid_weights(rng, tuple(conv.bias.shape), 0.2, 0.05))
        model = norse.SequentialState(conv1, cell(), conv2, cell())
    graph = norse.to_nir(model, torch.zeros(1, *in_shape), dt=dt)  # sample_data is required
    assert tuple(graph.nodes["input"].input_type["input"]) == (1, *in_shape)  # a leading batch dimension (item 16)
    with pytest.raises(ModelError, match="Norse") as err:  # Norse's own dt is refused, with a hint for Norse
        from_nir(graph, dt=dt)
    assert err.value.field == "tau"
    net = from_nir(graph, dt=dt**2)  # Norse writes tau = dt / tau_mem_inv
    # Dense layers read any shape of the right size; a Conv2d needs (c, h, w): the leading 1 goes.
    assert net.input_shape == ((1, 10) if arch == "dense" else in_shape)
    cells = [m for m in model if isinstance(m, norse.LIFBoxCell)]
    for module, pop in zip(cells, net.populations, strict=True):
        np.testing.assert_array_equal(pop.beta, 1 - dt * tau_mem_inv)
        np.testing.assert_array_equal(pop.threshold, np.float32(float(module.p.v_th) / (dt * tau_mem_inv)))
    assert bool(np.any(net.populations[-1].bias)) == biased
    x = random_count_input(rng, net, batch=8, timesteps=10, density=0.3, max_count=2).reshape(8, 10, *in_shape)
    output, layer_spikes = _run_norse(torch, norse, model, x)
    return net, x.reshape(8, 10, *net.input_shape), output, layer_spikes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("biased", [False, True])
@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_norse_export_reproduces_norse_spikes_with_dt_squared(arch: str, biased: bool, engine: str | None) -> None:
    # Norse's LIFBoxCell resets to zero (v_reset = 0): no reset to pass; its biases come as Affine / Conv2d biases.
    _check(*_norse_case(arch, biased), engine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_norse_example_in_the_docs_runs() -> None:
    _norse()
    text = (ROOT / "docs" / "nir.md").read_text()
    section = text.split("## From Norse", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/nir.md's Norse section has no ```py example"
    scope: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/nir.md", "exec"), scope)
    pop = scope["net"].populations[0]
    np.testing.assert_allclose(pop.beta, 0.9, rtol=1e-6)
    np.testing.assert_allclose(pop.threshold, 10.0, rtol=1e-6)


# ----------------------------------------------------------------------------- Norse's LIFCell (R4.12)


def fix_norse_w_in(graph: Any, dt: float) -> Any:
    """docs/nir.md's fix for Norse's CubaLIF nodes: ``w_in = tau_syn / dt**2`` (Norse adds its input to the
    synaptic current unscaled, where NIR's ``tau_syn dI/dt = -I + w_in S`` scales it by ``dt'/tau_syn``)."""
    for node in graph.nodes.values():
        if isinstance(node, nir.CubaLIF):
            node.w_in = node.tau_syn / dt**2
    return graph


@functools.cache
def _norse_synaptic_case(arch: str, biased: bool) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """A model of Norse ``LIFCell`` s, exported by Norse, fixed (fix_norse_w_in), imported, and run by Norse.

    ``"defaults"``: a dense model with Norse's default dt (1e-3) and LIFParameters (tau_syn_inv 200,
    tau_mem_inv 100: alpha 0.8, beta 0.9, input scale 0.1), equal to Norse up to float32 rounding (R4.12):
    Norse's float64 run gives the same spikes, so no membrane comes within rounding of its threshold.
    ``"dense"``, ``"conv"``: dt = 2**-10, tau_syn_inv = 2**8, tau_mem_inv = 2**9 (alpha 3/4, beta 1/2).
    """
    torch, norse = _norse()
    rng = np.random.default_rng(17)
    if arch == "defaults":
        dt, p = 1e-3, norse.LIFParameters()
    else:
        dt = 2.0**-10
        p = norse.LIFParameters(
            tau_syn_inv=torch.tensor(2.0**8), tau_mem_inv=torch.tensor(2.0**9), v_th=torch.tensor(0.5)
        )
    alpha, scale = 1 - dt * float(p.tau_syn_inv), dt * float(p.tau_mem_inv)

    def linear(n_in: int, n_out: int, mean: float) -> Any:
        m = torch.nn.Linear(n_in, n_out, bias=biased)  # Norse exports an Affine (with zero bias if there is none)
        m.weight.data = torch.tensor(grid_weights(rng, (n_out, n_in), 0.5, mean))
        if biased:
            m.bias.data = torch.tensor(grid_weights(rng, (n_out,), 0.2, 0.05))
        return m

    if arch != "conv":
        in_shape: tuple[int, ...] = (10,)
        model = norse.SequentialState(
            linear(10, 8, 0.15), norse.LIFCell(p=p, dt=dt), linear(8, 4, 0.3), norse.LIFCell(p=p, dt=dt)
        )
    else:
        in_shape = (2, 6, 6)
        conv1, conv2 = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Conv2d(3, 2, 3, stride=2)
        for conv in (conv1, conv2):  # Norse's exporter needs a bias tensor
            conv.weight.data = torch.tensor(grid_weights(rng, tuple(conv.weight.shape), 0.6, 0.1))
            conv.bias.data = torch.tensor(grid_weights(rng, tuple(conv.bias.shape), 0.2, 0.05) * biased)
        model = norse.SequentialState(conv1, norse.LIFCell(p=p, dt=dt), conv2, norse.LIFCell(p=p, dt=dt))
    graph = norse.to_nir(model, torch.zeros(1, *in_shape), dt=dt)
    cuba = [node for node in graph.nodes.values() if isinstance(node, nir.CubaLIF)]
    assert len(cuba) == 2
    for node in cuba:  # tau = dt / tau_inv, r = 1, and NIR's default w_in = 1
        np.testing.assert_allclose(np.asarray(node.tau_syn, np.float64), dt / float(p.tau_syn_inv), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(node.w_in), 1.0)
    as_written = from_nir(graph, dt=dt**2)  # NIR's CubaLIF scales the input by w_in dt/tau_syn = 1 - alpha
    np.testing.assert_allclose(as_written.populations[0].threshold, float(p.v_th) / scale / (1 - alpha), rtol=1e-6)
    net = from_nir(fix_norse_w_in(graph, dt), dt=dt**2)
    for pop in net.populations:
        np.testing.assert_allclose(pop.alpha, alpha, rtol=1e-6)
        np.testing.assert_allclose(pop.beta, 1 - scale, rtol=1e-6)
        np.testing.assert_allclose(pop.threshold, float(p.v_th) / scale, rtol=1e-6)
        if arch != "defaults":  # dyadic: bit for bit
            np.testing.assert_array_equal(pop.alpha, alpha)
            np.testing.assert_array_equal(pop.threshold, np.float32(float(p.v_th) / scale))
    assert bool(np.any(net.populations[-1].bias)) == biased
    x = random_count_input(rng, net, batch=8, timesteps=20, density=0.3, max_count=2).reshape(8, 20, *in_shape)
    output, layer_spikes = _run_norse(torch, norse, model, x)
    if arch == "defaults":  # margins: Norse in float64 spikes the same
        output64, layers64 = _run_norse(torch, norse, model.double(), x, torch.float64)
        model.float()
        np.testing.assert_array_equal(output64, output)
        np.testing.assert_array_equal(layers64, layer_spikes)
    return net, x.reshape(8, 20, *net.input_shape), output, layer_spikes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
@pytest.mark.parametrize(("arch", "biased"), [("defaults", True), ("dense", False), ("dense", True), ("conv", True)])
def test_norse_lifcell_export_reproduces_norse_spikes(arch: str, biased: bool, engine: str) -> None:
    # Norse's LIFCell is R4.12 with alpha = 1 - dt tau_syn_inv (the Rust engine: once it runs synaptic currents).
    _check(*_norse_synaptic_case(arch, biased), engine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_norse_lifcell_example_in_the_docs_runs() -> None:
    _norse()
    text = (ROOT / "docs" / "nir.md").read_text()
    section = text.split("## From Norse", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "docs/nir.md's Norse section has no ```py example for LIFCell"
    scope: dict[str, Any] = {}
    exec(compile(blocks[1], "docs/nir.md", "exec"), scope)
    pop = scope["net"].populations[0]
    np.testing.assert_allclose(pop.alpha, 0.8, rtol=1e-6)
    np.testing.assert_allclose(pop.beta, 0.9, rtol=1e-6)
    np.testing.assert_allclose(pop.threshold, 10.0, rtol=1e-6)


# ----------------------------------------------------------------------------- item 16


def _recurrent_at_output() -> Any:
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "fc": nir.Linear(weight=np.full((2, 3), 0.5)),
        "lif": nir.LIF(tau=np.full(2, 8.0), r=np.full(2, 8.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        "w_rec": nir.Linear(weight=np.array([[0.0, 0.75], [0.25, 0.0]])),
        "output": nir.Output(output_type=np.array([2])),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_recurrent_output_layer_imports_as_a_recurrent_projection() -> None:
    # SPEC_VERSION 2 has recurrent projections (R1.2): a cycle through the output population is one.
    net = from_nir(_recurrent_at_output())
    assert SPEC_VERSION >= 2
    assert [(p.source, p.target, p.recurrent) for p in net.projections] == [(0, 1, False), (1, 1, True)]
    layer = net.projections[1].layer
    assert isinstance(layer, Dense)
    np.testing.assert_array_equal(layer.weight, [[0.0, 0.75], [0.25, 0.0]])
    x = np.zeros((1, 3, 3), np.float32)
    x[0, 0] = 1.0  # 1.5 into each neuron at t = 0: both fire; the recurrent 0.75 / 0.25 arrive at t = 1 (R4.9)
    expected, _ = SCRIPT.layer_synchronous(net, x)
    assert expected[0].tolist() == [[1, 1], [0, 0], [0, 0]]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_norse_writes_no_node_for_its_recurrent_cells() -> None:
    torch, norse = _norse()
    model = norse.SequentialState(torch.nn.Linear(4, 3), norse.LIFRecurrentCell(3, 3))
    graph = norse.to_nir(model, torch.zeros(1, 4))
    assert graph.nodes["1"] is None  # Norse 1.1 has no NIR export for LIFRecurrentCell
    with pytest.raises(ModelError, match="could not convert this module") as err:
        from_nir(graph, dt=1e-6)
    assert err.value.field == "type"


@functools.cache
def _norse_recurrent_case(synaptic: bool = False) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """Norse's LIFRecurrentCell, as a NIR graph of Norse's own nodes, and Norse's run.

    Norse 1.1 cannot export the cell (it writes None), so the graph is built from its weights with the
    node Norse writes for a feed-forward ``LIFCell`` with the same parameters (a ``CubaLIF``), an
    ``Affine`` for the input weights and one for the recurrent weights: the graph Norse would write.
    ``tau_syn_inv = 1 / dt`` leaves no synaptic memory (the current decays to 0 within a step), so the
    cell computes ``v_t = (1 - dt tau_mem_inv) v_{t-1} + dt tau_mem_inv (W x_t + R z_{t-1})`` (R4.5).
    With ``synaptic``, ``tau_syn_inv = 2**8`` (alpha = 3/4): the current ``i_t = alpha i_{t-1} + W x_t +
    R z_{t-1}`` (R4.12), read with docs/nir.md's fix of Norse's ``w_in`` (fix_norse_w_in).
    """
    torch, norse = _norse()
    from norse.torch.utils.export_nir import _extract_norse_module  # type: ignore[import-untyped]

    rng = np.random.default_rng(7)
    dt = 2.0**-10  # dt * tau_mem_inv = 1/2 keeps every float32 sum exact
    p = norse.LIFParameters(
        tau_syn_inv=torch.tensor(2.0**8 if synaptic else 1 / dt),
        tau_mem_inv=torch.tensor(2.0**9),
        v_th=torch.tensor(1.0 if synaptic else 0.375),
    )
    cell = norse.LIFRecurrentCell(
        10,
        8,
        p=p,
        dt=dt,
        input_weights=torch.tensor(grid_weights(rng, (8, 10), 0.5, 0.15)),
        recurrent_weights=torch.tensor(grid_weights(rng, (8, 8), 0.5)),  # autapses=False: the diagonal is zeroed
    )
    linear = torch.nn.Linear(8, 4, bias=False)
    linear.weight.data = torch.tensor(grid_weights(rng, (4, 8), 0.5, 0.15))
    out_cell = norse.LIFBoxCell(
        p=norse.LIFBoxParameters(tau_mem_inv=torch.tensor(2.0**9), v_th=torch.tensor(0.25)), dt=dt
    )
    zeros = np.zeros(8, np.float32)
    nodes = {
        "input": nir.Input(input_type=np.array([10])),
        "w_in": nir.Affine(weight=cell.input_weights.detach().numpy(), bias=zeros),
        "lif": _extract_norse_module(norse.LIFCell(p=p, dt=dt), dt=dt),
        "w_rec": nir.Affine(weight=cell.recurrent_weights.detach().numpy(), bias=zeros),
        "fc": _extract_norse_module(linear, dt=dt),
        "out": _extract_norse_module(out_cell, dt=dt),
        "output": nir.Output(output_type=np.array([4])),
    }
    edges = [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "fc"), ("fc", "out")]
    graph = nir.NIRGraph(nodes=nodes, edges=[*edges, ("out", "output")], type_check=False)
    assert type(graph.nodes["lif"]).__name__ == "CubaLIF"
    if synaptic:
        graph = fix_norse_w_in(graph, dt)
    net = from_nir(graph, dt=dt**2)  # tau_syn = dt / tau_syn_inv = dt**2: alpha = 0, no synaptic memory
    np.testing.assert_array_equal(net.populations[0].alpha, 0.75 if synaptic else 0.0)
    assert [(q.source, q.target, q.recurrent) for q in net.projections] == [(0, 1, False), (1, 1, True), (1, 2, False)]
    x = random_count_input(rng, net, batch=8, timesteps=20, density=0.3, max_count=2)
    states: list[Any] = [None, None]
    per_layer = np.zeros((8, 2), dtype=np.int64)
    out = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            z1, states[0] = cell(torch.tensor(x[:, t]), states[0])
            z2, states[1] = out_cell(linear(z1), states[1])
            per_layer += np.stack([z1.sum(1).long().numpy(), z2.sum(1).long().numpy()], 1)
            out.append(z2.numpy())
    return net, x, np.stack(out, 1).astype(np.int64), per_layer


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("engine", ENGINES)
def test_norse_recurrent_cell_reproduces_norse_spikes(engine: str | None) -> None:
    _check(*_norse_recurrent_case(), engine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("engine", ["reference", "rust"])
def test_norse_recurrent_cell_with_synaptic_memory_reproduces_norse_spikes(engine: str) -> None:
    # Norse sums (i + W x) + R z, R4.12 alpha S + (W x + R z): equal up to float32 rounding, the same spikes here.
    _check(*_norse_recurrent_case(synaptic=True), engine)


@pytest.mark.parametrize("arch", ["dense", "conv", "pool"])
def test_input_with_a_leading_batch_dimension_of_one(arch: str) -> None:
    rng = np.random.default_rng(9)
    if arch == "dense":
        proj: Any = nir.Linear(weight=grid_weights(rng, (4, 12)))
        in_shape, out_shape = (12,), (4,)
    elif arch == "conv":
        w = grid_weights(rng, (3, 2, 3, 3))
        proj = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3))
        in_shape, out_shape = (2, 4, 4), (3, 4, 4)
    else:
        proj = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
        in_shape, out_shape = (2, 4, 4), (2, 2, 2)
    ones = np.ones(out_shape)
    nodes = {
        "input": nir.Input(input_type=np.array([1, *in_shape])),  # Norse writes the sample's batch dimension
        "proj": proj,
        "lif": nir.LIF(tau=8 * ones, r=8 * ones, v_leak=0 * ones, v_threshold=0.5 * ones),
        "output": nir.Output(output_type=np.array([1, *out_shape])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "proj"), ("proj", "lif"), ("lif", "output")], type_check=False)
    net = from_nir(graph)
    assert math.prod(net.input_shape) == math.prod(in_shape)
    if arch != "dense":
        assert net.input_shape == in_shape
    assert net.population_shapes[1] == out_shape
    x = random_count_input(rng, net, batch=2, timesteps=4)
    assert asyncsnn.infer(net, x, scheduler="layered").timestep_output_counts.shape == (2, 4, math.prod(out_shape))


def test_a_real_four_dimensional_input_is_not_squeezed() -> None:
    # Only a leading 1 read by a Conv2d or pool is a batch dimension; (2, c, h, w) stays an error.
    w = np.ones((1, 2, 3, 3))
    conv = nir.Conv2d(input_shape=None, weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(1))
    ones = np.ones((1, 4, 4))
    nodes = {
        "input": nir.Input(input_type=np.array([2, 2, 4, 4])),
        "conv": conv,
        "lif": nir.LIF(tau=8 * ones, r=8 * ones, v_leak=0 * ones, v_threshold=ones),
        "output": nir.Output(output_type=np.array([1, 4, 4])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(ModelError):
        from_nir(graph)

r"""NIR interchange: read and write networks in the Neuromorphic Intermediate Representation.

`NIR <https://neuroir.org>`_ describes a spiking network as a graph of continuous-time
nodes (``Linear``, ``Conv2d``, ``LIF``, ...). :func:`from_nir` turns a NIR graph into a
:class:`~asyncsnn.network.Network`, :func:`to_nir` does the reverse, and :func:`read` /
:func:`write` do the same with ``.nir`` files. The ``nir`` package is needed
(``pip install asyncsnn[nir]``, ``nir >= 1.0.6``); it is imported only when one of these
functions runs.

Discretisation (forward Euler, the convention of snnTorch's and Norse's NIR support;
``docs/nir.md`` has the full table). A NIR ``LIF`` node
``tau dv/dt = (v_leak - v) + r I`` stepped with ``dt`` becomes an asyncsnn population with

.. math::

    \beta = 1 - \frac{dt}{\tau}, \qquad
    \theta = v_{threshold} \Big/ \frac{r\,dt}{\tau}

(the input scale ``r dt / tau`` is folded into the threshold, which gives the same spikes
as scaling every incoming weight; a scale within ``1e-6`` of 1 is taken as exactly 1).
``v_leak`` and ``v_reset`` must be 0. The bias of an ``Affine`` (or ``Conv2d``) node becomes
the bias of the population it feeds (R1.4). NIR 1.0 has no field for the reset mode: it is
``"zero"`` unless :func:`from_nir` is told otherwise (``reset=``) or the graph was written by
:func:`to_nir`, which records it. An ``IF`` node (``dv/dt = r I``) has ``beta = 1``
and input scale ``r dt``; a ``CubaLIF`` node (``tau_syn dI/dt = -I + w_in S``) is a population
with a synaptic current (R4.12): ``alpha = 1 - dt / tau_syn``, ``beta = 1 - dt / tau_mem``, input
scale ``w_in (dt / tau_syn) r (dt / tau_mem)``. :func:`to_nir` writes the inverse:
``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_threshold = threshold`` (``IF`` with
``r = 1 / dt`` for a population with ``beta = 1``; ``CubaLIF`` with ``tau_syn = dt / (1 - alpha)``,
``w_in = tau_syn / dt`` for a synaptic one), so a round trip is exact.

A cycle through populations (snnTorch's ``RLeaky``, as a nested graph or inlined) imports
as recurrent projections (R1.2, R4.9), and :func:`to_nir` writes them as cycles.

snnTorch and SpikingJelly export with ``dt = 1e-4`` (:data:`SNNTORCH_DT`), sinabs with
``dt = 1``, and Norse with the square of its own ``dt`` (``1e-6`` for its default
``1e-3``); pass that ``dt`` to :func:`from_nir` for their graphs, and the reset their
neurons use (``reset="subtract_delayed"`` for snnTorch's default ``Leaky``,
``"subtract"`` for sinabs' default ``IAF`` and SpikingJelly's soft reset). Norse's ``LIFCell``
adds its input to the synaptic current unscaled: set ``w_in = tau_syn / dt**2`` on its
``CubaLIF`` nodes first (``docs/nir.md``).

Examples
--------
>>> import numpy as np
>>> import asyncsnn
>>> from asyncsnn.nir import from_nir, to_nir
>>> net = asyncsnn.Network.sequential(
...     input_shape=(4,), layers=[asyncsnn.Dense(np.full((3, 4), 0.5)), asyncsnn.Dense(np.ones((2, 3)))],
...     threshold=[1.0, 2.0], beta=[0.875, 1.0])
>>> graph = to_nir(net)
>>> sorted(type(n).__name__ for n in graph.nodes.values())
['IF', 'Input', 'LIF', 'Linear', 'Linear', 'Output']
>>> float(graph.nodes["lif1"].tau[0])
8.0
>>> back = from_nir(graph)
>>> back.population_shapes, float(back.populations[0].beta[0]), float(back.populations[1].threshold[0])
([(4,), (3,), (2,)], 0.875, 2.0)
"""

from __future__ import annotations

import dataclasses
import heapq
import inspect
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asyncsnn._prepare import is_tensor, tensor_as_numpy
from asyncsnn.exceptions import MissingDependencyError, ModelError, ParameterError, invalid
from asyncsnn.network import (
    RESET_MODES,
    AvgPool2d,
    Conv2d,
    Dense,
    Layer,
    Network,
    Population,
    Projection,
    SumPool2d,
)

if TYPE_CHECKING:
    import nir

__all__ = ["NIR_MIN_VERSION", "SNNTORCH_DT", "UNIT_TOLERANCE", "from_nir", "read", "to_nir", "write"]

#: The time step snnTorch's NIR exporter assumes (``tau = 1e-4 / (1 - beta)``).
SNNTORCH_DT = 1e-4

#: The oldest ``nir`` release these functions work with: ``LIF``, ``IF`` and ``CubaLIF``
#: nodes have a ``v_reset`` field from nir 1.0.6 on (``to_nir`` writes it).
NIR_MIN_VERSION = "1.0.6"

#: Input scales (``r dt / tau``, ``r dt``, ``w_in dt / tau_syn``) within this relative
#: distance of 1, and ``alpha`` within this distance of 0, are taken as exact: exporters
#: compute ``tau`` and ``r`` in float32, so ``r dt / tau`` is 1 only up to rounding.
UNIT_TOLERANCE = 1e-6

_NEURONS = ("LIF", "IF", "CubaLIF")
_PROJECTIONS = ("Linear", "Affine", "Conv2d", "SumPool2d", "AvgPool2d")
#: 1 - beta used for beta = 1 in a LIF node (tau = 2**60 dt): 1 - 2**-60 rounds to 1.0.
_TINY = 2.0**-60
_META_POP = "asyncsnn_population"
_META_PROJ = "asyncsnn_projection"
_META_DROPOUT = "asyncsnn_refractory_dropout"
_META_NAME = "asyncsnn_name"
_META_DT = "asyncsnn_dt"
_META_OUTPUT = "asyncsnn_output"
#: Neuron-node metadata written by to_nir: the reset mode (R4.8) when it is not "zero", and
#: a bias that no projection node of the graph can carry (see _bias_home).
_META_RESET = "asyncsnn_reset"
_META_BIAS = "asyncsnn_bias"
#: Neuron-node metadata written by to_nir where 1 - dt/tau does not give beta (alpha) back bit for bit in
#: float64 (values below 2**-28): the float32 values, used where they are within _EXACT of 1 - dt/tau.
_META_BETA = "asyncsnn_beta"
_META_ALPHA = "asyncsnn_alpha"
_EXACT = 2.0**-50
#: Graph metadata written by to_nir: 2 = IF nodes carry r = 1/dt (input scale r dt, like NIR's ODE).
#: Graphs with asyncsnn metadata but without this key were written with r = 1 and input scale r.
_META_FORMAT = "asyncsnn_nir_format"
_FORMAT = 2
_INSTALL = f"pip install 'nir>={NIR_MIN_VERSION}' (or pip install 'asyncsnn[nir]')"


def _version_tuple(text: object) -> tuple[int, ...] | None:
    """The leading release numbers of a version string (``"1.0.6.dev1"`` -> ``(1, 0, 6)``)."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    return None if match is None else tuple(int(g) for g in match.groups() if g is not None)


def _import_nir() -> Any:
    """Import ``nir``, refusing releases older than :data:`NIR_MIN_VERSION`."""
    try:
        import nir
    except ImportError as exc:
        raise MissingDependencyError(
            f"asyncsnn.nir needs the 'nir' package >= {NIR_MIN_VERSION}, which cannot be imported ({exc}): {_INSTALL}",
            field="nir",
            value=None,
        ) from exc
    found = getattr(nir, "__version__", None)
    parsed = _version_tuple(found) if found is not None else None
    lif = getattr(nir, "LIF", None)
    has_reset = dataclasses.is_dataclass(lif) and "v_reset" in {f.name for f in dataclasses.fields(lif)}
    minimum = _version_tuple(NIR_MIN_VERSION)
    assert minimum is not None
    if (parsed is not None and parsed < minimum) or not has_reset:
        raise MissingDependencyError(
            f"asyncsnn.nir needs nir >= {NIR_MIN_VERSION} (LIF, IF and CubaLIF nodes with v_reset), "
            f"found nir {found or 'of unknown version'}: {_INSTALL}. Some packages pin an older nir "
            "(sinabs 3.1 pins nir <= 1.0.4): install those in a separate environment",
            field="nir",
            value=found,
        )
    return nir


def _where(name: str, node: Any) -> str:
    return f"NIR node {name!r} ({type(node).__name__})"


def _array(value: Any, field_name: str, where: str) -> np.ndarray:
    """A float64 numpy array from a numpy array, a torch tensor or a number.

    Complex values (whose imaginary part a float conversion would drop), strings and
    anything else that is not real numbers raise a :class:`ModelError` naming the field.
    """
    if is_tensor(value):  # snnTorch stores some weights as torch tensors: the shared rule of the inputs
        value = tensor_as_numpy(value, field_name, where, ModelError)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise invalid(ModelError, field_name, value, f"cannot be read as an array of numbers ({exc})", where) from exc
    if arr.dtype.kind == "c":
        raise invalid(
            ModelError,
            field_name,
            f"complex array of shape {arr.shape}",
            "complex values are not supported (NIR parameters are real numbers)",
            where,
        )
    if arr.dtype.kind == "O":  # a ragged or mixed sequence: numbers only
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise invalid(ModelError, field_name, value, f"must be real numbers ({exc})", where) from exc
    if arr.dtype.kind not in "biuf":
        raise invalid(ModelError, field_name, value, f"must be real numbers, not {arr.dtype} values", where)
    return arr.astype(np.float64)


def _text(value: Any, field_name: str, where: str) -> str | None:
    """A metadata string (``bytes`` from HDF5 are decoded as UTF-8); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError as exc:
            raise invalid(ModelError, field_name, value, "must be UTF-8 text", where) from exc
    return str(value)


def _meta_float(value: Any, field_name: str, where: str) -> float:
    """A number stored in metadata (a Python or numpy scalar, or a one-element array)."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if arr is None or arr.dtype.kind not in "biuf" or arr.size != 1:
        raise invalid(ModelError, field_name, value, "must be a real number", where)
    return float(arr.reshape(-1)[0])


def _ints(value: Any, name: str, node: Any, field_name: str) -> tuple[int, int]:
    """An int or a pair of ints (numpy arrays and tuples accepted) as a pair."""
    where = _where(name, node)
    arr = np.asarray(tensor_as_numpy(value, field_name, where, ModelError) if is_tensor(value) else value)
    if arr.dtype.kind not in "iuf" or arr.size not in (1, 2) or not np.all(arr == np.round(arr)):
        raise invalid(ModelError, field_name, value, "must be an int or a pair of ints", where)
    flat = [int(v) for v in arr.reshape(-1)]
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


def _meta_int(node: Any, key: str) -> int | None:
    meta = getattr(node, "metadata", None)
    if not isinstance(meta, Mapping) or key not in meta:
        return None
    try:
        return int(meta[key])
    except (TypeError, ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------------- reading


@dataclass
class _Proj:
    """A projection node of the graph and where it leads."""

    name: str
    node: Any
    source: str  # Input or neuron node name
    pre: list[str]  # Flatten nodes between the source and this node
    targets: list[tuple[str, list[str]]] = field(default_factory=list)  # (neuron, Flatten path)
    layer: Layer | None = None
    bias: np.ndarray | None = None  # float64, the layer's output shape; None: no bias or all zero


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """A shape from a NIR type entry (None, an empty array or a sequence of ints)."""
    if value is None:
        return None
    try:
        arr = np.asarray(value).reshape(-1)
    except (TypeError, ValueError):  # ragged
        return None
    if arr.size == 0 or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr < 1):
        return None
    if np.any(arr != np.round(arr)):
        return None
    return tuple(int(v) for v in arr)


def _flatten_shape(shape: tuple[int, ...], node: Any) -> tuple[int, ...]:
    """The output shape of a NIR ``Flatten`` (C order); a full flatten when dims are odd."""
    n = len(shape)
    try:
        start, end = int(node.start_dim), int(node.end_dim)
    except (AttributeError, TypeError, ValueError):
        return (math.prod(shape),)
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    if not 0 <= start <= end < n:
        return (math.prod(shape),)
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


#: Datasets of a node group in a .nir file that are not numbers.
_TEXT_FIELDS = frozenset({"type", "padding", "edges"})


def _check_file(path: Path) -> list[str]:
    """Refuse a file that is not a NIR graph, or whose node fields are not real numbers.

    ``nir.read`` fails on such files with whatever exception h5py or a node's constructor
    raises (``OSError``, ``KeyError``, ``AssertionError``, ``AttributeError``...); this
    check names the file, the node and the field instead. Returns the names of the
    neuron nodes stored without ``v_reset`` (files written with nir < 1.0.6, e.g. by
    sinabs 3.1; ``<graph>.<node>`` in nested graphs), which ``nir.read`` fills in with 0.
    """
    import h5py

    where = str(path)
    if not h5py.is_hdf5(path):
        raise invalid(ModelError, "file", where, "not a NIR file: not an HDF5 file", where)
    try:
        with h5py.File(path, "r") as f:
            root = f.get("node")
            kind = root.get("type") if isinstance(root, h5py.Group) else None
            kind = kind[()] if isinstance(kind, h5py.Dataset) else None
            if not isinstance(root, h5py.Group) or kind not in (b"NIRGraph", "NIRGraph"):
                raise invalid(
                    ModelError,
                    "file",
                    where,
                    "an HDF5 file but not a NIR graph (no group 'node' of type NIRGraph)",
                    where,
                )
            return _check_group(root, where)
    except OSError as exc:
        raise invalid(ModelError, "file", where, f"unreadable HDF5 file ({exc})", where) from exc


def _check_group(graph: Any, where: str) -> list[str]:
    """Check the node groups and the edges of a NIRGraph group (recursively for subgraphs).

    Returns the neuron nodes of this group that have no ``v_reset`` dataset.
    """
    import h5py

    edges = graph.get("edges")
    if isinstance(edges, h5py.Dataset) and edges.size and (edges.ndim != 2 or edges.shape[1] != 2):
        raise invalid(
            ModelError, "edges", f"array of shape {edges.shape}", "must be (source, target) pairs", f"NIR graph {where}"
        )
    nodes = graph.get("nodes")
    no_reset: list[str] = []
    if not isinstance(nodes, h5py.Group):
        return no_reset
    for name, node in nodes.items():
        if not isinstance(node, h5py.Group) or not isinstance(node.get("type"), h5py.Dataset):
            raise invalid(ModelError, "type", None, "a node needs a type", f"NIR node {name!r} in {where}")
        kind = node["type"][()]
        kind = kind.decode(errors="replace") if isinstance(kind, bytes) else str(kind)
        if kind == "NIRGraph":  # inlined by from_nir as <graph>.<node>
            no_reset += [f"{name}.{inner}" for inner in _check_group(node, where)]
            continue
        if kind in _NEURONS and "v_reset" not in node:
            no_reset.append(str(name))
        for key, item in node.items():
            if key in _TEXT_FIELDS or not isinstance(item, h5py.Dataset):
                continue
            if item.dtype.kind not in "biuf":
                value = item[()] if item.size <= 8 else f"{item.dtype} array of shape {item.shape}"
                what = "complex values are not supported" if item.dtype.kind == "c" else "must be real numbers"
                raise invalid(
                    ModelError, key, value, f"{what} (NIR parameters are real numbers)", f"NIR node {name!r} ({kind})"
                )
    return no_reset


def _load_graph(graph_or_path: Any) -> tuple[Any, str | None, list[str]]:
    """The graph, the file it came from (None for a graph) and its neuron nodes without ``v_reset``."""
    nir = _import_nir()
    if not isinstance(graph_or_path, (str, os.PathLike)):
        return graph_or_path, None, []
    path = Path(graph_or_path)
    if not path.exists():
        raise FileNotFoundError(2, "No such NIR file", str(path))
    no_reset = _check_file(path)
    # nir >= 1.0.7 type-checks by default; snnTorch graphs with missing shapes fail that check.
    kwargs = {"type_check": False} if "type_check" in inspect.signature(nir.read).parameters else {}
    try:
        return nir.read(path, **kwargs), str(path), no_reset
    except (OSError, KeyError, ValueError, TypeError, AttributeError, AssertionError, IndexError) as exc:
        raise invalid(
            ModelError, "file", str(path), f"not a readable NIR graph ({type(exc).__name__}: {exc})", str(path)
        ) from exc


def _graph_dt(graph: Any, dt: float | None) -> float:
    if dt is None:
        meta = getattr(graph, "metadata", None)
        stored = meta.get(_META_DT) if isinstance(meta, Mapping) else None
        dt = 1.0 if stored is None else _meta_float(stored, f"metadata[{_META_DT!r}]", "NIR graph")
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)) or not math.isfinite(dt) or dt <= 0:
        raise invalid(ModelError, "dt", dt, "must be a finite number > 0")
    return float(dt)


class _Reader:
    """Turns a NIR graph into the parts of a :class:`Network` (see :func:`from_nir`)."""

    def __init__(self, graph: Any, dt: float, output: str | None) -> None:
        nir = _import_nir()
        if not isinstance(graph, nir.NIRGraph):
            raise invalid(ModelError, "graph", type(graph).__name__, "must be a nir.NIRGraph or a path to a .nir file")
        self.nir = nir
        self.dt = dt
        self.nodes, edges = self._inline(graph, "NIR graph")
        self.position = {name: i for i, name in enumerate(self.nodes)}
        self.kind: dict[str, str] = {}
        for name, node in self.nodes.items():
            self.kind[name] = self._classify(name, node)
        self.preds: dict[str, list[str]] = {name: [] for name in self.nodes}
        self.succs: dict[str, list[str]] = {name: [] for name in self.nodes}
        seen: set[tuple[str, str]] = set()
        for a, b in edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise invalid(ModelError, "edges", (a, b), f"node {end!r} does not exist", "NIR graph")
            if (a, b) in seen:
                continue
            seen.add((a, b))
            self.preds[b].append(a)
            self.succs[a].append(b)
        self.metadata = graph.metadata if isinstance(getattr(graph, "metadata", None), Mapping) else {}
        # Written by to_nir before IF nodes carried r = 1/dt: their input scale is r, not r dt.
        self.legacy_if = _META_DT in self.metadata and _META_FORMAT not in self.metadata
        self.input = self._single_input()
        self.output = self._pick_output(output)

    def _inline(self, graph: Any, where: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The nodes and edges of ``graph`` with its nested graphs inlined, recursively.

        A nested ``NIRGraph`` (snnTorch's ``RLeaky`` exported without nirtorch's own
        flattening, for instance) is replaced by its nodes, named ``<graph>.<node>``; an
        edge to the nested graph reaches what its single ``Input`` feeds, and an edge from it
        leaves from what feeds its single ``Output`` (those two nodes only pass values on).
        Edges may also name inner nodes directly (``"<graph>.<node>"``).
        """
        nodes: dict[str, Any] = {}
        edges = [self._edge(edge) for edge in graph.edges]
        ends: dict[str, tuple[str, str]] = {}  # nested graph -> (its Input, its Output), inlined names
        for name, node in ((str(k), v) for k, v in graph.nodes.items()):
            if not isinstance(node, self.nir.NIRGraph):
                if name in nodes:
                    raise invalid(
                        ModelError, "nodes", name, "two nodes have this name once nested graphs are inlined", where
                    )
                nodes[name] = node
                continue
            inner, inner_edges = self._inline(node, _where(name, node))
            ins = [k for k, v in inner.items() if isinstance(v, self.nir.Input)]
            outs = [k for k, v in inner.items() if isinstance(v, self.nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise invalid(
                    ModelError,
                    "nodes",
                    f"{len(ins)} Input and {len(outs)} Output nodes",
                    "a nested graph needs exactly one Input and one Output node to be inlined",
                    _where(name, node),
                )
            for k, v in inner.items():
                if f"{name}.{k}" in nodes:
                    raise invalid(
                        ModelError,
                        "nodes",
                        f"{name}.{k}",
                        "two nodes have this name once nested graphs are inlined",
                        where,
                    )
                nodes[f"{name}.{k}"] = v
            edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in inner_edges]
            ends[name] = (f"{name}.{ins[0]}", f"{name}.{outs[0]}")
        edges = [(ends[a][1] if a in ends else a, ends[b][0] if b in ends else b) for a, b in edges]
        for through in (end for pair in ends.values() for end in pair):
            preds = [a for a, b in edges if b == through]
            succs = [b for a, b in edges if a == through]
            edges = [e for e in edges if through not in e] + [(a, b) for a in preds for b in succs]
            del nodes[through]
        return nodes, edges

    @staticmethod
    def _edge(edge: Any) -> tuple[str, str]:
        """An edge as a pair of node names (HDF5 gives bytes)."""
        ends = list(edge) if isinstance(edge, (tuple, list, np.ndarray)) else None
        if ends is None or len(ends) != 2:
            raise invalid(
                ModelError, "edges", edge, "every edge must be a (source, target) pair of node names", "NIR graph"
            )
        a, b = (_text(e, "edges", "NIR graph") for e in ends)
        if a is None or b is None:
            raise invalid(
                ModelError, "edges", edge, "every edge must be a (source, target) pair of node names", "NIR graph"
            )
        return a, b

    # -- classification and structure -------------------------------------------
    def _classify(self, name: str, node: Any) -> str:
        nir = self.nir
        if isinstance(node, nir.Input):
            return "input"
        if isinstance(node, nir.Output):
            return "output"
        if isinstance(node, nir.Flatten):
            return "flatten"
        kind = type(node).__name__
        if kind in _PROJECTIONS and isinstance(node, getattr(nir, kind)):
            return "projection"
        if kind in _NEURONS and isinstance(node, getattr(nir, kind)):
            return "neuron"
        hint = ""
        if node is None:  # nirtorch keeps a module its exporter could not convert as None
            hint = " (None: the exporter could not convert this module; Norse 1.1 writes its recurrent cells so)"
        raise invalid(
            ModelError,
            "type",
            kind,
            "unsupported node"
            + hint
            + "; supported: Input, Output, Flatten, Linear, Affine, Conv2d, SumPool2d, AvgPool2d, LIF, IF, CubaLIF",
            _where(name, node),
        )

    def _single_input(self) -> str:
        inputs = [n for n, k in self.kind.items() if k == "input"]
        if len(inputs) != 1:
            raise invalid(
                ModelError, "Input nodes", inputs, "an asyncsnn network has exactly one Input node", "NIR graph"
            )
        name = inputs[0]
        if self.preds[name]:
            raise invalid(
                ModelError,
                "edges",
                self.preds[name],
                "an Input node has no incoming edges",
                _where(name, self.nodes[name]),
            )
        return name

    def _pick_output(self, output: str | None) -> str:
        outputs = [n for n, k in self.kind.items() if k == "output"]
        for name in outputs:
            if self.succs[name]:
                raise invalid(
                    ModelError,
                    "edges",
                    self.succs[name],
                    "an Output node has no outgoing edges",
                    _where(name, self.nodes[name]),
                )
        if output is None and len(outputs) > 1:
            output = _text(self.metadata.get(_META_OUTPUT), f"metadata[{_META_OUTPUT!r}]", "NIR graph")
        if output is not None:
            if output not in outputs:
                raise invalid(ModelError, "output", output, f"must name one of the Output nodes {outputs}", "NIR graph")
            return output
        if len(outputs) != 1:
            raise invalid(
                ModelError,
                "Output nodes",
                outputs,
                "an asyncsnn network has one output population: keep one Output node or pass output=<name>",
                "NIR graph",
            )
        return outputs[0]

    def _back(self, name: str, consumer: str) -> tuple[str, list[str]]:
        """Follow Flatten nodes backwards from ``name``; return the origin and the path."""
        path: list[str] = []
        seen = {consumer}
        while self.kind[name] == "flatten":
            if name in seen:
                raise invalid(
                    ModelError, "edges", name, "a cycle through Flatten nodes", _where(name, self.nodes[name])
                )
            seen.add(name)
            if len(self.preds[name]) != 1:
                raise invalid(
                    ModelError,
                    "inputs",
                    self.preds[name],
                    "a Flatten node needs exactly one input",
                    _where(name, self.nodes[name]),
                )
            path.insert(0, name)
            name = self.preds[name][0]
        return name, path

    def _forward(self, start: str, path: list[str], out: list[tuple[str, list[str]]], proj: str) -> None:
        """Collect the neuron nodes reached from ``start`` through Flatten nodes."""
        for succ in self.succs[start]:
            kind = self.kind[succ]
            if kind == "neuron":
                out.append((succ, path))
            elif kind == "flatten":
                if succ in path:
                    raise invalid(
                        ModelError, "edges", succ, "a cycle through Flatten nodes", _where(succ, self.nodes[succ])
                    )
                self._forward(succ, [*path, succ], out, proj)
            else:
                what = "a projection" if kind == "projection" else f"an {kind.capitalize()} node"
                raise invalid(
                    ModelError,
                    "edges",
                    (proj, succ),
                    f"the projection feeds {what} ({succ!r}) directly; asyncsnn needs a LIF/IF population after "
                    "every projection (R1.2)",
                    _where(proj, self.nodes[proj]),
                )

    def structure(self) -> tuple[list[str], list[_Proj]]:
        """Population order (neuron node names, the output's last) and the projections."""
        projs: list[_Proj] = []
        for name, kind in self.kind.items():
            if kind != "projection":
                continue
            node = self.nodes[name]
            if len(self.preds[name]) != 1:
                raise invalid(
                    ModelError, "inputs", self.preds[name], "a projection needs exactly one input", _where(name, node)
                )
            source, pre = self._back(self.preds[name][0], name)
            if self.kind[source] not in ("input", "neuron"):
                raise invalid(
                    ModelError,
                    "inputs",
                    source,
                    "a projection must read the Input or a LIF/IF population, not another projection "
                    "(asyncsnn needs a population after every projection, R1.2)",
                    _where(name, node),
                )
            proj = _Proj(name, node, source, pre)
            self._forward(name, [], proj.targets, name)
            if not proj.targets:
                raise invalid(
                    ModelError, "outputs", self.succs[name], "the projection reaches no population", _where(name, node)
                )
            projs.append(proj)
        for name, kind in self.kind.items():
            if kind == "neuron":
                for pred in self.preds[name]:
                    origin, _ = self._back(pred, name)
                    if self.kind[origin] != "projection":
                        raise invalid(
                            ModelError,
                            "inputs",
                            origin,
                            "a population must be fed by projections (Linear, Conv2d, pooling), not directly by "
                            f"an {self.kind[origin]} node",
                            _where(name, self.nodes[name]),
                        )
        out_node = self.nodes[self.output]
        if len(self.preds[self.output]) != 1:
            raise invalid(
                ModelError,
                "inputs",
                self.preds[self.output],
                "the Output node needs exactly one input",
                _where(self.output, out_node),
            )
        out_pop, _ = self._back(self.preds[self.output][0], self.output)
        if self.kind[out_pop] != "neuron":
            raise invalid(
                ModelError,
                "inputs",
                out_pop,
                "the Output node must be fed by a LIF/IF population (the class scores are spikes)",
                _where(self.output, out_node),
            )
        if not self._stored_order():
            self._output_feeds_only_back(projs, out_pop)
        return self._order(projs, out_pop), projs

    def _stored_order(self) -> bool:
        """Whether every neuron node has the population index :func:`to_nir` writes."""
        return all(_meta_int(self.nodes[n], _META_POP) is not None for n, k in self.kind.items() if k == "neuron")

    def _output_feeds_only_back(self, projs: list[_Proj], out_pop: str) -> None:
        """Refuse a projection out of the output population that closes no cycle.

        The output population comes last, so whatever it feeds is a recurrent projection
        (R1.2): right where the edge closes a cycle (its target leads back to the output),
        wrong for a forward branch that merely leaves from it. (Graphs of :func:`to_nir`
        say which projections are recurrent: they are not checked.)
        """
        succ: dict[str, set[str]] = {}
        for p in projs:
            succ.setdefault(p.source, set()).update(t for t, _ in p.targets)
        for p in projs:
            if p.source != out_pop:
                continue
            for target, _ in p.targets:
                seen, todo = {target}, [target]
                while todo and out_pop not in seen:
                    for nxt in succ.get(todo.pop(), ()):
                        if nxt not in seen:
                            seen.add(nxt)
                            todo.append(nxt)
                if out_pop not in seen:
                    raise invalid(
                        ModelError,
                        "outputs",
                        p.name,
                        f"the output population must be the last population: it feeds {target!r}, which does "
                        "not lead back to it (only recurrent projections, closing a cycle, may leave it)",
                        _where(out_pop, self.nodes[out_pop]),
                    )

    def _order(self, projs: list[_Proj], out_pop: str) -> list[str]:
        """Population order: a topological order of the forward part of the graph.

        The edges that close a cycle of populations become recurrent projections (R1.2):
        in a graph written by :func:`to_nir`, those whose source comes at or after their
        target in the stored population order; in other graphs, the back edges of a
        depth-first search from the ``Input`` (successors in node order), self loops
        included. Every projection out of the output population is recurrent (it comes
        last). The forward edges left are ordered topologically, ties by the asyncsnn
        metadata and then by node order; the output population comes last.
        """
        neurons = [n for n, k in self.kind.items() if k == "neuron" and n != out_pop]

        def key(n: str) -> tuple[float, int, str]:
            meta = _meta_int(self.nodes[n], _META_POP)
            return (math.inf if meta is None else float(meta), self.position[n], n)

        succ: dict[str, list[str]] = {n: [] for n in neurons}
        for p in projs:
            if p.source in succ:
                succ[p.source].extend(t for t, _ in p.targets if t in succ and t != p.source)
        for n in neurons:
            succ[n] = sorted(set(succ[n]), key=key)
        if self._stored_order():  # to_nir's order says which edges are recurrent
            stored = {n: _meta_int(self.nodes[n], _META_POP) or 0 for n in neurons}
            back = {(a, b) for a in neurons for b in succ[a] if stored[a] >= stored[b]}
        else:
            fed = {t for p in projs if p.source == self.input for t, _ in p.targets}
            back = self._back_edges(sorted(neurons, key=lambda n: (n not in fed, key(n))), succ)
        indegree = dict.fromkeys(neurons, 0)
        for a in neurons:
            for b in succ[a]:
                if (a, b) not in back:
                    indegree[b] += 1
        ready = [key(n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            *_, name = heapq.heappop(ready)
            order.append(name)
            for t in succ[name]:
                if (name, t) not in back:
                    indegree[t] -= 1
                    if indegree[t] == 0:
                        heapq.heappush(ready, key(t))
        assert len(order) == len(neurons), "the forward edges form a DAG"
        return [*order, out_pop]

    @staticmethod
    def _back_edges(roots: list[str], succ: dict[str, list[str]]) -> set[tuple[str, str]]:
        """The back edges of a depth-first search over ``succ`` from ``roots`` in turn."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        back: set[tuple[str, str]] = set()
        for root in roots:
            if root in state:
                continue
            state[root] = 1
            path, stack = [root], [iter(succ[root])]
            while stack:
                target = next(stack[-1], None)
                if target is None:
                    state[path.pop()] = 2
                    stack.pop()
                elif state.get(target) == 1:
                    back.add((path[-1], target))
                elif target not in state:
                    state[target] = 1
                    path.append(target)
                    stack.append(iter(succ[target]))
        return back

    # -- nodes ------------------------------------------------------------------------
    def input_shape(self, projs: list[_Proj]) -> tuple[int, ...]:
        node = self.nodes[self.input]
        shape = None
        for attr in ("input_type", "output_type"):
            types = getattr(node, attr, None)
            if isinstance(types, Mapping) and types:
                shape = _shape_of(next(iter(types.values())))
                break
        if shape is not None:
            readers = [type(p.node).__name__ for p in projs if p.source == self.input and not p.pre]
            if len(shape) == 4 and shape[0] == 1 and any(k not in ("Linear", "Affine") for k in readers):
                # A leading batch dimension of 1 (Norse's exporter writes the sample's shape): a
                # Conv2d or pooling layer reads (c, h, w). Dense layers read any shape of the right size.
                return shape[1:]
            return shape
        for p in projs:  # infer from the first reader (snnTorch issue #410: shapes may be missing)
            if p.source != self.input:
                continue
            kind = type(p.node).__name__
            weight = _array(getattr(p.node, "weight", np.zeros(0)), "weight", _where(p.name, p.node))
            if kind in ("Linear", "Affine") and weight.ndim == 2:
                return (int(weight.shape[1]),)
            hw = _shape_of(getattr(p.node, "input_shape", None))
            if kind == "Conv2d" and weight.ndim == 4 and hw is not None and len(hw) == 2:
                return (int(weight.shape[1]), *hw)
        raise invalid(
            ModelError,
            "shape",
            None,
            "the Input node has no shape and no Linear or Conv2d (with input_shape) reads it to infer one",
            _where(self.input, node),
        )

    def layer(self, p: _Proj, source_shape: tuple[int, ...]) -> tuple[Layer, tuple[int, ...], np.ndarray | None]:
        """The asyncsnn layer of projection node ``p``, its output shape and its bias (None if zero).

        The bias of an ``Affine`` (one value per output) or a ``Conv2d`` (one per output
        channel, the same at every position) is returned in the layer's output shape: it
        becomes a per-neuron bias of the population the node feeds (R1.4).
        """
        node, where, kind = p.node, _where(p.name, p.node), type(p.node).__name__
        arriving = source_shape
        for f in p.pre:
            arriving = _flatten_shape(arriving, self.nodes[f])
        layer: Layer
        if kind in ("Linear", "Affine"):
            weight = _array(node.weight, "weight", where)
            if weight.ndim != 2:
                raise invalid(ModelError, "weight", f"shape {weight.shape}", "must be 2-D [n_out, n_in]", where)
            layer = Dense(weight)
            bias_width = int(weight.shape[0])
        elif kind == "Conv2d":
            weight = _array(node.weight, "weight", where)
            if weight.ndim != 4:
                raise invalid(ModelError, "weight", f"shape {weight.shape}", "must be 4-D [c_out, c_in, kh, kw]", where)
            if _ints(node.dilation, p.name, node, "dilation") != (1, 1):
                raise invalid(ModelError, "dilation", node.dilation, "only dilation 1 is supported (R1.2)", where)
            groups = _array(node.groups, "groups", where).reshape(-1)
            if groups.size != 1 or groups[0] != 1:
                raise invalid(ModelError, "groups", node.groups, "only groups = 1 is supported (R1.2)", where)
            bias_width = int(weight.shape[0])
            stride = _ints(node.stride, p.name, node, "stride")
            padding = self._conv_padding(node, weight.shape, stride, p.name, where)
            hw = _shape_of(getattr(node, "input_shape", None))
            if hw is not None and len(arriving) == 3 and tuple(arriving[1:]) != tuple(hw):
                raise invalid(
                    ModelError, "input_shape", hw, f"does not match the source population shape {arriving}", where
                )
            layer = Conv2d(weight, stride=stride, padding=padding)
        else:  # SumPool2d / AvgPool2d
            kernel = _ints(node.kernel_size, p.name, node, "kernel_size")
            stride = _ints(node.stride, p.name, node, "stride") if node.stride is not None else kernel
            pad = getattr(node, "padding", None)
            if pad is not None and _ints(pad, p.name, node, "padding") != (0, 0):
                raise invalid(ModelError, "padding", pad, "pooling without padding only (R1.2)", where)
            layer = (SumPool2d if kind == "SumPool2d" else AvgPool2d)(kernel, stride=stride)
        if not isinstance(layer, Dense) and tuple(arriving) != tuple(source_shape):
            raise invalid(
                ModelError,
                "inputs",
                p.pre,
                f"a {kind} must read a (c, h, w) population directly, not through a Flatten",
                where,
            )
        out_shape = layer.output_shape(source_shape, where)
        bias = None
        if kind in ("Affine", "Conv2d"):
            bias = self._bias(node, bias_width, out_shape, where)
        return layer, out_shape, bias

    @staticmethod
    def _bias(node: Any, width: int, out_shape: tuple[int, ...], where: str) -> np.ndarray | None:
        """The node's bias spread over its output shape, or None when it is absent or zero."""
        raw = getattr(node, "bias", None)
        if raw is None:
            return None
        b = _array(raw, "bias", where).reshape(-1)
        if b.size not in (1, width):
            what = "output" if len(out_shape) == 1 else "output channel"
            raise invalid(
                ModelError,
                "bias",
                f"array of {b.size} values",
                f"must have one value per {what} ({width}) to be a per-neuron bias of the population it feeds",
                where,
            )
        if not np.all(np.isfinite(b)):
            raise invalid(ModelError, "bias", float(b[~np.isfinite(b)][0]), "must be finite", where)
        if not np.any(b != 0):
            return None
        per_output: np.ndarray = np.array(np.broadcast_to(b, (width,)), dtype=np.float64)
        if len(out_shape) == 1:  # Affine: one value per output neuron
            return per_output
        # Conv2d: one value per output channel, the same at every position (c_out, oh, ow)
        spread: np.ndarray = np.array(np.broadcast_to(per_output.reshape(-1, 1, 1), out_shape))
        return spread

    @staticmethod
    def _conv_padding(
        node: Any, wshape: tuple[int, ...], stride: tuple[int, int], name: str, where: str
    ) -> tuple[int, int]:
        pad = node.padding
        if isinstance(pad, bytes):
            pad = pad.decode()
        if isinstance(pad, str):
            if pad == "valid":
                return (0, 0)
            kh, kw = int(wshape[2]), int(wshape[3])
            if pad == "same" and stride == (1, 1) and kh % 2 == 1 and kw % 2 == 1:
                return ((kh - 1) // 2, (kw - 1) // 2)
            raise invalid(
                ModelError, "padding", pad, "only 'valid', or 'same' with stride 1 and odd kernels, is supported", where
            )
        return _ints(pad, name, node, "padding")

    def population(
        self,
        name: str,
        arriving: tuple[int, ...] | None,
        ordinal: int,
        foreign: bool,
        bias: np.ndarray | None,
        reset: str | None,
    ) -> Population:
        """The asyncsnn population of neuron node ``name``.

        ``arriving``: the shape it receives; ``foreign``: the graph was not written by
        :func:`to_nir` (names come from the nodes, and an ``alpha`` within
        :data:`UNIT_TOLERANCE` of 0 is 0); ``bias``: the flat sum of the biases of the
        projection nodes feeding it (None: none); ``reset``: the mode asked for by the
        caller (None: the node's asyncsnn metadata, else ``"zero"``).
        """
        node, where, kind = self.nodes[name], _where(name, self.nodes[name]), type(self.nodes[name]).__name__
        fields = {
            "LIF": ("v_threshold", "tau", "r", "v_leak", "v_reset"),
            "IF": ("v_threshold", "r", "v_reset"),
            "CubaLIF": ("v_threshold", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_reset"),
        }[kind]
        raw = {
            f: (np.zeros(1) if getattr(node, f, None) is None else _array(getattr(node, f), f, where)) for f in fields
        }
        shape = self._pop_shape(name, raw, arriving, where)
        size = math.prod(shape)
        p: dict[str, np.ndarray] = {}
        for f, arr in raw.items():
            if arr.size == 1:
                p[f] = np.full(shape, float(arr.reshape(-1)[0]))
            elif arr.size == size:
                p[f] = arr.reshape(shape)
            else:
                raise invalid(
                    ModelError,
                    f,
                    f"array of shape {arr.shape}",
                    f"must be a scalar or have {size} values {shape}",
                    where,
                )
        for f in ("v_leak", "v_reset"):
            if f in p and np.any(p[f] != 0):
                bad = float(p[f][p[f] != 0].flat[0])
                reason = (
                    "must be 0: asyncsnn neurons leak towards 0"
                    if f == "v_leak"
                    else "must be 0: asyncsnn resets to 0 or by subtracting the threshold (reset=..., R4.8), "
                    "never to another value"
                )
                raise invalid(ModelError, f, bad, reason, where)
        beta, alpha, scale = self._dynamics(kind, p, where, foreign)
        threshold = p["v_threshold"] / scale
        meta = getattr(node, "metadata", None)
        meta = meta if isinstance(meta, Mapping) else {}
        beta, alpha = _stored_exact(meta, _META_BETA, beta, where), _stored_exact(meta, _META_ALPHA, alpha, where)
        dropout = _meta_float(meta.get(_META_DROPOUT, 0.0), f"metadata[{_META_DROPOUT!r}]", where)
        if foreign:
            pop_name: str | None = name
        else:
            pop_name = _text(meta.get(_META_NAME), f"metadata[{_META_NAME!r}]", where)
        if reset is None:
            stored = _text(meta.get(_META_RESET), f"metadata[{_META_RESET!r}]", where)
            if stored is not None and stored not in RESET_MODES:
                raise invalid(
                    ModelError, f"metadata[{_META_RESET!r}]", stored, f"must be one of {', '.join(RESET_MODES)}", where
                )
            reset = "zero" if stored is None else stored
        total = np.zeros(size) if bias is None else bias.astype(np.float64)
        if _META_BIAS in meta:  # written by to_nir where no projection node could carry the bias
            field_name = f"metadata[{_META_BIAS!r}]"
            extra = _array(meta[_META_BIAS], field_name, where).reshape(-1)
            if extra.size not in (1, size) or not np.all(np.isfinite(extra)):
                raise invalid(
                    ModelError, field_name, f"array of {extra.size} values", f"must be {size} finite numbers", where
                )
            total = total + extra
        return Population.create(
            shape,
            threshold.astype(np.float32),
            beta.astype(np.float32),
            refractory_dropout=dropout,
            name=pop_name,
            location=f"{where}, population {ordinal}",
            bias=total.reshape(shape).astype(np.float32),
            reset=reset,
            alpha=alpha.astype(np.float32),
        )

    def _dynamics(
        self, kind: str, p: dict[str, np.ndarray], where: str, foreign: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(beta, alpha, input scale)`` of a neuron node, by forward Euler over one ``dt``.

        ``LIF``: ``beta = 1 - dt/tau``, scale ``r dt/tau``; ``IF``: ``beta = 1``, scale
        ``r dt``; ``CubaLIF``: ``alpha = 1 - dt/tau_syn``, ``beta = 1 - dt/tau_mem``, scale
        ``w_in (dt/tau_syn) r (dt/tau_mem)`` (the synaptic current and the membrane in units
        of their inputs, R4.12). Computed in float64; a scale within :data:`UNIT_TOLERANCE`
        of 1 is 1 (exporters compute ``tau`` and ``r`` in float32), as is an ``alpha``
        within it of 0 in a graph from elsewhere (``foreign``).
        """
        dt = self.dt
        alpha = np.zeros(p["v_threshold"].shape)
        if kind == "IF":
            # dv/dt = r I stepped with dt: v <- v + (r dt) W s, so the input scale is r dt.
            beta = np.ones(p["v_threshold"].shape)
            scale = p["r"] * (1.0 if self.legacy_if else dt)
        else:
            tau_field = "tau" if kind == "LIF" else "tau_mem"
            tau = p[tau_field]
            self._positive(tau, tau_field, where)
            beta = 1.0 - dt / tau
            if np.any(beta < -UNIT_TOLERANCE):
                bad = float(tau[beta < -UNIT_TOLERANCE].flat[0])
                raise invalid(ModelError, tau_field, bad, _below_dt("beta", tau_field, dt), where)
            beta = np.maximum(beta, 0.0)  # snnTorch writes tau = float32(dt) < dt for beta = 0
            scale = p["r"] * dt / tau
        if kind == "CubaLIF":
            # tau_syn dI/dt = -I + w_in S: I <- alpha I + (w_in dt/tau_syn) S, with alpha = 1 - dt/tau_syn.
            tau_syn = p["tau_syn"]
            self._positive(tau_syn, "tau_syn", where)
            alpha = 1.0 - dt / tau_syn
            if foreign:  # snnTorch writes tau_syn = float32(dt) for alpha = 0: 1 - dt/tau_syn is -2.5e-8
                alpha = np.where(np.abs(alpha) <= UNIT_TOLERANCE, 0.0, alpha)
            if np.any(alpha < 0):
                raise invalid(
                    ModelError, "tau_syn", float(tau_syn[alpha < 0].flat[0]), _below_dt("alpha", "tau_syn", dt), where
                )
            scale = scale * p["w_in"] * dt / tau_syn
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            bad = float(scale[~(np.isfinite(scale) & (scale > 0))].flat[0])
            raise invalid(
                ModelError,
                "r",
                bad,
                "the input scale (r dt / tau, r dt for IF, w_in (dt / tau_syn) r (dt / tau_mem) for CubaLIF) "
                "must be finite and > 0",
                where,
            )
        return beta, alpha, np.where(np.abs(scale - 1.0) <= UNIT_TOLERANCE, 1.0, scale)

    @staticmethod
    def _positive(values: np.ndarray, name: str, where: str) -> None:
        bad = ~(np.isfinite(values) & (values > 0))
        if np.any(bad):
            raise invalid(ModelError, name, float(values[bad].flat[0]), "must be finite and > 0", where)

    @staticmethod
    def _pop_shape(
        name: str, raw: dict[str, np.ndarray], arriving: tuple[int, ...] | None, where: str
    ) -> tuple[int, ...]:
        declared = next((a.shape for a in raw.values() if a.size > 1), None)
        if arriving is None:
            if declared is None:
                raise invalid(
                    ModelError,
                    "shape",
                    None,
                    "a population with no input needs per-neuron parameters to give its size",
                    where,
                )
            return tuple(int(s) for s in declared)
        if declared is not None and len(declared) > 1 and math.prod(declared) == math.prod(arriving):
            return tuple(int(s) for s in declared)
        return arriving


def _stored_exact(meta: Mapping[str, Any], key: str, values: np.ndarray, where: str) -> np.ndarray:
    """``values`` (beta or alpha) with the float32 values that to_nir stored under ``key``.

    A stored value replaces a computed one within ``_EXACT`` of it only: where the node's ``tau``
    and this ``dt`` give it, up to float64 rounding (another ``dt`` leaves the computed values).
    """
    if key not in meta:
        return values
    field_name = f"metadata[{key!r}]"
    stored = _array(meta[key], field_name, where)
    if stored.size != values.size or not np.all(np.isfinite(stored)):
        raise invalid(
            ModelError, field_name, f"array of {stored.size} values", f"must be {values.size} finite numbers", where
        )
    return np.where(np.abs(stored.reshape(values.shape) - values) <= _EXACT, stored.reshape(values.shape), values)


def _below_dt(factor: str, tau: str, dt: float) -> str:
    """Why a time constant ``tau`` below ``dt`` is refused (``factor``: what it would make negative)."""
    return (
        f"is below dt = {dt:g}: forward Euler gives {factor} = 1 - dt/{tau} < 0 (pass the dt the graph was "
        f"exported with: {SNNTORCH_DT:g} for snnTorch and SpikingJelly, the square of Norse's dt for "
        "Norse (1e-06 for its default 1e-3); see docs/nir.md)"
    )


def _reset_choice(reset: Any, neurons: list[str]) -> dict[str, str]:
    """The reset mode the caller asked for, per neuron node (absent: read from the graph)."""

    def check(mode: Any, where: str) -> str:
        if not isinstance(mode, str) or mode not in RESET_MODES:
            raise invalid(ParameterError, "reset", mode, f"must be one of {', '.join(RESET_MODES)} (R4.8)", where)
        return mode

    if reset is None:
        return {}
    if isinstance(reset, str):
        mode = check(reset, "from_nir")
        return dict.fromkeys(neurons, mode)
    if isinstance(reset, Mapping):
        unknown = sorted(str(k) for k in reset if k not in neurons)
        if unknown:
            raise invalid(
                ParameterError, "reset", unknown, f"names no neuron node of the graph (they are: {neurons})", "from_nir"
            )
        return {str(k): check(v, f"from_nir, node {k!r}") for k, v in reset.items()}
    raise invalid(
        ParameterError, "reset", reset, "must be None, a reset mode or a dict of node name -> reset mode", "from_nir"
    )


def from_nir(
    graph_or_path: Any,
    *,
    dt: float | None = None,
    output: str | None = None,
    reset: str | Mapping[str, str] | None = None,
) -> Network:
    """Build a :class:`~asyncsnn.network.Network` from a NIR graph.

    The graph must have the shape of an asyncsnn network (R1): one ``Input``, projections
    (``Linear``, ``Affine``, ``Conv2d``, ``SumPool2d``, ``AvgPool2d``), each followed by a
    population (``LIF``, ``IF``, or ``CubaLIF``: a synaptic current, R4.12), ``Flatten`` nodes
    anywhere between them (reshapes are implicit), skip connections (several projections
    into one population), and one ``Output`` fed by the last population. Cycles through
    populations are recurrent layers: populations are ordered topologically by the forward
    part of the graph (ties: the order written by :func:`to_nir`, then the graph's node
    order), and the edges that close a cycle (back edges of a depth-first search from the
    ``Input``, or, in a graph of :func:`to_nir`, those it wrote as recurrent) become
    recurrent projections (R1.2), as does every projection out of the output population
    (which must close a cycle in a graph from elsewhere).
    Nested graphs (snnTorch's ``RLeaky``) are inlined, their nodes named
    ``<graph>.<node>``. The bias of an ``Affine`` node (one value per output), or of a
    ``Conv2d`` node (one per output channel), becomes the per-neuron bias of the
    population it feeds (R1.4); the biases of several nodes feeding one population add.
    See ``docs/nir.md`` for the discretisation.

    Parameters
    ----------
    graph_or_path
        A ``nir.NIRGraph`` or the path of a ``.nir`` file (read without NIR's type check,
        so graphs with missing shape metadata load).
    dt
        The time step of one asyncsnn timestep, in the time unit of the graph's ``tau``.
        ``None``: the ``dt`` stored by :func:`to_nir`, else 1.0. Use :data:`SNNTORCH_DT`
        for graphs exported by snnTorch or SpikingJelly, 1.0 for sinabs, and the square of
        Norse's ``dt`` for Norse (``docs/nir.md``).
    output
        Name of the ``Output`` node to use when the graph has several.
    reset
        The reset mode of the populations (R4.8), which NIR 1.0 cannot express (its
        ``v_reset`` is a reset *to* a value): ``None`` reads the mode :func:`to_nir`
        stored in a node's metadata and takes ``"zero"`` (NIR's reset to ``v_reset = 0``)
        for every other node; a mode (``"zero"``, ``"subtract"``, ``"subtract_delayed"``,
        ``"none"``) sets every population; a dict maps neuron node names to modes (the
        nodes it leaves out are read as with ``None``). snnTorch's default ``Leaky``
        (``reset_mechanism="subtract"``, ``reset_delay=True``) needs
        ``"subtract_delayed"``, sinabs' default ``IAF`` (``MembraneSubtract``) and
        SpikingJelly's soft reset ``"subtract"``: their exporters do not record it.

    Returns
    -------
    Network

    Raises
    ------
    ModelError
        For an unsupported node or structure (a projection feeding a projection, a nested
        graph without one ``Input`` and one ``Output``, an output population feeding a
        population that does not lead back to it), a bias that cannot be
        a per-neuron bias (wrong size, not finite), a non-zero ``v_leak`` or ``v_reset``,
        dilation or groups other than 1, ``tau < dt`` (``tau_mem``, ``tau_syn`` too), shapes that do not fit, parameters
        that are not real numbers (complex, strings), bad asyncsnn metadata or malformed
        edges; the error names the NIR node and the field. For a path: a file that is not
        HDF5 or not a NIR graph (``field`` is ``"file"``).
    ParameterError
        For a ``reset`` that is not a reset mode, or a dict naming no neuron node.
    MissingDependencyError
        If ``nir`` is missing or older than :data:`NIR_MIN_VERSION`.
    FileNotFoundError
        If the path does not exist.

    Warns
    -----
    UserWarning
        When ``reset`` is ``None`` and a ``.nir`` file stores neuron nodes without
        ``v_reset`` (written with nir < 1.0.6, as sinabs 3.1 does, whose default neurons
        reset by subtraction): they are read with ``reset="zero"``.

    Examples
    --------
    >>> import numpy as np, nir
    >>> g = nir.NIRGraph.from_list(
    ...     nir.Linear(weight=np.array([[0.5, 0.25]])),
    ...     nir.LIF(tau=np.array([8.0]), r=np.array([4.0]), v_leak=np.zeros(1), v_threshold=np.ones(1)))
    >>> net = from_nir(g)  # beta = 1 - 1/8, threshold = 1 / (r dt / tau) = 2
    >>> float(net.populations[0].beta[0]), float(net.populations[0].threshold[0])
    (0.875, 2.0)
    >>> g.nodes["linear"] = nir.Affine(weight=np.array([[0.5, 0.25]]), bias=np.array([0.125]))
    >>> pop = from_nir(g, reset="subtract_delayed").populations[0]  # snnTorch's default Leaky
    >>> float(pop.bias[0]), pop.reset
    (0.125, 'subtract_delayed')
    >>> g.nodes["lif"] = nir.CubaLIF(tau_syn=np.array([4.0]), tau_mem=np.array([8.0]), r=np.array([8.0]),
    ...                              v_leak=np.zeros(1), v_threshold=np.ones(1), w_in=np.array([4.0]))
    >>> pop = from_nir(g).populations[0]  # a synaptic current (R4.12): input scale (4 / 4) (8 / 8) = 1
    >>> float(pop.alpha[0]), float(pop.beta[0]), float(pop.threshold[0])
    (0.75, 0.875, 1.0)
    """
    graph, path, no_reset = _load_graph(graph_or_path)
    reader = _Reader(graph, _graph_dt(graph, dt), output)
    order, projs = reader.structure()
    chosen = _reset_choice(reset, [n for n, k in reader.kind.items() if k == "neuron"])
    ours = any(_meta_int(reader.nodes[n], _META_POP) is not None for n in order)
    index = {reader.input: 0} | {n: i for i, n in enumerate(order, start=1)}
    shapes: dict[str, tuple[int, ...]] = {reader.input: reader.input_shape(projs)}
    unrecorded = [
        n
        for n in order
        if n in no_reset and n not in chosen and _META_RESET not in (getattr(reader.nodes[n], "metadata", None) or {})
    ]
    if unrecorded:
        warnings.warn(
            f"NIR file {path}: the neuron nodes {unrecorded} have no v_reset (the file was written with "
            "nir < 1.0.6, e.g. by sinabs 3.1, whose default IAF resets by subtracting the threshold); they are "
            "read with reset='zero': pass reset='subtract' (or 'zero') to from_nir/read to choose (docs/nir.md)",
            UserWarning,
            stacklevel=2,
        )

    def proj_key(p: _Proj) -> tuple[float, int, int, int]:
        meta = _meta_int(p.node, _META_PROJ)
        first = min(index[t] for t, _ in p.targets)
        return (math.inf if meta is None else float(meta), first, index[p.source], reader.position[p.name])

    projs.sort(key=proj_key)
    populations = _populations(reader, order, projs, index, shapes, not ours, chosen)
    projections = [
        Projection(index[p.source], index[t], p.layer) for p in projs for t, _ in p.targets if p.layer is not None
    ]
    return Network(shapes[reader.input], populations, projections)


def _populations(
    reader: _Reader,
    order: list[str],
    projs: list[_Proj],
    index: dict[str, int],
    shapes: dict[str, tuple[int, ...]],
    foreign: bool,
    chosen: dict[str, str],
) -> list[Population]:
    """The populations of ``order``, with the biases of the projection nodes feeding them.

    Reads the layer of every projection (``p.layer``) and fills ``shapes``. A forward
    projection's source comes before its target, so its shape is known when the target is
    built; a recurrent one (its source at or after its target, R1.2) is read once every
    population is built, and its bias (the recurrent ``Linear`` of snnTorch's ``RLeaky``
    has one) is added to its target's, which is then built again.
    """
    incoming: dict[str, list[tuple[_Proj, list[str]]]] = {n: [] for n in order}
    for p in projs:
        for target, path_ in p.targets:
            incoming[target].append((p, path_))
    out_shapes: dict[str, tuple[int, ...]] = {}

    def delivered(
        p: _Proj,
        path_: list[str],
        name: str,
        arriving: tuple[int, ...] | None,
        other: str = "another projection delivers",
    ) -> tuple[int, ...]:
        if p.name not in out_shapes:
            p.layer, out_shapes[p.name], p.bias = reader.layer(p, shapes[p.source])
        shape = out_shapes[p.name]
        for f in path_:
            shape = _flatten_shape(shape, reader.nodes[f])
        if arriving is not None and math.prod(shape) != math.prod(arriving):
            raise invalid(
                ModelError,
                "inputs",
                p.name,
                f"delivers {math.prod(shape)} values {shape} but {other} {math.prod(arriving)} {arriving}",
                _where(name, reader.nodes[name]),
            )
        return shape

    def add(bias: np.ndarray | None, p: _Proj) -> np.ndarray | None:  # biases into one population add (float64)
        if p.bias is None:
            return bias
        return p.bias.reshape(-1) if bias is None else bias + p.bias.reshape(-1)

    populations: list[Population] = []
    arrivals: list[tuple[int, ...] | None] = []
    biases: list[np.ndarray | None] = []
    for i, name in enumerate(order, start=1):
        arriving: tuple[int, ...] | None = None
        bias: np.ndarray | None = None
        for p, path_ in incoming[name]:
            if p.source == reader.input or index[p.source] < i:  # forward (R1.2)
                arriving = delivered(p, path_, name, arriving)
                bias = add(bias, p)
        pop = reader.population(name, arriving, i, foreign, bias, chosen.get(name))
        shapes[name] = pop.shape
        populations.append(pop)
        arrivals.append(arriving)
        biases.append(bias)
    for i, name in enumerate(order, start=1):
        recurrent = [(p, path_) for p, path_ in incoming[name] if p.source != reader.input and index[p.source] >= i]
        bias = biases[i - 1]
        for p, path_ in recurrent:
            delivered(p, path_, name, shapes[name], "the population it feeds back into has")
            bias = add(bias, p)
        if bias is not biases[i - 1]:  # a recurrent node's bias: build the population again with it
            populations[i - 1] = reader.population(name, arrivals[i - 1], i, foreign, bias, chosen.get(name))
    return populations


# ----------------------------------------------------------------------------- writing


def _store_inexact(meta: dict[str, Any], key: str, values: np.ndarray, tau: np.ndarray, dt: float) -> None:
    """Store ``values`` (beta or alpha) under ``key`` when ``1 - dt/tau`` does not give them back in float32."""
    if np.any((1.0 - dt / tau).astype(np.float32) != values):  # only below 2**-28: 1 - value needs > 53 bits
        meta[key] = np.asarray(values, dtype=np.float32).copy()


def _neuron_node(nir: Any, pop: Population, i: int, dt: float) -> tuple[str, Any]:
    beta = pop.beta.astype(np.float64)
    threshold = pop.threshold.astype(np.float32)
    zeros = np.zeros(pop.shape, dtype=np.float32)
    meta: dict[str, Any] = {_META_POP: i, _META_DROPOUT: float(pop.refractory_dropout)}
    if pop.name is not None:
        meta[_META_NAME] = str(pop.name)
    if pop.reset != "zero":  # NIR has no field for it (v_reset = 0 is the closest for other tools)
        meta[_META_RESET] = pop.reset
    # beta = 1 next to beta < 1 in one population: tau = 2**60 dt, so that 1 - dt/tau is 1.0 in float64.
    tau = dt / np.where(beta == 1.0, _TINY, 1.0 - beta)
    _store_inexact(meta, _META_BETA, pop.beta, tau, dt)
    if pop.synaptic:  # R4.12: tau_syn dI/dt = -I + w_in S, with w_in (dt / tau_syn) = 1; alpha = 1 as beta = 1
        assert pop.alpha is not None
        alpha = pop.alpha.astype(np.float64)
        tau_syn = dt / np.where(alpha == 1.0, _TINY, 1.0 - alpha)
        _store_inexact(meta, _META_ALPHA, pop.alpha, tau_syn, dt)
        return f"cubalif{i}", nir.CubaLIF(
            tau_syn=tau_syn,
            tau_mem=tau,
            r=tau / dt,
            v_leak=zeros,
            v_threshold=threshold,
            v_reset=zeros.copy(),
            w_in=tau_syn / dt,
            metadata=meta,
        )
    if np.all(beta == 1.0):  # dv/dt = r I with r = 1/dt: the input scale r dt is 1
        return f"if{i}", nir.IF(r=np.full(pop.shape, 1.0 / dt), v_threshold=threshold, v_reset=zeros, metadata=meta)
    return f"lif{i}", nir.LIF(
        tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros.copy(), metadata=meta
    )


def _bias_home(network: Network, target: int) -> tuple[int | None, np.ndarray | None]:
    """Where :func:`to_nir` writes the bias of population ``target`` (1-based).

    Returns ``(projection index, bias in that node's form)``: the first ``Dense``
    projection into the population (an ``Affine`` with the per-neuron bias), else the
    first ``Conv2d`` one when the bias is the same at every position of each output
    channel (the ``Conv2d``'s per-channel bias); forward projections before recurrent
    ones. ``(None, None)`` when the bias is zero or no projection node can carry it: it
    then goes into the neuron node's metadata only.
    """
    pop = network.populations[target - 1]
    assert pop.bias is not None
    if not np.any(pop.bias != 0):
        return None, None
    flat = pop.bias.astype(np.float32).reshape(-1)
    shapes = network.population_shapes
    incoming = [(n, proj) for n, proj in enumerate(network.projections) if proj.target == target]
    incoming.sort(key=lambda item: item[1].recurrent)  # forward projections first (stable)
    for n, proj in incoming:
        if isinstance(proj.layer, Dense):
            return n, flat.copy()
    for n, proj in incoming:
        if isinstance(proj.layer, Conv2d):
            per_position = flat.reshape(proj.layer.output_shape(shapes[proj.source]))
            per_channel = per_position[:, :1, :1]
            if np.array_equal(per_position, np.broadcast_to(per_channel, per_position.shape)):
                return n, per_channel.reshape(-1).copy()
    return None, None


def _projection_node(
    nir: Any, layer: Layer, source_shape: tuple[int, ...], n: int, bias: np.ndarray | None = None
) -> Any:
    meta = {_META_PROJ: n}
    if isinstance(layer, Dense):
        if bias is not None:
            return nir.Affine(weight=layer.weight.copy(), bias=bias, metadata=meta)
        return nir.Linear(weight=layer.weight.copy(), metadata=meta)
    if isinstance(layer, Conv2d):
        c_out = int(layer.weight.shape[0])
        return nir.Conv2d(
            input_shape=tuple(source_shape[1:]),
            weight=layer.weight.copy(),
            stride=layer.stride,
            padding=layer.padding,
            dilation=(1, 1),
            groups=1,
            bias=np.zeros(c_out, dtype=np.float32) if bias is None else bias,
            metadata=meta,
        )
    cls = nir.AvgPool2d if isinstance(layer, AvgPool2d) else nir.SumPool2d
    return cls(
        kernel_size=np.array(layer.kernel_size),
        stride=np.array(layer.stride),
        padding=np.array([0, 0]),
        metadata=meta,
    )


def to_nir(network: Network, *, dt: float = 1.0) -> nir.NIRGraph:
    """Describe ``network`` as a NIR graph.

    Every population becomes a ``LIF`` node with ``tau = dt / (1 - beta)``,
    ``r = tau / dt`` (so the input scale ``r dt / tau`` is 1), ``v_leak = v_reset = 0``,
    ``v_threshold = threshold``; a population with ``beta = 1`` everywhere becomes an
    ``IF`` node with ``r = 1 / dt`` (input scale ``r dt = 1``), and a neuron with
    ``beta = 1`` in a population that also has ``beta < 1`` gets ``tau = 2**60 dt``
    (``1 - dt / tau`` rounds to exactly 1 in float32 and float64). A population with a
    synaptic current (R4.12, some ``alpha != 0``) becomes a ``CubaLIF`` node with
    ``tau_mem`` and ``r`` as ``tau`` and ``r`` above, ``tau_syn = dt / (1 - alpha)`` and
    ``w_in = tau_syn / dt`` (synaptic input scale ``w_in dt / tau_syn`` 1; ``2**60 dt`` for
    ``tau_syn`` where ``alpha = 1``, and for ``tau_mem`` where ``beta = 1``). Projections become
    ``Linear``, ``Conv2d``, ``SumPool2d`` or ``AvgPool2d`` nodes, with ``Flatten`` nodes
    where a ``Linear`` reads a multi-dimensional population; a recurrent projection
    (R1.2) is a cycle ``neuron -> projection -> neuron``, which :func:`from_nir` reads
    back as recurrent.

    A population's bias (R1.4) is written where other NIR tools see it: as an ``Affine``
    (instead of a ``Linear``) for the first ``Dense`` projection into it, else as the
    ``Conv2d`` bias of the first convolution into it when it is the same at every position
    of a channel; a bias that no node can carry (e.g. one fed only by pooling) goes into the
    neuron node's metadata only. The reset mode (R4.8), which NIR 1.0 cannot express, is
    written as ``v_reset = 0`` plus the mode in the node's metadata. asyncsnn-only facts
    (population and projection order, refractory dropout, names, reset modes, such biases,
    ``dt``) go into the nodes' metadata, so ``from_nir(to_nir(net))`` rebuilds ``net``
    exactly; other tools read a population with ``reset="zero"`` and the biases that are in
    nodes.

    Parameters
    ----------
    network
        The network.
    dt
        The duration of one timestep in the time unit wanted for ``tau``
        (:data:`SNNTORCH_DT` makes the graph read like an snnTorch export).

    Returns
    -------
    nir.NIRGraph

    Raises
    ------
    ModelError
        If a projection writes a population whose shape differs from the shape it produces
        and is not flat, e.g. a ``Dense`` into a ``(c, h, w)`` population (NIR has no reshape
        node).
    MissingDependencyError
        If ``nir`` is missing or older than :data:`NIR_MIN_VERSION` (``LIF`` nodes without
        ``v_reset``).

    Examples
    --------
    >>> import numpy as np
    >>> import asyncsnn
    >>> net = asyncsnn.Network.sequential(
    ...     input_shape=(1, 4, 4), layers=[asyncsnn.Conv2d(np.ones((2, 1, 3, 3)), padding=1), asyncsnn.SumPool2d(2),
    ...                                   asyncsnn.Dense(np.ones((3, 8)))], beta=0.5)
    >>> g = to_nir(net)
    >>> [(a, b) for a, b in g.edges][:4]
    [('input', 'proj0'), ('proj0', 'lif1'), ('lif1', 'proj1'), ('proj1', 'lif2')]
    >>> type(g.nodes["flatten2"]).__name__, [int(v) for v in g.nodes["flatten2"].output_type["output"]]
    ('Flatten', [8])
    """
    nir = _import_nir()
    if not isinstance(network, Network):
        raise invalid(ModelError, "network", type(network).__name__, "must be an asyncsnn.Network")
    dt = _graph_dt(None, dt)
    shapes = network.population_shapes
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(network.input_shape))}
    edges: list[tuple[str, str]] = []
    names = ["input"]
    pop_nodes = []
    homes: dict[int, np.ndarray] = {}  # projection index -> the bias its node carries
    for i, pop in enumerate(network.populations, start=1):
        name, node = _neuron_node(nir, pop, i, dt)
        home, carried = _bias_home(network, i)
        if home is not None and carried is not None:
            homes[home] = carried
        elif pop.bias is not None and np.any(pop.bias != 0):  # no node can carry it: asyncsnn metadata only
            node.metadata[_META_BIAS] = np.asarray(pop.bias, dtype=np.float32).copy()
        names.append(name)
        pop_nodes.append((name, node))
    incoming: dict[int, list[int]] = {}
    for n, proj in enumerate(network.projections):
        incoming.setdefault(proj.target, []).append(n)
    for i, (pop_name, pop_node) in enumerate(pop_nodes, start=1):
        for n in incoming.get(i, []):
            proj = network.projections[n]
            layer, src_shape = proj.layer, shapes[proj.source]
            pname = f"proj{n}"
            head = names[proj.source]
            if isinstance(layer, Dense) and len(src_shape) > 1:
                fname = f"flatten{n}"
                nodes[fname] = nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
                edges.append((head, fname))
                head = fname
            nodes[pname] = _projection_node(nir, layer, src_shape, n, homes.get(n))
            edges.append((head, pname))
            produced = layer.output_shape(src_shape)
            tail = pname
            if produced != shapes[i]:
                if len(shapes[i]) != 1:
                    raise invalid(
                        ModelError,
                        "shape",
                        shapes[i],
                        f"projection {n} produces {produced}: NIR has no reshape node, so a population fed with "
                        "another shape must be flat (n,)",
                        f"population {i}",
                    )
                fname = f"flatten{n}_out"
                nodes[fname] = nir.Flatten(input_type={"input": np.array(produced)}, start_dim=0, end_dim=-1)
                edges.append((pname, fname))
                tail = fname
            edges.append((tail, pop_name))
        nodes[pop_name] = pop_node
    nodes["output"] = nir.Output(output_type=np.array(shapes[-1]))
    edges.append((names[-1], "output"))
    metadata = {
        _META_DT: dt,
        _META_OUTPUT: "output",
        "asyncsnn_spec_version": network.spec_version,
        _META_FORMAT: _FORMAT,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write(path: str | os.PathLike[str], network: Network, *, dt: float = 1.0) -> None:
    """Write ``network`` to a ``.nir`` file (HDF5, through ``nir.write``).

    Parameters
    ----------
    path
        Destination file.
    network
        The network.
    dt
        As in :func:`to_nir`.
    """
    _import_nir().write(path, to_nir(network, dt=dt))


def read(
    path: str | os.PathLike[str],
    *,
    dt: float | None = None,
    output: str | None = None,
    reset: str | Mapping[str, str] | None = None,
) -> Network:
    """Read a ``.nir`` file into a :class:`~asyncsnn.network.Network` (see :func:`from_nir`).

    Parameters
    ----------
    path
        The ``.nir`` file.
    dt, output, reset
        As in :func:`from_nir`.

    Returns
    -------
    Network
    """
    return from_nir(Path(path), dt=dt, output=output, reset=reset)

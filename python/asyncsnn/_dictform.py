"""A JSON-safe dictionary form of a :class:`~asyncsnn.network.Network`.

Used by the golden vectors (``tests/golden/*.json``, written by
``tests/golden/generate.py``) so that the Rust test can rebuild the network without
Python. Every float32 value is stored as a Python float (float64), whose ``repr``
round-trips exactly, so ``network_from_dict(network_to_dict(net))`` reproduces every
weight and LIF parameter bit for bit.

The form::

    {"input_shape": [int, ...],
     "populations": [{"shape": [int, ...], "threshold": [float, ...] (flat, C order),
                      "beta": [float, ...] (flat), "refractory_dropout": float,
                      "name": str | None,
                      # SPEC_VERSION 2, written only when not the default:
                      "bias": [float, ...] (flat, default all 0),
                      "reset": "zero" | "subtract" | "subtract_delayed" | "none",
                      "alpha": [float, ...] (flat, default all 0: no synaptic current)}, ...]
     "projections": [{"source": int, "target": int, "kind": "dense" | "conv2d" |
                      "avgpool2d" | "sumpool2d",
                      # source < target: forward; source >= target: recurrent (R1.2,
                      # SPEC_VERSION 2), any kind
                      # dense / conv2d:
                      "weight": [float, ...] (flat, C order), "weight_shape": [int, ...],
                      # conv2d: "stride": [sh, sw], "padding": [ph, pw]
                      # pools:  "kernel_size": [kh, kw], "stride": [sh, sw]
                      }, ...]}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from asyncsnn.exceptions import ModelError, invalid
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Layer, Network, Population, Projection, SumPool2d

__all__ = ["network_from_dict", "network_to_dict"]


def _floats(arr: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(arr, dtype=np.float32).reshape(-1)]


def network_to_dict(net: Network) -> dict[str, Any]:
    """Describe ``net`` as a JSON-safe dictionary (see the module docstring).

    Parameters
    ----------
    net
        The network.

    Returns
    -------
    dict
        Nested lists, ints, floats, strings and ``None`` only.

    Examples
    --------
    >>> net = Network.sequential(input_shape=(2,), layers=[Dense(np.array([[0.5, -0.25]]))], threshold=1.0, beta=0.5)
    >>> d = network_to_dict(net)
    >>> d["projections"][0]["weight"], d["populations"][0]["beta"]
    ([0.5, -0.25], [0.5])
    >>> network_to_dict(network_from_dict(d)) == d
    True
    """
    pops: list[dict[str, Any]] = []
    for p in net.populations:
        pop: dict[str, Any] = {
            "shape": list(p.shape),
            "threshold": _floats(p.threshold),
            "beta": _floats(p.beta),
            "refractory_dropout": float(p.refractory_dropout),
            "name": p.name,
        }
        if p.bias is not None and np.any(p.bias != 0):
            pop["bias"] = _floats(p.bias)
        if p.reset != "zero":
            pop["reset"] = p.reset
        if p.synaptic:
            assert p.alpha is not None
            pop["alpha"] = _floats(p.alpha)
        pops.append(pop)
    projs: list[dict[str, Any]] = []
    for proj in net.projections:
        layer = proj.layer
        entry: dict[str, Any] = {"source": proj.source, "target": proj.target, "kind": layer.kind}
        if isinstance(layer, (Dense, Conv2d)):
            entry["weight"] = _floats(layer.weight)
            entry["weight_shape"] = [int(s) for s in layer.weight.shape]
        if isinstance(layer, Conv2d):
            entry["stride"] = list(layer.stride)
            entry["padding"] = list(layer.padding)
        if isinstance(layer, (AvgPool2d, SumPool2d)):
            entry["kernel_size"] = list(layer.kernel_size)
            entry["stride"] = list(layer.stride)
        projs.append(entry)
    return {"input_shape": list(net.input_shape), "populations": pops, "projections": projs}


def _bad(path: str, value: object, reason: str, where: str | None) -> ModelError:
    """A structural error of the architecture (a missing key, a value of the wrong JSON type)."""
    err = invalid(ModelError, "network", value, f"architecture entry {path} {reason}", where)
    assert isinstance(err, ModelError)
    return err


def _get(entry: Any, key: str, path: str, where: str | None) -> Any:
    if not isinstance(entry, dict):
        raise _bad(path, type(entry).__name__, "must be a JSON object", where)
    if key not in entry:
        raise _bad(f"{path}.{key}", None, "is missing", where)
    return entry[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _ints(value: Any, path: str, where: str | None, length: int | None = None) -> list[int]:
    """A JSON list of integers (range checks are left to the network's constructors)."""
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise _bad(path, value, "must be a list of integers", where)
    if length is not None and len(value) != length:
        raise _bad(path, value, f"must be a list of {length} integers", where)
    return [int(v) for v in value]


def _index(value: Any, path: str, where: str | None) -> int:
    if not _is_int(value):
        raise _bad(path, value, "must be a population index (an integer)", where)
    return int(value)


def _floats_of(value: Any, path: str, where: str | None) -> np.ndarray:
    """A flat list of numbers (or an array) as float64."""
    if isinstance(value, np.ndarray):
        return value.reshape(-1)
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise _bad(path, _describe_list(value), "must be a flat list of numbers", where)
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except OverflowError:
        raise _bad(path, _describe_list(value), "holds an integer too large for a float", where) from None


def _describe_list(value: Any) -> object:
    return value if not isinstance(value, (list, tuple)) or len(value) <= 8 else f"a list of {len(value)} entries"


TensorSource = Callable[[Any, int, str], np.ndarray]
"""``(entry value, number of values needed, path) -> float32 array``: how a model file
resolves a tensor name (see :func:`network_from_dict`)."""


def _values(
    entry: dict[str, Any], key: str, count: int, path: str, where: str | None, tensors: TensorSource | None
) -> np.ndarray:
    value = _get(entry, key, path, where)
    if tensors is not None:
        return tensors(value, count, f"{path}.{key}")
    return _floats_of(value, f"{path}.{key}", where)


def _weight(entry: dict[str, Any], path: str, where: str, tensors: TensorSource | None) -> np.ndarray:
    shape = tuple(_ints(_get(entry, "weight_shape", path, where), f"{path}.weight_shape", where))
    if any(s < 0 for s in shape):
        raise _bad(f"{path}.weight_shape", list(shape), "must hold non-negative integers", where)
    count = math.prod(shape)
    flat = _values(entry, "weight", count, path, where, tensors)
    if flat.size != count:
        reason = f"weight_shape {shape} needs {count}"
        raise invalid(ModelError, "weight", f"{flat.size} values", reason, where)
    if flat.dtype == np.float32:
        return flat.reshape(shape)
    w32 = flat.astype(np.float32)
    if not np.array_equal(w32.astype(np.float64), flat, equal_nan=True):
        raise invalid(ModelError, "weight", "non-float32 values", "every weight must be exactly a float32 value", where)
    return w32.reshape(shape)


def network_from_dict(d: dict[str, Any], *, tensors: TensorSource | None = None) -> Network:
    """Rebuild a :class:`~asyncsnn.network.Network` from :func:`network_to_dict`'s form.

    Parameters
    ----------
    d
        The dictionary (as loaded from JSON).
    tensors
        How to resolve the ``threshold``, ``beta`` and ``weight`` entries when they
        name tensors instead of holding lists (as in a model file):
        ``tensors(entry_value, count, path)`` returns a flat float32 array of
        ``count`` values, or raises :class:`~asyncsnn.exceptions.ModelError`. It is
        called only after the shape that sets ``count`` has been checked.

    Returns
    -------
    Network

    Raises
    ------
    ModelError
        When an entry is missing or of the wrong JSON type (field ``network``, the
        message names the entry and its value), a kind is unknown, a weight list does
        not match its shape, or the network is invalid.

    Examples
    --------
    >>> d = {"input_shape": [1, 2, 2],
    ...      "populations": [{"shape": [1, 1, 1], "threshold": [1.0], "beta": [1.0],
    ...                       "refractory_dropout": 0.0, "name": None}],
    ...      "projections": [{"source": 0, "target": 1, "kind": "sumpool2d",
    ...                       "kernel_size": [2, 2], "stride": [2, 2]}]}
    >>> network_from_dict(d).population_shapes
    [(1, 2, 2), (1, 1, 1)]
    """
    input_shape = _ints(_get(d, "input_shape", "network", None), "input_shape", None)
    populations = _get(d, "populations", "network", None)
    projections = _get(d, "projections", "network", None)
    for key, value in (("populations", populations), ("projections", projections)):
        if not isinstance(value, list):
            raise _bad(key, type(value).__name__, "must be a list", None)
    pops = []
    for n, p in enumerate(populations, start=1):
        where = f"population {n}"
        path = f"populations[{n - 1}]"
        shape = _ints(_get(p, "shape", path, where), f"{path}.shape", where)
        if not shape or any(s <= 0 for s in shape):
            raise invalid(ModelError, "shape", shape, "must be a non-empty tuple of positive ints", where)
        size = math.prod(shape)
        threshold = _values(p, "threshold", size, path, where, tensors)
        beta = _values(p, "beta", size, path, where, tensors)
        dropout = p.get("refractory_dropout", 0.0)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool):
            raise _bad(f"{path}.refractory_dropout", dropout, "must be a number", where)
        try:
            dropout = float(dropout)
        except OverflowError:
            raise _bad(f"{path}.refractory_dropout", dropout, "must be a number in [0, 1)", where) from None
        name = p.get("name")
        if name is not None and not isinstance(name, str):
            raise _bad(f"{path}.name", name, "must be a string or null", where)
        bias = _values(p, "bias", size, path, where, tensors) if "bias" in p else None
        alpha = _values(p, "alpha", size, path, where, tensors) if "alpha" in p else None
        reset = p.get("reset", "zero")
        if not isinstance(reset, str):
            raise _bad(f"{path}.reset", reset, "must be a string", where)
        pops.append(
            Population.create(
                tuple(shape),
                threshold.astype(np.float32, copy=False),
                beta.astype(np.float32, copy=False),
                dropout,
                name,
                location=where,
                bias=None if bias is None else bias.astype(np.float32, copy=False),
                reset=reset,
                alpha=None if alpha is None else alpha.astype(np.float32, copy=False),
            )
        )
    projs = []
    for n, e in enumerate(projections):
        path = f"projections[{n}]"
        kind = _get(e, "kind", path, None)
        where = f"projection {n} ({kind})"
        source = _index(_get(e, "source", path, where), f"{path}.source", where)
        target = _index(_get(e, "target", path, where), f"{path}.target", where)
        layer: Layer
        if kind == "dense":
            layer = Dense(_weight(e, path, where, tensors))
        elif kind == "conv2d":
            stride = _ints(_get(e, "stride", path, where), f"{path}.stride", where, 2)
            padding = _ints(_get(e, "padding", path, where), f"{path}.padding", where, 2)
            layer = Conv2d(_weight(e, path, where, tensors), stride=tuple(stride), padding=tuple(padding))
        elif kind in ("avgpool2d", "sumpool2d"):
            kernel = _ints(_get(e, "kernel_size", path, where), f"{path}.kernel_size", where, 2)
            stride = _ints(_get(e, "stride", path, where), f"{path}.stride", where, 2)
            pool = AvgPool2d if kind == "avgpool2d" else SumPool2d
            layer = pool(tuple(kernel), stride=tuple(stride))
        else:
            raise invalid(ModelError, "kind", kind, 'must be "dense", "conv2d", "avgpool2d" or "sumpool2d"', where)
        projs.append(Projection(source, target, layer))
    return Network(tuple(input_shape), pops, projs)

"""A JSON-safe dictionary form of a :class:`~asyncsnn.network.Network`.

Used by the golden vectors (``tests/golden/*.json``, written by
``scripts/regen_golden.py``) so that the Rust test can rebuild the network without
Python. Every float32 value is stored as a Python float (float64), whose ``repr``
round-trips exactly, so ``network_from_dict(network_to_dict(net))`` reproduces every
weight and LIF parameter bit for bit.

The form::

    {"input_shape": [int, ...],
     "populations": [{"shape": [int, ...], "threshold": [float, ...] (flat, C order),
                      "beta": [float, ...] (flat), "refractory_dropout": float,
                      "name": str | None}, ...],          # populations 1..P
     "projections": [{"source": int, "target": int, "kind": "dense" | "conv2d" |
                      "avgpool2d" | "sumpool2d",
                      # dense / conv2d:
                      "weight": [float, ...] (flat, C order), "weight_shape": [int, ...],
                      # conv2d: "stride": [sh, sw], "padding": [ph, pw]
                      # pools:  "kernel_size": [kh, kw], "stride": [sh, sw]
                      }, ...]}
"""

from __future__ import annotations

import math
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
    pops = [
        {
            "shape": list(p.shape),
            "threshold": _floats(p.threshold),
            "beta": _floats(p.beta),
            "refractory_dropout": float(p.refractory_dropout),
            "name": p.name,
        }
        for p in net.populations
    ]
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


def _weight(entry: dict[str, Any], where: str) -> np.ndarray:
    shape = tuple(int(s) for s in entry["weight_shape"])
    flat = np.asarray(entry["weight"], dtype=np.float64)
    if flat.size != math.prod(shape):
        reason = f"weight_shape {shape} needs {math.prod(shape)}"
        raise invalid(ModelError, "weight", f"{flat.size} values", reason, where)
    w32 = flat.astype(np.float32)
    if not np.array_equal(w32.astype(np.float64), flat, equal_nan=True):
        raise invalid(ModelError, "weight", "non-float32 values", "every weight must be exactly a float32 value", where)
    return w32.reshape(shape)


def network_from_dict(d: dict[str, Any]) -> Network:
    """Rebuild a :class:`~asyncsnn.network.Network` from :func:`network_to_dict`'s form.

    Parameters
    ----------
    d
        The dictionary (as loaded from JSON).

    Returns
    -------
    Network

    Raises
    ------
    ModelError
        When a kind is unknown, a weight list does not match its shape, or the network
        is invalid.

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
    pops = []
    for n, p in enumerate(d["populations"], start=1):
        where = f"population {n}"
        shape = tuple(int(s) for s in p["shape"])
        pops.append(
            Population.create(
                shape,
                np.asarray(p["threshold"], dtype=np.float32),
                np.asarray(p["beta"], dtype=np.float32),
                float(p.get("refractory_dropout", 0.0)),
                p.get("name"),
                location=where,
            )
        )
    projs = []
    for n, e in enumerate(d["projections"]):
        kind = e["kind"]
        where = f"projection {n} ({kind})"
        layer: Layer
        if kind == "dense":
            layer = Dense(_weight(e, where))
        elif kind == "conv2d":
            layer = Conv2d(_weight(e, where), stride=tuple(e["stride"]), padding=tuple(e["padding"]))
        elif kind == "avgpool2d":
            layer = AvgPool2d(tuple(e["kernel_size"]), stride=tuple(e["stride"]))
        elif kind == "sumpool2d":
            layer = SumPool2d(tuple(e["kernel_size"]), stride=tuple(e["stride"]))
        else:
            raise invalid(ModelError, "kind", kind, 'must be "dense", "conv2d", "avgpool2d" or "sumpool2d"', where)
        projs.append(Projection(int(e["source"]), int(e["target"]), layer))
    return Network(tuple(int(s) for s in d["input_shape"]), pops, projs)

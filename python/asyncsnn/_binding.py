"""Conversion of a :class:`~asyncsnn.network.Network` to the Rust engine's flat form."""

from __future__ import annotations

import numpy as np

from asyncsnn import _engine
from asyncsnn.network import AvgPool2d, Conv2d, Dense, Network, SumPool2d

__all__ = ["build_engine_network", "flat_projections"]


def flat_projections(net: Network) -> list[tuple[str, int, int, np.ndarray, list[int]]]:
    """``(kind, source, target, flat float32 weight, geometry)`` for every projection.

    Geometry is ``(c_in, h, w, c_out, kh, kw, sh, sw, ph, pw)`` for ``conv2d`` and
    ``(c, h, w, kh, kw, sh, sw)`` for the pools; empty for ``dense``.
    """
    shapes = net.population_shapes
    out: list[tuple[str, int, int, np.ndarray, list[int]]] = []
    for proj in net.projections:
        layer = proj.layer
        if isinstance(layer, Dense):
            out.append(("dense", proj.source, proj.target, layer.weight.reshape(-1), []))
        elif isinstance(layer, Conv2d):
            c_out, c_in, kh, kw = (int(v) for v in layer.weight.shape)
            _, h, w = shapes[proj.source]
            geo = [c_in, h, w, c_out, kh, kw, *layer.stride, *layer.padding]
            out.append(("conv2d", proj.source, proj.target, layer.weight.reshape(-1), geo))
        else:
            assert isinstance(layer, (AvgPool2d, SumPool2d))
            c, h, w = shapes[proj.source]
            geo = [c, h, w, *layer.kernel_size, *layer.stride]
            out.append((layer.kind, proj.source, proj.target, np.zeros(0, dtype=np.float32), geo))
    return out


def build_engine_network(net: Network) -> _engine.Network:
    """Validate ``net`` in the Rust engine and return its compiled form."""
    pops = [(p.size, p.threshold.reshape(-1), p.beta.reshape(-1), float(p.refractory_dropout)) for p in net.populations]
    return _engine.Network(net.input_size, pops, flat_projections(net))

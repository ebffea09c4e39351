"""Conversion of a :class:`~asyncsnn.network.Network` to the Rust engine's flat form."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from asyncsnn import _engine
from asyncsnn.network import RESET_MODES, AvgPool2d, Conv2d, Dense, Network, SumPool2d

__all__ = ["build_engine_network", "flat_populations", "flat_projections"]


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


#: ``(size, threshold, beta, refractory_dropout, bias, reset code, alpha)`` of one population.
PopulationTuple = tuple[
    int,
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    float,
    npt.NDArray[np.float32],
    int,
    npt.NDArray[np.float32],
]


def flat_populations(net: Network) -> list[PopulationTuple]:
    """``(size, threshold, beta, refractory_dropout, bias, reset code, alpha)`` for every population.

    The arrays are flat float32; the reset code is the index of the population's reset
    mode in :data:`~asyncsnn.network.RESET_MODES` (0 = ``"zero"``). ``alpha`` (R4.12)
    is one 0 for a population without a synaptic current.
    """
    out: list[PopulationTuple] = []
    no_alpha = np.zeros(1, dtype=np.float32)
    for p in net.populations:
        bias = np.zeros(1, dtype=np.float32) if p.bias is None else p.bias.reshape(-1)
        alpha = p.alpha.reshape(-1) if p.alpha is not None and p.synaptic else no_alpha
        reset = RESET_MODES.index(p.reset)
        out.append(
            (p.size, p.threshold.reshape(-1), p.beta.reshape(-1), float(p.refractory_dropout), bias, reset, alpha)
        )
    return out


def build_engine_network(net: Network) -> _engine.Network:
    """Validate ``net`` in the Rust engine and return its compiled form."""
    return _engine.Network(net.input_size, flat_populations(net), flat_projections(net))

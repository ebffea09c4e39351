#!/usr/bin/env python3
"""Write the NIR files exported by other simulators that ``tests/io/test_hardening_nir.py`` reads.

Each fixture is a pair: ``tests/fixtures/nir_<library>_<arch>.nir``, the graph written by
the library's own NIR exporter, and ``tests/fixtures/nir_<library>_<arch>.npz``, an input
``x`` ``[batch, T, *input_shape]`` (event counts), the library's own simulation of it
(``output``: output spikes ``[batch, T, n_out]``; ``layer_spikes``: spikes per spiking
layer and sample ``[batch, layers]``), the ``dt`` to pass to ``asyncsnn.nir.from_nir``
and the versions that wrote it. The test checks that asyncsnn's ``layered`` scheduler
spikes exactly like the library.

Libraries:

- **sinabs** (3.1): ``IAFSqueeze`` layers with ``SingleSpike`` and ``MembraneReset`` (one
  spike per step, reset to 0: asyncsnn's R4.3), exported by ``sinabs.to_nir`` as ``IF``
  nodes with ``r = 1`` (one step is ``dt = 1``). Its exporter leaves ``Conv2d.input_shape``
  and ``Flatten.input_type`` empty, which ``nir`` cannot store: the script fills them in
  (nothing else is changed). sinabs 3.1 pins ``nir <= 1.0.4``, older
  than asyncsnn's floor (1.0.6), so it cannot share asyncsnn's test environment; run this
  script in a separate one::

      python -m venv /tmp/venv-sinabs
      /tmp/venv-sinabs/bin/pip install sinabs==3.1.3 asyncsnn
      /tmp/venv-sinabs/bin/python scripts/make_nir_fixtures.py sinabs

- **spikingjelly** (2.0): ``IFNode`` and ``LIFNode`` (``tau = 2``, ``decay_input``) with
  ``v_reset = 0``, exported by ``export_to_nir`` with its default ``dt = 1e-4`` (``IF``
  with ``r = 1/dt``, ``LIF`` with ``tau = 2 dt``). SpikingJelly is in the dev extra, so the
  tests also export live; the fixture keeps the check when it is not installed::

      python scripts/make_nir_fixtures.py spikingjelly

Weights are on the grid ``k / 256`` and ``IF`` thresholds odd multiples of ``1 / 512``
(``LIF`` thresholds: of ``2**-25``, see ``spikingjelly_graph``): the membrane sums are exact
in float32 in any order and never land on a threshold, so the libraries' ``v >= threshold``
and asyncsnn's strict ``V > threshold`` give the same spikes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
BATCH, STEPS = 8, 16
SJ_STEPS = 12  # see spikingjelly_graph: the LIF membranes stay exact for 12 steps


def grid(rng: np.random.Generator, shape: tuple[int, ...], scale: float, mean: float) -> np.ndarray:
    """Weights ``k / 256`` (as ``asyncsnn.testing.grid_weights``), float32."""
    k = np.clip(np.round(rng.normal(mean, scale, shape) * 256), -(2**12) + 1, 2**12 - 1)
    return (k / 256).astype(np.float32)


def odd_threshold(rng: np.random.Generator, low: float, high: float, bits: int = 9) -> float:
    """An odd multiple of ``2**-bits`` in [low, high) (exact in float32 for ``bits <= 25``, ``high <= 0.5``)."""
    half = 2 ** (bits - 1)
    return float(2 * rng.integers(int(low * half), int(high * half)) + 1) / 2**bits


def counts(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.3) -> np.ndarray:
    """Event counts 0, 1 or 2, float32."""
    return ((rng.random(shape) < density) * rng.integers(1, 3, shape)).astype(np.float32)


def save(name: str, graph: Any, nir: Any, **arrays: Any) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{name}.nir"
    nir.write(path, graph)
    np.savez_compressed(FIXTURES / f"{name}.npz", **arrays)
    out = arrays["output"]
    print(f"{path.relative_to(ROOT)}: output spikes {int(out.sum())}, per layer {arrays['layer_spikes'].sum(0)}")


# ----------------------------------------------------------------------------- sinabs


def sinabs_fixtures() -> None:
    import nir
    import sinabs
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, SingleSpike

    rng = np.random.default_rng(15)

    def iaf() -> Any:
        threshold = torch.tensor(odd_threshold(rng, 0.5, 1.0))
        return sl.IAFSqueeze(
            spike_threshold=threshold, spike_fn=SingleSpike, reset_fn=MembraneReset(), num_timesteps=STEPS
        )

    def linear(n_in: int, n_out: int) -> torch.nn.Linear:
        m = torch.nn.Linear(n_in, n_out, bias=False)
        m.weight.data = torch.tensor(grid(rng, (n_out, n_in), 0.5, 0.15))
        return m

    for arch in ("dense", "conv"):
        if arch == "dense":
            in_shape: tuple[int, ...] = (12,)
            model = torch.nn.Sequential(linear(12, 10), iaf(), linear(10, 6), iaf(), linear(6, 4), iaf())
        else:
            in_shape = (2, 6, 6)
            conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
            conv.weight.data = torch.tensor(grid(rng, (3, 2, 3, 3), 0.6, 0.2))
            model = torch.nn.Sequential(conv, iaf(), sl.SumPool2d(2), iaf(), torch.nn.Flatten(), linear(27, 4), iaf())
        x = counts(rng, (BATCH, STEPS, *in_shape))
        graph = sinabs.to_nir(model, torch.zeros(STEPS, *in_shape))
        # sinabs leaves Conv2d.input_shape and Flatten.input_type at None, which nir can neither
        # write nor read back (nir 1.0.8's reader requires them): fill in the shapes they read.
        for node in graph.nodes.values():
            if isinstance(node, nir.Conv2d) and node.input_shape is None:
                node.input_shape = np.array(in_shape[1:])
            if isinstance(node, nir.Flatten):  # its input_type is None or {"input": None}
                node.input_type = {"input": np.array([3, 3, 3])}  # the SumPool2d's output
        for m in model.modules():
            if isinstance(m, sl.IAFSqueeze):
                m.reset_states()
        layers = []
        with torch.no_grad():
            cur = torch.tensor(x).reshape(BATCH * STEPS, *in_shape)  # sinabs' squeezed [B*T, ...]
            for m in model:
                cur = m(cur)
                if isinstance(m, sl.IAFSqueeze):
                    layers.append(cur.reshape(BATCH, -1).sum(1).numpy())
        output = cur.reshape(BATCH, STEPS, -1).numpy().astype(np.int64)
        save(
            f"nir_sinabs_{arch}",
            graph,
            nir,
            x=x,
            output=output,
            layer_spikes=np.stack(layers, 1).astype(np.int64),
            dt=np.float64(1.0),
            versions=np.array(
                f"sinabs {importlib.metadata.version('sinabs')}, nir {nir.__version__}, torch {torch.__version__}"
            ),
        )


# ----------------------------------------------------------------------------- SpikingJelly


def spikingjelly_graph(rng: np.random.Generator, arch: str) -> tuple[Any, Any, tuple[int, ...]]:
    """A SpikingJelly model (single-step), its NIR export (dt = 1e-4) and its input shape."""
    import torch
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    def linear(n_in: int, n_out: int) -> torch.nn.Linear:
        m = torch.nn.Linear(n_in, n_out, bias=False)
        m.weight.data = torch.tensor(grid(rng, (n_out, n_in), 0.5, 0.15))
        return m

    def if_node() -> Any:
        return neuron.IFNode(v_threshold=odd_threshold(rng, 0.5, 1.0), v_reset=0.0)

    def lif_node() -> Any:
        # tau = 2: v <- v + (x - v) / 2. With inputs on the k/256 grid (k/4 after the pool), v is a
        # multiple of 2**-(8 + t) after t steps, exact in float32 (|v| < 1/2) for t <= 12 on both sides,
        # and never an odd multiple of 2**-25: such a threshold is never hit, so >= and > agree.
        return neuron.LIFNode(
            tau=2.0, decay_input=True, v_threshold=odd_threshold(rng, 0.25, 0.5, bits=25), v_reset=0.0
        )

    if arch == "dense":
        in_shape: tuple[int, ...] = (12,)
        model = torch.nn.Sequential(linear(12, 10), if_node(), linear(10, 6), lif_node(), linear(6, 4), if_node())
    else:
        in_shape = (2, 6, 6)
        conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
        conv.weight.data = torch.tensor(grid(rng, (3, 2, 3, 3), 0.6, 0.2))
        model = torch.nn.Sequential(
            conv, if_node(), torch.nn.AvgPool2d(2), lif_node(), torch.nn.Flatten(), linear(27, 4), if_node()
        )
    graph = export_to_nir(model, torch.zeros(1, *in_shape), dt=1e-4)
    return model, graph, in_shape


def run_spikingjelly(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SpikingJelly's own simulation: output spikes [B, T, n_out] and spikes per neuron layer [B, P]."""
    import torch
    from spikingjelly.activation_based import functional, neuron

    functional.reset_net(model)
    batch, steps = x.shape[:2]
    nodes = [m for m in model if isinstance(m, neuron.BaseNode)]
    per_layer = np.zeros((batch, len(nodes)), dtype=np.int64)
    out = []
    with torch.no_grad():
        for t in range(steps):
            cur = torch.tensor(x[:, t])
            k = 0
            for m in model:
                cur = m(cur)
                if isinstance(m, neuron.BaseNode):
                    per_layer[:, k] += cur.reshape(batch, -1).sum(1).long().numpy()
                    k += 1
            out.append(cur.numpy())
    functional.reset_net(model)
    return np.stack(out, 1).astype(np.int64), per_layer


def spikingjelly_fixtures() -> None:
    import nir
    import torch

    rng = np.random.default_rng(16)
    for arch in ("dense", "conv"):
        model, graph, in_shape = spikingjelly_graph(rng, arch)
        x = counts(rng, (BATCH, SJ_STEPS, *in_shape))
        output, layer_spikes = run_spikingjelly(model, x)
        version = importlib.metadata.version("spikingjelly")
        save(
            f"nir_spikingjelly_{arch}",
            graph,
            nir,
            x=x,
            output=output,
            layer_spikes=layer_spikes,
            dt=np.float64(1e-4),
            versions=np.array(f"spikingjelly {version}, nir {nir.__version__}, torch {torch.__version__}"),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=["sinabs", "spikingjelly"], help="whose exporter writes the fixtures")
    args = parser.parse_args(argv)
    {"sinabs": sinabs_fixtures, "spikingjelly": spikingjelly_fixtures}[args.library]()
    return 0


if __name__ == "__main__":
    sys.exit(main())

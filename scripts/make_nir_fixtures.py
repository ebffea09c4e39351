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

- **sinabs** (3.1): ``nir_sinabs_<arch>``: ``IAFSqueeze`` layers with ``SingleSpike`` and
  ``MembraneReset`` (one spike per step, reset to 0: asyncsnn's R4.3), no biases;
  ``nir_sinabs_subtract_<arch>``: sinabs' default ``IAFSqueeze`` (``MultiSpike``,
  ``MembraneSubtract``: asyncsnn's ``reset="subtract"``) after biased layers, with thresholds
  above the largest one-step current so that no neuron spikes twice in a step (checked).
  Both exported by ``sinabs.to_nir`` as ``IF`` nodes with ``r = 1`` (one step is ``dt = 1``)
  and without ``v_reset`` (nir 1.0.4): read them with ``reset="zero"`` / ``"subtract"``. Its exporter leaves ``Conv2d.input_shape``
  and ``Flatten.input_type`` empty, which ``nir`` cannot store: the script fills them in
  (nothing else is changed). sinabs 3.1 pins ``nir <= 1.0.4``, older
  than asyncsnn's floor (1.0.6), so it cannot share asyncsnn's test environment; run this
  script in a separate one::

      python -m venv /tmp/venv-sinabs
      /tmp/venv-sinabs/bin/pip install sinabs==3.1.3 asyncsnn
      /tmp/venv-sinabs/bin/python scripts/make_nir_fixtures.py sinabs

  (sinabs 3.1.3 needs ``nirtorch`` 1.0: nirtorch 2.x passes ``type_check`` to nir 1.0.4's
  ``NIRGraph``, which does not know it.)

- **spikingjelly** (2.0): ``IFNode`` and ``LIFNode`` (``tau = 2``, ``decay_input``) with
  ``v_reset = 0``, exported by ``export_to_nir`` with its default ``dt = 1e-4`` (``IF``
  with ``r = 1/dt``, ``LIF`` with ``tau = 2 dt``). SpikingJelly is in the dev extra, so the
  tests also export live; the fixture keeps the check when it is not installed::

      python scripts/make_nir_fixtures.py spikingjelly

``layer_synchronous`` is R4.5's layer-synchronous formula in numpy; the tests compare the
libraries' spikes with it as well as with the engines.

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


# ----------------------------------------------------------------------------- R4.5 in numpy


def projection_matrix(layer: Any, source_shape: tuple[int, ...]) -> np.ndarray:
    """The dense ``[n_target, n_source]`` float64 matrix of an asyncsnn projection (R1.2)."""
    name = type(layer).__name__
    if name == "Dense":
        return np.asarray(layer.weight, dtype=np.float64)
    out_shape = layer.output_shape(source_shape)
    c_in, h, w = source_shape
    matrix = np.zeros((int(np.prod(out_shape)), c_in * h * w))
    src = np.arange(c_in * h * w).reshape(source_shape)
    dst = np.arange(matrix.shape[0]).reshape(out_shape)
    if name == "Conv2d":
        kernel = np.asarray(layer.weight, dtype=np.float64)
        (sh, sw), (ph, pw) = layer.stride, layer.padding
        for o, i, j in np.ndindex(*out_shape):
            for c, ky, kx in np.ndindex(*kernel.shape[1:]):
                y, x = i * sh + ky - ph, j * sw + kx - pw
                if 0 <= y < h and 0 <= x < w:
                    matrix[dst[o, i, j], src[c, y, x]] = kernel[o, c, ky, kx]
        return matrix
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    for c, i, j in np.ndindex(*out_shape):
        for ky, kx in np.ndindex(kh, kw):
            matrix[dst[c, i, j], src[c, i * sh + ky, j * sw + kx]] = layer.pool_weight
    return matrix


def layer_synchronous(net: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R4.5's layer-synchronous LIF network in numpy: output spikes ``[B, T, n_out]``, spikes per population ``[B, P]``.

    ``U_t = beta*V_{t-1} + (W s_t + b) - theta*d_t``, ``s_t = H(U_t - theta)``, ``V_t`` by the
    population's reset mode (``d_t = s_{t-1}`` for ``"subtract_delayed"``, else 0), every
    operation in float32 as the engines (R8.1) and snnTorch compute it; the current ``W s + b``
    is summed in float64, which is exact for weights on the grid of R8.2. Populations are
    computed in index order, so skip connections read the current timestep's spikes; a
    recurrent projection (``source >= target``, R1.2) reads its source's spikes of the
    previous timestep (``R s_{t-1}``, R4.5 and R4.9: snnTorch's ``RLeaky``).
    """
    batch, steps = x.shape[:2]
    shapes = net.population_shapes
    mats = [(p.source, p.target, projection_matrix(p.layer, shapes[p.source])) for p in net.projections]
    pops = net.populations
    f32 = np.float32
    v = [np.zeros((batch, p.size), f32) for p in pops]
    debt = [np.zeros((batch, p.size), bool) for p in pops]
    per_pop = np.zeros((batch, len(pops)), np.int64)
    out = np.zeros((batch, steps, pops[-1].size), np.int64)
    spikes: list[np.ndarray] = [np.zeros((batch, int(np.prod(shape)))) for shape in shapes]  # s_{-1} = 0
    for t in range(steps):
        previous, spikes = spikes, [x[:, t].reshape(batch, -1).astype(np.float64)]
        for k, pop in enumerate(pops):
            current = np.broadcast_to(pop.bias.reshape(-1).astype(np.float64), (batch, pop.size)).copy()
            for source, target, matrix in mats:
                if target == k + 1:
                    current += (spikes[source] if source < target else previous[source]) @ matrix.T
            theta, beta = pop.threshold.reshape(-1), pop.beta.reshape(-1)
            u = (beta * v[k]).astype(f32) + current.astype(f32)
            u = np.where(debt[k], u - theta, u).astype(f32)
            fired = u > theta
            if pop.reset == "zero":
                v[k] = np.where(fired, f32(0), u).astype(f32)
            elif pop.reset == "subtract":
                v[k] = np.where(fired, u - theta, u).astype(f32)
            else:  # "none", "subtract_delayed" (which pays its debt at the next timestep)
                v[k] = u
            debt[k] = fired & (pop.reset == "subtract_delayed")
            spikes.append(fired.astype(np.float64))
            per_pop[:, k] += fired.sum(1)
        out[:, t] = spikes[-1]
    return out, per_pop


# ----------------------------------------------------------------------------- sinabs


def sinabs_fixtures() -> None:
    """Both sinabs fixture sets: reset to zero, and sinabs' defaults with biases."""
    sinabs_set(subtract=False)
    sinabs_set(subtract=True)


def sinabs_set(subtract: bool) -> None:
    """``nir_sinabs_<arch>`` (``MembraneReset``, no biases) or ``nir_sinabs_subtract_<arch>``.

    The latter keeps sinabs' default ``IAF`` (``MultiSpike``, ``MembraneSubtract``: asyncsnn's
    ``reset="subtract"``, R4.8) and biased ``Linear`` / ``Conv2d`` layers; the script checks that
    no neuron ever emits more than one spike in a step, where ``MultiSpike`` and asyncsnn differ.
    """
    import nir
    import sinabs
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, SingleSpike

    rng = np.random.default_rng(17 if subtract else 15)

    def iaf(before: Any = None, largest: float = 1.0) -> Any:
        if subtract:  # sinabs' defaults: MultiSpike, MembraneSubtract
            # A threshold above the largest current one step can bring (inputs and spikes <= largest): a
            # membrane left at most at theta stays below 2 theta, so MultiSpike never spikes twice.
            if isinstance(before, sl.SumPool2d):
                bound = float(np.prod(np.broadcast_to(before.kernel_size, (2,)))) * largest
            else:
                w, b = before.weight.detach().numpy(), before.bias.detach().numpy()
                bound = float(np.max(np.clip(w, 0, None).reshape(len(w), -1).sum(1) * largest + np.clip(b, 0, None)))
            theta = odd_threshold(rng, bound, bound + 0.5)
            return sl.IAFSqueeze(spike_threshold=torch.tensor(theta), num_timesteps=STEPS)
        threshold = torch.tensor(odd_threshold(rng, 0.5, 1.0))
        return sl.IAFSqueeze(
            spike_threshold=threshold, spike_fn=SingleSpike, reset_fn=MembraneReset(), num_timesteps=STEPS
        )

    def linear(n_in: int, n_out: int) -> torch.nn.Linear:
        m = torch.nn.Linear(n_in, n_out, bias=subtract)
        m.weight.data = torch.tensor(grid(rng, (n_out, n_in), 0.5, 0.15))
        if subtract:
            m.bias.data = torch.tensor(grid(rng, (n_out,), 0.1, 0.15))
        return m

    for arch in ("dense", "conv"):
        if arch == "dense":
            in_shape: tuple[int, ...] = (12,)
            if subtract:
                fc = [linear(12, 10), linear(10, 6), linear(6, 4)]
                model = torch.nn.Sequential(fc[0], iaf(fc[0], 2), fc[1], iaf(fc[1]), fc[2], iaf(fc[2]))
            else:
                model = torch.nn.Sequential(linear(12, 10), iaf(), linear(10, 6), iaf(), linear(6, 4), iaf())
        else:
            in_shape = (2, 6, 6)
            conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=subtract)
            conv.weight.data = torch.tensor(grid(rng, (3, 2, 3, 3), 0.6, 0.2))
            if subtract:  # sinabs' exporter writes a Conv2d bias only when `if module.bias` holds: one channel
                conv = torch.nn.Conv2d(2, 1, 3, padding=1)
                conv.weight.data = torch.tensor(grid(rng, (1, 2, 3, 3), 0.4, 0.1))
                conv.bias.data = torch.tensor(grid(rng, (1,), 0.1, 0.15))
            channels = 1 if subtract else 3
            if subtract:
                pool, fc3 = sl.SumPool2d(2), linear(9, 4)
                model = torch.nn.Sequential(conv, iaf(conv, 2), pool, iaf(pool), torch.nn.Flatten(), fc3, iaf(fc3))
            else:
                model = torch.nn.Sequential(
                    conv, iaf(), sl.SumPool2d(2), iaf(), torch.nn.Flatten(), linear(27, 4), iaf()
                )
        x = counts(rng, (BATCH, STEPS, *in_shape))
        graph = sinabs.to_nir(model, torch.zeros(STEPS, *in_shape))
        # sinabs leaves Conv2d.input_shape and Flatten.input_type at None, which nir can neither
        # write nor read back (nir 1.0.8's reader requires them): fill in the shapes they read.
        for node in graph.nodes.values():
            if isinstance(node, nir.Conv2d) and node.input_shape is None:
                node.input_shape = np.array(in_shape[1:])
            if isinstance(node, nir.Flatten):  # its input_type is None or {"input": None}
                node.input_type = {"input": np.array([channels, 3, 3])}  # the SumPool2d's output
        for m in model.modules():
            if isinstance(m, sl.IAFSqueeze):
                m.reset_states()
        layers = []
        with torch.no_grad():
            cur = torch.tensor(x).reshape(BATCH * STEPS, *in_shape)  # sinabs' squeezed [B*T, ...]
            for m in model:
                cur = m(cur)
                if isinstance(m, sl.IAFSqueeze):
                    if cur.max() > 1:
                        raise SystemExit(f"sinabs {arch}: a neuron spiked {int(cur.max())} times in a step")
                    layers.append(cur.reshape(BATCH, -1).sum(1).numpy())
        output = cur.reshape(BATCH, STEPS, -1).numpy().astype(np.int64)
        save(
            f"nir_sinabs_subtract_{arch}" if subtract else f"nir_sinabs_{arch}",
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


def spikingjelly_graph(
    rng: np.random.Generator, arch: str, soft_reset: bool = False
) -> tuple[Any, Any, tuple[int, ...]]:
    """A SpikingJelly model (single-step), its NIR export (dt = 1e-4) and its input shape.

    ``soft_reset``: neurons with ``v_reset=None`` (subtract the threshold: asyncsnn's
    ``reset="subtract"``, R4.8), biased ``Linear`` / ``Conv2d`` layers and ``LIFNode`` without
    ``decay_input`` (``v - v/tau + x``: the same float32 operations as asyncsnn's
    ``beta V + I`` for ``tau = 2``). SpikingJelly's exporter refuses soft reset ("NIR does not
    distinguish soft reset"), so the graph is ``None`` then: export a hard-reset twin.
    """
    import torch
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    def linear(n_in: int, n_out: int) -> torch.nn.Linear:
        m = torch.nn.Linear(n_in, n_out, bias=soft_reset)
        m.weight.data = torch.tensor(grid(rng, (n_out, n_in), 0.5, 0.15))
        if soft_reset:
            m.bias.data = torch.tensor(grid(rng, (n_out,), 0.1, 0.05))
        return m

    def if_node() -> Any:
        if soft_reset:
            # An odd multiple of 2**-12: a membrane on the k/256 grid minus at most 12 thresholds never equals
            # one, so SpikingJelly's v >= threshold and asyncsnn's V > threshold agree.
            return neuron.IFNode(v_threshold=odd_threshold(rng, 0.5, 1.0, bits=12), v_reset=None)
        return neuron.IFNode(v_threshold=odd_threshold(rng, 0.5, 1.0), v_reset=0.0)

    def lif_node() -> Any:
        if soft_reset:
            theta = odd_threshold(rng, 0.5, 1.0, bits=12)
            return neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=theta, v_reset=None)
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
        conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=soft_reset)
        conv.weight.data = torch.tensor(grid(rng, (3, 2, 3, 3), 0.6, 0.2))
        if soft_reset:
            conv.bias.data = torch.tensor(grid(rng, (3,), 0.1, 0.05))
        model = torch.nn.Sequential(
            conv, if_node(), torch.nn.AvgPool2d(2), lif_node(), torch.nn.Flatten(), linear(27, 4), if_node()
        )
    if soft_reset:
        return model, None, in_shape
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

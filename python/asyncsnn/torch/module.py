"""``AsyncSNN``: a trainable ``nn.Module`` view of a :class:`~asyncsnn.network.Network`.

The module holds one ``nn.Parameter`` per ``Dense`` / ``Conv2d`` projection (float32,
same layout as the network's weights) and one per population with a bias (R1.4);
pooling projections are fixed. Its forward pass
is :func:`asyncsnn.torch.engine.run`: the asynchronous semantics of
``docs/semantics.md`` under autograd (section 9), so training through it is unlayered
backpropagation (or layered BPTT with ``scheduler="layered"``).

Examples
--------
>>> import torch
>>> model = AsyncSNN.from_sizes([16, 32, 4], threshold=1.0, beta=0.9, seed=0)
>>> x = (torch.rand(8, 5, 16) < 0.3).float()
>>> out = model(x, scheduler="random", forward_group_size=4)
>>> out.counts.shape
torch.Size([8, 5, 4])
>>> rate_loss(out.counts, torch.zeros(8, dtype=torch.int64)).backward()
>>> net = model.to_network()
>>> net.population_shapes
[(16,), (32,), (4,)]
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from asyncsnn._prepare import (
    DropoutLike,
    SchedulerLike,
    StopLike,
    frame_layout_ok,
    prepare_inputs,
    prepare_options,
    tensor_as_numpy,
    tensor_checked,
)
from asyncsnn.exceptions import InputError, ModelError, ParameterError, invalid
from asyncsnn.network import Conv2d, Dense, Network, ParamLike, Projection
from asyncsnn.torch.engine import Plan, RunOutput, as_tensor, network_weights, run
from asyncsnn.torch.surrogate import Surrogate

__all__ = ["AsyncSNN", "count_loss", "rate_loss"]


def rate_loss(counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the output counts of every timestep, averaged over time.

    The same as snnTorch's ``ce_rate_loss``: ``mean_t CE(counts[:, t], labels)``.

    Parameters
    ----------
    counts
        ``[B, T, n_out]`` output spikes per timestep (differentiable).
    labels
        int64 ``[B]`` classes.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    n_t = counts.shape[1]
    return F.cross_entropy(counts.permute(0, 2, 1), labels.unsqueeze(1).expand(-1, n_t))


def count_loss(counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the total output counts ``counts.sum(1)`` (``[B, T, n_out]``)."""
    return F.cross_entropy(counts.sum(1), labels)


def _check_frames(x: torch.Tensor, network: Network) -> torch.Tensor:
    """Validate a dense input tensor like :func:`asyncsnn._prepare.prepare_inputs`, on its device.

    The tensor is first read by the shared rule of :func:`asyncsnn._prepare.tensor_checked`
    (sparse layouts densified, meta and complex tensors refused).
    """
    x = tensor_checked(x, "inputs")
    n_in = network.input_size
    shape = tuple(x.shape)
    if not frame_layout_ok(shape, n_in):
        raise invalid(
            InputError,
            "inputs",
            f"shape {shape}",
            f"expected [batch, T, *{network.input_shape}] or [batch, T, {n_in}] "
            f"(any [batch, T, ...] of {n_in} values per frame)",
        )
    if shape[0] == 0:
        raise invalid(InputError, "inputs", f"shape {shape}", "the batch is empty")
    if shape[1] == 0:
        raise invalid(InputError, "inputs", f"shape {shape}", "T must be >= 1")
    if x.is_complex():
        raise invalid(InputError, "inputs", f"dtype {x.dtype}", "must be a real numeric array")
    frames = x.detach().to(torch.float32).reshape(shape[0], shape[1], n_in)
    bad = ~torch.isfinite(frames) | (frames < 0)
    if bool(bad.any()):
        pos = tuple(int(p) for p in torch.nonzero(bad.reshape(shape))[0])
        raise invalid(
            InputError,
            "inputs",
            float(x.detach().reshape(shape)[pos]),
            f"input values must be finite and >= 0 (at index {pos})",
        )
    return frames


class AsyncSNN(nn.Module):
    r"""A network whose Dense and Conv2d weights and biases are ``nn.Parameter``\\ s.

    Parameters
    ----------
    network
        The network to copy: populations (thresholds, leaks, synaptic decays ``alpha``
        and reset modes fixed, biases trainable, see below), projections and weights (copied into
        parameters, float32).
    train_zero_biases
        Also make the biases of the populations whose bias is 0 trainable (like
        ``nn.Linear(bias=True)``). By default only a population with a non-zero bias
        has a bias parameter: a network without biases trains exactly as in version 1
        (same parameters, same results, same speed). With this option every LIF
        population has one, initialised from the network (0), and settles every
        timestep (R1.6, R4.7) as if its bias were not 0: no spike changes while the
        bias is 0, but the settle-only steps count as forward steps (R7.5), so the
        step counters can differ from those of the network itself until its bias
        moves. The module's forward and the engines agree again on the exported
        network (:meth:`to_network`) as soon as its bias is not 0.

    Attributes
    ----------
    weights : torch.nn.ParameterList
        One parameter per Dense/Conv2d projection, in projection order.
    biases : torch.nn.ParameterDict
        The trainable biases (R1.4), float32 of the population's shape, keyed by the
        population index as a string (``"1"`` for the first LIF population). Parameters
        of the module: the optimiser of :func:`~asyncsnn.torch.train` trains them with
        the weights, and section 9's gradients reach them through every settle.
    plan : asyncsnn.torch.engine.Plan
        The geometry used by the engine.
    """

    def __init__(self, network: Network, *, train_zero_biases: bool = False) -> None:
        super().__init__()
        if not isinstance(network, Network):
            raise invalid(ModelError, "network", type(network).__name__, "must be an asyncsnn.Network")
        if not isinstance(train_zero_biases, bool):
            raise invalid(ParameterError, "train_zero_biases", train_zero_biases, "must be True or False")
        pops = network.populations
        trained = [p for p in range(1, len(pops) + 1) if train_zero_biases or np.any(pops[p - 1].bias != 0)]
        self.plan = Plan(network, settle_also=tuple(trained) if train_zero_biases else ())
        self.weights = nn.ParameterList()
        self._param_of: list[int | None] = []
        for w in network_weights(network):
            if w is None:
                self._param_of.append(None)
            else:
                self._param_of.append(len(self.weights))
                self.weights.append(nn.Parameter(w))
        self.biases = nn.ParameterDict(
            {str(p): nn.Parameter(torch.tensor(np.asarray(pops[p - 1].bias), dtype=torch.float32)) for p in trained}
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_network(cls, network: Network, *, train_zero_biases: bool = False) -> AsyncSNN:
        """A module with a copy of ``network``'s weights and biases as parameters (see :class:`AsyncSNN`)."""
        return cls(network, train_zero_biases=train_zero_biases)

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[int],
        *,
        threshold: ParamLike | Sequence[ParamLike] = 1.0,
        beta: ParamLike | Sequence[ParamLike] = 0.9,
        refractory_dropout: float | Sequence[float] = 0.0,
        seed: int = 0,
        gain: float = 3.0,
        bias: ParamLike | Sequence[ParamLike] = 0.0,
        reset: str | Sequence[str] = "zero",
        train_zero_biases: bool = False,
        recurrent: bool | Sequence[bool] = False,
        recurrent_gain: float = 1.0,
        alpha: ParamLike | Sequence[ParamLike] = 0.0,
    ) -> AsyncSNN:
        """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

        Weights are drawn from ``N(0, (gain * threshold)**2 / fan_in)`` (float32) with a
        seeded generator, so that a layer of fan-in ``n`` whose inputs spike with rate
        about ``1 / gain**2`` receives currents of the order of its threshold.

        Parameters
        ----------
        sizes
            Neurons per population, the input first (at least two entries).
        threshold, beta, refractory_dropout
            LIF parameters, one value or one per layer (see ``Network.sequential``).
        seed
            Seed of the weight initialisation, ``0 .. 2**64 - 1``.
        gain
            Scale of the initial weights (see above).
        bias, reset
            Biases and reset modes (R1.4, R4.8), one value or one per layer (see
            ``Network.sequential``).
        train_zero_biases
            As for :class:`AsyncSNN`.
        recurrent
            Give population ``i`` a recurrent ``Dense`` projection to itself (R1.2, R4.9),
            as snnTorch's ``RLeaky``: ``True`` for every hidden population (not the
            output), or one bool per layer.
        recurrent_gain
            Scale of the initial recurrent weights, drawn from
            ``N(0, (recurrent_gain * threshold)**2 / n)`` for a population of ``n``.
        alpha
            Decay of the synaptic current (R4.12), in [0, 1], one value or one per layer
            (see ``Network.sequential``); default 0 (LIF neurons). With ``alpha > 0`` the
            neurons are current-based LIF neurons, snnTorch's ``Synaptic`` (``RSynaptic``
            with ``recurrent``); ``alpha`` is a constant of the training, like ``beta``.

        Returns
        -------
        AsyncSNN
        """
        try:
            ok = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes)
        except TypeError:
            ok = False
        if not ok or len(sizes) < 2:
            raise invalid(ModelError, "sizes", sizes, "needs at least two positive int sizes (input and output)")
        sizes = [int(s) for s in sizes]
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise invalid(ParameterError, "seed", seed, "must be an int in [0, 2**64 - 1]")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
            raise invalid(ModelError, "gain", gain, "must be a finite number > 0")
        n_layers = len(sizes) - 1
        ths = list(threshold) if isinstance(threshold, (list, tuple)) else [threshold] * n_layers
        if len(ths) != n_layers:
            raise invalid(
                ModelError, "threshold", threshold, f"a list must give one value per layer ({n_layers} layers)"
            )
        rng = np.random.default_rng(seed)
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            scale = _init_scale(ths[i])
            w = rng.normal(0.0, gain * scale / math.sqrt(a), (b, a)).astype(np.float32)
            layers.append(Dense(w))
        rec_pops = _recurrent_layers(recurrent, n_layers)
        if (
            isinstance(recurrent_gain, bool)
            or not isinstance(recurrent_gain, (int, float))
            or not (math.isfinite(recurrent_gain) and recurrent_gain > 0)
        ):
            raise invalid(ModelError, "recurrent_gain", recurrent_gain, "must be a finite number > 0")
        rec_projs = []
        for i in rec_pops:  # drawn after the forward weights: a forward network's weights do not change
            n = sizes[i + 1]
            w = rng.normal(0.0, recurrent_gain * _init_scale(ths[i]) / math.sqrt(n), (n, n)).astype(np.float32)
            rec_projs.append((i + 1, i + 1, Dense(w)))
        net = Network.sequential(
            input_shape=(sizes[0],),
            layers=layers,
            threshold=threshold,
            beta=beta,
            refractory_dropout=refractory_dropout,
            bias=bias,
            reset=reset,
            recurrent=rec_projs,
            alpha=alpha,
        )
        return cls(net, train_zero_biases=train_zero_biases)

    # ------------------------------------------------------------------ views
    @property
    def network(self) -> Network:
        """The network this module was built from (its weights are the initial ones)."""
        return self.plan.network

    def projection_weights(self) -> list[torch.Tensor | None]:
        """One tensor per projection: the parameter, or ``None`` for pooling."""
        return [None if i is None else self.weights[i] for i in self._param_of]

    def bias_vector(self) -> torch.Tensor | None:
        """float32 ``[N]``: the bias of every LIF neuron (the parameters where trained), in id order.

        ``None`` when no population settles (R1.6): the engine then adds no bias.
        """
        plan = self.plan
        if not plan.any_settling:
            return None
        device = self.weights[0].device if len(self.weights) else torch.device("cpu")
        parts = []
        for p, pop in enumerate(plan.network.populations, 1):
            b = self.biases.get(str(p), None)
            parts.append(
                b.reshape(-1) if b is not None else torch.tensor(np.asarray(pop.bias).reshape(-1), device=device)
            )
        return torch.cat(parts)

    def to_network(self) -> Network:
        """An :class:`~asyncsnn.network.Network` with the current weights and biases (float32 copies).

        Thresholds, leaks, synaptic decays, reset modes and dropouts are the network's; each trained
        bias is the parameter's value.
        """
        base = self.plan.network
        projections = []
        for pr, w in zip(base.projections, self.projection_weights(), strict=False):
            layer = pr.layer
            if w is not None:
                arr = w.detach().cpu().numpy().copy()
                if isinstance(layer, Dense):
                    layer = Dense(arr)
                else:
                    assert isinstance(layer, Conv2d)
                    layer = Conv2d(arr, stride=layer.stride, padding=layer.padding)
            projections.append(Projection(pr.source, pr.target, layer))
        populations = [
            dataclasses.replace(pop, bias=self.biases[str(p)].detach().cpu().numpy().copy())
            if str(p) in self.biases
            else pop
            for p, pop in enumerate(base.populations, 1)
        ]
        return Network(base.input_shape, populations, projections)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Any,
        *,
        scheduler: SchedulerLike = "momentum",
        forward_group_size: int = 8,
        stop: StopLike = "drain",
        extra_steps: int = 0,
        max_steps: int | None = None,
        seed: int = 0,
        jitter: float = 0.0,
        refractory_dropout: DropoutLike = "off",
        input_dropout: float = 0.0,
        spike_dropout: float = 0.0,
        prioritize_input: bool = True,
        labels: npt.ArrayLike | torch.Tensor | None = None,
        sample_ids: npt.ArrayLike | torch.Tensor | None = None,
        surrogate: Surrogate | None = None,
        surrogate_terms: str = "fired",
    ) -> RunOutput:
        """Run a batch asynchronously; differentiable when grad mode is on.

        Parameters
        ----------
        x
            Dense frames ``[B, T, *input_shape]`` or ``[B, T, n_in]``: a tensor (kept on
            its device, which must be the module's) or anything ``asyncsnn.infer``
            accepts (including sparse event lists). Tensors of any real dtype are
            read as float32 (bfloat16, float16 and float8 exactly, float64 rounded),
            sparse layouts are densified, and meta or complex tensors raise
            ``InputError``, as in ``asyncsnn.infer``.
        scheduler, forward_group_size, stop, extra_steps, max_steps, seed, jitter, refractory_dropout,
        input_dropout, spike_dropout, prioritize_input
            As for ``asyncsnn.infer`` (validated the same way).
        labels
            Optional classes ``[B]`` for the ``first_correct_*`` counters.
        sample_ids
            Optional ids ``[B]`` for the random function (R5.5).
        surrogate
            Surrogate derivative (default ``ATan()``).
        surrogate_terms
            Which surrogate terms the gradient keeps (docs/semantics.md section 9):
            ``"fired"`` (default) or ``"every_step"`` (asynctorch's: also a term at
            every other forward step in which a neuron is integrated). The forward
            values are the same under both.

        Returns
        -------
        RunOutput
            ``counts`` ``[B, T, n_out]`` (differentiable output spikes per timestep) and
            ``counters`` (every field of R7, int64 CPU tensors).
        """
        net = self.plan.network
        opts = prepare_options(
            net,
            scheduler=scheduler,
            forward_group_size=forward_group_size,
            stop=stop,
            extra_steps=extra_steps,
            max_steps=max_steps,
            seed=seed,
            jitter=jitter,
            refractory_dropout=refractory_dropout,
            input_dropout=input_dropout,
            spike_dropout=spike_dropout,
            prioritize_input=prioritize_input,
        )
        device = self.weights[0].device if len(self.weights) else torch.device("cpu")
        lab_t: torch.Tensor | None = None
        ids_t: torch.Tensor | None = None
        if isinstance(x, torch.Tensor):
            frames = _check_frames(x, net)
            lab_np = None if labels is None else _to_numpy(labels, "labels")
            ids_np = None if sample_ids is None else _to_numpy(sample_ids, "sample_ids")
            if lab_np is not None or ids_np is not None:
                # Validate labels and ids with the shared code (a 1-frame stand-in input).
                stub = np.zeros((frames.shape[0], 1, net.input_size), dtype=np.float32)
                prep = prepare_inputs(net, stub, labels=lab_np, sample_ids=ids_np)
                lab_t = None if prep.labels is None else as_tensor(prep.labels)
                ids_t = None if ids_np is None else as_tensor(prep.sample_ids.astype(np.int64))
        else:
            prep = prepare_inputs(
                net,
                x,
                labels=None if labels is None else _to_numpy(labels, "labels"),
                sample_ids=None if sample_ids is None else _to_numpy(sample_ids, "sample_ids"),
            )
            dense = (
                prep.dense if prep.dense is not None else np.stack([prep.dense_sample(b) for b in range(prep.batch)])
            )
            frames = as_tensor(np.ascontiguousarray(dense))
            lab_t = None if prep.labels is None else as_tensor(prep.labels)
            ids_t = None if sample_ids is None else as_tensor(prep.sample_ids.astype(np.int64))
        frames = frames.to(device)
        return run(
            self.plan,
            self.projection_weights(),
            frames,
            opts,
            labels=lab_t,
            sample_ids=ids_t,
            surrogate=surrogate,
            bias=self.bias_vector(),
            surrogate_terms=surrogate_terms,
        )


def _init_scale(threshold: Any) -> float:
    """Mean threshold of a layer for the initialisation; 1.0 when it is not valid.

    An invalid threshold is then reported, as a ``ModelError``, by ``Network.sequential``.
    """
    try:
        th = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        return 1.0
    return float(np.mean(th)) if th.size and np.all(np.isfinite(th)) and np.all(th > 0) else 1.0


def _to_numpy(x: Any, field: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return tensor_as_numpy(x, field)
    return np.asarray(x)


def _recurrent_layers(recurrent: bool | Sequence[bool], n_layers: int) -> list[int]:
    """The layers (0-based) that :meth:`AsyncSNN.from_sizes` gives a recurrent projection."""
    if isinstance(recurrent, (bool, np.bool_)):
        return list(range(n_layers - 1)) if recurrent else []
    flags = list(recurrent) if isinstance(recurrent, (list, tuple)) else None
    if flags is None or len(flags) != n_layers or not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise invalid(
            ModelError, "recurrent", recurrent, f"must be a bool or a list of one bool per layer ({n_layers} layers)"
        )
    return [i for i, f in enumerate(flags) if f]

"""Decision latency on the paper's terms: the wait until a correct and a stable decision.

Koopman et al. claim that asynchronous execution reaches "a correct decision faster
without integrating all spikes". This module gives that claim one definition per
quantity, computed from the counters of any engine (``docs/semantics.md`` R7.7, R7.9;
formulas in ``docs/guide.md``, "Decision latency"):

* **to the first correct output spike**: the forward steps, spikes and synops of the
  sample until and including the first forward step in which the labelled output neuron
  spikes (the totals of the earlier timesteps plus ``first_correct_*`` of the first
  timestep with ``first_correct_step >= 0``);
* **to the stable decision**: the same until and including ``decision_step``, the step
  after which the running prediction last changed (R7.9).

Forward steps are counted as steps run (a spike in the first forward step of the sample
is 1 step), like :attr:`~asyncsnn.result.InferenceResult.steps_to_first_output`.
:func:`compare_layered` sets an asynchronous run against the layer-synchronous baseline
(the same model and input under ``layered``, which integrates every spike of a layer
before the next: the paper's Figure 1 B vs C) as ratios layered / asynchronous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asyncsnn.result import InferenceResult

__all__ = ["QUANTITIES", "DecisionLatency", "compare_layered", "decision_latency", "describe"]

#: The six per-sample quantities of :class:`DecisionLatency`, in report order.
QUANTITIES = (
    "steps_to_correct",
    "spikes_to_correct",
    "synops_to_correct",
    "steps_to_decision",
    "spikes_to_decision",
    "synops_to_decision",
)


@dataclass(frozen=True)
class DecisionLatency:
    """Per-sample decision latencies of one run; every array is int64 ``[B]``, -1 = none.

    Attributes
    ----------
    steps_to_correct, spikes_to_correct, synops_to_correct : numpy.ndarray
        Forward steps (count), spikes (all populations) and synaptic operations from the
        start of the sample until and including the first forward step in which the
        labelled output neuron spikes. With ``t*`` the first timestep with
        ``first_correct_step >= 0``: ``sum(timestep_forward_steps[:t*]) +
        first_correct_step[t*] + 1``, ``sum(timestep_spikes[:t*]) +
        first_correct_spikes[t*]``, ``sum(timestep_synops[:t*]) + first_correct_synops[t*]``.
        -1 without labels or when the label never spikes.
    steps_to_decision, spikes_to_decision, synops_to_decision : numpy.ndarray
        The same until and including the stable decision (R7.9): ``decision_step + 1``,
        ``decision_spikes``, ``decision_synops``; -1 for a sample without output spike.
    """

    steps_to_correct: np.ndarray
    spikes_to_correct: np.ndarray
    synops_to_correct: np.ndarray
    steps_to_decision: np.ndarray
    spikes_to_decision: np.ndarray
    synops_to_decision: np.ndarray

    def means(self) -> dict[str, float]:
        """The mean of each quantity over the samples that have it (NaN where none has).

        Returns
        -------
        dict of str to float
            One entry per name of :data:`QUANTITIES` (steps, spikes or synops per sample).
        """
        out = {}
        for name in QUANTITIES:
            values = getattr(self, name)
            has = values >= 0
            out[name] = float(values[has].mean()) if has.any() else float("nan")
        return out


def decision_latency(result: InferenceResult) -> DecisionLatency:
    """The per-sample decision latencies of ``result`` (see :class:`DecisionLatency`).

    Parameters
    ----------
    result
        An :class:`~asyncsnn.result.InferenceResult` of any engine (``B`` samples,
        ``T`` timesteps); the "to correct" quantities need the labels it was run with.

    Returns
    -------
    DecisionLatency
        Six int64 arrays ``[B]`` (forward steps, spikes and synops), -1 where undefined.

    Examples
    --------
    A hidden layer of two neurons feeds two output neurons; with ``fifo`` and ``F = 1``
    the output neurons fire in forward steps 1 and 2. The label is 1: its output neuron
    fires second, and the running prediction settles on class 0 at the first output
    spike (the tie that follows goes to the smaller index).

    >>> import numpy as np
    >>> import asyncsnn
    >>> from asyncsnn.latency import decision_latency
    >>> net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.eye(2) * 2), asyncsnn.Dense(np.eye(2) * 2)])
    >>> res = asyncsnn.infer(net, np.ones((1, 1, 2), np.float32), scheduler="fifo", forward_group_size=1,
    ...                      labels=[1])
    >>> lat = decision_latency(res)
    >>> lat.steps_to_correct.tolist(), lat.spikes_to_correct.tolist(), lat.synops_to_correct.tolist()
    ([3], [4], [8])
    >>> lat.steps_to_decision.tolist(), lat.spikes_to_decision.tolist(), lat.synops_to_decision.tolist()
    ([2], [3], [6])
    """
    fc = result.first_correct_step
    has = fc >= 0
    t_star = np.where(has.any(axis=1), has.argmax(axis=1), -1)
    rows = np.arange(result.batch_size)
    at = np.maximum(t_star, 0)
    before = np.arange(fc.shape[1])[None, :] < at[:, None]  # the timesteps before t*

    def to_correct(per_timestep: np.ndarray, record: np.ndarray, plus: int) -> np.ndarray:
        earlier = np.where(before, per_timestep, 0).sum(axis=1)
        return np.where(t_star >= 0, earlier + record[rows, at] + plus, -1).astype(np.int64)

    decided = result.decision_step >= 0
    return DecisionLatency(
        steps_to_correct=to_correct(result.timestep_forward_steps, fc, 1),
        spikes_to_correct=to_correct(result.timestep_spikes, result.first_correct_spikes, 0),
        synops_to_correct=to_correct(result.timestep_synops, result.first_correct_synops, 0),
        steps_to_decision=np.where(decided, result.decision_step + 1, -1).astype(np.int64),
        spikes_to_decision=result.decision_spikes.astype(np.int64),
        synops_to_decision=result.decision_synops.astype(np.int64),
    )


def compare_layered(asynchronous: InferenceResult, layered: InferenceResult) -> dict[str, float]:
    """Decision latency of the layer-synchronous baseline over the asynchronous run's.

    Both results must come from the same model and inputs (and labels): ``layered`` run
    with ``scheduler="layered"``, ``asynchronous`` with any other setting. For each
    quantity of :data:`QUANTITIES` the ratio is ``mean(layered) / mean(asynchronous)``,
    both means over the samples that have the quantity in *both* runs (paired); a
    ratio above 1 means the asynchronous run decides sooner (the paper's "up to 2x").

    Parameters
    ----------
    asynchronous, layered
        Results of the same ``B`` samples.

    Returns
    -------
    dict of str to float
        One ratio per name of :data:`QUANTITIES`; NaN where no sample has the quantity
        in both runs or the asynchronous mean is 0.

    Raises
    ------
    ValueError
        When the two results have different batch sizes.

    Examples
    --------
    The output neuron needs one of the two hidden spikes: layered execution integrates
    both before it fires, fifo with ``F = 1`` only the first (6 vs 5 synops, the same
    number of forward steps).

    >>> import numpy as np
    >>> import asyncsnn
    >>> from asyncsnn.latency import compare_layered
    >>> net = asyncsnn.Network.sequential((2,), [asyncsnn.Dense(np.eye(2) * 2), asyncsnn.Dense([[1.5, 1.5]])])
    >>> x = np.ones((1, 1, 2), np.float32)
    >>> lay = asyncsnn.infer(net, x, scheduler="layered", labels=[0])
    >>> asy = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1, labels=[0])
    >>> ratios = compare_layered(asy, lay)
    >>> ratios["steps_to_decision"], ratios["synops_to_decision"]
    (1.0, 1.2)
    """
    if asynchronous.batch_size != layered.batch_size:
        raise ValueError(f"batch sizes differ: {asynchronous.batch_size} vs {layered.batch_size}")
    a, b = decision_latency(asynchronous), decision_latency(layered)
    ratios = {}
    for name in QUANTITIES:
        x, y = getattr(a, name), getattr(b, name)
        both = (x >= 0) & (y >= 0)
        mean_a = float(x[both].mean()) if both.any() else math.nan
        mean_b = float(y[both].mean()) if both.any() else math.nan
        ratios[name] = mean_b / mean_a if mean_a else math.nan
    return ratios


def describe(asynchronous: InferenceResult, layered: InferenceResult) -> str:
    """A short report of the decision latency of a run and its ratios to the layered baseline.

    Parameters
    ----------
    asynchronous, layered
        As for :func:`compare_layered`.

    Returns
    -------
    str
        Two lines (to the first correct output spike, to the stable decision) under a
        title: mean forward steps, spikes and synops per sample, each with the ratio
        layered / asynchronous in brackets.
    """
    means = decision_latency(asynchronous).means()
    ratios = compare_layered(asynchronous, layered)

    def cell(name: str, spec: str) -> str:
        value, ratio = means[name], ratios[name]
        text = "n/a" if math.isnan(value) else format(value, spec)
        return f"{text} ({'n/a' if math.isnan(ratio) else format(ratio, '.2f') + 'x'})"

    lines = ["  decision latency    mean per sample (layered/async), docs/guide.md"]
    for title, what in (("to 1st correct spike", "correct"), ("to stable decision", "decision")):
        lines.append(
            f"  {title:<20} steps {cell('steps_to_' + what, '.2f')}, spikes {cell('spikes_to_' + what, '.1f')}, "
            f"synops {cell('synops_to_' + what, '.0f')}"
        )
    return "\n".join(lines)

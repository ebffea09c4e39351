"""The figures of ``asyncsnn reproduce``, drawn from its ``results.json``, with computed captions.

Every figure states one claim in its caption, and every number of that claim is computed
from the run's results (never written in advance): :func:`captions` builds them from the
``results.json`` mapping alone (no matplotlib needed), :func:`draw_figures` draws the PNGs
(matplotlib, imported when called, Agg backend), prints each caption under its figure and
writes ``figures.md`` (each figure with its caption) next to them. :func:`redraw` draws
them again from a results folder, without training anything.

The figures (:data:`FIGURES`, in order):

``accuracy_vs_cost.png``
    The results table as a plot: accuracy against spikes per sample, forward steps to
    the first output spike of a timestep, and the decision latency (forward steps and
    synaptic operations per sample to the stable decision, ``docs/guide.md``), one
    marker per training x inference x stop cell.
``accuracy_vs_extra_steps.png``
    Anytime accuracy under ``momentum`` inference: accuracy when each timestep stops
    ``k`` forward steps after its first output spike, per training, with the
    layered-trained, layered-inference accuracy as the reference line.
``training_curves.png``
    Training loss and training accuracy per epoch, per training scheduler.
``f_sweep.png``
    Accuracy, spikes per sample, steps to the first output spike and the ratio of the
    synaptic operations to the stable decision under layered inference of the same model
    over the asynchronous run's, against the forward group size F, for the asynchronous
    schedulers (the trained models, re-evaluated).
``energy_time.png``
    Energy per inference and time to the stable decision (from the start of the sample,
    ``docs/cost.md``) on every shipped hardware profile, layer-synchronous (layered
    training and inference) against asynchronous.
``spikes_per_neuron.png``
    Spikes per neuron per sample in each population (``momentum`` inference, drained).
``currents_to_spike.png``
    How many forward steps with input a hidden neuron integrates before it spikes.

A figure whose data the results do not hold (an older ``results.json``) is left out.

The same functions draw the aggregate of ``asyncsnn reproduce --seeds``, whose numbers are
stats over the seeds (``asyncsnn._spread``): every line and marker is then the mean,
with ± one standard deviation as error bars or a band (the training curves: the min to
max band), each caption gives ``mean ± std`` and on how many seeds each comparison
holds, and the histogram of ``currents_to_spike.png`` pools the seeds.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asyncsnn import _spread
from asyncsnn.exceptions import InputError, invalid

__all__ = ["FIGURES", "captions", "draw_evaluate", "draw_figures", "evaluate_caption", "redraw"]

FIGURES = (
    "accuracy_vs_cost.png",
    "accuracy_vs_extra_steps.png",
    "training_curves.png",
    "f_sweep.png",
    "energy_time.png",
    "spikes_per_neuron.png",
    "currents_to_spike.png",
)
#: Extra forward steps of the anytime-accuracy sweep, where ``results.json`` does not name them.
DEFAULT_EXTRA_STEPS = (0, 1, 2, 4, 8, 16, 32, 64)
_COLORS = {"layered": "tab:gray", "random": "tab:blue", "momentum": "tab:orange"}
_MARKERS = {"layered": "o", "random": "s", "momentum": "^"}
_ASYNC = ("momentum", "random")


# ----------------------------------------------------------------------------- numbers
# A value of results.json is a number (one seed) or a stat over seeds (asyncsnn._spread):
# the helpers read both, so that one seed's captions are what they always were and several
# seeds' captions give the mean ± std and on how many seeds a claim holds.
def _num(value: Any) -> float:
    """A results value as a float: a number, or a stat's mean (``None``, a JSON null, is NaN)."""
    return _spread.mean(value)


def _cells(results: Mapping[str, Any]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(c["training"], c["inference"], c["stop"]): c for c in results.get("cells", [])}


def _pct_change(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    safe = np.where(old == 0, np.nan, old)
    return np.asarray(100.0 * (new - old) / safe, dtype=float)


def _pct(change: np.ndarray) -> str:
    """``abs(mean)`` in percent: no decimals from 10 % on, one below (``38 %``, ``0.4 %``, ``15 ± 2 %``)."""
    have = change[~np.isnan(change)]
    m = float(have.mean())
    return _spread.summary(change, ".0f" if abs(m) >= 10 else ".1f", absolute=True, unit=" %")


def _fewer(new: Any, old: Any, noun: str, fewer: str = "fewer", more: str = "more") -> str:
    """``"38 % fewer spikes"`` / ``"0.4 % more spikes"`` / ``"15 ± 2 % fewer spikes"`` (over seeds)."""
    change = _spread.paired(_pct_change, new, old)
    if np.all(np.isnan(change)):
        return f"n/a change in {noun}"
    word = fewer if float(np.nanmean(change)) < 0 else more
    return f"{_pct(change)} {word} {noun}".rstrip()


def _held(new: Any, old: Any) -> str:
    """``" on 2 of 3 seeds"``: on how many seeds the change of :func:`_fewer` has its sign ("" for one seed)."""
    return _spread.held(_spread.paired(_pct_change, new, old))


def _ratio(old: Any, new: Any, word: str, opposite: str) -> str:
    """``"2.10x faster"``: how many times ``new`` is smaller than ``old``, per seed (n/a when undefined).

    ``word`` follows a mean ratio of 1 or more, ``opposite`` one below 1 (``"0.98x slower on 3 of 3 seeds"``).

    >>> _ratio(2.0, 1.0, "faster", "slower"), _ratio(0.98, 1.0, "faster", "slower")
    ('2.00x faster', '0.98x slower')
    """
    ratio = _spread.paired(lambda o, n: np.where(n == 0, np.nan, o / np.where(n == 0, 1.0, n)), old, new)
    if np.all(np.isnan(ratio)):
        return "n/a"
    below = float(np.nanmean(ratio)) < 1.0
    return _spread.summary(ratio, ".2f", unit="x") + f" {opposite if below else word}" + _spread.held(ratio - 1.0)


def _points(new: Any, old: Any) -> tuple[str, str]:
    """The accuracy of ``new`` minus that of ``old`` in points (``"+1.5"``), and on how many seeds it holds."""
    diff = _spread.paired(lambda a, b: 100.0 * (a - b), new, old)
    return _spread.summary(diff, "+.1f"), _spread.on_seeds(diff, "higher", "lower")


def _acc(value: Any) -> str:
    return _spread.fmt(value, ".1f", scale=100.0, unit=" %", missing="nan %")


def _micro(value: Any) -> str:
    return _spread.fmt(value, "#.3g", scale=1e6)  # three significant digits, also for 42.0 and 1.00


def _seeds(results: Mapping[str, Any]) -> list[int]:
    """The seeds of an aggregate ``results.json`` (empty for a single run)."""
    return [int(s) for s in results.get("seeds") or []]


def _over_seeds(results: Mapping[str, Any], band: str = "error bars: ± one standard deviation") -> str:
    """The sentence that ends a caption of several seeds ("" for one seed)."""
    seeds = _seeds(results)
    if len(seeds) < 2:
        return ""
    return f" Over {len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± standard deviation (ddof = 1); {band}."


def _forward_group_size(results: Mapping[str, Any]) -> int:
    settings = results.get("settings") or results.get("config") or {}
    return int(settings.get("forward_group_size", 0))


def _extra_steps(results: Mapping[str, Any]) -> list[int]:
    settings = results.get("settings") or {}
    return [int(k) for k in settings.get("extra_steps_sweep", DEFAULT_EXTRA_STEPS)]


def _population_names(results: Mapping[str, Any]) -> list[str]:
    hidden = max(len(results.get("architecture", [])) - 2, 0)
    return [f"hidden {i + 1}" for i in range(hidden)] + ["output"]


# ----------------------------------------------------------------------------- captions
def _count(value: Any) -> str:
    return _spread.fmt(value, ".0f")


def _caption_table(results: Mapping[str, Any]) -> str | None:
    by = _cells(results)
    base = by.get(("layered", "layered", "drain"))
    if base is None:
        return None
    parts = []
    for t in _ASYNC:
        c = by.get((t, t, "drain"))
        if c is None:
            continue
        points, where = _points(c["accuracy"], base["accuracy"])
        accs = f"{_acc(c['accuracy'])} vs {_acc(base['accuracy'])}"
        parts.append(
            f"unlayered/{t} under {t} inference: {_fewer(c['spikes_per_sample'], base['spikes_per_sample'], 'spikes')} "
            f"per sample than layered/layered{_held(c['spikes_per_sample'], base['spikes_per_sample'])} "
            f"({_count(c['spikes_per_sample'])} vs "
            f"{_count(base['spikes_per_sample'])}) at {points} points of accuracy "
            f"({where + '; ' if where else ''}{accs}), {_count(c['synops_to_first_output'])} vs "
            f"{_count(base['synops_to_first_output'])} synaptic operations to the first output spike of a timestep"
            + _decision_clause(c)
        )
    if not parts:
        return None
    return (
        f"Accuracy against cost, one marker per training x inference x stop (F = {_forward_group_size(results)}): "
        + ("; ".join(parts) + ".")
        + _over_seeds(results)
    )


def _decision_clause(cell: Mapping[str, Any]) -> str:
    """``", stable decision after ... (layered inference of the same model: ...)"`` ("" without the data)."""
    if math.isnan(_num(cell.get("steps_to_decision"))):
        return ""

    def ratio(name: str) -> str:
        per_seed = _spread.paired(lambda r: r, cell.get(f"vs_layered_{name}"))
        if np.all(np.isnan(per_seed)):
            return "n/a"
        held = _spread.on_seeds(per_seed - 1.0, "sooner", "later")
        return _spread.summary(per_seed, ".2f", unit="x") + (f", {held}" if held else "")

    return (
        f", stable decision after {_spread.fmt(cell['steps_to_decision'], '.1f')} forward steps and "
        f"{_count(cell.get('synops_to_decision'))} synaptic operations per sample (layered inference of the same "
        f"model / this: {ratio('steps_to_decision')} in steps, {ratio('synops_to_decision')} in synops)"
    )


def _caption_anytime(results: Mapping[str, Any]) -> str | None:
    sweep = results.get("sweep") or {}
    base = _cells(results).get(("layered", "layered", "drain"))
    if not sweep:
        return None
    extra = _extra_steps(results)
    ref = _num(base["accuracy"]) if base is not None else float("nan")
    parts = []
    for training, curve in sweep.items():
        accs = curve["accuracy"]
        text = (
            f"trained {training}: {_acc(accs[0])} at the first output spike (+{extra[0]} steps), "
            f"{_acc(accs[-1])} after +{extra[-1]}, {_acc(curve['drained'][0])} drained"
        )
        if not math.isnan(ref):
            reach = next((k for k, a in zip(extra, accs) if _num(a) >= ref - 0.01), None)
            text += (
                f", within 1 point of the layered baseline after +{reach} steps"
                if reach is not None
                else f", never within 1 point of the layered baseline up to +{extra[-1]}"
            )
        parts.append(text)
    head = (
        "Anytime accuracy under momentum inference, each timestep stopped k forward steps after its first output spike"
    )
    if base is not None and not math.isnan(ref):
        head += f" (layered baseline, layered training and inference: {_acc(base['accuracy'])})"
    band = "the bands: ± one standard deviation; within 1 point: the means compared"
    return head + ": " + "; ".join(parts) + "." + _over_seeds(results, band=band)


def _caption_training(results: Mapping[str, Any]) -> str | None:
    history = results.get("history") or {}
    parts = []
    for training, h in history.items():
        if not h.get("loss"):
            continue
        loss = f"{_spread.fmt(h['loss'][0], '.3f')} -> {_spread.fmt(h['loss'][-1], '.3f')}"
        text = f"{training}: loss {loss}, training accuracy {_acc(h['train_accuracy'][-1])}"
        test = h.get("test_accuracy") or [None]
        if not math.isnan(_num(test[-1])):
            text += f", test accuracy {_acc(test[-1])}"
        parts.append(text)
    if not parts:
        return None
    epochs = max(len(h.get("loss", [])) for h in history.values())
    return (
        f"Training curves over {epochs} epoch{'s' if epochs != 1 else ''} (first -> last epoch): "
        + ("; ".join(parts) + ".")
        + _over_seeds(results, band="the bands span the min to the max over the seeds")
    )


def _sweep_rows(results: Mapping[str, Any], training: str, inference: str) -> list[Mapping[str, Any]]:
    rows = [r for r in results.get("f_sweep", []) if r["training"] == training and r["inference"] == inference]
    return sorted(rows, key=lambda r: int(r["forward_group_size"]))


def _caption_f_sweep(results: Mapping[str, Any]) -> str | None:
    if not results.get("f_sweep"):
        return None
    parts = []
    for t in _ASYNC:
        rows = _sweep_rows(results, t, t)
        if len(rows) < 2:
            continue
        lo, hi = rows[0], rows[-1]
        f_lo, f_hi = lo["forward_group_size"], hi["forward_group_size"]
        best = max(rows, key=lambda r: _num(r["accuracy"]))
        steps = (
            f"{_spread.fmt(lo['steps_to_first_output'], '.2f')} -> {_spread.fmt(hi['steps_to_first_output'], '.2f')}"
        )
        parts.append(
            f"unlayered/{t} under {t} inference: accuracy {_acc(lo['accuracy'])} at F = {f_lo}, "
            f"{_acc(hi['accuracy'])} at F = {f_hi} (best {_acc(best['accuracy'])} at F = {best['forward_group_size']}), "
            f"spikes per sample {_count(lo['spikes_per_sample'])} -> {_count(hi['spikes_per_sample'])}, "
            f"steps to 1st output {steps}" + _sweep_decision_clause(lo, hi)
        )
    if not parts:
        return None
    base = _cells(results).get(("layered", "layered", "drain"))
    tail = f" Layered/layered (F plays no part): {_acc(base['accuracy'])}." if base is not None else ""
    return (
        f"Forward group size F at inference (models trained with F = {_forward_group_size(results)}): "
        + "; ".join(parts)
        + "."
        + tail
        + _over_seeds(results, band="the bands: ± one standard deviation; best: the highest mean")
    )


def _sweep_decision_clause(lo: Mapping[str, Any], hi: Mapping[str, Any]) -> str:
    """``", layered/async synops to the stable decision 0.95x -> 1.10x"`` ("" without the data)."""
    key = "vs_layered_synops_to_decision"
    if math.isnan(_num(lo.get(key))) and math.isnan(_num(hi.get(key))):
        return ""
    return f", layered/async synops to the stable decision {_spread.fmt(lo.get(key), '.2f')}x -> " + (
        f"{_spread.fmt(hi.get(key), '.2f')}x"
    )


def _caption_energy(results: Mapping[str, Any]) -> str | None:
    by = _cells(results)
    base = by.get(("layered", "layered", "drain"))
    profiles = list(dict.fromkeys(name for c in by.values() for name in c.get("cost", {})))
    if base is None or not profiles:
        return None
    parts = []
    for name in profiles:
        b = base["cost"].get(name, {})
        items = []
        for t in _ASYNC:
            c = by.get((t, t, "drain"))
            if c is None:
                continue
            a = c["cost"].get(name, {})
            e_new, e_old = a.get("energy_per_inference_j"), b.get("energy_per_inference_j")
            text = (
                f"unlayered/{t} {_micro(e_new)} µJ per inference vs {_micro(e_old)} µJ layered "
                f"({_fewer(e_new, e_old, '', 'less', 'more')}{_held(e_new, e_old)})"
            )
            d_new, d_old = a.get("time_to_decision_s"), b.get("time_to_decision_s")
            if not (math.isnan(_num(d_new)) or math.isnan(_num(d_old))):
                text += (
                    f", time to the stable decision {_micro(d_new)} µs vs {_micro(d_old)} µs "
                    f"({_ratio(d_old, d_new, 'faster', 'slower')})"
                )
            items.append(text)
        if not math.isnan(_num(b.get("energy_per_inference_j"))) and math.isnan(_num(b.get("time_to_decision_s"))):
            items.append("no time model")
        parts.append(f"{name}: " + ", ".join(items))
    return (
        "Energy per inference and time from the start of the sample to the stable decision (a model estimate, "
        "docs/cost.md), layer-synchronous "
        "(layered training and inference, a barrier per forward step) vs asynchronous (drain): "
        + "; ".join(parts)
        + "."
        + _over_seeds(results)
    )


def _caption_spikes_per_neuron(results: Mapping[str, Any]) -> str | None:
    per = results.get("spikes_per_neuron") or {}
    if not per:
        return None
    names = _population_names(results)
    parts = [
        f"{training}: " + ", ".join(f"{n} {_spread.fmt(v, '.2f')}" for n, v in zip(names, values))
        for training, values in per.items()
    ]
    return (
        "Spikes per neuron per sample by population (momentum inference, drain): "
        + "; ".join(parts)
        + "."
        + _over_seeds(results)
    )


def _caption_currents(results: Mapping[str, Any]) -> str | None:
    counts = {t: c for t, c in (results.get("currents_to_spike") or {}).items() if c}
    if not counts:
        return None
    parts = [
        f"trained {t}: median {np.median(c):.0f}, {100 * np.mean(np.asarray(c) == 1):.0f} % of the spikes after one"
        for t, c in counts.items()
    ]
    seeds = _seeds(results)
    pooled = f" Pooled over {len(seeds)} seeds ({', '.join(map(str, seeds))})." if len(seeds) > 1 else ""
    return (
        "Forward steps with input that a hidden neuron integrates before it spikes (momentum inference): "
        + "; ".join(parts)
        + "."
        + pooled
    )


_CAPTIONS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "accuracy_vs_cost.png": _caption_table,
    "accuracy_vs_extra_steps.png": _caption_anytime,
    "training_curves.png": _caption_training,
    "f_sweep.png": _caption_f_sweep,
    "energy_time.png": _caption_energy,
    "spikes_per_neuron.png": _caption_spikes_per_neuron,
    "currents_to_spike.png": _caption_currents,
}


def captions(results: Mapping[str, Any]) -> dict[str, str]:
    """The caption of every figure that ``results`` has the data for, computed from it.

    Parameters
    ----------
    results
        The contents of a ``results.json`` written by ``asyncsnn reproduce``.

    Returns
    -------
    dict of str to str
        File name (in :data:`FIGURES` order) to caption; figures without data are left out.

    Examples
    --------
    >>> from asyncsnn.figures import captions
    >>> cell = dict(stop="drain", accuracy=0.9, spikes_per_sample=1000.0, synops_to_first_output=50.0, cost={})
    >>> cells = [dict(cell, training="layered", inference="layered"),
    ...          dict(cell, training="momentum", inference="momentum", spikes_per_sample=620.0, accuracy=0.895)]
    >>> text = captions({"cells": cells, "settings": {"forward_group_size": 8}})["accuracy_vs_cost.png"]
    >>> print(text)  # doctest: +NORMALIZE_WHITESPACE
    Accuracy against cost, one marker per training x inference x stop (F = 8): unlayered/momentum under momentum
    inference: 38 % fewer spikes per sample than layered/layered (620 vs 1000) at -0.5 points of accuracy
    (89.5 % vs 90.0 %), 50 vs 50 synaptic operations to the first output spike of a timestep.
    """
    out = {}
    for name in FIGURES:
        text = _CAPTIONS[name](results)
        if text is not None:
            out[name] = text
    return out


# ----------------------------------------------------------------------------- drawing
def _std_or_zero(value: Any, scale: float = 1.0) -> float:
    s = _spread.std(value)
    return 0.0 if math.isnan(s) else scale * s


def _errors(items: list[Any], scale: float = 1.0) -> list[float] | None:
    """± one standard deviation of each stat (an error bar), or None when none is a stat (one seed)."""
    if not any(_spread.is_stat(v) for v in items):
        return None
    return [_std_or_zero(v, scale) for v in items]


def _band(ax: Any, x: Any, items: list[Any], scale: float, color: str, *, minmax: bool = False) -> None:
    """Shade mean ± std (or min to max) of stats around their line; nothing for plain numbers."""
    if not any(_spread.is_stat(v) for v in items):
        return
    if minmax:
        lo = [scale * _num(v["min"]) if _spread.is_stat(v) else scale * _num(v) for v in items]
        hi = [scale * _num(v["max"]) if _spread.is_stat(v) else scale * _num(v) for v in items]
    else:
        mid = np.array([scale * _num(v) for v in items])
        err = np.array([_std_or_zero(v, scale) for v in items])
        lo, hi = list(mid - err), list(mid + err)
    ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def _title_seeds(results: Mapping[str, Any], what: str = "mean ± std", *, newline: bool = False) -> str:
    seeds = _seeds(results)
    return f"{chr(10) if newline else ' '}({what} over {len(seeds)} seeds)" if len(seeds) > 1 else ""


def _short(training: str, inference: str, stop: str) -> str:
    return f"{training[0].upper()}/{inference[0].upper()}" + ("·1st" if stop == "first_output" else "")


def _draw_table(plt: Any, results: Mapping[str, Any]) -> Any:
    from matplotlib.lines import Line2D

    cells = list(_cells(results).values())
    axes_spec = [
        ("spikes_per_sample", "spikes per sample"),
        ("steps_to_first_output", "forward steps to the first output spike (per timestep)"),
        ("steps_to_decision", "forward steps to the stable decision (per sample)"),
        ("synops_to_decision", "synaptic operations to the stable decision (per sample)"),
    ]
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(19, 4.8), sharey=True)
    for ax, (key, label) in zip(axes, axes_spec):
        for c in cells:
            x, y = _num(c.get(key)), 100 * _num(c["accuracy"])
            if math.isnan(x):
                continue
            color = _COLORS.get(c["training"], "black")
            filled = c["stop"] == "drain"
            if _spread.is_stat(c[key]) or _spread.is_stat(c["accuracy"]):
                ax.errorbar(
                    x,
                    y,
                    xerr=_std_or_zero(c[key]),
                    yerr=_std_or_zero(c["accuracy"], 100.0),
                    fmt="none",
                    ecolor=color,
                    elinewidth=1,
                    alpha=0.6,
                )
            ax.scatter(
                x,
                y,
                marker=_MARKERS.get(c["inference"], "o"),
                s=60,
                facecolors=color if filled else "none",
                edgecolors=color,
                linewidths=1.5,
            )
            ax.annotate(
                _short(c["training"], c["inference"], c["stop"]),
                (x, y),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
            )
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    handles = [Line2D([], [], color=c, lw=0, marker="o", label=f"trained {t}") for t, c in _COLORS.items()]
    handles += [
        Line2D([], [], color="black", lw=0, marker=m, markerfacecolor="none", label=f"{t} inference")
        for t, m in _MARKERS.items()
    ]
    handles += [
        Line2D([], [], color="black", lw=0, marker="o", label="drain (filled)"),
        Line2D([], [], color="black", lw=0, marker="o", markerfacecolor="none", label="first_output (hollow)"),
    ]
    axes[-1].legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle(
        "The results table as a plot (labels: training/inference, ·1st = stopped at the first output)"
        + _title_seeds(results)
    )
    return fig


def _draw_anytime(plt: Any, results: Mapping[str, Any]) -> Any:
    extra = _extra_steps(results)
    pos = np.arange(len(extra))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for training, curve in results["sweep"].items():
        color = _COLORS.get(training, "black")
        ax.plot(pos, [100 * _num(a) for a in curve["accuracy"]], marker="o", color=color, label=f"trained {training}")
        _band(ax, pos, list(curve["accuracy"]), 100.0, color)
        ax.axhline(100 * _num(curve["drained"][0]), ls=":", color=color, alpha=0.7)
    base = _cells(results).get(("layered", "layered", "drain"))
    if base is not None:
        ax.axhline(
            100 * _num(base["accuracy"]), ls="--", lw=2, color="black", label="layered baseline (layered/layered)"
        )
    ax.set_xticks(pos, [f"+{k}" for k in extra])
    f = _forward_group_size(results)
    ax.set_xlabel(f"forward steps run after the first output spike of each timestep (each delivers up to F = {f})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Anytime accuracy, momentum inference (dotted: drained)" + _title_seeds(results, newline=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _draw_training(plt: Any, results: Mapping[str, Any]) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for training, h in results["history"].items():
        color = _COLORS.get(training, "black")
        epochs = np.arange(1, len(h.get("loss", [])) + 1)
        if not len(epochs):
            continue
        ax_loss.plot(epochs, [_num(v) for v in h["loss"]], marker="o", color=color, label=f"{training}")
        _band(ax_loss, epochs, list(h["loss"]), 1.0, color, minmax=True)
        ax_acc.plot(
            epochs, [100 * _num(v) for v in h["train_accuracy"]], marker="o", color=color, label=f"{training} (train)"
        )
        _band(ax_acc, epochs, list(h["train_accuracy"]), 100.0, color, minmax=True)
        test = [100 * _num(v) for v in h.get("test_accuracy", [])]
        if test and not all(math.isnan(v) for v in test):
            ax_acc.plot(epochs, test, marker="s", ls="--", color=color, label=f"{training} (test)")
            _band(ax_acc, epochs, list(h["test_accuracy"]), 100.0, color, minmax=True)
    n_epochs = max((len(h.get("loss", [])) for h in results["history"].values()), default=0)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        if n_epochs <= 20:
            ax.set_xticks(np.arange(1, n_epochs + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("accuracy (%)")
    fig.suptitle("Training curves per training scheduler" + _title_seeds(results, "mean, min-max band"))
    return fig


def _draw_f_sweep(plt: Any, results: Mapping[str, Any]) -> Any:
    rows = results["f_sweep"]
    trainings = list(dict.fromkeys(r["training"] for r in rows))
    inferences = list(dict.fromkeys(r["inference"] for r in rows))
    sizes = sorted({int(r["forward_group_size"]) for r in rows})
    pos = {f: i for i, f in enumerate(sizes)}
    panels = [
        ("accuracy", "test accuracy (%)", 100.0),
        ("spikes_per_sample", "spikes per sample", 1.0),
        ("steps_to_first_output", "steps to 1st output (per timestep)", 1.0),
        ("vs_layered_synops_to_decision", "layered/async synops to stable decision", 1.0),
    ]
    if not any(panels[-1][0] in r for r in rows):  # a results.json from before the decision counters
        panels = panels[:-1]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5))
    base = _cells(results).get(("layered", "layered", "drain"))
    styles = {"momentum": "-", "random": "--"}
    for ax, (key, label, scale) in zip(axes, panels):
        for training in trainings:
            for inference in inferences:
                sel = _sweep_rows(results, training, inference)
                if not sel:
                    continue
                xs = [pos[int(r["forward_group_size"])] for r in sel]
                color = _COLORS.get(training, "black")
                ax.plot(
                    xs,
                    [scale * _num(r.get(key)) for r in sel],
                    marker=_MARKERS.get(inference, "o"),
                    ls=styles.get(inference, "-"),
                    color=color,
                    label=f"trained {training}, {inference} inference",
                )
                _band(ax, xs, [r.get(key) for r in sel], scale, color)
        if base is not None and key in base:
            ax.axhline(scale * _num(base[key]), color="black", lw=1.5, ls=":", label="layered/layered")
        ax.set_xticks(list(pos.values()), [str(f) for f in sizes])
        ax.set_xlabel("forward group size F at inference")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Forward group size F (models trained with F = {_forward_group_size(results)}), drain" + _title_seeds(results)
    )
    return fig


def _draw_energy(plt: Any, results: Mapping[str, Any]) -> Any:
    by = _cells(results)
    keys = [
        ("layered", "layered", "drain"),
        ("random", "random", "drain"),
        ("momentum", "momentum", "drain"),
        ("random", "random", "first_output"),
        ("momentum", "momentum", "first_output"),
    ]
    keys = [k for k in keys if k in by]
    profiles = list(dict.fromkeys(name for c in by.values() for name in c.get("cost", {})))
    quantities = [
        ("energy_per_inference_j", "energy per inference (µJ)"),
        ("time_to_decision_s", "time to stable decision (µs)"),
    ]
    fig, axes = plt.subplots(len(profiles), 2, figsize=(11, 3.2 * len(profiles)), squeeze=False)
    labels = [f"{t}\n{'drain' if s == 'drain' else '1st output'}" for t, _, s in keys]
    for row, name in enumerate(profiles):
        for col, (key, label) in enumerate(quantities):
            ax = axes[row][col]
            items = [by[k]["cost"].get(name, {}).get(key) for k in keys]
            values = [1e6 * _num(v) for v in items]
            if all(math.isnan(v) for v in values):
                ax.text(0.5, 0.5, f"{name} gives no time model", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                colors = [_COLORS.get(k[0], "black") for k in keys]
                hatches = ["" if k[2] == "drain" else "//" for k in keys]
                bars = ax.bar(
                    np.arange(len(keys)), np.nan_to_num(values), color=colors, yerr=_errors(items, 1e6), capsize=3
                )
                for bar, hatch in zip(bars, hatches):
                    bar.set_hatch(hatch)
                ax.bar_label(bars, labels=[f"{v:#.3g}".rstrip(".") for v in values], fontsize=7)
                ax.set_xticks(np.arange(len(keys)), labels, fontsize=8)
                ax.set_xlabel("training = inference scheduler, stop", fontsize=8)
                ax.grid(alpha=0.3, axis="y")
            ax.set_ylabel(label)
            ax.set_title(f"{name}: {label.split(' (')[0]}", fontsize=10)
    fig.suptitle(
        "Layer-synchronous (layered/layered) vs asynchronous execution on hardware profiles" + _title_seeds(results)
    )
    return fig


def _draw_spikes_per_neuron(plt: Any, results: Mapping[str, Any]) -> Any:
    per = results["spikes_per_neuron"]
    names = _population_names(results)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    width = 0.8 / max(len(per), 1)
    for i, (training, vals) in enumerate(per.items()):
        ax.bar(
            np.arange(len(vals)) + i * width,
            [_num(v) for v in vals],
            yerr=_errors(list(vals)),
            capsize=3,
            width=width,
            label=f"trained {training}",
            color=_COLORS.get(training, "black"),
        )
    ax.set_xticks(np.arange(len(names)) + width * (len(per) - 1) / 2, names)
    ax.set_ylabel("spikes per neuron per sample")
    ax.set_title("Activity per population (momentum inference, drain)" + _title_seeds(results, newline=True))
    ax.legend()
    return fig


def _draw_currents(plt: Any, results: Mapping[str, Any]) -> Any:
    counts = {t: c for t, c in results["currents_to_spike"].items() if c}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    maxc = max([max(c) for c in counts.values()] + [1])
    bins = [b - 0.5 for b in range(1, min(maxc, 30) + 2)]
    for training, c in counts.items():
        ax.hist(
            np.clip(c, 1, bins[-1] - 0.5),
            bins=bins,
            density=True,
            histtype="step",
            lw=2,
            label=f"trained {training}",
            color=_COLORS.get(training, "black"),
        )
    ax.set_xlabel("currents integrated before spiking (forward steps with input, per spike)")
    ax.set_ylabel("fraction of hidden spikes")
    ax.set_title("How reactive are the neurons? (momentum inference)")
    ax.legend()
    return fig


_DRAW: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "accuracy_vs_cost.png": _draw_table,
    "accuracy_vs_extra_steps.png": _draw_anytime,
    "training_curves.png": _draw_training,
    "f_sweep.png": _draw_f_sweep,
    "energy_time.png": _draw_energy,
    "spikes_per_neuron.png": _draw_spikes_per_neuron,
    "currents_to_spike.png": _draw_currents,
}


def _save(fig: Any, path: Path, caption: str) -> None:
    """Print ``caption`` under the figure and save it (a PNG, 120 dpi)."""
    width_in = fig.get_figwidth()
    # No line break inside "12.5 %" or "0.91 µs" (a no-break space; figures.md keeps plain spaces).
    unbroken = caption.replace(" %", "\u00a0%").replace(" µ", "\u00a0µ")
    lines = textwrap.wrap(unbroken, width=int(width_in * 15))
    height = (0.16 * len(lines) + 0.15) / fig.get_figheight()
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, va="bottom", ha="left", wrap=False)
    fig.tight_layout(rect=(0.0, min(height, 0.5), 1.0, 1.0))
    fig.savefig(path, dpi=120)


def draw_figures(results: Mapping[str, Any], out: str | Path) -> dict[str, str]:
    """Draw every figure that ``results`` has the data for, and write ``figures.md``.

    Parameters
    ----------
    results
        The contents of a ``results.json`` written by ``asyncsnn reproduce``.
    out
        The folder the PNGs and ``figures.md`` are written to (it must exist).

    Returns
    -------
    dict of str to str
        File name to caption of each figure drawn (in :data:`FIGURES` order); ``figures.md``
        lists the same.

    Raises
    ------
    ImportError
        matplotlib cannot be imported (nothing is written).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(out)
    texts = captions(results)
    drawn: dict[str, str] = {}
    for name, caption in texts.items():
        fig = _DRAW[name](plt, results)
        try:
            _save(fig, folder / name, caption)
        finally:
            plt.close(fig)
        drawn[name] = caption
    title = f"# Figures: {results.get('dataset', 'reproduce')}\n\n"
    body = "".join(f"## {name}\n\n![{name}]({name})\n\n{caption}\n\n" for name, caption in drawn.items())
    (folder / "figures.md").write_text(title + body)
    return drawn


def redraw(folder: str | Path) -> dict[str, str]:
    """Draw the figures of a results folder again from its ``results.json`` (no training).

    Parameters
    ----------
    folder
        A folder written by ``asyncsnn reproduce``.

    Returns
    -------
    dict of str to str
        File name to caption of each figure drawn.

    Raises
    ------
    InputError
        ``results.json`` is not a JSON object.
    OSError
        ``results.json`` cannot be read.
    ImportError
        matplotlib cannot be imported.
    """
    path = Path(folder) / "results.json"
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise invalid(InputError, "results.json", str(path), f"is not JSON ({exc})") from None
    if not isinstance(results, dict):
        raise invalid(InputError, "results.json", str(path), "must hold a JSON object")
    return draw_figures(results, folder)


def _config_label(summary: Mapping[str, Any]) -> str:
    opts = summary["options"]
    if opts["scheduler"] == "layered":
        return "layered"
    return f"{opts['scheduler']}\nF={opts['forward_group_size']}"


def evaluate_caption(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The caption of :func:`draw_evaluate`, computed from the summaries alone.

    Each asynchronous configuration is compared with the layered one of the same call
    (the first ``layered`` summary, if any): accuracy, spikes per sample, and the
    layered/asynchronous ratio of synops to the stable decision (above 1x: sooner).
    """
    layered = next((s for s in summaries if s["options"]["scheduler"] == "layered"), None)
    parts = []
    for s in summaries:
        if s is layered:
            continue
        text = f"{_config_label(s).replace(chr(10), ' ')}: accuracy {_acc(s['accuracy'])}"
        if layered is not None:
            text += f" vs {_acc(layered['accuracy'])} layered"
            text += ", " + _fewer(s["mean_spikes_total"], layered["mean_spikes_total"], "spikes per sample")
        ratio = s["decision_latency"]["layered_over_async"].get("synops_to_decision")
        if ratio is not None:
            text += f", layered/async synops to the stable decision {ratio:.2f}x"
        parts.append(text)
    head = "Accuracy, spikes, synops to the stable decision and energy per configuration"
    return head + (": " + "; ".join(parts) + "." if parts else ".")


def draw_evaluate(summaries: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "") -> str:
    """Draw ``asyncsnn evaluate``'s configurations side by side, save a PNG; return its caption.

    One bar per configuration (scheduler x F; layered in grey) in four panels: accuracy,
    spikes per sample, synaptic operations to the stable decision (R7.9), and energy per
    inference on the first hardware profile of the summaries (steps to the stable
    decision when there is none).

    Parameters
    ----------
    summaries
        The ``--json`` summaries of the configurations (``asyncsnn evaluate``).
    path
        The PNG file to write.
    title
        The figure's title.

    Raises
    ------
    ParameterError
        No summary.
    """
    from asyncsnn.exceptions import ParameterError

    if not summaries:
        raise invalid(ParameterError, "summaries", [], "give at least one configuration")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean(s: Mapping[str, Any], key: str) -> float:
        value = s["decision_latency"]["mean"].get(key)
        return float("nan") if value is None else float(value)

    profile = next(iter(summaries[0].get("cost") or {}), None)
    panels: list[tuple[str, Callable[[Mapping[str, Any]], float]]] = [
        ("accuracy (%)", lambda s: 100.0 * _num(s["accuracy"])),
        ("spikes per sample", lambda s: float(s["mean_spikes_total"])),
        ("synops to the stable decision", lambda s: mean(s, "synops_to_decision")),
    ]
    if profile is not None:
        panels.append(
            (
                f"{profile}: energy per inference (µJ)",
                lambda s: 1e6 * _num(s["cost"][profile]["mean_energy_per_inference_j"]),
            )
        )
    else:
        panels.append(("forward steps to the stable decision", lambda s: mean(s, "steps_to_decision")))
    labels = [_config_label(s) for s in summaries]
    colours = ["0.5" if s["options"]["scheduler"] == "layered" else "C0" for s in summaries]
    fig, axes = plt.subplots(2, 2, figsize=(max(7.0, 1.1 * len(summaries) + 4), 6.5))
    for ax, (name, value) in zip(axes.flat, panels, strict=True):
        values = [value(s) for s in summaries]
        bars = ax.bar(range(len(values)), values, color=colours)
        texts = [f"{v:.0f}" if abs(v) >= 1000 else f"{v:#.3g}".rstrip(".") for v in values]
        ax.bar_label(bars, labels=texts, fontsize=7)
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    caption = evaluate_caption(summaries)
    try:
        _save(fig, Path(path), caption)
    finally:
        plt.close(fig)
    return caption

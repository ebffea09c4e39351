"""Statistics over seeds for ``asyncsnn reproduce --seeds``, and how they are written.

A multi-seed run of ``asyncsnn reproduce`` writes, in its aggregate ``results.json``,
every number that a single run writes as a plain number as a *stat*: a mapping
``{"mean", "std", "min", "max", "n", "values"}`` (:func:`stat`; ``std`` with ddof = 1,
``values`` one per seed in the order of the run's ``seeds``, ``None`` where a seed has no
value). The helpers here read either form, so that the captions, the findings and the
table are computed by one code path for one seed and for several:

- :func:`mean`, :func:`std`, :func:`values` read a number or a stat;
- :func:`fmt` writes ``"85.3 %"`` for a number and ``"85.3 ± 1.2 %"`` for a stat;
- :func:`paired` applies a function seed by seed (a difference, a ratio) and
  :func:`summary` writes its result, :func:`on_seeds` on how many seeds its sign holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["STAT_KEYS", "fmt", "held", "is_stat", "mean", "on_seeds", "paired", "stat", "std", "summary", "values"]

#: The keys of a stat, in the order they are written.
STAT_KEYS = ("mean", "std", "min", "max", "n", "values")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def stat(per_seed: Sequence[float | None]) -> dict[str, Any]:
    """The mean, standard deviation (ddof = 1), min and max of one number over seeds.

    Parameters
    ----------
    per_seed
        One value per seed; ``None`` or NaN where the seed has none (a timestep without
        an output spike, a profile without a time model).

    Returns
    -------
    dict
        ``mean``, ``std``, ``min``, ``max`` over the seeds that have a value (``None``
        when none has; ``std`` also when fewer than two have), ``n`` (how many have one)
        and ``values`` (every seed's value, ``None`` where it has none).

    Examples
    --------
    >>> from asyncsnn._spread import stat
    >>> s = stat([0.5, 0.75, None])
    >>> s["mean"], round(s["std"], 4), s["min"], s["max"], s["n"], s["values"]
    (0.625, 0.1768, 0.5, 0.75, 2, [0.5, 0.75, None])
    """
    vals: list[float | None] = [float(v) if v is not None and _present(v) else None for v in per_seed]
    have = np.array([v for v in vals if v is not None], dtype=float)
    n = int(have.size)
    return {
        "mean": float(have.mean()) if n else None,
        "std": float(have.std(ddof=1)) if n >= 2 else None,
        "min": float(have.min()) if n else None,
        "max": float(have.max()) if n else None,
        "n": n,
        "values": vals,
    }


def is_stat(value: Any) -> bool:
    """Whether ``value`` is a stat (:func:`stat`) rather than a number."""
    return isinstance(value, Mapping) and "mean" in value and "values" in value


def mean(value: Any) -> float:
    """A number, or the mean of a stat, as a float (NaN for ``None``)."""
    if is_stat(value):
        value = value["mean"]
    return float("nan") if value is None else float(value)


def std(value: Any) -> float:
    """The standard deviation of a stat (NaN for a number or when undefined)."""
    if is_stat(value) and value["std"] is not None:
        return float(value["std"])
    return float("nan")


def values(value: Any) -> np.ndarray:
    """The per-seed values of a stat (or of an array of them), or a number as one value (NaN for ``None``)."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=float).reshape(-1)
    if is_stat(value):
        return np.array([float("nan") if v is None else float(v) for v in value["values"]], dtype=float)
    return np.array([mean(value)], dtype=float)


def _spec_unsigned(spec: str) -> str:
    return spec.replace("+", "")


def _std_text(mean_text: str, value: float, spec: str) -> str:
    """The standard deviation with the decimals of the mean as written (``0.162 ± 0.005``)."""
    if spec.endswith("g") and "e" not in mean_text.lower():
        digits = mean_text.split(".")[1] if "." in mean_text else ""
        decimals = len(digits.rstrip(" %x"))
        return f"{value:.{decimals}f}"
    return format(value, _spec_unsigned(spec))


def fmt(value: Any, spec: str, *, scale: float = 1.0, unit: str = "", missing: str = "n/a") -> str:
    """``value`` formatted with ``spec``; a stat as ``mean ± std`` (std with the same digits).

    Examples
    --------
    >>> from asyncsnn._spread import fmt, stat
    >>> fmt(0.853, ".1f", scale=100, unit=" %"), fmt(stat([0.84, 0.86]), ".1f", scale=100, unit=" %")
    ('85.3 %', '85.0 ± 1.4 %')
    >>> fmt(None, ".2f"), fmt(stat([3.0]), ".2f"), fmt(stat([0.16, 0.165]), ".3g")
    ('n/a', '3.00', '0.163 ± 0.004')
    >>> fmt(stat([41.9, 42.1]), "#.3g"), fmt(stat([0.99, 1.01]), "#.3g"), fmt(stat([419.0, 421.0]), "#.3g")
    ('42.0 ± 0.1', '1.00 ± 0.01', '420 ± 1')
    """
    m = mean(value)
    if math.isnan(m):
        return missing
    text = format(m * scale, spec)
    if "#" in spec:  # "#.3g" keeps significant zeros (42.0, 1.00) but writes "420." for 420
        text = text.rstrip(".")
    s = std(value)
    if not math.isnan(s):
        text += " ± " + _std_text(text, s * scale, spec)
    return text + unit


def paired(fn: Callable[..., Any], *args: Any) -> np.ndarray:
    """``fn`` applied seed by seed to the per-seed values of ``args`` (numbers broadcast).

    Returns
    -------
    numpy.ndarray
        One value per seed (one value when every argument is a number).
    """
    arrays = [values(a) for a in args]
    n = max(len(a) for a in arrays)
    arrays = [np.broadcast_to(a, (n,)) if len(a) == 1 else a for a in arrays]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(fn(*arrays), dtype=float)


def summary(per_seed: np.ndarray, spec: str, *, absolute: bool = False, unit: str = "") -> str:
    """One value as ``format(v, spec)``, several as ``mean ± std`` (ddof = 1, NaNs left out).

    ``absolute`` writes the magnitude of the mean (the caller says the direction).
    """
    have = per_seed[~np.isnan(per_seed)]
    if not have.size:
        return "n/a"
    m = float(have.mean())
    text = format(abs(m) if absolute else m, _spec_unsigned(spec) if absolute else spec)
    if per_seed.size > 1 and have.size >= 2:
        text += " ± " + _std_text(text, float(have.std(ddof=1)), spec)
    return text + unit


def on_seeds(per_seed: np.ndarray, up: str, down: str) -> str:
    """``"fewer on 2 of 3 seeds"``: on how many seeds the sign of the mean holds ("" for one seed).

    ``up`` names a positive mean, ``down`` a negative one; a seed counts when its value
    has the mean's sign (zero and NaN never count).

    Examples
    --------
    >>> import numpy as np
    >>> from asyncsnn._spread import on_seeds
    >>> on_seeds(np.array([-12.0, -3.0, 1.0]), "more", "fewer"), on_seeds(np.array([-12.0]), "more", "fewer")
    ('fewer on 2 of 3 seeds', '')
    """
    if per_seed.size <= 1:
        return ""
    have = per_seed[~np.isnan(per_seed)]
    m = float(have.mean()) if have.size else 0.0
    if m < 0:
        word, count = down, int(np.sum(per_seed < 0))
    else:
        word, count = up, int(np.sum(per_seed > 0))
    return f"{word} on {count} of {per_seed.size} seeds"


def held(per_seed: np.ndarray) -> str:
    """``" on 2 of 3 seeds"``: :func:`on_seeds` without the word, after the text that says it."""
    text = on_seeds(per_seed, "", "")
    return " " + text.strip() if text else ""

"""Event streams: the structured event dtype, and exact binning into engine inputs.

An event stream is a structured NumPy array with fields ``x``, ``y`` (absent for 1-D
sensors such as SHD's 700 channels), ``p`` (polarity: 1 = ON, brightness increase; 0 =
OFF) and ``t`` (timestamp, integer microseconds), the layout that ``tonic`` uses.
``sensor_size`` follows tonic's convention ``(width, height, polarities)``; frames follow
the engine's channels-first convention ``[T, polarities, height, width]`` (for a sensor
without ``y``: ``[T, polarities, width]``).

Unlike ``tonic.transforms.ToFrame``, :func:`bin_events` never drops an event silently:
every event inside the binned time range is counted, so ``frames.sum()`` equals the
number of events binned.

Examples
--------
>>> import numpy as np
>>> ev = np.array([(0, 0, 1, 0), (1, 0, 0, 15_000), (1, 0, 0, 15_001)], dtype=EVENT_DTYPE)
>>> frames = bin_events(ev, sensor_size=(2, 1, 2), time_window_us=10_000)
>>> frames.shape, float(frames.sum()), frames[1, 0, 0].tolist()
((2, 2, 1, 2), 3.0, [0.0, 2.0])
>>> events_to_sparse(ev, sensor_size=(2, 1, 2), time_window_us=10_000).tolist()
[[0.0, 2.0, 1.0], [1.0, 1.0, 2.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np

from asyncsnn.exceptions import InputError, ParameterError, invalid

__all__ = ["EVENT_DTYPE", "bin_events", "events_to_sparse", "make_events", "pad_frames"]

#: The structured dtype of emulated events: x, y, polarity, timestamp (µs).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])

TStart = Union[float, Literal["first"]]


def make_events(x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` event array from four equally long columns.

    Examples
    --------
    >>> make_events([1], [2], [1], [500]).tolist()
    [(1, 2, 1, 500)]
    """
    cols = [np.asarray(c).reshape(-1) for c in (x, y, p, t)]
    if len({len(c) for c in cols}) != 1:
        raise invalid(InputError, "events", [len(c) for c in cols], "x, y, p and t must have the same length")
    out = np.empty(len(cols[0]), dtype=EVENT_DTYPE)
    for name, col in zip("xypt", cols, strict=False):
        out[name] = col
    return out


def _check_sensor(sensor_size: Sequence[int]) -> tuple[int, int, int]:
    if len(sensor_size) != 3 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in sensor_size):
        raise invalid(ParameterError, "sensor_size", sensor_size, "must be 3 ints >= 1: (width, height, polarities)")
    w, h, p = (int(s) for s in sensor_size)
    return w, h, p


def _flat_index(events: np.ndarray, sensor_size: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Channels-first flat input index ``p*H*W + y*W + x`` of each event, and the frame shape."""
    names = events.dtype.names or ()
    if not {"x", "p", "t"} <= set(names):
        raise invalid(InputError, "events", f"fields {names}", "need a structured array with fields x, p, t (and y)")
    w, h, n_p = _check_sensor(sensor_size)
    x = events["x"].astype(np.int64)
    # a single-polarity sensor (SHD) counts every event in channel 0, as tonic's ToFrame does
    p = events["p"].astype(np.int64) if n_p > 1 else np.zeros_like(x)
    has_y = "y" in names
    y = events["y"].astype(np.int64) if has_y else np.zeros_like(x)
    for field, v, n in (("x", x, w), ("y", y, h), ("p", p, n_p)):
        if v.size and (v.min() < 0 or v.max() >= n):
            raise invalid(InputError, f"events[{field!r}]", f"range [{v.min()}, {v.max()}]", f"must be in [0, {n})")
    shape = (n_p, h, w) if has_y else (n_p, w)
    return (p * h + y) * w + x, shape


def _times(events: np.ndarray) -> np.ndarray:
    t = events["t"].astype(np.float64)
    if t.size and not np.all(np.isfinite(t)):
        raise invalid(InputError, "events['t']", "non-finite", "timestamps must be finite")
    return t


def _frame_of(
    t: np.ndarray,
    *,
    time_window_us: float | None,
    n_time_bins: int | None,
    t_start: TStart,
    n_frames: int | None,
) -> tuple[np.ndarray, int]:
    """Frame index of each timestamp (-1 = outside the binned range) and the number of frames."""
    if (time_window_us is None) == (n_time_bins is None):
        raise invalid(
            ParameterError, "time_window_us", time_window_us, "give exactly one of time_window_us, n_time_bins"
        )
    if t_start == "first":
        start = float(t.min()) if t.size else 0.0
    elif isinstance(t_start, (int, float)) and not isinstance(t_start, bool) and math.isfinite(t_start):
        start = float(t_start)
    else:
        raise invalid(ParameterError, "t_start", t_start, 'must be a finite number of µs or "first"')
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1):
        raise invalid(ParameterError, "n_frames", n_frames, "must be an int >= 1 or None")
    rel = t - start
    if n_time_bins is not None:
        if isinstance(n_time_bins, bool) or not isinstance(n_time_bins, int) or n_time_bins < 1:
            raise invalid(ParameterError, "n_time_bins", n_time_bins, "must be an int >= 1")
        span = float(rel.max()) if rel.size else 0.0
        if span > 0:
            k = np.minimum(np.floor(rel * (n_time_bins / span)), n_time_bins - 1)
        else:
            k = np.zeros_like(rel)
        n = n_time_bins if n_frames is None else n_frames
    else:
        w = float(time_window_us)  # type: ignore[arg-type]
        if not (math.isfinite(w) and w > 0):
            raise invalid(ParameterError, "time_window_us", time_window_us, "must be a finite number > 0")
        k = np.floor(rel / w)
        if n_frames is None:
            n = int(k.max()) + 1 if k.size and k.max() >= 0 else 1
        else:
            n = n_frames
    k = np.where((rel >= 0) & (k < n), k, -1).astype(np.int64)
    return k, n


def bin_events(
    events: np.ndarray,
    sensor_size: Sequence[int] = (34, 34, 2),
    *,
    time_window_us: float | None = 10_000,
    n_time_bins: int | None = None,
    t_start: TStart = 0,
    n_frames: int | None = None,
) -> np.ndarray:
    """Count events into frames (exact: no event inside the binned range is lost).

    Parameters
    ----------
    events
        Structured array with fields ``x``, ``p``, ``t`` (µs) and, for 2-D sensors, ``y``.
    sensor_size
        ``(width, height, polarities)`` as in tonic (``(700, 1, 1)`` for SHD: with one
        polarity, ``p`` is ignored).
    time_window_us
        Frame length in µs: frame ``k`` holds ``t_start + k*w <= t < t_start + (k+1)*w``.
        Set it to ``None`` to use ``n_time_bins``.
    n_time_bins
        Alternatively, split ``[t_start, last event]`` into this many equal frames (the last
        event falls into the last frame).
    t_start
        Start of frame 0 in µs (default 0, the stimulus onset), or ``"first"`` for the first
        event's timestamp (tonic's choice). Earlier events are not counted.
    n_frames
        Number of frames ``T``; by default just enough for the last event. When given,
        events after frame ``T - 1`` are not counted.

    Returns
    -------
    numpy.ndarray
        float32 counts ``[T, polarities, height, width]`` (``[T, polarities, width]`` if the
        events have no ``y`` field).
    """
    flat, shape = _flat_index(events, sensor_size)
    k, n = _frame_of(
        _times(events), time_window_us=time_window_us, n_time_bins=n_time_bins, t_start=t_start, n_frames=n_frames
    )
    size = math.prod(shape)
    keep = k >= 0
    counts = np.bincount(k[keep] * size + flat[keep], minlength=n * size)
    return counts.astype(np.float32).reshape(n, *shape)


def events_to_sparse(
    events: np.ndarray,
    sensor_size: Sequence[int] = (34, 34, 2),
    *,
    time_window_us: float | None = 10_000,
    n_time_bins: int | None = None,
    t_start: TStart = 0,
    n_frames: int | None = None,
) -> np.ndarray:
    """The same binning as :func:`bin_events`, in the engine's sparse input format.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 3]`` rows ``(frame, flat input index, count)``, sorted by frame then
        index, with the channels-first flat index ``p*H*W + y*W + x``. Pass a list of these
        (one per sample) as ``inputs`` to ``asyncsnn.infer``.
    """
    flat, shape = _flat_index(events, sensor_size)
    k, _ = _frame_of(
        _times(events), time_window_us=time_window_us, n_time_bins=n_time_bins, t_start=t_start, n_frames=n_frames
    )
    keep = k >= 0
    size = math.prod(shape)
    keys, counts = np.unique(k[keep] * size + flat[keep], return_counts=True)
    return np.stack([keys // size, keys % size, counts], axis=1).astype(np.float64).reshape(-1, 3)


def pad_frames(frames: Sequence[np.ndarray], n_frames: int | None = None, truncate: bool = False) -> np.ndarray:
    """Stack per-sample frames ``[T_i, *shape]`` into ``[N, T, *shape]``, padding with empty frames at the end.

    Parameters
    ----------
    frames
        One float array per sample, all with the same ``shape`` after the time axis.
    n_frames
        Common ``T``; by default the longest sample's (tonic's ``PadTensors`` rule).
    truncate
        Allow ``n_frames`` shorter than a sample (its last frames are cut off); without it
        that raises :class:`~asyncsnn.exceptions.ParameterError`, since events would be lost.

    Examples
    --------
    >>> import numpy as np
    >>> pad_frames([np.ones((1, 2)), np.ones((3, 2))]).shape
    (2, 3, 2)
    """
    if len(frames) == 0:
        raise invalid(InputError, "frames", [], "need at least one sample")
    shapes = {tuple(f.shape[1:]) for f in frames}
    if len(shapes) != 1:
        raise invalid(InputError, "frames", sorted(shapes), "samples must share the frame shape")
    longest = max(len(f) for f in frames)
    if n_frames is None:
        n = max(longest, 1)
    elif isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise invalid(ParameterError, "n_frames", n_frames, "must be an int >= 1 or None")
    elif n_frames < longest and not truncate:
        raise invalid(
            ParameterError, "n_frames", n_frames, f"a sample has {longest} frames (pass truncate=True to cut)"
        )
    else:
        n = n_frames
    out = np.zeros((len(frames), n, *shapes.pop()), dtype=np.float32)
    for i, f in enumerate(frames):
        m = min(len(f), n)
        out[i, :m] = f[:m]
    return out

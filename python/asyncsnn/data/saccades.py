"""Event-camera emulation of static images: N-MNIST-like saccades seen by a DVS pixel model.

N-MNIST (Orchard et al. 2015) was recorded by an ATIS event camera on a pan-tilt unit
that made three ~105 ms saccades in front of a monitor showing each MNIST digit. This
module emulates that recording for any grayscale images (Fashion-MNIST, the 8x8 digits
upsampled, ...):

1. The image is resized (bilinear) to ``image_size`` x ``image_size`` (28) and placed on
   a ``sensor_size`` x ``sensor_size`` (34) sensor.
2. It moves along N-MNIST's triangular path (the inverse of tonic's ``stabilize``): by
   (+3.5, +7) px in the first saccade, (+3.5, -7) in the second, (-7, 0) in the third,
   at constant speed. Each pixel sees the bilinearly interpolated intensity ``I`` in [0, 1].
3. Every pixel runs the standard DVS model: it keeps a reference level, the log intensity
   ``log(I + eps)`` at its last event, and emits an ON event (``p = 1``) each time the log
   intensity rises by its contrast threshold above it, an OFF event (``p = 0``) each time it
   falls by it below it; the reference moves by one threshold per event. Thresholds vary
   from pixel to pixel (a fixed pattern, Gaussian with relative spread
   ``threshold_sigma``), as on a real sensor. A change of ``threshold * (1 - 1e-4)`` already
   counts, so that a pixel which returns exactly to an earlier intensity (black background)
   fires consistently rather than by float rounding: after the third saccade every pixel is
   back at its starting level, with as many ON as OFF events.
4. Time is stepped at most every ``dt_us``, plus at every time when the image crosses a
   pixel boundary or a saccade turns, so that each pixel's intensity is almost linear
   inside a step. The number of events is that of continuous time (checked against a
   50 µs simulation), and the crossing times are interpolated in intensity inside the step
   (µs timestamps; with the default 2 ms step, 10 ms frames are identical to those of a
   0.05 ms step and 1 ms frames differ by about 1.5% of the events).
5. Optional background noise: Poisson events at ``noise_rate_hz`` per pixel, random
   polarity.

There is no event at ``t = 0`` (the pixels are adapted to the still image) and, without
noise, no event at a pixel whose intensity never changes.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((1, 28, 28), dtype=np.uint8)
>>> img[0, 8:20, 8:20] = 255
>>> ev = emulate_saccades(img, seed=0)[0]
>>> ev.dtype.names, bool(ev["t"].min() > 0), bool(ev["t"].max() <= 315_000)
(('x', 'y', 'p', 't'), True, True)
>>> frames = saccade_frames([ev], first_saccade_only=True)
>>> frames.shape, int(frames.sum()) == int((ev["t"] < 100_000).sum())
((1, 10, 2, 34, 34), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from asyncsnn.data.events import EVENT_DTYPE, bin_events, pad_frames
from asyncsnn.exceptions import InputError, ParameterError, invalid

__all__ = [
    "FIRST_SACCADE_US",
    "NMNIST_SENSOR_SIZE",
    "SACCADE_PATH",
    "emulate_saccades",
    "resize_images",
    "saccade_frames",
    "saccade_offsets",
]

#: tonic's ``first_saccade_only`` keeps the events with ``t < 100_000`` µs.
FIRST_SACCADE_US = 100_000
#: N-MNIST's sensor: 34 x 34 pixels, 2 polarities (tonic order: width, height, polarities).
NMNIST_SENSOR_SIZE = (34, 34, 2)
#: Image offset (x, y) in pixels at the start of each saccade and at the end of the last.
SACCADE_PATH = ((0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0))


def _positive(value: float, field: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise invalid(ParameterError, field, value, "must be a finite number " + (">= 0" if allow_zero else "> 0"))
    return float(value)


def _count(value: int, field: str, lo: int, hi: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < lo
        or (hi is not None and value > hi)
    ):
        raise invalid(ParameterError, field, value, f"must be an int in [{lo}, {hi if hi is not None else 'inf'}]")
    return int(value)


def saccade_offsets(
    t_us: np.ndarray | float, saccade_us: float = 105_000, amplitude: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Image offset ``(dx, dy)`` in pixels at time ``t_us`` along :data:`SACCADE_PATH`.

    Examples
    --------
    >>> dx, dy = saccade_offsets(np.array([0, 52_500, 105_000, 315_000]))
    >>> dx.tolist(), dy.tolist()
    ([0.0, 1.75, 3.5, 0.0], [0.0, 3.5, 7.0, 0.0])
    """
    path = np.asarray(SACCADE_PATH) * amplitude
    knots = np.arange(len(path)) * saccade_us
    t = np.asarray(t_us, dtype=np.float64)
    return np.interp(t, knots, path[:, 0]), np.interp(t, knots, path[:, 1])


def _intensity_images(images: np.ndarray, intensity_scale: float | None) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.shape[1] < 2 or arr.shape[2] < 2:
        raise invalid(
            InputError, "images", f"shape {arr.shape}", "need grayscale images [n, height, width], at least 2x2"
        )
    if arr.dtype.kind not in "fiub":
        raise invalid(InputError, "images", f"dtype {arr.dtype}", "must be numeric")
    if intensity_scale is None:
        intensity_scale = 255.0 if arr.dtype.kind in "iub" else 1.0
    scale = _positive(intensity_scale, "intensity_scale")
    x = np.asarray(arr.astype(np.float32) / np.float32(scale), dtype=np.float32)
    if x.size and (not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1):
        raise invalid(
            InputError, "images", f"range [{arr.min()}, {arr.max()}]", f"intensities / {scale:g} must lie in [0, 1]"
        )
    return x


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear resampling matrix ``[n_out, n_in]`` (pixel centres aligned, edges clamped)."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float images ``[n, h, w]`` to ``[n, size, size]`` (values stay in range).

    Examples
    --------
    >>> resize_images(np.ones((2, 8, 8), dtype=np.float32), 28).shape
    (2, 28, 28)
    """
    _, h, w = images.shape
    if (h, w) == (size, size):
        return images.astype(np.float32, copy=False)
    my = _interp_matrix(size, h)
    mx = _interp_matrix(size, w)
    out = np.einsum("yh,nhw,xw->nyx", my, images.astype(np.float64), mx, optimize=True)
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def emulate_saccades(
    images: np.ndarray,
    *,
    seed: int = 0,
    n_saccades: int = 3,
    saccade_us: float = 105_000,
    amplitude: float = 1.0,
    sensor_size: int = 34,
    image_size: int = 28,
    threshold: float = 0.25,
    threshold_sigma: float = 0.03,
    log_eps: float = 0.1,
    dt_us: float = 2_000,
    noise_rate_hz: float = 0.0,
    intensity_scale: float | None = None,
    chunk_size: int = 64,
) -> list[np.ndarray]:
    """Emulate an N-MNIST-style event-camera recording of each image.

    Parameters
    ----------
    images
        Grayscale images ``[n, height, width]``: uint8 (0..255) or floats in [0, 1]; see
        ``intensity_scale``. Resized to ``image_size`` if needed.
    seed
        Seed of the sensor's fixed-pattern threshold map and of the noise (same seed, same
        events; the result does not depend on ``chunk_size``).
    n_saccades
        1, 2 or 3 saccades (N-MNIST: 3).
    saccade_us
        Duration of one saccade in µs (N-MNIST: about 105 ms).
    amplitude
        Scale of the saccade path (1.0: N-MNIST's 3.5 x 7 px triangle).
    sensor_size
        Side of the square sensor in pixels (N-MNIST: 34).
    image_size
        Side of the image on the sensor in pixels (MNIST: 28).
    threshold
        Mean contrast threshold, in log-intensity units (real DVS: about 0.1 to 0.4).
    threshold_sigma
        Relative pixel-to-pixel spread of the threshold (clipped to at least 25% of it).
    log_eps
        Offset in ``log(I + log_eps)``, the dark level of the display; a full black-to-white
        change then gives about ``log(1/log_eps + 1) / threshold`` events.
    dt_us
        Longest simulation step in µs (see step 4 above).
    noise_rate_hz
        Background noise events per pixel per second (0: none).
    intensity_scale
        Value of full intensity; by default 255 for integer images, 1 for float images.
    chunk_size
        Images simulated together (memory: about ``chunk_size * 100 KB`` plus the events).

    Returns
    -------
    list of numpy.ndarray
        One structured array per image, dtype :data:`~asyncsnn.data.events.EVENT_DTYPE`
        (``x``, ``y`` in ``[0, sensor_size)``, ``p`` 1 = ON / 0 = OFF, ``t`` in µs in
        ``(0, n_saccades * saccade_us]``), sorted by time. Bin them with
        :func:`saccade_frames` or write them with
        :func:`asyncsnn.data.tonic_datasets.export_nmnist`.
    """
    x = _intensity_images(images, intensity_scale)
    seed = _count(seed, "seed", 0, 2**63 - 1)
    n_sacc = _count(n_saccades, "n_saccades", 1, 3)
    sac = _positive(saccade_us, "saccade_us")
    amp = _positive(amplitude, "amplitude", allow_zero=True)
    side = _count(sensor_size, "sensor_size", 2, 4096)
    img_side = _count(image_size, "image_size", 2, 4096)
    thr_mean = _positive(threshold, "threshold")
    sigma = _positive(threshold_sigma, "threshold_sigma", allow_zero=True)
    eps = _positive(log_eps, "log_eps")
    dt = _positive(dt_us, "dt_us")
    noise = _positive(noise_rate_hz, "noise_rate_hz", allow_zero=True)
    chunk = _count(chunk_size, "chunk_size", 1)

    n = x.shape[0]
    x = resize_images(x, img_side)
    duration = n_sacc * sac
    knots = np.arange(n_sacc + 1) * sac
    kx, ky = saccade_offsets(knots, sac, amp)
    # centre the swept area on the sensor
    base_x = (side - img_side - (kx.max() - kx.min())) / 2 - kx.min()
    base_y = (side - img_side - (ky.max() - ky.min())) / 2 - ky.min()
    # The sensor pixel (row r, col c) sees image coordinate (r - oy, c - ox); in a zero-padded image
    # with margin m that is (r + m - oy): an integer part and a fraction, the same for every pixel.
    margin = side + 2 + math.ceil(amp * 7)
    times = _time_grid(knots, margin - (base_x + kx), margin - (base_y + ky), dt)
    dx, dy = saccade_offsets(times, sac, amp)
    pos_x = margin - (base_x + dx)
    pos_y = margin - (base_y + dy)
    ix = np.floor(pos_x + 1e-9).astype(np.int64)
    iy = np.floor(pos_y + 1e-9).astype(np.int64)
    fx = np.clip(pos_x - ix, 0, 1).astype(np.float32)
    fy = np.clip(pos_y - iy, 0, 1).astype(np.float32)

    rng = np.random.default_rng([seed, 0])
    thr = thr_mean * np.maximum(1.0 + sigma * rng.standard_normal(side * side), 0.25)
    geometry = _Geometry(side, margin, ix, iy, fx, fy, times)

    out: list[np.ndarray] = []
    for c0 in range(0, n, chunk):
        imgs = x[c0 : c0 + chunk]
        b = len(imgs)
        pad = np.zeros((b, img_side + 2 * margin, img_side + 2 * margin), dtype=np.float32)
        pad[:, margin : margin + img_side, margin : margin + img_side] = imgs
        flat, pol, ts = _simulate_chunk(pad, geometry, thr.astype(np.float32), np.float32(eps))
        npix = side * side
        sample = flat // npix  # sorted
        bounds = np.concatenate([[0], np.cumsum(np.bincount(sample, minlength=b))])
        for i in range(b):
            sel = slice(bounds[i], bounds[i + 1])
            ev = np.empty(bounds[i + 1] - bounds[i], dtype=EVENT_DTYPE)
            ev["x"] = flat[sel] % side
            ev["y"] = (flat[sel] // side) % side
            ev["p"] = pol[sel]
            ev["t"] = ts[sel]
            if noise > 0:
                ev = np.concatenate([ev, _noise_events(seed, c0 + i, noise, side, duration)])
                ev = ev[np.argsort(ev["t"], kind="stable")]
            out.append(ev)
    return out


def _time_grid(knots: np.ndarray, pos_x: np.ndarray, pos_y: np.ndarray, dt: float) -> np.ndarray:
    """Simulation times: every ``dt`` µs, the saccade turns, and every pixel-boundary crossing of the image.

    Between two such times each pixel's intensity is smooth and almost linear in time.
    """
    extra = [knots]
    for pos in (pos_x, pos_y):
        for a, b, t0, t1 in zip(pos[:-1], pos[1:], knots[:-1], knots[1:], strict=True):
            lo, hi = sorted((a, b))
            ints = np.arange(math.floor(lo) + 1, math.ceil(hi))
            if ints.size and b != a:
                extra.append(t0 + (ints - a) / (b - a) * (t1 - t0))
    uniform = np.arange(0, knots[-1], dt)
    grid = np.unique(np.round(np.concatenate([uniform, *extra]), 6))
    return np.asarray(grid[(grid >= 0) & (grid <= knots[-1])], dtype=np.float64)


#: Relative tolerance of the threshold test: a change of ``threshold * (1 - _TOL)`` fires. Pixels often
#: return exactly to an earlier intensity (black background), where rounding would otherwise decide.
_TOL = 1e-4


class _Geometry(NamedTuple):
    """Where the sensor looks at each simulation step (integer + fractional offsets in the padded image)."""

    side: int
    margin: int
    ix: np.ndarray
    iy: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    times: np.ndarray


def _simulate_chunk(
    pad: np.ndarray, geo: _Geometry, thr: np.ndarray, eps: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the DVS pixel model on a chunk of zero-padded images ``[b, H, W]``.

    Returns the flat (sample * side**2 + pixel) index, the polarity and the time in µs of
    every event, sorted by sample, then time. The thresholds are tested in the linear-intensity domain
    (``I >= exp(ref + thr) - eps`` for ON, ``I <= exp(ref - thr) - eps`` for OFF), so that
    logarithms are only taken at the few pixels that fire.
    """
    b = pad.shape[0]
    side = geo.side
    thr_all = np.tile(thr, b)

    def intensity(k: int) -> np.ndarray:
        rows = pad[:, geo.iy[k] : geo.iy[k] + side + 1, geo.ix[k] : geo.ix[k] + side + 1]
        a = rows[:, :, 1:] - rows[:, :, :-1]
        a *= geo.fx[k]
        a += rows[:, :, :-1]
        v = a[:, 1:] - a[:, :-1]
        v *= geo.fy[k]
        v += a[:, :-1]
        return np.asarray(v.reshape(-1), dtype=np.float32)

    prev = intensity(0)
    ref = np.log(prev + eps)
    # candidates are tested slightly inside the thresholds; the log-domain count below decides
    near = thr_all * np.float32(1 - 4 * _TOL)
    hi = np.exp(ref + near) - eps
    lo = np.exp(ref - near) - eps
    # per firing pixel and step: where, how many crossings, from which level, between which intensities
    rec: dict[str, list[np.ndarray]] = {"idx": [], "cnt": [], "r0": [], "i0": [], "i1": [], "step": []}
    for k in range(1, len(geo.times)):
        cur = intensity(k)
        idx = np.flatnonzero((cur >= hi) | (cur <= lo))
        if idx.size:
            level = np.log(cur[idx] + eps)
            r0 = ref[idx]
            th = thr_all[idx]
            q = (level - r0) / th
            # signed number of crossings; the tolerance makes an exact return to an earlier level fire
            cnt = np.trunc(q + np.copysign(np.float32(_TOL), q))
            new_ref = r0 + cnt * th
            ref[idx] = new_ref
            hi[idx] = np.exp(new_ref + near[idx]) - eps
            lo[idx] = np.exp(new_ref - near[idx]) - eps
            for key, val in (("idx", idx), ("cnt", cnt), ("r0", r0), ("i0", prev[idx]), ("i1", cur[idx])):
                rec[key].append(val)
            rec["step"].append(np.full(idx.size, k, dtype=np.int32))
        prev = cur
    if not rec["idx"]:
        return np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64)
    idx, cnt, r0, i0, i1, step = (np.concatenate(rec[key]) for key in ("idx", "cnt", "r0", "i0", "i1", "step"))
    n_abs = np.abs(cnt).astype(np.int64)
    rep = np.repeat(np.arange(idx.size), n_abs)
    j = (np.arange(rep.size) - np.repeat(np.cumsum(n_abs) - n_abs, n_abs) + 1).astype(np.float32)
    sgn = np.sign(cnt[rep])
    th = thr_all[idx[rep]]
    crossing = (r0[rep] + sgn * j * th).astype(np.float64)
    # intensity is (almost) linear in time inside a step: interpolate the crossing time in intensity
    c_int = np.exp(crossing) - float(eps)
    a0 = i0[rep].astype(np.float64)
    den = i1[rep].astype(np.float64) - a0
    safe = np.where(den == 0, 1.0, den)
    frac = np.clip(np.where(den == 0, 1.0, (c_int - a0) / safe), 0.0, 1.0)
    k_ev = step[rep]
    t0 = geo.times[k_ev - 1]
    t_ev = np.maximum(np.floor(t0 + frac * (geo.times[k_ev] - t0)), 1).astype(np.int64)
    flat = idx[rep]
    key = (flat // (side * side)) * (int(geo.times[-1]) + 2) + t_ev
    order = np.argsort(key, kind="stable")  # by sample, then time
    return flat[order], (sgn[order] > 0).astype(np.int8), t_ev[order]


def _noise_events(seed: int, index: int, rate_hz: float, side: int, duration_us: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 1, index])
    m = int(rng.poisson(rate_hz * side * side * duration_us * 1e-6))
    ev = np.empty(m, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, side, m)
    ev["y"] = rng.integers(0, side, m)
    ev["p"] = rng.integers(0, 2, m)
    ev["t"] = np.maximum(np.floor(rng.random(m) * duration_us), 1)
    return ev


def saccade_frames(
    events: Sequence[np.ndarray],
    *,
    time_window_us: float = 10_000,
    first_saccade_only: bool = True,
    sensor_size: Sequence[int] = NMNIST_SENSOR_SIZE,
    n_frames: int | None = None,
) -> np.ndarray:
    """Bin emulated recordings into engine inputs (the paper's N-MNIST framing, but exact).

    Parameters
    ----------
    events
        One event array per sample (as returned by :func:`emulate_saccades`).
    time_window_us
        Frame length (the paper: 10 ms). Frames start at ``t = 0``, the saccade onset.
    first_saccade_only
        Keep only ``t < 100_000`` µs, as tonic's ``NMNIST(first_saccade_only=True)``
        (10 frames of 10 ms).
    sensor_size
        ``(width, height, polarities)``.
    n_frames
        Common ``T``; by default enough for the latest event of any sample (10 with the
        defaults; 32 for all three 105 ms saccades).

    Returns
    -------
    numpy.ndarray
        float32 event counts ``[N, T, 2, 34, 34]``; ``frames[i].sum()`` equals the number
        of events of sample ``i`` kept.
    """
    w = _positive(time_window_us, "time_window_us")
    kept = [ev[ev["t"] < FIRST_SACCADE_US] if first_saccade_only else ev for ev in events]
    if n_frames is None:
        latest = max((int(ev["t"].max()) for ev in kept if len(ev)), default=0)
        n_frames = max(1, int(latest // w) + 1)
        if first_saccade_only:
            n_frames = max(n_frames, math.ceil(FIRST_SACCADE_US / w))
    return pad_frames([bin_events(ev, sensor_size, time_window_us=w, n_frames=n_frames) for ev in kept])

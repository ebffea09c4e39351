"""Spike encoders: intensities in [0, 1] to frames of event counts.

Every encoder returns ``[n, T, *shape]``: the samples first, then time, the layout that
``asyncsnn.infer`` and ``asyncsnn.torch.train`` take. A network whose input is flat
(``n_in`` = the size of ``shape``) takes these frames as they are: any frame shape of
``n_in`` values is read in C order.
"""

from __future__ import annotations

import numpy as np

from asyncsnn.exceptions import InputError, ParameterError, invalid

__all__ = ["latency_encode", "rate_encode", "row_scan_encode"]


def _intensities(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1):
        raise invalid(InputError, "intensities", f"range [{arr.min()}, {arr.max()}]", "must be finite and in [0, 1]")
    return arr


def _timesteps(timesteps: int) -> int:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise invalid(ParameterError, "timesteps", timesteps, "must be an int >= 1")
    return timesteps


def rate_encode(x: np.ndarray, timesteps: int, seed: int = 0, max_rate: float = 1.0) -> np.ndarray:
    """Bernoulli rate code: each frame spikes with probability ``x * max_rate``.

    Parameters
    ----------
    x
        Intensities in [0, 1], shape ``[n, *shape]``.
    timesteps
        Number of frames ``T``.
    seed
        Seed of the generator (same seed, same spikes).
    max_rate
        Spike probability per frame of an intensity of 1.

    Returns
    -------
    numpy.ndarray
        float32 0/1 frames ``[n, T, *shape]`` (samples first, then time).

    Examples
    --------
    >>> import numpy as np
    >>> rate_encode(np.array([[0.0, 1.0]]), timesteps=3).tolist()
    [[[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]]
    """
    arr = _intensities(x)
    t = _timesteps(timesteps)
    if not 0.0 <= max_rate <= 1.0:
        raise invalid(ParameterError, "max_rate", max_rate, "must be in [0, 1]")
    rng = np.random.default_rng(seed)
    u = rng.random((arr.shape[0], t, *arr.shape[1:]), dtype=np.float32)
    return np.asarray(u < arr[:, None] * np.float32(max_rate), dtype=np.float32)


def latency_encode(x: np.ndarray, timesteps: int, threshold: float = 0.0) -> np.ndarray:
    """Latency code: one spike per input, at ``round((1 - x) * (T - 1))``; brighter is earlier.

    Inputs with ``x <= threshold`` do not spike.

    Examples
    --------
    >>> import numpy as np
    >>> latency_encode(np.array([[1.0, 0.5, 0.0]]), timesteps=3)[0].tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    arr = _intensities(x)
    t = _timesteps(timesteps)
    when = np.rint((1.0 - arr) * (t - 1)).astype(np.int64)
    out = np.zeros((arr.shape[0], t, *arr.shape[1:]), dtype=np.float32)
    frames = np.arange(t).reshape((1, t) + (1,) * (arr.ndim - 1))
    out[(frames == when[:, None]) & (arr[:, None] > threshold)] = 1.0
    return out


def row_scan_encode(x: np.ndarray, levels: int = 4) -> np.ndarray:
    """Row-scan code: image rows are presented one per timestep as event counts.

    Parameters
    ----------
    x
        Intensities in [0, 1], shape ``[n, rows, cols]``.
    levels
        The count of a pixel of intensity 1 (intensities are quantised to
        ``round(x * levels)`` events).

    Returns
    -------
    numpy.ndarray
        float32 ``[n, rows, cols]``: ``T = rows`` frames of ``cols`` input neurons.

    Examples
    --------
    >>> import numpy as np
    >>> row_scan_encode(np.array([[[0.0, 1.0], [0.5, 0.25]]])).tolist()
    [[[0.0, 4.0], [2.0, 1.0]]]
    """
    arr = _intensities(x)
    if arr.ndim != 3:
        raise invalid(InputError, "intensities", f"shape {arr.shape}", "row scan needs [n, rows, cols]")
    return np.asarray(np.rint(arr * levels), dtype=np.float32)

"""The shared counter-based random function of docs/semantics.md (rule R5.5).

Every random decision of every engine (random scheduler keys, refractory dropout,
momentum jitter) is a pure function of ``(seed, sample, t, k, neuron, stream)``, so
results do not depend on batch order, thread count or platform. This module is the
Python definition used by the reference engine and the tests; ``rust/rng.rs`` and the
torch engine implement the same function.

With all arithmetic modulo ``2**32``::

    mix32(x):
        x ^= x >> 16;  x *= 0x21F0AAAD
        x ^= x >> 15;  x *= 0x735A2D97
        x ^= x >> 15

    h(seed, sample, t, k, neuron, stream):
        x = 0x243F6A88
        for w in (seed mod 2**32, seed >> 32, sample, t, k, neuron, stream):
            x = mix32(x ^ w)

    u(...) = (h(...) >> 8) / 2**24          # in [0, 1), exact in float32

Examples
--------
>>> hash32(0, 0, 0, 0, 0, STREAM_RANDOM)
3433141362
>>> uniform(0, 0, 0, 0, 0, STREAM_DROPOUT)
0.7968371510505676
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "STREAM_DROPOUT",
    "STREAM_INPUT_DROPOUT",
    "STREAM_JITTER",
    "STREAM_RANDOM",
    "STREAM_RANDOM_INPUT",
    "STREAM_SPIKE_DROPOUT",
    "hash32",
    "hash32_np",
    "mix32",
    "uniform",
    "uniform_np",
]

#: Stream of the random scheduler's keys (R5.3).
STREAM_RANDOM = 0
#: Stream of the refractory-dropout draws (R4.6).
STREAM_DROPOUT = 1
#: Stream of the momentum scheduler's jitter (R5.4).
STREAM_JITTER = 2
#: Stream of the input-dropout draws (R4.10).
STREAM_INPUT_DROPOUT = 3
#: Stream of the spike-dropout draws (R4.11).
STREAM_SPIKE_DROPOUT = 4
#: Stream of the random scheduler's keys of input entries (R4.13).
STREAM_RANDOM_INPUT = 5

_MASK32 = 0xFFFFFFFF
_SEED0 = 0x243F6A88
_M1 = 0x21F0AAAD
_M2 = 0x735A2D97
_TWO_POW_24 = float(1 << 24)


def _check_u32(value: int, name: str) -> int:
    v = int(value)
    if not 0 <= v <= _MASK32:
        raise ValueError(f"{name} = {value!r} must be in [0, 2**32 - 1]")
    return v


def mix32(x: int) -> int:
    """Apply the 32-bit finaliser of R5.5 (a bijection of ``[0, 2**32)``).

    Parameters
    ----------
    x
        Unsigned 32-bit integer.

    Returns
    -------
    int
        The mixed value, in ``[0, 2**32)``.

    Examples
    --------
    >>> mix32(0)
    0
    >>> mix32(1) != mix32(2)
    True
    """
    x &= _MASK32
    x ^= x >> 16
    x = (x * _M1) & _MASK32
    x ^= x >> 15
    x = (x * _M2) & _MASK32
    x ^= x >> 15
    return x


def hash32(seed: int, sample: int, t: int, k: int, neuron: int, stream: int) -> int:
    """Compute the hash ``h(seed, sample, t, k, neuron, stream)`` of R5.5.

    Parameters
    ----------
    seed
        Run seed, ``0 .. 2**64 - 1``.
    sample
        Sample id (the index in the call unless explicit ids are given), ``< 2**32``.
    t
        Timestep, ``< 2**32``.
    k
        Forward step within the timestep, ``< 2**32``.
    neuron
        Neuron id (R1.5), ``< 2**32``.
    stream
        :data:`STREAM_RANDOM`, :data:`STREAM_DROPOUT` or :data:`STREAM_JITTER`.

    Returns
    -------
    int
        Unsigned 32-bit hash.

    Examples
    --------
    >>> hex(hash32(42, 3, 7, 2, 100, STREAM_RANDOM))
    '0x265fe423'
    """
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed = {seed!r} must be in [0, 2**64 - 1]")
    words = (
        seed & _MASK32,
        seed >> 32,
        _check_u32(sample, "sample"),
        _check_u32(t, "t"),
        _check_u32(k, "k"),
        _check_u32(neuron, "neuron"),
        _check_u32(stream, "stream"),
    )
    x = _SEED0
    for w in words:
        x = mix32(x ^ w)
    return x


def uniform(seed: int, sample: int, t: int, k: int, neuron: int, stream: int) -> float:
    """Compute the uniform draw ``u(...) = (h(...) >> 8) / 2**24`` of R5.5.

    Parameters
    ----------
    seed, sample, t, k, neuron, stream
        As for :func:`hash32`.

    Returns
    -------
    float
        A value in ``[0, 1)``, a multiple of ``2**-24`` (exact in float32).

    Examples
    --------
    >>> uniform(1, 0, 0, 0, 0, STREAM_RANDOM)
    0.5816991925239563
    """
    return (hash32(seed, sample, t, k, neuron, stream) >> 8) / _TWO_POW_24


def _mix32_np(x: np.ndarray) -> np.ndarray:
    # uint64 holds every product of two 32-bit values exactly; mask back to 32 bits.
    mask = np.uint64(_MASK32)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(_M1)) & mask
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(_M2)) & mask
    x = x ^ (x >> np.uint64(15))
    return x


def hash32_np(seed: int, sample: int, t: int, k: int, neurons: npt.ArrayLike, stream: int) -> np.ndarray:
    """Vectorised :func:`hash32` over an array of neuron ids.

    Parameters
    ----------
    seed, sample, t, k, stream
        Scalars, as for :func:`hash32`.
    neurons
        Integer array of neuron ids (any shape), each in ``[0, 2**32)``.

    Returns
    -------
    numpy.ndarray
        ``uint32`` array of the same shape as ``neurons``.

    Examples
    --------
    >>> hash32_np(0, 0, 0, 0, np.array([0, 100]), STREAM_RANDOM).tolist()[0]
    3433141362
    """
    ids = np.asarray(neurons)
    if ids.size and (ids.min() < 0 or ids.max() > _MASK32):
        raise ValueError("neuron ids must be in [0, 2**32 - 1]")
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed = {seed!r} must be in [0, 2**64 - 1]")
    # The words before the neuron id are the same for every neuron: mix them once.
    x = _SEED0
    for w in (seed & _MASK32, seed >> 32, _check_u32(sample, "sample"), _check_u32(t, "t"), _check_u32(k, "k")):
        x = mix32(x ^ w)
    xs = _mix32_np(np.uint64(x) ^ ids.astype(np.uint64))
    xs = _mix32_np(xs ^ np.uint64(_check_u32(stream, "stream")))
    return xs.astype(np.uint32)


def uniform_np(seed: int, sample: int, t: int, k: int, neurons: npt.ArrayLike, stream: int) -> np.ndarray:
    """Vectorised :func:`uniform` over an array of neuron ids.

    Parameters
    ----------
    seed, sample, t, k, stream
        Scalars, as for :func:`hash32`.
    neurons
        Integer array of neuron ids (any shape).

    Returns
    -------
    numpy.ndarray
        ``float32`` array in ``[0, 1)`` of the same shape as ``neurons`` (the values are
        exact multiples of ``2**-24``).

    Examples
    --------
    >>> float(uniform_np(0, 0, 0, 0, np.array([0]), STREAM_DROPOUT)[0])
    0.7968371510505676
    """
    h = hash32_np(seed, sample, t, k, neurons, stream)
    u: np.ndarray = ((h >> np.uint32(8)).astype(np.float64) / _TWO_POW_24).astype(np.float32)
    return u

"""The shared counter-based random function (R5.5) on int64 torch tensors.

Values are unsigned 32-bit integers held in int64 tensors. Each multiply of ``mix32``
is ``x * c`` with ``x < 2**32`` and ``c < 2**31`` (both constants of R5.5 are below
``2**31``), so the product stays below ``2**63``: the split multiply of R5.5 is only
needed for constants of ``2**31`` or more, and :func:`_mul_mod32` does it then.
"""

from __future__ import annotations

import numpy as np
import torch

from asyncsnn.rng import mix32

__all__ = ["hash_neurons", "hash_neurons_np", "mix32_t", "prefix", "uniform24", "uniform24_np"]

_MASK32 = 0xFFFFFFFF
_SEED0 = 0x243F6A88
_M1 = 0x21F0AAAD
_M2 = 0x735A2D97


def _mul_mod32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``0 <= x < 2**32`` without an int64 product reaching ``2**63``."""
    if c < 1 << 31:
        return (x * c) & _MASK32
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def mix32_t(x: torch.Tensor) -> torch.Tensor:
    """``mix32`` of R5.5, element-wise on an int64 tensor of values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul_mod32(x, _M1)
    x = x ^ (x >> 15)
    x = _mul_mod32(x, _M2)
    return x ^ (x >> 15)


def prefix(seed: int, sample_ids: torch.Tensor) -> torch.Tensor:
    """The hash state after the words ``(seed mod 2**32, seed >> 32, sample)``.

    Parameters
    ----------
    seed
        Run seed, ``0 .. 2**64 - 1``.
    sample_ids
        int64 ``[B]`` sample ids in ``[0, 2**32)``.

    Returns
    -------
    torch.Tensor
        int64 ``[B]``; mix it with ``t``, then ``k``, then the neuron and the stream.
    """
    x = mix32(_SEED0 ^ (seed & _MASK32))
    x = mix32(x ^ (seed >> 32))
    return mix32_t(sample_ids ^ x)


def hash_neurons(state: torch.Tensor, neurons: torch.Tensor, stream: int) -> torch.Tensor:
    """``h(seed, sample, t, k, neuron, stream)`` from the state after ``k`` (same shape as ``neurons``)."""
    return mix32_t(mix32_t(state ^ neurons) ^ stream)


def uniform24(h: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``u = (h >> 8) / 2**24`` (exact in float32 and float64)."""
    return (h >> 8).to(dtype) / float(1 << 24)


def _mix32_np(x: np.ndarray) -> np.ndarray:
    """``mix32`` in place on a uint64 array of values in ``[0, 2**32)`` (products stay below 2**63)."""
    x ^= x >> np.uint64(16)
    x *= np.uint64(_M1)
    x &= np.uint64(_MASK32)
    x ^= x >> np.uint64(15)
    x *= np.uint64(_M2)
    x &= np.uint64(_MASK32)
    x ^= x >> np.uint64(15)
    return x


def hash_neurons_np(state: np.ndarray, neurons: np.ndarray, stream: int) -> np.ndarray:
    """:func:`hash_neurons` on int64 numpy arrays (the engine's CPU bookkeeping); int64 result."""
    x = _mix32_np((state ^ neurons).astype(np.uint64))
    if stream:
        x ^= np.uint64(stream)
    return _mix32_np(x).astype(np.int64)


def uniform24_np(h: np.ndarray) -> np.ndarray:
    """:func:`uniform24` on an int64 numpy array (float32 result)."""
    u: np.ndarray = (h >> 8).astype(np.float32) / np.float32(1 << 24)
    return u

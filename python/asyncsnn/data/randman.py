r"""Randman: the random-manifold spike-timing task of Zenke & Vogels (2021).

Reimplemented in NumPy after the reference code ``fzenke/randman`` (MIT): each class is a
random smooth ``dim_manifold``-dimensional manifold embedded in ``n_units`` dimensions.
Coordinate ``i`` of a manifold is a product over the manifold's dimensions of random
Fourier series,

.. math:: f_i(x) = \prod_{d} \sum_{k=0}^{K-1} \frac{a_{idk}}{(k+1)^{\alpha}}
          \sin\big(2\pi (k\, b_{idk}\, x_d + c_{idk})\big),
          \quad a, b, c \sim U[0, 1),

with ``K = ceil(prec ** (-1 / alpha))`` terms (``alpha`` sets the smoothness: larger is
smoother). A sample draws ``x`` uniformly in ``[0, 1)^dim_manifold`` and maps its point on
its class's manifold to one spike time per unit: each unit's coordinate is min-max
scaled to ``[0, 1]`` over the class's samples (the reference's ``standardize``). Classes
differ only in *when* each unit fires, never in how many spikes there are: a purely
temporal task.

Examples
--------
>>> frames, labels = make_randman(n_classes=3, n_units=20, n_samples=10, timesteps=25, seed=1)
>>> frames.shape, frames.dtype, labels.shape
((30, 25, 20), dtype('float32'), (30,))
>>> bool((frames.sum(axis=1) == 1).all())  # one spike per unit and sample
True
"""

from __future__ import annotations

import math

import numpy as np

from asyncsnn.exceptions import ParameterError, invalid

__all__ = ["make_randman", "randman_spike_times"]


def _int(value: int, field: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise invalid(ParameterError, field, value, f"must be an int >= {lo}")
    return int(value)


def _manifold(
    rng: np.random.Generator, n_units: int, dim: int, n_terms: int, alpha: float, x: np.ndarray
) -> np.ndarray:
    """Evaluate one random manifold at the points ``x`` ``[n, dim]``: ``[n, n_units]``."""
    a = rng.random((n_units, dim, n_terms))
    b = rng.random((n_units, dim, n_terms))
    c = rng.random((n_units, dim, n_terms))
    k = np.arange(n_terms)
    amp = a / (k + 1.0) ** alpha  # [units, dim, terms]
    y = np.ones((x.shape[0], n_units))
    block = max(1, 2**22 // (n_units * n_terms))  # bound the [block, units, terms] temporaries
    for start in range(0, x.shape[0], block):
        xs = x[start : start + block]
        for d in range(dim):
            # phase[n, unit, term] = 2 pi (k * b * x + c)
            phase = 2 * np.pi * (xs[:, d, None, None] * (k * b[None, :, d, :]) + c[None, :, d, :])
            y[start : start + block] *= np.einsum("nut,ut->nu", np.sin(phase), amp[:, d, :])
    return y


def randman_spike_times(
    n_classes: int = 10,
    n_units: int = 100,
    n_samples: int = 100,
    *,
    dim_manifold: int = 1,
    alpha: float = 2.0,
    prec: float = 1e-3,
    seed: int = 0,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Spike times of a Randman data set.

    Parameters
    ----------
    n_classes
        Number of classes (manifolds).
    n_units
        Number of input units (embedding dimension); each fires exactly once per sample.
    n_samples
        Samples per class.
    dim_manifold
        Intrinsic dimension of each manifold (harder when larger).
    alpha
        Smoothness: the ``k``-th Fourier term has amplitude ``~ 1 / (k + 1) ** alpha``
        (harder when smaller).
    prec
        Truncation of the Fourier series: ``ceil(prec ** (-1 / alpha))`` terms (at most 1000).
    seed
        Seed (same seed, same data set).
    shuffle
        Shuffle the samples (otherwise they are grouped by class).

    Returns
    -------
    times : numpy.ndarray
        float64 ``[n_classes * n_samples, n_units]`` in ``[0, 1]``: each unit's spike time as
        a fraction of the sample's duration.
    labels : numpy.ndarray
        int64 ``[n_classes * n_samples]``.
    """
    nc = _int(n_classes, "n_classes", 1)
    nu = _int(n_units, "n_units", 1)
    ns = _int(n_samples, "n_samples", 2)
    dim = _int(dim_manifold, "dim_manifold", 1)
    s = _int(seed, "seed", 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
        raise invalid(ParameterError, "alpha", alpha, "must be a finite number > 0")
    if isinstance(prec, bool) or not isinstance(prec, (int, float)) or not 0 < prec < 1:
        raise invalid(ParameterError, "prec", prec, "must be in (0, 1)")
    n_terms = int(min(math.ceil(prec ** (-1.0 / alpha)), 1000))
    root = np.random.SeedSequence(s)
    times = np.empty((nc * ns, nu))
    for cls, child in enumerate(root.spawn(nc)):
        rng = np.random.default_rng(child)
        x = rng.random((ns, dim))
        y = _manifold(rng, nu, dim, n_terms, float(alpha), x)
        lo = y.min(axis=0)
        span = y.max(axis=0) - lo
        times[cls * ns : (cls + 1) * ns] = (y - lo) / np.where(span > 0, span, 1.0)
    labels = np.repeat(np.arange(nc, dtype=np.int64), ns)
    if shuffle:
        order = np.random.default_rng(root.spawn(1)[0]).permutation(len(labels))
        times, labels = times[order], labels[order]
    return times, labels


def make_randman(
    n_classes: int = 10,
    n_units: int = 100,
    n_samples: int = 100,
    *,
    dim_manifold: int = 1,
    alpha: float = 2.0,
    timesteps: int = 50,
    prec: float = 1e-3,
    seed: int = 0,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A Randman data set as engine input frames (see :func:`randman_spike_times` for the parameters).

    Spike time ``s`` in ``[0, 1]`` goes to frame ``min(floor(s * timesteps), timesteps - 1)``.

    Returns
    -------
    frames : numpy.ndarray
        float32 ``[n_classes * n_samples, timesteps, n_units]``, one 1 per unit per sample.
    labels : numpy.ndarray
        int64 ``[n_classes * n_samples]``.
    """
    t = _int(timesteps, "timesteps", 1)
    times, labels = randman_spike_times(
        n_classes, n_units, n_samples, dim_manifold=dim_manifold, alpha=alpha, prec=prec, seed=seed, shuffle=shuffle
    )
    step = np.minimum(np.floor(times * t), t - 1).astype(np.int64)
    frames = np.zeros((times.shape[0], t, times.shape[1]), dtype=np.float32)
    n_idx, u_idx = np.indices(step.shape)
    frames[n_idx, step, u_idx] = 1.0
    return frames, labels
